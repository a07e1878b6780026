//! The `tenant_secrets` row of the transaction's tenant.
//!
//! Both secret stores keep their bookkeeping here: the local store its
//! AES-GCM ciphertext, the AWS store the secret's ARN. Either way the row
//! holds the masked key fingerprints that API responses show and a version
//! that the local store binds into its ciphertext. Encryption and the AWS
//! calls live in `polybot-secrets`; only the SQL lives here.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::{DbError, TenantTx};

/// What the local store seals into the row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub reference: String,
    pub ciphertext: Vec<u8>,
    pub nonce: Vec<u8>,
    /// Which master key sealed it.
    pub key_id: String,
    pub fingerprints: Value,
    pub version: i64,
}

/// A sealed secret as read back (not scheduled for deletion).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SealedRow {
    pub ciphertext: Option<Vec<u8>>,
    pub nonce: Option<Vec<u8>>,
    pub key_id: Option<String>,
    pub version: i64,
}

/// Where the secret lives and whether it is scheduled for deletion.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SecretRef {
    /// `local` or `aws`.
    pub store: String,
    pub reference: Option<String>,
    pub scheduled: bool,
    /// Scheduled, and the recovery window has not passed.
    pub restorable: bool,
}

/// The version the next write of the tenant's secret gets (1 for the first).
pub async fn next_version(tx: &mut TenantTx) -> Result<i64, DbError> {
    sqlx::query_scalar(
        "SELECT coalesce(max(version), 0) + 1 FROM tenant_secrets WHERE tenant_id = $1",
    )
    .bind(tx.tenant().as_uuid())
    .fetch_one(&mut **tx)
    .await
    .map_err(DbError::query("reading the secret version"))
}

/// Writes the local store's ciphertext; a scheduled deletion is cancelled.
pub async fn put_sealed(tx: &mut TenantTx, sealed: &Sealed) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO tenant_secrets (tenant_id, store, reference, ciphertext, nonce, key_id, fingerprints, version) \
         VALUES ($1, 'local', $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (tenant_id) DO UPDATE SET store = 'local', reference = EXCLUDED.reference, \
            ciphertext = EXCLUDED.ciphertext, nonce = EXCLUDED.nonce, key_id = EXCLUDED.key_id, \
            fingerprints = EXCLUDED.fingerprints, version = EXCLUDED.version, updated_at = now(), \
            deletion_scheduled_at = NULL",
    )
    .bind(tx.tenant().as_uuid())
    .bind(&sealed.reference)
    .bind(&sealed.ciphertext)
    .bind(&sealed.nonce)
    .bind(&sealed.key_id)
    .bind(&sealed.fingerprints)
    .bind(sealed.version)
    .execute(&mut **tx)
    .await
    .map_err(DbError::query("storing the tenant's secret"))?;
    Ok(())
}

/// Records a secret held elsewhere (an AWS ARN); any ciphertext is dropped.
pub async fn put_reference(
    tx: &mut TenantTx,
    store: &str,
    reference: &str,
    fingerprints: &Value,
    version: i64,
) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO tenant_secrets (tenant_id, store, reference, fingerprints, version) \
         VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (tenant_id) DO UPDATE SET store = EXCLUDED.store, reference = EXCLUDED.reference, \
            ciphertext = NULL, nonce = NULL, key_id = NULL, \
            fingerprints = EXCLUDED.fingerprints, version = EXCLUDED.version, updated_at = now(), \
            deletion_scheduled_at = NULL",
    )
    .bind(tx.tenant().as_uuid())
    .bind(store)
    .bind(reference)
    .bind(fingerprints)
    .bind(version)
    .execute(&mut **tx)
    .await
    .map_err(DbError::query("recording the tenant's secret reference"))?;
    Ok(())
}

/// The sealed secret, unless it is scheduled for deletion.
pub async fn sealed(tx: &mut TenantTx) -> Result<Option<SealedRow>, DbError> {
    sqlx::query_as(
        "SELECT ciphertext, nonce, key_id, version FROM tenant_secrets \
         WHERE tenant_id = $1 AND deletion_scheduled_at IS NULL",
    )
    .bind(tx.tenant().as_uuid())
    .fetch_optional(&mut **tx)
    .await
    .map_err(DbError::query("reading the tenant's secret"))
}

/// Where the secret lives, and its deletion schedule.
pub async fn reference(tx: &mut TenantTx) -> Result<Option<SecretRef>, DbError> {
    sqlx::query_as(
        "SELECT store, reference, deletion_scheduled_at IS NOT NULL AS scheduled, \
                coalesce(deletion_scheduled_at > now(), false) AS restorable \
         FROM tenant_secrets WHERE tenant_id = $1",
    )
    .bind(tx.tenant().as_uuid())
    .fetch_optional(&mut **tx)
    .await
    .map_err(DbError::query("reading the tenant's secret reference"))
}

/// Schedules deletion `recovery_days` from now, unless already scheduled.
pub async fn schedule_deletion_in(tx: &mut TenantTx, recovery_days: u32) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE tenant_secrets SET deletion_scheduled_at = now() + make_interval(days => $2) \
         WHERE tenant_id = $1 AND deletion_scheduled_at IS NULL",
    )
    .bind(tx.tenant().as_uuid())
    .bind(i32::try_from(recovery_days).unwrap_or(i32::MAX))
    .execute(&mut **tx)
    .await
    .map_err(DbError::query("scheduling the secret's deletion"))?;
    Ok(())
}

/// Records the deletion time another system (Secrets Manager) chose.
pub async fn mark_deletion_scheduled(tx: &mut TenantTx, at: DateTime<Utc>) -> Result<(), DbError> {
    sqlx::query("UPDATE tenant_secrets SET deletion_scheduled_at = $2 WHERE tenant_id = $1")
        .bind(tx.tenant().as_uuid())
        .bind(at)
        .execute(&mut **tx)
        .await
        .map_err(DbError::query("recording the secret's scheduled deletion"))?;
    Ok(())
}

/// Cancels a scheduled deletion whose recovery window has not passed.
/// Returns whether there was one.
pub async fn restore_within_window(tx: &mut TenantTx) -> Result<bool, DbError> {
    let done = sqlx::query(
        "UPDATE tenant_secrets SET deletion_scheduled_at = NULL \
         WHERE tenant_id = $1 AND deletion_scheduled_at > now()",
    )
    .bind(tx.tenant().as_uuid())
    .execute(&mut **tx)
    .await
    .map_err(DbError::query("restoring the secret"))?;
    Ok(done.rows_affected() == 1)
}

/// Cancels a scheduled deletion, whatever its window (the remote store has
/// already restored the secret).
pub async fn clear_deletion(tx: &mut TenantTx) -> Result<(), DbError> {
    sqlx::query("UPDATE tenant_secrets SET deletion_scheduled_at = NULL WHERE tenant_id = $1")
        .bind(tx.tenant().as_uuid())
        .execute(&mut **tx)
        .await
        .map_err(DbError::query("restoring the secret"))?;
    Ok(())
}

/// The masked key fingerprints (venue → fingerprint); an empty object when
/// the tenant has no secret.
pub async fn fingerprints(tx: &mut TenantTx) -> Result<Value, DbError> {
    let value: Option<Value> =
        sqlx::query_scalar("SELECT fingerprints FROM tenant_secrets WHERE tenant_id = $1")
            .bind(tx.tenant().as_uuid())
            .fetch_optional(&mut **tx)
            .await
            .map_err(DbError::query("reading key fingerprints"))?;
    Ok(value.unwrap_or(Value::Object(Map::new())))
}
