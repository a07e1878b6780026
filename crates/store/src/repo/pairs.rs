//! A tenant's paired-position ledger: each cross-venue pair its worker sent,
//! its legs, how it ended and what it locks in or lost.
//!
//! The worker writes a pair `open` before it sends either leg
//! ([`open`]), settles it when the legs answered and any repair is done
//! ([`settle`]), and on start finds the pairs a stopped predecessor left
//! open ([`open_pairs`]). The API reads pages of it ([`page`]).

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde_json::Value;
use uuid::Uuid;

use crate::{DbError, TenantTx};

/// A pair as stored.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Pair {
    pub id: Uuid,
    pub epoch: i64,
    pub strategy: String,
    /// The engine's opportunity number within the worker's run.
    pub opportunity: i64,
    /// open, locked, completed, unwound, broken or unfilled.
    pub status: String,
    /// Complete sets held (the smaller leg).
    pub matched: Decimal,
    pub locked_edge: Decimal,
    pub realised_loss: Decimal,
    /// Every order of the pair, entries first.
    pub legs: Value,
    /// What happens when the markets resolve.
    pub resolution: String,
    /// Why the pair is broken, or how it was recovered.
    pub note: Option<String>,
    pub opened_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Records a pair about to be sent, `open`, with the fenced transaction's
/// epoch (a transaction without one is refused by the table). Writing the
/// same id again changes nothing.
pub async fn open(
    tx: &mut TenantTx,
    id: Uuid,
    strategy: &str,
    opportunity: i64,
    legs: &Value,
) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO paired_positions (id, tenant_id, epoch, strategy, opportunity, status, legs) \
         VALUES ($1, $2, $3, $4, $5, 'open', $6) ON CONFLICT (id) DO NOTHING",
    )
    .bind(id)
    .bind(tx.tenant().as_uuid())
    .bind(tx.epoch())
    .bind(strategy)
    .bind(opportunity)
    .bind(legs)
    .execute(&mut **tx)
    .await
    .map_err(DbError::query("opening a paired position"))?;
    Ok(())
}

/// How a pair ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Settled<'a> {
    pub status: &'a str,
    pub matched: Decimal,
    pub locked_edge: Decimal,
    pub realised_loss: Decimal,
    pub legs: &'a Value,
    pub resolution: &'a str,
    pub note: Option<&'a str>,
}

/// Writes how the pair ended. Returns whether the pair was found.
pub async fn settle(tx: &mut TenantTx, id: Uuid, settled: &Settled<'_>) -> Result<bool, DbError> {
    let result = sqlx::query(
        "UPDATE paired_positions SET status = $3, matched = $4, locked_edge = $5, \
                realised_loss = $6, legs = $7, resolution = $8, note = $9, updated_at = now() \
         WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tx.tenant().as_uuid())
    .bind(id)
    .bind(settled.status)
    .bind(settled.matched)
    .bind(settled.locked_edge)
    .bind(settled.realised_loss)
    .bind(settled.legs)
    .bind(settled.resolution)
    .bind(settled.note)
    .execute(&mut **tx)
    .await
    .map_err(DbError::query("settling a paired position"))?;
    Ok(result.rows_affected() == 1)
}

/// The pairs still `open` (a worker stopped mid-pair), oldest first.
pub async fn open_pairs(tx: &mut TenantTx) -> Result<Vec<Pair>, DbError> {
    sqlx::query_as::<_, Pair>(
        "SELECT id, epoch, strategy, opportunity, status, matched, locked_edge, \
                realised_loss, legs, resolution, note, opened_at, updated_at \
         FROM paired_positions WHERE tenant_id = $1 AND status = 'open' ORDER BY opened_at, id",
    )
    .bind(tx.tenant().as_uuid())
    .fetch_all(&mut **tx)
    .await
    .map_err(DbError::query("listing open paired positions"))
}

/// A page of pairs for the API: newest first, only those in `status` if
/// given, strictly after the keyset position `after` (opened at, id), at
/// most `limit`.
pub async fn page(
    tx: &mut TenantTx,
    status: Option<&str>,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> Result<Vec<Pair>, DbError> {
    let (after_at, after_id) = after.unzip();
    sqlx::query_as::<_, Pair>(
        "SELECT id, epoch, strategy, opportunity, status, matched, locked_edge, \
                realised_loss, legs, resolution, note, opened_at, updated_at \
         FROM paired_positions \
         WHERE tenant_id = $1 AND ($2::text IS NULL OR status = $2) \
           AND ($3::timestamptz IS NULL OR (opened_at, id) < ($3, $4)) \
         ORDER BY opened_at DESC, id DESC LIMIT $5",
    )
    .bind(tx.tenant().as_uuid())
    .bind(status)
    .bind(after_at)
    .bind(after_id)
    .bind(limit)
    .fetch_all(&mut **tx)
    .await
    .map_err(DbError::query("listing paired positions"))
}
