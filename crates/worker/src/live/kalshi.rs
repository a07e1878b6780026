//! The Kalshi feed: discovers the markets the plan names (the open markets
//! of the 15-minute series, curated tickers, a bounded set of open markets
//! for complement arbitrage), emits their definitions, then follows their
//! order books (bids only; the engine mirrors the asks):
//!
//! - with a Kalshi key ([`LiveSettings::kalshi_ws_key`]), over Kalshi's
//!   WebSocket ([`spawn_kalshi_stream`]): each market's snapshot, then its
//!   deltas, resynced from a fresh snapshot after a sequence gap, and its
//!   trades; markets found by a later discovery are added to the stream;
//! - without one, by polling `GET /markets/{ticker}/orderbook` every
//!   `book_every` (Kalshi authenticates every WebSocket, public channels
//!   included).
//!
//! Each definition carries its series' taker rate (`GET /series`, cached
//! per series for the feed's life); a market whose series' fee schedule
//! cannot be read or is not one the platform prices is left out (and
//! retried at the next discovery), never given a guessed fee.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use polybot_core::fees::KalshiSeriesFees;

use polybot_engine::{Clock, Event, EventKind, MarketDef, MarketId, Timestamp};
use polybot_venues::Kalshi;
use polybot_venues::connectors::kalshi::{KalshiMarketsQuery, series_of_event};
use polybot_venues::model::KalshiMarket;
use polybot_venues::signing::kalshi::KalshiSigner;
use polybot_venues::stream::{KalshiStreamConfig, MarketEvent, StreamOptions, spawn_kalshi_stream};
use tokio::time::Instant;

use super::plan::{FeedPlan, KALSHI};
use super::translate::{book_event, kalshi_market_def, stream_event};
use super::{Ctx, LiveSettings};
use crate::source::SystemClock;

pub(super) async fn kalshi_feed(ctx: Ctx, kalshi: Kalshi, plan: FeedPlan, settings: LiveSettings) {
    match settings.kalshi_ws_key.clone() {
        Some(signer) => kalshi_stream_feed(ctx, kalshi, plan, settings, signer).await,
        None => kalshi_poll_feed(ctx, kalshi, plan, settings).await,
    }
}

/// Books over Kalshi's WebSocket; discovery stays on REST.
async fn kalshi_stream_feed(
    ctx: Ctx,
    kalshi: Kalshi,
    plan: FeedPlan,
    settings: LiveSettings,
    signer: Arc<KalshiSigner>,
) {
    let (handle, mut events) = spawn_kalshi_stream(
        &settings.endpoints,
        signer,
        Vec::new(),
        KalshiStreamConfig::default(),
        StreamOptions::default(),
        ctx.cancel.child_token(),
    );
    let mut followed: BTreeMap<MarketId, Option<Timestamp>> = BTreeMap::new();
    // Each market's two books, as the stream names them.
    let mut books: HashMap<String, (MarketId, usize)> = HashMap::new();
    let mut fees = SeriesFees::default();
    let mut discovery = tokio::time::interval(settings.rediscover_every);
    discovery.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    'feed: loop {
        tokio::select! {
            () = ctx.cancel.cancelled() => break,
            _ = discovery.tick() => {
                let mut added = Vec::new();
                for def in discover_kalshi(&ctx, &kalshi, &plan, &settings, &mut fees).await {
                    if followed.contains_key(&def.id) {
                        continue;
                    }
                    followed.insert(def.id.clone(), def.closes_at);
                    books.insert(format!("{}:yes", def.id.as_str()), (def.id.clone(), 0));
                    books.insert(format!("{}:no", def.id.as_str()), (def.id.clone(), 1));
                    added.push(def.id.as_str().to_owned());
                    let event = Event::new(SystemClock.now(), EventKind::Market(Box::new(def)));
                    if !ctx.emit(event).await {
                        break 'feed;
                    }
                }
                let now = SystemClock.now();
                followed.retain(|_, closes| closes.is_none_or(|c| c.0 + 60_000 > now.0));
                books.retain(|_, (market, _)| followed.contains_key(market));
                if !added.is_empty() && !handle.subscribe(added) {
                    break;
                }
            }
            message = events.recv() => {
                let Some(message) = message else { break };
                match &message {
                    MarketEvent::Connected { connection } => {
                        tracing::info!(connection, "Kalshi market stream connected");
                        ctx.shared.ok(KALSHI);
                        continue;
                    }
                    // A lost connection (reconnecting) or a gap (resyncing).
                    MarketEvent::Error(e) => {
                        ctx.shared.venue_error(KALSHI, e);
                        continue;
                    }
                    _ => {}
                }
                if let Some(event) = stream_event(&books, SystemClock.now(), &message) {
                    ctx.shared.ok(KALSHI);
                    if !ctx.emit(event).await {
                        break;
                    }
                }
            }
        }
    }
    handle.shutdown().await;
}

/// Books polled over REST, every `book_every`.
async fn kalshi_poll_feed(ctx: Ctx, kalshi: Kalshi, plan: FeedPlan, settings: LiveSettings) {
    let mut followed: BTreeMap<MarketId, Option<Timestamp>> = BTreeMap::new();
    let mut last_discovery: Option<Instant> = None;
    let mut fees = SeriesFees::default();
    loop {
        if last_discovery.is_none_or(|at| at.elapsed() >= settings.rediscover_every) {
            last_discovery = Some(Instant::now());
            for def in discover_kalshi(&ctx, &kalshi, &plan, &settings, &mut fees).await {
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

/// Series fee schedules read so far, by series ticker.
#[derive(Default)]
struct SeriesFees(HashMap<String, KalshiSeriesFees>);

impl SeriesFees {
    /// The schedule of `market`'s series, read once; none (and the error
    /// reported) when it cannot be read or is not priced here.
    async fn of(
        &mut self,
        ctx: &Ctx,
        kalshi: &Kalshi,
        market: &KalshiMarket,
    ) -> Option<KalshiSeriesFees> {
        let named = if market.event_ticker.is_empty() {
            &market.ticker
        } else {
            &market.event_ticker
        };
        let series = series_of_event(named);
        if let Some(fees) = self.0.get(series) {
            return Some(*fees);
        }
        match kalshi.series_fees(series).await {
            Ok(fees) => {
                ctx.shared.ok(KALSHI);
                self.0.insert(series.to_owned(), fees);
                Some(fees)
            }
            Err(e) => {
                ctx.shared.venue_error(KALSHI, &e);
                None
            }
        }
    }

    async fn defs(
        &mut self,
        ctx: &Ctx,
        kalshi: &Kalshi,
        markets: &[KalshiMarket],
        asset: Option<&str>,
        out: &mut Vec<MarketDef>,
    ) {
        for m in markets {
            if let Some(fees) = self.of(ctx, kalshi, m).await {
                out.push(kalshi_market_def(m, asset, &fees));
            }
        }
    }
}

async fn discover_kalshi(
    ctx: &Ctx,
    kalshi: &Kalshi,
    plan: &FeedPlan,
    settings: &LiveSettings,
    fees: &mut SeriesFees,
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
                let listed: Vec<KalshiMarket> = markets.into_iter().filter(|m| open(m)).collect();
                fees.defs(ctx, kalshi, &listed, Some(asset), &mut out).await;
            }
            Err(e) => ctx.shared.venue_error(KALSHI, &e),
        }
    }
    for ticker in &plan.kalshi_tickers {
        match kalshi.market(ticker).await {
            Ok(m) => {
                ctx.shared.ok(KALSHI);
                fees.defs(ctx, kalshi, std::slice::from_ref(&m), None, &mut out)
                    .await;
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
                let listed: Vec<KalshiMarket> = page
                    .markets
                    .into_iter()
                    .filter(|m| open(m))
                    .take(settings.complement_markets)
                    .collect();
                fees.defs(ctx, kalshi, &listed, None, &mut out).await;
            }
            Err(e) => ctx.shared.venue_error(KALSHI, &e),
        }
    }
    out
}
