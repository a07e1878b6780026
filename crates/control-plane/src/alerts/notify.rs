//! Delivery of notifications: a signed JSON POST to a webhook, or a
//! Telegram `sendMessage`, at most `POLYBOT_ALERT_RATE_PER_MINUTE` a minute
//! per channel.
//!
//! A webhook body's HMAC-SHA256 under the channel's secret is in
//! `X-Polybot-Signature: sha256=<hex>`. Delivery happens after the state
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

/// HMAC-SHA256 of `body` under `secret`, as the signature header carries it.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Sends notifications, at most `rate_per_minute` per channel.
#[derive(Debug, Clone)]
pub struct Notifier {
    client: reqwest::Client,
    telegram_base: String,
    rate_per_minute: usize,
    sent: Arc<Mutex<HashMap<Uuid, VecDeque<Instant>>>>,
    metrics: crate::metrics::Metrics,
}

impl Notifier {
    pub fn new(state: &AppState) -> Self {
        let settings = &state.settings.alerts;
        let client = reqwest::Client::builder()
            .timeout(settings.send_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Self {
            client,
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
        let body = serde_json::to_vec(n).map_err(|e| e.to_string())?;
        let signature = sign(&channel.secret, &body);
        let response = self
            .client
            .post(&channel.target)
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
        let url = format!("{}/bot{}/sendMessage", self.telegram_base, channel.secret);
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
