//! A tenant's cash per venue and asset, as its worker last wrote it.
//!
//! The reads the API serves and the worker's writes.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use crate::{DbError, TenantTx};

/// A balance as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Balance {
    pub venue: String,
    pub asset: String,
    pub amount: Decimal,
    pub updated_at: DateTime<Utc>,
}

/// A page of balances for the API, by venue then asset, strictly after the
/// keyset position `after` (venue, asset), at most `limit`.
pub async fn page(
    tx: &mut TenantTx,
    after: Option<(&str, &str)>,
    limit: i64,
) -> Result<Vec<Balance>, DbError> {
    let (after_venue, after_asset) = after.unzip();
    sqlx::query_as::<_, Balance>(
        "SELECT venue, asset, amount, updated_at FROM balances \
         WHERE tenant_id = $1 AND ($2::text IS NULL OR (venue, asset) > ($2, $3)) \
         ORDER BY venue, asset LIMIT $4",
    )
    .bind(tx.tenant().as_uuid())
    .bind(after_venue)
    .bind(after_asset)
    .bind(limit)
    .fetch_all(&mut **tx)
    .await
    .map_err(DbError::query("listing balances"))
}

/// A balance to set.
#[derive(Debug, Clone, PartialEq)]
pub struct NewBalance {
    pub venue: String,
    /// The currency the venue holds the cash in (`USDC`, `USD`).
    pub asset: String,
    pub amount: Decimal,
}

/// Sets each balance in one statement, with the fenced transaction's epoch.
/// Returns the number of rows written.
pub async fn upsert(tx: &mut TenantTx, balances: &[NewBalance]) -> Result<u64, DbError> {
    if balances.is_empty() {
        return Ok(0);
    }
    let venues: Vec<&str> = balances.iter().map(|b| b.venue.as_str()).collect();
    let assets: Vec<&str> = balances.iter().map(|b| b.asset.as_str()).collect();
    let amounts: Vec<Decimal> = balances.iter().map(|b| b.amount).collect();
    let result = sqlx::query(
        "INSERT INTO balances (tenant_id, epoch, venue, asset, amount) \
         SELECT $1, $2, * FROM unnest($3::text[], $4::text[], $5::numeric[]) \
         ON CONFLICT (tenant_id, venue, asset) DO UPDATE \
           SET amount = EXCLUDED.amount, epoch = EXCLUDED.epoch, updated_at = now()",
    )
    .bind(tx.tenant().as_uuid())
    .bind(tx.epoch())
    .bind(&venues)
    .bind(&assets)
    .bind(&amounts)
    .execute(&mut **tx)
    .await
    .map_err(DbError::query("updating balances"))?;
    Ok(result.rows_affected())
}
