//! A tenant's audit log (`audit_log`): who did what, append-only. What goes
//! into `details` (never key material) is the caller's responsibility.

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::{DbError, TenantTx};

/// An audit entry as stored.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct AuditEntry {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub details: Value,
}

/// Appends an entry to the transaction's tenant's log.
pub async fn append(
    tx: &mut TenantTx,
    actor: &str,
    action: &str,
    details: Value,
) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO audit_log (tenant_id, actor, action, details) VALUES ($1, $2, $3, $4)",
    )
    .bind(tx.tenant().as_uuid())
    .bind(actor)
    .bind(action)
    .bind(details)
    .execute(&mut **tx)
    .await
    .map_err(DbError::query("writing the audit log"))?;
    Ok(())
}

/// The transaction's tenant's log, oldest first.
pub async fn list(tx: &mut TenantTx) -> Result<Vec<AuditEntry>, DbError> {
    sqlx::query_as::<_, AuditEntry>(
        "SELECT id, at, actor, action, details FROM audit_log WHERE tenant_id = $1 ORDER BY id",
    )
    .bind(tx.tenant().as_uuid())
    .fetch_all(&mut **tx)
    .await
    .map_err(DbError::query("reading the audit log"))
}

/// The newest `limit` audit entries, newest first.
pub async fn recent(tx: &mut TenantTx, limit: i64) -> Result<Vec<AuditEntry>, DbError> {
    sqlx::query_as(
        "SELECT id, at, actor, action, details FROM audit_log WHERE tenant_id = $1 ORDER BY at DESC, id DESC LIMIT $2",
    )
    .bind(tx.tenant().as_uuid())
    .bind(limit)
    .fetch_all(&mut **tx)
    .await
    .map_err(DbError::query("reading the tenant's audit log"))
}
