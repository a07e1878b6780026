//! The `tenants` row of the transaction's tenant.

use chrono::{DateTime, Utc};
use polybot_core::{Mode, TenantId};
use uuid::Uuid;

use crate::{DbError, TenantTx};

/// A tenant as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct TenantRow {
    pub id: Uuid,
    pub name: String,
    pub mode: String,
    pub state: String,
    pub provisioning_step: String,
    pub last_error: Option<String>,
    pub spec_version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl TenantRow {
    pub fn tenant_id(&self) -> TenantId {
        TenantId::from_uuid(self.id)
    }
}

/// Inserts the transaction's tenant in state `provisioning`.
pub async fn insert(tx: &mut TenantTx, name: &str, mode: Mode) -> Result<TenantRow, DbError> {
    let id = tx.tenant().as_uuid();
    sqlx::query_as::<_, TenantRow>(
        "INSERT INTO tenants (id, name, mode) VALUES ($1, $2, $3) \
         RETURNING id, name, mode, state, provisioning_step, last_error, spec_version, created_at, updated_at",
    )
    .bind(id)
    .bind(name)
    .bind(mode.as_str())
    .fetch_one(&mut **tx)
    .await
    .map_err(DbError::query("inserting a tenant"))
}

/// The transaction's tenant, if it exists (and is visible to it).
pub async fn get(tx: &mut TenantTx) -> Result<Option<TenantRow>, DbError> {
    let id = tx.tenant().as_uuid();
    sqlx::query_as::<_, TenantRow>(
        "SELECT id, name, mode, state, provisioning_step, last_error, spec_version, created_at, updated_at \
         FROM tenants WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(&mut **tx)
    .await
    .map_err(DbError::query("reading a tenant"))
}
