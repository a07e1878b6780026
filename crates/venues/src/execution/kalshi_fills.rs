//! Kalshi's private `fill` channel: the exchange pushes every fill of the
//! account's orders over its WebSocket (`/trade-api/ws/v2`) as it happens,
//! so a fill that comes after the order's answer (a resting order taken
//! later) reaches the worker without polling `GET /portfolio/fills`.
//!
//! A background task connects with the handshake signed as a REST request
//! is (RSA-PSS over `{timestamp_ms}GET/trade-api/ws/v2`, afresh for every
//! connection), subscribes to `fill` (the market filter does not apply to
//! it: every market of the account), and turns each `fill` message into a
//! [`VenueFill`], its fee the exchange's `fee_cost` when sent, else the
//! series' published rate with the per-order accumulator (as the REST
//! fills are read, [`super::kalshi`]). When the socket drops or goes
//! silent (Kalshi pings every 10 s) it reconnects with jittered, bounded
//! back-off; [`UserChannel::is_connected`] says whether it is subscribed,
//! so the worker polls while it is not. The consumer books each trade id
//! once: a fill is also in the order's answer and in the polled fills.

use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use rand::Rng;
use serde::Deserialize;
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::VenueFill;
use super::kalshi::{FillWire, fills_of};
use super::user_channel::{UserChannel, UserChannelOptions};
use crate::signing::kalshi::KalshiSigner;
use crate::stream::driver::handshake;
use crate::stream::kalshi::handshake_headers;

/// Connects to Kalshi's WebSocket at `ws_url` (with `/trade-api/ws/v2`) in
/// the background and streams the account's fills. `options.ping_interval`
/// is Kalshi's ping interval: three of them without a frame and the
/// socket is taken for dead.
pub fn spawn_fill_channel(
    ws_url: &str,
    signer: Arc<KalshiSigner>,
    options: UserChannelOptions,
) -> UserChannel {
    let (fills_tx, fills) = mpsc::channel(4_096);
    let (connected_tx, connected) = watch::channel(false);
    let cancel = CancellationToken::new();
    let task = tokio::spawn(run(
        crate::stream::kalshi::ws_url(ws_url),
        signer,
        options,
        cancel.clone(),
        fills_tx,
        connected_tx,
    ));
    UserChannel::from_parts(fills, connected, cancel, task)
}

#[derive(Debug, Deserialize)]
struct Envelope {
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Debug, Deserialize)]
struct FillMessage {
    msg: FillWire,
}

#[derive(Debug, Deserialize)]
struct SubscribedMessage {
    msg: SubscribedWire,
}

#[derive(Debug, Deserialize)]
struct SubscribedWire {
    channel: String,
}

/// What one text frame of the channel says.
#[derive(Debug, PartialEq)]
enum Frame {
    Subscribed,
    Fill(VenueFill),
    Error(String),
    Other,
}

fn parse(text: &str) -> Result<Frame, String> {
    let envelope: Envelope = serde_json::from_str(text).map_err(|e| e.to_string())?;
    Ok(match envelope.kind.as_str() {
        "subscribed" => {
            let wire: SubscribedMessage = serde_json::from_str(text).map_err(|e| e.to_string())?;
            if wire.msg.channel == "fill" {
                Frame::Subscribed
            } else {
                Frame::Other
            }
        }
        "fill" => {
            let wire: FillMessage = serde_json::from_str(text).map_err(|e| e.to_string())?;
            if wire.msg_is_empty() {
                return Err("a fill without its trade id or order id".to_owned());
            }
            let fill = fills_of(vec![wire.msg])
                .pop()
                .ok_or_else(|| "a fill message with no fill".to_owned())?;
            Frame::Fill(fill)
        }
        "error" => Frame::Error(text.to_owned()),
        _ => Frame::Other,
    })
}

impl FillMessage {
    fn msg_is_empty(&self) -> bool {
        (self.msg.trade_id.is_empty() && self.msg.fill_id.is_empty())
            || self.msg.order_id.is_empty()
    }
}

/// The start of a message, for a log line.
fn excerpt(text: &str) -> String {
    text.chars().take(200).collect()
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
    signer: Arc<KalshiSigner>,
    options: UserChannelOptions,
    cancel: CancellationToken,
    fills: mpsc::Sender<VenueFill>,
    connected: watch::Sender<bool>,
) {
    let mut failures = 0u32;
    let endpoint = format!("WS {url}");
    loop {
        if cancel.is_cancelled() || fills.is_closed() {
            return;
        }
        crate::tls::install_crypto_provider();
        let headers = handshake_headers(&signer, &url, chrono::Utc::now().timestamp_millis());
        let attempt = match handshake(&url, headers) {
            Ok(request) => tokio::select! {
                () = cancel.cancelled() => return,
                result = tokio_tungstenite::connect_async(request) => result,
            },
            Err(e) => Err(e),
        };
        match attempt {
            Ok((ws, _)) => {
                let (mut sink, mut source) = ws.split();
                let subscribe = serde_json::json!({
                    "id": 1, "cmd": "subscribe", "params": {"channels": ["fill"]}
                })
                .to_string();
                if let Err(e) = sink.send(Message::Text(subscribe.into())).await {
                    tracing::warn!(venue = "kalshi", endpoint, error = %e, "fill channel: subscribe not sent");
                } else {
                    let dead_after = options.ping_interval.saturating_mul(3);
                    loop {
                        let frame = tokio::select! {
                            () = cancel.cancelled() => {
                                connected.send_replace(false);
                                return;
                            }
                            frame = tokio::time::timeout(dead_after, source.next()) => frame,
                        };
                        let text = match frame {
                            Err(_) => {
                                tracing::warn!(
                                    venue = "kalshi",
                                    endpoint,
                                    "fill channel: silent for {}s; reconnecting",
                                    dead_after.as_secs()
                                );
                                break;
                            }
                            Ok(Some(Ok(Message::Text(text)))) => text,
                            Ok(Some(Ok(Message::Close(close)))) => {
                                tracing::warn!(venue = "kalshi", endpoint, close = ?close, "fill channel closed by the venue; reconnecting");
                                break;
                            }
                            Ok(Some(Ok(_))) => continue,
                            Ok(Some(Err(e))) => {
                                tracing::warn!(venue = "kalshi", endpoint, error = %e, "fill channel lost; reconnecting");
                                break;
                            }
                            Ok(None) => {
                                tracing::warn!(
                                    venue = "kalshi",
                                    endpoint,
                                    "fill channel ended; reconnecting"
                                );
                                break;
                            }
                        };
                        match parse(text.as_str()) {
                            Ok(Frame::Subscribed) => {
                                failures = 0;
                                connected.send_replace(true);
                                tracing::info!(
                                    venue = "kalshi",
                                    endpoint,
                                    "fill channel subscribed"
                                );
                            }
                            Ok(Frame::Fill(fill)) => {
                                if fills.send(fill).await.is_err() {
                                    connected.send_replace(false);
                                    return;
                                }
                            }
                            Ok(Frame::Error(body)) => {
                                tracing::warn!(venue = "kalshi", endpoint, body = %excerpt(&body), "fill channel: the venue sent an error");
                            }
                            Ok(Frame::Other) => {}
                            Err(detail) => {
                                tracing::warn!(venue = "kalshi", endpoint, detail, body = %excerpt(text.as_str()), "fill channel: skipped a malformed message");
                            }
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!(venue = "kalshi", endpoint, error = %e, "fill channel: connect failed");
            }
        }
        connected.send_replace(false);
        failures += 1;
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(backoff(&options, failures)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::execution::OrderSide;
    use rust_decimal_macros::dec;

    #[test]
    fn a_fill_message_is_a_venue_fill_with_the_exchanges_fee() {
        let frame = parse(
            r#"{"type":"fill","sid":13,"msg":{"trade_id":"d91bc706-ee49-470d-82d8-11418bda6fed","order_id":"ee587a1c-8b87-4dcf-b721-9f6f790619fa","market_ticker":"HIGHNY-22DEC23-B53.5","is_taker":true,"side":"yes","yes_price_dollars":"0.7500","count_fp":"278.00","fee_cost":"3.6500","action":"buy","ts":1671899397}}"#,
        )
        .unwrap();
        let Frame::Fill(fill) = frame else {
            panic!("{frame:?}");
        };
        assert_eq!(fill.trade_id, "d91bc706-ee49-470d-82d8-11418bda6fed");
        assert_eq!(fill.venue_order_id, "ee587a1c-8b87-4dcf-b721-9f6f790619fa");
        assert_eq!(fill.market, "HIGHNY-22DEC23-B53.5");
        assert_eq!(fill.instrument, "HIGHNY-22DEC23-B53.5:yes");
        assert_eq!(
            (fill.side, fill.price, fill.size, fill.fee, fill.ts),
            (
                OrderSide::Buy,
                dec!(0.75),
                dec!(278),
                dec!(3.65),
                1_671_899_397_000
            )
        );
    }

    #[test]
    fn only_the_fill_subscription_counts_and_junk_is_an_error() {
        assert_eq!(
            parse(r#"{"id":1,"type":"subscribed","msg":{"channel":"fill","sid":1}}"#),
            Ok(Frame::Subscribed)
        );
        assert_eq!(
            parse(r#"{"id":1,"type":"subscribed","msg":{"channel":"ticker","sid":2}}"#),
            Ok(Frame::Other)
        );
        assert!(parse(r#"{"type":"fill","msg":{"market_ticker":"T"}}"#).is_err());
        assert!(parse("]").is_err());
    }
}
