//! The Kalshi feed: discovers the markets the plan names (the open markets
//! of the 15-minute series, curated tickers, a bounded set of open markets
//! for complement arbitrage), emits their definitions, then polls their
//! order books (bids only; the engine mirrors the asks).

use std::collections::BTreeMap;

use polybot_engine::{Clock, Event, EventKind, MarketDef, MarketId, Timestamp};
use polybot_venues::Kalshi;
use polybot_venues::connectors::kalshi::KalshiMarketsQuery;
use polybot_venues::model::KalshiMarket;
use tokio::time::Instant;

use super::plan::{FeedPlan, KALSHI};
use super::translate::{book_event, kalshi_market_def};
use super::{Ctx, LiveSettings};
use crate::source::SystemClock;

pub(super) async fn kalshi_feed(ctx: Ctx, kalshi: Kalshi, plan: FeedPlan, settings: LiveSettings) {
    let mut followed: BTreeMap<MarketId, Option<Timestamp>> = BTreeMap::new();
    let mut last_discovery: Option<Instant> = None;
    loop {
        if last_discovery.is_none_or(|at| at.elapsed() >= settings.rediscover_every) {
            last_discovery = Some(Instant::now());
            for def in discover_kalshi(&ctx, &kalshi, &plan, &settings).await {
                if followed.contains_key(&def.id) {
                    continue;
                }
                followed.insert(def.id.clone(), def.closes_at);
                if !ctx
                    .emit(Event::new(
                        SystemClock.now(),
                        EventKind::Market(Box::new(def)),
                    ))
                    .await
                {
                    return;
                }
            }
        }
        let now = SystemClock.now();
        followed.retain(|_, closes| closes.is_none_or(|c| c.0 + 60_000 > now.0));
        let tickers: Vec<MarketId> = followed.keys().cloned().collect();
        for ticker in tickers {
            match kalshi.orderbook(ticker.as_str()).await {
                Ok(book) => {
                    ctx.shared.ok(KALSHI);
                    let ts = SystemClock.now();
                    for (outcome, side) in [(0, &book.yes), (1, &book.no)] {
                        if !ctx.emit(book_event(ts, &ticker, outcome, side)).await {
                            return;
                        }
                    }
                }
                Err(e) => ctx.shared.venue_error(KALSHI, &e),
            }
            if ctx.cancel.is_cancelled() {
                return;
            }
        }
        if !ctx.pause(plan.book_every).await {
            return;
        }
    }
}

async fn discover_kalshi(
    ctx: &Ctx,
    kalshi: &Kalshi,
    plan: &FeedPlan,
    settings: &LiveSettings,
) -> Vec<MarketDef> {
    let mut out = Vec::new();
    let open = |m: &KalshiMarket| matches!(m.status.as_str(), "active" | "open" | "initialized");
    for (series, asset) in &plan.kalshi_series {
        let query = KalshiMarketsQuery {
            limit: Some(100),
            series_ticker: Some(series.clone()),
            status: Some("open".to_owned()),
            ..KalshiMarketsQuery::default()
        };
        match kalshi.all_markets(&query).await {
            Ok(markets) => {
                ctx.shared.ok(KALSHI);
                out.extend(
                    markets
                        .iter()
                        .filter(|m| open(m))
                        .map(|m| kalshi_market_def(m, Some(asset))),
                );
            }
            Err(e) => ctx.shared.venue_error(KALSHI, &e),
        }
    }
    for ticker in &plan.kalshi_tickers {
        match kalshi.market(ticker).await {
            Ok(m) => {
                ctx.shared.ok(KALSHI);
                out.push(kalshi_market_def(&m, None));
            }
            Err(e) => ctx.shared.venue_error(KALSHI, &e),
        }
    }
    if plan.complement_kalshi {
        let query = KalshiMarketsQuery {
            limit: Some(u32::try_from(settings.complement_markets).unwrap_or(100)),
            status: Some("open".to_owned()),
            ..KalshiMarketsQuery::default()
        };
        match kalshi.markets_page(&query, None).await {
            Ok(page) => {
                ctx.shared.ok(KALSHI);
                out.extend(
                    page.markets
                        .iter()
                        .filter(|m| open(m))
                        .take(settings.complement_markets)
                        .map(|m| kalshi_market_def(m, None)),
                );
            }
            Err(e) => ctx.shared.venue_error(KALSHI, &e),
        }
    }
    out
}
