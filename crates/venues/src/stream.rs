//! Streaming market data over WebSocket: Polymarket's CLOB market channel.
//!
//! A background task connects to `{polymarket_ws}/ws/market`, subscribes to
//! the asset ids it was given (and any added later through the handle),
//! keeps the connection alive with `PING`, and turns the channel's `book`,
//! `price_change` and `last_trade_price` messages into [`MarketEvent`]s.
//! When the connection drops it reconnects with jittered, bounded backoff and
//! resubscribes to everything, so the venue re-sends a full book snapshot
//! for every asset. It stops when its cancellation token fires or when the
//! receiver is dropped. Venues without a stream are polled over REST by the
//! caller with the connectors.
//!
//! The crypto venues' streams live in submodules and share this module's
//! [`MarketEvent`], [`StreamHandle`] and [`StreamOptions`]: [`binance_us`]
//! (partial-depth snapshots and trades), [`coinbase`] (`level2_batch`
//! snapshot + deltas kept in a local book, `matches`) and [`kraken`]
//! (websocket v2 `book` with CRC32 checksums, `trade`) and [`kalshi`]
//! (authenticated `orderbook_delta` snapshot + deltas with sequence-gap
//! resync, `ticker`, `trade`). Their connection loop is in `driver`; each
//! venue file is only its protocol.

pub mod binance_us;
pub mod coinbase;
pub(crate) mod driver;
pub mod kalshi;
pub mod kraken;

pub use binance_us::{BinanceUsStreamConfig, spawn_binance_us_stream};
pub use coinbase::{CoinbaseStreamConfig, spawn_coinbase_stream};
pub use kalshi::{KalshiStreamConfig, spawn_kalshi_stream};
pub use kraken::{KrakenStreamConfig, spawn_kraken_stream};

use std::collections::BTreeSet;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use rand::Rng;
use rust_decimal::Decimal;
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use crate::connectors::polymarket::{BookWire, millis_string};
use crate::endpoints::Endpoints;
use crate::error::VenueError;
use crate::model::{Api, OrderBook, Side, Trade};
use crate::num::{Dec, OptDec};

/// Reconnect and keep-alive settings.
#[derive(Debug, Clone)]
pub struct StreamOptions {
    /// First reconnect delay.
    pub reconnect_min: Duration,
    /// Longest reconnect delay.
    pub reconnect_max: Duration,
    /// Interval of the `PING` keep-alive (Polymarket asks for about 10 s).
    pub ping_interval: Duration,
    /// Capacity of the event channel.
    pub channel_capacity: usize,
}

impl Default for StreamOptions {
    fn default() -> Self {
        Self {
            reconnect_min: Duration::from_millis(500),
            reconnect_max: Duration::from_secs(30),
            ping_interval: Duration::from_secs(10),
            channel_capacity: 4_096,
        }
    }
}

/// One event from a market stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MarketEvent {
    /// (Re)connected and subscribed; full book snapshots follow, so the
    /// consumer should drop any incremental state it kept.
    Connected {
        /// Connections made so far, this one included.
        connection: u32,
    },
    /// A full book snapshot, sorted best-first.
    Book(OrderBook),
    /// One level changed: `size` is the new total at `price` (0 removes it).
    PriceChange {
        /// Token id.
        asset_id: String,
        /// Side of the level.
        side: Side,
        /// Level price.
        price: Decimal,
        /// New size at that price.
        size: Decimal,
        /// Best bid after the change, when sent.
        best_bid: Option<Decimal>,
        /// Best ask after the change, when sent.
        best_ask: Option<Decimal>,
    },
    /// A trade print.
    Trade(Trade),
    /// Something went wrong on the stream but it keeps running: a malformed
    /// or unexpected message (skipped), an error the venue sent, a sequence
    /// gap or checksum mismatch (the instrument is resubscribed), or a lost
    /// connection (reconnecting). Always names the venue and endpoint.
    Error(VenueError),
}

/// Handle of a running stream.
#[derive(Debug)]
pub struct StreamHandle {
    subscribe: mpsc::UnboundedSender<Vec<String>>,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

impl StreamHandle {
    /// Adds asset ids to the subscription (kept across reconnects). Returns
    /// false if the stream has stopped.
    pub fn subscribe(&self, asset_ids: Vec<String>) -> bool {
        self.subscribe.send(asset_ids).is_ok()
    }

    /// Stops the stream and waits for its task.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        if let Err(e) = self.task.await {
            tracing::warn!(error = %e, "market stream task ended abnormally");
        }
    }
}

#[derive(Debug, Deserialize)]
struct ChangeWire {
    #[serde(default)]
    asset_id: Option<String>,
    price: Dec,
    size: Dec,
    side: String,
    #[serde(default)]
    best_bid: OptDec,
    #[serde(default)]
    best_ask: OptDec,
}

#[derive(Debug, Deserialize)]
struct EventWire {
    event_type: String,
    #[serde(default)]
    asset_id: Option<String>,
    #[serde(default)]
    price_changes: Vec<ChangeWire>,
    /// The older `price_change` shape: one asset, `changes`.
    #[serde(default)]
    changes: Vec<ChangeWire>,
    #[serde(default)]
    price: OptDec,
    #[serde(default)]
    size: OptDec,
    #[serde(default)]
    side: Option<String>,
    #[serde(default)]
    timestamp: Option<String>,
}

fn side(text: &str) -> Option<Side> {
    match text.to_ascii_uppercase().as_str() {
        "BUY" => Some(Side::Buy),
        "SELL" => Some(Side::Sell),
        _ => None,
    }
}

/// Parses one text frame (an object or an array of them) into events.
/// Unknown event types are skipped; a malformed frame is an error string.
pub fn parse_market_message(text: &str) -> Result<Vec<MarketEvent>, String> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let items = match value {
        serde_json::Value::Array(items) => items,
        other => vec![other],
    };
    let mut out = Vec::new();
    for item in items {
        let raw = item.to_string();
        let event: EventWire = serde_json::from_str(&raw).map_err(|e| e.to_string())?;
        match event.event_type.as_str() {
            "book" => {
                let book: BookWire = serde_json::from_str(&raw).map_err(|e| e.to_string())?;
                out.push(MarketEvent::Book(book.into_model()));
            }
            "price_change" => {
                let changes = if event.price_changes.is_empty() {
                    event.changes
                } else {
                    event.price_changes
                };
                for c in changes {
                    let Some(s) = side(&c.side) else {
                        return Err(format!("unknown side {:?}", c.side));
                    };
                    out.push(MarketEvent::PriceChange {
                        asset_id: c
                            .asset_id
                            .or_else(|| event.asset_id.clone())
                            .unwrap_or_default(),
                        side: s,
                        price: c.price.0,
                        size: c.size.0,
                        best_bid: c.best_bid.0,
                        best_ask: c.best_ask.0,
                    });
                }
            }
            "last_trade_price" => {
                let (Some(price), Some(size)) = (event.price.0, event.size.0) else {
                    return Err("last_trade_price without price or size".to_owned());
                };
                out.push(MarketEvent::Trade(Trade {
                    api: Api::PolymarketClob,
                    symbol: event.asset_id.unwrap_or_default(),
                    trade_id: None,
                    price,
                    size,
                    side: event.side.as_deref().and_then(side),
                    timestamp: millis_string(event.timestamp.as_deref()),
                }));
            }
            _ => {}
        }
    }
    Ok(out)
}

fn subscribe_message(assets: &BTreeSet<String>) -> String {
    serde_json::json!({ "assets_ids": assets, "type": "market" }).to_string()
}

fn add_message(assets: &[String]) -> String {
    serde_json::json!({ "assets_ids": assets, "operation": "subscribe" }).to_string()
}

/// Starts the Polymarket CLOB market-channel stream for `asset_ids`.
pub fn spawn_polymarket_market_stream(
    endpoints: &Endpoints,
    asset_ids: Vec<String>,
    options: StreamOptions,
    cancel: CancellationToken,
) -> (StreamHandle, mpsc::Receiver<MarketEvent>) {
    let url = format!(
        "{}/ws/market",
        endpoints.polymarket_ws.trim_end_matches('/')
    );
    let (events_tx, events_rx) = mpsc::channel(options.channel_capacity.max(1));
    let (sub_tx, sub_rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(run(
        url,
        asset_ids.into_iter().collect(),
        options,
        cancel.clone(),
        events_tx,
        sub_rx,
    ));
    (
        StreamHandle {
            subscribe: sub_tx,
            cancel,
            task,
        },
        events_rx,
    )
}

fn backoff(options: &StreamOptions, failures: u32) -> Duration {
    let factor = 1u32 << failures.saturating_sub(1).min(16);
    let ceiling = options
        .reconnect_min
        .saturating_mul(factor)
        .min(options.reconnect_max);
    let ceiling_ms = u64::try_from(ceiling.as_millis())
        .unwrap_or(u64::MAX)
        .max(1);
    Duration::from_millis(rand::rng().random_range(ceiling_ms / 2..=ceiling_ms))
}

enum Ended {
    Stop,
    Reconnect,
}

async fn run(
    url: String,
    mut assets: BTreeSet<String>,
    options: StreamOptions,
    cancel: CancellationToken,
    events: mpsc::Sender<MarketEvent>,
    mut subs: mpsc::UnboundedReceiver<Vec<String>>,
) {
    let mut connections = 0u32;
    let mut failures = 0u32;
    loop {
        if cancel.is_cancelled() || events.is_closed() {
            return;
        }
        // New ids asked for while disconnected join the set before we subscribe.
        while let Ok(more) = subs.try_recv() {
            assets.extend(more);
        }
        crate::tls::install_crypto_provider();
        let connected = tokio::select! {
            () = cancel.cancelled() => return,
            result = tokio_tungstenite::connect_async(url.as_str()) => result,
        };
        match connected {
            Ok((ws, _)) => {
                connections += 1;
                failures = 0;
                tracing::info!(
                    url,
                    connections,
                    assets = assets.len(),
                    "market stream connected"
                );
                match session(
                    ws,
                    &mut assets,
                    &options,
                    &cancel,
                    &events,
                    &mut subs,
                    connections,
                )
                .await
                {
                    Ended::Stop => return,
                    Ended::Reconnect => {}
                }
            }
            Err(e) => {
                tracing::warn!(url, error = %e, "market stream: connect failed");
            }
        }
        failures += 1;
        let wait = backoff(&options, failures);
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
    }
}

async fn session<S>(
    ws: tokio_tungstenite::WebSocketStream<S>,
    assets: &mut BTreeSet<String>,
    options: &StreamOptions,
    cancel: &CancellationToken,
    events: &mpsc::Sender<MarketEvent>,
    subs: &mut mpsc::UnboundedReceiver<Vec<String>>,
    connection: u32,
) -> Ended
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut sink, mut source) = ws.split();
    if sink
        .send(Message::Text(subscribe_message(assets).into()))
        .await
        .is_err()
    {
        return Ended::Reconnect;
    }
    if events
        .send(MarketEvent::Connected { connection })
        .await
        .is_err()
    {
        return Ended::Stop;
    }
    let mut ping = tokio::time::interval(options.ping_interval);
    ping.reset();
    loop {
        tokio::select! {
            () = cancel.cancelled() => {
                if let Err(e) = sink.send(Message::Close(None)).await {
                    tracing::debug!(error = %e, "market stream: close frame not sent");
                }
                return Ended::Stop;
            }
            more = subs.recv() => {
                let Some(more) = more else { continue };
                let new: Vec<String> = more.into_iter().filter(|a| !assets.contains(a)).collect();
                if new.is_empty() {
                    continue;
                }
                assets.extend(new.iter().cloned());
                if sink.send(Message::Text(add_message(&new).into())).await.is_err() {
                    return Ended::Reconnect;
                }
            }
            _ = ping.tick() => {
                if sink.send(Message::Text("PING".into())).await.is_err() {
                    return Ended::Reconnect;
                }
            }
            frame = source.next() => {
                let text = match frame {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Close(_))) | None => {
                        tracing::warn!("market stream closed by the venue; reconnecting");
                        return Ended::Reconnect;
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "market stream error; reconnecting");
                        return Ended::Reconnect;
                    }
                };
                let text = text.as_str();
                if text == "PONG" || text.is_empty() {
                    continue;
                }
                match parse_market_message(text) {
                    Ok(parsed) => {
                        for event in parsed {
                            if events.send(event).await.is_err() {
                                return Ended::Stop;
                            }
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "market stream: skipped a malformed message"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn price_changes_in_both_shapes_and_trades_parse() {
        let new_shape = r#"{"event_type":"price_change","market":"0x1","timestamp":"1","price_changes":[{"asset_id":"100","price":"0.5","size":"200","side":"BUY","hash":"h","best_bid":"0.5","best_ask":"0.52"}]}"#;
        assert_eq!(
            parse_market_message(new_shape),
            Ok(vec![MarketEvent::PriceChange {
                asset_id: "100".to_owned(),
                side: Side::Buy,
                price: dec!(0.5),
                size: dec!(200),
                best_bid: Some(dec!(0.5)),
                best_ask: Some(dec!(0.52)),
            }])
        );
        let old_shape = r#"{"event_type":"price_change","asset_id":"7","changes":[{"price":"0.4","size":"0","side":"SELL"}]}"#;
        assert_eq!(parse_market_message(old_shape).map(|v| v.len()), Ok(1));
        let trade = r#"{"event_type":"last_trade_price","asset_id":"100","market":"0x1","price":"0.456","side":"BUY","size":"219.217767","fee_rate_bps":"0","timestamp":"1750428146322"}"#;
        let parsed = parse_market_message(trade).unwrap_or_default();
        let Some(MarketEvent::Trade(t)) = parsed.first() else {
            panic!("{parsed:?}");
        };
        assert_eq!(t.price, dec!(0.456));
        assert_eq!(t.size, dec!(219.217767));
        assert_eq!(
            t.timestamp.map(|t| t.timestamp_millis()),
            Some(1750428146322)
        );
        assert_eq!(
            parse_market_message(r#"{"event_type":"tick_size_change"}"#),
            Ok(vec![])
        );
        assert!(parse_market_message("not json").is_err());
    }
}
