//! A stand-in for Kalshi's trade API (REST v2), served on loopback under
//! `/trade-api/v2`, built from the documented endpoints: the public markets
//! and order books, the series' fee schedules, and the private portfolio endpoints (balance, create
//! order, cancel, batch cancel, orders, fills, positions) and
//! `GET /account/limits`.
//!
//! Every private request's RSA-PSS signature is verified with the account's
//! public key over `timestamp ‖ METHOD ‖ path` (the path with
//! `/trade-api/v2`, without the query); a bad or missing signature is a 401.
//! An order is refused as the exchange refuses it: a client order id seen
//! before (409 `order_already_exists`), an unknown market, a price off the
//! cent or outside (0, 1), more than the balance. Accepted orders take the
//! book the test set (bids only, as Kalshi publishes: buying YES takes the
//! NO bids at `1 − price`), fully, partly or not at all, and pay the
//! series' taker fee with the per-order accumulator; an immediate-or-cancel rest is
//! cancelled, a good-till-cancelled rest stays open. Faults queued with
//! [`KalshiStandIn::push_fault`] answer the next order creates: 429 with or
//! without `Retry-After`, 500, a refusal, or accept-then-stall (the order is
//! taken, the answer comes too late).
//!
//!
//! The WebSocket (`/trade-api/ws/v2`, on its own loopback port:
//! [`KalshiStandIn::ws_url`]) verifies the handshake's signature the same
//! way, answers `subscribe` / `unsubscribe` with `subscribed` /
//! `unsubscribed` and a subscription id per channel, sends each market's
//! `orderbook_snapshot` on subscribing and an `orderbook_delta` for every
//! change of a book (the test's [`KalshiStandIn::apply_delta`] or an
//! order's match), numbered per subscription; [`KalshiStandIn::inject_sequence_gap`]
//! makes the next book message skip a number. Every fill of an account
//! (an order's match, or a resting order filled later with
//! [`KalshiStandIn::fill_resting`]) goes to its `fill` subscriptions.
//!
//! Not here: settlement, the `ticker` and `trade` channels' messages (they
//! are subscribed to and stay silent).

use std::collections::{HashMap, VecDeque};
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use polybot_core::fees::{KalshiFeeAccumulator, KalshiSeriesFees};
use rsa::RsaPublicKey;
use rsa::pkcs8::DecodePublicKey;
use rsa::pss::{Signature, VerifyingKey};
use rsa::signature::Verifier;
use rust_decimal::Decimal;
use serde_json::{Value, json};
use sha2::Sha256;
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// The API prefix every path sits under (and which signatures cover).
pub const PREFIX: &str = "/trade-api/v2";
/// The WebSocket's path (which the handshake's signature covers).
pub const WS_PATH: &str = "/trade-api/ws/v2";

/// The answer the next order create gets instead of the usual one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KalshiFault {
    /// HTTP 429, with `Retry-After: n` seconds when given; nothing taken.
    TooManyRequests { retry_after: Option<u64> },
    /// HTTP 500; nothing taken.
    ServerError,
    /// HTTP 400 with this error code (e.g. `market_closed`); nothing taken.
    Reject(String),
    /// The order is taken (and matched), the answer comes after this delay.
    AcceptThenStall(Duration),
}

#[derive(Debug)]
struct Account {
    key_id: String,
    verifier: VerifyingKey<Sha256>,
    /// Cents.
    balance: Decimal,
    /// Per ticker: contracts, positive YES, negative NO.
    positions: HashMap<String, Decimal>,
}

#[derive(Debug, Clone)]
struct StoredOrder {
    id: String,
    client_order_id: String,
    key_id: String,
    ticker: String,
    side: String,
    action: String,
    /// The price of `side`, in dollars.
    price: Decimal,
    count: Decimal,
    filled: Decimal,
    status: &'static str,
    fees: Decimal,
    created: chrono::DateTime<chrono::Utc>,
}

#[derive(Debug, Clone)]
struct Fill {
    id: String,
    order_id: String,
    key_id: String,
    ticker: String,
    side: String,
    action: String,
    /// The price of `side`, in dollars.
    price: Decimal,
    count: Decimal,
    fee: Decimal,
    /// Taken from the book (an order's own match) or made (a resting order
    /// filled later).
    taker: bool,
    at: chrono::DateTime<chrono::Utc>,
}

#[derive(Debug, Default)]
struct State {
    accounts: Vec<Account>,
    /// Tickers listed, with their status.
    markets: HashMap<String, String>,
    /// Per ticker: YES bids and NO bids, `(price, size)`.
    yes_bids: HashMap<String, Vec<(Decimal, Decimal)>>,
    no_bids: HashMap<String, Vec<(Decimal, Decimal)>>,
    orders: Vec<StoredOrder>,
    fills: Vec<Fill>,
    faults: VecDeque<KalshiFault>,
    /// Faults for other private requests, by `METHOD path`.
    route_faults: HashMap<String, VecDeque<KalshiFault>>,
    limits: Option<Value>,
    /// Series fee schedules set by the test; any other series is
    /// `quadratic` with multiplier 1.
    series_fees: HashMap<String, KalshiSeriesFees>,
    /// Order creates received (including refused and faulted ones).
    creates: u64,
    /// When the last order create had arrived in full.
    last_create: Option<std::time::Instant>,
    /// Private requests whose signature verified.
    verified: u64,
    /// Why requests were refused, oldest first.
    rejections: Vec<String>,
    /// Signed paths seen, in order (method and path).
    seen: Vec<String>,
    /// Public (unsigned) paths read, in order.
    public: Vec<String>,
    ws: WsState,
}

/// The WebSocket side: connections, their subscriptions, and what the test
/// asked for.
#[derive(Debug, Default)]
struct WsState {
    conns: Vec<WsConn>,
    next_sid: u64,
    /// The next book message of every subscription skips a `seq`.
    gap: bool,
    /// Handshakes whose signature verified.
    handshakes: u64,
    /// Commands received, oldest first.
    commands: Vec<Value>,
}

#[derive(Debug)]
struct WsConn {
    key_id: String,
    tx: tokio::sync::mpsc::UnboundedSender<String>,
    subs: Vec<WsSub>,
    open: bool,
}

#[derive(Debug)]
struct WsSub {
    sid: u64,
    channel: String,
    tickers: Vec<String>,
    seq: u64,
}

/// The stand-in, listening on loopback until dropped.
#[derive(Debug)]
pub struct KalshiStandIn {
    server: MockServer,
    state: Arc<Mutex<State>>,
    ws_addr: std::net::SocketAddr,
    ws_task: tokio::task::JoinHandle<()>,
}

impl Drop for KalshiStandIn {
    fn drop(&mut self) {
        self.ws_task.abort();
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

impl KalshiStandIn {
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(State::default()));
        let server = MockServer::start().await;
        Mock::given(any())
            .respond_with(Handler {
                state: state.clone(),
            })
            .mount(&server)
            .await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("binding the Kalshi WebSocket stand-in: {e}"));
        let ws_addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("the Kalshi WebSocket stand-in's address: {e}"));
        let ws_task = tokio::spawn(ws_accept(listener, state.clone()));
        Self {
            server,
            state,
            ws_addr,
            ws_task,
        }
    }

    /// The WebSocket's URL, `ws://127.0.0.1:port/trade-api/ws/v2` (its own
    /// port: the REST side is a mock server that does not upgrade).
    pub fn ws_url(&self) -> String {
        format!("ws://{}{WS_PATH}", self.ws_addr)
    }

    /// Changes the size of one bid level by `delta` (`side` `yes` or `no`,
    /// as Kalshi's books are bids only) and sends the `orderbook_delta` to
    /// every subscription of the market.
    pub fn apply_delta(&self, ticker: &str, side: &str, price: Decimal, delta: Decimal) {
        let mut state = lock(&self.state);
        let ladder = if side == "no" {
            state.no_bids.entry(ticker.to_owned()).or_default()
        } else {
            state.yes_bids.entry(ticker.to_owned()).or_default()
        };
        match ladder.iter_mut().find(|(p, _)| *p == price) {
            Some(level) => level.1 = (level.1 + delta).max(Decimal::ZERO),
            None if delta > Decimal::ZERO => ladder.push((price, delta)),
            None => {}
        }
        ladder.retain(|(_, s)| !s.is_zero());
        ladder.sort_by_key(|l| l.0);
        let side = if side == "no" { "no" } else { "yes" };
        state.ws_book_delta(ticker, side, price, delta);
    }

    /// The next book message of every subscription skips one `seq`, as if
    /// a message had been lost on the way.
    pub fn inject_sequence_gap(&self) {
        lock(&self.state).ws.gap = true;
    }

    /// The public `GET /markets/…` paths read (one market, its order book),
    /// oldest first.
    pub fn public_reads(&self) -> Vec<String> {
        lock(&self.state).public.clone()
    }

    /// WebSocket handshakes whose signature verified.
    pub fn ws_handshakes(&self) -> u64 {
        lock(&self.state).ws.handshakes
    }

    /// The WebSocket commands received, oldest first.
    pub fn ws_commands(&self) -> Vec<Value> {
        lock(&self.state).ws.commands.clone()
    }

    /// Fills `count` more of a resting order as a maker (someone took it),
    /// at the order's price and the series' maker fee: booked to the
    /// account, listed by `GET /portfolio/fills` and pushed on the `fill`
    /// channel. Returns the trade id.
    pub fn fill_resting(&self, order_id: &str, count: Decimal) -> String {
        let mut state = lock(&self.state);
        let index = state
            .orders
            .iter()
            .position(|o| o.id == order_id && o.status == "resting")
            .unwrap_or_else(|| panic!("no resting order {order_id}"));
        let order = state.orders[index].clone();
        let take = count.min(order.count - order.filled);
        let buying = order.action == "buy";
        let series = order
            .ticker
            .split('-')
            .next()
            .unwrap_or(&order.ticker)
            .to_owned();
        let rate = state.fees_of_series(&series).maker_rate();
        let fee = KalshiFeeAccumulator::default()
            .fill(take, order.price, rate, buying)
            .net;
        let account = state
            .accounts
            .iter()
            .position(|a| a.key_id == order.key_id)
            .unwrap_or_else(|| panic!("no account {}", order.key_id));
        let a = &mut state.accounts[account];
        let cash = order.price * take * Decimal::ONE_HUNDRED;
        if buying {
            a.balance -= cash + fee * Decimal::ONE_HUNDRED;
        } else {
            a.balance += cash - fee * Decimal::ONE_HUNDRED;
        }
        let signed = if (order.side == "yes") == buying {
            take
        } else {
            -take
        };
        *a.positions.entry(order.ticker.clone()).or_default() += signed;
        let o = &mut state.orders[index];
        o.filled += take;
        o.fees += fee;
        if o.filled >= o.count {
            o.status = "executed";
        }
        let n = state
            .fills
            .iter()
            .filter(|f| f.order_id == order.id)
            .count();
        let fill = Fill {
            id: format!("{}-fill-{}", order.id, n + 1),
            order_id: order.id.clone(),
            key_id: order.key_id.clone(),
            ticker: order.ticker.clone(),
            side: order.side.clone(),
            action: order.action.clone(),
            price: order.price,
            count: take,
            fee,
            taker: false,
            at: chrono::Utc::now(),
        };
        state.fills.push(fill.clone());
        state.ws_fill(&fill);
        fill.id
    }

    /// The trade API's base URL, `http://127.0.0.1:port/trade-api/v2`.
    pub fn url(&self) -> String {
        format!("{}{PREFIX}", self.server.uri())
    }

    /// Opens an account for the API key `key_id` whose public key is the
    /// PEM (SPKI) `public_pem`, holding `balance` dollars.
    pub fn open_account(&self, key_id: &str, public_pem: &str, balance: Decimal) {
        let public = RsaPublicKey::from_public_key_pem(public_pem)
            .unwrap_or_else(|e| panic!("public key: {e}"));
        lock(&self.state).accounts.push(Account {
            key_id: key_id.to_owned(),
            verifier: VerifyingKey::<Sha256>::new(public),
            balance: balance * Decimal::ONE_HUNDRED,
            positions: HashMap::new(),
        });
    }

    /// Opens an account for `key_id` whose key pair is the private PEM
    /// (PKCS#8 or PKCS#1) the test also gives the tenant; the stand-in keeps
    /// only its public half.
    pub fn open_account_for_private_key(&self, key_id: &str, private_pem: &str, balance: Decimal) {
        use rsa::pkcs1::DecodeRsaPrivateKey;
        use rsa::pkcs8::DecodePrivateKey;
        let private = rsa::RsaPrivateKey::from_pkcs8_pem(private_pem.trim())
            .or_else(|_| rsa::RsaPrivateKey::from_pkcs1_pem(private_pem.trim()))
            .unwrap_or_else(|e| panic!("private key: {e}"));
        lock(&self.state).accounts.push(Account {
            key_id: key_id.to_owned(),
            verifier: VerifyingKey::<Sha256>::new(private.to_public_key()),
            balance: balance * Decimal::ONE_HUNDRED,
            positions: HashMap::new(),
        });
    }

    /// Lists an open market.
    pub fn list_market(&self, ticker: &str) {
        lock(&self.state)
            .markets
            .insert(ticker.to_owned(), "active".to_owned());
    }

    /// Sets a listed market's status (`active`, `closed`, …).
    pub fn set_market_status(&self, ticker: &str, status: &str) {
        lock(&self.state)
            .markets
            .insert(ticker.to_owned(), status.to_owned());
    }

    /// The book, bids only as Kalshi publishes it: YES bids and NO bids.
    pub fn set_book(&self, ticker: &str, yes: &[(Decimal, Decimal)], no: &[(Decimal, Decimal)]) {
        let mut state = lock(&self.state);
        state.yes_bids.insert(ticker.to_owned(), sorted(yes));
        state.no_bids.insert(ticker.to_owned(), sorted(no));
    }

    /// The fee schedule `GET /series/{series}` answers and the stand-in
    /// charges on that series' markets (default: `quadratic`, multiplier 1).
    pub fn set_series_fees(&self, series: &str, fees: KalshiSeriesFees) {
        lock(&self.state)
            .series_fees
            .insert(series.to_owned(), fees);
    }

    /// What `GET /account/limits` answers (404 until set).
    pub fn set_account_limits(&self, body: Value) {
        lock(&self.state).limits = Some(body);
    }

    /// The next order create gets `fault`.
    pub fn push_fault(&self, fault: KalshiFault) {
        lock(&self.state).faults.push_back(fault);
    }

    /// Drops the faults queued for order creates that no create has met
    /// (the exchange is back). Returns how many were dropped.
    pub fn clear_faults(&self) -> usize {
        let mut state = lock(&self.state);
        let left = state.faults.len();
        state.faults.clear();
        left
    }

    /// The next signed request to `route` (`"GET /portfolio/balance"`, the
    /// path below `/trade-api/v2`) gets `fault`.
    pub fn push_fault_on(&self, route: &str, fault: KalshiFault) {
        lock(&self.state)
            .route_faults
            .entry(route.to_owned())
            .or_default()
            .push_back(fault);
    }

    /// Order creates received, whatever their fate.
    pub fn order_creates(&self) -> u64 {
        lock(&self.state).creates
    }

    /// When the last order create had arrived in full (for latency figures).
    pub fn last_order_arrived(&self) -> Option<std::time::Instant> {
        lock(&self.state).last_create
    }

    /// Orders taken (filled, resting or cancelled).
    pub fn orders_taken(&self) -> usize {
        lock(&self.state).orders.len()
    }

    /// Ids of the orders resting now.
    pub fn open_order_ids(&self) -> Vec<String> {
        lock(&self.state)
            .orders
            .iter()
            .filter(|o| o.status == "resting")
            .map(|o| o.id.clone())
            .collect()
    }

    /// Private requests whose signature verified.
    pub fn signatures_verified(&self) -> u64 {
        lock(&self.state).verified
    }

    /// `METHOD path` of every private request that verified, in order.
    pub fn signed_requests(&self) -> Vec<String> {
        lock(&self.state).seen.clone()
    }

    /// Why requests were refused, oldest first.
    pub fn rejections(&self) -> Vec<String> {
        lock(&self.state).rejections.clone()
    }

    /// The account's cash in dollars.
    pub fn balance(&self, key_id: &str) -> Decimal {
        lock(&self.state)
            .accounts
            .iter()
            .find(|a| a.key_id == key_id)
            .map(|a| (a.balance / Decimal::ONE_HUNDRED).normalize())
            .unwrap_or_default()
    }

    /// The account's position in `ticker`: positive YES, negative NO.
    pub fn position(&self, key_id: &str, ticker: &str) -> Decimal {
        lock(&self.state)
            .accounts
            .iter()
            .find(|a| a.key_id == key_id)
            .and_then(|a| a.positions.get(ticker).copied())
            .unwrap_or_default()
    }
}

fn sorted(levels: &[(Decimal, Decimal)]) -> Vec<(Decimal, Decimal)> {
    let mut levels = levels.to_vec();
    levels.sort_by_key(|l| l.0);
    levels
}

struct Handler {
    state: Arc<Mutex<State>>,
}

fn header(request: &Request, name: &str) -> Option<String> {
    request
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn query(request: &Request, name: &str) -> Option<String> {
    request
        .url
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Kalshi's error body.
fn error(status: u16, code: &str, message: impl Into<String>) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({
        "error": {"code": code, "message": message.into()}
    }))
}

fn dollars(d: Decimal) -> String {
    format!("{:.4}", d)
}

fn count_fp(d: Decimal) -> String {
    format!("{:.2}", d)
}

impl Respond for Handler {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let mut state = lock(&self.state);
        let Some(path) = request.url.path().strip_prefix(PREFIX).map(str::to_owned) else {
            return error(404, "not_found", "not under /trade-api/v2");
        };
        let method = request.method.as_str().to_owned();
        match (method.as_str(), path.as_str()) {
            ("GET", "/markets") => {
                let markets: Vec<Value> = state
                    .markets
                    .iter()
                    .map(|(t, s)| state.market_json(t, s))
                    .collect();
                ResponseTemplate::new(200).set_body_json(json!({"markets": markets, "cursor": ""}))
            }
            ("GET", p) if p.starts_with("/series/") => {
                let series = &p["/series/".len()..];
                let fees = state.fees_of_series(series);
                let fee_type = match fees.fee_type {
                    polybot_core::fees::KalshiFeeType::Quadratic => "quadratic",
                    polybot_core::fees::KalshiFeeType::QuadraticWithMakerFees => {
                        "quadratic_with_maker_fees"
                    }
                };
                ResponseTemplate::new(200).set_body_json(json!({"series": {
                    "ticker": series, "title": format!("{series} series"),
                    "fee_type": fee_type,
                    // The exchange sends a JSON number.
                    "fee_multiplier": serde_json::from_str::<Value>(&fees.multiplier.to_string())
                        .unwrap_or(Value::Null),
                }}))
            }
            ("GET", p) if p.starts_with("/markets/") => {
                state.public.push(p.to_owned());
                let rest = &p["/markets/".len()..];
                let (ticker, book) = match rest.strip_suffix("/orderbook") {
                    Some(t) => (t, true),
                    None => (rest, false),
                };
                let Some(status) = state.markets.get(ticker).cloned() else {
                    return error(404, "not_found", format!("market {ticker} not found"));
                };
                if book {
                    let side = |levels: Option<&Vec<(Decimal, Decimal)>>| -> Vec<Value> {
                        levels
                            .into_iter()
                            .flatten()
                            .map(|(p, s)| json!([dollars(*p), count_fp(*s)]))
                            .collect()
                    };
                    ResponseTemplate::new(200).set_body_json(json!({"orderbook_fp": {
                        "yes_dollars": side(state.yes_bids.get(ticker)),
                        "no_dollars": side(state.no_bids.get(ticker)),
                    }}))
                } else {
                    ResponseTemplate::new(200)
                        .set_body_json(json!({"market": state.market_json(ticker, &status)}))
                }
            }
            _ => match state.authenticate(request) {
                Err(reason) => {
                    state.rejections.push(reason.clone());
                    error(401, "unauthorized", reason)
                }
                Ok(account) => {
                    state.verified += 1;
                    state.seen.push(format!("{method} {path}"));
                    state.private(request, &method, &path, account)
                }
            },
        }
    }
}

impl State {
    /// Sends `message` on every open connection with a subscription to
    /// `channel` that `pick` accepts, numbering book messages per
    /// subscription (skipping one when a gap was injected).
    fn ws_send(
        &mut self,
        channel: &str,
        pick: impl Fn(&WsConn, &WsSub) -> bool,
        message: impl Fn(u64, u64) -> Value,
    ) {
        let gap = channel == "orderbook_delta" && std::mem::take(&mut self.ws.gap);
        for conn in self.ws.conns.iter_mut().filter(|c| c.open) {
            let mut sent = Vec::new();
            for sub in conn.subs.iter().filter(|s| s.channel == channel) {
                if pick(conn, sub) {
                    sent.push(sub.sid);
                }
            }
            for sid in sent {
                let Some(sub) = conn.subs.iter_mut().find(|s| s.sid == sid) else {
                    continue;
                };
                sub.seq += if gap { 2 } else { 1 };
                let frame = message(sub.sid, sub.seq).to_string();
                if conn.tx.send(frame).is_err() {
                    conn.open = false;
                }
            }
        }
    }

    fn ws_book_delta(&mut self, ticker: &str, side: &'static str, price: Decimal, delta: Decimal) {
        let ticker = ticker.to_owned();
        self.ws_send(
            "orderbook_delta",
            |_, sub| sub.tickers.contains(&ticker),
            |sid, seq| {
                json!({"type": "orderbook_delta", "sid": sid, "seq": seq, "msg": {
                    "market_ticker": ticker, "price_dollars": dollars(price),
                    "delta_fp": count_fp(delta), "side": side,
                }})
            },
        );
    }

    fn ws_fill(&mut self, f: &Fill) {
        let (yes, no) = if f.side == "yes" {
            (f.price, Decimal::ONE - f.price)
        } else {
            (Decimal::ONE - f.price, f.price)
        };
        let key = f.key_id.clone();
        let body = json!({
            "trade_id": f.id, "order_id": f.order_id, "market_ticker": f.ticker,
            "is_taker": f.taker, "side": f.side, "action": f.action,
            "yes_price_dollars": dollars(yes), "no_price_dollars": dollars(no),
            "count_fp": count_fp(f.count), "fee_cost": dollars(f.fee), "ts": f.at.timestamp(),
        });
        self.ws_send(
            "fill",
            |conn, _| conn.key_id == key,
            |sid, _| json!({"type": "fill", "sid": sid, "msg": body}),
        );
    }

    fn snapshot_json(&self, ticker: &str, sid: u64, seq: u64) -> Value {
        let ladder = |levels: Option<&Vec<(Decimal, Decimal)>>| -> Vec<Value> {
            levels
                .into_iter()
                .flatten()
                .map(|(p, s)| json!([dollars(*p), count_fp(*s)]))
                .collect()
        };
        json!({"type": "orderbook_snapshot", "sid": sid, "seq": seq, "msg": {
            "market_ticker": ticker,
            "yes_dollars_fp": ladder(self.yes_bids.get(ticker)),
            "no_dollars_fp": ladder(self.no_bids.get(ticker)),
        }})
    }

    /// One command from connection `conn`.
    fn ws_command(&mut self, conn: usize, command: Value) {
        self.ws.commands.push(command.clone());
        let id = command["id"].as_u64();
        let params = &command["params"];
        let mut replies = Vec::new();
        match command["cmd"].as_str() {
            Some("subscribe") => {
                let mut tickers: Vec<String> = params["market_tickers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|t| t.as_str().map(str::to_owned))
                    .collect();
                if let Some(t) = params["market_ticker"].as_str() {
                    tickers.push(t.to_owned());
                }
                let channels: Vec<String> = params["channels"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|c| c.as_str().map(str::to_owned))
                    .collect();
                if channels.is_empty() {
                    replies.push(json!({"id": id, "type": "error", "msg": {"code": 3, "msg": "Channels required"}}));
                }
                for channel in channels {
                    self.ws.next_sid += 1;
                    let sid = self.ws.next_sid;
                    replies.push(json!({"id": id, "type": "subscribed", "msg": {"channel": channel, "sid": sid}}));
                    let mut sub = WsSub {
                        sid,
                        channel: channel.clone(),
                        tickers: tickers.clone(),
                        seq: 0,
                    };
                    if channel == "orderbook_delta" {
                        for t in &tickers {
                            sub.seq += 1;
                            replies.push(self.snapshot_json(t, sid, sub.seq));
                        }
                    }
                    self.ws.conns[conn].subs.push(sub);
                }
            }
            Some("unsubscribe") => {
                for sid in params["sids"].as_array().into_iter().flatten() {
                    let Some(sid) = sid.as_u64() else { continue };
                    self.ws.conns[conn].subs.retain(|s| s.sid != sid);
                    replies.push(json!({"id": id, "type": "unsubscribed", "sid": sid}));
                }
            }
            _ => replies.push(
                json!({"id": id, "type": "error", "msg": {"code": 5, "msg": "Unknown command"}}),
            ),
        }
        let c = &mut self.ws.conns[conn];
        for reply in replies {
            if c.tx.send(reply.to_string()).is_err() {
                c.open = false;
            }
        }
    }

    /// The fee schedule of `series`.
    fn fees_of_series(&self, series: &str) -> KalshiSeriesFees {
        self.series_fees.get(series).copied().unwrap_or_default()
    }

    fn market_json(&self, ticker: &str, status: &str) -> Value {
        let best = |levels: Option<&Vec<(Decimal, Decimal)>>| {
            levels.and_then(|l| l.last()).map(|(p, _)| *p)
        };
        let yes_bid = best(self.yes_bids.get(ticker));
        let no_bid = best(self.no_bids.get(ticker));
        json!({
            "ticker": ticker, "event_ticker": ticker.split('-').next().unwrap_or(ticker),
            "title": format!("{ticker}?"), "status": status, "market_type": "binary",
            "price_level_structure": "linear_cent",
            "yes_bid_dollars": yes_bid.map(dollars), "no_bid_dollars": no_bid.map(dollars),
            "yes_ask_dollars": no_bid.map(|p| dollars(Decimal::ONE - p)),
            "no_ask_dollars": yes_bid.map(|p| dollars(Decimal::ONE - p)),
            "close_time": "2099-01-01T00:00:00Z", "open_time": "2020-01-01T00:00:00Z",
        })
    }

    /// The three headers and the RSA-PSS signature over
    /// `timestamp ‖ METHOD ‖ path`; the account's index, or why not (401).
    fn authenticate(&self, request: &Request) -> Result<usize, String> {
        self.verify(
            |n| header(request, n),
            request.method.as_str(),
            request.url.path(),
        )
    }

    /// The signature check of a request or a WebSocket handshake whose
    /// headers `get` reads: the account's index, or why not.
    fn verify(
        &self,
        get: impl Fn(&str) -> Option<String>,
        method: &str,
        path: &str,
    ) -> Result<usize, String> {
        let get = |n: &str| get(n).ok_or_else(|| format!("missing {n}"));
        let key = get("KALSHI-ACCESS-KEY")?;
        let timestamp = get("KALSHI-ACCESS-TIMESTAMP")?;
        let signature = get("KALSHI-ACCESS-SIGNATURE")?;
        if timestamp.parse::<i64>().is_err() {
            return Err("KALSHI-ACCESS-TIMESTAMP is not milliseconds".to_owned());
        }
        let index = self
            .accounts
            .iter()
            .position(|a| a.key_id == key)
            .ok_or_else(|| "unknown API key".to_owned())?;
        let message = format!("{timestamp}{method}{path}");
        let bytes = STANDARD
            .decode(signature)
            .map_err(|_| "the signature is not base64".to_owned())?;
        let signature = Signature::try_from(bytes.as_slice())
            .map_err(|_| "the signature is malformed".to_owned())?;
        self.accounts[index]
            .verifier
            .verify(message.as_bytes(), &signature)
            .map_err(|_| format!("invalid signature over {message:?}"))?;
        Ok(index)
    }

    fn private(
        &mut self,
        request: &Request,
        method: &str,
        path: &str,
        account: usize,
    ) -> ResponseTemplate {
        let key = self.accounts[account].key_id.clone();
        let fault = self
            .route_faults
            .get_mut(&format!("{method} {path}"))
            .and_then(VecDeque::pop_front);
        let stall = match fault {
            Some(KalshiFault::TooManyRequests { retry_after }) => {
                let mut response = error(429, "too_many_requests", "too many requests");
                if let Some(secs) = retry_after {
                    response = response.insert_header("Retry-After", secs.to_string().as_str());
                }
                return response;
            }
            Some(KalshiFault::ServerError) => {
                return error(500, "internal_error", "internal error");
            }
            Some(KalshiFault::Reject(code)) => return self.reject(400, &code, code.clone()),
            Some(KalshiFault::AcceptThenStall(delay)) => Some(delay),
            None => None,
        };
        let response = self.route(request, method, path, account, &key);
        match stall {
            Some(delay) => response.set_delay(delay),
            None => response,
        }
    }

    fn route(
        &mut self,
        request: &Request,
        method: &str,
        path: &str,
        account: usize,
        key: &str,
    ) -> ResponseTemplate {
        let key = key.to_owned();
        match (method, path) {
            ("GET", "/portfolio/balance") => {
                use rust_decimal::prelude::ToPrimitive;
                let cents = self.accounts[account].balance.trunc().to_i64();
                ResponseTemplate::new(200).set_body_json(json!({
                    "balance": cents.unwrap_or_default(),
                    "portfolio_value": 0, "updated_ts": chrono::Utc::now().timestamp(),
                }))
            }
            ("GET", "/account/limits") => match &self.limits {
                Some(body) => ResponseTemplate::new(200).set_body_json(body.clone()),
                None => error(404, "not_found", "account limits are not available"),
            },
            ("POST", "/portfolio/orders") => self.create(request, account),
            ("GET", "/portfolio/orders") => {
                let status = query(request, "status");
                let ticker = query(request, "ticker");
                let orders: Vec<Value> = self
                    .orders
                    .iter()
                    .filter(|o| o.key_id == key)
                    .filter(|o| status.as_deref().is_none_or(|s| s == o.status))
                    .filter(|o| ticker.as_deref().is_none_or(|t| t == o.ticker))
                    .map(order_json)
                    .collect();
                ResponseTemplate::new(200).set_body_json(json!({"orders": orders, "cursor": ""}))
            }
            ("DELETE", "/portfolio/orders/batched") => {
                let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
                let ids: Vec<String> = body["ids"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect();
                let answers: Vec<Value> = ids
                    .iter()
                    .map(|id| match self.cancel(&key, id) {
                        Ok(order) => json!({"order_id": id, "order": order, "reduced_by_fp": "0.00"}),
                        Err(reason) => json!({"order_id": id, "error": {"code": "not_found", "message": reason}}),
                    })
                    .collect();
                ResponseTemplate::new(200).set_body_json(json!({"orders": answers}))
            }
            ("GET", p) if p.starts_with("/portfolio/orders/") => {
                let id = &p["/portfolio/orders/".len()..];
                match self.orders.iter().find(|o| o.id == id && o.key_id == key) {
                    Some(o) => {
                        ResponseTemplate::new(200).set_body_json(json!({"order": order_json(o)}))
                    }
                    None => error(404, "not_found", format!("order {id} not found")),
                }
            }
            ("DELETE", p) if p.starts_with("/portfolio/orders/") => {
                let id = p["/portfolio/orders/".len()..].to_owned();
                match self.cancel(&key, &id) {
                    Ok(order) => ResponseTemplate::new(200)
                        .set_body_json(json!({"order": order, "reduced_by_fp": "0.00"})),
                    Err(reason) => error(404, "not_found", reason),
                }
            }
            ("GET", "/portfolio/fills") => {
                let order_id = query(request, "order_id");
                let min_ts = query(request, "min_ts").and_then(|t| t.parse::<i64>().ok());
                let fills: Vec<Value> = self
                    .fills
                    .iter()
                    .filter(|f| f.key_id == key)
                    .filter(|f| order_id.as_deref().is_none_or(|o| o == f.order_id))
                    .filter(|f| min_ts.is_none_or(|t| f.at.timestamp() >= t))
                    .map(|f| {
                        let (yes, no) = if f.side == "yes" {
                            (f.price, Decimal::ONE - f.price)
                        } else {
                            (Decimal::ONE - f.price, f.price)
                        };
                        json!({
                            "fill_id": f.id, "trade_id": f.id, "order_id": f.order_id,
                            "ticker": f.ticker, "market_ticker": f.ticker, "side": f.side,
                            "action": f.action, "count_fp": count_fp(f.count),
                            "yes_price_dollars": dollars(yes), "no_price_dollars": dollars(no),
                            "is_taker": f.taker, "fee_cost": dollars(f.fee),
                            "created_time": f.at.to_rfc3339(), "ts": f.at.timestamp(),
                        })
                    })
                    .collect();
                ResponseTemplate::new(200).set_body_json(json!({"fills": fills, "cursor": ""}))
            }
            ("GET", "/portfolio/positions") => {
                let positions: Vec<Value> = self.accounts[account]
                    .positions
                    .iter()
                    .filter(|(_, p)| !p.is_zero())
                    .map(|(t, p)| json!({"ticker": t, "position_fp": count_fp(*p)}))
                    .collect();
                ResponseTemplate::new(200).set_body_json(
                    json!({"market_positions": positions, "event_positions": [], "cursor": ""}),
                )
            }
            _ => error(
                404,
                "not_found",
                format!("{method} {path} is not part of the stand-in"),
            ),
        }
    }

    fn cancel(&mut self, key: &str, id: &str) -> Result<Value, String> {
        match self
            .orders
            .iter_mut()
            .find(|o| o.id == id && o.key_id == key && o.status == "resting")
        {
            Some(o) => {
                o.status = "canceled";
                Ok(order_json(o))
            }
            None => Err(format!("order {id} is not resting")),
        }
    }

    fn reject(&mut self, status: u16, code: &str, message: String) -> ResponseTemplate {
        self.rejections.push(format!("{code}: {message}"));
        error(status, code, message)
    }

    fn create(&mut self, request: &Request, account: usize) -> ResponseTemplate {
        self.creates += 1;
        self.last_create = Some(std::time::Instant::now());
        let stall = match self.faults.pop_front() {
            Some(KalshiFault::TooManyRequests { retry_after }) => {
                let mut response = error(429, "too_many_requests", "too many requests");
                if let Some(secs) = retry_after {
                    response = response.insert_header("Retry-After", secs.to_string().as_str());
                }
                return response;
            }
            Some(KalshiFault::ServerError) => {
                return error(500, "internal_error", "internal error");
            }
            Some(KalshiFault::Reject(code)) => {
                return self.reject(
                    400,
                    &code,
                    format!("the exchange refused the order ({code})"),
                );
            }
            Some(KalshiFault::AcceptThenStall(delay)) => Some(delay),
            None => None,
        };
        let body: Value = match serde_json::from_slice(&request.body) {
            Ok(body) => body,
            Err(e) => return self.reject(400, "invalid_parameters", format!("invalid JSON: {e}")),
        };
        let response = self.take(&body, account);
        match stall {
            Some(delay) => response.set_delay(delay),
            None => response,
        }
    }

    fn take(&mut self, body: &Value, account: usize) -> ResponseTemplate {
        let text = |name: &str| body[name].as_str().map(str::to_owned);
        let decimal = |name: &str| match &body[name] {
            Value::String(s) => Decimal::from_str(s).ok(),
            Value::Number(n) => Decimal::from_str(&n.to_string()).ok(),
            _ => None,
        };
        let (Some(ticker), Some(side), Some(action)) =
            (text("ticker"), text("side"), text("action"))
        else {
            return self.reject(
                400,
                "invalid_parameters",
                "ticker, side and action are required".to_owned(),
            );
        };
        let client_order_id = text("client_order_id").unwrap_or_default();
        let key = self.accounts[account].key_id.clone();
        if !client_order_id.is_empty()
            && self
                .orders
                .iter()
                .any(|o| o.key_id == key && o.client_order_id == client_order_id)
        {
            return self.reject(
                409,
                "order_already_exists",
                format!("an order with client_order_id {client_order_id} already exists"),
            );
        }
        if !matches!(side.as_str(), "yes" | "no") || !matches!(action.as_str(), "buy" | "sell") {
            return self.reject(
                400,
                "invalid_parameters",
                format!("side {side:?} / action {action:?}"),
            );
        }
        match self.markets.get(&ticker) {
            None => {
                return self.reject(
                    404,
                    "market_not_found",
                    format!("market {ticker} not found"),
                );
            }
            Some(status) if status != "active" && status != "open" => {
                return self.reject(400, "market_closed", format!("market {ticker} is {status}"));
            }
            Some(_) => {}
        }
        let price = decimal(&format!("{side}_price_dollars"))
            .or_else(|| decimal(&format!("{side}_price")).map(|c| c / Decimal::ONE_HUNDRED));
        let count = decimal("count_fp").or_else(|| decimal("count"));
        let (Some(price), Some(count)) = (price, count) else {
            return self.reject(
                400,
                "invalid_parameters",
                "a price for the side and a count are required".to_owned(),
            );
        };
        let cent = Decimal::new(1, 2);
        if price <= Decimal::ZERO || price >= Decimal::ONE || !(price % cent).is_zero() {
            return self.reject(
                400,
                "invalid_price",
                format!("price {price} is not a whole cent in (0, 1)"),
            );
        }
        if count <= Decimal::ZERO {
            return self.reject(400, "invalid_parameters", format!("count {count}"));
        }
        let buying = action == "buy";
        if buying {
            let needed = price * count * Decimal::ONE_HUNDRED;
            if needed > self.accounts[account].balance {
                return self.reject(
                    400,
                    "insufficient_balance",
                    format!(
                        "{needed} cents needed, {} held",
                        self.accounts[account].balance
                    ),
                );
            }
        }
        let tif = text("time_in_force").unwrap_or_else(|| "good_till_canceled".to_owned());
        // Buying YES takes the NO bids (at 1 − their price); selling YES hits the YES bids.
        let takes_other = buying;
        let ladder = match (side.as_str(), takes_other) {
            ("yes", true) | ("no", false) => "no",
            _ => "yes",
        };
        let book = if ladder == "no" {
            self.no_bids.entry(ticker.clone()).or_default()
        } else {
            self.yes_bids.entry(ticker.clone()).or_default()
        };
        let at_our_price = |bid: Decimal| if takes_other { Decimal::ONE - bid } else { bid };
        let crosses = |bid: Decimal| {
            if buying {
                at_our_price(bid) <= price
            } else {
                bid >= price
            }
        };
        let available: Decimal = book
            .iter()
            .filter(|(p, _)| crosses(*p))
            .map(|(_, s)| *s)
            .sum();
        let mut fills: Vec<(Decimal, Decimal)> = Vec::new();
        let mut consumed: Vec<(&'static str, Decimal, Decimal)> = Vec::new();
        if !(tif == "fill_or_kill" && available < count) {
            let mut left = count;
            // Best first: the highest bid is the last element.
            for level in book.iter_mut().rev() {
                if left.is_zero() || !crosses(level.0) {
                    break;
                }
                let take = left.min(level.1);
                level.1 -= take;
                left -= take;
                fills.push((at_our_price(level.0), take));
                consumed.push((ladder, level.0, take));
            }
            book.retain(|(_, s)| !s.is_zero());
        }
        let filled: Decimal = fills.iter().map(|(_, s)| *s).sum();
        let id = format!("ord-{}", self.orders.len() + 1);
        let now = chrono::Utc::now();
        let mut accumulator = KalshiFeeAccumulator::default();
        let mut total_fee = Decimal::ZERO;
        let series = ticker.split('-').next().unwrap_or(&ticker).to_owned();
        let rate = self.fees_of_series(&series).taker_rate();
        for (i, (p, s)) in fills.iter().enumerate() {
            let fee = accumulator.fill(*s, *p, rate, buying).net;
            total_fee += fee;
            let a = &mut self.accounts[account];
            let cash = p * s * Decimal::ONE_HUNDRED;
            if buying {
                a.balance -= cash + fee * Decimal::ONE_HUNDRED;
            } else {
                a.balance += cash - fee * Decimal::ONE_HUNDRED;
            }
            let signed = if (side == "yes") == buying { *s } else { -*s };
            *a.positions.entry(ticker.clone()).or_default() += signed;
            self.fills.push(Fill {
                id: format!("{id}-fill-{}", i + 1),
                order_id: id.clone(),
                key_id: key.clone(),
                ticker: ticker.clone(),
                side: side.clone(),
                action: action.clone(),
                price: *p,
                count: *s,
                fee,
                taker: true,
                at: now,
            });
            let fill = self.fills.last().cloned();
            if let Some(fill) = fill {
                self.ws_fill(&fill);
            }
        }
        for (ladder, bid, take) in consumed {
            self.ws_book_delta(&ticker, ladder, bid, -take);
        }
        let rests = filled < count && tif == "good_till_canceled";
        let status = if rests {
            "resting"
        } else if filled == count {
            "executed"
        } else {
            "canceled"
        };
        let order = StoredOrder {
            id,
            client_order_id,
            key_id: key,
            ticker,
            side,
            action,
            price,
            count,
            filled,
            status,
            fees: total_fee,
            created: now,
        };
        let json = order_json(&order);
        self.orders.push(order);
        ResponseTemplate::new(201).set_body_json(json!({"order": json}))
    }
}

fn order_json(o: &StoredOrder) -> Value {
    let (yes, no) = if o.side == "yes" {
        (o.price, Decimal::ONE - o.price)
    } else {
        (Decimal::ONE - o.price, o.price)
    };
    json!({
        "order_id": o.id, "client_order_id": o.client_order_id, "ticker": o.ticker,
        "side": o.side, "action": o.action, "type": "limit", "status": o.status,
        "yes_price_dollars": dollars(yes), "no_price_dollars": dollars(no),
        "initial_count_fp": count_fp(o.count), "fill_count_fp": count_fp(o.filled),
        "remaining_count_fp": count_fp(if o.status == "resting" { o.count - o.filled } else { Decimal::ZERO }),
        "taker_fees_dollars": dollars(o.fees), "created_time": o.created.to_rfc3339(),
    })
}

/// Accepts WebSocket connections until the stand-in is dropped.
async fn ws_accept(listener: tokio::net::TcpListener, state: Arc<Mutex<State>>) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            return;
        };
        tokio::spawn(ws_serve(tcp, state.clone()));
    }
}

/// One connection: the handshake's signature is verified with the
/// account's public key over `timestamp ‖ GET ‖ /trade-api/ws/v2` (a bad
/// or missing one is answered 401 and the connection closed), then
/// commands are read and answered until it closes.
async fn ws_serve(tcp: tokio::net::TcpStream, state: Arc<Mutex<State>>) {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::handshake::server::{
        ErrorResponse, Request as WsRequest, Response as WsResponse,
    };

    let mut account: Option<String> = None;
    // The handshake callback's `Result` type is tungstenite's, not ours.
    #[allow(clippy::result_large_err)]
    let check = |request: &WsRequest, response: WsResponse| -> Result<WsResponse, ErrorResponse> {
        let mut state = lock(&state);
        let get = |n: &str| {
            request
                .headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let verdict = if request.uri().path() == WS_PATH {
            state.verify(get, "GET", request.uri().path())
        } else {
            Err(format!("no WebSocket at {}", request.uri().path()))
        };
        match verdict {
            Ok(index) => {
                state.ws.handshakes += 1;
                account = Some(state.accounts[index].key_id.clone());
                Ok(response)
            }
            Err(reason) => {
                state.rejections.push(reason.clone());
                let mut refusal = ErrorResponse::new(Some(reason));
                *refusal.status_mut() =
                    tokio_tungstenite::tungstenite::http::StatusCode::UNAUTHORIZED;
                Err(refusal)
            }
        }
    };
    let Ok(ws) = tokio_tungstenite::accept_hdr_async(tcp, check).await else {
        return;
    };
    let Some(key_id) = account else { return };
    let (mut sink, mut source) = ws.split();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let conn = {
        let mut state = lock(&state);
        state.ws.conns.push(WsConn {
            key_id,
            tx,
            subs: Vec::new(),
            open: true,
        });
        state.ws.conns.len() - 1
    };
    let writer = tokio::spawn(async move {
        while let Some(frame) = rx.recv().await {
            if sink.send(Message::Text(frame.into())).await.is_err() {
                return;
            }
        }
    });
    while let Some(Ok(frame)) = source.next().await {
        match frame {
            Message::Text(text) => {
                let command: Value = serde_json::from_str(text.as_str()).unwrap_or(Value::Null);
                lock(&state).ws_command(conn, command);
            }
            Message::Close(_) => break,
            _ => {}
        }
    }
    let mut state = lock(&state);
    state.ws.conns[conn].open = false;
    state.ws.conns[conn].subs.clear();
    drop(state);
    writer.abort();
}
