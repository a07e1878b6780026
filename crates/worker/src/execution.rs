//! Execution in the worker, for every mode. The engine decides the same way
//! in every mode and fills nothing itself: [`Execution::execute`] takes each
//! order it emits to the mode's executor — in `paper` the paper exchange
//! ([`polybot_engine::PaperExchange`], which fills at once against the
//! engine's book), in `shadow` and `live` the tenant's venue executor
//! ([`polybot_venues::execution`]) — and what the executor reports comes
//! back into the engine the same way (fills booked, the unfilled rest
//! cancelled, failures counted towards the strategy's circuit breaker, an
//! opportunity nothing of which filled marked not executed).
//!
//! - Each order's client id comes from (tenant, lease epoch, engine order
//!   number), so a retry never doubles it; before every send the executor
//!   checks the lease ([`DbFence`]), so a fenced twin sends nothing.
//! - A retryable failure (a timeout, a lost answer, 429, 5xx) is retried a
//!   bounded number of times with back-off; an order still in doubt after
//!   that is left to the next start's reconciliation, never re-decided.
//! - On start, before the first event, [`Execution::reconcile`] reads the
//!   venue's open orders, balances, trade history and the positions it
//!   names, books the balance as the engine's cash, counts the positions'
//!   cost towards the engine's position and exposure limits, keeps the open
//!   orders (cancelled with the kill switch), and writes what it found to
//!   the tenant's audit log.
//!
//! - Fills that come after an order's answer (an order the venue holds as
//!   "delayed" and matches later, or one resting on the book) arrive on the
//!   venue's user channel ([`UserChannel`]: Polymarket's `/ws/user`,
//!   Kalshi's private `fill` channel); while a venue's channel is down the
//!   worker polls its REST fills instead (`GET /data/trades`,
//!   `GET /portfolio/fills`: [`Execution::poll_fills`]). Each trade id is
//!   booked once, whichever path brought it first.
//! - Polymarket cancels a client's orders when its heartbeats stop; a live
//!   worker sends them ([`Execution::venue_heartbeat`]), and when one fails
//!   it cancels every open order itself and says so.
//!
//! - A cross-venue arbitrage's two orders (one on Polymarket, one on
//!   Kalshi) run as one pair ([`pair`]): both legs at once, a broken pair
//!   completed or unwound within the tenant's limits, and the pair written
//!   to the tenant's paired-position ledger.
//!
//! Polymarket and Kalshi execute, each through its own executor, chosen by
//! the order's venue (a tenant with keys for both has both); an order for
//! another venue, or for a venue the tenant holds no keys for, is refused
//! and counted as a failure. Not here: SQL (the store's), the decisions (the
//! engine's).

mod pair;

pub use pair::{PairBook, pair_limits};

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use polybot_core::keys::ExchangeKeys;
use polybot_core::strategy::Venue;
use polybot_core::{Mode, TenantId};
use polybot_engine::{Clock, Decision, Engine, Order, OrderEnd, PaperExchange, Side};
use polybot_store::repo::audit;
use polybot_store::{Db, DbError};
use polybot_venues::execution::kalshi::{KalshiExecutor, KalshiKeys, KalshiSettings};
use polybot_venues::execution::kalshi_fills::spawn_fill_channel;
use polybot_venues::execution::polymarket::{
    ApiCredentials, PolymarketExecutor, PolymarketKeys, PolymarketSettings,
};
use polybot_venues::execution::user_channel::{UserChannel, UserChannelOptions};
use polybot_venues::execution::{
    ClientOrderId, ExecError, ExecutionKind, Executor, Fence, MarketRules, OpenOrder, OrderRequest,
    OrderSide, OrderState, Placed, ShadowExecutor, TimeInForce, VenueFill,
};
use polybot_venues::signing::kalshi::KalshiSigner;
use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::{Value, json};

/// Attempts per order, the first included.
const ATTEMPTS: u32 = 4;
/// The first back-off; it doubles.
const BACKOFF: Duration = Duration::from_millis(100);

/// Where the executor reaches the venue.
#[derive(Debug, Clone)]
pub struct ExecutionSettings {
    pub polymarket: PolymarketSettings,
    /// The WebSocket base of the venue's user channel (`/ws/user` is
    /// appended); without one, fills after an order's answer are polled.
    pub user_channel: Option<String>,
    pub user_channel_options: UserChannelOptions,
    /// How often `GET /data/trades` is polled for the fills of open orders
    /// while the user channel is down.
    pub poll_every: Duration,
    /// How often the venue's cancel-on-disconnect heartbeat is sent
    /// (Polymarket cancels a client's orders about 10 s after the last).
    pub venue_heartbeat_every: Duration,
    pub kalshi: KalshiSettings,
    /// Kalshi's WebSocket (with `/trade-api/ws/v2`) for the private `fill`
    /// channel in live mode; without one, Kalshi's later fills are polled.
    pub kalshi_ws: Option<String>,
}

impl Default for ExecutionSettings {
    fn default() -> Self {
        Self {
            polymarket: PolymarketSettings::default(),
            user_channel: None,
            user_channel_options: UserChannelOptions::default(),
            poll_every: Duration::from_secs(2),
            venue_heartbeat_every: Duration::from_secs(5),
            kalshi: KalshiSettings::default(),
            kalshi_ws: None,
        }
    }
}

impl ExecutionSettings {
    /// The CLOB's URL from `POLYBOT_POLYMARKET_CLOB_URL`, the user
    /// channel's from `POLYBOT_POLYMARKET_WS_URL`, Kalshi's trade API from
    /// `POLYBOT_KALSHI_URL` and its WebSocket from `POLYBOT_KALSHI_WS_URL`
    /// (the real ones when unset).
    pub fn from_env() -> anyhow::Result<Self> {
        let endpoints =
            polybot_venues::Endpoints::from_env().map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(Self {
            polymarket: PolymarketSettings {
                host: format!("{}/", endpoints.polymarket_clob.trim_end_matches('/')),
                ..PolymarketSettings::default()
            },
            kalshi: KalshiSettings {
                base: endpoints.kalshi.clone(),
                ..KalshiSettings::default()
            },
            user_channel: Some(endpoints.polymarket_ws),
            kalshi_ws: Some(endpoints.kalshi_ws),
            ..Self::default()
        })
    }
}

/// The lease, read in the tenant's transaction before every send.
#[derive(Debug, Clone)]
pub struct DbFence {
    pub db: Db,
    pub tenant: TenantId,
    pub epoch: i64,
}

#[async_trait]
impl Fence for DbFence {
    async fn check(&self) -> Result<(), ExecError> {
        match self.db.fenced(self.tenant, self.epoch).await {
            Ok(tx) => tx
                .rollback()
                .await
                .map_err(|e| ExecError::LeaseUnverified(e.to_string())),
            Err(DbError::Fenced { current, .. }) => Err(ExecError::Fenced { epoch: current }),
            Err(DbError::LeaseMissing { mine, .. }) => Err(ExecError::Fenced { epoch: mine }),
            Err(e) => Err(ExecError::LeaseUnverified(e.to_string())),
        }
    }
}

/// The tenant's Polymarket keys from the onboarding JSON.
fn polymarket_keys(keys: &ExchangeKeys) -> Option<PolymarketKeys> {
    let private_key = keys.get("polymarket", "private_key")?.clone();
    let field = |name: &str| keys.get("polymarket", name).cloned();
    let api = match (field("api_key"), field("secret"), field("passphrase")) {
        (Some(api_key), Some(secret), Some(passphrase)) => Some(ApiCredentials {
            api_key,
            secret,
            passphrase,
        }),
        _ => None,
    };
    Some(PolymarketKeys { private_key, api })
}

/// The tenant's Kalshi key from the onboarding JSON.
fn kalshi_keys(keys: &ExchangeKeys) -> Option<KalshiKeys> {
    let key_id = keys.get("kalshi", "key_id")?;
    let private_key_pem = keys.get("kalshi", "private_key_pem")?.clone();
    Some(KalshiKeys {
        key_id: secrecy::ExposeSecret::expose_secret(key_id)
            .trim()
            .to_owned(),
        private_key_pem,
    })
}

/// The executors a mode selects, one per venue the tenant holds keys for
/// (Polymarket, Kalshi): none in paper (the engine fills).
pub async fn connect_venues(
    mode: Mode,
    keys: &ExchangeKeys,
    settings: &ExecutionSettings,
    fence: Arc<dyn Fence>,
) -> anyhow::Result<Vec<(Venue, Arc<dyn Executor>)>> {
    Ok(connect_venues_with_channel(mode, keys, settings, fence)
        .await?
        .0)
}

/// The venues' fill channels a live worker listens to.
#[derive(Default)]
struct Channels {
    polymarket: Option<UserChannel>,
    kalshi: Option<UserChannel>,
}

/// [`connect_venues`], with the venues' fill channels in live mode when the
/// settings name them (Polymarket's user channel, Kalshi's `fill` channel).
async fn connect_venues_with_channel(
    mode: Mode,
    keys: &ExchangeKeys,
    settings: &ExecutionSettings,
    fence: Arc<dyn Fence>,
) -> anyhow::Result<(Vec<(Venue, Arc<dyn Executor>)>, Channels)> {
    let mut channels = Channels::default();
    if mode == Mode::Paper {
        return Ok((Vec::new(), channels));
    }
    let mut out: Vec<(Venue, Arc<dyn Executor>)> = Vec::new();
    if polymarket_keys(keys).is_some()
        && let Some((executor, user_channel)) =
            connect_with_channel(mode, keys, settings, fence.clone()).await?
    {
        out.push((Venue::Polymarket, executor));
        channels.polymarket = user_channel;
    }
    if let Some(kalshi) = kalshi_keys(keys) {
        let executor = KalshiExecutor::connect(&settings.kalshi, &kalshi, fence)
            .await
            .with_context(|| format!("connecting to Kalshi at {}", settings.kalshi.base))?;
        let executor = match mode {
            Mode::Shadow => executor.shadow(),
            _ => executor,
        };
        out.push((Venue::Kalshi, Arc::new(executor)));
        if mode == Mode::Live
            && let Some(url) = &settings.kalshi_ws
        {
            let signer = KalshiSigner::from_pem(kalshi.key_id.clone(), &kalshi.private_key_pem)
                .map_err(|e| anyhow::anyhow!("the tenant's Kalshi key: {e}"))?;
            channels.kalshi = Some(spawn_fill_channel(
                url,
                Arc::new(signer),
                settings.user_channel_options.clone(),
            ));
        }
    }
    anyhow::ensure!(
        !out.is_empty(),
        "{mode} mode needs the tenant's Polymarket keys (exchange_keys.polymarket.private_key) \
         or Kalshi keys (exchange_keys.kalshi.key_id and private_key_pem)"
    );
    Ok((out, channels))
}

/// The Polymarket executor a mode selects: none in paper (the engine fills).
pub async fn connect(
    mode: Mode,
    keys: &ExchangeKeys,
    settings: &ExecutionSettings,
    fence: Arc<dyn Fence>,
) -> anyhow::Result<Option<Arc<dyn Executor>>> {
    Ok(connect_with_channel(mode, keys, settings, fence)
        .await?
        .map(|(executor, _)| executor))
}

/// The worker's execution for a mode: the paper exchange in paper;
/// otherwise an executor per venue the tenant holds keys for, in live with
/// Polymarket's user channel and Kalshi's fill channel when the settings name them.
pub async fn start(
    mode: Mode,
    keys: &ExchangeKeys,
    settings: &ExecutionSettings,
    fence: Arc<dyn Fence>,
    tenant: TenantId,
    epoch: i64,
) -> anyhow::Result<Execution> {
    if mode == Mode::Paper {
        return Ok(Execution::paper(tenant, epoch));
    }
    let (venues, channels) = connect_venues_with_channel(mode, keys, settings, fence).await?;
    let mut execution = Execution::with_venues(venues, tenant, epoch)
        .with_context(|| format!("{mode} mode found no venue to execute on"))?;
    execution.channel = channels.polymarket;
    execution.kalshi_channel = channels.kalshi;
    Ok(execution)
}

async fn connect_with_channel(
    mode: Mode,
    keys: &ExchangeKeys,
    settings: &ExecutionSettings,
    fence: Arc<dyn Fence>,
) -> anyhow::Result<Option<(Arc<dyn Executor>, Option<UserChannel>)>> {
    if mode == Mode::Paper {
        return Ok(None);
    }
    let keys = polymarket_keys(keys).with_context(|| {
        format!(
            "{mode} mode needs the tenant's Polymarket keys (exchange_keys.polymarket.private_key)"
        )
    })?;
    let executor = PolymarketExecutor::connect(&settings.polymarket, &keys, fence)
        .await
        .with_context(|| {
            format!(
                "connecting to the Polymarket CLOB at {}",
                settings.polymarket.host
            )
        })?;
    Ok(Some(match mode {
        Mode::Shadow => (
            Arc::new(ShadowExecutor::new(executor)) as Arc<dyn Executor>,
            None,
        ),
        _ => {
            let channel = settings
                .user_channel
                .as_deref()
                .map(|url| executor.user_channel(url, settings.user_channel_options.clone()));
            (Arc::new(executor) as Arc<dyn Executor>, channel)
        }
    }))
}

/// An order the venue has not finished with: its later fills are booked
/// as they come.
#[derive(Debug, Clone)]
enum Working {
    /// An order of this worker (resting, held for delayed matching, or
    /// found at the venue after it was in doubt): its fills are booked
    /// against it, for its strategy.
    Mine {
        order: Order,
        filled: Decimal,
        /// The engine was told it finished already (it was in doubt): its
        /// fills are booked, its end is not reported again.
        finished: bool,
    },
    /// An order open at `venue` when the worker started: its fills go to
    /// the positions of no strategy (`carried`).
    Found {
        venue: Venue,
        order: OpenOrder,
        filled: Decimal,
    },
}

/// An order whose fate stayed unknown after every retry: the venue is
/// asked for it (reads only) at each poll until it answers.
struct Doubtful {
    order: Order,
    request: OrderRequest,
    executor: Arc<dyn Executor>,
}

/// What became of one order, for the opportunity's record.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderReport {
    /// The engine's opportunity number.
    pub opportunity: u64,
    pub details: Value,
}

/// A worker's executor and what it tracks.
pub struct Execution {
    kind: ExecutionKind,
    /// In paper, the exchange that fills every order (there are no venues).
    paper: Option<PaperExchange>,
    /// The executor of each venue that executes.
    venues: Vec<(Venue, Arc<dyn Executor>)>,
    tenant: [u8; 16],
    epoch: i64,
    rules: HashMap<String, MarketRules>,
    /// Orders resting at the venue (found at start, or left by a GTC).
    open: Vec<OpenOrder>,
    /// Orders whose fate is unknown after every retry.
    in_doubt: u64,
    /// Orders the venue may still fill, by venue order id.
    working: HashMap<String, Working>,
    /// Orders still in doubt after every retry.
    doubtful: Vec<Doubtful>,
    /// Trade ids already booked (from an order's answer, the user channel
    /// or polling): each is booked once.
    booked: HashSet<String>,
    channel: Option<UserChannel>,
    /// Kalshi's private `fill` channel.
    kalshi_channel: Option<UserChannel>,
    /// Polls ask for trades since this time (Unix milliseconds).
    poll_since_ms: i64,
    /// The id the venue's last heartbeat answer gave.
    heartbeat_id: Option<String>,
    /// Whether the last venue heartbeat failed (its orders were cancelled).
    heartbeat_lost: bool,
    /// Where cross-venue pairs are recorded (live).
    pairs: Option<PairBook>,
    /// The tenant's limits on a pair's latency and repair.
    pair_limits: Option<polybot_venues::execution::pair::PairLimits>,
}

impl std::fmt::Debug for Execution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Execution")
            .field("kind", &self.kind)
            .field("epoch", &self.epoch)
            .field("open", &self.open.len())
            .finish_non_exhaustive()
    }
}

impl Execution {
    /// Execution on Polymarket only.
    pub fn new(executor: Arc<dyn Executor>, tenant: TenantId, epoch: i64) -> Self {
        Self::with_venues(vec![(Venue::Polymarket, executor)], tenant, epoch)
            .unwrap_or_else(|| unreachable!("one executor was given"))
    }

    /// Paper execution: the paper exchange fills every order at once.
    pub fn paper(tenant: TenantId, epoch: i64) -> Self {
        Self {
            paper: Some(PaperExchange::default()),
            ..Self::for_venues(ExecutionKind::Paper, Vec::new(), tenant, epoch)
        }
    }

    /// Execution on each of `venues` (none when the list is empty).
    pub fn with_venues(
        venues: Vec<(Venue, Arc<dyn Executor>)>,
        tenant: TenantId,
        epoch: i64,
    ) -> Option<Self> {
        let kind = venues.first()?.1.kind();
        Some(Self::for_venues(kind, venues, tenant, epoch))
    }

    fn for_venues(
        kind: ExecutionKind,
        venues: Vec<(Venue, Arc<dyn Executor>)>,
        tenant: TenantId,
        epoch: i64,
    ) -> Self {
        Self {
            kind,
            paper: None,
            venues,
            tenant: *tenant.as_uuid().as_bytes(),
            epoch,
            rules: HashMap::new(),
            open: Vec::new(),
            in_doubt: 0,
            working: HashMap::new(),
            doubtful: Vec::new(),
            booked: HashSet::new(),
            channel: None,
            kalshi_channel: None,
            // A minute's margin for clocks apart.
            poll_since_ms: chrono::Utc::now().timestamp_millis() - 60_000,
            heartbeat_id: None,
            heartbeat_lost: false,
            pairs: None,
            pair_limits: None,
        }
    }

    /// Whether every executing venue's fills stream now (its channel is
    /// up), so that nothing needs polling.
    pub fn user_channel_connected(&self) -> bool {
        self.venues
            .iter()
            .all(|(venue, _)| self.fills_stream(*venue))
    }

    /// Whether `venue`'s fill channel is up now.
    fn fills_stream(&self, venue: Venue) -> bool {
        let channel = match venue {
            Venue::Polymarket => &self.channel,
            Venue::Kalshi => &self.kalshi_channel,
            _ => return false,
        };
        channel.as_ref().is_some_and(UserChannel::is_connected)
    }

    /// Whether fills of this worker's orders (or of orders found open at
    /// start) may still come.
    pub fn has_working_orders(&self) -> bool {
        !self.working.is_empty()
    }

    /// Whether the venue should be polled now: an order is in doubt (asked
    /// for until the venue answers), or orders are working while their
    /// fills do not stream (their venue's channel is down, or it has none).
    pub fn needs_polling(&self) -> bool {
        !self.doubtful.is_empty()
            || self.working.values().any(|w| {
                let venue = match w {
                    Working::Mine { order, .. } => Some(order.venue),
                    Working::Found { venue, .. } => Some(*venue),
                };
                !venue.is_some_and(|venue| self.fills_stream(venue))
            })
    }

    /// The next fill a venue's channel reports; pending forever without one.
    pub async fn next_user_fill(&mut self) -> VenueFill {
        async fn next_of(channel: &mut Option<UserChannel>) -> Option<VenueFill> {
            match channel.as_mut() {
                Some(channel) => channel.next().await,
                None => std::future::pending().await,
            }
        }
        loop {
            tokio::select! {
                fill = next_of(&mut self.channel) => match fill {
                    Some(fill) => return fill,
                    // The channel's task is gone: polling takes over for good.
                    None => self.channel = None,
                },
                fill = next_of(&mut self.kalshi_channel) => match fill {
                    Some(fill) => return fill,
                    None => self.kalshi_channel = None,
                },
            }
        }
    }

    /// Books a fill the venue reported after the order's answer: against
    /// the working order it belongs to, once per trade id. Returns whether
    /// it was booked.
    pub fn on_fill<C: Clock>(
        &mut self,
        engine: &mut Engine<C>,
        fill: &VenueFill,
        decisions: &mut Vec<Decision>,
    ) -> bool {
        if self.booked.contains(&fill.trade_id) {
            return false;
        }
        let Some(working) = self.working.get_mut(&fill.venue_order_id) else {
            tracing::debug!(trade = %fill.trade_id, order = %fill.venue_order_id, "a trade of an order this worker is not waiting on");
            return false;
        };
        self.booked.insert(fill.trade_id.clone());
        let done = match working {
            Working::Mine { order, filled, .. } => {
                decisions.extend(engine.venue_fill(order, fill.size, fill.price, fill.fee));
                *filled += fill.size;
                *filled >= order.size
            }
            Working::Found { order, filled, .. } => {
                let side = match fill.side {
                    OrderSide::Buy => Side::Buy,
                    OrderSide::Sell => Side::Sell,
                };
                match engine.carried_fill(
                    &fill.trade_id,
                    &fill.venue_order_id,
                    &fill.market,
                    &fill.instrument,
                    side,
                    fill.size,
                    fill.price,
                    fill.fee,
                ) {
                    Some(booked) => decisions.push(booked),
                    None => {
                        tracing::warn!(trade = %fill.trade_id, market = %fill.market, "a fill of an order found open at start, in a market the engine does not list: the next start's reconciliation counts its position")
                    }
                }
                *filled += fill.size;
                *filled >= order.size
            }
        };
        tracing::info!(trade = %fill.trade_id, order = %fill.venue_order_id, size = %fill.size, price = %fill.price, "fill booked after the order's answer");
        if done {
            let done = self
                .working
                .remove(&fill.venue_order_id)
                .unwrap_or_else(|| unreachable!("the working order was just found"));
            self.open
                .retain(|o| o.venue_order_id != fill.venue_order_id);
            if let Working::Mine {
                order,
                filled,
                finished: false,
            } = done
            {
                decisions.extend(engine.order_finished(&order, filled, OrderEnd::Matched));
            }
        }
        true
    }

    /// Asks the venue for each order still in doubt (reads only): one it
    /// has is booked like an answer (its fills now, its rest working if it
    /// rests), one it does not have was never placed; one it cannot say
    /// stays in doubt. Returns how many fills were booked.
    async fn resolve_doubtful<C: Clock>(
        &mut self,
        engine: &mut Engine<C>,
        decisions: &mut Vec<Decision>,
    ) -> usize {
        let mut booked = 0;
        for doubtful in std::mem::take(&mut self.doubtful) {
            let client_id = doubtful.request.client_id;
            match doubtful.executor.find_order(&doubtful.request).await {
                Ok(Some(placed)) => {
                    booked += self.book_fills(engine, &doubtful.order, &placed, decisions);
                    tracing::info!(client_order_id = %client_id, venue_order_id = %placed.venue_order_id, state = ?placed.state, filled = %placed.filled, "an order in doubt was found at the venue");
                    if matches!(placed.state, OrderState::Open | OrderState::Pending) {
                        self.keep_working(&doubtful.order, &placed, true);
                    }
                    self.in_doubt = self.in_doubt.saturating_sub(1);
                }
                Ok(None) => {
                    tracing::info!(client_order_id = %client_id, "an order in doubt is not at the venue: it was never placed");
                    self.in_doubt = self.in_doubt.saturating_sub(1);
                }
                Err(e) => {
                    tracing::warn!(client_order_id = %client_id, error = %e, "an order is still in doubt");
                    self.doubtful.push(doubtful);
                }
            }
        }
        booked
    }

    /// While orders are working, reads the tenant's trades over REST from
    /// each venue whose fills do not stream (its channel is down or there
    /// is none) and books the new ones. Returns how many were booked.
    pub async fn poll_fills<C: Clock>(
        &mut self,
        engine: &mut Engine<C>,
        decisions: &mut Vec<Decision>,
    ) -> Result<usize, ExecError> {
        let mut booked = self.resolve_doubtful(engine, decisions).await;
        if self.working.is_empty() {
            return Ok(booked);
        }
        for (venue, executor) in self.venues.clone() {
            // A venue's fills come over its channel while it is up.
            if self.fills_stream(venue) {
                continue;
            }
            for fill in &executor.fills(self.poll_since_ms).await? {
                if self.on_fill(engine, fill, decisions) {
                    booked += 1;
                }
            }
        }
        Ok(booked)
    }

    /// Sends the venue's cancel-on-disconnect heartbeat. When it fails, the
    /// venue will cancel the tenant's orders on its own: the worker cancels
    /// every open order now rather than leave them to chance. Returns what
    /// happened when the worker has something to say: the heartbeat was
    /// lost (and what was cancelled), or orders found open during the
    /// outage were cancelled. Further failures of the same outage are only
    /// logged; the first success ends the outage.
    pub async fn venue_heartbeat<C: Clock>(&mut self, engine: &mut Engine<C>) -> Option<String> {
        let executor = self.executor_for(Venue::Polymarket)?;
        match executor.heartbeat(self.heartbeat_id.clone()).await {
            Ok(id) => {
                if self.heartbeat_lost {
                    tracing::info!("the venue's heartbeat is back");
                }
                self.heartbeat_lost = false;
                self.heartbeat_id = id;
                None
            }
            Err(e) => {
                let first = !self.heartbeat_lost;
                self.heartbeat_lost = true;
                self.heartbeat_id = None;
                if !first && self.open.is_empty() {
                    tracing::warn!(error = %e, "the venue's heartbeat is still failing");
                    return None;
                }
                let cancelled = match self
                    .cancel_all(engine, "cancelled: the venue's heartbeat failed")
                    .await
                {
                    Ok(ids) => format!("cancelled {} open orders", ids.len()),
                    Err(c) => format!("cancelling the open orders failed too: {c}"),
                };
                Some(format!(
                    "the venue's cancel-on-disconnect heartbeat failed ({e}); {cancelled}"
                ))
            }
        }
    }

    /// The executor of `venue`, when the tenant executes there.
    fn executor_for(&self, venue: Venue) -> Option<Arc<dyn Executor>> {
        self.venues
            .iter()
            .find(|(v, _)| *v == venue)
            .map(|(_, e)| e.clone())
    }

    pub fn kind(&self) -> ExecutionKind {
        self.kind
    }

    /// Orders resting at the venue that this worker knows of.
    pub fn open_orders(&self) -> &[OpenOrder] {
        &self.open
    }

    /// Orders whose fate stayed unknown after every retry.
    pub fn in_doubt(&self) -> u64 {
        self.in_doubt
    }

    /// Reads what the venue holds for the tenant before the first trade:
    /// open orders (kept), balances (the engine's cash), positions; writes
    /// what it found to the audit log in a transaction fenced by the lease.
    pub async fn reconcile<C: Clock>(
        &mut self,
        engine: &mut Engine<C>,
        db: &Db,
        tenant: TenantId,
    ) -> Result<Value, crate::WorkerError> {
        let mut open = Vec::new();
        let mut found_open = Vec::new();
        let mut balances = Vec::new();
        let mut positions = Vec::new();
        let mut history = Vec::new();
        let mut per_venue = serde_json::Map::new();
        for (name, executor) in &self.venues {
            let venue = |e: ExecError| anyhow::anyhow!("reconciling with {name}: {e}");
            let venue_open = executor.open_orders().await.map_err(venue)?;
            // Their later fills are booked with the market's fees.
            for order in &venue_open {
                if self.rules.contains_key(&order.market) {
                    continue;
                }
                match executor.market_rules(&order.market).await {
                    Ok(rules) => {
                        self.rules.insert(order.market.clone(), rules);
                    }
                    Err(e) => {
                        tracing::warn!(market = %order.market, error = %e, "the market's rules of an order found open could not be read")
                    }
                }
            }
            let venue_balances = executor.balances().await.map_err(venue)?;
            // The tenant's trade history names the tokens it may hold (a
            // venue may report a token's balance one token at a time, so it
            // is read first) and what they cost.
            history.extend(executor.fills(0).await.map_err(venue)?);
            let venue_positions = executor.positions().await.map_err(venue)?;
            if let Some(cash) = venue_balances.first() {
                engine.set_cash(*name, cash.amount);
            }
            per_venue.insert(
                name.as_str().to_owned(),
                json!({
                    "open_orders": venue_open,
                    "balances": venue_balances,
                    "positions": venue_positions,
                }),
            );
            found_open.extend(venue_open.iter().map(|o| (*name, o.clone())));
            open.extend(venue_open);
            balances.extend(venue_balances);
            positions.extend(venue_positions);
        }
        let carried = carried_positions(&history, &positions);
        for c in &carried {
            engine.carry_position(&c.market, &c.instrument, c.size, c.cost);
        }
        let found = json!({
            "mode": self.kind,
            "epoch": self.epoch,
            "open_orders": open,
            "balances": balances,
            "positions": positions,
            "carried": carried,
            "venues": per_venue,
        });
        let mut tx = db.fenced(tenant, self.epoch).await?;
        audit::append(&mut tx, "worker", "venue.reconciled", found.clone()).await?;
        tx.commit().await?;
        tracing::info!(%tenant, open_orders = open.len(), "reconciled with the venue before trading");
        // Their fills, as they come, go to the positions of no strategy.
        for (venue, order) in found_open {
            self.working.insert(
                order.venue_order_id.clone(),
                Working::Found {
                    venue,
                    filled: order.filled,
                    order,
                },
            );
        }
        self.open = open;
        Ok(found)
    }

    /// Cancels every order of the tenant at the venue (the kill switch).
    /// The engine stops counting this worker's working orders as open (they
    /// are done, with what filled of them), so the open-order limit frees up.
    pub async fn cancel_all<C: Clock>(
        &mut self,
        engine: &mut Engine<C>,
        reason: &str,
    ) -> Result<Vec<String>, ExecError> {
        let mut cancelled = Vec::new();
        for (_, executor) in &self.venues {
            cancelled.extend(executor.cancel_all().await?);
        }
        self.open.clear();
        for (_, working) in self.working.drain() {
            if let Working::Mine {
                order,
                filled,
                finished: false,
            } = working
            {
                // The cancel of the unfilled rest is not a row of its own.
                engine.order_finished(&order, filled, OrderEnd::Withdrawn(reason.to_owned()));
            }
        }
        Ok(cancelled)
    }

    /// Sends every order among `decisions` and appends what came back
    /// (fills, cancels). Returns a report per order; a fenced send stops
    /// the worker.
    pub async fn execute<C: Clock>(
        &mut self,
        engine: &mut Engine<C>,
        decisions: &mut Vec<Decision>,
    ) -> Result<Vec<OrderReport>, ExecError> {
        if let Some(paper) = self.paper.as_mut() {
            // Nothing of a paper order is at a venue: no report.
            paper.execute(engine, decisions);
            return Ok(Vec::new());
        }
        let orders: Vec<Order> = decisions
            .iter()
            .filter_map(|d| match d {
                Decision::Order(o) => Some(o.clone()),
                _ => None,
            })
            .collect();
        let mut reports = Vec::with_capacity(orders.len());
        let mut i = 0;
        while i < orders.len() {
            if let Some(legs) = pair::pair_at(&orders, i)
                && self.executor_for(Venue::Polymarket).is_some()
                && self.executor_for(Venue::Kalshi).is_some()
            {
                reports.extend(self.execute_pair(engine, legs, decisions).await?);
                i += 2;
                continue;
            }
            reports.push(self.execute_one(engine, &orders[i], decisions).await?);
            i += 1;
        }
        engine.mark_unexecuted(decisions);
        Ok(reports)
    }

    async fn execute_one<C: Clock>(
        &mut self,
        engine: &mut Engine<C>,
        order: &Order,
        decisions: &mut Vec<Decision>,
    ) -> Result<OrderReport, ExecError> {
        let client_id = ClientOrderId::derive(&self.tenant, self.epoch, order.id.0);
        let report = |details: Value| OrderReport {
            opportunity: order.opportunity.0,
            details,
        };
        let (executor, request, rules) = match self.request(engine, order, client_id).await {
            Ok(found) => found,
            Err(reason) => {
                decisions.extend(engine.order_finished(
                    order,
                    Decimal::ZERO,
                    OrderEnd::Failed(reason.clone()),
                ));
                return Ok(report(json!({
                    "order": order.id.0, "client_order_id": client_id, "state": "not_sent",
                    "error": reason,
                })));
            }
        };
        match self.place(executor.as_ref(), &request, &rules).await {
            Ok(placed) => Ok(report(self.book(engine, order, &placed, decisions))),
            Err(e @ (ExecError::Fenced { .. } | ExecError::LeaseUnverified(_))) => {
                decisions.extend(engine.order_finished(
                    order,
                    Decimal::ZERO,
                    OrderEnd::Withdrawn(e.to_string()),
                ));
                Err(e)
            }
            Err(e) => {
                if matches!(e, ExecError::InDoubt { .. }) {
                    // Its fills, if the venue took it after all, are
                    // booked when the venue says so (see `poll_fills`).
                    self.in_doubt += 1;
                    self.doubtful.push(Doubtful {
                        order: order.clone(),
                        request: request.clone(),
                        executor: executor.clone(),
                    });
                }
                let reason = e.to_string();
                let end = if e.is_venue_failure() {
                    OrderEnd::Failed(reason.clone())
                } else {
                    OrderEnd::Withdrawn(reason.clone())
                };
                decisions.extend(engine.order_finished(order, Decimal::ZERO, end));
                Ok(report(json!({
                    "order": order.id.0, "client_order_id": client_id,
                    "state": if matches!(e, ExecError::InDoubt { .. }) { "in_doubt" } else { "refused" },
                    "error": reason,
                })))
            }
        }
    }

    /// The order in the venue's terms: its ids, the price on the tick (never
    /// worse than the engine's limit), the size on the lot.
    async fn request<C: Clock>(
        &mut self,
        engine: &Engine<C>,
        order: &Order,
        client_id: ClientOrderId,
    ) -> Result<(Arc<dyn Executor>, OrderRequest, MarketRules), String> {
        let executor = self
            .executor_for(order.venue)
            .ok_or_else(|| match order.venue {
                Venue::Polymarket | Venue::Kalshi => format!(
                    "no {} executor: the tenant holds no {} keys",
                    order.venue, order.venue
                ),
                venue => format!("live execution is not available for {venue} yet"),
            })?;
        let def = engine.market(order.market.as_str()).map(|m| &m.def);
        let ids = def
            .and_then(|d| d.venue_ids.clone())
            // A Kalshi market is its ticker; an outcome is its side.
            .or_else(|| {
                (order.venue == Venue::Kalshi).then(|| polybot_engine::VenueIds {
                    market: order.market.as_str().to_owned(),
                    instruments: vec!["yes".to_owned(), "no".to_owned()],
                })
            })
            .ok_or_else(|| {
                format!(
                    "{}: the venue's market and token ids are unknown",
                    order.market
                )
            })?;
        let instrument =
            ids.instruments.get(order.outcome).cloned().ok_or_else(|| {
                format!("{}: no token for outcome {}", order.market, order.outcome)
            })?;
        let rules = match self.rules.get(&ids.market) {
            Some(rules) => rules.clone(),
            None => {
                let rules = executor
                    .market_rules(&ids.market)
                    .await
                    .map_err(|e| e.to_string())?;
                self.rules.insert(ids.market.clone(), rules.clone());
                rules
            }
        };
        let tick = rules.tick_size;
        let (side, price) = match order.side {
            Side::Buy => (
                OrderSide::Buy,
                (order.limit_price / tick).round_dp_with_strategy(0, RoundingStrategy::ToZero)
                    * tick,
            ),
            Side::Sell => (
                OrderSide::Sell,
                (order.limit_price / tick)
                    .round_dp_with_strategy(0, RoundingStrategy::AwayFromZero)
                    * tick,
            ),
        };
        // Kalshi trades whole contracts unless the market takes fractions.
        let decimals = if order.venue == Venue::Kalshi && rules.min_size >= Decimal::ONE {
            0
        } else {
            2
        };
        let request = OrderRequest {
            client_id,
            market: ids.market,
            instrument,
            side,
            price: price.normalize(),
            size: order
                .size
                .round_dp_with_strategy(decimals, RoundingStrategy::ToZero)
                .normalize(),
            time_in_force: TimeInForce::ImmediateOrCancel,
        };
        Ok((executor, request, rules))
    }

    /// Places with bounded retries; a retry of the same request asks the
    /// venue before it sends.
    async fn place(
        &self,
        executor: &dyn Executor,
        request: &OrderRequest,
        rules: &MarketRules,
    ) -> Result<Placed, ExecError> {
        let mut wait = BACKOFF;
        let mut attempt = 1;
        loop {
            match executor.place(request, rules).await {
                Err(e) if e.is_retryable() && attempt < ATTEMPTS => {
                    let pause = match &e {
                        ExecError::Venue(v) => match v.kind() {
                            polybot_venues::ErrorKind::RateLimited {
                                retry_after: Some(after),
                            } => *after,
                            _ => wait,
                        },
                        _ => wait,
                    };
                    tracing::warn!(client_order_id = %request.client_id, attempt, error = %e, "order not confirmed; retrying");
                    tokio::time::sleep(pause).await;
                    wait *= 2;
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    /// Books what the venue did with the order into the engine.
    fn book<C: Clock>(
        &mut self,
        engine: &mut Engine<C>,
        order: &Order,
        placed: &Placed,
        decisions: &mut Vec<Decision>,
    ) -> Value {
        self.book_fills(engine, order, placed, decisions);
        let details = json!({
            "order": order.id.0,
            "client_order_id": placed.client_id,
            "venue_order_id": placed.venue_order_id,
            "state": placed.state,
            "filled": placed.filled.normalize().to_string(),
            "recovered": placed.recovered,
            "wire": serde_json::from_str::<Value>(&placed.wire).unwrap_or(Value::Null),
        });
        match placed.state {
            OrderState::Open | OrderState::Pending => self.keep_working(order, placed, false),
            OrderState::NotSent => {
                decisions.extend(engine.order_finished(
                    order,
                    Decimal::ZERO,
                    OrderEnd::Withdrawn("shadow: orders signed and not sent".to_owned()),
                ));
            }
            OrderState::Filled | OrderState::Closed => {
                decisions.extend(engine.order_finished(order, placed.filled, OrderEnd::Matched));
            }
        }
        details
    }

    /// Books the fills the venue reported with an order, each trade once.
    /// Returns how many were booked.
    fn book_fills<C: Clock>(
        &mut self,
        engine: &mut Engine<C>,
        order: &Order,
        placed: &Placed,
        decisions: &mut Vec<Decision>,
    ) -> usize {
        let mut booked = 0;
        for fill in &placed.fills {
            if self.booked.insert(fill.trade_id.clone()) {
                decisions.extend(engine.venue_fill(order, fill.size, fill.price, fill.fee));
                booked += 1;
            }
        }
        self.booked.extend(placed.trade_ids.iter().cloned());
        booked
    }

    /// Keeps an order the venue rests or holds: its later fills are booked
    /// against it, and the kill switch cancels it.
    fn keep_working(&mut self, order: &Order, placed: &Placed, finished: bool) {
        self.working.insert(
            placed.venue_order_id.clone(),
            Working::Mine {
                order: order.clone(),
                filled: placed.filled,
                finished,
            },
        );
        self.open.push(OpenOrder {
            venue_order_id: placed.venue_order_id.clone(),
            market: order.market.as_str().to_owned(),
            instrument: String::new(),
            side: match order.side {
                Side::Buy => OrderSide::Buy,
                Side::Sell => OrderSide::Sell,
            },
            price: order.limit_price,
            size: order.size,
            filled: placed.filled,
        });
    }
}

/// A position the venue held when the worker started, priced at what the
/// tenant's trades paid for it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Carried {
    pub market: String,
    pub instrument: String,
    pub size: Decimal,
    pub cost: Decimal,
}

/// The cost of each position held: its size times the average price the
/// tenant's buys of the token paid (its trades' average when it has no
/// buys). A token the history does not name has no known market and is
/// left out.
pub fn carried_positions(
    history: &[polybot_venues::execution::VenueFill],
    positions: &[polybot_venues::execution::VenuePosition],
) -> Vec<Carried> {
    let mut out = Vec::new();
    for position in positions {
        let trades: Vec<_> = history
            .iter()
            .filter(|f| f.instrument == position.instrument)
            .collect();
        let Some(first) = trades.first() else {
            continue;
        };
        let buys: Vec<_> = trades
            .iter()
            .copied()
            .filter(|f| f.side == OrderSide::Buy)
            .collect();
        let priced = if buys.is_empty() { &trades } else { &buys };
        let (cash, shares) = priced
            .iter()
            .fold((Decimal::ZERO, Decimal::ZERO), |(c, s), f| {
                (c + f.price * f.size, s + f.size)
            });
        if shares.is_zero() {
            continue;
        }
        out.push(Carried {
            market: first.market.clone(),
            instrument: position.instrument.clone(),
            size: position.size,
            cost: (position.size * cash / shares).round_dp(6).normalize(),
        });
    }
    out
}
