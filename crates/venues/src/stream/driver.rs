//! The connection loop shared by the crypto venues' streams.
//!
//! It owns everything that is not venue protocol: connecting, jittered and
//! capped reconnect backoff, the subscription set (initial symbols plus any
//! added through the [`StreamHandle`]), keep-alives, an idle timeout, a
//! maximum connection age, cancellation, and turning failures into
//! [`MarketEvent::Error`]s with context. A [`Protocol`] says what to send on
//! connect and on a runtime add, and turns each text frame into events, frames
//! to send back (resubscriptions) or a request to reconnect. Protocols do no
//! I/O, so they are unit-tested on strings.
//!
//! WebSocket ping frames from the venue (Binance every few minutes) are
//! answered by tungstenite itself: it queues the pong when it reads the ping
//! and flushes it on the next read or write.

use std::collections::BTreeSet;
use std::future;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::{MarketEvent, StreamHandle, StreamOptions, backoff};
use crate::error::{ErrorKind, VenueError};
use crate::model::Api;

/// What one text frame asked for.
#[derive(Debug, Default)]
pub(crate) struct Output {
    /// Events for the consumer, in order.
    pub events: Vec<MarketEvent>,
    /// Frames to send to the venue (e.g. a resubscription).
    pub send: Vec<String>,
    /// Drop the connection and reconnect, with this reason.
    pub reconnect: Option<String>,
}

/// One venue's wire protocol, without I/O.
pub(crate) trait Protocol: Send + 'static {
    /// The venue, for errors and books.
    fn api(&self) -> Api;

    /// The symbol as the venue wants it (case), so duplicates collapse.
    fn normalise(&self, symbol: &str) -> String {
        symbol.trim().to_owned()
    }

    /// URL of a new connection subscribed to `symbols`.
    fn url(&self, symbols: &BTreeSet<String>) -> String;

    /// Headers of the WebSocket handshake, for a venue that authenticates
    /// the connection (Kalshi); built afresh for every connection.
    fn handshake_headers(&self) -> Vec<(&'static str, String)> {
        Vec::new()
    }

    /// Frames to send once connected. Drops all per-connection state (books,
    /// sequences), since the venue re-sends snapshots.
    fn on_connect(&mut self, symbols: &BTreeSet<String>) -> Vec<String>;

    /// Frames that subscribe `added` (not yet subscribed) on a live connection.
    fn on_add(&mut self, added: &[String]) -> Vec<String>;

    /// Handles one text frame.
    fn on_text(&mut self, text: &str) -> Output;

    /// An application-level ping and its interval, when the venue wants one.
    fn keepalive(&self, _options: &StreamOptions) -> Option<(Duration, String)> {
        None
    }

    /// Reconnect when nothing at all arrives for this long while subscribed.
    fn idle_timeout(&self) -> Option<Duration> {
        None
    }

    /// Reconnect proactively after this long (Binance drops connections at 24 h).
    fn max_connection_age(&self) -> Option<Duration> {
        None
    }
}

/// A stream error with the venue, the endpoint and a body excerpt.
pub(crate) fn stream_error(
    api: Api,
    endpoint: &str,
    detail: impl Into<String>,
    body: Option<&str>,
) -> VenueError {
    let err = VenueError::new(
        api,
        endpoint,
        ErrorKind::Stream {
            detail: detail.into(),
        },
    );
    match body {
        Some(body) => err.with_body(body.as_bytes()),
        None => err,
    }
}

/// A skipped malformed message (the stream keeps running).
pub(crate) fn malformed(
    api: Api,
    endpoint: &str,
    count: u64,
    detail: &str,
    body: &str,
) -> VenueError {
    tracing::warn!(venue = %api, endpoint, count, detail, "market stream: skipped a malformed message");
    VenueError::new(
        api,
        endpoint,
        ErrorKind::Decode {
            detail: format!("malformed stream message #{count} skipped: {detail}"),
        },
    )
    .with_body(body.as_bytes())
}

/// Endpoint text for errors: `WS <url>` without any query string.
pub(crate) fn ws_endpoint(url: &str) -> String {
    let bare = url.split('?').next().unwrap_or(url);
    format!("WS {bare}")
}

/// Spawns the connection loop for `protocol`.
pub(crate) fn spawn<P: Protocol>(
    protocol: P,
    symbols: Vec<String>,
    options: StreamOptions,
    cancel: CancellationToken,
) -> (StreamHandle, mpsc::Receiver<MarketEvent>) {
    let (events_tx, events_rx) = mpsc::channel(options.channel_capacity.max(1));
    let (sub_tx, sub_rx) = mpsc::unbounded_channel();
    let symbols = symbols
        .iter()
        .map(|s| protocol.normalise(s))
        .filter(|s| !s.is_empty())
        .collect();
    let task = tokio::spawn(run(
        protocol,
        symbols,
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

enum Ended {
    Stop,
    Reconnect,
}

async fn run<P: Protocol>(
    mut protocol: P,
    mut symbols: BTreeSet<String>,
    options: StreamOptions,
    cancel: CancellationToken,
    events: mpsc::Sender<MarketEvent>,
    mut subs: mpsc::UnboundedReceiver<Vec<String>>,
) {
    let api = protocol.api();
    let mut connections = 0u32;
    let mut failures = 0u32;
    loop {
        if cancel.is_cancelled() || events.is_closed() {
            return;
        }
        // Symbols asked for while disconnected join the set before we connect.
        while let Ok(more) = subs.try_recv() {
            symbols.extend(more.iter().map(|s| protocol.normalise(s)));
        }
        symbols.retain(|s| !s.is_empty());
        let url = protocol.url(&symbols);
        let endpoint = ws_endpoint(&url);
        crate::tls::install_crypto_provider();
        let request = handshake(&url, protocol.handshake_headers());
        let connected = match request {
            Ok(request) => tokio::select! {
                () = cancel.cancelled() => return,
                result = tokio_tungstenite::connect_async(request) => result,
            },
            Err(e) => Err(e),
        };
        match connected {
            Ok((ws, _)) => {
                connections += 1;
                failures = 0;
                tracing::info!(venue = %api, endpoint, connections, symbols = symbols.len(), "market stream connected");
                let ended = session(
                    ws,
                    &mut protocol,
                    &mut symbols,
                    &endpoint,
                    &options,
                    &cancel,
                    &events,
                    &mut subs,
                    connections,
                )
                .await;
                if let Ended::Stop = ended {
                    return;
                }
            }
            Err(e) => {
                let err = stream_error(api, &endpoint, format!("connect failed: {e}"), None);
                tracing::warn!(error = %err, "market stream: connect failed");
                if events.send(MarketEvent::Error(err)).await.is_err() {
                    return;
                }
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

/// The handshake request for `url` with `headers` added.
pub(crate) fn handshake(
    url: &str,
    headers: Vec<(&'static str, String)>,
) -> Result<
    tokio_tungstenite::tungstenite::handshake::client::Request,
    tokio_tungstenite::tungstenite::Error,
> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
    let mut request = url.into_client_request()?;
    for (name, value) in headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(tokio_tungstenite::tungstenite::http::Error::from)?;
        let mut value = HeaderValue::from_str(&value)
            .map_err(tokio_tungstenite::tungstenite::http::Error::from)?;
        value.set_sensitive(true);
        request.headers_mut().insert(name, value);
    }
    Ok(request)
}

async fn sleep_until_or_forever(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => future::pending().await,
    }
}

#[allow(clippy::too_many_arguments)] // one call site; a struct would only rename them
async fn session<S, P>(
    ws: tokio_tungstenite::WebSocketStream<S>,
    protocol: &mut P,
    symbols: &mut BTreeSet<String>,
    endpoint: &str,
    options: &StreamOptions,
    cancel: &CancellationToken,
    events: &mpsc::Sender<MarketEvent>,
    subs: &mut mpsc::UnboundedReceiver<Vec<String>>,
    connection: u32,
) -> Ended
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    P: Protocol,
{
    let api = protocol.api();
    let (mut sink, mut source) = ws.split();
    for frame in protocol.on_connect(symbols) {
        if sink.send(Message::Text(frame.into())).await.is_err() {
            return Ended::Reconnect;
        }
    }
    if events
        .send(MarketEvent::Connected { connection })
        .await
        .is_err()
    {
        return Ended::Stop;
    }
    let keepalive = protocol.keepalive(options);
    let mut ping = tokio::time::interval(
        keepalive
            .as_ref()
            .map_or(Duration::from_secs(3600), |(every, _)| *every),
    );
    ping.reset();
    let idle = protocol.idle_timeout();
    let mut idle_deadline = idle.map(|d| Instant::now() + d);
    let age_deadline = protocol.max_connection_age().map(|d| Instant::now() + d);

    let lost = |reason: String| stream_error(api, endpoint, reason, None);
    loop {
        let idle_armed = if symbols.is_empty() {
            None
        } else {
            idle_deadline
        };
        tokio::select! {
            () = cancel.cancelled() => {
                if let Err(e) = sink.send(Message::Close(None)).await {
                    tracing::debug!(error = %e, "market stream: close frame not sent");
                }
                return Ended::Stop;
            }
            more = subs.recv() => {
                let Some(more) = more else { continue };
                let new: Vec<String> = more
                    .iter()
                    .map(|s| protocol.normalise(s))
                    .filter(|s| !s.is_empty() && !symbols.contains(s))
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect();
                if new.is_empty() {
                    continue;
                }
                symbols.extend(new.iter().cloned());
                for frame in protocol.on_add(&new) {
                    if sink.send(Message::Text(frame.into())).await.is_err() {
                        return Ended::Reconnect;
                    }
                }
                idle_deadline = idle.map(|d| Instant::now() + d);
            }
            _ = ping.tick(), if keepalive.is_some() => {
                if let Some((_, text)) = &keepalive
                    && sink.send(Message::Text(text.clone().into())).await.is_err()
                {
                    return Ended::Reconnect;
                }
            }
            () = sleep_until_or_forever(idle_armed) => {
                let err = lost(format!(
                    "no message for {}s; reconnecting",
                    idle.unwrap_or_default().as_secs()
                ));
                tracing::warn!(error = %err, "market stream idle");
                return report_then_reconnect(events, err).await;
            }
            () = sleep_until_or_forever(age_deadline) => {
                tracing::info!(venue = %api, endpoint, "market stream: rotating a long-lived connection");
                if let Err(e) = sink.send(Message::Close(None)).await {
                    tracing::debug!(error = %e, "market stream: close frame not sent");
                }
                return Ended::Reconnect;
            }
            frame = source.next() => {
                idle_deadline = idle.map(|d| Instant::now() + d);
                let text = match frame {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Close(close))) => {
                        let reason = close.map_or_else(String::new, |c| format!(" ({} {})", c.code, c.reason));
                        let err = lost(format!("closed by the venue{reason}; reconnecting"));
                        tracing::warn!(error = %err, "market stream closed");
                        return report_then_reconnect(events, err).await;
                    }
                    None => {
                        let err = lost("connection ended; reconnecting".to_owned());
                        tracing::warn!(error = %err, "market stream ended");
                        return report_then_reconnect(events, err).await;
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => {
                        let err = lost(format!("connection lost: {e}; reconnecting"));
                        tracing::warn!(error = %err, "market stream error");
                        return report_then_reconnect(events, err).await;
                    }
                };
                let out = protocol.on_text(text.as_str());
                for frame in out.send {
                    if sink.send(Message::Text(frame.into())).await.is_err() {
                        return Ended::Reconnect;
                    }
                }
                for event in out.events {
                    if events.send(event).await.is_err() {
                        return Ended::Stop;
                    }
                }
                if let Some(reason) = out.reconnect {
                    let err = lost(format!("{reason}; reconnecting"));
                    tracing::warn!(error = %err, "market stream: reconnecting");
                    if let Err(e) = sink.send(Message::Close(None)).await {
                        tracing::debug!(error = %e, "market stream: close frame not sent");
                    }
                    return report_then_reconnect(events, err).await;
                }
            }
        }
    }
}

async fn report_then_reconnect(events: &mpsc::Sender<MarketEvent>, err: VenueError) -> Ended {
    if events.send(MarketEvent::Error(err)).await.is_err() {
        Ended::Stop
    } else {
        Ended::Reconnect
    }
}

/// Sorted-map helpers for venues whose books arrive as deltas.
pub(crate) mod book {
    use std::collections::BTreeMap;

    use rust_decimal::Decimal;

    use crate::model::Level;

    /// One side of a local book, keyed by price.
    #[derive(Debug, Clone, Default)]
    pub(crate) struct Side {
        levels: BTreeMap<Decimal, Decimal>,
    }

    impl Side {
        /// Sets the size at `price`; zero removes the level.
        /// The venue's latest text form of the price is kept (`remove` first:
        /// `insert` would keep the old key, and Kraken's checksum hashes it).
        pub(crate) fn set(&mut self, price: Decimal, size: Decimal) {
            self.levels.remove(&price);
            if !size.is_zero() {
                self.levels.insert(price, size);
            }
        }

        /// Up to `n` levels, best first (`descending` for bids).
        pub(crate) fn best(&self, n: usize, descending: bool) -> Vec<Level> {
            let level = |(p, s): (&Decimal, &Decimal)| Level::new(*p, *s);
            if descending {
                self.levels.iter().rev().take(n).map(level).collect()
            } else {
                self.levels.iter().take(n).map(level).collect()
            }
        }

        /// The size at `price` (zero when there is no level).
        pub(crate) fn size(&self, price: Decimal) -> Decimal {
            self.levels.get(&price).copied().unwrap_or_default()
        }

        /// Keeps only the best `n` levels.
        pub(crate) fn truncate(&mut self, n: usize, descending: bool) {
            while self.levels.len() > n {
                let worst = if descending {
                    self.levels.keys().next().copied()
                } else {
                    self.levels.keys().next_back().copied()
                };
                match worst {
                    Some(p) => {
                        self.levels.remove(&p);
                    }
                    None => break,
                }
            }
        }

        /// Number of levels.
        #[cfg(test)]
        pub(crate) fn len(&self) -> usize {
            self.levels.len()
        }
    }
}
