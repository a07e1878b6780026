//! The HTTP API of alert channels: `PUT`/`GET /tenants/{id}/alert-channels`
//! (operator, or the tenant itself) and `/alert-channels` (operator-wide:
//! every tenant's alerts), their validation, and how a channel is shown.
//!
//! A PUT replaces the whole list:
//! - `webhook`: `{"kind": "webhook", "url": "https://…", "secret": "…"}`;
//! - `telegram`: `{"kind": "telegram", "chat_id": "…", "bot_token": "…"}`.
//!
//! Secrets and bot tokens are write-only: responses show a fingerprint.
//! Delivery is in `notify`; the guard on tenants' webhook hosts in `ssrf`;
//! the SQL in `polybot_store::repo::alerts`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use polybot_core::validation::{FieldError, check_json_text, unknown_field};
use polybot_store::repo::{alerts as repo, tenants};
use polybot_store::{DbError, OperatorTx, TenantTx};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use uuid::Uuid;

use super::ssrf::is_public_url;
use crate::AppState;
use crate::auth::{Caller, Operator, TenantAccess};
use crate::error::{ApiError, ApiResult};
use crate::provision::audit;

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
    pub(super) secret: String,
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

fn parse_channels(body: &Bytes) -> ApiResult<Vec<Channel>> {
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

impl From<repo::ChannelRow> for Channel {
    fn from(row: repo::ChannelRow) -> Self {
        Channel {
            id: row.id,
            kind: row.kind,
            target: row.target,
            secret: row.secret,
        }
    }
}

impl Channel {
    fn to_row(&self) -> repo::ChannelRow {
        repo::ChannelRow {
            id: self.id,
            kind: self.kind.clone(),
            target: self.target.clone(),
            secret: self.secret.clone(),
        }
    }
}

fn rows(channels: &[Channel]) -> Vec<repo::ChannelRow> {
    channels.iter().map(Channel::to_row).collect()
}

/// A tenant's channels (inside its transaction).
pub async fn tenant_channels(tx: &mut TenantTx) -> Result<Vec<Channel>, DbError> {
    let rows = repo::tenant_channels(tx).await?;
    Ok(rows.into_iter().map(Channel::from).collect())
}

/// The operator-wide channels.
pub async fn operator_channels(op: &mut OperatorTx) -> Result<Vec<Channel>, DbError> {
    let rows = repo::operator_channels(op).await?;
    Ok(rows.into_iter().map(Channel::from).collect())
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
        (status = 404, description = "no such tenant, or not one this token may see", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "a field of the request is invalid", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn put_tenant_channels(
    State(state): State<AppState>,
    TenantAccess { caller, tenant }: TenantAccess,
    body: Bytes,
) -> ApiResult<Json<ChannelsView>> {
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
    repo::replace_tenant_channels(&mut tx, &rows(&channels)).await?;
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
    let channels = parse_channels(&body)?;
    // Not tenant data: the operator transaction may write it.
    let mut op = state.db.operator().await?;
    repo::replace_operator_channels(&mut op, &rows(&channels)).await?;
    op.commit().await?;
    tracing::info!(
        channels = channels.len(),
        "operator alert channels replaced"
    );
    Ok(Json(views(&channels)))
}
