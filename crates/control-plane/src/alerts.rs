//! Alerting: channels configured through the API, an evaluator loop that
//! raises and resolves alerts, and their delivery.
//!
//! **Channels.** `PUT /tenants/{id}/alert-channels` (operator or the tenant
//! itself) and `PUT /alert-channels` (operator-wide: every tenant's alerts)
//! replace a list of channels:
//! - `webhook`: `{"kind": "webhook", "url": "https://…", "secret": "…"}`; each
//!   delivery is a JSON POST whose body's HMAC-SHA256 under `secret` is in
//!   `X-Polybot-Signature: sha256=<hex>`;
//! - `telegram`: `{"kind": "telegram", "chat_id": "…", "bot_token": "…"}`; a
//!   `sendMessage` call on the Bot API (`POLYBOT_TELEGRAM_API_BASE`).
//!
//! Secrets and bot tokens are write-only: responses show a fingerprint.
//!
//! **Evaluation.** One replica at a time evaluates (a Postgres advisory lock,
//! apart from the reconciler's), every `POLYBOT_ALERT_INTERVAL_SECS`. The state
//! of each (tenant, alert, subject) lives in `alert_states`, so a new
//! evaluator after a failover neither repeats nor forgets an alert. An alert
//! notifies once when it starts firing, and once ("resolved") after its
//! condition has been clear for the resolution hold: a persisting condition is
//! one message, and a flapping one cannot resolve and re-fire every round.
//! Each channel is further limited to `POLYBOT_ALERT_RATE_PER_MINUTE`
//! messages a minute. Delivery happens after the state change commits: at
//! most once, failures are logged (without the URL, which may hold a bot
//! token) and counted in `polybot_alert_notifications_total`.
//!
//! **Alerts.** `heartbeat_stale` (an active tenant's worker silent longer than
//! `POLYBOT_ALERT_HEARTBEAT_SECS`), `crash_loop` (back-off after at least
//! `POLYBOT_ALERT_CRASH_LOOP_RESTARTS` restarts), `breaker_open` (per
//! strategy), `daily_loss` (today's realized PnL at or below −max_daily_loss,
//! or the worker reports the limit hit) and `fenced` (a worker exited with the
//! fencing exit code: a newer twin took its lease).
//!
//! The same loop accumulates the availability SLI (`worker_availability`).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use chrono::{DateTime, DurationRound, Utc};
use hmac::{Hmac, Mac};
use polybot_core::TenantId;
use polybot_core::validation::{FieldError, unknown_field};
use polybot_store::{DbError, TenantTx};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::provision::audit;

/// The advisory-lock key of the alert evaluator.
pub const EVALUATOR_KEY: i64 = 0x706f_6c79_626f_7402;
/// The header carrying a webhook body's signature.
pub const SIGNATURE_HEADER: &str = "x-polybot-signature";

// ---------------------------------------------------------------------------
// Channels: API
// ---------------------------------------------------------------------------

/// A channel as the API shows it: never its secret.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ChannelView {
    pub id: Uuid,
    /// webhook or telegram.
    pub kind: String,
    /// The webhook URL, or the Telegram chat id.
    pub target: String,
    /// `sha256:` and 12 hex digits of the webhook secret or bot token.
    pub secret_fingerprint: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ChannelsView {
    pub channels: Vec<ChannelView>,
}

/// The body of the PUTs: the whole list of channels (an empty list removes all).
#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct ChannelsRequest {
    /// Each `{"kind": "webhook", "url", "secret"}` (secret: 16 to 256 characters)
    /// or `{"kind": "telegram", "chat_id", "bot_token"}`; at most 10.
    #[schema(value_type = Vec<Object>)]
    channels: Vec<Value>,
}

/// A validated channel, secret included.
#[derive(Clone)]
pub struct Channel {
    pub id: Uuid,
    pub kind: String,
    pub target: String,
    secret: String,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

fn fingerprint(secret: &str) -> String {
    let digest = Sha256::digest(secret.as_bytes());
    format!("sha256:{}", &hex::encode(digest)[..12])
}

impl Channel {
    /// What the API and the dashboard show: never the secret.
    pub fn public_view(&self) -> ChannelView {
        ChannelView {
            id: self.id,
            kind: self.kind.clone(),
            target: if self.kind == "webhook" {
                redact_url(&self.target)
            } else {
                self.target.clone()
            },
            secret_fingerprint: fingerprint(&self.secret),
        }
    }
}

/// A URL without credentials or query (which may carry tokens).
fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            if u.set_username("").is_err() || u.set_password(None).is_err() {
                return "(hidden)".to_owned();
            }
            if u.query().is_some() {
                u.set_query(Some("…"));
            }
            u.to_string()
        }
        Err(_) => "(hidden)".to_owned(),
    }
}

/// Whether `url` names a host outside loopback, private, link-local and
/// other non-public ranges (by IP literal or a local-only name). Names are
/// not resolved here: DNS that points a public name inside is not caught.
fn is_public_url(url: &str) -> bool {
    use std::net::IpAddr;
    let Ok(parsed) = reqwest::Url::parse(url) else {
        return false;
    };
    match parsed.host() {
        Some(url::Host::Ipv4(ip)) => is_public_ip(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => is_public_ip(IpAddr::V6(ip)),
        Some(url::Host::Domain(name)) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            !(name == "localhost"
                || name.ends_with(".localhost")
                || name.ends_with(".local")
                || name.ends_with(".internal")
                || !name.contains('.'))
        }
        None => false,
    }
}

fn is_public_ip(ip: std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b)))
        }
        std::net::IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || v6
                    .to_ipv4_mapped()
                    .is_some_and(|v4| !is_public_ip(std::net::IpAddr::V4(v4))))
        }
    }
}

fn parse_channels(body: &Bytes) -> ApiResult<Vec<Channel>> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("the body is not valid JSON ({e})")))?;
    let Value::Object(map) = value else {
        return Err(ApiError::BadRequest(
            "the body must be a JSON object".into(),
        ));
    };
    let mut errors = Vec::new();
    for key in map.keys().filter(|k| *k != "channels") {
        errors.push(unknown_field(key, key, &["channels"]));
    }
    let list = match map.get("channels") {
        Some(Value::Array(list)) => list.clone(),
        Some(_) => {
            errors.push(FieldError::new("channels", "expected a list"));
            Vec::new()
        }
        None => {
            errors.push(FieldError::new("channels", "is required"));
            Vec::new()
        }
    };
    if list.len() > 10 {
        errors.push(FieldError::new("channels", "at most 10 channels"));
    }
    let mut channels = Vec::new();
    for (i, item) in list.iter().enumerate() {
        let path = format!("channels[{i}]");
        let Some(obj) = item.as_object() else {
            errors.push(FieldError::new(path, "expected an object"));
            continue;
        };
        let text = |name: &str| obj.get(name).and_then(Value::as_str).map(str::trim);
        match text("kind") {
            Some("webhook") => {
                for key in obj
                    .keys()
                    .filter(|k| !["kind", "url", "secret"].contains(&k.as_str()))
                {
                    errors.push(unknown_field(
                        &format!("{path}.{key}"),
                        key,
                        &["kind", "url", "secret"],
                    ));
                }
                let url = text("url").unwrap_or_default();
                match reqwest::Url::parse(url) {
                    Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
                    _ => errors.push(FieldError::new(
                        format!("{path}.url"),
                        "must be an http:// or https:// URL",
                    )),
                }
                let secret = text("secret").unwrap_or_default();
                if !(16..=256).contains(&secret.chars().count()) {
                    errors.push(FieldError::new(
                        format!("{path}.secret"),
                        "must have 16 to 256 characters",
                    ));
                }
                channels.push(Channel {
                    id: Uuid::new_v4(),
                    kind: "webhook".into(),
                    target: url.to_owned(),
                    secret: secret.to_owned(),
                });
            }
            Some("telegram") => {
                let allowed = ["kind", "chat_id", "bot_token"];
                for key in obj.keys().filter(|k| !allowed.contains(&k.as_str())) {
                    errors.push(unknown_field(&format!("{path}.{key}"), key, &allowed));
                }
                let chat = match obj.get("chat_id") {
                    Some(Value::Number(n)) => n.to_string(),
                    Some(Value::String(s)) => s.trim().to_owned(),
                    _ => String::new(),
                };
                let chat_ok = !chat.is_empty()
                    && chat.len() <= 64
                    && (chat.starts_with('@')
                        || chat
                            .trim_start_matches('-')
                            .chars()
                            .all(|c| c.is_ascii_digit()));
                if !chat_ok {
                    errors.push(FieldError::new(
                        format!("{path}.chat_id"),
                        "must be a numeric chat id or an @channel name",
                    ));
                }
                let token = text("bot_token").unwrap_or_default();
                let token_ok = token.split_once(':').is_some_and(|(id, rest)| {
                    !id.is_empty()
                        && id.chars().all(|c| c.is_ascii_digit())
                        && rest.len() >= 20
                        && rest
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                });
                if !token_ok {
                    errors.push(FieldError::new(
                        format!("{path}.bot_token"),
                        "must look like 123456:ABC… (the token BotFather gave)",
                    ));
                }
                channels.push(Channel {
                    id: Uuid::new_v4(),
                    kind: "telegram".into(),
                    target: chat,
                    secret: token.to_owned(),
                });
            }
            _ => errors.push(FieldError::new(
                format!("{path}.kind"),
                "expected \"webhook\" or \"telegram\"",
            )),
        }
    }
    if errors.is_empty() {
        Ok(channels)
    } else {
        Err(ApiError::Validation(errors))
    }
}

type ChannelRow = (Uuid, String, String, String);

fn channel_from((id, kind, target, secret): ChannelRow) -> Channel {
    Channel {
        id,
        kind,
        target,
        secret,
    }
}

/// A tenant's channels (inside its transaction).
pub async fn tenant_channels(tx: &mut TenantTx) -> Result<Vec<Channel>, DbError> {
    let rows: Vec<ChannelRow> = sqlx::query_as(
        "SELECT id, kind, target, secret FROM alert_channels WHERE tenant_id = $1 ORDER BY created_at, id",
    )
    .bind(tx.tenant().as_uuid())
    .fetch_all(&mut **tx)
    .await
    .map_err(DbError::query("reading alert channels"))?;
    Ok(rows.into_iter().map(channel_from).collect())
}

async fn operator_channels(state: &AppState) -> Result<Vec<Channel>, DbError> {
    let mut op = state.db.operator().await?;
    let rows: Vec<ChannelRow> = sqlx::query_as(
        "SELECT id, kind, target, secret FROM operator_alert_channels ORDER BY created_at, id",
    )
    .fetch_all(&mut *op)
    .await
    .map_err(DbError::query("reading operator alert channels"))?;
    op.commit().await?;
    Ok(rows.into_iter().map(channel_from).collect())
}

fn views(channels: &[Channel]) -> ChannelsView {
    ChannelsView {
        channels: channels.iter().map(Channel::public_view).collect(),
    }
}

fn visible(caller: &Caller, id: Uuid) -> ApiResult<TenantId> {
    let tenant = TenantId::from_uuid(id);
    if caller.may_see(tenant) {
        Ok(tenant)
    } else {
        Err(ApiError::NotFound("tenant"))
    }
}

async fn tenant_exists(tx: &mut TenantTx) -> ApiResult<()> {
    let found: Option<Uuid> = sqlx::query_scalar("SELECT id FROM tenants WHERE id = $1")
        .bind(tx.tenant().as_uuid())
        .fetch_optional(&mut **tx)
        .await
        .map_err(DbError::query("reading a tenant"))?;
    found.map(|_| ()).ok_or(ApiError::NotFound("tenant"))
}

/// A tenant's alert channels (secrets shown as fingerprints).
#[utoipa::path(get, path = "/tenants/{id}/alert-channels", operation_id = "get_tenant_alert_channels", tag = "alerts",
    params(("id" = Uuid, Path, description = "the tenant's id")),
    responses(
        (status = 200, description = "the tenant's alert channels (secrets as fingerprints)", body = ChannelsView),
        (status = 401, description = "no bearer token, or not a valid one", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such tenant, or not one this token may see", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_tenant_channels(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<ChannelsView>> {
    let tenant = visible(&caller, id)?;
    let mut tx = state.db.tenant(tenant).await?;
    tenant_exists(&mut tx).await?;
    let channels = tenant_channels(&mut tx).await?;
    tx.commit().await?;
    Ok(Json(views(&channels)))
}

/// Replace a tenant's alert channels (operator, or the tenant itself).
#[utoipa::path(put, path = "/tenants/{id}/alert-channels", operation_id = "replace_tenant_alert_channels", tag = "alerts",
    request_body = ChannelsRequest,
    params(("id" = Uuid, Path, description = "the tenant's id")),
    responses(
        (status = 200, description = "the tenant's alert channels as stored", body = ChannelsView),
        (status = 400, description = "the body is not a JSON object", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "no bearer token, or not a valid one", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such tenant, or not one this token may see", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "a field of the request is invalid", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn put_tenant_channels(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    body: Bytes,
) -> ApiResult<Json<ChannelsView>> {
    let tenant = visible(&caller, id)?;
    let channels = parse_channels(&body)?;
    if matches!(caller, Caller::Tenant(_)) {
        // A tenant must not point the control plane at the platform's own
        // network (metadata service, database, other services).
        let errors: Vec<FieldError> = channels
            .iter()
            .enumerate()
            .filter(|(_, c)| c.kind == "webhook" && !is_public_url(&c.target))
            .map(|(i, _)| {
                FieldError::new(
                    format!("channels[{i}].url"),
                    "must be a public address: a tenant's webhook cannot target loopback, private or link-local hosts",
                )
            })
            .collect();
        if !errors.is_empty() {
            return Err(ApiError::Validation(errors));
        }
    }
    let mut tx = state.db.tenant(tenant).await?;
    tenant_exists(&mut tx).await?;
    sqlx::query("DELETE FROM alert_channels WHERE tenant_id = $1")
        .bind(tenant.as_uuid())
        .execute(&mut *tx)
        .await
        .map_err(DbError::query("replacing alert channels"))?;
    for (i, c) in channels.iter().enumerate() {
        sqlx::query(
            "INSERT INTO alert_channels (id, tenant_id, kind, target, secret, created_at) \
             VALUES ($1, $2, $3, $4, $5, now() + $6 * interval '1 microsecond')",
        )
        .bind(c.id)
        .bind(tenant.as_uuid())
        .bind(&c.kind)
        .bind(&c.target)
        .bind(&c.secret)
        .bind(i32::try_from(i).unwrap_or(0))
        .execute(&mut *tx)
        .await
        .map_err(DbError::query("storing an alert channel"))?;
    }
    let view = views(&channels);
    audit(
        &mut tx,
        &caller.actor(),
        "tenant.alert_channels",
        json!({"channels": view.channels.iter().map(|c| json!({"kind": c.kind, "secret_fingerprint": c.secret_fingerprint})).collect::<Vec<_>>()}),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(view))
}

fn operator_only(caller: &Caller) -> ApiResult<()> {
    match caller {
        Caller::Operator => Ok(()),
        Caller::Tenant(_) => Err(ApiError::Forbidden("only an operator token may do this")),
    }
}

/// The operator-wide alert channels (every tenant's alerts).
#[utoipa::path(get, path = "/alert-channels", operation_id = "get_operator_alert_channels", tag = "alerts",
    responses(
        (status = 200, description = "the operator-wide alert channels (secrets as fingerprints)", body = ChannelsView),
        (status = 401, description = "no bearer token, or not a valid one", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "the token is a tenant's; only an operator token may do this", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_operator_channels(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<ChannelsView>> {
    operator_only(&caller)?;
    Ok(Json(views(&operator_channels(&state).await?)))
}

/// Replace the operator-wide alert channels.
#[utoipa::path(put, path = "/alert-channels", operation_id = "replace_operator_alert_channels", tag = "alerts",
    request_body = ChannelsRequest,
    responses(
        (status = 200, description = "the operator-wide alert channels as stored", body = ChannelsView),
        (status = 400, description = "the body is not a JSON object", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "no bearer token, or not a valid one", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "the token is a tenant's; only an operator token may do this", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "a field of the request is invalid", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn put_operator_channels(
    State(state): State<AppState>,
    caller: Caller,
    body: Bytes,
) -> ApiResult<Json<ChannelsView>> {
    operator_only(&caller)?;
    let channels = parse_channels(&body)?;
    // Not tenant data: the operator transaction may write it.
    let mut op = state.db.operator().await?;
    sqlx::query("DELETE FROM operator_alert_channels")
        .execute(&mut *op)
        .await
        .map_err(DbError::query("replacing operator alert channels"))?;
    for (i, c) in channels.iter().enumerate() {
        sqlx::query(
            "INSERT INTO operator_alert_channels (id, kind, target, secret, created_at) \
             VALUES ($1, $2, $3, $4, now() + $5 * interval '1 microsecond')",
        )
        .bind(c.id)
        .bind(&c.kind)
        .bind(&c.target)
        .bind(&c.secret)
        .bind(i32::try_from(i).unwrap_or(0))
        .execute(&mut *op)
        .await
        .map_err(DbError::query("storing an operator alert channel"))?;
    }
    op.commit().await?;
    tracing::info!(
        channels = channels.len(),
        "operator alert channels replaced"
    );
    Ok(Json(views(&channels)))
}

// ---------------------------------------------------------------------------
// Delivery
// ---------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------
// Evaluation
// ---------------------------------------------------------------------------

/// One tenant as the evaluator reads it.
#[derive(Debug, Clone)]
struct Observed {
    tenant: TenantId,
    name: String,
    active: bool,
    actual: String,
    restarts: i32,
    last_exit: Option<String>,
    /// Milliseconds since the newest heartbeat, or since the tenant became
    /// active if that is later (a resumed tenant is not silent yet).
    silent_ms: i64,
    heartbeat_ms: Option<i64>,
    health: Option<Value>,
    pnl_today: Decimal,
    max_daily_loss: Option<Decimal>,
    fenced: Option<String>,
}

type ObservedRow = (
    Uuid,
    String,
    String,
    Option<String>,
    Option<i32>,
    Option<String>,
    i64,
    Option<i64>,
    Option<Value>,
    Decimal,
    Option<String>,
    Option<String>,
);

/// (alert, subject) → summary.
type Conditions = BTreeMap<(String, String), String>;

/// tenant, alert, subject, firing, clear_since.
type AlertStateRow = (Uuid, String, String, bool, Option<DateTime<Utc>>);

#[derive(Debug, Clone)]
struct AlertRow {
    tenant: Uuid,
    alert: String,
    subject: String,
    firing: bool,
    clear_since: Option<DateTime<Utc>>,
}

/// What one evaluation did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct EvalReport {
    pub tenants: usize,
    pub fired: usize,
    pub resolved: usize,
    pub notifications: usize,
}

/// Raises and resolves alerts, and accumulates worker availability.
#[derive(Debug)]
pub struct Evaluator {
    state: AppState,
    notifier: Notifier,
    last_round: Option<Instant>,
    last_flush: Instant,
    /// (tenant, minute) → (desired ms, up ms) not yet written.
    availability: HashMap<(TenantId, DateTime<Utc>), (i64, i64)>,
}

impl Evaluator {
    pub fn new(state: AppState) -> Self {
        let notifier = Notifier::new(&state);
        Self {
            state,
            notifier,
            last_round: None,
            last_flush: Instant::now(),
            availability: HashMap::new(),
        }
    }

    /// Stands by until it holds the evaluator lock, then evaluates every
    /// interval until `stop`.
    pub async fn run(mut self, stop: CancellationToken) {
        let interval = self.state.settings.alerts.interval;
        loop {
            let lock = tokio::select! {
                _ = stop.cancelled() => return,
                lock = self.state.db.try_lead(EVALUATOR_KEY) => lock,
            };
            let mut lock = match lock {
                Ok(Some(lock)) => lock,
                Ok(None) => {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, "cannot take the alert evaluator lock; retrying");
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(2)) => continue,
                    }
                }
            };
            tracing::info!("this control plane evaluates alerts");
            self.last_round = None;
            loop {
                if !lock.still_held().await {
                    tracing::warn!("lost the alert evaluator lock; standing by");
                    break;
                }
                match self.evaluate().await {
                    Ok(report) if report.fired + report.resolved > 0 => {
                        tracing::info!(?report, "alerts evaluated");
                    }
                    Ok(_) => {}
                    Err(err) => tracing::warn!(error = %err, "alert evaluation failed"),
                }
                tokio::select! {
                    _ = stop.cancelled() => {
                        if let Err(err) = self.flush_availability().await {
                            tracing::warn!(error = %err, "could not write worker availability");
                        }
                        lock.release().await;
                        return;
                    }
                    _ = tokio::time::sleep(interval) => {}
                }
            }
        }
    }

    async fn observe(&self) -> Result<Vec<Observed>, DbError> {
        let mut op = self.state.db.operator().await?;
        let rows: Vec<ObservedRow> = sqlx::query_as(
            "SELECT t.id, t.name, t.state, r.actual, r.restarts, r.last_exit, \
                (extract(epoch FROM now() - greatest(h.at, t.updated_at)) * 1000)::bigint, \
                (extract(epoch FROM now() - h.at) * 1000)::bigint, h.health, \
                (SELECT coalesce(sum(x.realized_pnl), 0) FROM trades x WHERE x.tenant_id = t.id \
                    AND x.executed_at >= date_trunc('day', now(), 'UTC')), \
                c.risk->>'max_daily_loss', \
                (SELECT e.detail FROM tenant_runtime_events e WHERE e.tenant_id = t.id \
                    AND e.kind = 'fenced' \
                    AND e.at > now() - make_interval(secs => $1) ORDER BY e.at DESC LIMIT 1) \
             FROM tenants t \
             LEFT JOIN tenant_configs c ON c.tenant_id = t.id \
             LEFT JOIN tenant_runtime r ON r.tenant_id = t.id \
             LEFT JOIN LATERAL (SELECT at, health FROM worker_heartbeats \
                                WHERE tenant_id = t.id ORDER BY at DESC LIMIT 1) h ON true \
             WHERE t.state NOT IN ('offboarded')",
        )
        .bind(self.state.settings.alerts.fenced_window.as_secs_f64())
        .fetch_all(&mut *op)
        .await
        .map_err(DbError::query("reading what alerts watch"))?;
        op.commit().await?;
        Ok(rows
            .into_iter()
            .map(
                |(
                    id,
                    name,
                    state,
                    actual,
                    restarts,
                    last_exit,
                    silent_ms,
                    heartbeat_ms,
                    health,
                    pnl_today,
                    max_daily_loss,
                    fenced,
                )| Observed {
                    tenant: TenantId::from_uuid(id),
                    name,
                    active: state == "active",
                    actual: actual.unwrap_or_else(|| "pending".into()),
                    restarts: restarts.unwrap_or(0),
                    last_exit,
                    silent_ms,
                    heartbeat_ms,
                    health,
                    pnl_today,
                    max_daily_loss: max_daily_loss.and_then(|m| m.parse().ok()),
                    fenced,
                },
            )
            .collect())
    }

    fn conditions(&self, o: &Observed) -> Conditions {
        let settings = &self.state.settings.alerts;
        let mut out = Conditions::new();
        if !o.active {
            return out;
        }
        let stale_ms = i64::try_from(settings.heartbeat_stale.as_millis()).unwrap_or(i64::MAX);
        if o.silent_ms > stale_ms {
            let last = match o.heartbeat_ms {
                Some(ms) => format!("no heartbeat for {} s", ms / 1000),
                None => "no heartbeat since the tenant became active".to_owned(),
            };
            let exit = o
                .last_exit
                .as_deref()
                .map(|e| format!("; last exit: {e}"))
                .unwrap_or_default();
            out.insert(
                ("heartbeat_stale".into(), String::new()),
                format!("{last} (worker {}{exit})", o.actual),
            );
        }
        if o.actual == "crash_loop" && o.restarts >= settings.crash_loop_restarts {
            out.insert(
                ("crash_loop".into(), String::new()),
                format!(
                    "the worker crashed {} times in a row; last exit: {}",
                    o.restarts,
                    o.last_exit.as_deref().unwrap_or("unknown")
                ),
            );
        }
        if let Some(strategies) = o
            .health
            .as_ref()
            .and_then(|h| h.get("strategies"))
            .and_then(Value::as_object)
        {
            for (name, s) in strategies {
                let breaker = s
                    .get("breaker")
                    .and_then(|b| {
                        b.as_str()
                            .or_else(|| b.get("state").and_then(Value::as_str))
                    })
                    .unwrap_or("closed");
                if breaker == "open" {
                    let why = s
                        .get("last_error")
                        .and_then(Value::as_str)
                        .map(|e| format!(": {e}"))
                        .unwrap_or_default();
                    out.insert(
                        ("breaker_open".into(), name.clone()),
                        format!("strategy {name}'s circuit breaker is open{why}"),
                    );
                }
            }
        }
        let reported = o.health.as_ref().is_some_and(|h| {
            ["daily_loss_hit", "daily_loss_limit_hit"].iter().any(|k| {
                h.get(*k).and_then(Value::as_bool).unwrap_or(false)
                    || h.pointer(&format!("/risk/{k}"))
                        .and_then(Value::as_bool)
                        .unwrap_or(false)
            })
        });
        let computed = o
            .max_daily_loss
            .is_some_and(|max| max > Decimal::ZERO && o.pnl_today <= -max);
        if reported || computed {
            out.insert(
                ("daily_loss".into(), String::new()),
                format!(
                    "today's realized PnL is {} (limit −{}); new orders are blocked until midnight UTC",
                    o.pnl_today.normalize(),
                    o.max_daily_loss.unwrap_or_default().normalize()
                ),
            );
        }
        if let Some(detail) = &o.fenced {
            out.insert(
                ("fenced".into(), String::new()),
                format!("a worker was fenced off by a newer twin and exited ({detail})"),
            );
        }
        out
    }

    async fn alert_rows(&self) -> Result<Vec<AlertRow>, DbError> {
        let mut op = self.state.db.operator().await?;
        let rows: Vec<AlertStateRow> = sqlx::query_as(
            "SELECT tenant_id, alert, subject, firing, clear_since FROM alert_states WHERE firing",
        )
        .fetch_all(&mut *op)
        .await
        .map_err(DbError::query("reading alert states"))?;
        op.commit().await?;
        Ok(rows
            .into_iter()
            .map(|(tenant, alert, subject, firing, clear_since)| AlertRow {
                tenant,
                alert,
                subject,
                firing,
                clear_since,
            })
            .collect())
    }

    /// One round: observe, decide, record, notify; and account availability.
    pub async fn evaluate(&mut self) -> Result<EvalReport, DbError> {
        let settings = self.state.settings.alerts.clone();
        let observed = self.observe().await?;
        let firing = self.alert_rows().await?;
        let now = Utc::now();
        self.account(&observed, now);
        let mut report = EvalReport {
            tenants: observed.len(),
            ..Default::default()
        };
        let hold = chrono::Duration::from_std(settings.resolve_hold).unwrap_or_default();
        let mut outbox: Vec<(TenantId, Notification)> = Vec::new();
        for o in &observed {
            let conditions = self.conditions(o);
            let mine: Vec<&AlertRow> = firing
                .iter()
                .filter(|r| r.tenant == o.tenant.as_uuid() && r.firing)
                .collect();
            let mut fire: Vec<(&(String, String), &String)> = Vec::new();
            let mut still: Vec<&AlertRow> = Vec::new();
            let mut clearing: Vec<&AlertRow> = Vec::new();
            let mut resolve: Vec<&AlertRow> = Vec::new();
            for (key, summary) in &conditions {
                match mine.iter().find(|r| r.alert == key.0 && r.subject == key.1) {
                    None => fire.push((key, summary)),
                    Some(r) if r.clear_since.is_some() => still.push(r),
                    Some(_) => {}
                }
            }
            for r in &mine {
                if conditions.contains_key(&(r.alert.clone(), r.subject.clone())) {
                    continue;
                }
                match r.clear_since {
                    Some(since) if now - since >= hold => resolve.push(r),
                    None if hold.is_zero() => resolve.push(r),
                    Some(_) => {}
                    None => clearing.push(r),
                }
            }
            if fire.is_empty() && still.is_empty() && clearing.is_empty() && resolve.is_empty() {
                continue;
            }
            let mut tx = self.state.db.tenant(o.tenant).await?;
            for ((alert, subject), summary) in &fire {
                sqlx::query(
                    "INSERT INTO alert_states (tenant_id, alert, subject, firing, summary, fired_at) \
                     VALUES ($1, $2, $3, true, $4, $5) \
                     ON CONFLICT (tenant_id, alert, subject) DO UPDATE SET firing = true, \
                        summary = EXCLUDED.summary, fired_at = EXCLUDED.fired_at, \
                        clear_since = NULL, resolved_at = NULL",
                )
                .bind(o.tenant.as_uuid())
                .bind(alert)
                .bind(subject)
                .bind(*summary)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(DbError::query("raising an alert"))?;
                outbox.push((
                    o.tenant,
                    Notification {
                        alert: alert.clone(),
                        status: "firing",
                        tenant_id: o.tenant.as_uuid(),
                        tenant_name: o.name.clone(),
                        subject: subject.clone(),
                        summary: (*summary).clone(),
                        at: now,
                    },
                ));
                report.fired += 1;
            }
            for r in &still {
                sqlx::query(
                    "UPDATE alert_states SET clear_since = NULL WHERE tenant_id = $1 AND alert = $2 AND subject = $3",
                )
                .bind(o.tenant.as_uuid())
                .bind(&r.alert)
                .bind(&r.subject)
                .execute(&mut *tx)
                .await
                .map_err(DbError::query("keeping an alert"))?;
            }
            for r in &clearing {
                sqlx::query(
                    "UPDATE alert_states SET clear_since = $4 WHERE tenant_id = $1 AND alert = $2 AND subject = $3",
                )
                .bind(o.tenant.as_uuid())
                .bind(&r.alert)
                .bind(&r.subject)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(DbError::query("clearing an alert"))?;
            }
            for r in &resolve {
                let summary: String = sqlx::query_scalar(
                    "UPDATE alert_states SET firing = false, resolved_at = $4, clear_since = NULL \
                     WHERE tenant_id = $1 AND alert = $2 AND subject = $3 \
                     RETURNING 'resolved after ' || round(extract(epoch FROM $4 - fired_at))::bigint || ' s; was: ' || summary",
                )
                .bind(o.tenant.as_uuid())
                .bind(&r.alert)
                .bind(&r.subject)
                .bind(now)
                .fetch_one(&mut *tx)
                .await
                .map_err(DbError::query("resolving an alert"))?;
                outbox.push((
                    o.tenant,
                    Notification {
                        alert: r.alert.clone(),
                        status: "resolved",
                        tenant_id: o.tenant.as_uuid(),
                        tenant_name: o.name.clone(),
                        subject: r.subject.clone(),
                        summary,
                        at: now,
                    },
                ));
                report.resolved += 1;
            }
            tx.commit().await?;
        }
        // Tenants that were offboarded while an alert fired: resolve silently.
        self.state.metrics.alert_evaluation();
        if self.last_flush.elapsed() >= settings.availability_flush {
            self.flush_availability().await?;
        }
        if !outbox.is_empty() {
            report.notifications = self.deliver(outbox).await;
        }
        Ok(report)
    }

    async fn deliver(&self, outbox: Vec<(TenantId, Notification)>) -> usize {
        let operator = match operator_channels(&self.state).await {
            Ok(c) => c,
            Err(err) => {
                tracing::warn!(error = %err, "cannot read the operator alert channels");
                Vec::new()
            }
        };
        let mut by_tenant: HashMap<TenantId, Vec<Channel>> = HashMap::new();
        let mut sent = 0;
        let tenants: std::collections::BTreeSet<TenantId> =
            outbox.iter().map(|(t, _)| *t).collect();
        for tenant in tenants {
            let channels = async {
                let mut tx = self.state.db.tenant(tenant).await?;
                let c = tenant_channels(&mut tx).await?;
                tx.commit().await?;
                Ok::<_, DbError>(c)
            }
            .await
            .unwrap_or_else(|err| {
                tracing::warn!(%tenant, error = %err, "cannot read the tenant's alert channels");
                Vec::new()
            });
            by_tenant.insert(tenant, channels);
        }
        for (tenant, n) in outbox {
            let channels = by_tenant
                .get(&tenant)
                .into_iter()
                .flatten()
                .chain(&operator);
            for channel in channels {
                match self.notifier.send(channel, &n).await {
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

    /// Adds the time since the last round to each tenant's availability.
    fn account(&mut self, observed: &[Observed], now: DateTime<Utc>) {
        let settings = &self.state.settings.alerts;
        let elapsed = self
            .last_round
            .map(|t| t.elapsed())
            .unwrap_or_default()
            // A gap (standby, a stall) is not counted either way.
            .min(settings.interval.saturating_mul(3));
        self.last_round = Some(Instant::now());
        let elapsed_ms = i64::try_from(elapsed.as_millis()).unwrap_or(0);
        if elapsed_ms == 0 {
            return;
        }
        let stale_ms = i64::try_from(settings.availability_stale.as_millis()).unwrap_or(i64::MAX);
        let minute = now
            .duration_trunc(chrono::Duration::minutes(1))
            .unwrap_or(now);
        for o in observed.iter().filter(|o| o.active) {
            let up = o.actual == "running" && o.heartbeat_ms.is_some_and(|ms| ms < stale_ms);
            let slot = self.availability.entry((o.tenant, minute)).or_default();
            slot.0 += elapsed_ms;
            if up {
                slot.1 += elapsed_ms;
            }
        }
    }

    /// Writes the accumulated availability (one small upsert per tenant and minute).
    pub async fn flush_availability(&mut self) -> Result<(), DbError> {
        self.last_flush = Instant::now();
        let pending = std::mem::take(&mut self.availability);
        let mut by_tenant: BTreeMap<TenantId, Vec<(DateTime<Utc>, i64, i64)>> = BTreeMap::new();
        for ((tenant, minute), (desired, up)) in pending {
            by_tenant
                .entry(tenant)
                .or_default()
                .push((minute, desired, up));
        }
        for (tenant, rows) in by_tenant {
            let mut tx = self.state.db.tenant(tenant).await?;
            for (minute, desired, up) in rows {
                let written = sqlx::query(
                    "INSERT INTO worker_availability (tenant_id, minute, desired_ms, up_ms) \
                     SELECT $1, $2, $3, $4 WHERE EXISTS (SELECT 1 FROM tenants WHERE id = $1) \
                     ON CONFLICT (tenant_id, minute) DO UPDATE SET \
                        desired_ms = worker_availability.desired_ms + EXCLUDED.desired_ms, \
                        up_ms = worker_availability.up_ms + EXCLUDED.up_ms",
                )
                .bind(tenant.as_uuid())
                .bind(minute)
                .bind(desired)
                .bind(up.min(desired))
                .execute(&mut *tx)
                .await;
                written.map_err(DbError::query("recording worker availability"))?;
            }
            tx.commit().await?;
        }
        Ok(())
    }
}

/// The firing alerts of a tenant with their summaries (for the dashboard).
pub async fn firing(
    tx: &mut TenantTx,
) -> Result<Vec<(String, String, String, DateTime<Utc>)>, DbError> {
    sqlx::query_as(
        "SELECT alert, subject, summary, fired_at FROM alert_states \
         WHERE tenant_id = $1 AND firing ORDER BY fired_at",
    )
    .bind(tx.tenant().as_uuid())
    .fetch_all(&mut **tx)
    .await
    .map_err(DbError::query("reading firing alerts"))
}

#[cfg(test)]
mod tests {
    use super::is_public_url;

    #[test]
    fn webhooks_into_the_platforms_own_network_are_not_public() {
        for url in [
            "http://127.0.0.1/hook",
            "http://localhost:8080/",
            "http://169.254.169.254/latest/meta-data/",
            "http://10.0.0.5/",
            "http://192.168.1.1/",
            "http://172.16.0.1/",
            "http://[::1]/",
            "http://[fd00::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://metadata.google.internal/",
            "http://db/",
            "http://100.64.0.1/",
        ] {
            assert!(!is_public_url(url), "{url}");
        }
        for url in ["https://hooks.example.com/polybot", "https://8.8.8.8/x"] {
            assert!(is_public_url(url), "{url}");
        }
    }
}
