//! The HTTP API of alert channels: `PUT`/`GET /tenants/{id}/alert-channels`
//! (operator, or the tenant itself) and `/alert-channels` (operator-wide:
//! every tenant's alerts), their validation, and how a channel is shown.
//!
//! A PUT replaces the whole list:
//! - `webhook`: `{"kind": "webhook", "url": "https://…", "secret": "…"}`;
//! - `telegram`: `{"kind": "telegram", "chat_id": "…", "bot_token": "…"}`.
//!
//! Secrets and bot tokens are write-only: responses show a fingerprint.
//! Delivery is in `notify`; the guard on webhook hosts (for every caller:
//! the operator's channels too) in `ssrf`;
//! the SQL in `polybot_store::repo::alerts`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use polybot_core::validation::{FieldError, check_json_text, unknown_field};
use polybot_store::repo::{alerts as repo, audit, tenants};
use polybot_store::{DbError, OperatorTx, TenantTx};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;
use uuid::Uuid;

use super::sealing::ChannelKey;
use super::ssrf::{MAX_URL_LEN, is_public_url};
use crate::AppState;
use crate::auth::{Operator, TenantAccess};
use crate::error::{ApiError, ApiResult};

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
    /// Each `{"kind": "webhook", "url", "secret"}` (url: a public host, at
    /// most 2048 characters; secret: 16 to 256 characters) or
    /// `{"kind": "telegram", "chat_id", "bot_token"}`; at most 10.
    #[schema(value_type = Vec<Object>)]
    channels: Vec<Value>,
}

/// A validated channel, secret included (sealed, as stored, once read back).
#[derive(Clone)]
pub struct Channel {
    pub id: Uuid,
    pub kind: String,
    pub target: String,
    /// The tenant whose channel it is; `None` for an operator channel. The
    /// sealed secret is bound to it.
    tenant: Option<Uuid>,
    fingerprint: String,
    secret: Secret,
}

#[derive(Clone)]
enum Secret {
    /// From a request: sealed when stored.
    Given(String),
    /// As stored: opened at delivery.
    Stored(repo::ChannelRow),
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
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
            secret_fingerprint: self.fingerprint.clone(),
        }
    }

    /// The channel's secret in the clear, for delivery.
    pub(super) fn secret(&self, key: &ChannelKey) -> Result<String, String> {
        match &self.secret {
            Secret::Given(secret) => Ok(secret.clone()),
            Secret::Stored(row) => key.open(self.tenant, row),
        }
    }

    fn given(key: &ChannelKey, kind: &str, target: String, secret: &str) -> Self {
        Channel {
            id: Uuid::new_v4(),
            kind: kind.into(),
            target,
            tenant: None,
            fingerprint: key.fingerprint(secret),
            secret: Secret::Given(secret.to_owned()),
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

fn parse_channels(body: &Bytes, key: &ChannelKey) -> ApiResult<Vec<Channel>> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("the body is not valid JSON ({e})")))?;
    let mut errors = Vec::new();
    // A NUL would reach PostgreSQL (and a 500); no target or secret needs control characters.
    check_json_text(&value, "", &mut errors);
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let Value::Object(map) = value else {
        return Err(ApiError::BadRequest(
            "the body must be a JSON object".into(),
        ));
    };
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
                    _ if url.len() > MAX_URL_LEN => errors.push(FieldError::new(
                        format!("{path}.url"),
                        format!("must be at most {MAX_URL_LEN} characters"),
                    )),
                    Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
                        // Every caller, the operator included: no channel
                        // may point the control plane at its own network.
                        if !is_public_url(url) {
                            errors.push(FieldError::new(
                                format!("{path}.url"),
                                "must be a public address: a webhook cannot target loopback, private, link-local or other reserved hosts",
                            ));
                        }
                    }
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
                channels.push(Channel::given(key, "webhook", url.to_owned(), secret));
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
                channels.push(Channel::given(key, "telegram", chat, token));
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

impl Channel {
    fn from_row(row: repo::ChannelRow, tenant: Option<Uuid>) -> Self {
        Channel {
            id: row.id,
            kind: row.kind.clone(),
            target: row.target.clone(),
            tenant,
            fingerprint: row.secret_fingerprint.clone(),
            secret: Secret::Stored(row),
        }
    }

    /// The row to store: the secret sealed for `tenant`'s channel (`None`:
    /// the operator's).
    fn to_row(&self, key: &ChannelKey, tenant: Option<Uuid>) -> ApiResult<repo::ChannelRow> {
        let (secret, sealed) = match &self.secret {
            Secret::Given(plain) => {
                let sealed = key.seal(tenant, self.id, plain).map_err(|e| {
                    ApiError::Internal(anyhow::anyhow!("sealing a channel secret: {e}"))
                })?;
                (None, Some(sealed))
            }
            Secret::Stored(row) => (row.secret.clone(), None),
        };
        Ok(repo::ChannelRow {
            id: self.id,
            kind: self.kind.clone(),
            target: self.target.clone(),
            secret,
            secret_ciphertext: sealed.as_ref().map(|s| s.ciphertext.clone()),
            secret_nonce: sealed.as_ref().map(|s| s.nonce.clone()),
            secret_key_id: sealed.map(|s| s.key_id),
            secret_fingerprint: self.fingerprint.clone(),
        })
    }
}

fn rows(
    channels: &[Channel],
    key: &ChannelKey,
    tenant: Option<Uuid>,
) -> ApiResult<Vec<repo::ChannelRow>> {
    channels.iter().map(|c| c.to_row(key, tenant)).collect()
}

/// A tenant's channels (inside its transaction).
pub async fn tenant_channels(tx: &mut TenantTx) -> Result<Vec<Channel>, DbError> {
    let tenant = tx.tenant().as_uuid();
    let rows = repo::tenant_channels(tx).await?;
    Ok(rows
        .into_iter()
        .map(|row| Channel::from_row(row, Some(tenant)))
        .collect())
}

/// The operator-wide channels.
pub async fn operator_channels(op: &mut OperatorTx) -> Result<Vec<Channel>, DbError> {
    let rows = repo::operator_channels(op).await?;
    Ok(rows
        .into_iter()
        .map(|row| Channel::from_row(row, None))
        .collect())
}

fn views(channels: &[Channel]) -> ChannelsView {
    ChannelsView {
        channels: channels.iter().map(Channel::public_view).collect(),
    }
}

async fn tenant_exists(tx: &mut TenantTx) -> ApiResult<()> {
    match tenants::get(tx).await? {
        Some(_) => Ok(()),
        None => Err(ApiError::NotFound("tenant")),
    }
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
    TenantAccess { tenant, .. }: TenantAccess,
) -> ApiResult<Json<ChannelsView>> {
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
        (status = 402, description = "the tenant's plan does not allow this; each error names the entitlement", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such tenant, or not one this token may see", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "a field of the request is invalid", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn put_tenant_channels(
    State(state): State<AppState>,
    TenantAccess { caller, tenant }: TenantAccess,
    body: Bytes,
) -> ApiResult<Json<ChannelsView>> {
    let channels = parse_channels(&body, &state.channel_key)?;
    let mut tx = state.db.tenant(tenant).await?;
    tenant_exists(&mut tx).await?;
    crate::billing::check_channels(
        &mut tx,
        channels.iter().map(|c| c.kind.as_str()).enumerate(),
    )
    .await?;
    let rows = rows(&channels, &state.channel_key, Some(tenant.as_uuid()))?;
    repo::replace_tenant_channels(&mut tx, &rows).await?;
    let view = views(&channels);
    audit::append(
        &mut tx,
        &caller.actor(),
        "tenant.alert_channels",
        json!({"channels": view.channels.iter().map(|c| json!({"kind": c.kind, "secret_fingerprint": c.secret_fingerprint})).collect::<Vec<_>>()}),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(view))
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
    _: Operator,
) -> ApiResult<Json<ChannelsView>> {
    let mut op = state.db.operator().await?;
    let channels = operator_channels(&mut op).await?;
    op.commit().await?;
    Ok(Json(views(&channels)))
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
    _: Operator,
    body: Bytes,
) -> ApiResult<Json<ChannelsView>> {
    let channels = parse_channels(&body, &state.channel_key)?;
    // Not tenant data: the operator transaction may write it.
    let mut op = state.db.operator().await?;
    let rows = rows(&channels, &state.channel_key, None)?;
    repo::replace_operator_channels(&mut op, &rows).await?;
    op.commit().await?;
    tracing::info!(
        channels = channels.len(),
        "operator alert channels replaced"
    );
    Ok(Json(views(&channels)))
}
