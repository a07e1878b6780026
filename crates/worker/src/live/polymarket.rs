//! The Polymarket feed: discovers the markets the plan names (the current
//! and next 15-minute up/down events, curated slugs, a bounded set of active
//! binary markets), emits their definitions, then their CLOB books: from the
//! market WebSocket while it delivers, polled while it is silent or down.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use polybot_core::worker::FeedState;
use polybot_engine::{Clock, Event, EventKind, MarketDef, MarketId, Timestamp};
use polybot_venues::Polymarket;
use polybot_venues::connectors::polymarket::{GammaQuery, UPDOWN_WINDOW_SECS, updown_slug};
use polybot_venues::execution::FeeParams;
use polybot_venues::model::PolymarketMarket;
use polybot_venues::stream::{MarketEvent, StreamOptions, spawn_polymarket_market_stream};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::health::now_ms;
use super::plan::{FeedPlan, POLYMARKET_CLOB, POLYMARKET_GAMMA, POLYMARKET_STREAM};
use super::translate::{book_event, polymarket_market_def, stream_event};
use super::{Ctx, LiveSettings};
use crate::source::SystemClock;

/// Token ids per `POST /books` request.
const BOOKS_PER_REQUEST: usize = 20;

/// Token id → (market, outcome), shared by the poller and the stream.
type TokenMap = Arc<Mutex<HashMap<String, (MarketId, usize)>>>;

fn token_lookup(tokens: &TokenMap, asset_id: &str) -> Option<(MarketId, usize)> {
    tokens
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(asset_id)
        .cloned()
}

#[derive(Debug)]
struct Followed {
    tokens: Vec<String>,
    closes_at: Option<Timestamp>,
}

pub(super) async fn polymarket_feed(
    ctx: Ctx,
    pm: Polymarket,
    plan: FeedPlan,
    settings: LiveSettings,
) {
    let tokens: TokenMap = Arc::default();
    let mut followed: BTreeMap<MarketId, Followed> = BTreeMap::new();
    let stream = if settings.stream {
        let (handle, rx) = spawn_polymarket_market_stream(
            &settings.endpoints,
            Vec::new(),
            StreamOptions::default(),
            ctx.cancel.child_token(),
        );
        let consumer = tokio::spawn(stream_consumer(ctx.clone(), rx, tokens.clone()));
        Some((handle, consumer))
    } else {
        None
    };
    let mut last_discovery: Option<(Instant, i64)> = None;
    let mut fees: HashMap<String, FeeParams> = HashMap::new();
    loop {
        let window = now_ms().div_euclid(1000).div_euclid(UPDOWN_WINDOW_SECS);
        let due = last_discovery
            .is_none_or(|(at, w)| at.elapsed() >= settings.rediscover_every || w != window);
        if due {
            last_discovery = Some((Instant::now(), window));
            let found = discover_polymarket(&ctx, &pm, &plan, &settings, &mut fees).await;
            let mut new_tokens = Vec::new();
            for (def, ids) in found {
                if followed.contains_key(&def.id) {
                    continue;
                }
                {
                    let mut map = tokens.lock().unwrap_or_else(|e| e.into_inner());
                    for (i, id) in ids.iter().enumerate() {
                        map.insert(id.clone(), (def.id.clone(), i));
                    }
                }
                new_tokens.extend(ids.iter().cloned());
                followed.insert(
                    def.id.clone(),
                    Followed {
                        tokens: ids,
                        closes_at: def.closes_at,
                    },
                );
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
            if let Some((handle, _)) = &stream
                && !new_tokens.is_empty()
                && !handle.subscribe(new_tokens)
            {
                ctx.shared.fail(
                    POLYMARKET_STREAM,
                    FeedState::Error,
                    "Polymarket market stream stopped; polling the CLOB books instead".to_owned(),
                    None,
                );
            }
        }
        // Markets whose window has closed are no longer polled.
        let now = SystemClock.now();
        followed.retain(|_, f| f.closes_at.is_none_or(|c| c.0 + 60_000 > now.0));
        // The stream keeps the books while it delivers; otherwise poll them.
        if !ctx.shared.stream_fresh(plan.book_every * 2) {
            let all: Vec<&str> = followed
                .values()
                .flat_map(|f| f.tokens.iter().map(String::as_str))
                .collect();
            for chunk in all.chunks(BOOKS_PER_REQUEST) {
                match pm.books(chunk).await {
                    Ok(books) => {
                        ctx.shared.ok(POLYMARKET_CLOB);
                        let ts = SystemClock.now();
                        for book in &books {
                            let Some((market, outcome)) = token_lookup(&tokens, &book.instrument)
                            else {
                                continue;
                            };
                            if !ctx.emit(book_event(ts, &market, outcome, book)).await {
                                return;
                            }
                        }
                    }
                    Err(e) => ctx.shared.venue_error(POLYMARKET_CLOB, &e),
                }
            }
        }
        if !ctx.pause(plan.book_every).await {
            break;
        }
    }
    if let Some((handle, consumer)) = stream {
        handle.shutdown().await;
        if let Err(e) = consumer.await {
            tracing::warn!(error = %e, "the Polymarket stream consumer ended abnormally");
        }
    }
}

async fn stream_consumer(ctx: Ctx, mut rx: mpsc::Receiver<MarketEvent>, tokens: TokenMap) {
    while let Some(message) = rx.recv().await {
        if let MarketEvent::Connected { connection } = message {
            tracing::info!(connection, "Polymarket market stream connected");
            ctx.shared.ok(POLYMARKET_STREAM);
            continue;
        }
        let event = {
            let map = tokens.lock().unwrap_or_else(|e| e.into_inner());
            stream_event(&map, SystemClock.now(), &message)
        };
        if let Some(event) = event {
            ctx.shared.stream_seen();
            if !ctx.emit(event).await {
                return;
            }
        }
    }
}

/// A gamma market as a definition, with its fee parameters from the CLOB's
/// market info (cached by condition id). A market whose fees cannot be read
/// is left out this round: an edge computed on a guessed fee is not an edge.
async fn with_fees(
    ctx: &Ctx,
    pm: &Polymarket,
    m: &PolymarketMarket,
    updown: Option<(&str, i64)>,
    fees: &mut HashMap<String, FeeParams>,
) -> Option<(MarketDef, Vec<String>)> {
    if m.condition_id.is_empty() {
        return None;
    }
    let params = match fees.get(&m.condition_id) {
        Some(params) => *params,
        None => match pm.fee_params(&m.condition_id).await {
            Ok(params) => {
                ctx.shared.ok(POLYMARKET_CLOB);
                fees.insert(m.condition_id.clone(), params);
                params
            }
            Err(e) => {
                ctx.shared.venue_error(POLYMARKET_CLOB, &e);
                return None;
            }
        },
    };
    polymarket_market_def(m, updown, &params)
}

async fn discover_polymarket(
    ctx: &Ctx,
    pm: &Polymarket,
    plan: &FeedPlan,
    settings: &LiveSettings,
    fees: &mut HashMap<String, FeeParams>,
) -> Vec<(MarketDef, Vec<String>)> {
    let mut out = Vec::new();
    let now_s = now_ms().div_euclid(1000);
    let current = now_s.div_euclid(UPDOWN_WINDOW_SECS) * UPDOWN_WINDOW_SECS;
    for asset in &plan.updown_assets {
        for start in [current, current + UPDOWN_WINDOW_SECS] {
            let slug = updown_slug(asset, start);
            match pm.event_by_slug(&slug).await {
                Ok(Some(event)) => {
                    ctx.shared.ok(POLYMARKET_GAMMA);
                    for m in &event.markets {
                        out.extend(with_fees(ctx, pm, m, Some((asset, start)), fees).await);
                    }
                }
                Ok(None) => {
                    ctx.shared.ok(POLYMARKET_GAMMA);
                    tracing::debug!(slug, "no such up/down event (yet)");
                }
                Err(e) => ctx.shared.venue_error(POLYMARKET_GAMMA, &e),
            }
        }
    }
    for slug in &plan.polymarket_slugs {
        let query = GammaQuery {
            slug: Some(slug.clone()),
            ..GammaQuery::default()
        };
        match pm.markets(&query).await {
            Ok(markets) => {
                ctx.shared.ok(POLYMARKET_GAMMA);
                for m in &markets {
                    out.extend(with_fees(ctx, pm, m, None, fees).await);
                }
            }
            Err(e) => ctx.shared.venue_error(POLYMARKET_GAMMA, &e),
        }
    }
    if plan.complement_polymarket {
        let query = GammaQuery {
            limit: Some(u32::try_from(settings.complement_markets * 2).unwrap_or(100)),
            active: Some(true),
            closed: Some(false),
            order: Some("volume24hr".to_owned()),
            ascending: Some(false),
            ..GammaQuery::default()
        };
        match pm.markets(&query).await {
            Ok(markets) => {
                ctx.shared.ok(POLYMARKET_GAMMA);
                let mut taken = 0;
                for m in markets.iter().filter(|m| {
                    m.active && m.enable_order_book && m.accepting_orders && m.outcomes.len() == 2
                }) {
                    if taken == settings.complement_markets {
                        break;
                    }
                    if let Some(found) = with_fees(ctx, pm, m, None, fees).await {
                        out.push(found);
                        taken += 1;
                    }
                }
            }
            Err(e) => ctx.shared.venue_error(POLYMARKET_GAMMA, &e),
        }
    }
    out
}
