//! Delivery of notifications: a signed JSON POST to a webhook, or a
//! Telegram `sendMessage`, at most `POLYBOT_ALERT_RATE_PER_MINUTE` a minute
//! per channel.
//!
//! A webhook is signed with a timestamp, Stripe's scheme:
//! `X-Polybot-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`
//! under the channel's secret, so a receiver that checks `t` against
//! [`TOLERANCE_SECS`] refuses a replayed delivery. Before connecting,
//! the webhook's host is resolved and checked (`ssrf`), and the connection
//! is pinned to the checked addresses. Delivery happens after the state
//! change commits: at most once; failures are logged (without the URL,
//! which may hold a bot token) and counted in
//! `polybot_alert_notifications_total`. Which alerts to send is decided in
//! `rules`; the channels' API is in `channels`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use polybot_core::TenantId;
use polybot_store::DbError;
use serde::Serialize;
use serde_json::json;
use sha2::Sha256;
use uuid::Uuid;

use super::channels::{Channel, operator_channels, tenant_channels};
use super::sealing::ChannelKey;
use super::ssrf::{Resolve, SystemResolver, Targets, resolve_target};
use crate::AppState;

/// The header carrying a webhook body's signature.
pub const SIGNATURE_HEADER: &str = "x-polybot-signature";

/// One notification.
#[derive(Debug, Clone, Serialize)]
pub struct Notification {
    /// heartbeat_stale, crash_loop, breaker_open, daily_loss, fenced.
    pub alert: String,
    /// firing or resolved.
    pub status: &'static str,
    pub tenant_id: Uuid,
    pub tenant_name: String,
    /// The strategy of a breaker alert; empty otherwise.
    pub subject: String,
    pub summary: String,
    pub at: DateTime<Utc>,
}

impl Notification {
    fn text(&self) -> String {
        let mark = if self.status == "firing" {
            "FIRING"
        } else {
            "RESOLVED"
        };
        let subject = if self.subject.is_empty() {
            String::new()
        } else {
            format!(" [{}]", self.subject)
        };
        format!(
            "{mark} {}{subject}: tenant {} ({})\n{}",
            self.alert, self.tenant_name, self.tenant_id, self.summary
        )
    }
}

/// How far a signature's timestamp may be from a receiver's clock, as
/// docs/operators.md tells receivers.
pub const TOLERANCE_SECS: i64 = 300;

fn mac(secret: &str, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The signature header's value: `t=<timestamp>,v1=<hex HMAC-SHA256 of
/// "<timestamp>.<body>" under secret>`.
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let digest = mac(secret, timestamp, body).finalize().into_bytes();
    format!("t={timestamp},v1={}", hex::encode(digest))
}

/// What a receiver does: whether `header` signs `body` under `secret` with
/// a timestamp within [`TOLERANCE_SECS`] of `now` (compared in constant time).
pub fn verify(secret: &str, header: &str, body: &[u8], now: i64) -> bool {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
            Some(("v1", v)) => signatures.extend(hex::decode(v).ok()),
            _ => {}
        }
    }
    let Some(timestamp) = timestamp else {
        return false;
    };
    if (now - timestamp).abs() > TOLERANCE_SECS {
        return false;
    }
    signatures
        .iter()
        .any(|sig| mac(secret, timestamp, body).verify_slice(sig).is_ok())
}

/// Sends notifications, at most `rate_per_minute` per channel.
#[derive(Debug, Clone)]
pub struct Notifier {
    /// For Telegram (a host the operator configures).
    client: reqwest::Client,
    send_timeout: Duration,
    resolver: Arc<dyn Resolve>,
    targets: Targets,
    /// Opens the channels' sealed secrets.
    key: Arc<ChannelKey>,
    telegram_base: String,
    rate_per_minute: usize,
    sent: Arc<Mutex<HashMap<Uuid, VecDeque<Instant>>>>,
    metrics: crate::metrics::Metrics,
}

impl Notifier {
    /// Webhooks reach only public addresses, resolved by the system resolver.
    pub fn new(state: &AppState) -> Self {
        Self::with_resolver(state, Arc::new(SystemResolver), Targets::Global)
    }

    /// With another resolver and address rule (tests: fixed answers,
    /// receivers on loopback).
    pub fn with_resolver(state: &AppState, resolver: Arc<dyn Resolve>, targets: Targets) -> Self {
        let settings = &state.settings.alerts;
        let client = reqwest::Client::builder()
            .timeout(settings.send_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Self {
            client,
            send_timeout: settings.send_timeout,
            resolver,
            targets,
            key: state.channel_key.clone(),
            telegram_base: settings.telegram_api_base.clone(),
            rate_per_minute: settings.rate_per_minute.max(1),
            sent: Arc::default(),
            metrics: state.metrics.clone(),
        }
    }

    fn admit(&self, channel: Uuid) -> bool {
        let Ok(mut sent) = self.sent.lock() else {
            return true;
        };
        let window = sent.entry(channel).or_default();
        let now = Instant::now();
        while window
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60))
        {
            window.pop_front();
        }
        if window.len() >= self.rate_per_minute {
            return false;
        }
        window.push_back(now);
        true
    }

    /// Delivers `n` to `channel`; `Ok(false)` when rate-limited.
    pub async fn send(&self, channel: &Channel, n: &Notification) -> Result<bool, String> {
        if !self.admit(channel.id) {
            self.metrics.notification(&channel.kind, "rate_limited");
            return Ok(false);
        }
        let result = match channel.kind.as_str() {
            "webhook" => self.webhook(channel, n).await,
            "telegram" => self.telegram(channel, n).await,
            other => Err(format!("unknown channel kind {other}")),
        };
        self.metrics.notification(
            &channel.kind,
            if result.is_ok() { "sent" } else { "failed" },
        );
        result.map(|()| true)
    }

    async fn webhook(&self, channel: &Channel, n: &Notification) -> Result<(), String> {
        let url = reqwest::Url::parse(&channel.target)
            .map_err(|e| format!("the webhook URL does not parse ({e})"))?;
        let checked = resolve_target(&url, self.resolver.as_ref(), self.targets).await?;
        // A client per delivery: its only route to the host is the checked
        // addresses (no second lookup, no proxy, no redirect).
        let mut client = reqwest::Client::builder()
            .timeout(self.send_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy();
        if let Some(domain) = &checked.domain {
            client = client.resolve_to_addrs(domain, &checked.addrs);
        }
        let client = client.build().map_err(|e| format!("webhook client: {e}"))?;
        let body = serde_json::to_vec(n).map_err(|e| e.to_string())?;
        let secret = channel.secret(&self.key)?;
        let signature = sign(&secret, Utc::now().timestamp(), &body);
        let response = client
            .post(url)
            .header("content-type", "application/json")
            .header(SIGNATURE_HEADER, signature)
            .header("x-polybot-event", "alert")
            .body(body)
            .send()
            .await
            .map_err(|e| format!("webhook: {}", e.without_url()))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!("webhook answered {}", response.status()))
        }
    }

    async fn telegram(&self, channel: &Channel, n: &Notification) -> Result<(), String> {
        // The bot token is part of the URL: never log the URL.
        let token = channel.secret(&self.key)?;
        let url = format!("{}/bot{token}/sendMessage", self.telegram_base);
        let response = self
            .client
            .post(url)
            .json(&json!({"chat_id": channel.target, "text": n.text(), "disable_web_page_preview": true}))
            .send()
            .await
            .map_err(|e| format!("telegram: {}", e.without_url()))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!(
                "telegram sendMessage answered {}",
                response.status()
            ))
        }
    }
}

/// Sends each notification to its tenant's channels and the operator's;
/// the number of messages sent. A channel list that cannot be read is
/// logged and skipped: the alert state is already recorded.
pub async fn deliver(
    state: &AppState,
    notifier: &Notifier,
    outbox: Vec<(TenantId, Notification)>,
) -> usize {
    let operator = async {
        let mut op = state.db.operator().await?;
        let channels = operator_channels(&mut op).await?;
        op.commit().await?;
        Ok::<_, DbError>(channels)
    }
    .await
    .unwrap_or_else(|err| {
        tracing::warn!(error = %err, "cannot read the operator alert channels");
        Vec::new()
    });
    let mut by_tenant: BTreeMap<TenantId, Vec<Channel>> = BTreeMap::new();
    for (tenant, _) in &outbox {
        if by_tenant.contains_key(tenant) {
            continue;
        }
        let channels = async {
            let mut tx = state.db.tenant(*tenant).await?;
            let channels = tenant_channels(&mut tx).await?;
            tx.commit().await?;
            Ok::<_, DbError>(channels)
        }
        .await
        .unwrap_or_else(|err| {
            tracing::warn!(%tenant, error = %err, "cannot read the tenant's alert channels");
            Vec::new()
        });
        by_tenant.insert(*tenant, channels);
    }
    let mut sent = 0;
    for (tenant, n) in outbox {
        let channels = by_tenant
            .get(&tenant)
            .into_iter()
            .flatten()
            .chain(&operator);
        for channel in channels {
            match notifier.send(channel, &n).await {
                Ok(true) => sent += 1,
                Ok(false) => {
                    tracing::warn!(%tenant, alert = n.alert, channel = %channel.id, "alert rate-limited")
                }
                Err(err) => {
                    tracing::warn!(%tenant, alert = n.alert, channel = %channel.id, error = err, "alert not delivered")
                }
            }
        }
    }
    sent
}

#[cfg(test)]
mod tests {
    use super::{TOLERANCE_SECS, sign, verify};

    const SECRET: &str = "whsec-0123456789abcdef";

    #[test]
    fn a_signature_covers_the_timestamp_and_the_body() {
        let body = br#"{"alert":"fenced"}"#;
        let header = sign(SECRET, 1_700_000_000, body);
        // v1 is HMAC-SHA256 over "t.body", as a receiver recomputes it.
        let mut mac =
            <hmac::Hmac<sha2::Sha256> as hmac::Mac>::new_from_slice(SECRET.as_bytes()).unwrap();
        hmac::Mac::update(&mut mac, b"1700000000.");
        hmac::Mac::update(&mut mac, body);
        let expected = hex::encode(hmac::Mac::finalize(mac).into_bytes());
        assert_eq!(header, format!("t=1700000000,v1={expected}"));
        assert!(verify(SECRET, &header, body, 1_700_000_010));

        // A replay with a new timestamp, a changed body or another secret fails.
        let moved = header.replace("t=1700000000", "t=1700000300");
        assert!(!verify(SECRET, &moved, body, 1_700_000_300));
        assert!(!verify(
            SECRET,
            &header,
            br#"{"alert":"fenced "}"#,
            1_700_000_010
        ));
        assert!(!verify(
            "whsec-another-secret-0123",
            &header,
            body,
            1_700_000_010
        ));
        // An old delivery replayed later is outside the tolerance window.
        assert!(!verify(
            SECRET,
            &header,
            body,
            1_700_000_000 + TOLERANCE_SECS + 1
        ));
        assert!(verify(
            SECRET,
            &header,
            body,
            1_700_000_000 + TOLERANCE_SECS
        ));
        assert!(!verify(SECRET, "v1=00", body, 1_700_000_000));
    }
}
