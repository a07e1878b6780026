//! Worker heartbeats: the [`WorkerHealth`] a tenant's worker writes with
//! every lease renewal, kept as jsonb in `worker_heartbeats`.
//!
//! The worker writes through a fenced transaction, so a fenced twin's
//! heartbeat is refused with its other writes. Here are one tenant's reads:
//! its newest heartbeat, and the newest that reported PnL (the data API's
//! `/pnl`). Reading across tenants (the fleet, alerts, metrics) is not here
//! but in the fleet read model (`super::fleet`), which joins the newest
//! heartbeat to each tenant's status.

use chrono::{DateTime, Utc};
use polybot_core::worker::WorkerHealth;
use serde_json::Value;

use crate::{DbError, TenantTx};

/// A heartbeat as stored.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Heartbeat {
    pub id: i64,
    /// The lease epoch of the worker that wrote it.
    pub epoch: i64,
    pub at: DateTime<Utc>,
    /// As written; see [`Heartbeat::health`].
    pub health: Value,
}

impl Heartbeat {
    /// The heartbeat's contents; `None` when an incompatible worker wrote it.
    pub fn health(&self) -> Option<WorkerHealth> {
        WorkerHealth::from_json(&self.health)
    }
}

/// The PnL figures of the newest heartbeat that carried any.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ReportedPnl {
    pub at: DateTime<Utc>,
    /// The heartbeat's `pnl` object, as the worker wrote it.
    pub pnl: Option<Value>,
}

/// Records a heartbeat of the worker holding the fenced transaction's epoch.
pub async fn insert(tx: &mut TenantTx, health: &WorkerHealth) -> Result<(), DbError> {
    sqlx::query("INSERT INTO worker_heartbeats (tenant_id, epoch, health) VALUES ($1, $2, $3)")
        .bind(tx.tenant().as_uuid())
        .bind(tx.epoch())
        .bind(sqlx::types::Json(health))
        .execute(&mut **tx)
        .await
        .map_err(DbError::query("recording a heartbeat"))?;
    Ok(())
}

/// The transaction's tenant's newest heartbeat, if any. The fleet read
/// model joins the same row to each tenant's status (`super::fleet`).
pub async fn newest(tx: &mut TenantTx) -> Result<Option<Heartbeat>, DbError> {
    sqlx::query_as::<_, Heartbeat>(
        "SELECT id, epoch, at, health FROM worker_heartbeats \
         WHERE tenant_id = $1 ORDER BY at DESC, id DESC LIMIT 1",
    )
    .bind(tx.tenant().as_uuid())
    .fetch_optional(&mut **tx)
    .await
    .map_err(DbError::query("reading the newest heartbeat"))
}

/// The PnL of the newest heartbeat that reported one (the engine marks open
/// positions to market, which the trades alone cannot).
pub async fn reported_pnl(tx: &mut TenantTx) -> Result<Option<ReportedPnl>, DbError> {
    sqlx::query_as::<_, ReportedPnl>(
        "SELECT at, health->'pnl' AS pnl FROM worker_heartbeats WHERE tenant_id = $1 \
         AND health ? 'pnl' ORDER BY at DESC, id DESC LIMIT 1",
    )
    .bind(tx.tenant().as_uuid())
    .fetch_optional(&mut **tx)
    .await
    .map_err(DbError::query("reading the newest heartbeat's PnL"))
}
