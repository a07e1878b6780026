//! Polymarket's user channel (`{ws}/ws/user`): the venue pushes each trade of
//! the tenant's orders as it happens, so a fill that comes after the order's
//! answer (a resting order taken later, a "delayed" order matched later)
//! reaches the worker without polling.
//!
//! A background task connects, subscribes with the tenant's L2 credentials
//! (the channel's own authentication: `apiKey`, `secret`, `passphrase` in the
//! subscription message, never logged), keeps the socket alive with `PING`,
//! and turns every `trade` event into [`VenueFill`]s (one per order of ours
//! the trade touched, the fee from the market's parameters). When the socket
//! drops it reconnects with jittered, bounded back-off; [`UserChannel::is_connected`]
//! says whether it is up, so the worker polls `GET /data/trades` instead
//! while it is not. A trade is reported again as it progresses (`MATCHED`,
//! `MINED`, `CONFIRMED`): the consumer books each trade id once.
//!
//! The SDK's own user-channel client sits behind its `ws` feature, which
//! brings a second copy of the WebSocket stack (tokio-tungstenite 0.29 beside
//! the workspace's 0.30) and the unmaintained `backoff` crate; the channel's
//! protocol is a subscription message and JSON events, so it is spoken here
//! with the workspace's client, in the SDK's message shapes.
//!
//! Not here: booking the fills (the worker), REST polling (the executor's
//! [`Executor::fills`](super::Executor::fills)).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use rand::Rng;
use rust_decimal::Decimal;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::polymarket::polymarket_fee;
use super::{FeeParams, MarketRules, OrderSide, VenueFill};
use crate::num::{Dec, OptDec};

/// Reconnect and keep-alive settings of the user channel.
#[derive(Debug, Clone)]
pub struct UserChannelOptions {
    /// First reconnect delay; it doubles up to `reconnect_max`.
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    /// Interval of the `PING` keep-alive (the venue asks for about 10 s).
    /// A socket silent for three intervals is taken for dead.
    pub ping_interval: Duration,
}

impl Default for UserChannelOptions {
    fn default() -> Self {
        Self {
            reconnect_min: Duration::from_millis(500),
            reconnect_max: Duration::from_secs(30),
            ping_interval: Duration::from_secs(10),
        }
    }
}

/// The L2 credentials the channel subscribes with (`Debug` shows the key id
/// only).
#[derive(Clone)]
pub struct UserChannelAuth {
    pub api_key: String,
    pub secret: SecretString,
    pub passphrase: SecretString,
}

impl std::fmt::Debug for UserChannelAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserChannelAuth")
            .field("api_key", &self.api_key)
            .finish_non_exhaustive()
    }
}

/// A running user channel; dropping it stops the task.
#[derive(Debug)]
pub struct UserChannel {
    fills: mpsc::Receiver<VenueFill>,
    connected: watch::Receiver<bool>,
    cancel: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl UserChannel {
    /// Connects to `{ws_base}/ws/user` in the background. `rules` are the
    /// markets' fee parameters (shared with the executor, which reads them
    /// before it trades a market).
    pub fn spawn(
        ws_base: &str,
        auth: UserChannelAuth,
        rules: Arc<Mutex<HashMap<String, MarketRules>>>,
        options: UserChannelOptions,
    ) -> Self {
        let url = format!("{}/ws/user", ws_base.trim_end_matches('/'));
        let (fills_tx, fills) = mpsc::channel(4_096);
        let (connected_tx, connected) = watch::channel(false);
        let cancel = CancellationToken::new();
        let task = tokio::spawn(run(
            url,
            auth,
            rules,
            options,
            cancel.clone(),
            fills_tx,
            connected_tx,
        ));
        Self {
            fills,
            connected,
            cancel,
            task: Some(task),
        }
    }

    /// A channel fed by another venue's task (Kalshi's `fill` channel).
    pub(crate) fn from_parts(
        fills: mpsc::Receiver<VenueFill>,
        connected: watch::Receiver<bool>,
        cancel: CancellationToken,
        task: JoinHandle<()>,
    ) -> Self {
        Self {
            fills,
            connected,
            cancel,
            task: Some(task),
        }
    }

    /// Whether the socket is up and subscribed now.
    pub fn is_connected(&self) -> bool {
        *self.connected.borrow()
    }

    /// The next fill; `None` once the channel has stopped.
    pub async fn next(&mut self) -> Option<VenueFill> {
        self.fills.recv().await
    }

    /// A fill already received, without waiting.
    pub fn try_next(&mut self) -> Option<VenueFill> {
        self.fills.try_recv().ok()
    }

    /// Stops the task and waits for it.
    pub async fn shutdown(mut self) {
        self.cancel.cancel();
        if let Some(task) = self.task.take()
            && let Err(e) = task.await
        {
            tracing::warn!(error = %e, "user channel task ended abnormally");
        }
    }
}

impl Drop for UserChannel {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// The subscription message: the SDK's shape, with the credentials.
fn subscribe_message(auth: &UserChannelAuth) -> String {
    serde_json::json!({
        "type": "user",
        "operation": "subscribe",
        "markets": [],
        "assets_ids": [],
        "initial_dump": true,
        "auth": {
            "apiKey": auth.api_key,
            "secret": auth.secret.expose_secret(),
            "passphrase": auth.passphrase.expose_secret(),
        },
    })
    .to_string()
}

#[derive(Debug, Deserialize)]
struct MakerWire {
    order_id: String,
    #[serde(default)]
    owner: Option<String>,
    asset_id: String,
    matched_amount: Dec,
    price: Dec,
}

#[derive(Debug, Deserialize)]
struct TradeWire {
    id: String,
    market: String,
    asset_id: String,
    side: String,
    size: Dec,
    price: Dec,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    taker_order_id: Option<String>,
    #[serde(default)]
    trader_side: Option<String>,
    #[serde(default)]
    maker_orders: Vec<MakerWire>,
    #[serde(default, alias = "match_time")]
    matchtime: Option<String>,
    #[serde(default)]
    timestamp: Option<String>,
    #[serde(default)]
    fee_rate_bps: OptDec,
}

fn order_side(text: &str) -> Option<OrderSide> {
    match text.to_ascii_uppercase().as_str() {
        "BUY" => Some(OrderSide::Buy),
        "SELL" => Some(OrderSide::Sell),
        _ => None,
    }
}

/// Seconds or milliseconds since the epoch, as milliseconds.
fn millis(text: Option<&str>) -> i64 {
    let n = text.and_then(|t| t.trim().parse::<i64>().ok()).unwrap_or(0);
    if n > 0 && n < 100_000_000_000 {
        n * 1_000
    } else {
        n
    }
}

/// Parses one text frame (an event or an array of them) into our fills.
/// Events other than trades are skipped, as is a trade the chain failed.
pub fn parse_user_message(
    text: &str,
    api_key: &str,
    rules: &HashMap<String, MarketRules>,
) -> Result<Vec<VenueFill>, String> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let items = match value {
        serde_json::Value::Array(items) => items,
        other => vec![other],
    };
    let mut out = Vec::new();
    for item in items {
        if item.get("event_type").and_then(serde_json::Value::as_str) != Some("trade") {
            continue;
        }
        // The decimals read the literal JSON text, so parse from text.
        let trade: TradeWire =
            serde_json::from_str(&item.to_string()).map_err(|e| e.to_string())?;
        if trade
            .status
            .as_deref()
            .is_some_and(|s| s.eq_ignore_ascii_case("FAILED"))
        {
            continue;
        }
        let side = order_side(&trade.side)
            .ok_or_else(|| format!("trade {}: unknown side {:?}", trade.id, trade.side))?;
        let fees = rules.get(&trade.market).map_or(
            FeeParams {
                rate: trade.fee_rate_bps.0.unwrap_or_default() / Decimal::from(10_000),
                exponent: 1,
                taker_only: true,
            },
            |r| r.fees,
        );
        let ts = millis(trade.matchtime.as_deref().or(trade.timestamp.as_deref()));
        let ours: Vec<&MakerWire> = trade
            .maker_orders
            .iter()
            .filter(|m| m.owner.as_deref() == Some(api_key))
            .collect();
        let maker = match trade.trader_side.as_deref() {
            Some(s) => s.eq_ignore_ascii_case("MAKER"),
            None => !ours.is_empty(),
        };
        if !maker {
            let price = trade.price.0.normalize();
            let size = trade.size.0.normalize();
            out.push(VenueFill {
                fee: polymarket_fee(&fees, size, price),
                venue_order_id: trade.taker_order_id.clone().unwrap_or_default(),
                market: trade.market.clone(),
                trade_id: trade.id.clone(),
                instrument: trade.asset_id.clone(),
                side,
                price,
                size,
                ts,
            });
            continue;
        }
        for (n, m) in ours.into_iter().enumerate() {
            // A maker on the same token trades the other way; a maker on
            // the complement token trades the same way (a minted pair).
            let maker_side = match (m.asset_id == trade.asset_id, side) {
                (true, OrderSide::Buy) => OrderSide::Sell,
                (true, OrderSide::Sell) => OrderSide::Buy,
                (false, s) => s,
            };
            let price = m.price.0.normalize();
            let size = m.matched_amount.0.normalize();
            out.push(VenueFill {
                fee: if fees.taker_only {
                    Decimal::ZERO
                } else {
                    polymarket_fee(&fees, size, price)
                },
                venue_order_id: m.order_id.clone(),
                market: trade.market.clone(),
                trade_id: if n == 0 {
                    trade.id.clone()
                } else {
                    format!("{}#{n}", trade.id)
                },
                instrument: m.asset_id.clone(),
                side: maker_side,
                price,
                size,
                ts,
            });
        }
    }
    Ok(out)
}

fn backoff(options: &UserChannelOptions, failures: u32) -> Duration {
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

async fn run(
    url: String,
    auth: UserChannelAuth,
    rules: Arc<Mutex<HashMap<String, MarketRules>>>,
    options: UserChannelOptions,
    cancel: CancellationToken,
    fills: mpsc::Sender<VenueFill>,
    connected: watch::Sender<bool>,
) {
    let mut failures = 0u32;
    loop {
        if cancel.is_cancelled() || fills.is_closed() {
            return;
        }
        crate::tls::install_crypto_provider();
        let attempt = tokio::select! {
            () = cancel.cancelled() => return,
            result = tokio_tungstenite::connect_async(url.as_str()) => result,
        };
        match attempt {
            Ok((ws, _)) => {
                let stop = session(
                    ws,
                    &auth,
                    &rules,
                    &options,
                    &cancel,
                    &fills,
                    &connected,
                    &mut failures,
                )
                .await;
                connected.send_replace(false);
                if stop {
                    return;
                }
                tracing::warn!(url, "user channel lost; polling trades until it is back");
            }
            Err(e) => tracing::warn!(url, error = %e, "user channel: connect failed"),
        }
        failures += 1;
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(backoff(&options, failures)) => {}
        }
    }
}

/// One connection; true when the channel should stop for good. The
/// back-off resets only once the venue has said something: a subscription
/// it refuses (and closes) keeps backing off.
#[allow(clippy::too_many_arguments)]
async fn session<S>(
    ws: tokio_tungstenite::WebSocketStream<S>,
    auth: &UserChannelAuth,
    rules: &Mutex<HashMap<String, MarketRules>>,
    options: &UserChannelOptions,
    cancel: &CancellationToken,
    fills: &mpsc::Sender<VenueFill>,
    connected: &watch::Sender<bool>,
    failures: &mut u32,
) -> bool
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut sink, mut source) = ws.split();
    if sink
        .send(Message::Text(subscribe_message(auth).into()))
        .await
        .is_err()
    {
        return false;
    }
    connected.send_replace(true);
    tracing::info!("user channel subscribed");
    let mut ping = tokio::time::interval(options.ping_interval);
    ping.reset();
    let mut last_heard = Instant::now();
    loop {
        tokio::select! {
            () = cancel.cancelled() => {
                if let Err(e) = sink.send(Message::Close(None)).await {
                    tracing::debug!(error = %e, "user channel: close frame not sent");
                }
                return true;
            }
            _ = ping.tick() => {
                if last_heard.elapsed() > options.ping_interval * 3 {
                    tracing::warn!("user channel silent for three keep-alive intervals");
                    return false;
                }
                if sink.send(Message::Text("PING".into())).await.is_err() {
                    return false;
                }
            }
            frame = source.next() => {
                let text = match frame {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Close(_))) | None => return false,
                    Some(Ok(_)) => {
                        last_heard = Instant::now();
                        continue;
                    }
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "user channel error");
                        return false;
                    }
                };
                last_heard = Instant::now();
                let text = text.as_str();
                if text.contains("\"error\"") && !text.contains("event_type") {
                    let excerpt: String = text.chars().take(200).collect();
                    tracing::warn!(frame = %excerpt, "user channel: the venue refused the subscription");
                    continue;
                }
                *failures = 0;
                if text == "PONG" || text.is_empty() {
                    continue;
                }
                let known = rules.lock().unwrap_or_else(|p| p.into_inner()).clone();
                match parse_user_message(text, &auth.api_key, &known) {
                    Ok(parsed) => {
                        for fill in parsed {
                            if fills.send(fill).await.is_err() {
                                return true;
                            }
                        }
                    }
                    Err(e) => {
                        let excerpt: String = text.chars().take(200).collect();
                        tracing::warn!(error = %e, frame = %excerpt, "user channel: unreadable event skipped");
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use rust_decimal_macros::dec;

    use super::*;

    const KEY: &str = "01010101-0101-0101-0101-010101010101";

    fn rules() -> HashMap<String, MarketRules> {
        HashMap::from([(
            "0xm".to_owned(),
            MarketRules {
                tick_size: dec!(0.01),
                min_size: dec!(5),
                neg_risk: false,
                fees: FeeParams {
                    rate: dec!(0.07),
                    exponent: 1,
                    taker_only: true,
                },
            },
        )])
    }

    #[test]
    fn a_taker_trade_becomes_one_fill_with_the_markets_fee() {
        let text = r#"[{"event_type":"trade","id":"t1","market":"0xm","asset_id":"11","side":"BUY",
            "size":"100","price":"0.40","status":"MATCHED","taker_order_id":"0xo","trader_side":"TAKER",
            "owner":"01010101-0101-0101-0101-010101010101","maker_orders":[],"matchtime":"1777467550"}]"#;
        let fills = parse_user_message(text, KEY, &rules()).unwrap();
        assert_eq!(
            fills,
            vec![VenueFill {
                trade_id: "t1".to_owned(),
                venue_order_id: "0xo".to_owned(),
                market: "0xm".to_owned(),
                instrument: "11".to_owned(),
                side: OrderSide::Buy,
                price: dec!(0.4),
                size: dec!(100),
                fee: dec!(1.68),
                ts: 1_777_467_550_000,
            }]
        );
    }

    #[test]
    fn a_maker_fill_is_ours_by_owner_and_pays_no_taker_fee() {
        let text = r#"{"event_type":"trade","id":"t2","market":"0xm","asset_id":"11","side":"BUY",
            "size":"30","price":"0.40","status":"CONFIRMED","trader_side":"MAKER",
            "maker_orders":[
              {"order_id":"0xother","owner":"99999999-0101-0101-0101-010101010101","asset_id":"11","matched_amount":"20","price":"0.40","outcome":"Yes"},
              {"order_id":"0xmine","owner":"01010101-0101-0101-0101-010101010101","asset_id":"11","matched_amount":"10","price":"0.40","outcome":"Yes"}]}"#;
        let fills = parse_user_message(text, KEY, &rules()).unwrap();
        assert_eq!(fills.len(), 1);
        assert_eq!(fills[0].venue_order_id, "0xmine");
        assert_eq!(fills[0].side, OrderSide::Sell);
        assert_eq!(fills[0].size, dec!(10));
        assert_eq!(fills[0].fee, Decimal::ZERO);
    }

    #[test]
    fn order_events_and_failed_trades_are_skipped() {
        let text = r#"[{"event_type":"order","id":"0xo","type":"PLACEMENT"},
            {"event_type":"trade","id":"t3","market":"0xm","asset_id":"11","side":"BUY","size":"1","price":"0.5","status":"FAILED"}]"#;
        assert_eq!(parse_user_message(text, KEY, &rules()).unwrap(), vec![]);
    }

    #[test]
    fn the_subscription_carries_the_credentials_and_debug_does_not() {
        let auth = UserChannelAuth {
            api_key: KEY.to_owned(),
            secret: SecretString::from("c2VjcmV0"),
            passphrase: SecretString::from("pass-phrase"),
        };
        let message: serde_json::Value = serde_json::from_str(&subscribe_message(&auth)).unwrap();
        assert_eq!(message["type"], "user");
        assert_eq!(message["auth"]["apiKey"], KEY);
        assert_eq!(message["auth"]["secret"], "c2VjcmV0");
        assert_eq!(message["auth"]["passphrase"], "pass-phrase");
        let debug = format!("{auth:?}");
        assert!(
            !debug.contains("c2VjcmV0") && !debug.contains("pass-phrase"),
            "{debug}"
        );
    }
}
