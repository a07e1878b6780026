//! Coinbase Exchange websocket feed: `level2_batch` books and `matches`.
//!
//! Subscribes every product to the book channel (`level2_batch` by default:
//! unauthenticated, 50 ms batches; `level2` needs an authenticated feed),
//! `matches` and `heartbeat`. The book channel sends one `snapshot` per
//! product and then `l2update` deltas, which are applied to a local book
//! (a size of `"0"` removes the level); every snapshot or delta emits the
//! book's top levels as a [`MarketEvent::Book`]. Matches become trades with
//! the aggressor side (Coinbase's `side` is the maker's).
//!
//! Gaps: when book messages carry a per-product `sequence`, each delta must
//! be the previous one plus one; a jump means updates were lost, so the local
//! book is dropped and the product's book channel is unsubscribed and
//! subscribed again for a fresh snapshot (deltas in flight meanwhile are
//! ignored). The public `level2_batch` messages often carry no `sequence`;
//! then nothing can be checked and a reconnect is the only resync. The
//! heartbeat channel keeps the connection busy, so silence means it is dead.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::driver::{self, Output, Protocol, book};
use super::{MarketEvent, StreamHandle, StreamOptions};
use crate::endpoints::Endpoints;
use crate::error::{ErrorKind, VenueError};
use crate::model::{Api, OrderBook, Side, Trade};
use crate::num::Dec;

/// The Coinbase book channel to subscribe to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CoinbaseBookChannel {
    /// `level2_batch`: public, updates batched every 50 ms.
    #[default]
    Level2Batch,
    /// `level2`: every update; Coinbase requires an authenticated feed for it.
    Level2,
}

impl CoinbaseBookChannel {
    fn name(self) -> &'static str {
        match self {
            CoinbaseBookChannel::Level2Batch => "level2_batch",
            CoinbaseBookChannel::Level2 => "level2",
        }
    }
}

/// What the Coinbase stream subscribes to and publishes.
#[derive(Debug, Clone)]
pub struct CoinbaseStreamConfig {
    /// Book channel.
    pub channel: CoinbaseBookChannel,
    /// Levels per side in each published book (the local book keeps all).
    pub publish_depth: usize,
    /// Reconnect when nothing (not even a heartbeat) arrives for this long.
    pub idle_timeout: Duration,
}

impl Default for CoinbaseStreamConfig {
    fn default() -> Self {
        Self {
            channel: CoinbaseBookChannel::Level2Batch,
            publish_depth: 50,
            idle_timeout: Duration::from_secs(30),
        }
    }
}

/// Starts the Coinbase Exchange stream for `product_ids` (`BTC-USD`).
pub fn spawn_coinbase_stream(
    endpoints: &Endpoints,
    product_ids: Vec<String>,
    config: CoinbaseStreamConfig,
    options: StreamOptions,
    cancel: CancellationToken,
) -> (StreamHandle, mpsc::Receiver<MarketEvent>) {
    let protocol = CoinbaseProtocol::new(endpoints.coinbase_ws.clone(), config);
    driver::spawn(protocol, product_ids, options, cancel)
}

#[derive(Debug, Default)]
struct LocalBook {
    bids: book::Side,
    asks: book::Side,
    sequence: Option<u64>,
}

pub(crate) struct CoinbaseProtocol {
    url: String,
    endpoint: String,
    config: CoinbaseStreamConfig,
    /// Products with a snapshot; a subscribed product missing here is
    /// waiting for one.
    books: HashMap<String, LocalBook>,
    malformed: u64,
}

#[derive(Debug, Deserialize)]
struct TypeWire {
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Debug, Deserialize)]
struct SnapshotWire {
    product_id: String,
    bids: Vec<(Dec, Dec)>,
    asks: Vec<(Dec, Dec)>,
    #[serde(default)]
    sequence: Option<u64>,
    #[serde(default)]
    time: Option<DateTime<Utc>>,
}

#[derive(Debug, Deserialize)]
struct UpdateWire {
    product_id: String,
    changes: Vec<(String, Dec, Dec)>,
    #[serde(default)]
    sequence: Option<u64>,
    #[serde(default)]
    time: Option<DateTime<Utc>>,
}

#[derive(Debug, Deserialize)]
struct MatchWire {
    product_id: String,
    #[serde(default)]
    trade_id: Option<u64>,
    price: Dec,
    size: Dec,
    side: String,
    #[serde(default)]
    time: Option<DateTime<Utc>>,
}

#[derive(Debug, Deserialize)]
struct ErrorWire {
    message: String,
    #[serde(default)]
    reason: Option<String>,
}

fn side(text: &str) -> Result<Side, String> {
    match text {
        "buy" => Ok(Side::Buy),
        "sell" => Ok(Side::Sell),
        other => Err(format!("unknown side {other:?}")),
    }
}

impl CoinbaseProtocol {
    pub(crate) fn new(url: String, config: CoinbaseStreamConfig) -> Self {
        let url = url.trim_end_matches('/').to_owned();
        Self {
            endpoint: driver::ws_endpoint(&url),
            url,
            config,
            books: HashMap::new(),
            malformed: 0,
        }
    }

    fn subscribe(&self, products: &[&str], channels: &[&str]) -> String {
        serde_json::json!({
            "type": "subscribe",
            "product_ids": products,
            "channels": channels,
        })
        .to_string()
    }

    fn publish(&self, product: &str, time: Option<DateTime<Utc>>) -> Option<MarketEvent> {
        let local = self.books.get(product)?;
        let depth = self.config.publish_depth;
        let mut book = OrderBook::new(
            Api::Coinbase,
            product,
            local.bids.best(depth, true),
            local.asks.best(depth, false),
        );
        book.sequence = local.sequence;
        book.timestamp = time;
        Some(MarketEvent::Book(book))
    }

    fn handle(&mut self, text: &str) -> Result<Output, String> {
        // Typed structs are read from the text (not via `serde_json::Value`)
        // so decimals sent as JSON numbers keep their exact digits.
        let kind = serde_json::from_str::<TypeWire>(text)
            .map_err(|e| e.to_string())?
            .kind;
        let parse_err = |e: serde_json::Error| e.to_string();
        let mut out = Output::default();
        match kind.as_str() {
            "snapshot" => {
                let wire: SnapshotWire = serde_json::from_str(text).map_err(parse_err)?;
                let mut local = LocalBook {
                    sequence: wire.sequence,
                    ..LocalBook::default()
                };
                for (p, s) in wire.bids {
                    local.bids.set(p.0, s.0);
                }
                for (p, s) in wire.asks {
                    local.asks.set(p.0, s.0);
                }
                self.books.insert(wire.product_id.clone(), local);
                out.events.extend(self.publish(&wire.product_id, wire.time));
            }
            "l2update" => {
                let wire: UpdateWire = serde_json::from_str(text).map_err(parse_err)?;
                let changes = wire
                    .changes
                    .iter()
                    .map(|(s, p, q)| side(s).map(|s| (s, p.0, q.0)))
                    .collect::<Result<Vec<_>, _>>()?;
                let Some(local) = self.books.get_mut(&wire.product_id) else {
                    // No snapshot yet (or a resync is under way): a delta
                    // cannot be applied to nothing.
                    return Ok(out);
                };
                if let (Some(seq), Some(last)) = (wire.sequence, local.sequence) {
                    if seq <= last {
                        return Ok(out); // already applied
                    }
                    if seq != last + 1 {
                        return Ok(self.resync(&wire.product_id, last + 1, seq, text));
                    }
                }
                for (s, price, size) in changes {
                    match s {
                        Side::Buy => local.bids.set(price, size),
                        Side::Sell => local.asks.set(price, size),
                    }
                }
                local.sequence = wire.sequence.or(local.sequence);
                out.events.extend(self.publish(&wire.product_id, wire.time));
            }
            "match" | "last_match" => {
                let wire: MatchWire = serde_json::from_str(text).map_err(parse_err)?;
                let maker = side(&wire.side)?;
                out.events.push(MarketEvent::Trade(Trade {
                    api: Api::Coinbase,
                    symbol: wire.product_id,
                    trade_id: wire.trade_id.map(|id| id.to_string()),
                    price: wire.price.0,
                    size: wire.size.0,
                    side: Some(match maker {
                        Side::Buy => Side::Sell,
                        Side::Sell => Side::Buy,
                    }),
                    timestamp: wire.time,
                }));
            }
            "error" => {
                let wire: ErrorWire = serde_json::from_str(text).map_err(parse_err)?;
                let message = match wire.reason {
                    Some(reason) if !reason.is_empty() => format!("{}: {reason}", wire.message),
                    _ => wire.message,
                };
                out.events.push(MarketEvent::Error(
                    VenueError::new(
                        Api::Coinbase,
                        self.endpoint.clone(),
                        ErrorKind::Api { message },
                    )
                    .with_body(text.as_bytes()),
                ));
            }
            // `subscriptions`, `heartbeat`, `ticker`, …: nothing to do.
            _ => {}
        }
        Ok(out)
    }

    /// Drops `product`'s book and asks the venue for a fresh snapshot.
    fn resync(&mut self, product: &str, expected: u64, got: u64, text: &str) -> Output {
        self.books.remove(product);
        let channel = self.config.channel.name();
        let err = driver::stream_error(
            Api::Coinbase,
            &self.endpoint,
            format!(
                "sequence gap on {product}: expected {expected}, got {got}; \
                 resubscribing for a fresh snapshot"
            ),
            Some(text),
        );
        tracing::warn!(error = %err, "coinbase stream: book resync");
        Output {
            events: vec![MarketEvent::Error(err)],
            send: vec![
                serde_json::json!({
                    "type": "unsubscribe",
                    "product_ids": [product],
                    "channels": [channel],
                })
                .to_string(),
                self.subscribe(&[product], &[channel]),
            ],
            reconnect: None,
        }
    }
}

impl Protocol for CoinbaseProtocol {
    fn api(&self) -> Api {
        Api::Coinbase
    }

    fn normalise(&self, symbol: &str) -> String {
        symbol.trim().to_ascii_uppercase()
    }

    fn url(&self, _symbols: &BTreeSet<String>) -> String {
        self.url.clone()
    }

    fn on_connect(&mut self, symbols: &BTreeSet<String>) -> Vec<String> {
        self.books.clear();
        let products: Vec<&str> = symbols.iter().map(String::as_str).collect();
        self.on_add_names(&products)
    }

    fn on_add(&mut self, added: &[String]) -> Vec<String> {
        let products: Vec<&str> = added.iter().map(String::as_str).collect();
        self.on_add_names(&products)
    }

    fn on_text(&mut self, text: &str) -> Output {
        self.handle(text).unwrap_or_else(|detail| {
            self.malformed += 1;
            Output {
                events: vec![MarketEvent::Error(driver::malformed(
                    Api::Coinbase,
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

impl CoinbaseProtocol {
    fn on_add_names(&self, products: &[&str]) -> Vec<String> {
        if products.is_empty() {
            return vec![];
        }
        vec![self.subscribe(
            products,
            &[self.config.channel.name(), "matches", "heartbeat"],
        )]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Level;
    use rust_decimal_macros::dec;

    fn protocol() -> CoinbaseProtocol {
        CoinbaseProtocol::new(
            "wss://ws-feed.exchange.coinbase.com".to_owned(),
            CoinbaseStreamConfig::default(),
        )
    }

    fn book(out: &Output) -> &OrderBook {
        match out.events.as_slice() {
            [MarketEvent::Book(b)] => b,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn deltas_update_the_local_book_and_a_zero_size_removes_a_level() {
        let mut p = protocol();
        let out = p.on_text(
            r#"{"type":"snapshot","product_id":"BTC-USD","bids":[["10101.10","0.45054140"],["10100.00","1"]],"asks":[["10102.55","0.57753524"]]}"#,
        );
        assert_eq!(
            book(&out).best_bid(),
            Some(Level::new(dec!(10101.10), dec!(0.45054140)))
        );
        let out = p.on_text(
            r#"{"type":"l2update","product_id":"BTC-USD","time":"2019-08-14T20:42:27.265Z","changes":[["buy","10101.10","0"],["sell","10102.00","2"],["buy","10100.50","0.3"]]}"#,
        );
        let b = book(&out);
        assert_eq!(
            b.bids,
            vec![
                Level::new(dec!(10100.50), dec!(0.3)),
                Level::new(dec!(10100.00), dec!(1))
            ]
        );
        assert_eq!(
            b.asks,
            vec![
                Level::new(dec!(10102.00), dec!(2)),
                Level::new(dec!(10102.55), dec!(0.57753524))
            ]
        );
        assert_eq!(
            b.timestamp.map(|t| t.timestamp_millis()),
            Some(1565815347265)
        );
    }

    #[test]
    fn a_delta_before_any_snapshot_is_ignored() {
        let mut p = protocol();
        let out =
            p.on_text(r#"{"type":"l2update","product_id":"ETH-USD","changes":[["buy","1","1"]]}"#);
        assert!(out.events.is_empty() && out.send.is_empty());
    }

    #[test]
    fn a_sequence_jump_drops_the_book_and_resubscribes_that_product() {
        let mut p = protocol();
        book(&p.on_text(
            r#"{"type":"snapshot","product_id":"BTC-USD","sequence":10,"bids":[["1","1"]],"asks":[["2","1"]]}"#,
        ));
        book(&p.on_text(
            r#"{"type":"l2update","product_id":"BTC-USD","sequence":11,"changes":[["buy","1.5","1"]]}"#,
        ));
        // A replay of 11 is skipped silently.
        let out = p.on_text(
            r#"{"type":"l2update","product_id":"BTC-USD","sequence":11,"changes":[["buy","1.6","1"]]}"#,
        );
        assert!(out.events.is_empty());
        let out = p.on_text(
            r#"{"type":"l2update","product_id":"BTC-USD","sequence":14,"changes":[["buy","1.7","1"]]}"#,
        );
        let [MarketEvent::Error(e)] = out.events.as_slice() else {
            panic!("{:?}", out.events);
        };
        assert!(e.to_string().contains("expected 12, got 14"), "{e}");
        assert_eq!(out.send.len(), 2);
        assert!(out.send[0].contains("unsubscribe"), "{:?}", out.send);
        assert!(!p.books.contains_key("BTC-USD"));
    }

    #[test]
    fn a_match_is_a_trade_on_the_aggressor_side() {
        let mut p = protocol();
        let out = p.on_text(
            r#"{"type":"match","trade_id":10,"sequence":50,"maker_order_id":"a","taker_order_id":"b","time":"2014-11-07T08:19:27.028459Z","product_id":"BTC-USD","size":"5.23512","price":"400.23","side":"sell"}"#,
        );
        let [MarketEvent::Trade(t)] = out.events.as_slice() else {
            panic!("{:?}", out.events);
        };
        assert_eq!(t.side, Some(Side::Buy));
        assert_eq!((t.price, t.size), (dec!(400.23), dec!(5.23512)));
        assert_eq!(t.trade_id.as_deref(), Some("10"));
    }

    #[test]
    fn venue_errors_and_malformed_messages_are_reported_with_context() {
        let mut p = protocol();
        let out = p.on_text(
            r#"{"type":"error","message":"Failed to subscribe","reason":"ABC-XYZ is not a valid product"}"#,
        );
        let [MarketEvent::Error(e)] = out.events.as_slice() else {
            panic!("{:?}", out.events);
        };
        assert!(
            e.to_string().contains("ABC-XYZ is not a valid product"),
            "{e}"
        );
        for junk in [
            "]",
            r#"{"type":"l2update","product_id":"BTC-USD","changes":[["up","1","1"]]}"#,
        ] {
            let out = p.on_text(junk);
            let [MarketEvent::Error(e)] = out.events.as_slice() else {
                panic!("{:?}", out.events);
            };
            assert!(e.to_string().contains("Coinbase WS wss://ws-feed"), "{e}");
            assert!(e.body_excerpt().is_some(), "{e}");
        }
        assert_eq!(p.malformed, 2);
    }
}
