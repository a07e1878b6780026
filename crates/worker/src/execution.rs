//! Live and shadow execution in the worker. The engine decides the same way
//! in every mode; in `paper` its simulated exchange fills each order at
//! once, in `shadow` and `live` each order goes to the tenant's executor
//! ([`polybot_venues::execution`]) and what the venue reports comes back into
//! the engine (fills booked, the unfilled rest cancelled, failures counted
//! towards the strategy's circuit breaker).
//!
//! - Each order's client id comes from (tenant, lease epoch, engine order
//!   number), so a retry never doubles it; before every send the executor
//!   checks the lease ([`DbFence`]), so a fenced twin sends nothing.
//! - A retryable failure (a timeout, a lost answer, 429, 5xx) is retried a
//!   bounded number of times with back-off; an order still in doubt after
//!   that is left to the next start's reconciliation, never re-decided.
//! - On start, before the first event, [`Execution::reconcile`] reads the
//!   venue's open orders, positions and balances, books the balance as the
//!   engine's cash, keeps the open orders (cancelled with the kill switch),
//!   and writes what it found to the tenant's audit log.
//!
//! Polymarket and Kalshi execute, each through its own executor, chosen by
//! the order's venue (a tenant with keys for both has both); an order for
//! another venue, or for a venue the tenant holds no keys for, is refused
//! and counted as a failure. Not here: SQL (the store's), the decisions (the
//! engine's).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use polybot_core::keys::ExchangeKeys;
use polybot_core::strategy::Venue;
use polybot_core::{Mode, TenantId};
use polybot_engine::{Clock, Decision, Engine, Order, Side};
use polybot_store::repo::audit;
use polybot_store::{Db, DbError};
use polybot_venues::execution::kalshi::{KalshiExecutor, KalshiKeys, KalshiSettings};
use polybot_venues::execution::polymarket::{
    ApiCredentials, PolymarketExecutor, PolymarketKeys, PolymarketSettings,
};
use polybot_venues::execution::{
    ClientOrderId, ExecError, Executor, Fence, MarketRules, OpenOrder, OrderRequest, OrderSide,
    OrderState, Placed, ShadowExecutor, TimeInForce,
};
use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::{Value, json};

/// Attempts per order, the first included.
const ATTEMPTS: u32 = 4;
/// The first back-off; it doubles.
const BACKOFF: Duration = Duration::from_millis(100);

/// Where the executor reaches the venue.
#[derive(Debug, Clone, Default)]
pub struct ExecutionSettings {
    pub polymarket: PolymarketSettings,
    pub kalshi: KalshiSettings,
}

impl ExecutionSettings {
    /// The CLOB's URL from `POLYBOT_POLYMARKET_CLOB_URL` and Kalshi's trade
    /// API from `POLYBOT_KALSHI_URL` (the real ones when unset).
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
    if mode == Mode::Paper {
        return Ok(Vec::new());
    }
    let mut out: Vec<(Venue, Arc<dyn Executor>)> = Vec::new();
    if polymarket_keys(keys).is_some()
        && let Some(executor) = connect(mode, keys, settings, fence.clone()).await?
    {
        out.push((Venue::Polymarket, executor));
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
    }
    anyhow::ensure!(
        !out.is_empty(),
        "{mode} mode needs the tenant's Polymarket keys (exchange_keys.polymarket.private_key) \
         or Kalshi keys (exchange_keys.kalshi.key_id and private_key_pem)"
    );
    Ok(out)
}

/// The Polymarket executor a mode selects: none in paper (the engine fills).
pub async fn connect(
    mode: Mode,
    keys: &ExchangeKeys,
    settings: &ExecutionSettings,
    fence: Arc<dyn Fence>,
) -> anyhow::Result<Option<Arc<dyn Executor>>> {
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
        Mode::Shadow => Arc::new(ShadowExecutor::new(executor)) as Arc<dyn Executor>,
        _ => Arc::new(executor),
    }))
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
    executor: Arc<dyn Executor>,
    /// The executor of each venue that executes (Polymarket's is `executor`).
    venues: Vec<(Venue, Arc<dyn Executor>)>,
    tenant: [u8; 16],
    epoch: i64,
    rules: HashMap<String, MarketRules>,
    /// Orders resting at the venue (found at start, or left by a GTC).
    open: Vec<OpenOrder>,
    /// Orders whose fate is unknown after every retry.
    in_doubt: u64,
}

impl std::fmt::Debug for Execution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Execution")
            .field("kind", &self.executor.kind())
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

    /// Execution on each of `venues` (none when the list is empty).
    pub fn with_venues(
        venues: Vec<(Venue, Arc<dyn Executor>)>,
        tenant: TenantId,
        epoch: i64,
    ) -> Option<Self> {
        let executor = venues.first()?.1.clone();
        Some(Self {
            executor,
            venues,
            tenant: *tenant.as_uuid().as_bytes(),
            epoch,
            rules: HashMap::new(),
            open: Vec::new(),
            in_doubt: 0,
        })
    }

    /// The executor of `venue`, when the tenant executes there.
    fn executor_for(&self, venue: Venue) -> Option<Arc<dyn Executor>> {
        self.venues
            .iter()
            .find(|(v, _)| *v == venue)
            .map(|(_, e)| e.clone())
    }

    pub fn kind(&self) -> polybot_venues::execution::ExecutionKind {
        self.executor.kind()
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
        let mut balances = Vec::new();
        let mut positions = Vec::new();
        let mut per_venue = serde_json::Map::new();
        for (name, executor) in &self.venues {
            let venue = |e: ExecError| anyhow::anyhow!("reconciling with {name}: {e}");
            let venue_open = executor.open_orders().await.map_err(venue)?;
            let venue_balances = executor.balances().await.map_err(venue)?;
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
            open.extend(venue_open);
            balances.extend(venue_balances);
            positions.extend(venue_positions);
        }
        let found = json!({
            "mode": self.executor.kind(),
            "epoch": self.epoch,
            "open_orders": open,
            "balances": balances,
            "positions": positions,
            "venues": per_venue,
        });
        let mut tx = db.fenced(tenant, self.epoch).await?;
        audit::append(&mut tx, "worker", "venue.reconciled", found.clone()).await?;
        tx.commit().await?;
        tracing::info!(%tenant, open_orders = open.len(), "reconciled with the venue before trading");
        self.open = open;
        Ok(found)
    }

    /// Cancels every order of the tenant at the venue (the kill switch).
    pub async fn cancel_all(&mut self) -> Result<Vec<String>, ExecError> {
        let mut cancelled = Vec::new();
        for (_, executor) in &self.venues {
            cancelled.extend(executor.cancel_all().await?);
        }
        self.open.clear();
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
        let orders: Vec<Order> = decisions
            .iter()
            .filter_map(|d| match d {
                Decision::Order(o) => Some(o.clone()),
                _ => None,
            })
            .collect();
        let mut reports = Vec::with_capacity(orders.len());
        for order in &orders {
            reports.push(self.execute_one(engine, order, decisions).await?);
        }
        not_executed(decisions, &reports);
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
                    Some(reason.clone()),
                    true,
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
                    Some(e.to_string()),
                    false,
                ));
                Err(e)
            }
            Err(e) => {
                if matches!(e, ExecError::InDoubt { .. }) {
                    self.in_doubt += 1;
                }
                let failed = e.is_venue_failure();
                let reason = e.to_string();
                decisions.extend(engine.order_finished(
                    order,
                    Decimal::ZERO,
                    Some(reason.clone()),
                    failed,
                ));
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
        for fill in &placed.fills {
            decisions.extend(engine.venue_fill(order, fill.size, fill.price, fill.fee));
        }
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
            OrderState::Open | OrderState::Pending => {
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
            OrderState::NotSent => {
                decisions.extend(engine.order_finished(
                    order,
                    Decimal::ZERO,
                    Some("shadow: signed and not sent".to_owned()),
                    false,
                ));
            }
            OrderState::Filled | OrderState::Closed => {
                decisions.extend(engine.order_finished(order, placed.filled, None, false));
            }
        }
        details
    }
}

/// An opportunity none of whose orders filled was not executed: its row
/// says why (the engine marked it executed when it emitted the orders).
fn not_executed(decisions: &mut [Decision], reports: &[OrderReport]) {
    let filled: Vec<u64> = decisions
        .iter()
        .filter_map(|d| match d {
            Decision::Fill(f) => Some(f.opportunity.0),
            _ => None,
        })
        .collect();
    for decision in decisions.iter_mut() {
        let Decision::Opportunity(o) = decision else {
            continue;
        };
        if o.executed_at.is_none() || filled.contains(&o.id.0) {
            continue;
        }
        let reason = reports
            .iter()
            .filter(|r| r.opportunity == o.id.0)
            .find_map(|r| match r.details.get("state").and_then(Value::as_str) {
                Some("not_sent") if r.details.get("error").is_none() => {
                    Some("shadow: orders signed and not sent".to_owned())
                }
                _ => r
                    .details
                    .get("error")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            });
        o.executed_at = None;
        o.rejection = Some(reason.unwrap_or_else(|| {
            "immediate-or-cancel: nothing filled at or better than the limit".to_owned()
        }));
    }
}
