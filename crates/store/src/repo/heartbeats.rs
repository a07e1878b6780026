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
    /// The engine's clock when it reported (ms since the epoch; the data's
    /// own time, which a replay takes from its recording).
    pub clock: Option<i64>,
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
        "SELECT at, (health->'engine'->>'clock')::bigint AS clock, health->'pnl' AS pnl \
         FROM worker_heartbeats WHERE tenant_id = $1 \
         AND health ? 'pnl' ORDER BY at DESC, id DESC LIMIT 1",
    )
    .bind(tx.tenant().as_uuid())
    .fetch_optional(&mut **tx)
    .await
    .map_err(DbError::query("reading the newest heartbeat's PnL"))
}

/// A point of the equity curve: what the engine reported in one heartbeat.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct EquityPoint {
    /// The engine's clock (ms since the epoch, the data's own time).
    pub clock: i64,
    /// Equity minus starting equity, as a decimal string.
    pub pnl: String,
    pub equity: String,
}

/// The equity curve of the newest worker run (its lease epoch: a restarted
/// worker starts its engine afresh), from the heartbeats kept (a day), on
/// the engine's clock (heartbeats before its first event, at clock 0, are
/// left out), thinned to about `points` points, oldest first.
pub async fn equity_curve(tx: &mut TenantTx, points: i64) -> Result<Vec<EquityPoint>, DbError> {
    sqlx::query_as::<_, EquityPoint>(
        "WITH h AS (SELECT id, at, (health->'engine'->>'clock')::bigint AS clock, \
                           health->'pnl'->>'equity' AS equity, \
                           coalesce(health->'pnl'->>'starting_equity', '0') AS start \
                    FROM worker_heartbeats WHERE tenant_id = $1 AND health ? 'pnl' \
                      AND (health->'engine'->>'clock')::bigint > 0 \
                      AND epoch = (SELECT max(epoch) FROM worker_heartbeats WHERE tenant_id = $1)), \
              c AS (SELECT clock, equity, start, row_number() OVER (ORDER BY clock, at, id) AS n, \
                           count(*) OVER () AS k FROM h WHERE equity IS NOT NULL) \
         SELECT clock, (equity::numeric - start::numeric)::text AS pnl, equity \
         FROM c WHERE n % greatest(k / $2, 1) = 0 OR n = k ORDER BY n",
    )
    .bind(tx.tenant().as_uuid())
    .bind(points.max(1))
    .fetch_all(&mut **tx)
    .await
    .map_err(DbError::query("reading the tenant's equity curve"))
}
