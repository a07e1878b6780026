//! What a tenant's worker recorded, tenant-scoped and paginated:
//! `GET /tenants/{id}/opportunities`, `/trades`, `/balances`, `/pnl` and
//! `/pairs/refused` (cross-venue pairs never traded, with the reason).
//!
//! Every read runs in the tenant's transaction, so row level security is the
//! last word on what is visible; an operator token or the tenant's own token
//! may read, any other tenant's token gets 404 as if the tenant did not
//! exist. Lists are newest first with an opaque keyset cursor (like
//! `GET /tenants`). Money is `Decimal` end to end and sent as strings.

use axum::Json;
use axum::extract::{Query, State};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use polybot_core::validation::FieldError;
use polybot_core::worker::PnlSummary;
use polybot_store::TenantTx;
use polybot_store::repo::opportunities::{self, Opportunity};
use polybot_store::repo::trades::{self, Trade};
use polybot_store::repo::{balances, heartbeats, tenants};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::AppState;
use crate::auth::TenantAccess;
use crate::error::{ApiError, ApiResult};
use crate::paging::{decode_cursor, encode_cursor};

pub(crate) fn money(d: Decimal) -> String {
    d.normalize().to_string()
}

fn money_opt(d: Option<Decimal>) -> Option<String> {
    d.map(money)
}

// ---------------------------------------------------------------------------
// Paging
// ---------------------------------------------------------------------------

pub(crate) const DEFAULT_LIMIT: i64 = 50;
pub(crate) const MAX_LIMIT: i64 = 200;

/// A list's `limit` (default [`DEFAULT_LIMIT`], at most [`MAX_LIMIT`]) and
/// the position its `cursor` names (read by `decode`), each bad one a field
/// error pushed onto `errors`.
pub(crate) fn limit_and_after<C>(
    limit: Option<i64>,
    cursor: Option<&str>,
    decode: impl Fn(&str) -> Option<C>,
    errors: &mut Vec<FieldError>,
) -> (i64, Option<C>) {
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        errors.push(FieldError::new(
            "limit",
            format!("must be between 1 and {MAX_LIMIT}"),
        ));
    }
    let after = cursor.and_then(|c| {
        let decoded = decode(c);
        if decoded.is_none() {
            errors.push(FieldError::new(
                "cursor",
                "is not a cursor this API returned",
            ));
        }
        decoded
    });
    (limit, after)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// At most this many (1 to 200, default 50).
    limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Only this strategy's rows (complement_arb, cross_venue_arb, crypto_15m, news_arb).
    strategy: Option<String>,
}

struct Page {
    limit: i64,
    after: Option<(DateTime<Utc>, Uuid)>,
    strategy: Option<String>,
}

fn page(query: &PageQuery) -> ApiResult<Page> {
    let mut errors = Vec::new();
    let (limit, after) = limit_and_after(
        query.limit,
        query.cursor.as_deref(),
        decode_cursor,
        &mut errors,
    );
    if let Some(s) = &query.strategy
        && s.parse::<polybot_core::strategy::StrategyKind>().is_err()
    {
        errors.push(FieldError::new(
            "strategy",
            "must be one of complement_arb, cross_venue_arb, crypto_15m, news_arb",
        ));
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    Ok(Page {
        limit,
        after,
        strategy: query.strategy.clone(),
    })
}

/// Keeps `limit` items and the cursor of the last one if there were more.
pub(crate) fn split_page<T>(
    mut items: Vec<T>,
    limit: i64,
    key: impl Fn(&T) -> String,
) -> (Vec<T>, Option<String>) {
    if items.len() as i64 > limit {
        items.truncate(usize::try_from(limit).unwrap_or(0));
        let next = items.last().map(key);
        (items, next)
    } else {
        (items, None)
    }
}

/// The tenant's transaction, once it exists (the caller may see it: [`TenantAccess`]).
pub(crate) async fn open(state: &AppState, access: TenantAccess) -> ApiResult<TenantTx> {
    let mut tx = state.db.tenant(access.tenant).await?;
    if !tenants::exists(&mut tx).await? {
        tx.rollback().await?;
        return Err(ApiError::NotFound("tenant"));
    }
    Ok(tx)
}

// ---------------------------------------------------------------------------
// Opportunities
// ---------------------------------------------------------------------------

/// An opportunity a strategy found; `executed_at` is set when it was acted on.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OpportunityView {
    pub id: Uuid,
    pub strategy: String,
    /// The venue, or venues joined with `+` for a cross-venue pair.
    pub venue: String,
    /// The market, or markets joined with ` / `.
    pub market: String,
    pub description: String,
    /// Profit per unit after fees (a decimal string).
    pub edge: Option<String>,
    /// `edge × size` (a decimal string).
    pub expected_profit: Option<String>,
    /// Shares or contracts per leg (a decimal string).
    pub size: Option<String>,
    /// Legs as planned; `not_executed` says why an opportunity was not acted on.
    #[schema(value_type = Object)]
    pub details: Value,
    pub detected_at: DateTime<Utc>,
    pub executed_at: Option<DateTime<Utc>>,
    /// The lease epoch of the worker that wrote it.
    pub epoch: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct OpportunityPage {
    pub items: Vec<OpportunityView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

impl From<Opportunity> for OpportunityView {
    fn from(row: Opportunity) -> Self {
        OpportunityView {
            id: row.id,
            strategy: row.strategy,
            venue: row.venue,
            market: row.market,
            description: row.description,
            edge: money_opt(row.edge),
            expected_profit: money_opt(row.expected_profit),
            size: money_opt(row.size),
            details: row.details,
            detected_at: row.detected_at,
            executed_at: row.executed_at,
            epoch: row.epoch,
        }
    }
}

/// A tenant's opportunities, newest first.
#[utoipa::path(get, path = "/tenants/{id}/opportunities", operation_id = "list_opportunities", tag = "data",
    params(("id" = Uuid, Path, description = "the tenant's id"), PageQuery),
    responses(
        (status = 200, description = "a page of the tenant's opportunities, newest first", body = OpportunityPage),
        (status = 401, description = "no bearer token, or not a valid one", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such tenant, or not one this token may see", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "a field of the request is invalid", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn opportunities(
    State(state): State<AppState>,
    access: TenantAccess,
    Query(query): Query<PageQuery>,
) -> ApiResult<Json<OpportunityPage>> {
    let page = page(&query)?;
    let mut tx = open(&state, access).await?;
    let rows = opportunities::page(
        &mut tx,
        page.strategy.as_deref(),
        page.after,
        page.limit + 1,
    )
    .await?;
    tx.commit().await?;
    let items = rows.into_iter().map(OpportunityView::from).collect();
    let (items, next_cursor) = split_page(items, page.limit, |o: &OpportunityView| {
        encode_cursor(o.detected_at, o.id)
    });
    Ok(Json(OpportunityPage { items, next_cursor }))
}

// ---------------------------------------------------------------------------
// Refused cross-venue pairs
// ---------------------------------------------------------------------------

/// Most refused pairs listed at once.
const REFUSED_PAIRS_LIMIT: i64 = 500;

/// A Polymarket ↔ Kalshi pair cross-venue arbitrage matched and refused to
/// trade: their resolution source, window or polarity differ, or their
/// sources differ by a known basis risk the tenant's `basis_risk` refuses.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RefusedPairView {
    pub polymarket: String,
    pub kalshi: String,
    /// Why the pair is never traded.
    pub reason: String,
    /// The known basis risk it was refused for (e.g.
    /// `chainlink_vs_cf_benchmarks`), when that was the reason.
    pub basis_risk: Option<String>,
    /// When a worker last refused it.
    pub refused_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RefusedPairList {
    pub items: Vec<RefusedPairView>,
}

impl From<Opportunity> for RefusedPairView {
    fn from(row: Opportunity) -> Self {
        let refused = &row.details["refused"];
        let text = |field: &str| refused[field].as_str().map(str::to_owned);
        let (polymarket, kalshi) = row
            .market
            .split_once(" / ")
            .map_or((row.market.clone(), String::new()), |(p, k)| {
                (p.to_owned(), k.to_owned())
            });
        RefusedPairView {
            polymarket: text("polymarket").unwrap_or(polymarket),
            kalshi: text("kalshi").unwrap_or(kalshi),
            reason: text("reason").unwrap_or(row.description),
            basis_risk: text("basis_risk"),
            refused_at: row.detected_at,
        }
    }
}

/// The cross-venue pairs the tenant's workers refused to trade, each with
/// its latest reason, most recently refused first.
#[utoipa::path(get, path = "/tenants/{id}/pairs/refused", operation_id = "list_refused_pairs", tag = "data",
    params(("id" = Uuid, Path, description = "the tenant's id")),
    responses(
        (status = 200, description = "the refused pairs, most recently refused first", body = RefusedPairList),
        (status = 401, description = "no bearer token, or not a valid one", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such tenant, or not one this token may see", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn refused_pairs(
    State(state): State<AppState>,
    access: TenantAccess,
) -> ApiResult<Json<RefusedPairList>> {
    let mut tx = open(&state, access).await?;
    let rows = opportunities::refused_pairs(&mut tx, REFUSED_PAIRS_LIMIT).await?;
    tx.commit().await?;
    Ok(Json(RefusedPairList {
        items: rows.into_iter().map(RefusedPairView::from).collect(),
    }))
}

// ---------------------------------------------------------------------------
// Trades
// ---------------------------------------------------------------------------

/// A fill (paper or live), or a settlement (`side` = `settle`) that paid out
/// a resolved market.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TradeView {
    pub id: Uuid,
    pub opportunity_id: Option<Uuid>,
    pub strategy: String,
    pub venue: String,
    pub market: String,
    /// buy, sell or settle.
    pub side: String,
    pub outcome: Option<String>,
    /// Average price per share (a decimal string).
    pub price: String,
    pub size: String,
    pub fee: String,
    /// PnL this row realised: the fee (negative) for a buy, payout minus cost for a settlement.
    pub realized_pnl: Option<String>,
    /// paper or live.
    pub mode: String,
    #[schema(value_type = Object)]
    pub details: Value,
    pub executed_at: DateTime<Utc>,
    pub epoch: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TradePage {
    pub items: Vec<TradeView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

impl From<Trade> for TradeView {
    fn from(row: Trade) -> Self {
        TradeView {
            id: row.id,
            opportunity_id: row.opportunity_id,
            strategy: row.strategy,
            venue: row.venue,
            market: row.market,
            side: row.side,
            outcome: row.outcome,
            price: money(row.price),
            size: money(row.size),
            fee: money(row.fee),
            realized_pnl: money_opt(row.realized_pnl),
            mode: row.mode,
            details: row.details,
            executed_at: row.executed_at,
            epoch: row.epoch,
        }
    }
}

/// A tenant's trades, newest first.
#[utoipa::path(get, path = "/tenants/{id}/trades", operation_id = "list_trades", tag = "data",
    params(("id" = Uuid, Path, description = "the tenant's id"), PageQuery),
    responses(
        (status = 200, description = "a page of the tenant's trades, newest first", body = TradePage),
        (status = 401, description = "no bearer token, or not a valid one", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such tenant, or not one this token may see", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "a field of the request is invalid", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn trades(
    State(state): State<AppState>,
    access: TenantAccess,
    Query(query): Query<PageQuery>,
) -> ApiResult<Json<TradePage>> {
    let page = page(&query)?;
    let mut tx = open(&state, access).await?;
    let rows = trades::page(
        &mut tx,
        page.strategy.as_deref(),
        page.after,
        page.limit + 1,
    )
    .await?;
    tx.commit().await?;
    let items = rows.into_iter().map(TradeView::from).collect();
    let (items, next_cursor) = split_page(items, page.limit, |t: &TradeView| {
        encode_cursor(t.executed_at, t.id)
    });
    Ok(Json(TradePage { items, next_cursor }))
}

// ---------------------------------------------------------------------------
// Balances
// ---------------------------------------------------------------------------

/// Cash at one venue, as the worker last wrote it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BalanceView {
    pub venue: String,
    /// USDC on Polymarket, USD elsewhere.
    pub asset: String,
    /// A decimal string.
    pub amount: String,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BalancePage {
    pub items: Vec<BalanceView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BalanceQuery {
    /// At most this many (1 to 200, default 50).
    limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

fn encode_balance_cursor(venue: &str, asset: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{venue}|{asset}"))
}

fn decode_balance_cursor(text: &str) -> Option<(String, String)> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .ok()?;
    let raw = String::from_utf8(raw).ok()?;
    let (venue, asset) = raw.split_once('|')?;
    Some((venue.to_owned(), asset.to_owned()))
}

/// A tenant's balances by venue and asset.
#[utoipa::path(get, path = "/tenants/{id}/balances", operation_id = "list_balances", tag = "data",
    params(("id" = Uuid, Path, description = "the tenant's id"), BalanceQuery),
    responses(
        (status = 200, description = "a page of the tenant's balance snapshots", body = BalancePage),
        (status = 401, description = "no bearer token, or not a valid one", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such tenant, or not one this token may see", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "a field of the request is invalid", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn balances(
    State(state): State<AppState>,
    access: TenantAccess,
    Query(query): Query<BalanceQuery>,
) -> ApiResult<Json<BalancePage>> {
    let mut errors = Vec::new();
    let (limit, after) = limit_and_after(
        query.limit,
        query.cursor.as_deref(),
        decode_balance_cursor,
        &mut errors,
    );
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let mut tx = open(&state, access).await?;
    let rows = balances::page(
        &mut tx,
        after.as_ref().map(|(v, a)| (v.as_str(), a.as_str())),
        limit + 1,
    )
    .await?;
    tx.commit().await?;
    let items = rows
        .into_iter()
        .map(|b| BalanceView {
            venue: b.venue,
            asset: b.asset,
            amount: money(b.amount),
            updated_at: b.updated_at,
        })
        .collect();
    let (items, next_cursor) = split_page(items, limit, |b: &BalanceView| {
        encode_balance_cursor(&b.venue, &b.asset)
    });
    Ok(Json(BalancePage { items, next_cursor }))
}

// ---------------------------------------------------------------------------
// PnL
// ---------------------------------------------------------------------------

/// PnL of one strategy: its trades summed, and what the engine marks.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StrategyPnl {
    pub strategy: String,
    pub trades: i64,
    /// Realized PnL of its trades, fees apart.
    pub realized: String,
    pub fees: String,
    /// Its open positions at their marks minus their cost (from the heartbeat).
    pub unrealized: Option<String>,
    /// The part of `unrealized` locked in complete sets and hedged pairs.
    pub locked: Option<String>,
}

/// One open position as the engine marks it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PositionView {
    pub strategy: String,
    pub venue: String,
    pub market: String,
    pub outcome: String,
    pub quantity: String,
    pub avg_price: String,
    /// The best bid, else the last trade, else the average price.
    pub mark: String,
    /// How much of `quantity` is part of a complete set or a hedged pair,
    /// valued at what it pays at resolution (1) rather than at `mark`.
    pub locked: String,
}

/// A tenant's PnL. With a heartbeat, every figure is the engine's at one
/// moment (`data_time`), and `trades_realized` sums the trades up to that
/// moment, so the two agree; without one, the figures are the trades' sums.
///
/// `equity − starting_equity = realized + unrealized − fees`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PnlView {
    pub tenant_id: Uuid,
    /// Realized PnL: what sells and resolutions returned over the cost they
    /// closed, fees apart; a decimal string.
    pub realized: String,
    /// Open positions at their marks (complete sets and hedged pairs at 1,
    /// the rest at the best bid) minus their cost.
    pub unrealized: Option<String>,
    /// The part of `unrealized` locked by arbitrage: complete sets and
    /// hedged pairs, which pay 1 at resolution whatever happens.
    pub locked: Option<String>,
    /// Fees paid.
    pub fees: String,
    /// realized + unrealized − fees (realized − fees without a heartbeat).
    pub net: String,
    /// Today's PnL marked to market, today being the engine's day (UTC) on
    /// the data's own clock.
    pub daily: Option<String>,
    /// Cash plus positions at their marks.
    pub equity: Option<String>,
    pub starting_equity: Option<String>,
    /// When the engine reported these figures (the heartbeat's time).
    pub as_of: Option<DateTime<Utc>>,
    /// The engine's clock at that heartbeat: the data's own time (a replay's
    /// recorded time).
    pub data_time: Option<DateTime<Utc>>,
    /// `heartbeat` or `trades`: where `realized` comes from.
    pub source: String,
    /// Realised PnL summed over the stored trades up to `data_time`.
    pub trades_realized: String,
    /// Fees summed over the same trades.
    pub trades_fees: String,
    pub trades: i64,
    pub by_strategy: Vec<StrategyPnl>,
    pub positions: Vec<PositionView>,
}

/// The newest heartbeat's PnL, parsed.
fn reported(pnl: Option<&Value>) -> Option<PnlSummary> {
    serde_json::from_value(pnl?.clone()).ok()
}

/// A tenant's PnL as [`PnlView`] describes it (also the dashboard's).
pub async fn read_pnl(tx: &mut TenantTx) -> ApiResult<PnlView> {
    let id = tx.tenant().as_uuid();
    let heartbeat = heartbeats::reported_pnl(tx).await?;
    let data_time = heartbeat
        .as_ref()
        .and_then(|h| h.clock)
        .and_then(DateTime::from_timestamp_millis);
    let by_strategy = trades::totals_by_strategy(tx, data_time).await?;
    let trades: i64 = by_strategy.iter().map(|r| r.trades).sum();
    let trades_realized: Decimal = by_strategy.iter().map(|r| r.realized).sum();
    let trades_fees: Decimal = by_strategy.iter().map(|r| r.fees).sum();
    let as_of = heartbeat.as_ref().map(|h| h.at);
    let summary = heartbeat.and_then(|h| reported(h.pnl.as_ref()));
    let Some(summary) = summary else {
        return Ok(PnlView {
            tenant_id: id,
            realized: money(trades_realized),
            unrealized: None,
            locked: None,
            fees: money(trades_fees),
            net: money(trades_realized - trades_fees),
            daily: None,
            equity: None,
            starting_equity: None,
            as_of: None,
            data_time: None,
            source: "trades".to_owned(),
            trades_realized: money(trades_realized),
            trades_fees: money(trades_fees),
            trades,
            by_strategy: by_strategy
                .into_iter()
                .map(|t| StrategyPnl {
                    strategy: t.strategy,
                    trades: t.trades,
                    realized: money(t.realized),
                    fees: money(t.fees),
                    unrealized: None,
                    locked: None,
                })
                .collect(),
            positions: Vec::new(),
        });
    };
    let mut strategies: Vec<StrategyPnl> = by_strategy
        .into_iter()
        .map(|t| {
            let engine = summary.by_strategy.get(&t.strategy);
            StrategyPnl {
                unrealized: engine.map(|e| money(e.unrealized)),
                locked: engine.map(|e| money(e.locked)),
                strategy: t.strategy,
                trades: t.trades,
                realized: money(t.realized),
                fees: money(t.fees),
            }
        })
        .collect();
    for (name, engine) in &summary.by_strategy {
        if !strategies.iter().any(|s| &s.strategy == name) {
            strategies.push(StrategyPnl {
                strategy: name.clone(),
                trades: 0,
                realized: money(engine.realized),
                fees: money(engine.fees),
                unrealized: Some(money(engine.unrealized)),
                locked: Some(money(engine.locked)),
            });
        }
    }
    Ok(PnlView {
        tenant_id: id,
        realized: money(summary.realized),
        unrealized: Some(money(summary.unrealized)),
        locked: Some(money(summary.locked)),
        fees: money(summary.fees),
        net: money(summary.realized + summary.unrealized - summary.fees),
        daily: Some(money(summary.daily)),
        equity: Some(money(summary.equity)),
        starting_equity: Some(money(summary.starting_equity)),
        as_of,
        data_time,
        source: "heartbeat".to_owned(),
        trades_realized: money(trades_realized),
        trades_fees: money(trades_fees),
        trades,
        by_strategy: strategies,
        positions: summary
            .positions
            .into_iter()
            .map(|p| PositionView {
                strategy: p.strategy,
                venue: p.venue,
                market: p.market,
                outcome: p.outcome,
                quantity: money(p.quantity),
                avg_price: money(p.avg_price),
                mark: money(p.mark),
                locked: money(p.locked),
            })
            .collect(),
    })
}

/// A tenant's realised and unrealised PnL, fees, equity and open positions.
#[utoipa::path(get, path = "/tenants/{id}/pnl", operation_id = "get_pnl", tag = "data",
    params(("id" = Uuid, Path, description = "the tenant's id")),
    responses(
        (status = 200, description = "the tenant's profit and loss, by strategy, with its open positions", body = PnlView),
        (status = 401, description = "no bearer token, or not a valid one", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such tenant, or not one this token may see", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn pnl(State(state): State<AppState>, access: TenantAccess) -> ApiResult<Json<PnlView>> {
    let mut tx = open(&state, access).await?;
    let view = read_pnl(&mut tx).await?;
    tx.commit().await?;
    Ok(Json(view))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_round_trips_and_garbage_is_not_a_cursor() {
        let at = DateTime::parse_from_rfc3339("2026-04-29T13:00:02.300123Z")
            .unwrap()
            .with_timezone(&Utc);
        let id = Uuid::new_v4();
        assert_eq!(decode_cursor(&encode_cursor(at, id)), Some((at, id)));
        assert_eq!(decode_cursor("not a cursor"), None);
        assert_eq!(
            decode_balance_cursor(&encode_balance_cursor("kalshi", "USD")),
            Some(("kalshi".to_owned(), "USD".to_owned()))
        );
    }
}
