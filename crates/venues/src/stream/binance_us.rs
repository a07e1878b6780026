//! Binance US market streams: partial book depth snapshots and trades.
//!
//! One combined-stream connection (`/stream?streams=btcusd@depth20@100ms/
//! btcusd@trade/…`) carries every symbol. Partial-depth messages are whole
//! top-N books, so no local book is kept and a reconnect needs no resync: the
//! next message is complete. Symbols added at runtime are sent as `SUBSCRIBE`
//! requests and join the URL of every later connection. Binance closes each
//! connection after 24 hours, so the connection is rotated a little earlier
//! (and any other drop reconnects with backoff); its ping frames are answered
//! by tungstenite. Market data only; user-data streams are not here.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::driver::{self, Output, Protocol};
use super::{MarketEvent, StreamHandle, StreamOptions};
use crate::endpoints::Endpoints;
use crate::error::{ErrorKind, VenueError};
use crate::model::{Api, Level, OrderBook, Side, Trade};
use crate::num::Dec;

/// Levels per partial-depth snapshot (Binance offers 5, 10 and 20).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BinanceUsDepth {
    /// Top 5 levels per side.
    Five,
    /// Top 10 levels per side.
    Ten,
    /// Top 20 levels per side.
    #[default]
    Twenty,
}

impl BinanceUsDepth {
    fn levels(self) -> u8 {
        match self {
            BinanceUsDepth::Five => 5,
            BinanceUsDepth::Ten => 10,
            BinanceUsDepth::Twenty => 20,
        }
    }
}

/// What the Binance US stream subscribes to.
#[derive(Debug, Clone)]
pub struct BinanceUsStreamConfig {
    /// Book depth per snapshot.
    pub depth: BinanceUsDepth,
    /// `@100ms` snapshots instead of Binance's default 1000 ms.
    pub fast_updates: bool,
    /// Reconnect proactively after this long; Binance drops connections at 24 h.
    pub max_connection_age: Duration,
}

impl Default for BinanceUsStreamConfig {
    fn default() -> Self {
        Self {
            depth: BinanceUsDepth::Twenty,
            fast_updates: true,
            max_connection_age: Duration::from_secs(23 * 3600 + 30 * 60),
        }
    }
}

/// Starts the Binance US stream for `symbols` (`BTCUSD` or `btcusd`).
pub fn spawn_binance_us_stream(
    endpoints: &Endpoints,
    symbols: Vec<String>,
    config: BinanceUsStreamConfig,
    options: StreamOptions,
    cancel: CancellationToken,
) -> (StreamHandle, mpsc::Receiver<MarketEvent>) {
    let protocol = BinanceUsProtocol::new(endpoints.binance_us_ws.clone(), config);
    driver::spawn(protocol, symbols, options, cancel)
}

pub(crate) struct BinanceUsProtocol {
    base: String,
    endpoint: String,
    config: BinanceUsStreamConfig,
    next_id: u64,
    malformed: u64,
}

/// `data` stays raw text so decimals are parsed from the venue's digits.
#[derive(Debug, Deserialize)]
struct Envelope {
    stream: String,
    data: Box<serde_json::value::RawValue>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DepthWire {
    #[serde(default)]
    last_update_id: Option<u64>,
    bids: Vec<(Dec, Dec)>,
    asks: Vec<(Dec, Dec)>,
}

#[derive(Debug, Deserialize)]
struct TradeWire {
    /// Symbol, upper case.
    #[serde(rename = "s")]
    symbol: Option<String>,
    #[serde(rename = "t")]
    trade_id: Option<u64>,
    #[serde(rename = "p")]
    price: Dec,
    #[serde(rename = "q")]
    qty: Dec,
    /// Trade time, ms.
    #[serde(rename = "T")]
    time: Option<i64>,
    /// The buyer was the maker, so the aggressor sold.
    #[serde(rename = "m")]
    buyer_is_maker: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct VenueErrorWire {
    code: serde_json::Value,
    msg: String,
}

impl BinanceUsProtocol {
    pub(crate) fn new(base: String, config: BinanceUsStreamConfig) -> Self {
        let base = base.trim_end_matches('/').to_owned();
        Self {
            endpoint: driver::ws_endpoint(&format!("{base}/stream")),
            base,
            config,
            next_id: 1,
            malformed: 0,
        }
    }

    fn streams(&self, symbols: &[&str]) -> Vec<String> {
        let depth = format!(
            "depth{}{}",
            self.config.depth.levels(),
            if self.config.fast_updates {
                "@100ms"
            } else {
                ""
            }
        );
        symbols
            .iter()
            .flat_map(|s| [format!("{s}@{depth}"), format!("{s}@trade")])
            .collect()
    }

    fn parse(&self, text: &str) -> Result<Vec<MarketEvent>, String> {
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if value.get("stream").is_some() {
            let envelope: Envelope = serde_json::from_str(text).map_err(|e| e.to_string())?;
            return self.parse_stream(&envelope);
        }
        if value.get("id").is_some() && value.get("result").is_some() {
            // The answer to a SUBSCRIBE: `{"result":null,"id":1}`.
            return Ok(vec![]);
        }
        if let Ok(err) = serde_json::from_value::<VenueErrorWire>(value) {
            return Ok(vec![MarketEvent::Error(
                VenueError::new(
                    Api::BinanceUs,
                    self.endpoint.clone(),
                    ErrorKind::Api {
                        message: format!("{} (code {})", err.msg, err.code),
                    },
                )
                .with_body(text.as_bytes()),
            )]);
        }
        Err("neither a stream message, a request answer nor an error".to_owned())
    }

    fn parse_stream(&self, envelope: &Envelope) -> Result<Vec<MarketEvent>, String> {
        let mut parts = envelope.stream.split('@');
        let symbol = parts.next().unwrap_or_default().to_ascii_uppercase();
        let kind = parts.next().unwrap_or_default();
        if kind.starts_with("depth") {
            let wire: DepthWire =
                serde_json::from_str(envelope.data.get()).map_err(|e| e.to_string())?;
            let levels = |v: &[(Dec, Dec)]| {
                v.iter()
                    .map(|(p, q)| Level::new(p.0, q.0))
                    .collect::<Vec<_>>()
            };
            let mut book = OrderBook::new(
                Api::BinanceUs,
                symbol,
                levels(&wire.bids),
                levels(&wire.asks),
            );
            book.sequence = wire.last_update_id;
            return Ok(vec![MarketEvent::Book(book)]);
        }
        if kind == "trade" {
            let wire: TradeWire =
                serde_json::from_str(envelope.data.get()).map_err(|e| e.to_string())?;
            return Ok(vec![MarketEvent::Trade(Trade {
                api: Api::BinanceUs,
                symbol: wire.symbol.unwrap_or(symbol),
                trade_id: wire.trade_id.map(|id| id.to_string()),
                price: wire.price.0,
                size: wire.qty.0,
                side: wire
                    .buyer_is_maker
                    .map(|maker| if maker { Side::Sell } else { Side::Buy }),
                timestamp: wire.time.and_then(chrono::DateTime::from_timestamp_millis),
            })]);
        }
        Ok(vec![])
    }
}

impl Protocol for BinanceUsProtocol {
    fn api(&self) -> Api {
        Api::BinanceUs
    }

    fn normalise(&self, symbol: &str) -> String {
        symbol.trim().to_ascii_lowercase()
    }

    fn url(&self, symbols: &BTreeSet<String>) -> String {
        let names: Vec<&str> = symbols.iter().map(String::as_str).collect();
        if names.is_empty() {
            // Nothing yet: a bare combined-stream connection; symbols added
            // later arrive as SUBSCRIBE requests.
            return format!("{}/stream", self.base);
        }
        format!(
            "{}/stream?streams={}",
            self.base,
            self.streams(&names).join("/")
        )
    }

    fn on_connect(&mut self, _symbols: &BTreeSet<String>) -> Vec<String> {
        // The URL already names every stream.
        vec![]
    }

    fn on_add(&mut self, added: &[String]) -> Vec<String> {
        let names: Vec<&str> = added.iter().map(String::as_str).collect();
        let id = self.next_id;
        self.next_id += 1;
        vec![
            serde_json::json!({
                "method": "SUBSCRIBE",
                "params": self.streams(&names),
                "id": id,
            })
            .to_string(),
        ]
    }

    fn on_text(&mut self, text: &str) -> Output {
        match self.parse(text) {
            Ok(events) => Output {
                events,
                ..Output::default()
            },
            Err(detail) => {
                self.malformed += 1;
                Output {
                    events: vec![MarketEvent::Error(driver::malformed(
                        Api::BinanceUs,
                        &self.endpoint,
                        self.malformed,
                        &detail,
                        text,
                    ))],
                    ..Output::default()
                }
            }
        }
    }

    fn max_connection_age(&self) -> Option<Duration> {
        Some(self.config.max_connection_age)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn protocol() -> BinanceUsProtocol {
        BinanceUsProtocol::new(
            "wss://stream.binance.us:9443/".to_owned(),
            BinanceUsStreamConfig::default(),
        )
    }

    #[test]
    fn the_url_names_a_depth_and_a_trade_stream_per_symbol() {
        let p = protocol();
        let symbols: BTreeSet<String> = ["btcusd", "ethusd"].map(str::to_owned).into();
        assert_eq!(
            p.url(&symbols),
            "wss://stream.binance.us:9443/stream?streams=btcusd@depth20@100ms/btcusd@trade/ethusd@depth20@100ms/ethusd@trade"
        );
        assert_eq!(p.normalise(" BTCUSD "), "btcusd");
    }

    #[test]
    fn a_partial_depth_message_becomes_a_best_first_book() {
        let mut p = protocol();
        let out = p.on_text(
            r#"{"stream":"btcusd@depth20@100ms","data":{"lastUpdateId":160,"bids":[["0.0024","10"],["0.0025","1"]],"asks":[["0.0027","100"],["0.0026","5"]]}}"#,
        );
        let [MarketEvent::Book(book)] = out.events.as_slice() else {
            panic!("{:?}", out.events);
        };
        assert_eq!(book.instrument, "BTCUSD");
        assert_eq!(book.sequence, Some(160));
        assert_eq!(
            book.bids,
            vec![
                Level::new(dec!(0.0025), dec!(1)),
                Level::new(dec!(0.0024), dec!(10))
            ]
        );
        assert_eq!(book.best_ask(), Some(Level::new(dec!(0.0026), dec!(5))));
    }

    #[test]
    fn a_trade_with_the_buyer_as_maker_was_a_sell() {
        let mut p = protocol();
        let out = p.on_text(
            r#"{"stream":"btcusd@trade","data":{"e":"trade","E":1672515782136,"s":"BTCUSD","t":12345,"p":"16500.01","q":"0.0021","T":1672515782134,"m":true,"M":true}}"#,
        );
        let [MarketEvent::Trade(t)] = out.events.as_slice() else {
            panic!("{:?}", out.events);
        };
        assert_eq!(t.symbol, "BTCUSD");
        assert_eq!(t.trade_id.as_deref(), Some("12345"));
        assert_eq!((t.price, t.size), (dec!(16500.01), dec!(0.0021)));
        assert_eq!(t.side, Some(Side::Sell));
        assert_eq!(
            t.timestamp.map(|t| t.timestamp_millis()),
            Some(1672515782134)
        );
    }

    #[test]
    fn answers_are_skipped_and_venue_errors_and_junk_are_reported() {
        let mut p = protocol();
        assert!(p.on_text(r#"{"result":null,"id":1}"#).events.is_empty());
        let out = p.on_text(r#"{"code":2,"msg":"Invalid request: unknown stream"}"#);
        let [MarketEvent::Error(e)] = out.events.as_slice() else {
            panic!("{:?}", out.events);
        };
        assert!(e.to_string().contains("Invalid request"), "{e}");
        for junk in ["{not json", r#"{"stream":"btcusd@trade","data":{"p":"x"}}"#] {
            let out = p.on_text(junk);
            let [MarketEvent::Error(e)] = out.events.as_slice() else {
                panic!("{:?}", out.events);
            };
            let text = e.to_string();
            assert!(text.contains("Binance US"), "{text}");
            assert!(
                text.contains("WS wss://stream.binance.us:9443/stream"),
                "{text}"
            );
            assert!(e.body_excerpt().is_some_and(|b| !b.is_empty()), "{text}");
        }
        assert_eq!(p.malformed, 2);
    }
}
