//! Opportunities a tenant's strategies found, and whether they were acted on.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use uuid::Uuid;

use crate::{DbError, TenantTx};

/// An opportunity to record.
#[derive(Debug, Clone, PartialEq)]
pub struct NewOpportunity {
    pub id: Uuid,
    pub strategy: String,
    pub venue: String,
    pub market: String,
    pub description: String,
    pub edge: Option<Decimal>,
    pub expected_profit: Option<Decimal>,
    pub size: Option<Decimal>,
    pub details: serde_json::Value,
    pub detected_at: DateTime<Utc>,
    pub executed_at: Option<DateTime<Utc>>,
}

/// An opportunity as stored.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Opportunity {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub strategy: String,
    pub venue: String,
    pub market: String,
    pub description: String,
    pub edge: Option<Decimal>,
    pub expected_profit: Option<Decimal>,
    pub size: Option<Decimal>,
    pub details: serde_json::Value,
    pub detected_at: DateTime<Utc>,
    pub executed_at: Option<DateTime<Utc>>,
    pub epoch: Option<i64>,
}

/// Inserts a batch in one statement (arrays unnested server-side); ids already
/// stored are skipped, so a replayed batch writes nothing twice. Returns the
/// number of rows written.
pub async fn insert_batch(tx: &mut TenantTx, batch: &[NewOpportunity]) -> Result<u64, DbError> {
    if batch.is_empty() {
        return Ok(0);
    }
    let tenant = tx.tenant().as_uuid();
    let epoch = tx.epoch();
    let mut ids = Vec::with_capacity(batch.len());
    let mut strategies = Vec::with_capacity(batch.len());
    let mut venues = Vec::with_capacity(batch.len());
    let mut markets = Vec::with_capacity(batch.len());
    let mut descriptions = Vec::with_capacity(batch.len());
    let mut edges = Vec::with_capacity(batch.len());
    let mut profits = Vec::with_capacity(batch.len());
    let mut sizes = Vec::with_capacity(batch.len());
    let mut details = Vec::with_capacity(batch.len());
    let mut detected = Vec::with_capacity(batch.len());
    let mut executed = Vec::with_capacity(batch.len());
    for o in batch {
        ids.push(o.id);
        strategies.push(o.strategy.as_str());
        venues.push(o.venue.as_str());
        markets.push(o.market.as_str());
        descriptions.push(o.description.as_str());
        edges.push(o.edge);
        profits.push(o.expected_profit);
        sizes.push(o.size);
        details.push(o.details.clone());
        detected.push(o.detected_at);
        executed.push(o.executed_at);
    }
    let result = sqlx::query(
        "INSERT INTO opportunities \
           (tenant_id, epoch, id, strategy, venue, market, description, edge, expected_profit, size, \
            details, detected_at, executed_at) \
         SELECT $1, $2, * FROM unnest($3::uuid[], $4::text[], $5::text[], $6::text[], $7::text[], \
            $8::numeric[], $9::numeric[], $10::numeric[], $11::jsonb[], $12::timestamptz[], $13::timestamptz[]) \
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(tenant)
    .bind(epoch)
    .bind(&ids)
    .bind(&strategies)
    .bind(&venues)
    .bind(&markets)
    .bind(&descriptions)
    .bind(&edges)
    .bind(&profits)
    .bind(&sizes)
    .bind(&details)
    .bind(&detected)
    .bind(&executed)
    .execute(&mut **tx)
    .await
    .map_err(DbError::query("inserting opportunities"))?;
    Ok(result.rows_affected())
}

/// The newest opportunities first, at most `limit`, detected before `before` if given
/// (refused cross-venue pairs are not opportunities: see [`refused_pairs`]).
pub async fn list(
    tx: &mut TenantTx,
    limit: i64,
    before: Option<DateTime<Utc>>,
) -> Result<Vec<Opportunity>, DbError> {
    sqlx::query_as::<_, Opportunity>(
        "SELECT id, tenant_id, strategy, venue, market, description, edge, expected_profit, size, \
                details, detected_at, executed_at, epoch \
         FROM opportunities \
         WHERE tenant_id = $1 AND details -> 'refused' IS NULL \
           AND ($2::timestamptz IS NULL OR detected_at < $2) \
         ORDER BY detected_at DESC, id DESC LIMIT $3",
    )
    .bind(tx.tenant().as_uuid())
    .bind(before)
    .bind(limit)
    .fetch_all(&mut **tx)
    .await
    .map_err(DbError::query("listing opportunities"))
}

/// The cross-venue pairs the tenant's workers refused to trade (rows whose
/// `details` carry `refused`, see the worker's recorder): each pair's
/// latest refusal, newest first, at most `limit`.
pub async fn refused_pairs(tx: &mut TenantTx, limit: i64) -> Result<Vec<Opportunity>, DbError> {
    sqlx::query_as::<_, Opportunity>(
        "SELECT id, tenant_id, strategy, venue, market, description, edge, expected_profit, size, \
                details, detected_at, executed_at, epoch \
         FROM (SELECT DISTINCT ON (market) id, tenant_id, strategy, venue, market, description, \
                      edge, expected_profit, size, details, detected_at, executed_at, epoch \
               FROM opportunities \
               WHERE tenant_id = $1 AND strategy = 'cross_venue_arb' \
                 AND details -> 'refused' IS NOT NULL \
               ORDER BY market, detected_at DESC, id DESC) latest \
         ORDER BY detected_at DESC, id DESC LIMIT $2",
    )
    .bind(tx.tenant().as_uuid())
    .bind(limit)
    .fetch_all(&mut **tx)
    .await
    .map_err(DbError::query("listing refused pairs"))
}

/// A page of opportunities for the API: newest first, only `strategy`'s if
/// given, strictly after the keyset position `after` (detection time, id)
/// in that order, at most `limit`; refused cross-venue pairs are left out
/// (see [`refused_pairs`]).
pub async fn page(
    tx: &mut TenantTx,
    strategy: Option<&str>,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> Result<Vec<Opportunity>, DbError> {
    let (after_at, after_id) = after.unzip();
    sqlx::query_as::<_, Opportunity>(
        "SELECT id, tenant_id, strategy, venue, market, description, edge, expected_profit, size, \
                details, detected_at, executed_at, epoch \
         FROM opportunities \
         WHERE tenant_id = $1 AND details -> 'refused' IS NULL \
           AND ($2::text IS NULL OR strategy = $2) \
           AND ($3::timestamptz IS NULL OR (detected_at, id) < ($3, $4)) \
         ORDER BY detected_at DESC, id DESC LIMIT $5",
    )
    .bind(tx.tenant().as_uuid())
    .bind(strategy)
    .bind(after_at)
    .bind(after_id)
    .bind(limit)
    .fetch_all(&mut **tx)
    .await
    .map_err(DbError::query("listing opportunities"))
}
