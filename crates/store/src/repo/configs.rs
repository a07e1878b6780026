//! A tenant's configuration (`tenant_configs`: strategies and risk limits,
//! stored as the validated JSON the API accepted) and the launch spec a
//! worker's start depends on. Validation lives in `polybot_core`, not here.

use serde_json::Value;

use crate::{DbError, TenantTx};

/// Everything a worker's launch depends on, as stored.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct LaunchSpec {
    pub mode: String,
    pub spec_version: i64,
    pub strategies: Value,
    pub risk: Value,
    /// The secret's version; `None` before a secret exists.
    pub secret_version: Option<i64>,
}

/// Stores the transaction's tenant's first configuration.
pub async fn insert(tx: &mut TenantTx, strategies: &Value, risk: &Value) -> Result<(), DbError> {
    sqlx::query("INSERT INTO tenant_configs (tenant_id, strategies, risk) VALUES ($1, $2, $3)")
        .bind(tx.tenant().as_uuid())
        .bind(strategies)
        .bind(risk)
        .execute(&mut **tx)
        .await
        .map_err(DbError::query("storing the tenant's configuration"))?;
    Ok(())
}

/// Replaces the strategies and the risk limits where given.
pub async fn update(
    tx: &mut TenantTx,
    strategies: Option<&Value>,
    risk: Option<&Value>,
) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE tenant_configs SET strategies = coalesce($2, strategies), risk = coalesce($3, risk), \
         updated_at = now() WHERE tenant_id = $1",
    )
    .bind(tx.tenant().as_uuid())
    .bind(strategies)
    .bind(risk)
    .execute(&mut **tx)
    .await
    .map_err(DbError::query("updating a tenant's configuration"))?;
    Ok(())
}

/// The transaction's tenant's launch spec.
pub async fn launch_spec(tx: &mut TenantTx) -> Result<LaunchSpec, DbError> {
    sqlx::query_as::<_, LaunchSpec>(
        "SELECT t.mode, t.spec_version, c.strategies, c.risk, s.version AS secret_version \
         FROM tenants t JOIN tenant_configs c ON c.tenant_id = t.id \
         LEFT JOIN tenant_secrets s ON s.tenant_id = t.id WHERE t.id = $1",
    )
    .bind(tx.tenant().as_uuid())
    .fetch_one(&mut **tx)
    .await
    .map_err(DbError::query("reading the launch spec"))
}

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
