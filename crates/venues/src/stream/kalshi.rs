//! Kalshi's WebSocket (`/trade-api/ws/v2`) for market data: the
//! `orderbook_delta`, `ticker` and `trade` channels.
//!
//! Every connection is authenticated as a REST request is: the handshake
//! carries `KALSHI-ACCESS-KEY`, `KALSHI-ACCESS-TIMESTAMP` and an RSA-PSS
//! `KALSHI-ACCESS-SIGNATURE` over `{timestamp_ms}GET{path}` (the path of
//! the WebSocket URL, `/trade-api/ws/v2`), signed afresh for each
//! connection. Kalshi asks for it even on its public channels, so a
//! stream needs a Kalshi key.
//!
//! Markets are subscribed with one `subscribe` command per batch (the
//! tickers given at start, then any added through the handle). Kalshi
//! answers one `subscribed` message per channel with the subscription's id
//! (`sid`). The book channel sends an `orderbook_snapshot` per market (both
//! bid ladders, YES and NO, as Kalshi publishes bids only) and then
//! `orderbook_delta`s (a signed change of the size at one price of one
//! side), every message numbered with `seq`, consecutive per subscription.
//! Each snapshot or delta publishes the market's two books, YES and NO,
//! with the asks mirrored from the other side's bids
//! ([`binary_book_from_bids`]), as [`MarketEvent::Book`]s for
//! `{ticker}:yes` and `{ticker}:no`.
//!
//! Gaps: a `seq` that is not the previous one plus one means messages were
//! lost, so every book of that subscription is dropped, the subscription
//! is cancelled (`unsubscribe`) and its markets subscribed again, which
//! sends fresh snapshots; messages still arriving on the old subscription
//! are ignored. Trades become [`MarketEvent::Trade`]s on the side the
//! taker bought (`{ticker}:yes` at the YES price, or `:no`). Ticker
//! messages (best prices, volume) repeat what the books already say and
//! keep the connection's idle clock running; they publish nothing.
//! A dropped connection reconnects with back-off and resubscribes
//! everything (the driver), so every book starts again from a snapshot.
//!
//! Not here: the private `fill` channel (see
//! [`crate::execution::kalshi_fills`]).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use rust_decimal::Decimal;
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::driver::{self, Output, Protocol, book};
use super::{MarketEvent, StreamHandle, StreamOptions};
use crate::connectors::kalshi::binary_book_from_bids;
use crate::endpoints::Endpoints;
use crate::error::{ErrorKind, VenueError};
use crate::model::{Api, Side, Trade};
use crate::num::{Dec, OptDec};
use crate::signing::kalshi::KalshiSigner;

/// The market-data channels every market is subscribed to.
const CHANNELS: [&str; 3] = ["orderbook_delta", "ticker", "trade"];

/// What the Kalshi stream publishes and when it gives up on a silent socket.
#[derive(Debug, Clone)]
pub struct KalshiStreamConfig {
    /// Reconnect when nothing arrives for this long while subscribed
    /// (Kalshi pings every 10 s, which tungstenite answers but does not
    /// report, so this counts data only; books and tickers move often).
    pub idle_timeout: Duration,
}

impl Default for KalshiStreamConfig {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(120),
        }
    }
}

/// Starts Kalshi's market-data stream for `tickers`, authenticated with
/// `signer` (the connection's handshake is signed; nothing else is sent).
pub fn spawn_kalshi_stream(
    endpoints: &Endpoints,
    signer: Arc<KalshiSigner>,
    tickers: Vec<String>,
    config: KalshiStreamConfig,
    options: StreamOptions,
    cancel: CancellationToken,
) -> (StreamHandle, mpsc::Receiver<MarketEvent>) {
    let protocol = KalshiProtocol::new(endpoints.kalshi_ws.clone(), signer, config);
    driver::spawn(protocol, tickers, options, cancel)
}

/// `url` as a WebSocket URL: an `http(s)://` base (one deployment URL for
/// every venue) becomes `ws(s)://`; no trailing slash.
pub fn ws_url(url: &str) -> String {
    let url = url.trim().trim_end_matches('/');
    if url.starts_with("http://") || url.starts_with("https://") {
        url.replacen("http", "ws", 1)
    } else {
        url.to_owned()
    }
}

/// The signing headers of a connection to `url` at `timestamp_ms`: the
/// signed path is the URL's path (`/trade-api/ws/v2`).
pub fn handshake_headers(
    signer: &KalshiSigner,
    url: &str,
    timestamp_ms: i64,
) -> Vec<(&'static str, String)> {
    let path = url::Url::parse(url)
        .map(|u| u.path().trim_end_matches('/').to_owned())
        .unwrap_or_default();
    let headers = signer.headers(timestamp_ms, "GET", &path);
    headers
        .names()
        .into_iter()
        .filter_map(|name| headers.get(name).map(|v| (name, v.to_owned())))
        .collect()
}

#[derive(Debug, Default)]
struct LocalBook {
    yes: book::Side,
    no: book::Side,
}

pub(crate) struct KalshiProtocol {
    url: String,
    endpoint: String,
    signer: Option<Arc<KalshiSigner>>,
    config: KalshiStreamConfig,
    next_id: u64,
    /// Tickers of each `subscribe` command not yet answered, by command id.
    pending: HashMap<u64, Vec<String>>,
    /// Tickers of each live book subscription, by `sid`.
    book_sids: HashMap<u64, Vec<String>>,
    /// The last `seq` of each book subscription.
    last_seq: HashMap<u64, u64>,
    /// Book subscriptions given up after a gap: their messages are ignored.
    dropped: HashSet<u64>,
    books: HashMap<String, LocalBook>,
    malformed: u64,
}

#[derive(Debug, Deserialize)]
struct Envelope {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    id: Option<u64>,
    #[serde(default)]
    sid: Option<u64>,
    #[serde(default)]
    seq: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct SubscribedWire {
    channel: String,
    sid: u64,
}

/// A ladder level in any of Kalshi's shapes: `["0.4200", "13.00"]`
/// (fixed point), `["0.420", 13]`, or `[42, 13]` (cents).
type LevelWire = (Dec, Dec);

#[derive(Debug, Deserialize)]
struct SnapshotWire {
    market_ticker: String,
    #[serde(default)]
    yes_dollars_fp: Option<Vec<LevelWire>>,
    #[serde(default)]
    no_dollars_fp: Option<Vec<LevelWire>>,
    #[serde(default)]
    yes_dollars: Option<Vec<LevelWire>>,
    #[serde(default)]
    no_dollars: Option<Vec<LevelWire>>,
    #[serde(default)]
    yes: Option<Vec<LevelWire>>,
    #[serde(default)]
    no: Option<Vec<LevelWire>>,
}

#[derive(Debug, Deserialize)]
struct DeltaWire {
    market_ticker: String,
    side: String,
    #[serde(default)]
    price_dollars: OptDec,
    #[serde(default)]
    price: OptDec,
    #[serde(default)]
    delta_fp: OptDec,
    #[serde(default)]
    delta: OptDec,
}

#[derive(Debug, Deserialize)]
struct TradeWire {
    market_ticker: String,
    #[serde(default)]
    trade_id: Option<String>,
    #[serde(default)]
    taker_side: Option<String>,
    #[serde(default)]
    yes_price_dollars: OptDec,
    #[serde(default)]
    yes_price: OptDec,
    #[serde(default)]
    no_price_dollars: OptDec,
    #[serde(default)]
    no_price: OptDec,
    #[serde(default)]
    count_fp: OptDec,
    #[serde(default)]
    count: OptDec,
    #[serde(default)]
    ts: Option<i64>,
}

#[derive(Debug, Deserialize)]
struct ErrorWire {
    #[serde(default)]
    code: Option<i64>,
    #[serde(default)]
    msg: Option<String>,
}

/// The `msg` of a message, typed. Read from the text (not via
/// `serde_json::Value`) so decimals sent as JSON numbers keep their digits.
fn msg_of<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, String> {
    #[derive(Deserialize)]
    struct WithMsg<T> {
        msg: T,
    }
    serde_json::from_str::<WithMsg<T>>(text)
        .map(|m| m.msg)
        .map_err(|e| e.to_string())
}

/// A price in dollars: the `_dollars` field, else the legacy cents field.
fn dollars(dollars: OptDec, cents: OptDec) -> Option<Decimal> {
    dollars.0.or(cents.0.map(|c| c / Decimal::ONE_HUNDRED))
}

/// A ladder, in dollars, from whichever of the three shapes was sent.
fn ladder(
    fixed: Option<Vec<LevelWire>>,
    dollars: Option<Vec<LevelWire>>,
    cents: Option<Vec<LevelWire>>,
) -> Vec<(Decimal, Decimal)> {
    match (fixed, dollars, cents) {
        (Some(levels), _, _) | (None, Some(levels), _) => {
            levels.into_iter().map(|(p, s)| (p.0, s.0)).collect()
        }
        (None, None, Some(levels)) => levels
            .into_iter()
            .map(|(p, s)| (p.0 / Decimal::ONE_HUNDRED, s.0))
            .collect(),
        (None, None, None) => Vec::new(),
    }
}

impl KalshiProtocol {
    pub(crate) fn new(url: String, signer: Arc<KalshiSigner>, config: KalshiStreamConfig) -> Self {
        let mut protocol = Self::unsigned(url, config);
        protocol.signer = Some(signer);
        protocol
    }

    /// A protocol that signs nothing (its unit tests).
    fn unsigned(url: String, config: KalshiStreamConfig) -> Self {
        let url = ws_url(&url);
        Self {
            endpoint: driver::ws_endpoint(&url),
            url,
            signer: None,
            config,
            next_id: 1,
            pending: HashMap::new(),
            book_sids: HashMap::new(),
            last_seq: HashMap::new(),
            dropped: HashSet::new(),
            books: HashMap::new(),
            malformed: 0,
        }
    }

    fn command(&mut self, cmd: &str, params: serde_json::Value) -> (u64, String) {
        let id = self.next_id;
        self.next_id += 1;
        let frame = serde_json::json!({"id": id, "cmd": cmd, "params": params}).to_string();
        (id, frame)
    }

    fn subscribe(&mut self, tickers: &[String], channels: &[&str]) -> String {
        let (id, frame) = self.command(
            "subscribe",
            serde_json::json!({"channels": channels, "market_tickers": tickers}),
        );
        if channels.contains(&"orderbook_delta") {
            self.pending.insert(id, tickers.to_vec());
        }
        frame
    }

    fn publish(&self, ticker: &str) -> Vec<MarketEvent> {
        let Some(local) = self.books.get(ticker) else {
            return Vec::new();
        };
        let all = usize::MAX;
        let pair =
            binary_book_from_bids(ticker, local.yes.best(all, true), local.no.best(all, true));
        vec![MarketEvent::Book(pair.yes), MarketEvent::Book(pair.no)]
    }

    /// Checks a book message's `seq` against its subscription's last one.
    /// `Ok(false)`: skip the message (an old subscription's); `Err`: a gap,
    /// with the resync to send.
    fn in_sequence(
        &mut self,
        sid: Option<u64>,
        seq: Option<u64>,
        snapshot: bool,
        text: &str,
    ) -> Result<bool, Output> {
        let Some(sid) = sid else { return Ok(true) };
        if self.dropped.contains(&sid) {
            return Ok(false);
        }
        let Some(seq) = seq else { return Ok(true) };
        match self.last_seq.get(&sid).copied() {
            Some(last) if seq != last + 1 => Err(self.resync(sid, last + 1, seq, text)),
            // The subscription's first message; a delta first is a gap too.
            None if !snapshot && seq > 1 => Err(self.resync(sid, 1, seq, text)),
            _ => {
                self.last_seq.insert(sid, seq);
                Ok(true)
            }
        }
    }

    /// Drops the books of subscription `sid` and subscribes its markets
    /// again for fresh snapshots.
    fn resync(&mut self, sid: u64, expected: u64, got: u64, text: &str) -> Output {
        let tickers = self.book_sids.remove(&sid).unwrap_or_default();
        self.last_seq.remove(&sid);
        self.dropped.insert(sid);
        for t in &tickers {
            self.books.remove(t);
        }
        let err = driver::stream_error(
            Api::Kalshi,
            &self.endpoint,
            format!(
                "sequence gap on orderbook subscription {sid} ({}): expected seq {expected}, \
                 got {got}; resubscribing for fresh snapshots",
                tickers.join(", ")
            ),
            Some(text),
        );
        tracing::warn!(error = %err, "kalshi stream: book resync");
        let (_, unsubscribe) = self.command("unsubscribe", serde_json::json!({"sids": [sid]}));
        let mut send = vec![unsubscribe];
        if !tickers.is_empty() {
            send.push(self.subscribe(&tickers, &["orderbook_delta"]));
        }
        Output {
            events: vec![MarketEvent::Error(err)],
            send,
            reconnect: None,
        }
    }

    fn handle(&mut self, text: &str) -> Result<Output, String> {
        let parse_err = |e: serde_json::Error| e.to_string();
        let envelope: Envelope = serde_json::from_str(text).map_err(parse_err)?;
        let mut out = Output::default();
        match envelope.kind.as_str() {
            "subscribed" => {
                let wire: SubscribedWire = msg_of(text)?;
                if wire.channel == "orderbook_delta"
                    && let Some(tickers) = envelope.id.and_then(|id| self.pending.remove(&id))
                {
                    self.book_sids.insert(wire.sid, tickers);
                }
            }
            "orderbook_snapshot" => {
                let wire: SnapshotWire = msg_of(text)?;
                match self.in_sequence(envelope.sid, envelope.seq, true, text) {
                    Ok(true) => {}
                    Ok(false) => return Ok(out),
                    Err(resync) => return Ok(resync),
                }
                let mut local = LocalBook::default();
                for (p, s) in ladder(wire.yes_dollars_fp, wire.yes_dollars, wire.yes) {
                    local.yes.set(p, s);
                }
                for (p, s) in ladder(wire.no_dollars_fp, wire.no_dollars, wire.no) {
                    local.no.set(p, s);
                }
                if let Some(sid) = envelope.sid {
                    let tickers = self.book_sids.entry(sid).or_default();
                    if !tickers.contains(&wire.market_ticker) {
                        tickers.push(wire.market_ticker.clone());
                    }
                }
                self.books.insert(wire.market_ticker.clone(), local);
                out.events = self.publish(&wire.market_ticker);
            }
            "orderbook_delta" => {
                let wire: DeltaWire = msg_of(text)?;
                let price = dollars(wire.price_dollars, wire.price)
                    .ok_or_else(|| "an orderbook_delta without a price".to_owned())?;
                let delta = wire
                    .delta_fp
                    .0
                    .or(wire.delta.0)
                    .ok_or_else(|| "an orderbook_delta without a delta".to_owned())?;
                let yes = match wire.side.as_str() {
                    "yes" => true,
                    "no" => false,
                    other => return Err(format!("unknown side {other:?}")),
                };
                match self.in_sequence(envelope.sid, envelope.seq, false, text) {
                    Ok(true) => {}
                    Ok(false) => return Ok(out),
                    Err(resync) => return Ok(resync),
                }
                let Some(local) = self.books.get_mut(&wire.market_ticker) else {
                    // No snapshot yet (or a resync under way).
                    return Ok(out);
                };
                let side = if yes { &mut local.yes } else { &mut local.no };
                let size = (side.size(price) + delta).max(Decimal::ZERO);
                side.set(price, size);
                out.events = self.publish(&wire.market_ticker);
            }
            "trade" => {
                let wire: TradeWire = msg_of(text)?;
                let taker = wire.taker_side.as_deref().unwrap_or("yes");
                let price = match taker {
                    "yes" => dollars(wire.yes_price_dollars, wire.yes_price),
                    "no" => dollars(wire.no_price_dollars, wire.no_price),
                    other => return Err(format!("unknown taker_side {other:?}")),
                }
                .ok_or_else(|| "a trade without its taker side's price".to_owned())?;
                let size = wire
                    .count_fp
                    .0
                    .or(wire.count.0)
                    .ok_or_else(|| "a trade without a count".to_owned())?;
                out.events.push(MarketEvent::Trade(Trade {
                    api: Api::Kalshi,
                    symbol: format!("{}:{taker}", wire.market_ticker),
                    trade_id: wire.trade_id,
                    price,
                    size,
                    side: Some(Side::Buy),
                    timestamp: wire.ts.and_then(|s| chrono::DateTime::from_timestamp(s, 0)),
                }));
            }
            "error" => {
                let wire: ErrorWire = msg_of(text)?;
                let message = format!(
                    "error {}: {}",
                    wire.code.map_or_else(|| "?".to_owned(), |c| c.to_string()),
                    wire.msg.unwrap_or_default()
                );
                out.events.push(MarketEvent::Error(
                    VenueError::new(
                        Api::Kalshi,
                        self.endpoint.clone(),
                        ErrorKind::Api { message },
                    )
                    .with_body(text.as_bytes()),
                ));
            }
            // `ticker`/`ticker_v2` (see the module doc), `unsubscribed`, `ok`.
            _ => {}
        }
        Ok(out)
    }
}

impl Protocol for KalshiProtocol {
    fn api(&self) -> Api {
        Api::Kalshi
    }

    fn normalise(&self, symbol: &str) -> String {
        symbol.trim().to_ascii_uppercase()
    }

    fn url(&self, _symbols: &BTreeSet<String>) -> String {
        self.url.clone()
    }

    fn handshake_headers(&self) -> Vec<(&'static str, String)> {
        match &self.signer {
            Some(signer) => {
                handshake_headers(signer, &self.url, chrono::Utc::now().timestamp_millis())
            }
            None => Vec::new(),
        }
    }

    fn on_connect(&mut self, symbols: &BTreeSet<String>) -> Vec<String> {
        self.pending.clear();
        self.book_sids.clear();
        self.last_seq.clear();
        self.dropped.clear();
        self.books.clear();
        let tickers: Vec<String> = symbols.iter().cloned().collect();
        self.on_add(&tickers)
    }

    fn on_add(&mut self, added: &[String]) -> Vec<String> {
        if added.is_empty() {
            return Vec::new();
        }
        vec![self.subscribe(added, &CHANNELS)]
    }

    fn on_text(&mut self, text: &str) -> Output {
        self.handle(text).unwrap_or_else(|detail| {
            self.malformed += 1;
            Output {
                events: vec![MarketEvent::Error(driver::malformed(
                    Api::Kalshi,
                    &self.endpoint,
                    self.malformed,
                    &detail,
                    text,
                ))],
                ..Output::default()
            }
        })
    }

    fn idle_timeout(&self) -> Option<Duration> {
        Some(self.config.idle_timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Level, OrderBook};
    use rust_decimal_macros::dec;

    fn protocol() -> KalshiProtocol {
        KalshiProtocol::unsigned(
            "wss://api.elections.kalshi.com/trade-api/ws/v2".to_owned(),
            KalshiStreamConfig::default(),
        )
    }

    fn books(out: &Output) -> (&OrderBook, &OrderBook) {
        match out.events.as_slice() {
            [MarketEvent::Book(yes), MarketEvent::Book(no)] => (yes, no),
            other => panic!("{other:?}"),
        }
    }

    fn subscribed(p: &mut KalshiProtocol, tickers: &[&str], sid: u64) {
        let tickers: BTreeSet<String> = tickers.iter().map(|t| (*t).to_owned()).collect();
        let frames = p.on_connect(&tickers);
        assert_eq!(frames.len(), 1);
        let sent: serde_json::Value = serde_json::from_str(&frames[0]).unwrap();
        assert_eq!(sent["cmd"], "subscribe");
        assert_eq!(
            sent["params"]["channels"],
            serde_json::json!(["orderbook_delta", "ticker", "trade"])
        );
        let id = sent["id"].as_u64().unwrap();
        let out = p.on_text(&format!(
            r#"{{"id":{id},"type":"subscribed","msg":{{"channel":"orderbook_delta","sid":{sid}}}}}"#
        ));
        assert!(out.events.is_empty());
    }

    const SNAPSHOT: &str = r#"{"type":"orderbook_snapshot","sid":2,"seq":1,"msg":{"market_ticker":"KXBTC15M-26APR290915-15","yes_dollars_fp":[["0.4100","100.00"],["0.4200","13.00"]],"no_dollars_fp":[["0.5500","20.00"],["0.5600","17.00"]]}}"#;

    #[test]
    fn a_snapshot_then_deltas_build_both_books_with_mirrored_asks() {
        let mut p = protocol();
        subscribed(&mut p, &["KXBTC15M-26APR290915-15"], 2);
        let out = p.on_text(SNAPSHOT);
        let (yes, no) = books(&out);
        assert_eq!(yes.instrument, "KXBTC15M-26APR290915-15:yes");
        assert_eq!(yes.best_bid(), Some(Level::new(dec!(0.42), dec!(13))));
        assert_eq!(yes.best_ask(), Some(Level::new(dec!(0.44), dec!(17))));
        assert_eq!(no.best_bid(), Some(Level::new(dec!(0.56), dec!(17))));
        // Cents and integer counts (the legacy shape) are read too; the
        // best YES bid is taken out, a new NO level added.
        let out = p.on_text(
            r#"{"type":"orderbook_delta","sid":2,"seq":2,"msg":{"market_ticker":"KXBTC15M-26APR290915-15","price":42,"delta":-13,"side":"yes"}}"#,
        );
        let (yes, _) = books(&out);
        assert_eq!(yes.bids, vec![Level::new(dec!(0.41), dec!(100))]);
        let out = p.on_text(
            r#"{"type":"orderbook_delta","sid":2,"seq":3,"msg":{"market_ticker":"KXBTC15M-26APR290915-15","price_dollars":"0.5700","delta_fp":"5.00","side":"no"}}"#,
        );
        let (yes, no) = books(&out);
        assert_eq!(
            no.bids,
            vec![
                Level::new(dec!(0.57), dec!(5)),
                Level::new(dec!(0.56), dec!(17)),
                Level::new(dec!(0.55), dec!(20)),
            ]
        );
        assert_eq!(yes.best_ask(), Some(Level::new(dec!(0.43), dec!(5))));
        assert_eq!(no.best_ask(), Some(Level::new(dec!(0.59), dec!(100))));
    }

    #[test]
    fn a_sequence_gap_drops_the_books_and_resubscribes_for_a_fresh_snapshot() {
        let mut p = protocol();
        subscribed(&mut p, &["KXBTC15M-26APR290915-15"], 2);
        books(&p.on_text(SNAPSHOT));
        // seq 2 is lost; 3 arrives.
        let out = p.on_text(
            r#"{"type":"orderbook_delta","sid":2,"seq":3,"msg":{"market_ticker":"KXBTC15M-26APR290915-15","price_dollars":"0.4200","delta_fp":"-13.00","side":"yes"}}"#,
        );
        let [MarketEvent::Error(e)] = out.events.as_slice() else {
            panic!("{:?}", out.events);
        };
        assert!(
            e.to_string().contains(
                "sequence gap on orderbook subscription 2 (KXBTC15M-26APR290915-15): \
                 expected seq 2, got 3"
            ),
            "{e}"
        );
        let sent: Vec<serde_json::Value> = out
            .send
            .iter()
            .map(|f| serde_json::from_str(f).unwrap())
            .collect();
        assert_eq!(sent[0]["cmd"], "unsubscribe");
        assert_eq!(sent[0]["params"]["sids"], serde_json::json!([2]));
        assert_eq!(sent[1]["cmd"], "subscribe");
        assert_eq!(
            sent[1]["params"],
            serde_json::json!({"channels": ["orderbook_delta"], "market_tickers": ["KXBTC15M-26APR290915-15"]})
        );
        assert!(p.books.is_empty());
        // The old subscription's stragglers are ignored …
        let out = p.on_text(
            r#"{"type":"orderbook_delta","sid":2,"seq":4,"msg":{"market_ticker":"KXBTC15M-26APR290915-15","price_dollars":"0.4100","delta_fp":"1.00","side":"yes"}}"#,
        );
        assert!(out.events.is_empty() && out.send.is_empty());
        // … and the new subscription's snapshot is the book again.
        let id = sent[1]["id"].as_u64().unwrap();
        p.on_text(&format!(
            r#"{{"id":{id},"type":"subscribed","msg":{{"channel":"orderbook_delta","sid":7}}}}"#
        ));
        let out = p.on_text(
            r#"{"type":"orderbook_snapshot","sid":7,"seq":1,"msg":{"market_ticker":"KXBTC15M-26APR290915-15","yes_dollars_fp":[["0.4100","100.00"]],"no_dollars_fp":[["0.5600","17.00"]]}}"#,
        );
        let (yes, _) = books(&out);
        assert_eq!(yes.bids, vec![Level::new(dec!(0.41), dec!(100))]);
        let out = p.on_text(
            r#"{"type":"orderbook_delta","sid":7,"seq":2,"msg":{"market_ticker":"KXBTC15M-26APR290915-15","price_dollars":"0.4100","delta_fp":"-40.00","side":"yes"}}"#,
        );
        assert_eq!(books(&out).0.bids, vec![Level::new(dec!(0.41), dec!(60))]);
    }

    #[test]
    fn an_http_base_becomes_a_websocket_url() {
        assert_eq!(
            ws_url("https://api.elections.kalshi.com/trade-api/ws/v2/"),
            "wss://api.elections.kalshi.com/trade-api/ws/v2"
        );
        assert_eq!(ws_url("http://127.0.0.1:9/x"), "ws://127.0.0.1:9/x");
        assert_eq!(ws_url("ws://127.0.0.1:9/x"), "ws://127.0.0.1:9/x");
    }

    #[test]
    fn a_trade_is_a_buy_of_the_takers_side_at_its_price() {
        let mut p = protocol();
        let out = p.on_text(
            r#"{"type":"trade","sid":11,"msg":{"trade_id":"d91bc706","market_ticker":"KXFED-26JUN-T4.25","yes_price_dollars":"0.3600","no_price_dollars":"0.6400","count_fp":"136.00","taker_side":"no","ts":1669149841}}"#,
        );
        let [MarketEvent::Trade(t)] = out.events.as_slice() else {
            panic!("{:?}", out.events);
        };
        assert_eq!(t.symbol, "KXFED-26JUN-T4.25:no");
        assert_eq!(
            (t.price, t.size, t.side),
            (dec!(0.64), dec!(136), Some(Side::Buy))
        );
        assert_eq!(t.trade_id.as_deref(), Some("d91bc706"));
        assert_eq!(t.timestamp.map(|t| t.timestamp()), Some(1_669_149_841));
    }

    #[test]
    fn errors_and_malformed_messages_are_reported_with_context() {
        let mut p = protocol();
        let out =
            p.on_text(r#"{"id":3,"type":"error","msg":{"code":8,"msg":"Unknown channel name"}}"#);
        let [MarketEvent::Error(e)] = out.events.as_slice() else {
            panic!("{:?}", out.events);
        };
        assert!(
            e.to_string().contains("error 8: Unknown channel name"),
            "{e}"
        );
        let out = p.on_text(
            r#"{"type":"orderbook_delta","sid":2,"seq":1,"msg":{"market_ticker":"T","price":42,"delta":1,"side":"maybe"}}"#,
        );
        let [MarketEvent::Error(e)] = out.events.as_slice() else {
            panic!("{:?}", out.events);
        };
        assert!(
            e.to_string()
                .contains("Kalshi WS wss://api.elections.kalshi.com"),
            "{e}"
        );
        assert!(e.body_excerpt().is_some());
        assert_eq!(p.malformed, 1);
        // A ticker publishes nothing.
        let out = p.on_text(
            r#"{"type":"ticker","sid":3,"msg":{"market_ticker":"T","price":48,"yes_bid":45,"yes_ask":53,"ts":1669149841}}"#,
        );
        assert!(out.events.is_empty());
    }
}
