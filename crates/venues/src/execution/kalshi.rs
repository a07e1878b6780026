//! Kalshi execution over the trade API (REST v2): create, cancel, batch
//! cancel, orders, fills, positions and balance, every request signed with
//! RSA-PSS ([`KalshiSigner`]) at the moment it is sent.
//!
//! - Exactly-once: each order carries its [`ClientOrderId`] as Kalshi's
//!   `client_order_id` (a UUID), and the exchange refuses a second order with
//!   the same id (409 `order_already_exists`). A retry after a timeout sends
//!   the same create again: either the exchange never saw the first (the
//!   order is placed now) or it refuses the duplicate and the executor finds
//!   the order it has among the account's orders, with its fills. This holds
//!   across restarts: nothing has to be remembered locally.
//! - Rate limits: the executor owns the tenant's read and write token buckets
//!   ([`KalshiLimits`]), sized from `GET /account/limits` when the exchange
//!   answers it (the documented Basic tier otherwise). A 429 pauses the
//!   venue for its `Retry-After`; without one, reads back off 1 s, 2 s, 4 s…
//!   (5xx and transport errors: jittered exponential back-off), each retry
//!   signed afresh; an order create's 429 is handed back to the caller
//!   (retryable: nothing was taken).
//! - Fees: the fill's `fee_cost` when the exchange reports it, else Kalshi's
//!   formula with the per-order accumulator ([`KalshiFeeAccumulator`]).
//! - Shadow: [`KalshiExecutor::shadow`] builds and signs each create and
//!   records it instead of sending it; reads still go to the venue.
//!
//! Instruments: an order's `market` is the ticker and its `instrument` the
//! side, `yes` or `no`; positions are reported per `TICKER:yes` / `TICKER:no`.
//!
//! Not here: the WebSocket (market data still comes from REST polling),
//! two-leg pairs and their unwind ([`super::pair`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use polybot_core::fees::{KALSHI_MAKER_RATE, KALSHI_TAKER_RATE, KalshiFeeAccumulator};
use reqwest::Method;
use rust_decimal::Decimal;
use secrecy::SecretString;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::{
    ClientOrderId, ExecError, ExecutionKind, Executor, FeeParams, Fence, MarketRules, OpenOrder,
    OrderRequest, OrderSide, OrderState, Placed, TimeInForce, VenueBalance, VenueFill,
    VenuePosition,
};
use crate::error::{ErrorKind, VenueError};
use crate::http::{Body, ClientOptions, HttpClient, Request, RetryPolicy};
use crate::model::Api;
use crate::num::OptDec;
use crate::ratelimit::{KalshiAccountLimits, KalshiLimits, RateLimiter};
use crate::signing::kalshi::KalshiSigner;

/// Kalshi cancels at most this many orders per batch call.
const BATCH_CANCEL_MAX: usize = 20;
/// Pages read at most when listing (a safety stop for a cursor that loops).
const MAX_PAGES: usize = 1_000;

/// Where and how the executor talks to Kalshi.
#[derive(Debug, Clone)]
pub struct KalshiSettings {
    /// The trade API's base URL, with `/trade-api/v2`.
    pub base: String,
    /// Longest wait for any one call.
    pub timeout: Duration,
    /// Reads retried at most this many times after a 429, 5xx or transport error.
    pub read_attempts: u32,
    /// The clock waits go through (tests pass a manual one).
    pub clock: Arc<dyn crate::http::Clock>,
}

impl Default for KalshiSettings {
    fn default() -> Self {
        Self {
            base: "https://external-api.kalshi.com/trade-api/v2".to_owned(),
            timeout: Duration::from_secs(5),
            read_attempts: 4,
            clock: Arc::new(crate::http::TokioClock),
        }
    }
}

/// A tenant's Kalshi API key: its id and RSA private key (PEM). `Debug`
/// shows the id only.
pub struct KalshiKeys {
    pub key_id: String,
    pub private_key_pem: SecretString,
}

impl std::fmt::Debug for KalshiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KalshiKeys")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// Orders sent to Kalshi with one tenant's key.
pub struct KalshiExecutor {
    http: HttpClient,
    signer: KalshiSigner,
    /// The base URL's path (`/trade-api/v2`), part of every signed path.
    prefix: String,
    limits: KalshiLimits,
    fence: Arc<dyn Fence>,
    settings: KalshiSettings,
    retry: RetryPolicy,
    shadow: bool,
    /// Shadow: what would have been sent, oldest first.
    log: Mutex<Vec<Placed>>,
}

impl std::fmt::Debug for KalshiExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KalshiExecutor")
            .field("base", &self.http.base())
            .field("signer", &self.signer)
            .field("tier", &self.limits.tier())
            .field("shadow", &self.shadow)
            .finish_non_exhaustive()
    }
}

fn config_error(detail: impl Into<String>) -> VenueError {
    VenueError::new(
        Api::Kalshi,
        "execution",
        ErrorKind::Config {
            detail: detail.into(),
        },
    )
}

/// Kalshi's error body: `{"error": {"code", "message"}}`.
fn refusal(err: &VenueError) -> String {
    let parsed: Option<Value> = err
        .body_excerpt()
        .and_then(|b| serde_json::from_str(b).ok());
    let error = parsed.as_ref().map(|v| &v["error"]);
    let code = error.and_then(|e| e["code"].as_str()).unwrap_or_default();
    let message = error
        .and_then(|e| e["message"].as_str())
        .unwrap_or_default();
    match (code.is_empty(), message.is_empty()) {
        (false, false) => format!("{code}: {message}"),
        (false, true) => code.to_owned(),
        (true, false) => message.to_owned(),
        (true, true) => err.to_string(),
    }
}

/// `client_order_id` as Kalshi takes it: the id's 16 bytes as a UUID.
pub fn kalshi_client_order_id(id: &ClientOrderId) -> String {
    let text = id.to_string();
    let bytes = hex::decode(&text).unwrap_or_default();
    uuid::Uuid::from_slice(&bytes)
        .map(|u| u.to_string())
        .unwrap_or(text)
}

#[derive(Debug, Clone, Deserialize)]
struct OrderWire {
    order_id: String,
    #[serde(default)]
    client_order_id: String,
    #[serde(default)]
    ticker: String,
    #[serde(default)]
    side: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    yes_price_dollars: OptDec,
    #[serde(default)]
    no_price_dollars: OptDec,
    #[serde(default)]
    yes_price: Option<i64>,
    #[serde(default)]
    no_price: Option<i64>,
    #[serde(default)]
    initial_count_fp: OptDec,
    #[serde(default)]
    initial_count: Option<i64>,
    #[serde(default)]
    fill_count_fp: OptDec,
    #[serde(default)]
    fill_count: Option<i64>,
    #[serde(default)]
    remaining_count_fp: OptDec,
    #[serde(default)]
    remaining_count: Option<i64>,
}

fn count(fp: OptDec, legacy: Option<i64>) -> Decimal {
    fp.0.or(legacy.map(Decimal::from))
        .unwrap_or_default()
        .normalize()
}

fn price_of(side: &str, yes: (OptDec, Option<i64>), no: (OptDec, Option<i64>)) -> Decimal {
    let (dollars, cents) = if side == "no" { no } else { yes };
    dollars
        .0
        .or(cents.map(|c| Decimal::new(c, 2)))
        .unwrap_or_default()
        .normalize()
}

impl OrderWire {
    fn price(&self) -> Decimal {
        price_of(
            &self.side,
            (self.yes_price_dollars, self.yes_price),
            (self.no_price_dollars, self.no_price),
        )
    }
    fn filled(&self) -> Decimal {
        count(self.fill_count_fp, self.fill_count)
    }
    fn state(&self) -> OrderState {
        match self.status.as_str() {
            "resting" => OrderState::Open,
            "pending" => OrderState::Pending,
            "executed" => OrderState::Filled,
            _ => OrderState::Closed,
        }
    }
    fn open_order(&self) -> OpenOrder {
        let filled = self.filled();
        let remaining = count(self.remaining_count_fp, self.remaining_count);
        let initial = count(self.initial_count_fp, self.initial_count);
        OpenOrder {
            venue_order_id: self.order_id.clone(),
            market: self.ticker.clone(),
            instrument: self.side.clone(),
            side: side_of(&self.action),
            price: self.price(),
            size: if initial.is_zero() {
                filled + remaining
            } else {
                initial
            },
            filled,
        }
    }
}

fn side_of(action: &str) -> OrderSide {
    if action == "sell" {
        OrderSide::Sell
    } else {
        OrderSide::Buy
    }
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct FillWire {
    #[serde(default)]
    pub(crate) fill_id: String,
    #[serde(default)]
    pub(crate) trade_id: String,
    #[serde(default)]
    pub(crate) order_id: String,
    #[serde(default)]
    ticker: String,
    #[serde(default)]
    market_ticker: String,
    #[serde(default)]
    side: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    count_fp: OptDec,
    #[serde(default)]
    count: Option<i64>,
    #[serde(default)]
    yes_price_dollars: OptDec,
    #[serde(default)]
    no_price_dollars: OptDec,
    #[serde(default)]
    yes_price: Option<i64>,
    #[serde(default)]
    no_price: Option<i64>,
    #[serde(default)]
    is_taker: Option<bool>,
    #[serde(default)]
    fee_cost: OptDec,
    #[serde(default)]
    created_time: Option<DateTime<Utc>>,
    #[serde(default)]
    ts: Option<i64>,
}

/// Our fills, with their fees: the exchange's `fee_cost` when given, else
/// the formula with one accumulator per order, in the fills' order.
pub(crate) fn fills_of(wire: Vec<FillWire>) -> Vec<VenueFill> {
    let mut accumulators: HashMap<String, KalshiFeeAccumulator> = HashMap::new();
    wire.into_iter()
        .map(|f| {
            let price = price_of(
                &f.side,
                (f.yes_price_dollars, f.yes_price),
                (f.no_price_dollars, f.no_price),
            );
            let size = count(f.count_fp, f.count);
            let side = side_of(&f.action);
            let fee = match f.fee_cost.0 {
                Some(fee) => fee.normalize(),
                None => {
                    let rate = if f.is_taker.unwrap_or(true) {
                        KALSHI_TAKER_RATE
                    } else {
                        KALSHI_MAKER_RATE
                    };
                    accumulators
                        .entry(f.order_id.clone())
                        .or_default()
                        .fill(size, price, rate, side == OrderSide::Buy)
                        .net
                }
            };
            let ticker = if f.ticker.is_empty() {
                f.market_ticker
            } else {
                f.ticker
            };
            VenueFill {
                trade_id: if f.trade_id.is_empty() {
                    f.fill_id
                } else {
                    f.trade_id
                },
                venue_order_id: f.order_id,
                instrument: format!("{ticker}:{}", f.side),
                market: ticker,
                side,
                price,
                size,
                fee,
                ts: f
                    .created_time
                    .map(|t| t.timestamp_millis())
                    .or(f.ts.map(|s| s * 1000))
                    .unwrap_or_default(),
            }
        })
        .collect()
}

#[derive(Debug, Deserialize)]
struct OrderEnvelope {
    order: OrderWire,
}

#[derive(Debug, Deserialize)]
struct OrdersPage {
    #[serde(default)]
    orders: Vec<OrderWire>,
    #[serde(default)]
    cursor: Option<String>,
}

#[derive(Debug, Deserialize)]
struct FillsPage {
    #[serde(default)]
    fills: Vec<FillWire>,
    #[serde(default)]
    cursor: Option<String>,
}

#[derive(Debug, Deserialize)]
struct PositionWire {
    ticker: String,
    #[serde(default)]
    position_fp: OptDec,
    #[serde(default)]
    position: Option<i64>,
}

#[derive(Debug, Deserialize)]
struct PositionsPage {
    #[serde(default)]
    market_positions: Vec<PositionWire>,
    #[serde(default)]
    cursor: Option<String>,
}

#[derive(Debug, Deserialize)]
struct MarketWire {
    #[serde(default)]
    status: String,
    #[serde(default)]
    price_level_structure: Option<String>,
    #[serde(default)]
    fractional_trading_enabled: Option<bool>,
}

/// Which bucket a request spends.
#[derive(Debug, Clone, Copy)]
enum Bucket {
    Read,
    Write,
}

impl KalshiExecutor {
    /// Loads the tenant's key, then sizes the rate limits from the account's
    /// tier (`GET /account/limits`; the Basic tier when the exchange does not
    /// answer it). No order is sent.
    pub async fn connect(
        settings: &KalshiSettings,
        keys: &KalshiKeys,
        fence: Arc<dyn Fence>,
    ) -> Result<Self, VenueError> {
        let executor = Self::new(settings, keys, fence)?;
        match executor
            .signed_json::<KalshiAccountLimits>(
                Method::GET,
                "/account/limits",
                &[],
                None,
                Bucket::Read,
            )
            .await
        {
            Ok(limits) => executor.limits.apply(&limits),
            Err(e) if matches!(e.kind(), ErrorKind::Unauthorized) => return Err(e),
            Err(e) => {
                tracing::info!(error = %e, "Kalshi account limits unavailable; using the Basic tier")
            }
        }
        Ok(executor)
    }

    /// The executor without asking the exchange anything.
    pub fn new(
        settings: &KalshiSettings,
        keys: &KalshiKeys,
        fence: Arc<dyn Fence>,
    ) -> Result<Self, VenueError> {
        let signer = KalshiSigner::from_pem(keys.key_id.clone(), &keys.private_key_pem)?;
        let options = ClientOptions {
            timeout: settings.timeout,
            clock: settings.clock.clone(),
            ..ClientOptions::default()
        };
        let http = HttpClient::new(Api::Kalshi, &settings.base, &options)?;
        let prefix = url::Url::parse(http.base())
            .map(|u| u.path().trim_end_matches('/').to_owned())
            .map_err(|e| config_error(format!("the Kalshi URL {:?}: {e}", settings.base)))?;
        Ok(Self {
            http,
            signer,
            prefix,
            limits: KalshiLimits::default(),
            fence,
            settings: settings.clone(),
            retry: options.retry,
            shadow: false,
            log: Mutex::new(Vec::new()),
        })
    }

    /// The same executor in shadow mode: orders are built and signed, never sent.
    pub fn shadow(mut self) -> Self {
        self.shadow = true;
        self
    }

    /// The tenant's token buckets.
    pub fn limits(&self) -> &KalshiLimits {
        &self.limits
    }

    /// Shadow: the orders that would have been sent so far.
    pub fn would_have_sent(&self) -> Vec<Placed> {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn bucket(&self, bucket: Bucket) -> &RateLimiter {
        match bucket {
            Bucket::Read => &self.limits.read,
            Bucket::Write => &self.limits.write,
        }
    }

    /// One signed request, signed now: the path below the base, the query
    /// (not signed), a JSON body.
    async fn send_once(
        &self,
        method: &Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        bucket: Bucket,
        cost: u32,
    ) -> Result<Vec<u8>, VenueError> {
        let mut req = match body {
            Some(b) => Request::post(path, Body::Json(b.to_string())),
            None => Request::get(path),
        };
        req.method = method.clone();
        req.idempotent = false;
        for (k, v) in query {
            req = req.query(k, v);
        }
        req = req.limit(self.bucket(bucket), cost);
        req.auth = Some(self.signer.headers(
            Utc::now().timestamp_millis(),
            method.as_str(),
            &format!("{}{path}", self.prefix),
        ));
        Ok(self.http.send(&req).await?.body)
    }

    /// A signed read (or cancel), retried after a 429, a 5xx or a transport
    /// error with jittered exponential back-off and a fresh signature.
    async fn signed_json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        bucket: Bucket,
    ) -> Result<T, VenueError> {
        let cost = match (bucket, body) {
            (Bucket::Write, Some(b)) if path.ends_with("/batched") => {
                let items = b["ids"].as_array().map_or(1, Vec::len);
                u32::try_from(items).unwrap_or(u32::MAX) * KalshiLimits::BATCH_CANCEL_ITEM
            }
            _ => KalshiLimits::REQUEST,
        };
        let attempts = self.settings.read_attempts.max(1);
        let mut attempt = 1;
        loop {
            match self
                .send_once(&method, path, query, body, bucket, cost)
                .await
            {
                Ok(bytes) => return self.http.decode(&format!("{method} {path}"), &bytes),
                Err(e) if attempt < attempts && retryable(&e) => {
                    let wait = match e.kind() {
                        // The venue's gate waits out a Retry-After by itself.
                        ErrorKind::RateLimited {
                            retry_after: Some(_),
                        } => Duration::ZERO,
                        // Without one: 1 s, 2 s, 4 s… (the gate's own
                        // one-second pause runs inside the first).
                        ErrorKind::RateLimited { retry_after: None } => {
                            Duration::from_secs(1 << (attempt - 1).min(6))
                        }
                        _ => self.retry.backoff(attempt),
                    };
                    tracing::warn!(endpoint = %e.endpoint(), attempt, ?wait, error = %e, "Kalshi: retrying");
                    if !wait.is_zero() {
                        self.settings.clock.sleep(wait).await;
                    }
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Every page of a cursor-paged list.
    async fn pages<P: DeserializeOwned, T>(
        &self,
        path: &str,
        query: &[(&str, String)],
        split: impl Fn(P) -> (Vec<T>, Option<String>),
    ) -> Result<Vec<T>, VenueError> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut q: Vec<(&str, String)> = query.to_vec();
            q.push(("limit", "200".to_owned()));
            if let Some(c) = &cursor {
                q.push(("cursor", c.clone()));
            }
            let page: P = self
                .signed_json(Method::GET, path, &q, None, Bucket::Read)
                .await?;
            let (items, next) = split(page);
            out.extend(items);
            match next.filter(|c| !c.is_empty()) {
                Some(next) if Some(&next) != cursor.as_ref() => cursor = Some(next),
                _ => return Ok(out),
            }
        }
        Err(self.http.err(
            format!("GET {path}"),
            ErrorKind::Api {
                message: format!("more than {MAX_PAGES} pages"),
            },
        ))
    }

    /// The create request's body.
    pub fn order_body(order: &OrderRequest) -> Result<Value, VenueError> {
        let side = order.instrument.to_ascii_lowercase();
        if side != "yes" && side != "no" {
            return Err(config_error(format!(
                "a Kalshi order's instrument is its side, yes or no, not {:?}",
                order.instrument
            )));
        }
        let mut body = json!({
            "ticker": order.market,
            "client_order_id": kalshi_client_order_id(&order.client_id),
            "side": side,
            "action": match order.side { OrderSide::Buy => "buy", OrderSide::Sell => "sell" },
            "type": "limit",
            "count_fp": format!("{:.2}", order.size),
        });
        if order.size.fract().is_zero() {
            body["count"] = json!(order.size.trunc().to_string().parse::<i64>().unwrap_or(0));
        }
        body[format!("{side}_price_dollars")] = json!(format!("{:.4}", order.price));
        match order.time_in_force {
            TimeInForce::ImmediateOrCancel => body["time_in_force"] = json!("immediate_or_cancel"),
            TimeInForce::FillOrKill => body["time_in_force"] = json!("fill_or_kill"),
            TimeInForce::GoodTillCancelled => body["time_in_force"] = json!("good_till_canceled"),
            TimeInForce::GoodTillDate(ts) => body["expiration_ts"] = json!(ts),
        }
        Ok(body)
    }

    /// Our fills of one order.
    async fn order_fills(&self, order_id: &str) -> Result<Vec<VenueFill>, VenueError> {
        let wire = self
            .pages(
                "/portfolio/fills",
                &[("order_id", order_id.to_owned())],
                |p: FillsPage| (p.fills, p.cursor),
            )
            .await?;
        Ok(fills_of(wire))
    }

    /// The order the exchange holds under our client order id, if any.
    async fn find(
        &self,
        client_order_id: &str,
        ticker: &str,
    ) -> Result<Option<OrderWire>, VenueError> {
        let orders = self
            .pages(
                "/portfolio/orders",
                &[("ticker", ticker.to_owned())],
                |p: OrdersPage| (p.orders, p.cursor),
            )
            .await?;
        Ok(orders
            .into_iter()
            .find(|o| o.client_order_id == client_order_id))
    }

    async fn placed(
        &self,
        order: &OrderRequest,
        wire: &OrderWire,
        recovered: bool,
        sent: String,
    ) -> Result<Placed, VenueError> {
        let fills = if wire.filled().is_zero() {
            Vec::new()
        } else {
            self.order_fills(&wire.order_id).await?
        };
        Ok(Placed {
            client_id: order.client_id,
            venue_order_id: wire.order_id.clone(),
            state: wire.state(),
            filled: wire.filled(),
            trade_ids: fills.iter().map(|f| f.trade_id.clone()).collect(),
            fills,
            recovered,
            wire: sent,
        })
    }

    /// After a duplicate refusal: the order we already have, with its fills.
    async fn recover(
        &self,
        order: &OrderRequest,
        cid: &str,
        sent: String,
    ) -> Result<Placed, ExecError> {
        let in_doubt = |source| ExecError::InDoubt {
            client_id: order.client_id,
            source,
        };
        match self.find(cid, &order.market).await {
            Ok(Some(found)) => self
                .placed(order, &found, true, sent)
                .await
                .map_err(in_doubt),
            Ok(None) => Err(ExecError::Rejected {
                venue: "kalshi",
                client_id: order.client_id,
                reason: format!(
                    "the exchange says client_order_id {cid} exists, but no order of ours carries it"
                ),
            }),
            Err(e) => Err(in_doubt(e)),
        }
    }
}

fn retryable(e: &VenueError) -> bool {
    matches!(
        e.kind(),
        ErrorKind::RateLimited { .. }
            | ErrorKind::Server { .. }
            | ErrorKind::Timeout { .. }
            | ErrorKind::Unreachable { .. }
    )
}

#[async_trait]
impl Executor for KalshiExecutor {
    fn kind(&self) -> ExecutionKind {
        if self.shadow {
            ExecutionKind::Shadow
        } else {
            ExecutionKind::Live
        }
    }

    /// `GET /markets/{ticker}`: a cent tick (a tenth of a cent where the
    /// market's price structure has one), whole contracts unless the market
    /// trades fractions, Kalshi's fee (takers 0.07, makers 0.0175).
    async fn market_rules(&self, market: &str) -> Result<MarketRules, ExecError> {
        #[derive(Deserialize)]
        struct Envelope {
            market: MarketWire,
        }
        let path = format!("/markets/{market}");
        let found: Envelope = self
            .signed_json(Method::GET, &path, &[], None, Bucket::Read)
            .await?;
        if !matches!(found.market.status.as_str(), "active" | "open" | "") {
            return Err(ExecError::Venue(self.http.err(
                format!("GET {path}"),
                ErrorKind::Api {
                    message: format!("market {market} is {}", found.market.status),
                },
            )));
        }
        let tick = match found.market.price_level_structure.as_deref() {
            Some("deci_cent") => Decimal::new(1, 3),
            _ => Decimal::new(1, 2),
        };
        let min_size = if found.market.fractional_trading_enabled == Some(true) {
            Decimal::new(1, 2)
        } else {
            Decimal::ONE
        };
        Ok(MarketRules {
            tick_size: tick,
            min_size,
            neg_risk: false,
            fees: FeeParams {
                rate: KALSHI_TAKER_RATE,
                exponent: 1,
                taker_only: false,
            },
        })
    }

    async fn place(&self, order: &OrderRequest, rules: &MarketRules) -> Result<Placed, ExecError> {
        rules.check(order).map_err(|violation| ExecError::Rules {
            market: order.market.clone(),
            violation,
        })?;
        let body = Self::order_body(order)?;
        let sent = body.to_string();
        let cid = kalshi_client_order_id(&order.client_id);
        if self.shadow {
            // Signed exactly as it would be sent, then only recorded.
            let headers = self.signer.headers(
                Utc::now().timestamp_millis(),
                "POST",
                &format!("{}/portfolio/orders", self.prefix),
            );
            let placed = Placed {
                client_id: order.client_id,
                venue_order_id: cid.clone(),
                state: OrderState::NotSent,
                filled: Decimal::ZERO,
                fills: Vec::new(),
                trade_ids: Vec::new(),
                recovered: false,
                wire: sent,
            };
            tracing::info!(client_order_id = %cid, ticker = %order.market, headers = ?headers, "shadow: Kalshi order signed and not sent");
            self.log
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(placed.clone());
            return Ok(placed);
        }
        self.fence.check().await?;
        let endpoint = "POST /portfolio/orders";
        let result = tokio::time::timeout(
            self.settings.timeout,
            self.send_once(
                &Method::POST,
                "/portfolio/orders",
                &[],
                Some(&body),
                Bucket::Write,
                KalshiLimits::REQUEST,
            ),
        )
        .await;
        let bytes = match result {
            Err(_) => {
                return Err(ExecError::InDoubt {
                    client_id: order.client_id,
                    source: VenueError::new(
                        Api::Kalshi,
                        endpoint,
                        ErrorKind::Timeout {
                            after: self.settings.timeout,
                        },
                    ),
                });
            }
            Ok(Ok(bytes)) => bytes,
            Ok(Err(e)) => {
                return Err(match (e.status(), e.kind()) {
                    (Some(409), _) => return self.recover(order, &cid, sent).await,
                    (_, ErrorKind::RateLimited { .. }) => ExecError::Venue(e),
                    (_, ErrorKind::Timeout { .. } | ErrorKind::Unreachable { .. })
                    | (Some(500..=599), _) => ExecError::InDoubt {
                        client_id: order.client_id,
                        source: e,
                    },
                    (Some(400..=499), _) => ExecError::Rejected {
                        venue: "kalshi",
                        client_id: order.client_id,
                        reason: refusal(&e),
                    },
                    _ => ExecError::Venue(e),
                });
            }
        };
        let created: OrderEnvelope = self.http.decode(endpoint, &bytes)?;
        self.placed(order, &created.order, false, sent)
            .await
            .map_err(|source| ExecError::InDoubt {
                client_id: order.client_id,
                source,
            })
    }

    async fn find_order(&self, order: &OrderRequest) -> Result<Option<Placed>, ExecError> {
        if self.shadow {
            return Ok(None);
        }
        let cid = kalshi_client_order_id(&order.client_id);
        match self.find(&cid, &order.market).await? {
            Some(found) => Ok(Some(self.placed(order, &found, true, String::new()).await?)),
            None => Ok(None),
        }
    }

    async fn cancel(&self, venue_order_id: &str) -> Result<(), ExecError> {
        if self.shadow {
            return Ok(());
        }
        self.fence.check().await?;
        let path = format!("/portfolio/orders/{venue_order_id}");
        match self
            .signed_json::<Value>(Method::DELETE, &path, &[], None, Bucket::Write)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.status() == Some(404) => Err(ExecError::Rejected {
                venue: "kalshi",
                client_id: ClientOrderId([0; 16]),
                reason: format!("cancel of {venue_order_id}: {}", refusal(&e)),
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// Every resting order, cancelled in batches of 20 (`DELETE
    /// /portfolio/orders/batched`). Cancelling is allowed fenced or not: it
    /// only takes risk off.
    async fn cancel_all(&self) -> Result<Vec<String>, ExecError> {
        if self.shadow {
            return Ok(Vec::new());
        }
        let open = self.open_orders().await?;
        let ids: Vec<String> = open.into_iter().map(|o| o.venue_order_id).collect();
        let mut cancelled = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(BATCH_CANCEL_MAX) {
            let answer: Value = self
                .signed_json(
                    Method::DELETE,
                    "/portfolio/orders/batched",
                    &[],
                    Some(&json!({ "ids": chunk })),
                    Bucket::Write,
                )
                .await?;
            for item in answer["orders"].as_array().into_iter().flatten() {
                if item.get("error").is_none_or(Value::is_null)
                    && let Some(id) = item["order_id"].as_str()
                {
                    cancelled.push(id.to_owned());
                }
            }
        }
        Ok(cancelled)
    }

    async fn open_orders(&self) -> Result<Vec<OpenOrder>, ExecError> {
        let orders = self
            .pages(
                "/portfolio/orders",
                &[("status", "resting".to_owned())],
                |p: OrdersPage| (p.orders, p.cursor),
            )
            .await?;
        Ok(orders.iter().map(OrderWire::open_order).collect())
    }

    async fn fills(&self, since_ms: i64) -> Result<Vec<VenueFill>, ExecError> {
        let mut wire = self
            .pages(
                "/portfolio/fills",
                &[("min_ts", (since_ms / 1000).to_string())],
                |p: FillsPage| (p.fills, p.cursor),
            )
            .await?;
        // The accumulator runs oldest first, whatever order the pages come in.
        wire.sort_by_key(|f| {
            f.created_time
                .map(|t| t.timestamp_millis())
                .or(f.ts.map(|s| s * 1000))
        });
        let mut fills = fills_of(wire);
        fills.retain(|f| f.ts >= since_ms);
        Ok(fills)
    }

    async fn positions(&self) -> Result<Vec<VenuePosition>, ExecError> {
        let wire = self
            .pages("/portfolio/positions", &[], |p: PositionsPage| {
                (p.market_positions, p.cursor)
            })
            .await?;
        Ok(wire
            .into_iter()
            .filter_map(|p| {
                let size = count(p.position_fp, p.position);
                match size.cmp(&Decimal::ZERO) {
                    std::cmp::Ordering::Greater => Some(VenuePosition {
                        instrument: format!("{}:yes", p.ticker),
                        size,
                    }),
                    std::cmp::Ordering::Less => Some(VenuePosition {
                        instrument: format!("{}:no", p.ticker),
                        size: -size,
                    }),
                    std::cmp::Ordering::Equal => None,
                }
            })
            .collect())
    }

    async fn balances(&self) -> Result<Vec<VenueBalance>, ExecError> {
        #[derive(Deserialize)]
        struct BalanceWire {
            #[serde(default)]
            balance_dollars: OptDec,
            #[serde(default)]
            balance: Option<i64>,
        }
        let wire: BalanceWire = self
            .signed_json(Method::GET, "/portfolio/balance", &[], None, Bucket::Read)
            .await?;
        let amount = match (wire.balance_dollars.0, wire.balance) {
            (Some(d), _) => d,
            (None, Some(cents)) => Decimal::new(cents, 2),
            (None, None) => {
                return Err(ExecError::Venue(self.http.err(
                    "GET /portfolio/balance",
                    ErrorKind::Decode {
                        detail: "no balance field".to_owned(),
                    },
                )));
            }
        };
        Ok(vec![VenueBalance {
            asset: "USD".to_owned(),
            amount: amount.normalize(),
        }])
    }
}

#[cfg(test)]
mod tests {
    use rust_decimal_macros::dec;

    use super::*;

    #[test]
    fn the_client_order_id_is_the_ids_bytes_as_a_uuid() {
        let id = ClientOrderId::derive(&[3; 16], 2, 9);
        let text = kalshi_client_order_id(&id);
        assert_eq!(text.len(), 36);
        assert_eq!(text.replace('-', ""), id.to_string());
        assert_eq!(
            text,
            kalshi_client_order_id(&ClientOrderId::derive(&[3; 16], 2, 9))
        );
    }

    #[test]
    fn an_order_body_names_the_side_its_price_and_whole_contracts() {
        let order = OrderRequest {
            client_id: ClientOrderId::derive(&[1; 16], 1, 1),
            market: "KXBTC-26JAN01-B100".to_owned(),
            instrument: "no".to_owned(),
            side: OrderSide::Buy,
            price: dec!(0.42),
            size: dec!(10),
            time_in_force: TimeInForce::ImmediateOrCancel,
        };
        let body = KalshiExecutor::order_body(&order).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(body["ticker"], "KXBTC-26JAN01-B100");
        assert_eq!(body["side"], "no");
        assert_eq!(body["action"], "buy");
        assert_eq!(body["no_price_dollars"], "0.4200");
        assert_eq!(body["count"], 10);
        assert_eq!(body["count_fp"], "10.00");
        assert_eq!(body["time_in_force"], "immediate_or_cancel");
        assert_eq!(
            body["client_order_id"],
            kalshi_client_order_id(&order.client_id)
        );
        let bad = OrderRequest {
            instrument: "12345".to_owned(),
            ..order
        };
        assert!(KalshiExecutor::order_body(&bad).is_err());
    }

    #[test]
    fn fills_without_a_fee_cost_pay_the_formula_with_one_accumulator_per_order() {
        let fill = |id: &str, order: &str| FillWire {
            fill_id: id.to_owned(),
            trade_id: String::new(),
            order_id: order.to_owned(),
            ticker: "KX".to_owned(),
            market_ticker: String::new(),
            side: "yes".to_owned(),
            action: "buy".to_owned(),
            count_fp: OptDec(Some(dec!(1))),
            count: None,
            yes_price_dollars: OptDec(Some(dec!(0.50))),
            no_price_dollars: OptDec(Some(dec!(0.50))),
            yes_price: None,
            no_price: None,
            is_taker: Some(true),
            fee_cost: OptDec(None),
            created_time: None,
            ts: Some(1),
        };
        let fees: Vec<Decimal> = fills_of(vec![
            fill("a", "o1"),
            fill("b", "o1"),
            fill("c", "o1"),
            fill("d", "o1"),
            fill("e", "o2"),
        ])
        .iter()
        .map(|f| f.fee)
        .collect();
        // The fourth one-lot of o1 gets the accumulated cent back; o2 starts afresh.
        assert_eq!(
            fees,
            vec![dec!(0.02), dec!(0.02), dec!(0.02), dec!(0.01), dec!(0.02)]
        );
    }

    #[test]
    fn keys_never_show_in_debug() {
        let keys = KalshiKeys {
            key_id: "key-1".to_owned(),
            private_key_pem: SecretString::from("-----BEGIN PRIVATE KEY----- sekrit"),
        };
        let text = format!("{keys:?}");
        assert!(text.contains("key-1"));
        assert!(!text.contains("sekrit"));
    }
}
