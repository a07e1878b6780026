//! Kraken websocket v2: the `book` channel, checked by CRC32, and `trade`.
//!
//! Every symbol is subscribed to `book` (depth 10 by default) and `trade`.
//! The book channel sends a snapshot and then updates; both carry a CRC32 of
//! the top ten levels, which is recomputed on the local book after every
//! message (after applying all its levels, removing `qty` 0 levels and
//! truncating to the subscribed depth, as Kraken's guide says). A mismatch
//! means the local book is wrong: it is dropped, the symbol's book is
//! unsubscribed and subscribed again for a fresh snapshot, and the mismatch
//! is reported. After [`KrakenStreamConfig::max_checksum_failures`] mismatches
//! in a row without a good book in between, the whole connection is
//! re-established (with backoff) instead, so a persistent mismatch cannot
//! spin on resubscriptions.
//!
//! Prices and quantities are JSON numbers here; they are read from their
//! literal text into [`Decimal`]s, which keep the text's scale, so the
//! checksum string is built from exactly the digits Kraken sent. Kraken sends
//! `heartbeat` messages about once a second while subscribed; the stream also
//! sends `{"method":"ping"}` every [`StreamOptions::ping_interval`], and
//! silence for [`KrakenStreamConfig::idle_timeout`] forces a reconnect.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::driver::{self, Output, Protocol, book};
use super::{MarketEvent, StreamHandle, StreamOptions};
use crate::endpoints::Endpoints;
use crate::error::{ErrorKind, VenueError};
use crate::model::{Api, Level, OrderBook, Side, Trade};
use crate::num::Dec;

/// Levels per side of the `book` subscription (the depths Kraken offers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KrakenDepth {
    /// 10 levels.
    #[default]
    D10,
    /// 25 levels.
    D25,
    /// 100 levels.
    D100,
    /// 500 levels.
    D500,
    /// 1000 levels.
    D1000,
}

impl KrakenDepth {
    /// The number of levels.
    pub fn levels(self) -> usize {
        match self {
            KrakenDepth::D10 => 10,
            KrakenDepth::D25 => 25,
            KrakenDepth::D100 => 100,
            KrakenDepth::D500 => 500,
            KrakenDepth::D1000 => 1000,
        }
    }
}

/// What the Kraken stream subscribes to, and its resync policy.
#[derive(Debug, Clone)]
pub struct KrakenStreamConfig {
    /// Book depth.
    pub depth: KrakenDepth,
    /// Reconnect when nothing (not even a heartbeat) arrives for this long.
    pub idle_timeout: Duration,
    /// Checksum mismatches in a row on one symbol before reconnecting
    /// instead of resubscribing.
    pub max_checksum_failures: u32,
}

impl Default for KrakenStreamConfig {
    fn default() -> Self {
        Self {
            depth: KrakenDepth::D10,
            idle_timeout: Duration::from_secs(30),
            max_checksum_failures: 3,
        }
    }
}

/// Starts the Kraken websocket v2 stream for `symbols` (`BTC/USD`).
pub fn spawn_kraken_stream(
    endpoints: &Endpoints,
    symbols: Vec<String>,
    config: KrakenStreamConfig,
    options: StreamOptions,
    cancel: CancellationToken,
) -> (StreamHandle, mpsc::Receiver<MarketEvent>) {
    let protocol = KrakenProtocol::new(endpoints.kraken_ws.clone(), config);
    driver::spawn(protocol, symbols, options, cancel)
}

/// CRC-32 (IEEE 802.3, the zlib/PNG one), as Kraken uses.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

/// A price or quantity as the checksum wants it: the decimal's text (with
/// the scale it was sent with), `.` removed, leading zeros stripped.
fn checksum_digits(value: Decimal) -> String {
    value
        .to_string()
        .replace('.', "")
        .trim_start_matches('0')
        .to_owned()
}

/// The string Kraken's checksum hashes: the ten best asks (low to high),
/// then the ten best bids (high to low), each as price digits + qty digits.
pub fn checksum_input(asks: &[Level], bids: &[Level]) -> String {
    asks.iter()
        .take(10)
        .chain(bids.iter().take(10))
        .map(|l| checksum_digits(l.price) + &checksum_digits(l.size))
        .collect()
}

/// Kraken's book checksum over best-first `asks` and `bids`.
pub fn book_checksum(asks: &[Level], bids: &[Level]) -> u32 {
    crc32(checksum_input(asks, bids).as_bytes())
}

#[derive(Debug, Default)]
struct LocalBook {
    bids: book::Side,
    asks: book::Side,
}

pub(crate) struct KrakenProtocol {
    url: String,
    endpoint: String,
    config: KrakenStreamConfig,
    books: HashMap<String, LocalBook>,
    checksum_failures: HashMap<String, u32>,
    next_req_id: u64,
    malformed: u64,
}

#[derive(Debug, Deserialize)]
struct LevelWire {
    price: Dec,
    qty: Dec,
}

#[derive(Debug, Deserialize)]
struct BookData {
    symbol: String,
    #[serde(default)]
    bids: Vec<LevelWire>,
    #[serde(default)]
    asks: Vec<LevelWire>,
    #[serde(default)]
    checksum: Option<u32>,
    #[serde(default)]
    timestamp: Option<DateTime<Utc>>,
}

#[derive(Debug, Deserialize)]
struct TradeData {
    symbol: String,
    side: String,
    price: Dec,
    qty: Dec,
    #[serde(default)]
    trade_id: Option<u64>,
    #[serde(default)]
    timestamp: Option<DateTime<Utc>>,
}

#[derive(Debug, Deserialize)]
struct ChannelWire<T> {
    #[serde(rename = "type")]
    kind: String,
    data: Vec<T>,
}

#[derive(Debug, Deserialize)]
struct HeadWire {
    #[serde(default)]
    channel: Option<String>,
}

#[derive(Debug, Deserialize)]
struct AckWire {
    method: String,
    #[serde(default)]
    success: Option<bool>,
    #[serde(default)]
    error: Option<String>,
}

impl KrakenProtocol {
    pub(crate) fn new(url: String, config: KrakenStreamConfig) -> Self {
        let url = url.trim_end_matches('/').to_owned();
        Self {
            endpoint: driver::ws_endpoint(&url),
            url,
            config,
            books: HashMap::new(),
            checksum_failures: HashMap::new(),
            next_req_id: 1,
            malformed: 0,
        }
    }

    fn request(&mut self, method: &str, params: serde_json::Value) -> String {
        let req_id = self.next_req_id;
        self.next_req_id += 1;
        serde_json::json!({ "method": method, "params": params, "req_id": req_id }).to_string()
    }

    fn book_params(&self, symbols: &[&str], snapshot: Option<bool>) -> serde_json::Value {
        let mut params = serde_json::json!({
            "channel": "book",
            "symbol": symbols,
            "depth": self.config.depth.levels(),
        });
        if let (Some(snapshot), Some(map)) = (snapshot, params.as_object_mut()) {
            map.insert("snapshot".to_owned(), snapshot.into());
        }
        params
    }

    fn subscribe_all(&mut self, symbols: &[&str]) -> Vec<String> {
        if symbols.is_empty() {
            return vec![];
        }
        let book = self.book_params(symbols, Some(true));
        vec![
            self.request("subscribe", book),
            self.request(
                "subscribe",
                serde_json::json!({ "channel": "trade", "symbol": symbols, "snapshot": false }),
            ),
        ]
    }

    fn handle(&mut self, text: &str) -> Result<Output, String> {
        // Typed structs are read from the text itself, never through a
        // `serde_json::Value`: that would turn `0.50000000` into an f64 and
        // lose the digits the checksum hashes.
        let head: HeadWire = serde_json::from_str(text).map_err(|e| e.to_string())?;
        match head.channel.as_deref() {
            Some("book") => {
                let wire: ChannelWire<BookData> =
                    serde_json::from_str(text).map_err(|e| e.to_string())?;
                let snapshot = match wire.kind.as_str() {
                    "snapshot" => true,
                    "update" => false,
                    other => return Err(format!("unknown book message type {other:?}")),
                };
                let mut out = Output::default();
                for data in wire.data {
                    self.book(data, snapshot, text, &mut out);
                }
                Ok(out)
            }
            Some("trade") => {
                let wire: ChannelWire<TradeData> =
                    serde_json::from_str(text).map_err(|e| e.to_string())?;
                let events = wire
                    .data
                    .into_iter()
                    .map(|t| {
                        let side = match t.side.as_str() {
                            "buy" => Side::Buy,
                            "sell" => Side::Sell,
                            other => return Err(format!("unknown trade side {other:?}")),
                        };
                        Ok(MarketEvent::Trade(Trade {
                            api: Api::Kraken,
                            symbol: t.symbol,
                            trade_id: t.trade_id.map(|id| id.to_string()),
                            price: t.price.0,
                            size: t.qty.0,
                            side: Some(side),
                            timestamp: t.timestamp,
                        }))
                    })
                    .collect::<Result<Vec<_>, String>>()?;
                Ok(Output {
                    events,
                    ..Output::default()
                })
            }
            // `heartbeat`, `status`, and channels we did not ask for.
            Some(_) => Ok(Output::default()),
            None => {
                let ack: AckWire = serde_json::from_str(text).map_err(|e| e.to_string())?;
                let mut out = Output::default();
                if ack.success == Some(false) {
                    let message = format!(
                        "{} failed: {}",
                        ack.method,
                        ack.error.as_deref().unwrap_or("no reason given")
                    );
                    out.events.push(MarketEvent::Error(
                        VenueError::new(
                            Api::Kraken,
                            self.endpoint.clone(),
                            ErrorKind::Api { message },
                        )
                        .with_body(text.as_bytes()),
                    ));
                }
                Ok(out)
            }
        }
    }

    fn book(&mut self, data: BookData, snapshot: bool, text: &str, out: &mut Output) {
        let depth = self.config.depth.levels();
        if snapshot {
            self.books.insert(data.symbol.clone(), LocalBook::default());
        }
        let Some(local) = self.books.get_mut(&data.symbol) else {
            // Updates while a resubscription is under way: the snapshot
            // that follows replaces the book.
            return;
        };
        for l in &data.bids {
            local.bids.set(l.price.0, l.qty.0);
        }
        for l in &data.asks {
            local.asks.set(l.price.0, l.qty.0);
        }
        local.bids.truncate(depth, true);
        local.asks.truncate(depth, false);
        let bids = local.bids.best(depth, true);
        let asks = local.asks.best(depth, false);
        if let Some(expected) = data.checksum {
            let local_sum = book_checksum(&asks, &bids);
            if local_sum != expected {
                self.resync(&data.symbol, expected, local_sum, text, out);
                return;
            }
        }
        self.checksum_failures.remove(&data.symbol);
        let mut book = OrderBook::new(Api::Kraken, data.symbol, bids, asks);
        book.timestamp = data.timestamp;
        out.events.push(MarketEvent::Book(book));
    }

    fn resync(
        &mut self,
        symbol: &str,
        venue_sum: u32,
        local_sum: u32,
        text: &str,
        out: &mut Output,
    ) {
        self.books.remove(symbol);
        let failures = self.checksum_failures.entry(symbol.to_owned()).or_default();
        *failures += 1;
        let failures = *failures;
        let escalate = failures >= self.config.max_checksum_failures;
        let action = if escalate {
            "reconnecting"
        } else {
            "resubscribing for a fresh snapshot"
        };
        let err = driver::stream_error(
            Api::Kraken,
            &self.endpoint,
            format!(
                "book checksum mismatch on {symbol}: venue {venue_sum}, local {local_sum} \
                 (failure {failures} in a row); {action}"
            ),
            Some(text),
        );
        tracing::warn!(error = %err, "kraken stream: book resync");
        out.events.push(MarketEvent::Error(err));
        if escalate {
            self.checksum_failures.remove(symbol);
            out.reconnect = Some(format!("{failures} book checksum mismatches on {symbol}"));
            return;
        }
        let unsubscribe = self.book_params(&[symbol], None);
        let subscribe = self.book_params(&[symbol], Some(true));
        out.send.push(self.request("unsubscribe", unsubscribe));
        out.send.push(self.request("subscribe", subscribe));
    }
}

impl Protocol for KrakenProtocol {
    fn api(&self) -> Api {
        Api::Kraken
    }

    fn normalise(&self, symbol: &str) -> String {
        symbol.trim().to_ascii_uppercase()
    }

    fn url(&self, _symbols: &BTreeSet<String>) -> String {
        self.url.clone()
    }

    fn on_connect(&mut self, symbols: &BTreeSet<String>) -> Vec<String> {
        self.books.clear();
        let names: Vec<&str> = symbols.iter().map(String::as_str).collect();
        self.subscribe_all(&names)
    }

    fn on_add(&mut self, added: &[String]) -> Vec<String> {
        let names: Vec<&str> = added.iter().map(String::as_str).collect();
        self.subscribe_all(&names)
    }

    fn on_text(&mut self, text: &str) -> Output {
        self.handle(text).unwrap_or_else(|detail| {
            self.malformed += 1;
            Output {
                events: vec![MarketEvent::Error(driver::malformed(
                    Api::Kraken,
                    &self.endpoint,
                    self.malformed,
                    &detail,
                    text,
                ))],
                ..Output::default()
            }
        })
    }

    fn keepalive(&self, options: &StreamOptions) -> Option<(Duration, String)> {
        Some((options.ping_interval, r#"{"method":"ping"}"#.to_owned()))
    }

    fn idle_timeout(&self) -> Option<Duration> {
        Some(self.config.idle_timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn crc32_gives_the_standard_check_value() {
        // The CRC-32/ISO-HDLC check value from the CRC catalogue.
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn levels_are_formatted_as_kraken_documents() {
        // Kraken's guides: "0.05000" with volume "0.00000304" → "5000304";
        // "45285.2" with "0.00100000" → "452852100000".
        let level = |p: &str, q: &str| {
            Level::new(p.parse().unwrap_or_default(), q.parse().unwrap_or_default())
        };
        assert_eq!(
            checksum_input(&[level("0.05000", "0.00000304")], &[]),
            "5000304"
        );
        assert_eq!(
            checksum_input(&[level("45285.2", "0.00100000")], &[]),
            "452852100000"
        );
    }

    /// A computed vector (no checksum for a full book is published in a
    /// form we could copy exactly), cross-checked with Python's
    /// `zlib.crc32`; pinned so a change in formatting or ordering shows.
    #[test]
    fn a_computed_ten_level_book_checksum_is_pinned() {
        let asks: Vec<Level> = (0..10)
            .map(|i| {
                Level::new(
                    dec!(45285.2) + Decimal::from(i) * dec!(0.1),
                    dec!(0.00100000),
                )
            })
            .collect();
        let bids: Vec<Level> = (0..10)
            .map(|i| {
                Level::new(
                    dec!(45283.5) - Decimal::from(i) * dec!(0.1),
                    dec!(1.50000000),
                )
            })
            .collect();
        let input = checksum_input(&asks, &bids);
        assert!(input.starts_with("452852100000452853100000"), "{input}");
        assert!(input.ends_with("452826150000000"), "{input}");
        assert_eq!(book_checksum(&asks, &bids), PINNED_TEN_LEVEL);
        // Levels past the tenth do not count.
        let mut more = asks.clone();
        more.push(Level::new(dec!(46000.0), dec!(9)));
        assert_eq!(book_checksum(&more, &bids), PINNED_TEN_LEVEL);
    }

    const PINNED_TEN_LEVEL: u32 = 2_576_837_959;

    #[test]
    fn json_number_levels_keep_their_trailing_zeros_for_the_checksum() {
        // 4062747978 is zlib.crc32 of "452852100000452860200000000" +
        // "45283550000000452834100000000" (computed with Python).
        let mut p = protocol();
        let out = p.on_text(
            r#"{"channel":"book","type":"snapshot","data":[{"symbol":"BTC/USD","bids":[{"price":45283.5,"qty":0.50000000},{"price":45283.4,"qty":1.00000000}],"asks":[{"price":45285.2,"qty":0.00100000},{"price":45286.0,"qty":2.00000000}],"checksum":4062747978}]}"#,
        );
        let [MarketEvent::Book(b)] = out.events.as_slice() else {
            panic!("{:?}", out.events);
        };
        assert_eq!(
            b.best_ask().map(|l| l.size.to_string()),
            Some("0.00100000".to_owned())
        );
        assert!(out.send.is_empty());
    }

    fn protocol() -> KrakenProtocol {
        KrakenProtocol::new(
            "wss://ws.kraken.com/v2".to_owned(),
            KrakenStreamConfig::default(),
        )
    }

    #[test]
    fn the_book_is_truncated_to_the_subscribed_depth_and_zero_removes() {
        let mut p = protocol();
        let bids: Vec<String> = (0..10)
            .map(|i| format!(r#"{{"price":{}.0,"qty":1.0}}"#, 100 - i))
            .collect();
        let snapshot = format!(
            r#"{{"channel":"book","type":"snapshot","data":[{{"symbol":"BTC/USD","bids":[{}],"asks":[{{"price":101.0,"qty":2.0}}]}}]}}"#,
            bids.join(",")
        );
        let out = p.on_text(&snapshot);
        assert!(matches!(out.events.as_slice(), [MarketEvent::Book(b)] if b.bids.len() == 10));
        // A better bid pushes the worst (91) out; the ask is removed.
        let out = p.on_text(
            r#"{"channel":"book","type":"update","data":[{"symbol":"BTC/USD","bids":[{"price":100.5,"qty":3.0}],"asks":[{"price":101.0,"qty":0}],"timestamp":"2023-10-06T17:35:55.440295Z"}]}"#,
        );
        let [MarketEvent::Book(b)] = out.events.as_slice() else {
            panic!("{:?}", out.events);
        };
        assert_eq!(b.bids.len(), 10);
        assert_eq!(b.best_bid(), Some(Level::new(dec!(100.5), dec!(3.0))));
        assert_eq!(b.bids.last(), Some(&Level::new(dec!(92.0), dec!(1.0))));
        assert!(b.asks.is_empty());
        assert_eq!(p.books.get("BTC/USD").map(|l| l.bids.len()), Some(10));
    }

    #[test]
    fn a_checksum_mismatch_resubscribes_then_escalates_to_a_reconnect() {
        let mut p = protocol();
        let bad = r#"{"channel":"book","type":"snapshot","data":[{"symbol":"BTC/USD","bids":[{"price":1.0,"qty":1.0}],"asks":[],"checksum":1}]}"#;
        for attempt in 1..=3 {
            let out = p.on_text(bad);
            let [MarketEvent::Error(e)] = out.events.as_slice() else {
                panic!("{:?}", out.events);
            };
            assert!(
                e.to_string().contains("checksum mismatch on BTC/USD"),
                "{e}"
            );
            if attempt < 3 {
                assert_eq!(out.send.len(), 2, "{:?}", out.send);
                assert!(out.reconnect.is_none());
            } else {
                assert!(out.send.is_empty());
                assert!(out.reconnect.is_some());
            }
        }
    }

    #[test]
    fn trades_acks_heartbeats_and_junk() {
        let mut p = protocol();
        let out = p.on_text(
            r#"{"channel":"trade","type":"update","data":[{"symbol":"MATIC/USD","side":"sell","price":0.5117,"qty":40.0,"ord_type":"market","trade_id":4665906,"timestamp":"2023-09-25T07:49:37.708706Z"}]}"#,
        );
        let [MarketEvent::Trade(t)] = out.events.as_slice() else {
            panic!("{:?}", out.events);
        };
        assert_eq!((t.price, t.size), (dec!(0.5117), dec!(40.0)));
        assert_eq!(t.side, Some(Side::Sell));
        assert_eq!(t.trade_id.as_deref(), Some("4665906"));
        assert!(p.on_text(r#"{"channel":"heartbeat"}"#).events.is_empty());
        assert!(
            p.on_text(r#"{"method":"subscribe","result":{"channel":"book","depth":10,"snapshot":true,"symbol":"BTC/USD"},"success":true,"time_in":"2023-09-25T09:04:31.742599Z","time_out":"2023-09-25T09:04:31.742648Z"}"#)
                .events
                .is_empty()
        );
        let out = p.on_text(
            r#"{"error":"Currency pair not supported XXX/USD","method":"subscribe","success":false,"symbol":"XXX/USD"}"#,
        );
        let [MarketEvent::Error(e)] = out.events.as_slice() else {
            panic!("{:?}", out.events);
        };
        assert!(e.to_string().contains("Currency pair not supported"), "{e}");
        let out = p.on_text(r#"{"channel":"book","type":"update","data":[{"symbol":"BTC/USD","bids":[{"price":"x","qty":1}]}]}"#);
        let [MarketEvent::Error(e)] = out.events.as_slice() else {
            panic!("{:?}", out.events);
        };
        assert!(
            e.to_string().contains("Kraken WS wss://ws.kraken.com/v2"),
            "{e}"
        );
        assert_eq!(p.malformed, 1);
    }
}
