//! A tenant's recent activity as its dashboard page shows it: the newest
//! opportunities, trades and audit entries, its balances, and its cumulative
//! realized PnL over the last 30 days. Every read takes the tenant's
//! transaction.
//!
//! The timeline is in [`super::runtime`]; the figures (counts, PnL totals)
//! in [`super::fleet`].

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde_json::Value;

use crate::{DbError, TenantTx};

/// An opportunity as the dashboard lists it.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct OpportunityLine {
    pub detected_at: DateTime<Utc>,
    pub strategy: String,
    pub venue: String,
    pub market: String,
    pub description: String,
    pub edge: Option<Decimal>,
    pub expected_profit: Option<Decimal>,
    pub size: Option<Decimal>,
    pub executed_at: Option<DateTime<Utc>>,
}

/// A trade as the dashboard lists it.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct TradeLine {
    pub executed_at: DateTime<Utc>,
    pub strategy: String,
    pub venue: String,
    pub market: String,
    pub side: String,
    pub outcome: Option<String>,
    pub price: Decimal,
    pub size: Decimal,
    pub fee: Decimal,
    pub realized_pnl: Option<Decimal>,
    pub mode: String,
}

/// A balance.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct BalanceLine {
    pub venue: String,
    pub asset: String,
    pub amount: Decimal,
    pub updated_at: DateTime<Utc>,
}

/// A point of the cumulative realized PnL curve.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct PnlPoint {
    pub at: DateTime<Utc>,
    pub total: Decimal,
}

/// An audit log entry.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct AuditLine {
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub details: Value,
}

/// The newest `limit` opportunities, newest first.
pub async fn recent_opportunities(
    tx: &mut TenantTx,
    limit: i64,
) -> Result<Vec<OpportunityLine>, DbError> {
    sqlx::query_as(
        "SELECT detected_at, strategy, venue, market, description, edge, expected_profit, size, executed_at \
         FROM opportunities WHERE tenant_id = $1 ORDER BY detected_at DESC LIMIT $2",
    )
    .bind(tx.tenant().as_uuid())
    .bind(limit)
    .fetch_all(&mut **tx)
    .await
    .map_err(DbError::query("reading the tenant's opportunities"))
}

/// The newest `limit` trades, newest first.
pub async fn recent_trades(tx: &mut TenantTx, limit: i64) -> Result<Vec<TradeLine>, DbError> {
    sqlx::query_as(
        "SELECT executed_at, strategy, venue, market, side, outcome, price, size, fee, realized_pnl, mode \
         FROM trades WHERE tenant_id = $1 ORDER BY executed_at DESC LIMIT $2",
    )
    .bind(tx.tenant().as_uuid())
    .bind(limit)
    .fetch_all(&mut **tx)
    .await
    .map_err(DbError::query("reading the tenant's trades"))
}

/// Every balance, by venue and asset.
pub async fn balances(tx: &mut TenantTx) -> Result<Vec<BalanceLine>, DbError> {
    sqlx::query_as(
        "SELECT venue, asset, amount, updated_at FROM balances WHERE tenant_id = $1 ORDER BY venue, asset",
    )
    .bind(tx.tenant().as_uuid())
    .fetch_all(&mut **tx)
    .await
    .map_err(DbError::query("reading the tenant's balances"))
}

/// Cumulative realized PnL after each trade of the last 30 days, thinned
/// to about `points` points (the last trade always included), oldest first.
pub async fn pnl_curve(tx: &mut TenantTx, points: i64) -> Result<Vec<PnlPoint>, DbError> {
    sqlx::query_as(
        "WITH c AS (SELECT executed_at, sum(coalesce(realized_pnl, 0)) OVER (ORDER BY executed_at, id) AS total, \
                           row_number() OVER (ORDER BY executed_at, id) AS n, count(*) OVER () AS k \
                    FROM trades WHERE tenant_id = $1 AND executed_at > now() - interval '30 days') \
         SELECT executed_at AS at, total FROM c WHERE n % greatest(k / $2, 1) = 0 OR n = k ORDER BY n",
    )
    .bind(tx.tenant().as_uuid())
    .bind(points.max(1))
    .fetch_all(&mut **tx)
    .await
    .map_err(DbError::query("reading the tenant's PnL"))
}

/// The newest `limit` audit entries, newest first.
pub async fn recent_audit(tx: &mut TenantTx, limit: i64) -> Result<Vec<AuditLine>, DbError> {
    sqlx::query_as(
        "SELECT at, actor, action, details FROM audit_log WHERE tenant_id = $1 ORDER BY at DESC, id DESC LIMIT $2",
    )
    .bind(tx.tenant().as_uuid())
    .bind(limit)
    .fetch_all(&mut **tx)
    .await
    .map_err(DbError::query("reading the tenant's audit log"))
}
