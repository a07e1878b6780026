//! Tenant configurations (`tenant_configs`): strategies and risk limits, as
//! stored JSON. Validating them is core's (`parse_strategies`, `parse_risk`),
//! not the store's.

use crate::{DbError, TenantTx};

/// What a worker loads at startup: its tenant's name and configuration.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct WorkerConfigRow {
    pub name: String,
    pub strategies: serde_json::Value,
    pub risk: serde_json::Value,
}

/// The transaction's tenant's name and configuration; `None` when it has no
/// configuration (or the transaction's role cannot read it).
pub async fn for_worker(tx: &mut TenantTx) -> Result<Option<WorkerConfigRow>, DbError> {
    sqlx::query_as::<_, WorkerConfigRow>(
        "SELECT t.name, c.strategies, c.risk FROM tenants t \
         JOIN tenant_configs c ON c.tenant_id = t.id WHERE t.id = $1",
    )
    .bind(tx.tenant().as_uuid())
    .fetch_optional(&mut **tx)
    .await
    .map_err(DbError::query("loading the tenant's configuration"))
}
