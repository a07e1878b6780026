//! A tenant's runtime row (`tenant_runtime`): what the reconciler should run
//! and what it last observed. Here only what onboarding writes: the launch
//! spec the reconciler starts the worker with, and its removal when
//! onboarding fails. The reconciler's own reads and writes are not here yet.

use crate::{DbError, TenantTx};

/// Records the launch spec (its hash) the reconciler will start the worker
/// with; an existing row keeps its observations and takes the new hash.
pub async fn prepare_launch(tx: &mut TenantTx, spec_hash: &str) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO tenant_runtime (tenant_id, desired, actual, spec_hash) VALUES ($1, 'running', 'pending', $2) \
         ON CONFLICT (tenant_id) DO UPDATE SET spec_hash = EXCLUDED.spec_hash, observed_at = now()",
    )
    .bind(tx.tenant().as_uuid())
    .bind(spec_hash)
    .execute(&mut **tx)
    .await
    .map_err(DbError::query("preparing the launch spec"))?;
    Ok(())
}

/// The stored launch spec hash, if any.
pub async fn spec_hash(tx: &mut TenantTx) -> Result<Option<String>, DbError> {
    let hash: Option<Option<String>> =
        sqlx::query_scalar("SELECT spec_hash FROM tenant_runtime WHERE tenant_id = $1")
            .bind(tx.tenant().as_uuid())
            .fetch_optional(&mut **tx)
            .await
            .map_err(DbError::query("reading the launch spec"))?;
    Ok(hash.flatten())
}

/// Removes the runtime row (onboarding failed: nothing is to run).
pub async fn remove(tx: &mut TenantTx) -> Result<(), DbError> {
    sqlx::query("DELETE FROM tenant_runtime WHERE tenant_id = $1")
        .bind(tx.tenant().as_uuid())
        .execute(&mut **tx)
        .await
        .map_err(DbError::query("removing the launch spec"))?;
    Ok(())
}
