//! Bearer tokens, stored only as hashes: operator tokens (`operator_tokens`,
//! not tenant data) and tenant tokens (`api_tokens`). Generating and hashing
//! tokens is the control plane's (`auth.rs`); this module only stores and
//! resolves hashes.

use polybot_core::TenantId;
use uuid::Uuid;

use crate::{DbError, OperatorTx, TenantTx};

/// Whether `hash` is a live (unrevoked) operator token.
pub async fn is_operator(op: &mut OperatorTx, hash: &[u8]) -> Result<bool, DbError> {
    let found: Option<Uuid> = sqlx::query_scalar(
        "SELECT id FROM operator_tokens WHERE token_hash = $1 AND revoked_at IS NULL",
    )
    .bind(hash)
    .fetch_optional(&mut **op)
    .await
    .map_err(DbError::query("looking up an operator token"))?;
    Ok(found.is_some())
}

/// The tenant whose live token hashes to `hash`, if any (a security-definer
/// function: the operator scope cannot read `api_tokens` itself).
pub async fn tenant_for(op: &mut OperatorTx, hash: &[u8]) -> Result<Option<TenantId>, DbError> {
    let found: Option<Uuid> = sqlx::query_scalar("SELECT polybot.tenant_for_token($1)")
        .bind(hash)
        .fetch_one(&mut **op)
        .await
        .map_err(DbError::query("looking up a tenant token"))?;
    Ok(found.map(TenantId::from_uuid))
}

/// Registers an operator token; a hash already registered is left as is.
/// Returns whether it was new.
pub async fn register_operator(
    op: &mut OperatorTx,
    id: Uuid,
    hash: &[u8],
    label: &str,
) -> Result<bool, DbError> {
    let result = sqlx::query(
        "INSERT INTO operator_tokens (id, token_hash, label) VALUES ($1, $2, $3) \
         ON CONFLICT (token_hash) DO NOTHING",
    )
    .bind(id)
    .bind(hash)
    .bind(label)
    .execute(&mut **op)
    .await
    .map_err(DbError::query("registering the operator token"))?;
    Ok(result.rows_affected() == 1)
}

/// Stores a token of the transaction's tenant.
pub async fn insert_tenant_token(
    tx: &mut TenantTx,
    id: Uuid,
    hash: &[u8],
    label: &str,
) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO api_tokens (id, tenant_id, token_hash, label) VALUES ($1, $2, $3, $4)",
    )
    .bind(id)
    .bind(tx.tenant().as_uuid())
    .bind(hash)
    .bind(label)
    .execute(&mut **tx)
    .await
    .map_err(DbError::query("creating a tenant token"))?;
    Ok(())
}
