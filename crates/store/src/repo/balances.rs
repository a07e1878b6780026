//! A tenant's cash per venue and asset, as its worker last wrote it.
//!
//! The reads the API serves live here; the worker's writes join them in this
//! module.

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
