//! A tenant's trades (fills and settlements) and the PnL read from them.
//!
//! The reads the API serves and the worker's writes.

use chrono::{DateTime, Utc};
use polybot_core::Mode;
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

/// The trades summed per strategy, by strategy name; only those executed at
/// or before `until` when given (the engine time of a heartbeat, so that the
/// sums and that heartbeat's figures describe the same moment).
pub async fn totals_by_strategy(
    tx: &mut TenantTx,
    until: Option<DateTime<Utc>>,
) -> Result<Vec<StrategyTotals>, DbError> {
    sqlx::query_as::<_, StrategyTotals>(
        "SELECT strategy, count(*) AS trades, coalesce(sum(realized_pnl), 0) AS realized, \
                coalesce(sum(fee), 0) AS fees \
         FROM trades WHERE tenant_id = $1 AND ($2::timestamptz IS NULL OR executed_at <= $2) \
         GROUP BY strategy ORDER BY strategy",
    )
    .bind(tx.tenant().as_uuid())
    .bind(until)
    .fetch_all(&mut **tx)
    .await
    .map_err(DbError::query("summing trades"))
}

/// A trade to record.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTrade {
    pub id: Uuid,
    /// The opportunity acted on; none for a settlement.
    pub opportunity_id: Option<Uuid>,
    pub strategy: String,
    pub venue: String,
    pub market: String,
    /// `buy`, `sell` or `settle`.
    pub side: String,
    pub outcome: String,
    pub price: Decimal,
    pub size: Decimal,
    pub fee: Decimal,
    pub realized_pnl: Decimal,
    pub details: serde_json::Value,
    pub executed_at: DateTime<Utc>,
}

/// Inserts a batch in one statement (arrays unnested server-side), each row
/// with the fenced transaction's epoch and `mode`; ids already stored are
/// skipped, so a replayed batch writes nothing twice. Returns the number of
/// rows written.
pub async fn insert_batch(
    tx: &mut TenantTx,
    batch: &[NewTrade],
    mode: Mode,
) -> Result<u64, DbError> {
    if batch.is_empty() {
        return Ok(0);
    }
    let mut ids = Vec::with_capacity(batch.len());
    let mut opportunities = Vec::with_capacity(batch.len());
    let mut strategies = Vec::with_capacity(batch.len());
    let mut venues = Vec::with_capacity(batch.len());
    let mut markets = Vec::with_capacity(batch.len());
    let mut sides = Vec::with_capacity(batch.len());
    let mut outcomes = Vec::with_capacity(batch.len());
    let mut prices = Vec::with_capacity(batch.len());
    let mut sizes = Vec::with_capacity(batch.len());
    let mut fees = Vec::with_capacity(batch.len());
    let mut pnls = Vec::with_capacity(batch.len());
    let mut details = Vec::with_capacity(batch.len());
    let mut executed = Vec::with_capacity(batch.len());
    for t in batch {
        ids.push(t.id);
        opportunities.push(t.opportunity_id);
        strategies.push(t.strategy.as_str());
        venues.push(t.venue.as_str());
        markets.push(t.market.as_str());
        sides.push(t.side.as_str());
        outcomes.push(t.outcome.as_str());
        prices.push(t.price);
        sizes.push(t.size);
        fees.push(t.fee);
        pnls.push(t.realized_pnl);
        details.push(&t.details);
        executed.push(t.executed_at);
    }
    let result = sqlx::query(
        "INSERT INTO trades \
           (tenant_id, epoch, mode, id, opportunity_id, strategy, venue, market, side, outcome, \
            price, size, fee, realized_pnl, details, executed_at) \
         SELECT $1, $2, $3, * FROM unnest($4::uuid[], $5::uuid[], $6::text[], $7::text[], $8::text[], \
            $9::text[], $10::text[], $11::numeric[], $12::numeric[], $13::numeric[], $14::numeric[], \
            $15::jsonb[], $16::timestamptz[]) \
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(tx.tenant().as_uuid())
    .bind(tx.epoch())
    .bind(mode.as_str())
    .bind(&ids)
    .bind(&opportunities)
    .bind(&strategies)
    .bind(&venues)
    .bind(&markets)
    .bind(&sides)
    .bind(&outcomes)
    .bind(&prices)
    .bind(&sizes)
    .bind(&fees)
    .bind(&pnls)
    .bind(&details)
    .bind(&executed)
    .execute(&mut **tx)
    .await
    .map_err(DbError::query("inserting trades"))?;
    Ok(result.rows_affected())
}

/// A point of the cumulative realized PnL curve.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct PnlPoint {
    pub at: DateTime<Utc>,
    /// Realized PnL net of fees, summed up to and including this trade.
    pub total: Decimal,
}

/// Cumulative realized PnL net of fees after each trade of the 30 days up
/// to the newest trade, thinned to about `points` points (the last trade
/// always included), oldest first. The window ends at the data's own newest
/// trade, not at the wall clock, so a replay of a recorded day charts too.
pub async fn pnl_curve(tx: &mut TenantTx, points: i64) -> Result<Vec<PnlPoint>, DbError> {
    sqlx::query_as(
        "WITH c AS (SELECT executed_at, \
                           sum(coalesce(realized_pnl, 0) - fee) OVER (ORDER BY executed_at, id) AS total, \
                           row_number() OVER (ORDER BY executed_at, id) AS n, count(*) OVER () AS k \
                    FROM trades WHERE tenant_id = $1 AND executed_at > \
                         (SELECT max(executed_at) FROM trades WHERE tenant_id = $1) - interval '30 days') \
         SELECT executed_at AS at, total FROM c WHERE n % greatest(k / $2, 1) = 0 OR n = k ORDER BY n",
    )
    .bind(tx.tenant().as_uuid())
    .bind(points.max(1))
    .fetch_all(&mut **tx)
    .await
    .map_err(DbError::query("reading the tenant's PnL"))
}

/// One UTC day of trades.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct DailyPnl {
    pub day: chrono::NaiveDate,
    pub trades: i64,
    /// Realized PnL of the day, fees apart.
    pub realized: Decimal,
    pub fees: Decimal,
}

/// Realized PnL and fees per UTC day over the `days` days up to the newest
/// trade (the data's own time), oldest first; days without trades are absent.
pub async fn daily(tx: &mut TenantTx, days: i32) -> Result<Vec<DailyPnl>, DbError> {
    sqlx::query_as(
        "SELECT (executed_at AT TIME ZONE 'UTC')::date AS day, count(*) AS trades, \
                coalesce(sum(realized_pnl), 0) AS realized, coalesce(sum(fee), 0) AS fees \
         FROM trades WHERE tenant_id = $1 AND executed_at >= \
              (SELECT date_trunc('day', max(executed_at), 'UTC') FROM trades WHERE tenant_id = $1) \
              - make_interval(days => $2 - 1) \
         GROUP BY 1 ORDER BY 1",
    )
    .bind(tx.tenant().as_uuid())
    .bind(days.max(1))
    .fetch_all(&mut **tx)
    .await
    .map_err(DbError::query("reading the tenant's daily PnL"))
}
