//! Public market data fetched once per deployment: the market-data service
//! ([`run_market_data`], `polybot market-data`) and the workers' side of it
//! (the `shared_feed` task [`super::LiveSource`] starts when
//! `POLYBOT_MARKET_DATA_URL` is set).
//!
//! # Protocol (Redis)
//!
//! - **Registration.** Every subscribing worker writes the public part of
//!   its [`FeedPlan`] (no news: NewsAPI runs on the tenant's own key) into the
//!   hash [`PLANS_KEY`] under its own id, with an expiry it renews every
//!   [`REGISTER_EVERY`]. The service reads the hash, drops expired entries,
//!   and runs one set of venue feeds for the union of the plans, restarting
//!   them when the union changes. N tenants therefore cost one connection per
//!   venue, not N.
//! - **Topics.** Events are routed by what a plan asks for:
//!   `polymarket:updown:BTC` (the 15-minute windows of an asset),
//!   `polymarket:market:<slug>` (a curated pair's or news rule's market),
//!   `polymarket:complement` (the non-recurring markets the service follows),
//!   the same three for `kalshi` (`kalshi:updown:BTC`,
//!   `kalshi:market:<ticker>`, `kalshi:complement`) and
//!   `spot:<venue>:<ASSET>`. A market's books, deltas, trades and resolution
//!   follow its definition's topics.
//! - **Live updates.** Each event is published on `polybot:md:ev:<topic>` as
//!   `<seq> <line>`: a per-topic sequence number and the event as a replay
//!   line ([`polybot_engine::event_line`]).
//! - **Snapshots.** In the same atomic transaction, the hash
//!   `polybot:md:snap:<topic>` gets the event's state (a market's definition,
//!   each outcome's full book with deltas applied, a spot price, a
//!   resolution) and `_seq`, the sequence number it is current to.
//!
//! A subscriber subscribes first, then reads each topic's snapshot, then
//! applies updates whose sequence number follows the last one it applied. A
//! gap (a message lost, or dropped by the worker itself because its engine
//! lagged and the bounded channel was full) is repaired by reading the
//! snapshot again. The service never waits for a subscriber: Redis buffers
//! each subscriber's messages apart (and disconnects one that exceeds its
//! output-buffer limit, which then reconnects and resyncs), so a slow worker
//! stalls only itself.
//!
//! Not here: the venue feeds themselves (the sibling modules, shared with a
//! worker that reads the venues directly).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use futures::StreamExt;
use polybot_core::strategy::Venue;
use polybot_core::worker::{FeedState, FeedStatus};
use polybot_engine::{
    BookSide, BookSnapshot, Event, EventKind, Level, MarketDef, MarketId, ReplayParser, Timestamp,
    event_line,
};
use redis::AsyncCommands;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::health::{Shared, now_ms};
use super::plan::{FeedPlan, KALSHI, POLYMARKET_CLOB, POLYMARKET_GAMMA, spot_key};
use super::{Ctx, LiveSettings};

/// The hash of registered plans: subscriber id → [`Registration`] (JSON).
pub const PLANS_KEY: &str = "polybot:md:plans";
/// How often a worker renews its registration.
pub const REGISTER_EVERY: Duration = Duration::from_secs(10);
/// The service's view of the venue feeds' health: a hash of feed key →
/// [`FeedStatus`] (JSON), each field written by the shard running the feed.
pub const HEALTH_KEY: &str = "polybot:md:health";
/// How long after a market closes it stays in the snapshots (its
/// resolution may follow its close).
const PRUNE_AFTER: Duration = Duration::from_secs(3_600);
/// The snapshot field holding the sequence number the snapshot is current to.
const SEQ_FIELD: &str = "_seq";

fn channel(topic: &str) -> String {
    format!("polybot:md:ev:{topic}")
}

fn snapshot_key(topic: &str) -> String {
    format!("polybot:md:snap:{topic}")
}

/// What a worker registers: the public feeds it needs, until when.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Registration {
    plan: FeedPlan,
    expires_at_ms: i64,
}

/// The topics `plan` reads (see the module docs).
pub fn topics(plan: &FeedPlan) -> Vec<String> {
    let mut out = Vec::new();
    for asset in &plan.updown_assets {
        out.push(format!("polymarket:updown:{}", asset.to_ascii_uppercase()));
    }
    for (_, asset) in &plan.kalshi_series {
        out.push(format!("kalshi:updown:{}", asset.to_ascii_uppercase()));
    }
    for slug in &plan.polymarket_slugs {
        out.push(format!("polymarket:market:{slug}"));
    }
    for ticker in &plan.kalshi_tickers {
        out.push(format!("kalshi:market:{ticker}"));
    }
    if plan.complement_polymarket {
        out.push("polymarket:complement".to_owned());
    }
    if plan.complement_kalshi {
        out.push("kalshi:complement".to_owned());
    }
    for (venue, assets) in &plan.spot {
        for asset in assets {
            out.push(format!(
                "spot:{}:{}",
                spot_key(*venue),
                asset.to_ascii_uppercase()
            ));
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The public part of a plan (what the service can fetch for everyone).
pub(super) fn public_part(plan: &FeedPlan) -> FeedPlan {
    FeedPlan {
        newsapi_query: None,
        rss_feeds: Vec::new(),
        ..plan.clone()
    }
}

fn push_unique<T: PartialEq + Clone>(list: &mut Vec<T>, item: &T) {
    if !list.contains(item) {
        list.push(item.clone());
    }
}

/// One plan that reads everything `plans` read, at the fastest of their
/// intervals; `None` when there is nothing to read.
pub fn union(plans: &[FeedPlan]) -> Option<FeedPlan> {
    let mut iter = plans.iter();
    let mut out = public_part(iter.next()?);
    for plan in iter {
        for a in &plan.updown_assets {
            push_unique(&mut out.updown_assets, a);
        }
        for s in &plan.kalshi_series {
            push_unique(&mut out.kalshi_series, s);
        }
        for s in &plan.polymarket_slugs {
            push_unique(&mut out.polymarket_slugs, s);
        }
        for t in &plan.kalshi_tickers {
            push_unique(&mut out.kalshi_tickers, t);
        }
        out.complement_polymarket |= plan.complement_polymarket;
        out.complement_kalshi |= plan.complement_kalshi;
        for (venue, assets) in &plan.spot {
            match out.spot.iter_mut().find(|(v, _)| v == venue) {
                Some((_, have)) => {
                    for a in assets {
                        push_unique(have, a);
                    }
                }
                None => out.spot.push((*venue, assets.clone())),
            }
        }
        out.book_every = out.book_every.min(plan.book_every);
        out.spot_every = out.spot_every.min(plan.spot_every);
    }
    // A stable form, so that the same tenants give the same union.
    out.updown_assets.sort();
    out.kalshi_series.sort();
    out.polymarket_slugs.sort();
    out.kalshi_tickers.sort();
    out.spot.sort_by_key(|(v, _)| *v);
    for (_, assets) in &mut out.spot {
        assets.sort();
    }
    (!topics(&out).is_empty()).then_some(out)
}

/// The market-data service's settings (`polybot market-data`).
#[derive(Debug, Clone)]
pub struct MarketDataSettings {
    /// The Redis the service publishes to (`redis://…`, `rediss://…` for TLS).
    pub redis_url: secrecy::SecretString,
    /// The CA the Redis server's certificate must chain to (`rediss://`
    /// only); without it, the web PKI roots built into the binary.
    pub redis_ca: Option<CaBundle>,
    /// The venues this shard reads and publishes (one service per venue
    /// group against the same Redis); every venue when `None`.
    pub venues: Option<Vec<Venue>>,
    /// How the service reaches the venues.
    pub live: LiveSettings,
    /// How often registrations are read again.
    pub refresh_every: Duration,
}

/// A PEM bundle of CA certificates a `rediss://` server's certificate must
/// chain to (a private CA, or ElastiCache's when the web PKI roots are not
/// wanted). Read once at start: a worker cannot open files once sandboxed.
#[derive(Clone)]
pub struct CaBundle {
    pem: Vec<u8>,
    /// Where it came from, for errors.
    source: String,
}

impl std::fmt::Debug for CaBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaBundle")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl CaBundle {
    /// Reads `path`; an error if it holds no PEM certificate.
    pub fn read(path: &std::path::Path) -> Result<Self, String> {
        let pem = std::fs::read(path)
            .map_err(|e| format!("reading the Redis CA bundle {}: {e}", path.display()))?;
        Self::from_pem(pem, path.display().to_string())
    }

    /// A bundle from PEM text; `source` names it in errors.
    pub fn from_pem(pem: Vec<u8>, source: String) -> Result<Self, String> {
        if !pem
            .windows(b"-----BEGIN CERTIFICATE-----".len())
            .any(|w| w == b"-----BEGIN CERTIFICATE-----")
        {
            return Err(format!(
                "the Redis CA bundle {source} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
            ));
        }
        Ok(Self { pem, source })
    }
}

/// A Redis client for `url`: `redis://`, `redis+unix://`, or `rediss://`
/// (TLS, the server's certificate and name verified against `ca`, or the
/// web PKI roots built into the binary without one). A CA bundle with a
/// URL that is not `rediss://` is refused rather than ignored.
pub fn redis_client(url: &str, ca: Option<&CaBundle>) -> Result<redis::Client, String> {
    let tls = url.starts_with("rediss://");
    if tls {
        // rustls builds its configuration from the process's provider.
        polybot_venues::install_crypto_provider();
    }
    let client = match ca {
        Some(ca) if !tls => {
            return Err(format!(
                "market data: a CA bundle ({}) is given, but the Redis URL is not rediss:// (TLS)",
                ca.source
            ));
        }
        Some(ca) => redis::Client::build_with_tls(
            url,
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(ca.pem.clone()),
            },
        ),
        None => redis::Client::open(url),
    };
    // The URL holds the password: the error never quotes it.
    client.map_err(|e| format!("market data: the Redis URL: {e}"))
}

/// What a connection to `client` checks, for its errors: over TLS, a
/// refused certificate is the likeliest cause, so the error says which
/// roots it was checked against.
fn connecting(client: &redis::Client, ca: Option<&CaBundle>) -> String {
    match (&client.get_connection_info().addr, ca) {
        (redis::ConnectionAddr::TcpTls { .. }, Some(ca)) => format!(
            "connecting to Redis over TLS (the server's certificate checked against the CA bundle {})",
            ca.source
        ),
        (redis::ConnectionAddr::TcpTls { .. }, None) => "connecting to Redis over TLS (the server's certificate checked against the web PKI roots; a private CA needs POLYBOT_MARKET_DATA_CA_FILE)".to_owned(),
        _ => "connecting to Redis".to_owned(),
    }
}

/// A Redis failure with what was being done.
fn redis_err(doing: &str) -> impl FnOnce(redis::RedisError) -> String + '_ {
    move |e| format!("market data: {doing}: {e}")
}

/// The part of `plan` a shard serving `venues` reads: the other venues'
/// markets and spot prices are another shard's.
pub fn for_venues(plan: &FeedPlan, venues: &[Venue]) -> FeedPlan {
    let mut out = plan.clone();
    if !venues.contains(&Venue::Polymarket) {
        out.updown_assets.clear();
        out.polymarket_slugs.clear();
        out.complement_polymarket = false;
    }
    if !venues.contains(&Venue::Kalshi) {
        out.kalshi_series.clear();
        out.kalshi_tickers.clear();
        out.complement_kalshi = false;
    }
    out.spot.retain(|(venue, _)| venues.contains(venue));
    out
}

/// The health keys of `venues`' feeds (what a shard reports and clears).
fn feed_keys(venues: &[Venue]) -> Vec<&'static str> {
    let mut keys = Vec::new();
    for venue in venues {
        match venue {
            Venue::Polymarket => keys.extend([POLYMARKET_GAMMA, POLYMARKET_CLOB]),
            Venue::Kalshi => keys.push(KALSHI),
            spot => keys.push(spot_key(*spot)),
        }
    }
    keys
}

/// Runs the market-data service until `cancel`: reads the registered plans,
/// runs one set of public venue feeds for their union (the part of it on
/// the shard's venues), publishes every event to its topics. A Redis
/// failure is returned (the supervisor restarts the service); a venue
/// failure is the feeds' own business, as in a worker.
pub async fn run_market_data(
    settings: MarketDataSettings,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let venues = settings
        .venues
        .clone()
        .unwrap_or_else(|| Venue::ALL.to_vec());
    if venues.is_empty() {
        anyhow::bail!("market data: a shard serves at least one venue");
    }
    let client = redis_client(
        secrecy::ExposeSecret::expose_secret(&settings.redis_url),
        settings.redis_ca.as_ref(),
    )
    .map_err(anyhow::Error::msg)?;
    let doing = connecting(&client, settings.redis_ca.as_ref());
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .map_err(redis_err(&doing))
        .map_err(anyhow::Error::msg)?;
    forget_unsharded_health(&mut conn)
        .await
        .map_err(anyhow::Error::msg)?;
    let claims = VenueClaims::acquire(&mut conn, &venues, settings.refresh_every, &cancel)
        .await
        .map_err(anyhow::Error::msg)?;
    let served = serve(&settings, &venues, &claims, &mut conn, &cancel).await;
    if let Err(e) = claims.release(&mut conn).await {
        tracing::warn!(error = %e, "market data: releasing the venues (they lapse by themselves)");
    }
    served
}

/// The service's loop once its venues are claimed: follows the workers'
/// plans and publishes the venues' events until `cancel`.
async fn serve(
    settings: &MarketDataSettings,
    venues: &[Venue],
    claims: &VenueClaims,
    conn: &mut redis::aio::MultiplexedConnection,
    cancel: &CancellationToken,
) -> anyhow::Result<()> {
    let mut conn = conn.clone();
    let venues = venues.to_vec();
    let mut publisher = Publisher::default();
    let mut feeds: Option<Feeds> = None;
    let mut refresh = tokio::time::interval(settings.refresh_every);
    let venue_names: Vec<&str> = venues.iter().map(Venue::as_str).collect();
    tracing::info!(venues = ?venue_names, "market data: serving");
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            _ = refresh.tick() => {
                claims.renew(&mut conn).await.map_err(anyhow::Error::msg)?;
                publisher
                    .prune(&mut conn, Timestamp(now_ms()))
                    .await
                    .map_err(anyhow::Error::msg)?;
                write_health(&mut conn, &venues, feeds.as_ref().map(|f| &f.shared))
                    .await
                    .map_err(anyhow::Error::msg)?;
                let wanted = read_plans(&mut conn).await.map_err(anyhow::Error::msg)?;
                let wanted = union(&wanted)
                    .map(|plan| for_venues(&plan, &venues))
                    .filter(|plan| !topics(plan).is_empty());
                if feeds.as_ref().map(|f| &f.plan) != wanted.as_ref() {
                    if let Some(old) = feeds.take() {
                        old.stop().await;
                    }
                    if let Some(plan) = wanted {
                        tracing::info!(topics = ?topics(&plan), "market data: following");
                        publisher.plan = plan.clone();
                        feeds = Some(Feeds::start(&settings.live, plan)?);
                    }
                }
            }
            event = async {
                match feeds.as_mut() {
                    Some(f) => f.events.recv().await,
                    None => std::future::pending().await,
                }
            } => {
                let Some(event) = event else {
                    anyhow::bail!("market data: every venue feed task has stopped");
                };
                publisher.publish(&mut conn, &event).await.map_err(anyhow::Error::msg)?;
            }
        }
    }
    if let Some(old) = feeds.take() {
        old.stop().await;
    }
    Ok(())
}

/// A shard's exclusive claim on its venues: `polybot:md:owner:<venue>`
/// holds the instance that serves the venue, with an expiry renewed on
/// every refresh. Two services given the same venue would publish its topics
/// under two sequence counters (and every subscriber would resync forever),
/// so the second one waits for the claim to lapse (a stopped shard's does)
/// and then refuses to start, naming the venue.
struct VenueClaims {
    instance: String,
    venues: Vec<Venue>,
    ttl: Duration,
}

/// Renews a claim only while this instance holds it; 0 when it does not.
const RENEW_CLAIM: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end";
/// Deletes a claim only while this instance holds it.
const RELEASE_CLAIM: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";

fn owner_key(venue: Venue) -> String {
    format!("polybot:md:owner:{}", venue.as_str())
}

impl VenueClaims {
    /// Claims every venue of `venues` or none: waits while another instance
    /// holds one, at most a claim's lifetime, then fails naming the venue
    /// and its holder.
    async fn acquire(
        conn: &mut redis::aio::MultiplexedConnection,
        venues: &[Venue],
        refresh_every: Duration,
        cancel: &CancellationToken,
    ) -> Result<Self, String> {
        // Renewed every refresh: a claim outlives a few missed ones.
        let ttl = (refresh_every * 6).max(Duration::from_secs(1));
        let claims = Self {
            instance: uuid::Uuid::new_v4().simple().to_string(),
            venues: venues.to_vec(),
            ttl,
        };
        let give_up = tokio::time::Instant::now() + ttl + refresh_every;
        loop {
            let Some((venue, holder)) = claims.try_claim_all(conn).await? else {
                tracing::info!(instance = %claims.instance, "market data: venues claimed");
                return Ok(claims);
            };
            if tokio::time::Instant::now() >= give_up {
                return Err(format!(
                    "market data: venue {} is already served by another market-data service (instance {holder}); give each venue to exactly one shard (--venues / POLYBOT_MARKET_DATA_VENUES)",
                    venue.as_str()
                ));
            }
            tracing::info!(venue = venue.as_str(), %holder, "market data: waiting for another service's claim on the venue to lapse");
            tokio::select! {
                () = cancel.cancelled() => return Err("market data: stopped while waiting to claim the venues".to_owned()),
                () = tokio::time::sleep(refresh_every.min(Duration::from_secs(1))) => {}
            }
        }
    }

    /// One attempt: `None` when every venue is now this instance's, else
    /// the first venue another instance holds (and what this attempt took is
    /// given back).
    async fn try_claim_all(
        &self,
        conn: &mut redis::aio::MultiplexedConnection,
    ) -> Result<Option<(Venue, String)>, String> {
        let ttl_ms = u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX);
        let mut taken = Vec::new();
        for venue in &self.venues {
            let key = owner_key(*venue);
            let set: Option<String> = redis::cmd("SET")
                .arg(&key)
                .arg(&self.instance)
                .arg("NX")
                .arg("PX")
                .arg(ttl_ms)
                .query_async(conn)
                .await
                .map_err(redis_err("claiming a venue"))?;
            if set.is_some() {
                taken.push(*venue);
                continue;
            }
            let holder: Option<String> = conn
                .get(&key)
                .await
                .map_err(redis_err("reading a venue's claim"))?;
            let mine = Self {
                instance: self.instance.clone(),
                venues: taken,
                ttl: self.ttl,
            };
            mine.release(conn).await?;
            return Ok(Some((
                *venue,
                holder.unwrap_or_else(|| "which just stopped".to_owned()),
            )));
        }
        Ok(None)
    }

    /// Extends every claim; fails when one is no longer this instance's (it
    /// lapsed while this service stalled, and another took the venue).
    async fn renew(&self, conn: &mut redis::aio::MultiplexedConnection) -> Result<(), String> {
        let ttl_ms = u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX);
        for venue in &self.venues {
            let renewed: i64 = redis::cmd("EVAL")
                .arg(RENEW_CLAIM)
                .arg(1)
                .arg(owner_key(*venue))
                .arg(&self.instance)
                .arg(ttl_ms)
                .query_async(conn)
                .await
                .map_err(redis_err("renewing a venue's claim"))?;
            if renewed == 0 {
                return Err(format!(
                    "market data: lost the claim on venue {} (it lapsed and another service may serve it now); stopping so that one service serves it",
                    venue.as_str()
                ));
            }
        }
        Ok(())
    }

    /// Gives the venues back at once (they would lapse by themselves).
    async fn release(&self, conn: &mut redis::aio::MultiplexedConnection) -> Result<(), String> {
        for venue in &self.venues {
            redis::cmd("EVAL")
                .arg(RELEASE_CLAIM)
                .arg(1)
                .arg(owner_key(*venue))
                .arg(&self.instance)
                .query_async::<()>(conn)
                .await
                .map_err(redis_err("releasing a venue's claim"))?;
        }
        Ok(())
    }
}

/// Before shards, the health was one JSON string; now it is a hash of one
/// field per feed, each written by the shard that runs it.
async fn forget_unsharded_health(
    conn: &mut redis::aio::MultiplexedConnection,
) -> Result<(), String> {
    let kind: String = redis::cmd("TYPE")
        .arg(HEALTH_KEY)
        .query_async(conn)
        .await
        .map_err(redis_err("reading the feeds' health"))?;
    if kind == "string" {
        let _removed: i64 = conn
            .del(HEALTH_KEY)
            .await
            .map_err(redis_err("removing the feeds' health of an older service"))?;
    }
    Ok(())
}

/// Writes the health of this shard's running feeds into [`HEALTH_KEY`] and
/// removes its venues' feeds that no longer run.
async fn write_health(
    conn: &mut redis::aio::MultiplexedConnection,
    venues: &[Venue],
    running: Option<&Shared>,
) -> Result<(), String> {
    let feeds = running.map(Shared::feeds).unwrap_or_default();
    let mut pipe = redis::pipe();
    pipe.atomic();
    for (key, status) in &feeds {
        let json = serde_json::to_string(status)
            .map_err(|e| format!("market data: encoding the feeds' health: {e}"))?;
        pipe.hset(HEALTH_KEY, key, json).ignore();
    }
    let gone: Vec<&str> = feed_keys(venues)
        .into_iter()
        .filter(|key| !feeds.contains_key(*key))
        .collect();
    if !gone.is_empty() {
        pipe.hdel(HEALTH_KEY, &gone).ignore();
    }
    if !feeds.is_empty() || !gone.is_empty() {
        pipe.query_async::<()>(conn)
            .await
            .map_err(redis_err("writing the feeds' health"))?;
    }
    Ok(())
}

/// The registered plans that have not expired; expired ones are removed.
async fn read_plans(conn: &mut redis::aio::MultiplexedConnection) -> Result<Vec<FeedPlan>, String> {
    let all: HashMap<String, String> = conn
        .hgetall(PLANS_KEY)
        .await
        .map_err(redis_err("reading the registered plans"))?;
    let now = now_ms();
    let mut plans = Vec::new();
    let mut expired = Vec::new();
    for (id, json) in all {
        match serde_json::from_str::<Registration>(&json) {
            Ok(r) if r.expires_at_ms > now => plans.push(r.plan),
            Ok(_) => expired.push(id),
            Err(e) => {
                tracing::warn!(subscriber = %id, error = %e, "market data: an unreadable registration is dropped");
                expired.push(id);
            }
        }
    }
    if !expired.is_empty() {
        let _removed: i64 = conn
            .hdel(PLANS_KEY, &expired)
            .await
            .map_err(redis_err("removing expired registrations"))?;
    }
    Ok(plans)
}

/// The service's running venue feeds for one plan.
struct Feeds {
    plan: FeedPlan,
    shared: Shared,
    events: mpsc::Receiver<Event>,
    cancel: CancellationToken,
    tasks: JoinSet<()>,
}

impl Feeds {
    fn start(settings: &LiveSettings, plan: FeedPlan) -> anyhow::Result<Self> {
        let (tx, events) = mpsc::channel(4_096);
        let cancel = CancellationToken::new();
        let shared = Shared::default();
        let ctx = Ctx {
            tx,
            shared: shared.clone(),
            cancel: cancel.clone(),
        };
        let mut tasks = JoinSet::new();
        let mut parts = Vec::new();
        super::spawn_public_feeds(&ctx, &plan, settings, &mut tasks, &mut parts)
            .map_err(|e| anyhow::anyhow!("{}", e.message))?;
        Ok(Self {
            plan,
            shared,
            events,
            cancel,
            tasks,
        })
    }

    async fn stop(mut self) {
        self.cancel.cancel();
        while let Some(joined) = self.tasks.join_next().await {
            if let Err(e) = joined
                && e.is_panic()
            {
                tracing::error!(error = %e, "market data: a venue feed task panicked");
            }
        }
    }
}

/// One outcome's book, kept so that a delta's snapshot is the whole book.
#[derive(Default)]
struct BookState {
    bids: BTreeMap<Decimal, Decimal>,
    asks: BTreeMap<Decimal, Decimal>,
}

impl BookState {
    fn snapshot(&self, market: &MarketId, outcome: usize) -> BookSnapshot {
        let levels = |side: &BTreeMap<Decimal, Decimal>| {
            side.iter().map(|(p, s)| Level::new(*p, *s)).collect()
        };
        BookSnapshot {
            market: market.clone(),
            outcome,
            bids: levels(&self.bids),
            asks: levels(&self.asks),
        }
    }
}

/// Routes events to topics and keeps the per-topic sequence numbers.
#[derive(Default)]
struct Publisher {
    plan: FeedPlan,
    /// Each market's topics, from its definition.
    routes: HashMap<MarketId, Vec<String>>,
    /// When each market closes and how many outcomes it has, for pruning.
    closes: HashMap<MarketId, (Timestamp, usize)>,
    books: HashMap<(MarketId, usize), BookState>,
    /// The last sequence number published per topic.
    seq: HashMap<String, u64>,
}

impl Publisher {
    fn market_topics(&self, def: &MarketDef) -> Vec<String> {
        let venue = match def.venue {
            Venue::Polymarket => "polymarket",
            Venue::Kalshi => "kalshi",
            _ => return Vec::new(),
        };
        let named = match def.venue {
            Venue::Polymarket => &self.plan.polymarket_slugs,
            _ => &self.plan.kalshi_tickers,
        };
        let complement = match def.venue {
            Venue::Polymarket => self.plan.complement_polymarket,
            _ => self.plan.complement_kalshi,
        };
        let mut out = Vec::new();
        if let Some(r) = &def.recurring {
            out.push(format!("{venue}:updown:{}", r.asset.as_str()));
        }
        if named.iter().any(|n| n == def.id.as_str()) {
            out.push(format!("{venue}:market:{}", def.id));
        }
        if def.recurring.is_none() && complement {
            out.push(format!("{venue}:complement"));
        }
        out
    }

    /// The event's topics and the snapshot field (and line) it updates.
    fn route(&mut self, event: &Event) -> (Vec<String>, Option<(String, String)>) {
        let of_market = |p: &Self, m: &MarketId| p.routes.get(m).cloned().unwrap_or_default();
        match &event.kind {
            EventKind::Market(def) => {
                let topics = self.market_topics(def);
                self.routes.insert(def.id.clone(), topics.clone());
                if let Some(closes_at) = def.closes_at {
                    self.closes
                        .insert(def.id.clone(), (closes_at, def.outcomes.len()));
                }
                (topics, Some((format!("0m:{}", def.id), event_line(event))))
            }
            EventKind::Book(book) => {
                let state = self
                    .books
                    .entry((book.market.clone(), book.outcome))
                    .or_default();
                state.bids = book.bids.iter().map(|l| (l.price, l.size)).collect();
                state.asks = book.asks.iter().map(|l| (l.price, l.size)).collect();
                (
                    of_market(self, &book.market),
                    Some((
                        format!("1b:{}:{}", book.market, book.outcome),
                        event_line(event),
                    )),
                )
            }
            EventKind::BookDelta(delta) => {
                let state = self
                    .books
                    .entry((delta.market.clone(), delta.outcome))
                    .or_default();
                let side = match delta.side {
                    BookSide::Bid => &mut state.bids,
                    BookSide::Ask => &mut state.asks,
                };
                if delta.size.is_zero() {
                    side.remove(&delta.price);
                } else {
                    side.insert(delta.price, delta.size);
                }
                let book = Event::new(
                    event.ts,
                    EventKind::Book(state.snapshot(&delta.market, delta.outcome)),
                );
                (
                    of_market(self, &delta.market),
                    Some((
                        format!("1b:{}:{}", delta.market, delta.outcome),
                        event_line(&book),
                    )),
                )
            }
            EventKind::Trade(trade) => (of_market(self, &trade.market), None),
            EventKind::Resolved(r) => (
                of_market(self, &r.market),
                Some((format!("2r:{}", r.market), event_line(event))),
            ),
            EventKind::Spot(spot) => (
                vec![format!(
                    "spot:{}:{}",
                    spot_key(spot.venue),
                    spot.asset.as_str()
                )],
                Some((format!("1s:{}", spot.asset), event_line(event))),
            ),
            // Headlines stay in the workers (the tenant's own NewsAPI key);
            // feed health is each reader's own; ticks are local.
            EventKind::Headline(_) | EventKind::FeedHealth(_) | EventKind::Tick => {
                (Vec::new(), None)
            }
        }
    }

    /// Forgets the markets that closed more than [`PRUNE_AFTER`] before
    /// `now` and removes them from the snapshots, which would otherwise grow
    /// by every 15-minute window.
    async fn prune(
        &mut self,
        conn: &mut redis::aio::MultiplexedConnection,
        now: Timestamp,
    ) -> Result<(), String> {
        let cutoff = now.0 - PRUNE_AFTER.as_millis() as i64;
        let closed: Vec<(MarketId, usize)> = self
            .closes
            .iter()
            .filter(|(_, (at, _))| at.0 < cutoff)
            .map(|(id, (_, outcomes))| (id.clone(), *outcomes))
            .collect();
        for (id, outcomes) in closed {
            self.closes.remove(&id);
            let topics = self.routes.remove(&id).unwrap_or_default();
            let mut fields = vec![format!("0m:{id}"), format!("2r:{id}")];
            for outcome in 0..outcomes {
                self.books.remove(&(id.clone(), outcome));
                fields.push(format!("1b:{id}:{outcome}"));
            }
            for topic in topics {
                let _removed: i64 = conn
                    .hdel(snapshot_key(&topic), &fields)
                    .await
                    .map_err(redis_err("pruning a closed market from a snapshot"))?;
            }
        }
        Ok(())
    }

    async fn publish(
        &mut self,
        conn: &mut redis::aio::MultiplexedConnection,
        event: &Event,
    ) -> Result<(), String> {
        let (topics, state) = self.route(event);
        if topics.is_empty() {
            return Ok(());
        }
        let line = event_line(event);
        for topic in topics {
            let snap = snapshot_key(&topic);
            let seq = match self.seq.get(&topic) {
                Some(seq) => seq + 1,
                // After a restart, carry on from the snapshot's number, so
                // that subscribers see a gap (and resync), never a repeat.
                None => {
                    let last: Option<u64> = conn
                        .hget(&snap, SEQ_FIELD)
                        .await
                        .map_err(redis_err("reading a topic's sequence number"))?;
                    last.unwrap_or(0) + 1
                }
            };
            self.seq.insert(topic.clone(), seq);
            let mut pipe = redis::pipe();
            pipe.atomic();
            if let Some((field, value)) = &state {
                pipe.hset(&snap, field, value).ignore();
            }
            pipe.hset(&snap, SEQ_FIELD, seq).ignore();
            pipe.publish(channel(&topic), format!("{seq} {line}"))
                .ignore();
            pipe.query_async::<()>(conn)
                .await
                .map_err(redis_err("publishing an event"))?;
        }
        Ok(())
    }
}

/// The worker's side: subscribes to `plan`'s topics at `url` and hands the
/// events to the engine through `ctx`; reconnects (and resyncs) after a
/// failure. Health reports the venue feeds as the connection to the service.
pub(super) async fn shared_feed(
    ctx: Ctx,
    client: redis::Client,
    ca: Option<CaBundle>,
    plan: FeedPlan,
    keys: Vec<&'static str>,
    every: Duration,
) {
    let subscriber = uuid::Uuid::new_v4().to_string();
    let mut backoff = Duration::from_millis(200);
    loop {
        let result = Subscriber::new(&ctx, &client, ca.as_ref(), &plan, &subscriber, &keys, every)
            .run()
            .await;
        match result {
            Ok(()) => return,
            Err(message) => {
                for key in &keys {
                    ctx.shared
                        .fail(key, FeedState::Unreachable, message.clone(), None);
                }
                if !ctx.pause(backoff).await {
                    return;
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}

/// The feed keys a plan's shared topics stand for, in health.
pub(super) fn shared_keys(plan: &FeedPlan) -> Vec<&'static str> {
    let mut keys = Vec::new();
    if plan.needs_polymarket() {
        keys.extend([POLYMARKET_GAMMA, POLYMARKET_CLOB]);
    }
    if plan.needs_kalshi() {
        keys.push(KALSHI);
    }
    keys.extend(plan.spot.iter().map(|(v, _)| spot_key(*v)));
    keys
}

/// One connection's worth of subscription.
struct Subscriber<'a> {
    ctx: &'a Ctx,
    client: &'a redis::Client,
    ca: Option<&'a CaBundle>,
    plan: &'a FeedPlan,
    id: &'a str,
    keys: &'a [&'static str],
    every: Duration,
    parser: ReplayParser,
    /// The last sequence number applied, per topic.
    applied: HashMap<String, u64>,
    /// Live updates were dropped (the engine lagged): resync once it has room.
    lagging: bool,
}

impl<'a> Subscriber<'a> {
    fn new(
        ctx: &'a Ctx,
        client: &'a redis::Client,
        ca: Option<&'a CaBundle>,
        plan: &'a FeedPlan,
        id: &'a str,
        keys: &'a [&'static str],
        every: Duration,
    ) -> Self {
        Self {
            ctx,
            client,
            ca,
            plan,
            id,
            keys,
            every,
            parser: ReplayParser::new(),
            applied: HashMap::new(),
            lagging: false,
        }
    }

    /// Ok once cancelled or the engine is gone; Err on a Redis failure.
    async fn run(mut self) -> Result<(), String> {
        let ctx = self.ctx;
        let client = self.client;
        let doing = connecting(client, self.ca);
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .map_err(redis_err(&doing))?;
        self.register(&mut conn).await?;
        let mut pubsub = client
            .get_async_pubsub()
            .await
            .map_err(redis_err("opening the market-data subscription"))?;
        let topics = topics(self.plan);
        for topic in &topics {
            pubsub
                .subscribe(channel(topic))
                .await
                .map_err(redis_err("subscribing to a market-data topic"))?;
        }
        let mut messages = std::pin::pin!(pubsub.on_message());
        // Subscribed first, so that nothing after the snapshot is missed.
        for topic in &topics {
            if !self.resync(&mut conn, topic).await? {
                return Ok(());
            }
        }
        self.apply_health(&mut conn).await?;
        let mut renew = tokio::time::interval(self.every);
        renew.tick().await;
        loop {
            let message = tokio::select! {
                () = ctx.cancel.cancelled() => return Ok(()),
                _ = renew.tick() => {
                    self.register(&mut conn).await?;
                    self.apply_health(&mut conn).await?;
                    continue;
                }
                // Lagging: as soon as the engine has room again, replace
                // the dropped updates with the snapshots.
                permit = ctx.tx.reserve(), if self.lagging => {
                    drop(permit);
                    self.lagging = false;
                    tracing::info!("market data: the engine caught up; resyncing from the snapshots");
                    for topic in &topics {
                        if !self.resync(&mut conn, topic).await? {
                            return Ok(());
                        }
                    }
                    continue;
                }
                message = messages.next() => message,
            };
            let Some(message) = message else {
                return Err("market data: the subscription connection closed".to_owned());
            };
            let topic = message
                .get_channel_name()
                .strip_prefix("polybot:md:ev:")
                .unwrap_or_default()
                .to_owned();
            let payload: String = match message.get_payload() {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(%topic, error = %e, "market data: an unreadable message is skipped");
                    continue;
                }
            };
            let Some((seq, line)) = payload
                .split_once(' ')
                .and_then(|(s, l)| Some((s.parse::<u64>().ok()?, l)))
            else {
                tracing::warn!(%topic, "market data: a message without a sequence number is skipped");
                continue;
            };
            if self.lagging {
                continue; // the resync on catching up replaces it
            }
            let last = self.applied.get(&topic).copied().unwrap_or(0);
            if seq <= last {
                continue; // already in the snapshot
            }
            if seq != last + 1 {
                tracing::info!(%topic, expected = last + 1, got = seq, "market data: a gap; resyncing from the snapshot");
                if !self.resync(&mut conn, &topic).await? {
                    return Ok(());
                }
                if seq != self.applied.get(&topic).copied().unwrap_or(0) + 1 {
                    continue;
                }
            }
            self.applied.insert(topic.clone(), seq);
            let Some(event) = self.parse(&topic, line) else {
                continue;
            };
            match self.ctx.tx.try_send(event) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    tracing::warn!(
                        "market data: the engine lags; dropping updates until it catches up"
                    );
                    self.lagging = true;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return Ok(()),
            }
        }
    }

    fn parse(&mut self, topic: &str, line: &str) -> Option<Event> {
        match self.parser.parse_line(line) {
            Ok(event) => event,
            Err(e) => {
                tracing::warn!(%topic, error = %e, "market data: an unreadable event is skipped");
                None
            }
        }
    }

    /// The venue feeds' health as the service sees it: the connection to
    /// the service works, so a feed is as healthy as the service's.
    async fn apply_health(
        &self,
        conn: &mut redis::aio::MultiplexedConnection,
    ) -> Result<(), String> {
        let fields: BTreeMap<String, String> = conn
            .hgetall(HEALTH_KEY)
            .await
            .map_err(redis_err("reading the feeds' health"))?;
        let mut feeds: BTreeMap<String, FeedStatus> = BTreeMap::new();
        for (key, json) in fields {
            match serde_json::from_str(&json) {
                Ok(status) => {
                    feeds.insert(key, status);
                }
                Err(e) => {
                    tracing::warn!(feed = %key, error = %e, "market data: unreadable feed health is ignored");
                }
            }
        }
        for key in self.keys {
            match feeds.get(*key) {
                Some(status) if !matches!(status.status, FeedState::Ok | FeedState::Connecting) => {
                    let error = status
                        .last_error
                        .as_deref()
                        .unwrap_or(status.status.as_str());
                    self.ctx.shared.fail(
                        key,
                        status.status,
                        format!("the market-data service: {error}"),
                        status.fix.clone(),
                    );
                }
                _ => self.ctx.shared.ok(key),
            }
        }
        Ok(())
    }

    async fn register(&self, conn: &mut redis::aio::MultiplexedConnection) -> Result<(), String> {
        let ttl_ms = i64::try_from(self.every.as_millis()).unwrap_or(i64::MAX / 4) * 3;
        let registration = Registration {
            plan: public_part(self.plan),
            expires_at_ms: now_ms() + ttl_ms,
        };
        let json = serde_json::to_string(&registration)
            .map_err(|e| format!("market data: encoding the registration: {e}"))?;
        let _added: i64 = conn
            .hset(PLANS_KEY, self.id, json)
            .await
            .map_err(redis_err("registering the worker's markets"))?;
        Ok(())
    }

    /// Replaces what the engine knows of `topic` with its snapshot; false
    /// once the engine is gone.
    async fn resync(
        &mut self,
        conn: &mut redis::aio::MultiplexedConnection,
        topic: &str,
    ) -> Result<bool, String> {
        let snapshot: BTreeMap<String, String> = conn
            .hgetall(snapshot_key(topic))
            .await
            .map_err(redis_err("reading a topic's snapshot"))?;
        let seq = snapshot
            .get(SEQ_FIELD)
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0);
        self.applied.insert(topic.to_owned(), seq);
        // Fields sort definitions (`0m:`) before books, prices and
        // resolutions, which need them.
        for (field, line) in &snapshot {
            if field == SEQ_FIELD {
                continue;
            }
            if let Some(event) = self.parse(topic, line)
                && self.ctx.tx.send(event).await.is_err()
            {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use polybot_engine::{BookDelta, parse_jsonl};
    use rust_decimal::Decimal;
    use serde_json::json;

    use super::*;

    fn plan(strategies: serde_json::Value) -> FeedPlan {
        FeedPlan::for_strategies(&polybot_core::strategy::parse_strategies(&strategies).unwrap())
    }

    #[test]
    fn the_union_of_two_tenants_plans_reads_what_either_reads_and_no_news() {
        let a = plan(json!({
            "crypto_15m": {"assets": ["BTC"], "spot_venues": ["coinbase"], "scan_interval_secs": 5},
            "news_arb": {"newsapi_query": "fed", "rules": []}
        }));
        let b = plan(json!({
            "crypto_15m": {"assets": ["ETH", "BTC"], "spot_venues": ["coinbase", "kraken"], "scan_interval_secs": 2},
            "complement_arb": {"venues": ["kalshi"]}
        }));
        let union = union(&[a.clone(), b.clone()]).unwrap();
        assert_eq!(union.updown_assets, vec!["BTC", "ETH"]);
        assert_eq!(
            union.spot,
            vec![
                (Venue::Coinbase, vec!["BTC".to_owned(), "ETH".to_owned()]),
                (Venue::Kraken, vec!["BTC".to_owned(), "ETH".to_owned()])
            ]
        );
        assert!(union.complement_kalshi && !union.complement_polymarket);
        assert_eq!(union.spot_every, Duration::from_secs(2));
        assert_eq!(union.newsapi_query, None);
        // The same tenants in another order: the same union.
        assert_eq!(super::union(&[b, a.clone()]), Some(union.clone()));
        assert_eq!(
            topics(&union),
            vec![
                "kalshi:complement",
                "polymarket:updown:BTC",
                "polymarket:updown:ETH",
                "spot:coinbase:BTC",
                "spot:coinbase:ETH",
                "spot:kraken:BTC",
                "spot:kraken:ETH"
            ]
        );
        // News alone needs nothing from the service.
        assert_eq!(
            super::union(&[plan(
                json!({"news_arb": {"rss_feeds": ["https://w.example/rss"], "rules": []}})
            )]),
            None
        );
    }

    #[test]
    fn a_books_snapshot_is_the_whole_book_with_the_deltas_applied() {
        let mut publisher = Publisher {
            plan: plan(
                json!({"cross_venue_arb": {"pairs": [{"polymarket": "fed-cut", "kalshi": "KXFED"}]}}),
            ),
            ..Publisher::default()
        };
        let events = parse_jsonl(concat!(
            r#"{"type":"market","ts":1,"market":"fed-cut","venue":"polymarket","outcomes":["Yes","No"],"fee_rate":"0.07"}"#, "\n",
            r#"{"type":"book","ts":2,"market":"fed-cut","outcome":0,"bids":[["0.40","10"]],"asks":[["0.45","20"]]}"#, "\n",
        ))
        .unwrap();
        let (topics, field) = publisher.route(&events[0]);
        assert_eq!(topics, vec!["polymarket:market:fed-cut"]);
        assert_eq!(field.unwrap().0, "0m:fed-cut");
        publisher.route(&events[1]);
        let delta = Event::new(
            Timestamp(3),
            EventKind::BookDelta(BookDelta {
                market: MarketId::new("fed-cut"),
                outcome: 0,
                side: BookSide::Ask,
                price: Decimal::new(44, 2),
                size: Decimal::new(5, 0),
            }),
        );
        let (topics, field) = publisher.route(&delta);
        assert_eq!(topics, vec!["polymarket:market:fed-cut"]);
        let (field, line) = field.unwrap();
        assert_eq!(field, "1b:fed-cut:0");
        let mut parser = ReplayParser::new();
        parser.parse_line(&event_line(&events[0])).unwrap();
        let Some(Event {
            kind: EventKind::Book(book),
            ..
        }) = parser.parse_line(&line).unwrap()
        else {
            panic!("the snapshot of a delta is a book: {line}");
        };
        assert_eq!(
            book.bids,
            vec![Level::new(Decimal::new(40, 2), Decimal::new(10, 0))]
        );
        assert_eq!(
            book.asks,
            vec![
                Level::new(Decimal::new(44, 2), Decimal::new(5, 0)),
                Level::new(Decimal::new(45, 2), Decimal::new(20, 0))
            ]
        );
    }

    #[tokio::test]
    async fn markets_closed_an_hour_ago_leave_the_snapshots() {
        let Some(binary) = std::env::var_os("POLYBOT_REDIS_SERVER").or_else(|| {
            std::env::split_paths(&std::env::var_os("PATH")?)
                .map(|p| p.join("redis-server"))
                .find(|p| p.is_file())
                .map(Into::into)
        }) else {
            panic!(
                "redis-server is installed (Debian: apt-get install redis-server; scripts/test installs it)"
            );
        };
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("redis.sock");
        let mut child = tokio::process::Command::new(binary)
            .args(["--port", "0", "--save", "", "--appendonly", "no"])
            .arg("--unixsocket")
            .arg(&socket)
            .arg("--dir")
            .arg(dir.path())
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let url = format!("redis+unix://{}", socket.display());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let mut conn = loop {
            if let Ok(client) = redis::Client::open(url.as_str())
                && let Ok(conn) = client.get_multiplexed_async_connection().await
            {
                break conn;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "redis-server answered"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let now = 10_000_000_000;
        let mut publisher = Publisher {
            plan: plan(json!({"complement_arb": {"venues": ["polymarket"]}})),
            ..Publisher::default()
        };
        let events = parse_jsonl(&format!(
            "{}\n{}\n{}\n{}\n",
            json!({"type":"market","ts":1,"market":"old","venue":"polymarket","outcomes":["Yes","No"],"fee_rate":"0.07","closes_at": now - 3_600_001}),
            json!({"type":"book","ts":2,"market":"old","outcome":1,"bids":[["0.4","1"]],"asks":[]}),
            json!({"type":"market","ts":3,"market":"open","venue":"polymarket","outcomes":["Yes","No"],"fee_rate":"0.07","closes_at": now + 1}),
            json!({"type":"book","ts":4,"market":"open","outcome":0,"bids":[["0.4","1"]],"asks":[]}),
        ))
        .unwrap();
        for event in &events {
            publisher.publish(&mut conn, event).await.unwrap();
        }
        let fields = |conn: &mut redis::aio::MultiplexedConnection| {
            let mut conn = conn.clone();
            async move {
                let mut f: Vec<String> = conn
                    .hkeys("polybot:md:snap:polymarket:complement")
                    .await
                    .unwrap();
                f.sort();
                f
            }
        };
        assert_eq!(
            fields(&mut conn).await,
            vec!["0m:old", "0m:open", "1b:old:1", "1b:open:0", "_seq"]
        );
        publisher.prune(&mut conn, Timestamp(now)).await.unwrap();
        assert_eq!(
            fields(&mut conn).await,
            vec!["0m:open", "1b:open:0", "_seq"]
        );
        child.kill().await.unwrap();
    }
}
