//! The venues' live public market data as an [`EventSource`]: what every
//! worker paper-trades on unless given a recording (`POLYBOT_REPLAY`, `polybot
//! up --demo`) or `POLYBOT_LIVE_DATA=0`, with the same engine that runs a
//! recording.
//!
//! [`LiveSource`] reads the tenant's enabled strategies ([`plan`]) and starts
//! one task per feed:
//! - **Polymarket** ([`polymarket`]): the current and next 15-minute up/down
//!   events of the crypto assets, the markets of curated pairs and news
//!   rules and, for complement arbitrage, a bounded set of active binary
//!   markets; their definitions, then their CLOB books (the market WebSocket
//!   while it delivers, polled otherwise).
//! - **Kalshi** ([`kalshi`]): the 15-minute series of the cross-venue assets
//!   (`KX{ASSET}15M`), the tickers of curated pairs and news rules, a bounded
//!   set of open markets for complement arbitrage; then their order books,
//!   over Kalshi's WebSocket when a Kalshi key authenticates it (the
//!   tenant's, or the market-data service's operator key), polled otherwise.
//! - **Spot** ([`spot`]): one task per spot venue (Binance US, Coinbase,
//!   Kraken), the 15-minute strategy's assets.
//! - **News** ([`news`]): NewsAPI with the tenant's key (`newsapi.api_key`)
//!   and the news strategy's RSS/Atom feeds, on its poll interval; a `429`
//!   backs off and rate-limits the strategy.
//!
//! Intervals come from the strategies' configs (`scan_interval_secs`,
//! `poll_interval_secs`); every venue is rate-limited by its connector. The
//! venues' models become engine events in [`translate`].
//!
//! A venue error never stops the source: it is logged with its context,
//! counted, and reported per feed in [`EventSource::health`] (a geo-block
//! with its fix). What it means for the strategies reaches the engine in the
//! event stream itself, as [`EventKind::FeedHealth`] events ([`health`]), so
//! that a recording of the stream reproduces a degraded strategy. Events are
//! stamped with the time they were received (the wall clock), so a recording
//! of them replays in order.
//!
//! With `POLYBOT_MARKET_DATA_URL` set, the venues' public data comes from the
//! deployment's shared market-data service instead ([`market_data`]): the
//! worker opens no venue connection for it, and only news stays here.
//!
//! Not here: the engine (crate `polybot-engine`), the HTTP and news clients
//! and their rate limits (crate `polybot-venues`).

mod health;
mod kalshi;
pub mod market_data;
mod news;
mod plan;
mod polymarket;
mod spot;
mod translate;

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use polybot_core::keys::ExchangeKeys;
use polybot_core::strategy::StrategiesConfig;
use polybot_core::worker::FeedStatus;
use polybot_engine::{Clock, Event, EventKind, Timestamp};
use polybot_venues::signing::kalshi::KalshiSigner;
use polybot_venues::{ClientOptions, Endpoints, Kalshi, Polymarket, VenueError};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use plan::FeedPlan;
pub use polybot_venues::news::DEFAULT_NEWSAPI_URL;
pub use translate::{kalshi_market_def, polymarket_market_def, stream_event};

use self::health::{HealthReporter, Shared};
use self::plan::{KALSHI, NEWSAPI, POLYMARKET_CLOB, POLYMARKET_GAMMA, RSS, spot_key};
use self::spot::{SpotClient, spot_name};
use crate::source::{EventSource, SourceError, SystemClock};

/// The shared market-data service's Redis.
pub const ENV_MARKET_DATA_URL: &str = polybot_core::worker::env::MARKET_DATA_URL;

/// The CA bundle a `rediss://` market-data Redis's certificate must chain to.
pub const ENV_MARKET_DATA_CA_FILE: &str = polybot_core::worker::env::MARKET_DATA_CA_FILE;

/// Base URL of NewsAPI (a recorded-response server in tests).
pub const ENV_NEWSAPI_URL: &str = polybot_core::worker::env::NEWSAPI_URL;

/// How the live source reaches the venues.
#[derive(Debug, Clone)]
pub struct LiveSettings {
    /// Every venue's base URL (`POLYBOT_*_URL` overrides).
    pub endpoints: Endpoints,
    /// NewsAPI's base URL (`POLYBOT_NEWSAPI_URL`).
    pub newsapi_url: String,
    /// The operator's NewsAPI key (`POLYBOT_NEWSAPI_KEY`), for tenants whose
    /// keys have none.
    pub newsapi_key: Option<secrecy::SecretString>,
    /// Timeouts and retries of the venue connectors.
    pub client: ClientOptions,
    /// Use the Polymarket market WebSocket for book updates.
    pub stream: bool,
    /// How many markets per venue complement arbitrage watches.
    pub complement_markets: usize,
    /// How often markets are discovered again (new windows, new listings).
    pub rediscover_every: Duration,
    /// The shared market-data service's Redis (`POLYBOT_MARKET_DATA_URL`):
    /// when set, public market data comes from there, not from the venues.
    pub market_data: Option<secrecy::SecretString>,
    /// The CA bundle its certificate must chain to, for `rediss://`
    /// (`POLYBOT_MARKET_DATA_CA_FILE`); the web PKI roots without one.
    pub market_data_ca: Option<market_data::CaBundle>,
    /// How often a worker on the shared service renews its registration
    /// and reads the service's view of the venues' health.
    pub market_data_every: Duration,
    /// How many events wait for the engine before feeds wait (or, reading
    /// the shared service, drop updates and resync from its snapshots).
    pub channel_capacity: usize,
    /// The Kalshi key that authenticates Kalshi's WebSocket (Kalshi asks
    /// for one even for public books): the tenant's when it has one, else
    /// the operator's (`POLYBOT_KALSHI_WS_KEY_ID` and
    /// `POLYBOT_KALSHI_WS_PRIVATE_KEY`, read by the market-data service).
    /// Without one Kalshi's books are polled over REST.
    pub kalshi_ws_key: Option<Arc<KalshiSigner>>,
}

/// The operator's Kalshi key id for the WebSocket (the market-data service).
pub const ENV_KALSHI_WS_KEY_ID: &str = "POLYBOT_KALSHI_WS_KEY_ID";
/// The operator's Kalshi private key (PEM) for the WebSocket.
pub const ENV_KALSHI_WS_PRIVATE_KEY: &str = "POLYBOT_KALSHI_WS_PRIVATE_KEY";

/// The tenant's Kalshi key as a signer, when its keys have one; a key that
/// does not parse is logged (without its text) and the books are polled.
fn tenant_kalshi_signer(keys: &ExchangeKeys) -> Option<Arc<KalshiSigner>> {
    let key_id = keys.get("kalshi", "key_id")?;
    let pem = keys.get("kalshi", "private_key_pem")?;
    match KalshiSigner::from_pem(secrecy::ExposeSecret::expose_secret(key_id).trim(), pem) {
        Ok(signer) => Some(Arc::new(signer)),
        Err(e) => {
            tracing::warn!(error = %e, "the tenant's Kalshi key cannot sign; Kalshi's books are polled");
            None
        }
    }
}

impl LiveSettings {
    /// The venues' real endpoints and the default limits.
    pub fn new(endpoints: Endpoints) -> Self {
        Self {
            endpoints,
            newsapi_url: DEFAULT_NEWSAPI_URL.to_owned(),
            newsapi_key: None,
            client: ClientOptions::default(),
            stream: true,
            complement_markets: 20,
            rediscover_every: Duration::from_secs(60),
            market_data: None,
            market_data_ca: None,
            market_data_every: market_data::REGISTER_EVERY,
            channel_capacity: 4_096,
            kalshi_ws_key: None,
        }
    }

    /// Reads public market data from the shared service at `url`; an error
    /// naming `POLYBOT_MARKET_DATA_URL` (never quoting the URL, which holds
    /// a password) unless it is a Redis URL.
    pub fn set_market_data_url(&mut self, url: &str) -> anyhow::Result<()> {
        let url = url.trim();
        if !url.starts_with("redis://")
            && !url.starts_with("rediss://")
            && !url.starts_with("redis+unix://")
            && !url.starts_with("unix://")
        {
            anyhow::bail!(
                "{ENV_MARKET_DATA_URL} is not a redis:// (rediss:// for TLS, or redis+unix://) URL"
            );
        }
        self.market_data = Some(url.to_owned().into());
        Ok(())
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
        if let Ok(url) = std::env::var(ENV_MARKET_DATA_URL)
            && !url.trim().is_empty()
        {
            settings.set_market_data_url(&url)?;
        }
        if let Some(path) = std::env::var_os(ENV_MARKET_DATA_CA_FILE)
            && !path.is_empty()
        {
            let ca = market_data::CaBundle::read(std::path::Path::new(&path))
                .map_err(|e| anyhow::anyhow!("{ENV_MARKET_DATA_CA_FILE}: {e}"))?;
            settings.market_data_ca = Some(ca);
        }
        let key_id = std::env::var(ENV_KALSHI_WS_KEY_ID).unwrap_or_default();
        let pem = std::env::var(ENV_KALSHI_WS_PRIVATE_KEY).unwrap_or_default();
        match (key_id.trim().is_empty(), pem.trim().is_empty()) {
            (true, true) => {}
            (false, false) => {
                let signer = KalshiSigner::from_pem(key_id.trim(), &pem.into())
                    .map_err(|e| anyhow::anyhow!("{ENV_KALSHI_WS_PRIVATE_KEY}: {e}"))?;
                settings.kalshi_ws_key = Some(Arc::new(signer));
            }
            _ => anyhow::bail!(
                "{ENV_KALSHI_WS_KEY_ID} and {ENV_KALSHI_WS_PRIVATE_KEY} go together: set both or neither"
            ),
        }
        Ok(settings)
    }
}

/// Live market data for one engine; see the module docs.
#[derive(Debug)]
pub struct LiveSource {
    events: mpsc::Receiver<Event>,
    shared: Shared,
    reporter: HealthReporter,
    /// Feed-health events waiting to be handed out.
    pending: VecDeque<Event>,
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

/// Starts the venues' public feeds `plan` needs (everything but news), one
/// task each, on `ctx`.
fn spawn_public_feeds(
    ctx: &Ctx,
    plan: &FeedPlan,
    settings: &LiveSettings,
    tasks: &mut JoinSet<()>,
    parts: &mut Vec<&'static str>,
) -> Result<(), SourceError> {
    let shared = &ctx.shared;
    let fatal = |e: VenueError| SourceError {
        message: format!("starting the live feeds: {e}"),
        fatal: true,
    };
    if plan.needs_polymarket() {
        let pm = Polymarket::with_options(&settings.endpoints, &settings.client).map_err(fatal)?;
        shared.expect(POLYMARKET_GAMMA);
        shared.expect(POLYMARKET_CLOB);
        parts.push("Polymarket");
        tasks.spawn(polymarket::polymarket_feed(
            ctx.clone(),
            pm,
            plan.clone(),
            settings.clone(),
        ));
    }
    if plan.needs_kalshi() {
        let kalshi = Kalshi::with_options(&settings.endpoints, &settings.client).map_err(fatal)?;
        shared.expect(KALSHI);
        parts.push("Kalshi");
        tasks.spawn(kalshi::kalshi_feed(
            ctx.clone(),
            kalshi,
            plan.clone(),
            settings.clone(),
        ));
    }
    for (venue, assets) in &plan.spot {
        let client = SpotClient::new(*venue, settings).map_err(fatal)?;
        shared.expect(spot_key(*venue));
        parts.push(spot_name(*venue));
        tasks.spawn(spot::spot_feed(
            ctx.clone(),
            client,
            assets.clone(),
            plan.spot_every,
            settings.clone(),
        ));
    }
    Ok(())
}

impl LiveSource {
    /// Starts the feeds `strategies` need. Must run inside a Tokio runtime.
    /// `keys` gives the NewsAPI key (else the operator's, in `settings`)
    /// and the Kalshi key that authenticates Kalshi's WebSocket (else the
    /// operator's, in `settings`); nothing else of it is read.
    pub fn start(
        settings: LiveSettings,
        strategies: &StrategiesConfig,
        keys: &ExchangeKeys,
    ) -> Result<Self, SourceError> {
        let plan = FeedPlan::for_strategies(strategies);
        let mut settings = settings;
        if let Some(signer) = tenant_kalshi_signer(keys) {
            settings.kalshi_ws_key = Some(signer);
        }
        let (tx, events) = mpsc::channel(settings.channel_capacity.max(1));
        let shared = Shared::default();
        let cancel = CancellationToken::new();
        let ctx = Ctx {
            tx,
            shared: shared.clone(),
            cancel: cancel.clone(),
        };
        let mut tasks = JoinSet::new();
        let mut parts = Vec::new();
        match &settings.market_data {
            Some(url) => {
                let keys = market_data::shared_keys(&plan);
                if !market_data::topics(&plan).is_empty() {
                    for key in &keys {
                        shared.expect(key);
                    }
                    let client = market_data::redis_client(
                        secrecy::ExposeSecret::expose_secret(url),
                        settings.market_data_ca.as_ref(),
                    )
                    .map_err(|message| SourceError {
                        message,
                        fatal: true,
                    })?;
                    parts.push("shared market data");
                    tasks.spawn(market_data::shared_feed(
                        ctx.clone(),
                        client,
                        settings.market_data_ca.clone(),
                        plan.clone(),
                        keys,
                        settings.market_data_every,
                    ));
                }
            }
            None => spawn_public_feeds(&ctx, &plan, &settings, &mut tasks, &mut parts)?,
        }
        if plan.needs_news() {
            let key = keys
                .get("newsapi", "api_key")
                .or(settings.newsapi_key.as_ref())
                .cloned();
            let news = news::NewsFeed::new(&settings, &plan, key).map_err(|e| SourceError {
                message: e.message,
                fatal: true,
            })?;
            if plan.newsapi_query.is_some() {
                shared.expect(NEWSAPI);
            }
            if !plan.rss_feeds.is_empty() {
                shared.expect(RSS);
            }
            parts.push("news");
            tasks.spawn(news::news_feed(ctx.clone(), news, plan.news_every));
        }
        let label = if parts.is_empty() {
            "live data: no enabled strategy needs a feed".to_owned()
        } else {
            format!("live data: {}", parts.join(", "))
        };
        Ok(Self {
            events,
            shared,
            reporter: HealthReporter::new(plan, strategies),
            pending: VecDeque::new(),
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

    /// Feeds stamp events as they receive them; across feeds the channel may
    /// reorder by a millisecond. Time never runs backwards for the engine
    /// (nor in a recording).
    fn in_order(&mut self, mut event: Event) -> Event {
        if event.ts < self.last_ts {
            event.ts = self.last_ts;
        }
        self.last_ts = event.ts;
        event
    }
}

impl EventSource for LiveSource {
    async fn next_event(&mut self) -> Result<Option<Event>, SourceError> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Ok(Some(self.in_order(event)));
            }
            let now = SystemClock.now();
            self.pending.extend(
                self.reporter
                    .changes(&self.shared)
                    .into_iter()
                    .map(|h| Event::new(now, EventKind::FeedHealth(Box::new(h)))),
            );
            if !self.pending.is_empty() {
                continue;
            }
            // Both branches are cancel-safe: a received event is returned at
            // once, and a health change is found again by `changes`.
            let received = tokio::select! {
                received = self.events.recv() => Some(received),
                () = self.shared.changed() => None,
            };
            match received {
                Some(Some(event)) => return Ok(Some(self.in_order(event))),
                Some(None) => {
                    return Err(SourceError {
                        message: format!("{}: every feed task has stopped", self.label),
                        fatal: true,
                    });
                }
                None => continue,
            }
        }
    }

    fn describe(&self) -> String {
        self.label.clone()
    }

    fn is_replay(&self) -> bool {
        false
    }

    fn health(&self) -> BTreeMap<String, FeedStatus> {
        self.shared.feeds()
    }
}
