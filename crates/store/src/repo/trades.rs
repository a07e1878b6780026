//! Trades: a tenant's fills and settlements, written by its worker.

use chrono::{DateTime, Utc};
use polybot_core::Mode;
use rust_decimal::Decimal;
use uuid::Uuid;

use crate::{DbError, TenantTx};

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
