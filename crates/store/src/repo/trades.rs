//! A tenant's trades (fills and settlements) and the PnL read from them.
//!
//! The reads the API serves live here; the worker's writes join them in this
//! module.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde_json::Value;
use uuid::Uuid;

use crate::{DbError, TenantTx};

/// A trade as stored.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Trade {
    pub id: Uuid,
    pub opportunity_id: Option<Uuid>,
    pub strategy: String,
    pub venue: String,
    pub market: String,
    /// buy, sell or settle.
    pub side: String,
    pub outcome: Option<String>,
    pub price: Decimal,
    pub size: Decimal,
    pub fee: Decimal,
    pub realized_pnl: Option<Decimal>,
    pub mode: String,
    pub details: Value,
    pub executed_at: DateTime<Utc>,
    pub epoch: Option<i64>,
}

/// One strategy's trades summed.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StrategyTotals {
    pub strategy: String,
    pub trades: i64,
    /// Realised PnL summed (0 without any).
    pub realized: Decimal,
    pub fees: Decimal,
}

/// The PnL figures of the newest heartbeat that carried any.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ReportedPnl {
    pub at: DateTime<Utc>,
    /// The heartbeat's `pnl` object, as the worker wrote it.
    pub pnl: Option<Value>,
}

/// A page of trades for the API: newest first, only `strategy`'s if given,
/// strictly after the keyset position `after` (execution time, id) in that
/// order, at most `limit`.
pub async fn page(
    tx: &mut TenantTx,
    strategy: Option<&str>,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> Result<Vec<Trade>, DbError> {
    let (after_at, after_id) = after.unzip();
    sqlx::query_as::<_, Trade>(
        "SELECT id, opportunity_id, strategy, venue, market, side, outcome, price, size, fee, \
                realized_pnl, mode, details, executed_at, epoch \
         FROM trades \
         WHERE tenant_id = $1 AND ($2::text IS NULL OR strategy = $2) \
           AND ($3::timestamptz IS NULL OR (executed_at, id) < ($3, $4)) \
         ORDER BY executed_at DESC, id DESC LIMIT $5",
    )
    .bind(tx.tenant().as_uuid())
    .bind(strategy)
    .bind(after_at)
    .bind(after_id)
    .bind(limit)
    .fetch_all(&mut **tx)
    .await
    .map_err(DbError::query("listing trades"))
}

/// The trades summed per strategy, by strategy name.
pub async fn totals_by_strategy(tx: &mut TenantTx) -> Result<Vec<StrategyTotals>, DbError> {
    sqlx::query_as::<_, StrategyTotals>(
        "SELECT strategy, count(*) AS trades, coalesce(sum(realized_pnl), 0) AS realized, \
                coalesce(sum(fee), 0) AS fees \
         FROM trades WHERE tenant_id = $1 GROUP BY strategy ORDER BY strategy",
    )
    .bind(tx.tenant().as_uuid())
    .fetch_all(&mut **tx)
    .await
    .map_err(DbError::query("summing trades"))
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
