//! The venues' live public market data as an [`EventSource`]: what
//! `polybot up --live-data` (`POLYBOT_LIVE_DATA=1`) paper-trades on, with the
//! same engine that runs a recording.
//!
//! [`LiveSource`] reads the tenant's enabled strategies and starts one task
//! per feed:
//! - **Polymarket**: discovers the current and next 15-minute up/down events
//!   of the crypto assets (gamma `/events?slug=`), the markets of curated
//!   pairs and news rules (`/markets?slug=`) and, for complement arbitrage, a
//!   bounded set of active binary markets; emits their definitions, then
//!   their CLOB books. Book updates come from the CLOB market WebSocket when
//!   it delivers; while it is silent or down the books are polled.
//! - **Kalshi**: the 15-minute series of the cross-venue assets
//!   (`KX{ASSET}15M`), the tickers of curated pairs and news rules, a bounded
//!   set of open markets for complement arbitrage; then their order books.
//! - **Spot**: one task per spot venue (Binance US, Coinbase, Kraken), tickers
//!   of the 15-minute strategy's assets.
//! - **News**: NewsAPI with the tenant's key (`newsapi.api_key`) and the
//!   news strategy's RSS/Atom feeds, on its poll interval; a `429` backs off
//!   and marks the strategy rate limited.
//!
//! Intervals come from the strategies' configs (`scan_interval_secs`,
//! `poll_interval_secs`); every venue is rate-limited by its connector.
//!
//! A venue error never stops the source: it is logged with its context,
//! counted, and reported per venue in [`EventSource::health`] (a geo-block
//! with its fix), and the strategies that depend on a failing venue are
//! marked degraded with the reason. Events are stamped with the time they
//! were received (the wall clock), so a recording of them replays in order.
//!
//! Not here: the engine (crate `polybot-engine`), the HTTP connectors and
//! their rate limits (crate `polybot-venues`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use polybot_core::keys::ExchangeKeys;
use polybot_core::strategy::{StrategiesConfig, StrategyKind, Venue as CoreVenue};
use polybot_engine::{
    BookDelta, BookSide, BookSnapshot, Clock, Direction, Engine, Event, EventKind, Headline, Level,
    MarketDef, MarketId, RecurringSpec, Side, SpotPrice, Timestamp, TradePrint,
};
use polybot_venues::connectors::kalshi::KalshiMarketsQuery;
use polybot_venues::connectors::polymarket::{GammaQuery, UPDOWN_WINDOW_SECS, updown_slug};
use polybot_venues::model::{KalshiMarket, OrderBook, PolymarketMarket};
use polybot_venues::stream::{MarketEvent, StreamOptions, spawn_polymarket_market_stream};
use polybot_venues::{
    Binance, ClientOptions, Coinbase, Endpoints, ErrorKind, Kalshi, Kraken, Polymarket, VenueError,
};
use rust_decimal::Decimal;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::source::{EventSource, SourceError, SystemClock};

/// `POLYBOT_LIVE_DATA=1`: trade on the venues' live public data.
pub const ENV_LIVE_DATA: &str = "POLYBOT_LIVE_DATA";
/// Base URL of NewsAPI (a recorded-response server in tests).
pub const ENV_NEWSAPI_URL: &str = "POLYBOT_NEWSAPI_URL";
pub const DEFAULT_NEWSAPI_URL: &str = "https://newsapi.org";

/// Polymarket's taker rate for the Crypto category (the 15-minute markets).
const POLYMARKET_CRYPTO_FEE_RATE: Decimal = Decimal::from_parts(7, 0, 0, false, 2);
/// Gamma's market listing does not carry the fee category; the highest
/// published rate keeps arbitrage edges conservative for the others.
const POLYMARKET_DEFAULT_FEE_RATE: Decimal = POLYMARKET_CRYPTO_FEE_RATE;
/// Kalshi's taker rate.
const KALSHI_FEE_RATE: Decimal = Decimal::from_parts(7, 0, 0, false, 2);
/// Token ids per `POST /books` request.
const BOOKS_PER_REQUEST: usize = 20;
/// Headline ids remembered for de-duplication before the set is reset.
const SEEN_HEADLINES_MAX: usize = 10_000;
/// Longest NewsAPI back-off after repeated 429s.
const NEWS_BACKOFF_MAX: Duration = Duration::from_secs(3600);

/// How the live source reaches the venues.
#[derive(Debug, Clone)]
pub struct LiveSettings {
    /// Every venue's base URL (`POLYBOT_*_URL` overrides).
    pub endpoints: Endpoints,
    /// NewsAPI's base URL (`POLYBOT_NEWSAPI_URL`).
    pub newsapi_url: String,
    /// Timeouts and retries of the venue connectors.
    pub client: ClientOptions,
    /// Use the Polymarket market WebSocket for book updates.
    pub stream: bool,
    /// How many markets per venue complement arbitrage watches.
    pub complement_markets: usize,
    /// How often markets are discovered again (new windows, new listings).
    pub rediscover_every: Duration,
}

impl LiveSettings {
    /// The venues' real endpoints and the default limits.
    pub fn new(endpoints: Endpoints) -> Self {
        Self {
            endpoints,
            newsapi_url: DEFAULT_NEWSAPI_URL.to_owned(),
            client: ClientOptions::default(),
            stream: true,
            complement_markets: 20,
            rediscover_every: Duration::from_secs(60),
        }
    }

    /// Endpoints from the `POLYBOT_*_URL` variables, NewsAPI from
    /// `POLYBOT_NEWSAPI_URL`; a bad URL is an error naming its variable.
    pub fn from_env() -> anyhow::Result<Self> {
        let endpoints = Endpoints::from_env().map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut settings = Self::new(endpoints);
        if let Ok(url) = std::env::var(ENV_NEWSAPI_URL)
            && !url.trim().is_empty()
        {
            let url = url.trim().trim_end_matches('/');
            let parsed = reqwest::Url::parse(url).map_err(|e| {
                anyhow::anyhow!("{ENV_NEWSAPI_URL} is not an http(s) URL ({url:?}): {e}")
            })?;
            if !matches!(parsed.scheme(), "http" | "https") {
                anyhow::bail!("{ENV_NEWSAPI_URL} is not an http(s) URL: {url:?}");
            }
            settings.newsapi_url = url.to_owned();
        }
        Ok(settings)
    }
}

/// Whether `POLYBOT_LIVE_DATA` asks for live data (`1`, `true`, `yes`).
pub fn live_data_requested(value: Option<&str>) -> bool {
    value.is_some_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes"))
}

// ---------------------------------------------------------------------------
// Shared state: venue health and what the engine should be told.

/// One venue's (or feed's) health, as heartbeats report it.
#[derive(Debug, Clone, Default)]
struct VenueHealth {
    status: &'static str,
    ok: u64,
    errors: u64,
    last_ok: Option<i64>,
    last_error: Option<String>,
    fix: Option<String>,
}

impl VenueHealth {
    fn to_json(&self) -> Value {
        json!({
            "status": self.status,
            "requests_ok": self.ok,
            "errors": self.errors,
            "last_ok": self.last_ok,
            "last_error": self.last_error,
            "fix": self.fix,
        })
    }
}

#[derive(Debug, Default)]
struct State {
    /// Bumped on every change the engine should hear about.
    version: u64,
    venues: BTreeMap<&'static str, VenueHealth>,
    /// NewsAPI's 429: until when (ms), and why.
    news_limited: Option<(Option<i64>, String)>,
    /// When the Polymarket stream last delivered a market message.
    stream_seen: Option<Instant>,
}

#[derive(Debug, Clone, Default)]
struct Shared(Arc<Mutex<State>>);

fn now_ms() -> i64 {
    SystemClock.now().0
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a feed before its first request, so health lists it.
    fn expect(&self, key: &'static str) {
        let mut s = self.lock();
        s.venues.entry(key).or_insert_with(|| VenueHealth {
            status: "starting",
            ..VenueHealth::default()
        });
        s.version += 1;
    }

    fn ok(&self, key: &'static str) {
        let mut s = self.lock();
        let v = s.venues.entry(key).or_default();
        let changed = v.status != "ok";
        v.status = "ok";
        v.ok += 1;
        v.last_ok = Some(now_ms());
        v.fix = None;
        if changed {
            tracing::info!(feed = key, "live feed is answering");
            s.version += 1;
        }
    }

    /// Records a failure with its context; logged at warn when the status
    /// or the message changes, at debug while it repeats.
    fn fail(&self, key: &'static str, status: &'static str, message: String, fix: Option<String>) {
        debug_assert!(!message.is_empty(), "an empty error message is a bug");
        let mut s = self.lock();
        let v = s.venues.entry(key).or_default();
        let changed = v.status != status || v.last_error.as_deref() != Some(message.as_str());
        v.status = status;
        v.errors += 1;
        v.fix = fix;
        v.last_error = Some(message.clone());
        if changed {
            tracing::warn!(feed = key, status, error = %message, "live feed error");
            s.version += 1;
        } else {
            tracing::debug!(feed = key, status, error = %message, "live feed error (repeated)");
        }
    }

    fn venue_error(&self, key: &'static str, err: &VenueError) {
        let status = match err.kind() {
            ErrorKind::GeoBlocked => "geo_blocked",
            ErrorKind::RateLimited { .. } | ErrorKind::Banned { .. } => "rate_limited",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::Unreachable { .. } | ErrorKind::Timeout { .. } => "unreachable",
            _ => "error",
        };
        self.fail(key, status, err.to_string(), err.fix());
    }

    fn stream_seen(&self) {
        self.lock().stream_seen = Some(Instant::now());
    }

    fn stream_fresh(&self, within: Duration) -> bool {
        self.lock()
            .stream_seen
            .is_some_and(|t| t.elapsed() <= within)
    }
}

// ---------------------------------------------------------------------------
// What to fetch, from the strategies' configs.

/// The feeds the tenant's enabled strategies need.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeedPlan {
    /// Assets whose 15-minute up/down events are followed on Polymarket.
    pub updown_assets: Vec<String>,
    /// Kalshi series whose open markets are followed (`KXBTC15M`), by asset.
    pub kalshi_series: Vec<(String, String)>,
    /// Polymarket market slugs named by curated pairs and news rules.
    pub polymarket_slugs: Vec<String>,
    /// Kalshi tickers named by curated pairs and news rules.
    pub kalshi_tickers: Vec<String>,
    /// Complement arbitrage scans a bounded set of these venues' markets.
    pub complement_polymarket: bool,
    pub complement_kalshi: bool,
    /// Spot venues and the assets to quote on each.
    pub spot: Vec<(CoreVenue, Vec<String>)>,
    /// NewsAPI `q`, when the news strategy sets one.
    pub newsapi_query: Option<String>,
    pub rss_feeds: Vec<String>,
    pub book_every: Duration,
    pub spot_every: Duration,
    pub news_every: Duration,
}

/// A Kalshi ticker is upper case (`KXFED-26JUN-T4.25`); Polymarket slugs are
/// lower case.
fn looks_like_kalshi_ticker(id: &str) -> bool {
    !id.is_empty() && !id.bytes().any(|b| b.is_ascii_lowercase())
}

fn push_unique(list: &mut Vec<String>, item: &str) {
    if !list.iter().any(|x| x == item) {
        list.push(item.to_owned());
    }
}

impl FeedPlan {
    pub fn for_strategies(config: &StrategiesConfig) -> Self {
        let mut plan = FeedPlan {
            book_every: Duration::from_secs(5),
            spot_every: Duration::from_secs(1),
            news_every: Duration::from_secs(60),
            ..FeedPlan::default()
        };
        let mut book_secs: Vec<u64> = Vec::new();
        if let Some(c) = config.complement_arb.as_ref().filter(|c| c.enabled) {
            plan.complement_polymarket = c.venues.contains(&CoreVenue::Polymarket);
            plan.complement_kalshi = c.venues.contains(&CoreVenue::Kalshi);
            book_secs.push(c.scan_interval_secs);
        }
        if let Some(c) = config.cross_venue_arb.as_ref().filter(|c| c.enabled) {
            if c.match_recurring_crypto {
                for asset in &c.assets {
                    push_unique(&mut plan.updown_assets, asset);
                    let series = format!("KX{}15M", asset.to_ascii_uppercase());
                    if !plan.kalshi_series.iter().any(|(s, _)| *s == series) {
                        plan.kalshi_series
                            .push((series, asset.to_ascii_uppercase()));
                    }
                }
            }
            for pair in &c.pairs {
                push_unique(&mut plan.polymarket_slugs, &pair.polymarket);
                push_unique(&mut plan.kalshi_tickers, &pair.kalshi);
            }
            book_secs.push(c.scan_interval_secs);
        }
        if let Some(c) = config.crypto_15m.as_ref().filter(|c| c.enabled) {
            for asset in &c.assets {
                push_unique(&mut plan.updown_assets, asset);
            }
            for venue in &c.spot_venues {
                if !venue.is_prediction_market() {
                    plan.spot.push((*venue, c.assets.clone()));
                }
            }
            book_secs.push(c.scan_interval_secs);
            plan.spot_every = Duration::from_secs(c.scan_interval_secs.max(1));
        }
        if let Some(c) = config.news_arb.as_ref().filter(|c| c.enabled) {
            for rule in &c.rules {
                if looks_like_kalshi_ticker(&rule.market) {
                    push_unique(&mut plan.kalshi_tickers, &rule.market);
                } else {
                    push_unique(&mut plan.polymarket_slugs, &rule.market);
                }
            }
            plan.newsapi_query = c.newsapi_query.clone().filter(|q| !q.trim().is_empty());
            plan.rss_feeds = c.rss_feeds.clone();
            plan.news_every = Duration::from_secs(c.poll_interval_secs.max(1));
        }
        if let Some(min) = book_secs.into_iter().min() {
            plan.book_every = Duration::from_secs(min.max(1));
        }
        plan
    }

    fn needs_polymarket(&self) -> bool {
        !self.updown_assets.is_empty()
            || !self.polymarket_slugs.is_empty()
            || self.complement_polymarket
    }

    fn needs_kalshi(&self) -> bool {
        !self.kalshi_series.is_empty() || !self.kalshi_tickers.is_empty() || self.complement_kalshi
    }

    fn needs_news(&self) -> bool {
        self.newsapi_query.is_some() || !self.rss_feeds.is_empty()
    }
}

/// The health key of a spot venue.
fn spot_key(venue: CoreVenue) -> &'static str {
    match venue {
        CoreVenue::BinanceUs => "binance_us",
        CoreVenue::Coinbase => "coinbase",
        CoreVenue::Kraken => "kraken",
        CoreVenue::Polymarket => "polymarket_clob",
        CoreVenue::Kalshi => "kalshi",
    }
}

/// The feeds each strategy depends on, for its health.
fn strategy_feeds(kind: StrategyKind, plan: &FeedPlan) -> Vec<&'static str> {
    let mut feeds = Vec::new();
    let prediction = |feeds: &mut Vec<&'static str>, pm: bool, kalshi: bool| {
        if pm {
            feeds.extend(["polymarket_gamma", "polymarket_clob"]);
        }
        if kalshi {
            feeds.push("kalshi");
        }
    };
    match kind {
        StrategyKind::ComplementArb => prediction(
            &mut feeds,
            plan.complement_polymarket,
            plan.complement_kalshi,
        ),
        StrategyKind::CrossVenueArb => prediction(&mut feeds, true, true),
        StrategyKind::Crypto15m => {
            prediction(&mut feeds, true, false);
            feeds.extend(plan.spot.iter().map(|(v, _)| spot_key(*v)));
        }
        StrategyKind::NewsArb => {
            if plan.newsapi_query.is_some() {
                feeds.push("newsapi");
            }
            if !plan.rss_feeds.is_empty() {
                feeds.push("rss");
            }
        }
    }
    feeds
}

// ---------------------------------------------------------------------------
// Conversions from the venues' models into the engine's events.

fn levels(levels: &[polybot_venues::model::Level]) -> Vec<Level> {
    levels.iter().map(|l| Level::new(l.price, l.size)).collect()
}

fn ts_of(time: Option<DateTime<Utc>>) -> Option<Timestamp> {
    time.map(|t| Timestamp(t.timestamp_millis()))
}

/// A gamma market as the engine's definition, with its CLOB token ids
/// aligned with its outcomes; none for a market without a tradable book.
pub fn polymarket_market_def(
    m: &PolymarketMarket,
    updown: Option<(&str, i64)>,
) -> Option<(MarketDef, Vec<String>)> {
    if m.outcomes.len() < 2 || m.clob_token_ids.len() != m.outcomes.len() || m.closed {
        return None;
    }
    let id = [&m.slug, &m.condition_id, &m.id]
        .into_iter()
        .find(|s| !s.is_empty())?;
    let (fee_rate, window_start, closes_at, recurring) = match updown {
        Some((asset, start_s)) => (
            POLYMARKET_CRYPTO_FEE_RATE,
            Some(Timestamp(start_s * 1000)),
            Some(ts_of(m.end_date).unwrap_or(Timestamp((start_s + UPDOWN_WINDOW_SECS) * 1000))),
            Some(RecurringSpec {
                asset: polybot_engine::Asset::new(asset),
                direction: Direction::Up,
                strike: None,
            }),
        ),
        None => (POLYMARKET_DEFAULT_FEE_RATE, None, ts_of(m.end_date), None),
    };
    Some((
        MarketDef {
            id: MarketId::new(id),
            venue: CoreVenue::Polymarket,
            outcomes: m.outcomes.clone(),
            fee_rate,
            question: m.question.clone(),
            resolution_source: m.resolution_source.clone(),
            window_start,
            closes_at,
            recurring,
            reference_price: None,
        },
        m.clob_token_ids.clone(),
    ))
}

/// A Kalshi market as the engine's definition. A market of a 15-minute
/// series (`asset` given) is a recurring "up" market whose window opens at
/// its open time, with the series' opening price as its reference.
pub fn kalshi_market_def(m: &KalshiMarket, asset: Option<&str>) -> MarketDef {
    let recurring = asset.map(|a| RecurringSpec {
        asset: polybot_engine::Asset::new(a),
        direction: Direction::Up,
        strike: None,
    });
    MarketDef {
        id: MarketId::new(&m.ticker),
        venue: CoreVenue::Kalshi,
        outcomes: vec!["Yes".to_owned(), "No".to_owned()],
        fee_rate: KALSHI_FEE_RATE,
        question: m.title.clone(),
        // Kalshi publishes its settlement source only in the rules text.
        resolution_source: m.rules_primary.clone().filter(|r| !r.trim().is_empty()),
        window_start: asset.and(ts_of(m.open_time)),
        closes_at: ts_of(m.close_time),
        reference_price: asset.and(m.floor_strike),
        recurring,
    }
}

fn book_event(ts: Timestamp, market: &MarketId, outcome: usize, book: &OrderBook) -> Event {
    Event::new(
        ts,
        EventKind::Book(BookSnapshot {
            market: market.clone(),
            outcome,
            bids: levels(&book.bids),
            asks: levels(&book.asks),
        }),
    )
}

/// Token id → (market, outcome), shared by the poller and the stream.
type TokenMap = Arc<Mutex<HashMap<String, (MarketId, usize)>>>;

fn token_lookup(tokens: &TokenMap, asset_id: &str) -> Option<(MarketId, usize)> {
    tokens
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(asset_id)
        .cloned()
}

/// One message of the Polymarket market stream as engine events.
pub fn stream_event(
    tokens: &HashMap<String, (MarketId, usize)>,
    ts: Timestamp,
    event: &MarketEvent,
) -> Option<Event> {
    use polybot_venues::model::Side as VSide;
    let kind = match event {
        MarketEvent::Connected { .. } => return None,
        // The stream reports a malformed message or a drop and carries on
        // (reconnecting itself); the polled books cover the gap.
        MarketEvent::Error(err) => {
            tracing::warn!(error = %err, "market stream");
            return None;
        }
        MarketEvent::Book(book) => {
            let (market, outcome) = tokens.get(&book.instrument)?;
            return Some(book_event(ts, market, *outcome, book));
        }
        MarketEvent::PriceChange {
            asset_id,
            side,
            price,
            size,
            ..
        } => {
            let (market, outcome) = tokens.get(asset_id)?.clone();
            EventKind::BookDelta(BookDelta {
                market,
                outcome,
                side: match side {
                    VSide::Buy => BookSide::Bid,
                    VSide::Sell => BookSide::Ask,
                },
                price: *price,
                size: *size,
            })
        }
        MarketEvent::Trade(trade) => {
            let (market, outcome) = tokens.get(&trade.symbol)?.clone();
            EventKind::Trade(TradePrint {
                market,
                outcome,
                price: trade.price,
                size: trade.size,
                aggressor: match trade.side {
                    Some(VSide::Sell) => Side::Sell,
                    _ => Side::Buy,
                },
            })
        }
    };
    Some(Event::new(ts, kind))
}

// ---------------------------------------------------------------------------
// The source.

/// Live market data for one engine; see the module docs.
#[derive(Debug)]
pub struct LiveSource {
    events: mpsc::Receiver<Event>,
    shared: Shared,
    plan: FeedPlan,
    applied_version: Option<u64>,
    last_ts: Timestamp,
    cancel: CancellationToken,
    tasks: JoinSet<()>,
    label: String,
}

impl Drop for LiveSource {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// What every feed task gets.
#[derive(Clone)]
struct Ctx {
    tx: mpsc::Sender<Event>,
    shared: Shared,
    cancel: CancellationToken,
}

impl Ctx {
    /// Hands an event to the engine; false once the source is gone.
    async fn emit(&self, event: Event) -> bool {
        self.tx.send(event).await.is_ok()
    }

    /// Sleeps `period`; false when cancelled.
    async fn pause(&self, period: Duration) -> bool {
        tokio::select! {
            _ = self.cancel.cancelled() => false,
            _ = tokio::time::sleep(period) => true,
        }
    }
}

impl LiveSource {
    /// Starts the feeds `strategies` need. Must run inside a Tokio runtime.
    /// `keys` gives the NewsAPI key; nothing else of it is read.
    pub fn start(
        settings: LiveSettings,
        strategies: &StrategiesConfig,
        keys: &ExchangeKeys,
    ) -> Result<Self, SourceError> {
        let plan = FeedPlan::for_strategies(strategies);
        let (tx, events) = mpsc::channel(4_096);
        let shared = Shared::default();
        let cancel = CancellationToken::new();
        let ctx = Ctx {
            tx,
            shared: shared.clone(),
            cancel: cancel.clone(),
        };
        let fatal = |e: VenueError| SourceError {
            message: format!("starting the live feeds: {e}"),
            fatal: true,
        };
        let mut tasks = JoinSet::new();
        let mut parts = Vec::new();
        if plan.needs_polymarket() {
            let pm =
                Polymarket::with_options(&settings.endpoints, &settings.client).map_err(fatal)?;
            shared.expect("polymarket_gamma");
            shared.expect("polymarket_clob");
            parts.push("Polymarket");
            tasks.spawn(polymarket_feed(
                ctx.clone(),
                pm,
                plan.clone(),
                settings.clone(),
            ));
        }
        if plan.needs_kalshi() {
            let kalshi =
                Kalshi::with_options(&settings.endpoints, &settings.client).map_err(fatal)?;
            shared.expect("kalshi");
            parts.push("Kalshi");
            tasks.spawn(kalshi_feed(
                ctx.clone(),
                kalshi,
                plan.clone(),
                settings.clone(),
            ));
        }
        for (venue, assets) in &plan.spot {
            let client = SpotClient::new(*venue, &settings).map_err(fatal)?;
            shared.expect(spot_key(*venue));
            parts.push(spot_name(*venue));
            tasks.spawn(spot_feed(
                ctx.clone(),
                client,
                assets.clone(),
                plan.spot_every,
                settings.clone(),
            ));
        }
        if plan.needs_news() {
            let news = NewsFeed::new(&settings, &plan, keys.get("newsapi", "api_key").cloned())
                .map_err(|message| SourceError {
                    message,
                    fatal: true,
                })?;
            if plan.newsapi_query.is_some() {
                shared.expect("newsapi");
            }
            if !plan.rss_feeds.is_empty() {
                shared.expect("rss");
            }
            parts.push("news");
            tasks.spawn(news_feed(ctx.clone(), news, plan.news_every));
        }
        let label = if parts.is_empty() {
            "live data: no enabled strategy needs a feed".to_owned()
        } else {
            format!("live data: {}", parts.join(", "))
        };
        Ok(Self {
            events,
            shared,
            plan,
            applied_version: None,
            last_ts: Timestamp(0),
            cancel,
            tasks,
            label,
        })
    }

    /// Stops every feed task and waits for them.
    pub async fn shutdown(mut self) {
        self.cancel.cancel();
        while let Some(joined) = self.tasks.join_next().await {
            if let Err(e) = joined
                && e.is_panic()
            {
                tracing::error!(error = %e, "a live feed task panicked");
            }
        }
    }
}

impl EventSource for LiveSource {
    async fn next_event(&mut self) -> Result<Option<Event>, SourceError> {
        match self.events.recv().await {
            Some(mut event) => {
                // Feeds stamp events as they receive them; across feeds the
                // channel may reorder by a millisecond. Time never runs
                // backwards for the engine (nor in a recording).
                if event.ts < self.last_ts {
                    event.ts = self.last_ts;
                }
                self.last_ts = event.ts;
                Ok(Some(event))
            }
            None => Err(SourceError {
                message: format!("{}: every feed task has stopped", self.label),
                fatal: true,
            }),
        }
    }

    fn describe(&self) -> String {
        self.label.clone()
    }

    fn is_replay(&self) -> bool {
        false
    }

    fn health(&self) -> Option<Value> {
        let state = self.shared.lock();
        let venues: serde_json::Map<String, Value> = state
            .venues
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.to_json()))
            .collect();
        Some(Value::Object(venues))
    }

    fn update_engine<C: Clock>(&mut self, engine: &mut Engine<C>) {
        let state = self.shared.lock();
        if self.applied_version == Some(state.version) {
            return;
        }
        self.applied_version = Some(state.version);
        if engine.is_enabled(StrategyKind::NewsArb) {
            match &state.news_limited {
                Some((until, reason)) => engine.set_rate_limited(
                    StrategyKind::NewsArb,
                    until.map(Timestamp),
                    reason.clone(),
                ),
                None => engine.clear_rate_limited(StrategyKind::NewsArb),
            }
        }
        for kind in StrategyKind::ALL {
            if !engine.is_enabled(kind) {
                continue;
            }
            let failing: Vec<String> = strategy_feeds(kind, &self.plan)
                .into_iter()
                .filter_map(|key| {
                    let v = state.venues.get(key)?;
                    // A rate-limited NewsAPI is reported as such, not as degraded.
                    if matches!(v.status, "ok" | "starting")
                        || (key == "newsapi" && v.status == "rate_limited")
                    {
                        return None;
                    }
                    Some(format!(
                        "{key} {}: {}",
                        v.status.replace('_', "-"),
                        v.last_error.as_deref().unwrap_or("no detail")
                    ))
                })
                .collect();
            engine.set_degraded(kind, (!failing.is_empty()).then(|| failing.join("; ")));
        }
    }
}

// ---------------------------------------------------------------------------
// Polymarket: discovery, CLOB books, the market stream.

#[derive(Debug)]
struct Followed {
    tokens: Vec<String>,
    closes_at: Option<Timestamp>,
}

async fn polymarket_feed(ctx: Ctx, pm: Polymarket, plan: FeedPlan, settings: LiveSettings) {
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
    loop {
        let window = now_ms().div_euclid(1000).div_euclid(UPDOWN_WINDOW_SECS);
        let due = last_discovery
            .is_none_or(|(at, w)| at.elapsed() >= settings.rediscover_every || w != window);
        if due {
            last_discovery = Some((Instant::now(), window));
            let found = discover_polymarket(&ctx, &pm, &plan, &settings).await;
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
                    "polymarket_stream",
                    "error",
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
                        ctx.shared.ok("polymarket_clob");
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
                    Err(e) => ctx.shared.venue_error("polymarket_clob", &e),
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
            ctx.shared.ok("polymarket_stream");
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

async fn discover_polymarket(
    ctx: &Ctx,
    pm: &Polymarket,
    plan: &FeedPlan,
    settings: &LiveSettings,
) -> Vec<(MarketDef, Vec<String>)> {
    let mut out = Vec::new();
    let now_s = now_ms().div_euclid(1000);
    let current = now_s.div_euclid(UPDOWN_WINDOW_SECS) * UPDOWN_WINDOW_SECS;
    for asset in &plan.updown_assets {
        for start in [current, current + UPDOWN_WINDOW_SECS] {
            let slug = updown_slug(asset, start);
            match pm.event_by_slug(&slug).await {
                Ok(Some(event)) => {
                    ctx.shared.ok("polymarket_gamma");
                    out.extend(
                        event
                            .markets
                            .iter()
                            .filter_map(|m| polymarket_market_def(m, Some((asset, start)))),
                    );
                }
                Ok(None) => {
                    ctx.shared.ok("polymarket_gamma");
                    tracing::debug!(slug, "no such up/down event (yet)");
                }
                Err(e) => ctx.shared.venue_error("polymarket_gamma", &e),
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
                ctx.shared.ok("polymarket_gamma");
                out.extend(
                    markets
                        .iter()
                        .filter_map(|m| polymarket_market_def(m, None)),
                );
            }
            Err(e) => ctx.shared.venue_error("polymarket_gamma", &e),
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
                ctx.shared.ok("polymarket_gamma");
                out.extend(
                    markets
                        .iter()
                        .filter(|m| {
                            m.active
                                && m.enable_order_book
                                && m.accepting_orders
                                && m.outcomes.len() == 2
                        })
                        .filter_map(|m| polymarket_market_def(m, None))
                        .take(settings.complement_markets),
                );
            }
            Err(e) => ctx.shared.venue_error("polymarket_gamma", &e),
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Kalshi: discovery and order books.

async fn kalshi_feed(ctx: Ctx, kalshi: Kalshi, plan: FeedPlan, settings: LiveSettings) {
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
                    ctx.shared.ok("kalshi");
                    let ts = SystemClock.now();
                    for (outcome, side) in [(0, &book.yes), (1, &book.no)] {
                        if !ctx.emit(book_event(ts, &ticker, outcome, side)).await {
                            return;
                        }
                    }
                }
                Err(e) => ctx.shared.venue_error("kalshi", &e),
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
                ctx.shared.ok("kalshi");
                out.extend(
                    markets
                        .iter()
                        .filter(|m| open(m))
                        .map(|m| kalshi_market_def(m, Some(asset))),
                );
            }
            Err(e) => ctx.shared.venue_error("kalshi", &e),
        }
    }
    for ticker in &plan.kalshi_tickers {
        match kalshi.market(ticker).await {
            Ok(m) => {
                ctx.shared.ok("kalshi");
                out.push(kalshi_market_def(&m, None));
            }
            Err(e) => ctx.shared.venue_error("kalshi", &e),
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
                ctx.shared.ok("kalshi");
                out.extend(
                    page.markets
                        .iter()
                        .filter(|m| open(m))
                        .take(settings.complement_markets)
                        .map(|m| kalshi_market_def(m, None)),
                );
            }
            Err(e) => ctx.shared.venue_error("kalshi", &e),
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Spot tickers.

enum SpotClient {
    BinanceUs(Binance),
    Coinbase(Coinbase),
    Kraken(Kraken),
}

fn spot_name(venue: CoreVenue) -> &'static str {
    match venue {
        CoreVenue::BinanceUs => "Binance US",
        CoreVenue::Coinbase => "Coinbase",
        CoreVenue::Kraken => "Kraken",
        CoreVenue::Polymarket => "Polymarket",
        CoreVenue::Kalshi => "Kalshi",
    }
}

impl SpotClient {
    fn new(venue: CoreVenue, settings: &LiveSettings) -> Result<Self, VenueError> {
        let (e, o) = (&settings.endpoints, &settings.client);
        Ok(match venue {
            CoreVenue::Coinbase => SpotClient::Coinbase(Coinbase::new(e, o)?),
            CoreVenue::Kraken => SpotClient::Kraken(Kraken::new(e, o)?),
            // Prediction markets are never spot venues (validated at onboarding).
            _ => SpotClient::BinanceUs(Binance::us(e, o)?),
        })
    }

    fn venue(&self) -> CoreVenue {
        match self {
            SpotClient::BinanceUs(_) => CoreVenue::BinanceUs,
            SpotClient::Coinbase(_) => CoreVenue::Coinbase,
            SpotClient::Kraken(_) => CoreVenue::Kraken,
        }
    }

    /// The asset's USD price: the venue's symbol for it, then its last trade.
    async fn price(&self, asset: &str) -> Result<Decimal, VenueError> {
        let asset = asset.to_ascii_uppercase();
        Ok(match self {
            SpotClient::BinanceUs(c) => c.ticker_price(&format!("{asset}USD")).await?.last,
            SpotClient::Coinbase(c) => c.ticker(&format!("{asset}-USD")).await?.last,
            SpotClient::Kraken(c) => {
                // Kraken names bitcoin XBT.
                let base = if asset == "BTC" { "XBT" } else { &asset };
                c.ticker(&format!("{base}USD")).await?.last
            }
        })
    }
}

/// The venue's stream symbol for `asset` against USD.
fn spot_stream_symbol(venue: CoreVenue, asset: &str) -> String {
    let asset = asset.to_ascii_uppercase();
    match venue {
        CoreVenue::Coinbase => format!("{asset}-USD"),
        CoreVenue::Kraken => format!("{asset}/USD"),
        _ => format!("{asset}USD").to_ascii_lowercase(),
    }
}

/// A symbol reduced to letters and digits, upper case: `btcusd`, `BTC-USD`
/// and `BTC/USD` all read `BTCUSD`.
fn symbol_key(symbol: &str) -> String {
    symbol
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

/// Spot prices: the venue's trade stream when `stream` is on, and REST
/// polling for any asset the stream has not priced within `every` (the
/// stream is down, reconnecting, or quiet).
async fn spot_feed(
    ctx: Ctx,
    client: SpotClient,
    assets: Vec<String>,
    every: Duration,
    settings: LiveSettings,
) {
    let venue = client.venue();
    let key = spot_key(venue);
    let mut fresh: HashMap<String, Instant> = HashMap::new();
    let by_symbol: HashMap<String, String> = assets
        .iter()
        .map(|a| (symbol_key(&format!("{a}USD")), a.clone()))
        .collect();
    let stream_cancel = ctx.cancel.child_token();
    let mut stream = settings.stream.then(|| {
        let symbols: Vec<String> = assets
            .iter()
            .map(|a| spot_stream_symbol(venue, a))
            .collect();
        let options = polybot_venues::stream::StreamOptions::default();
        let e = &settings.endpoints;
        let (handle, rx) = match venue {
            CoreVenue::Coinbase => polybot_venues::stream::spawn_coinbase_stream(
                e,
                symbols,
                Default::default(),
                options,
                stream_cancel.clone(),
            ),
            CoreVenue::Kraken => polybot_venues::stream::spawn_kraken_stream(
                e,
                symbols,
                Default::default(),
                options,
                stream_cancel.clone(),
            ),
            _ => polybot_venues::stream::spawn_binance_us_stream(
                e,
                symbols,
                Default::default(),
                options,
                stream_cancel.clone(),
            ),
        };
        (handle, rx)
    });
    let mut next_poll = Instant::now();
    loop {
        let wait = next_poll.saturating_duration_since(Instant::now());
        let message = async {
            match stream.as_mut() {
                Some((_, rx)) => rx.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = ctx.cancel.cancelled() => break,
            message = message => match message {
                Some(MarketEvent::Trade(trade)) => {
                    let Some(asset) = by_symbol.get(&symbol_key(&trade.symbol)) else {
                        continue;
                    };
                    ctx.shared.ok(key);
                    fresh.insert(asset.clone(), Instant::now());
                    let event = Event::new(
                        SystemClock.now(),
                        EventKind::Spot(SpotPrice {
                            venue,
                            asset: polybot_engine::Asset::new(asset),
                            price: trade.price,
                        }),
                    );
                    if !ctx.emit(event).await {
                        break;
                    }
                }
                Some(MarketEvent::Error(err)) => {
                    tracing::debug!(error = %err, "spot stream");
                }
                Some(_) => {}
                // The stream ended: polling carries on alone.
                None => stream = None,
            },
            _ = tokio::time::sleep(wait) => {
                for asset in &assets {
                    if fresh.get(asset).is_some_and(|at| at.elapsed() < every) {
                        continue;
                    }
                    match client.price(asset).await {
                        Ok(price) => {
                            ctx.shared.ok(key);
                            let event = Event::new(
                                SystemClock.now(),
                                EventKind::Spot(SpotPrice {
                                    venue,
                                    asset: polybot_engine::Asset::new(asset),
                                    price,
                                }),
                            );
                            if !ctx.emit(event).await {
                                stream_cancel.cancel();
                                return;
                            }
                        }
                        Err(e) => ctx.shared.venue_error(key, &e),
                    }
                }
                next_poll = Instant::now() + every;
            }
        }
    }
    stream_cancel.cancel();
}

// ---------------------------------------------------------------------------
// Headlines: NewsAPI and RSS/Atom feeds.

struct NewsFeed {
    http: reqwest::Client,
    newsapi_url: String,
    query: Option<String>,
    key: Option<SecretString>,
    rss: Vec<String>,
    seen: HashSet<String>,
    /// Consecutive 429s, for the back-off.
    limited: u32,
    next_newsapi: Option<Instant>,
}

/// Why a news request failed: always the source, endpoint and reason.
#[derive(Debug)]
struct NewsError {
    message: String,
    /// `Retry-After` of a 429, when it was one.
    rate_limited: Option<Option<Duration>>,
}

#[derive(serde::Deserialize)]
struct NewsApiResponse {
    #[serde(default)]
    articles: Vec<NewsApiArticle>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct NewsApiArticle {
    #[serde(default)]
    source: Option<NewsApiSource>,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    published_at: Option<DateTime<Utc>>,
}

#[derive(serde::Deserialize)]
struct NewsApiSource {
    #[serde(default)]
    name: Option<String>,
}

/// A one-line excerpt of a body, at most 200 characters, with `secret` removed.
fn excerpt(body: &str, secret: Option<&str>) -> String {
    let mut text: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
    if let Some(secret) = secret.filter(|s| s.len() >= 4) {
        text = text.replace(secret, "[redacted]");
    }
    match text.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

impl NewsFeed {
    fn new(
        settings: &LiveSettings,
        plan: &FeedPlan,
        key: Option<SecretString>,
    ) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(settings.client.timeout)
            .connect_timeout(settings.client.connect_timeout)
            .user_agent(settings.client.user_agent.clone())
            .build()
            .map_err(|e| format!("building the news HTTP client: {e}"))?;
        Ok(Self {
            http,
            newsapi_url: settings.newsapi_url.trim_end_matches('/').to_owned(),
            query: plan.newsapi_query.clone(),
            key,
            rss: plan.rss_feeds.clone(),
            seen: HashSet::new(),
            limited: 0,
            next_newsapi: None,
        })
    }

    async fn newsapi(&self, query: &str, key: &SecretString) -> Result<Vec<Headline>, NewsError> {
        let endpoint = "NewsAPI GET /v2/everything";
        let url = format!("{}/v2/everything", self.newsapi_url);
        let response = self
            .http
            .get(&url)
            .query(&[
                ("q", query),
                ("sortBy", "publishedAt"),
                ("language", "en"),
                ("pageSize", "50"),
            ])
            .header("X-Api-Key", key.expose_secret())
            .send()
            .await
            .map_err(|e| NewsError {
                message: format!("{endpoint}: unreachable: {}", e.without_url()),
                rate_limited: None,
            })?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = response.text().await.map_err(|e| NewsError {
            message: format!(
                "{endpoint}: reading the response (HTTP {}): {}",
                status.as_u16(),
                e.without_url()
            ),
            rate_limited: None,
        })?;
        let secret = Some(key.expose_secret());
        if status.as_u16() == 429 {
            return Err(NewsError {
                message: format!(
                    "{endpoint}: rate limited (HTTP 429){}; body: {}",
                    retry_after
                        .map_or(String::new(), |d| format!(", Retry-After {}s", d.as_secs())),
                    excerpt(&body, secret)
                ),
                rate_limited: Some(retry_after),
            });
        }
        if !status.is_success() {
            let hint = match status.as_u16() {
                401 => "; the tenant's newsapi.api_key was refused",
                _ => "",
            };
            return Err(NewsError {
                message: format!(
                    "{endpoint}: HTTP {}{hint}; body: {}",
                    status.as_u16(),
                    excerpt(&body, secret)
                ),
                rate_limited: None,
            });
        }
        let parsed: NewsApiResponse = serde_json::from_str(&body).map_err(|e| NewsError {
            message: format!(
                "{endpoint}: malformed response (HTTP {}): {e}; body: {}",
                status.as_u16(),
                excerpt(&body, secret)
            ),
            rate_limited: None,
        })?;
        Ok(parsed
            .articles
            .into_iter()
            .filter_map(|a| {
                let title = a.title.filter(|t| !t.trim().is_empty())?;
                let id = a.url.clone().unwrap_or_else(|| title.clone());
                Some(Headline {
                    id,
                    source: a
                        .source
                        .and_then(|s| s.name)
                        .unwrap_or_else(|| "NewsAPI".to_owned()),
                    title,
                    summary: a.description.unwrap_or_default(),
                    published: a
                        .published_at
                        .map_or_else(|| SystemClock.now(), |t| Timestamp(t.timestamp_millis())),
                })
            })
            .collect())
    }

    async fn rss(&self, url: &str) -> Result<Vec<Headline>, String> {
        let endpoint = format!("RSS feed GET {url}");
        let response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| format!("{endpoint}: unreachable: {}", e.without_url()))?;
        let status = response.status();
        let body = response.text().await.map_err(|e| {
            format!(
                "{endpoint}: reading the response (HTTP {}): {}",
                status.as_u16(),
                e.without_url()
            )
        })?;
        if !status.is_success() {
            return Err(format!(
                "{endpoint}: HTTP {}; body: {}",
                status.as_u16(),
                excerpt(&body, None)
            ));
        }
        parse_feed(&body, url).map_err(|e| {
            format!(
                "{endpoint}: not an RSS or Atom feed: {e}; body: {}",
                excerpt(&body, None)
            )
        })
    }

    /// Headlines not seen before, oldest first.
    fn fresh(&mut self, mut headlines: Vec<Headline>) -> Vec<Headline> {
        if self.seen.len() > SEEN_HEADLINES_MAX {
            self.seen.clear();
        }
        headlines.retain(|h| self.seen.insert(h.id.clone()));
        headlines.sort_by_key(|h| h.published);
        headlines
    }
}

/// Parses an RSS 2.0 or Atom document into headlines (`source` is the feed's
/// title, or its URL).
pub fn parse_feed(xml: &str, url: &str) -> Result<Vec<Headline>, String> {
    let doc = roxmltree::Document::parse(xml).map_err(|e| e.to_string())?;
    let root = doc.root_element();
    let child_text = |node: roxmltree::Node, name: &str| -> Option<String> {
        node.children()
            .find(|c| c.is_element() && c.tag_name().name() == name)
            .and_then(|c| c.text())
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
    };
    let (channel, item_tag) = match root.tag_name().name() {
        "rss" => (
            root.children()
                .find(|c| c.is_element() && c.tag_name().name() == "channel")
                .ok_or("an <rss> without a <channel>")?,
            "item",
        ),
        "RDF" => (root, "item"),
        "feed" => (root, "entry"),
        other => {
            return Err(format!(
                "the root element is <{other}>, not <rss> or <feed>"
            ));
        }
    };
    let source = child_text(channel, "title").unwrap_or_else(|| url.to_owned());
    let now = SystemClock.now();
    let mut out = Vec::new();
    for item in channel
        .descendants()
        .filter(|n| n.is_element() && n.tag_name().name() == item_tag)
    {
        let Some(title) = child_text(item, "title") else {
            continue;
        };
        let link = child_text(item, "link").or_else(|| {
            item.children()
                .find(|c| c.is_element() && c.tag_name().name() == "link")
                .and_then(|c| c.attribute("href"))
                .map(str::to_owned)
        });
        let id = child_text(item, "guid")
            .or_else(|| child_text(item, "id"))
            .or(link)
            .unwrap_or_else(|| title.clone());
        let summary = child_text(item, "description")
            .or_else(|| child_text(item, "summary"))
            .unwrap_or_default();
        let published = ["pubDate", "published", "updated", "date"]
            .iter()
            .find_map(|tag| child_text(item, tag))
            .and_then(|text| {
                DateTime::parse_from_rfc2822(&text)
                    .or_else(|_| DateTime::parse_from_rfc3339(&text))
                    .ok()
            })
            .map_or(now, |t| Timestamp(t.timestamp_millis()));
        out.push(Headline {
            id,
            source: source.clone(),
            title,
            summary,
            published,
        });
    }
    Ok(out)
}

async fn news_feed(ctx: Ctx, mut news: NewsFeed, every: Duration) {
    if news.query.is_some() && news.key.is_none() {
        ctx.shared.fail(
            "newsapi",
            "not_configured",
            "news_arb.newsapi_query is set but the tenant's keys have no newsapi.api_key"
                .to_owned(),
            Some("add newsapi.api_key to the tenant's exchange keys".to_owned()),
        );
    }
    loop {
        let mut headlines = Vec::new();
        let newsapi_due = news.next_newsapi.is_none_or(|t| Instant::now() >= t);
        if let (Some(query), Some(key), true) = (news.query.clone(), news.key.clone(), newsapi_due)
        {
            match news.newsapi(&query, &key).await {
                Ok(found) => {
                    news.limited = 0;
                    news.next_newsapi = None;
                    let cleared = ctx.shared.lock().news_limited.take().is_some();
                    if cleared {
                        ctx.shared.lock().version += 1;
                    }
                    ctx.shared.ok("newsapi");
                    headlines.extend(found);
                }
                Err(NewsError {
                    message,
                    rate_limited: Some(retry_after),
                }) => {
                    news.limited = news.limited.saturating_add(1);
                    let backoff = every
                        .saturating_mul(1 << news.limited.min(6))
                        .min(NEWS_BACKOFF_MAX);
                    let wait = retry_after.map_or(backoff, |r| r.max(every));
                    news.next_newsapi = Some(Instant::now() + wait);
                    let until = now_ms()
                        .saturating_add(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX));
                    let reason = format!(
                        "rate limited: {message}; NewsAPI is not asked again for {}s",
                        wait.as_secs()
                    );
                    {
                        let mut s = ctx.shared.lock();
                        s.news_limited = Some((Some(until), reason));
                        s.version += 1;
                    }
                    ctx.shared.fail("newsapi", "rate_limited", message, None);
                }
                Err(NewsError { message, .. }) => {
                    ctx.shared.fail("newsapi", "error", message, None);
                }
            }
        }
        let mut rss_errors = Vec::new();
        for url in news.rss.clone() {
            match news.rss(&url).await {
                Ok(found) => headlines.extend(found),
                Err(message) => rss_errors.push(message),
            }
        }
        if !news.rss.is_empty() {
            if rss_errors.is_empty() {
                ctx.shared.ok("rss");
            } else {
                ctx.shared.fail("rss", "error", rss_errors.join("; "), None);
            }
        }
        let ts = SystemClock.now();
        for headline in news.fresh(headlines) {
            if !ctx
                .emit(Event::new(ts, EventKind::Headline(Box::new(headline))))
                .await
            {
                return;
            }
        }
        if !ctx.pause(every).await {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use polybot_venues::model::{Level as VLevel, Trade, Venue as VVenue};
    use rust_decimal_macros::dec;

    #[test]
    fn live_data_is_requested_by_one_true_or_yes() {
        assert!(live_data_requested(Some("1")));
        assert!(live_data_requested(Some(" true ")));
        assert!(!live_data_requested(Some("0")));
        assert!(!live_data_requested(None));
    }

    #[test]
    fn the_plan_follows_the_enabled_strategies() {
        let config = polybot_core::strategy::parse_strategies(&json!({
            "complement_arb": {"venues": ["polymarket"], "scan_interval_secs": 3},
            "cross_venue_arb": {"assets": ["BTC"], "pairs": [{"polymarket": "fed-cut", "kalshi": "KXFED-26JUN"}]},
            "crypto_15m": {"assets": ["BTC", "ETH"], "spot_venues": ["coinbase", "kraken"], "scan_interval_secs": 2},
            "news_arb": {"newsapi_query": "fed", "rules": [
                {"market": "KXFED-26JUN-T4.25", "outcome": "Yes", "keywords": ["fed"], "fair_price": "0.8"},
                {"market": "fed-cut", "outcome": "Yes", "keywords": ["fed"], "fair_price": "0.8"}
            ]}
        }))
        .unwrap();
        let plan = FeedPlan::for_strategies(&config);
        assert_eq!(plan.updown_assets, vec!["BTC", "ETH"]);
        assert_eq!(
            plan.kalshi_series,
            vec![("KXBTC15M".to_owned(), "BTC".to_owned())]
        );
        assert_eq!(plan.polymarket_slugs, vec!["fed-cut"]);
        assert_eq!(
            plan.kalshi_tickers,
            vec!["KXFED-26JUN", "KXFED-26JUN-T4.25"]
        );
        assert!(plan.complement_polymarket && !plan.complement_kalshi);
        assert_eq!(
            plan.spot,
            vec![
                (
                    CoreVenue::Coinbase,
                    vec!["BTC".to_owned(), "ETH".to_owned()]
                ),
                (CoreVenue::Kraken, vec!["BTC".to_owned(), "ETH".to_owned()])
            ]
        );
        assert_eq!(plan.book_every, Duration::from_secs(2));
        assert_eq!(plan.spot_every, Duration::from_secs(2));
        assert_eq!(plan.newsapi_query.as_deref(), Some("fed"));
        assert_eq!(plan.news_every, Duration::from_secs(60));
    }

    #[test]
    fn stream_messages_become_book_deltas_trades_and_snapshots_of_known_tokens() {
        let mut tokens = HashMap::new();
        tokens.insert("t-up".to_owned(), (MarketId::new("btc-updown-15m-0"), 0));
        tokens.insert("t-down".to_owned(), (MarketId::new("btc-updown-15m-0"), 1));
        let ts = Timestamp(5);
        let delta = stream_event(
            &tokens,
            ts,
            &MarketEvent::PriceChange {
                asset_id: "t-down".into(),
                side: polybot_venues::model::Side::Sell,
                price: dec!(0.47),
                size: dec!(0),
                best_bid: None,
                best_ask: None,
            },
        );
        assert_eq!(
            delta,
            Some(Event::new(
                ts,
                EventKind::BookDelta(BookDelta {
                    market: MarketId::new("btc-updown-15m-0"),
                    outcome: 1,
                    side: BookSide::Ask,
                    price: dec!(0.47),
                    size: dec!(0),
                })
            ))
        );
        let trade = stream_event(
            &tokens,
            ts,
            &MarketEvent::Trade(Trade {
                venue: VVenue::PolymarketClob,
                symbol: "t-up".into(),
                trade_id: None,
                price: dec!(0.52),
                size: dec!(10),
                side: Some(polybot_venues::model::Side::Buy),
                timestamp: None,
            }),
        );
        assert_eq!(
            trade,
            Some(Event::new(
                ts,
                EventKind::Trade(TradePrint {
                    market: MarketId::new("btc-updown-15m-0"),
                    outcome: 0,
                    price: dec!(0.52),
                    size: dec!(10),
                    aggressor: Side::Buy,
                })
            ))
        );
        let book = OrderBook::new(
            VVenue::PolymarketClob,
            "t-up",
            vec![
                VLevel::new(dec!(0.4), dec!(5)),
                VLevel::new(dec!(0.5), dec!(7)),
            ],
            vec![VLevel::new(dec!(0.6), dec!(9))],
        );
        assert_eq!(
            stream_event(&tokens, ts, &MarketEvent::Book(book)),
            Some(Event::new(
                ts,
                EventKind::Book(BookSnapshot {
                    market: MarketId::new("btc-updown-15m-0"),
                    outcome: 0,
                    bids: vec![
                        Level::new(dec!(0.5), dec!(7)),
                        Level::new(dec!(0.4), dec!(5))
                    ],
                    asks: vec![Level::new(dec!(0.6), dec!(9))],
                })
            ))
        );
        let unknown = OrderBook::new(VVenue::PolymarketClob, "other", vec![], vec![]);
        assert_eq!(stream_event(&tokens, ts, &MarketEvent::Book(unknown)), None);
    }

    #[test]
    fn rss_and_atom_items_become_headlines() {
        let rss = r#"<?xml version="1.0"?><rss version="2.0"><channel><title>Wire</title>
            <item><title>Fed cuts rates</title><link>https://w.example/1</link><guid>g-1</guid>
            <description>Powell spoke.</description><pubDate>Wed, 29 Apr 2026 13:00:00 +0000</pubDate></item>
            </channel></rss>"#;
        assert_eq!(
            parse_feed(rss, "https://w.example/rss").unwrap(),
            vec![Headline {
                id: "g-1".into(),
                source: "Wire".into(),
                title: "Fed cuts rates".into(),
                summary: "Powell spoke.".into(),
                published: Timestamp(1_777_467_600_000),
            }]
        );
        let atom = r#"<feed xmlns="http://www.w3.org/2005/Atom"><title>Atom wire</title>
            <entry><title>SEC approves Solana ETF</title><id>urn:a:2</id>
            <link href="https://a.example/2"/><updated>2026-04-29T13:00:00Z</updated></entry></feed>"#;
        assert_eq!(
            parse_feed(atom, "https://a.example/atom").unwrap(),
            vec![Headline {
                id: "urn:a:2".into(),
                source: "Atom wire".into(),
                title: "SEC approves Solana ETF".into(),
                summary: String::new(),
                published: Timestamp(1_777_467_600_000),
            }]
        );
        assert_eq!(
            parse_feed("<html/>", "u").unwrap_err(),
            "the root element is <html>, not <rss> or <feed>"
        );
    }

    #[test]
    fn an_excerpt_is_one_line_and_never_shows_the_key() {
        assert_eq!(
            excerpt("{\"message\":\n \"bad key abcd1234\"}", Some("abcd1234")),
            "{\"message\": \"bad key [redacted]\"}"
        );
    }
}
