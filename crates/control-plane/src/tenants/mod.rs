//! The `/tenants` API.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use polybot_core::Mode;
use polybot_core::TenantId;
use polybot_core::keys::parse_exchange_keys;
use polybot_core::lifecycle::{Actor, TenantAction, TenantState};
use polybot_core::validation::{FieldError, unknown_field};
use polybot_secrets::TenantSecret;
use polybot_store::repo::tenants::TenantDetail;
use polybot_store::repo::{audit, configs, idempotency, tenants, tokens};
use polybot_store::{DbError, TenantTx};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::AppState;
use crate::auth::{
    Caller, MAX_TOKENS_PER_TENANT, Operator, TenantAccess, TokenLifetime, bearer,
    create_tenant_token, hash_token,
};
use crate::error::{ApiError, ApiResult};
use crate::paging::{decode_cursor, encode_cursor};

pub mod capacity;
mod input;
pub mod live;
pub mod recording;

use input::{idempotency_key, parse_body, parse_input, request_hash, to_json};

/// A request body as a JSON object, with the API's checks of its text (for
/// other modules' handlers: 400 if it is not an object).
pub(crate) fn parse_object(body: &Bytes) -> ApiResult<serde_json::Map<String, Value>> {
    parse_body(body)
}

// ---------------------------------------------------------------------------
// Views
// ---------------------------------------------------------------------------

/// Where onboarding stands.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ProvisioningView {
    /// The last step completed: created, role, secret, spec, done.
    pub step: String,
    /// Why onboarding failed, if it did.
    pub last_error: Option<String>,
}

/// A tenant, as the API shows it. Exchange keys appear only as masked fingerprints.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TenantView {
    pub id: Uuid,
    pub name: String,
    /// paper or live.
    pub mode: String,
    /// provisioning, active, paused, failed, offboarding or offboarded.
    pub state: String,
    pub provisioning: ProvisioningView,
    /// Paused by an operator: only an operator can resume it.
    pub held_by_operator: bool,
    /// Why the operator holds it, if they said.
    pub hold_reason: Option<String>,
    /// Venue → masked key fingerprint (`sha256:` and 12 hex digits).
    #[schema(value_type = Object)]
    pub exchange_keys: Value,
    #[schema(value_type = Object)]
    pub strategies: Value,
    #[schema(value_type = Object)]
    pub risk: Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<TenantDetail> for TenantView {
    fn from(row: TenantDetail) -> Self {
        TenantView {
            id: row.id,
            name: row.name,
            mode: row.mode,
            state: row.state.as_str().to_owned(),
            provisioning: ProvisioningView {
                step: row.provisioning_step,
                last_error: row.last_error,
            },
            held_by_operator: row.held_by_operator,
            hold_reason: row.hold_reason,
            exchange_keys: row.fingerprints.unwrap_or_else(|| json!({})),
            strategies: row.strategies.unwrap_or_else(|| json!({})),
            risk: row.risk.unwrap_or_else(|| json!({})),
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

async fn load_view(tx: &mut TenantTx) -> Result<Option<TenantView>, DbError> {
    Ok(tenants::detail(tx).await?.map(TenantView::from))
}

/// What onboarding answers to `mode=live` or `shadow`: a tenant starts in
/// paper, and going live is a separate, deliberate step (the preflight, the
/// acknowledgement, the audit entry of `PATCH /tenants/{id}`).
pub const LIVE_REFUSED: &str = "a tenant starts in paper; once onboarded, switch it to shadow \
     or live with PATCH /tenants/{id} (see docs/live-trading.md)";

fn live_refused() -> FieldError {
    FieldError::new("mode", LIVE_REFUSED)
}

// ---------------------------------------------------------------------------
// Handlers
// ---------------------------------------------------------------------------

/// The body of `POST /tenants` (documentation; the handler validates field by field).
#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct CreateTenantRequest {
    /// 1 to 100 characters.
    name: String,
    /// paper (default). shadow and live are refused (422): a tenant starts in
    /// paper and switches with `PATCH /tenants/{id}`.
    mode: Option<String>,
    /// Per venue, all optional: polymarket {private_key, api_key, secret, passphrase},
    /// kalshi {key_id, private_key_pem}, binance_us {api_key, secret_key},
    /// coinbase {api_key, secret, passphrase}, kraken {api_key, private_key},
    /// alpaca {key_id, secret_key}, newsapi {api_key}, ibkr {username, password}.
    #[schema(value_type = Option<Object>)]
    exchange_keys: Option<Value>,
    /// Strategy name → typed config: complement_arb, cross_venue_arb, crypto_15m, news_arb.
    #[schema(value_type = Option<Object>)]
    strategies: Option<Value>,
    /// max_order_notional, max_position_per_market, max_total_exposure, max_daily_loss, max_open_orders, kill_switch, …
    #[schema(value_type = Option<Object>)]
    risk: Option<Value>,
}

/// Onboard a tenant.
#[utoipa::path(post, path = "/tenants", operation_id = "create_tenant", tag = "tenants",
    request_body = CreateTenantRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Replays the first response for the same key and body")),
    responses(
        (status = 201, description = "the tenant; onboarding continues in the background", body = TenantView),
        (status = 400, description = "the body is not a JSON object", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "no bearer token, or not a valid one", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 402, description = "the tenant's plan does not allow this; each error names the entitlement", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "the token is a tenant's; only an operator token may do this", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "another tenant that is not offboarded has this name, or (local launcher) the machine runs no more workers: `/problems/capacity`, naming the limit reached and its figures", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "a field of the request is invalid", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    operator: Operator,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let caller = operator.caller();
    let key = idempotency_key(&headers)?;
    let body = parse_body(&body)?;
    // Refused alongside every other error, so a form shows them all at once.
    let live = matches!(
        body.get("mode").and_then(Value::as_str),
        Some("live" | "shadow")
    );
    let input = parse_input(
        &body,
        &[
            "name",
            "mode",
            "exchange_keys",
            "strategies",
            "risk",
            "plan",
        ],
    )
    .map_err(|mut errors| {
        if live {
            errors.push(live_refused());
        }
        errors
    })
    .and_then(|input| {
        let mut errors = Vec::new();
        if input.name.is_none() {
            errors.push(FieldError::new("name", "is required"));
        }
        if matches!(input.mode, Some(Mode::Live | Mode::Shadow)) {
            errors.push(live_refused());
        }
        if let (Some(recording), Some(strategies)) = (&state.settings.recording, &input.strategies)
        {
            errors.extend(recording.refusals(strategies));
        }
        if errors.is_empty() {
            Ok(input)
        } else {
            Err(errors)
        }
    })
    .map_err(ApiError::Validation)?;

    let tenant = TenantId::new();
    let mut tx = state.db.tenant(tenant).await?;
    if let Some(key) = &key {
        let hash = request_hash(&body);
        if !idempotency::claim(&mut tx, &caller.scope(), key, &hash).await? {
            let stored = idempotency::get(&mut tx, &caller.scope(), key)
                .await?
                .ok_or_else(|| anyhow::anyhow!("the idempotency key vanished"))?;
            tx.rollback().await?;
            if stored.request_hash != hash {
                return Err(ApiError::IdempotencyMismatch);
            }
            let (Some(status), Some(response)) = (stored.response_status, stored.response_body)
            else {
                return Err(ApiError::Conflict(
                    "the first request with this Idempotency-Key is still in progress".into(),
                ));
            };
            return Ok(created_response(
                StatusCode::from_u16(u16::try_from(status).unwrap_or(201))
                    .unwrap_or(StatusCode::CREATED),
                response,
            ));
        }
    }

    // With the local launcher, the machine must have room for its worker;
    // the admission holds until the tenant is committed.
    let admitted = match &state.local_workers {
        Some(workers) => Some(workers.admit(&state.db).await?),
        None => None,
    };
    // The plan asked for (or the deployment's default) must allow the rest.
    let plan = match body.get("plan") {
        None | Some(Value::Null) => state.settings.billing.default_plan.clone(),
        Some(Value::String(plan)) => Some(plan.clone()),
        Some(_) => {
            return Err(ApiError::Validation(vec![FieldError::new(
                "plan",
                "expected a plan id (GET /plans)",
            )]));
        }
    };
    let plan = match plan {
        Some(id) => Some(crate::billing::api::known_plan(&mut tx, &id).await?),
        None => None,
    };
    if let Some(plan) = &plan {
        crate::billing::refuse_exceeded(crate::billing::exceeded(
            plan,
            &crate::billing::Wanted::of(input.mode, input.strategies.as_ref(), input.keys.as_ref()),
        ))?;
    }
    let name = input.name.unwrap_or_default();
    let mode = input.mode.unwrap_or_default();
    tenants::insert(&mut tx, &name, mode)
        .await
        .map_err(|err| name_taken(err, &name))?;
    if let Some(plan) = &plan {
        polybot_store::repo::billing::set_plan(&mut tx, &plan.id).await?;
    }
    configs::insert(
        &mut tx,
        &to_json(&input.strategies.unwrap_or_default()),
        &to_json(&input.risk.unwrap_or_default()),
    )
    .await?;
    let keys = input.keys.unwrap_or_default();
    state
        .secrets
        .put(
            &mut tx,
            &TenantSecret {
                exchange_keys: keys.clone(),
                database_url: None,
            },
        )
        .await?;
    audit::append(
        &mut tx,
        &caller.actor(),
        "tenant.create",
        json!({"name": name, "mode": mode.as_str(), "venues": keys.venues().collect::<Vec<_>>()}),
    )
    .await?;
    let view = load_view(&mut tx)
        .await?
        .ok_or_else(|| anyhow::anyhow!("the new tenant vanished"))?;
    let body = to_json(&view);
    if let Some(key) = &key {
        idempotency::record_response(
            &mut tx,
            &caller.scope(),
            key,
            StatusCode::CREATED.as_u16() as i16,
            &body,
        )
        .await?;
    }
    tx.commit().await?;
    drop(admitted);
    state.start_provisioning(tenant);
    Ok(created_response(StatusCode::CREATED, body))
}

/// A name another live tenant holds is a 409 that says so; any other
/// database error stays what it is.
fn name_taken(err: polybot_store::DbError, name: &str) -> ApiError {
    if tenants::is_name_taken(&err) {
        ApiError::Conflict(format!(
            "name: a tenant named {name:?} already exists; choose another name \
             (a name is freed once its tenant is offboarded)"
        ))
    } else {
        err.into()
    }
}

fn created_response(status: StatusCode, body: Value) -> Response {
    let location = body
        .get("id")
        .and_then(Value::as_str)
        .map(|id| format!("/tenants/{id}"));
    let mut response = (status, Json(body)).into_response();
    if let Some(location) = location.and_then(|l| HeaderValue::from_str(&l).ok()) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only tenants in this state.
    state: Option<String>,
    /// At most this many (1 to 200, default 50).
    limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TenantPage {
    pub items: Vec<TenantView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// List tenants (an operator sees all; a tenant token, its own).
#[utoipa::path(get, path = "/tenants", operation_id = "list_tenants", tag = "tenants",
    params(ListQuery),
    responses(
        (status = 200, description = "a page of the tenants this token may see", body = TenantPage),
        (status = 401, description = "no bearer token, or not a valid one", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "a field of the request is invalid", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<ListQuery>,
) -> ApiResult<Json<TenantPage>> {
    let mut errors = Vec::new();
    let wanted = match query.state.as_deref().map(str::parse::<TenantState>) {
        None => None,
        Some(Ok(state)) => Some(state),
        Some(Err(_)) => {
            let states: Vec<&str> = TenantState::ALL
                .into_iter()
                .map(TenantState::as_str)
                .collect();
            errors.push(FieldError::new(
                "state",
                format!("must be one of {}", states.join(", ")),
            ));
            None
        }
    };
    let limit = query.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        errors.push(FieldError::new("limit", "must be between 1 and 200"));
    }
    let cursor = match &query.cursor {
        None => None,
        Some(c) => match decode_cursor(c) {
            Some(c) => Some(c),
            None => {
                errors.push(FieldError::new(
                    "cursor",
                    "is not a cursor this API returned",
                ));
                None
            }
        },
    };
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    if let Caller::Tenant(own) = caller {
        let mut tx = state.db.tenant(own).await?;
        let view = load_view(&mut tx).await?;
        tx.commit().await?;
        let items = view
            .into_iter()
            .filter(|v| wanted.is_none_or(|s| s.as_str() == v.state))
            .collect();
        return Ok(Json(TenantPage {
            items,
            next_cursor: None,
        }));
    }
    let mut op = state.db.operator().await?;
    let rows = tenants::list_details(&mut op, wanted, cursor, limit + 1).await?;
    op.commit().await?;
    let mut items: Vec<TenantView> = rows.into_iter().map(TenantView::from).collect();
    let next_cursor = if items.len() as i64 > limit {
        items.truncate(usize::try_from(limit).unwrap_or(0));
        items.last().map(|v| encode_cursor(v.created_at, v.id))
    } else {
        None
    };
    Ok(Json(TenantPage { items, next_cursor }))
}

/// One tenant.
#[utoipa::path(get, path = "/tenants/{id}", operation_id = "get_tenant", tag = "tenants",
    params(("id" = Uuid, Path, description = "the tenant's id")),
    responses(
        (status = 200, description = "the tenant", body = TenantView),
        (status = 401, description = "no bearer token, or not a valid one", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such tenant, or not one this token may see", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get(
    State(state): State<AppState>,
    TenantAccess { tenant, .. }: TenantAccess,
) -> ApiResult<Json<TenantView>> {
    let mut tx = state.db.tenant(tenant).await?;
    let view = load_view(&mut tx)
        .await?
        .ok_or(ApiError::NotFound("tenant"))?;
    tx.commit().await?;
    Ok(Json(view))
}

async fn lock_state(tx: &mut TenantTx) -> ApiResult<TenantState> {
    tenants::lock_state(tx)
        .await?
        .ok_or(ApiError::NotFound("tenant"))
}

/// The body of `PATCH /tenants/{id}` (documentation; the handler validates field by field).
#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct UpdateTenantRequest {
    /// 1 to 100 characters.
    name: Option<String>,
    /// paper, shadow or live. shadow and live need every venue the tenant
    /// trades or holds keys for to execute (Polymarket and Kalshi), keys for
    /// each of them, and keys that pass a signed, read-only preflight
    /// (Polymarket: balance and allowance; Kalshi: the balance); live also
    /// needs `live_acknowledgement` and, when the
    /// platform sets `POLYBOT_LIVE_REQUIRES_OPERATOR` (the default), an
    /// operator token.
    mode: Option<String>,
    /// With `mode: live` only, exactly "I understand real orders will be sent".
    live_acknowledgement: Option<String>,
    #[schema(value_type = Option<Object>)]
    strategies: Option<Value>,
    #[schema(value_type = Option<Object>)]
    risk: Option<Value>,
}

/// Change a tenant's name, mode, strategies or risk limits (validated like
/// onboarding). Switching to shadow or live first asks the venue, with the
/// tenant's keys, for its balance; the audit log records who switched.
#[utoipa::path(patch, path = "/tenants/{id}", operation_id = "update_tenant", tag = "tenants",
    request_body = UpdateTenantRequest,
    params(("id" = Uuid, Path, description = "the tenant's id")),
    responses(
        (status = 200, description = "the updated tenant", body = TenantView),
        (status = 400, description = "the body is not a JSON object", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "no bearer token, or not a valid one", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 402, description = "the tenant's plan does not allow this; each error names the entitlement", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "a tenant token asked for live where only an operator may switch a tenant to live", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such tenant, or not one this token may see", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "the tenant's state does not allow this", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "a field of the request is invalid, a venue has no live execution, the live acknowledgement is missing, or the keys are missing or failed the preflight (exchange_keys.polymarket or exchange_keys.kalshi, with the venue's status and words)", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn patch(
    State(state): State<AppState>,
    TenantAccess { caller, tenant }: TenantAccess,
    body: Bytes,
) -> ApiResult<Json<TenantView>> {
    let mut body = parse_body(&body)?;
    let acknowledgement = body.remove(live::ACKNOWLEDGEMENT_FIELD);
    let input =
        parse_input(&body, &["name", "mode", "strategies", "risk"]).map_err(|mut errors| {
            let mode = body
                .get("mode")
                .and_then(Value::as_str)
                .and_then(|m| m.parse::<Mode>().ok());
            errors.extend(live::check_acknowledgement(mode, acknowledgement.as_ref()));
            ApiError::Validation(errors)
        })?;
    let mut acknowledged = live::check_acknowledgement(input.mode, acknowledgement.as_ref());
    if let (Some(recording), Some(strategies)) = (&state.settings.recording, &input.strategies) {
        acknowledged.extend(recording.refusals(strategies));
    }
    if !acknowledged.is_empty() {
        return Err(ApiError::Validation(acknowledged));
    }
    let settings = &state.settings.live;
    if input.mode == Some(Mode::Live) && settings.requires_operator && caller != Caller::Operator {
        return Err(ApiError::Forbidden(live::OPERATOR_ONLY));
    }
    if let Some(mode @ (Mode::Live | Mode::Shadow)) = input.mode {
        // Read, then ask the venue outside any transaction: the preflight
        // may take seconds, and no row should stay locked meanwhile.
        let mut tx = state.db.tenant(tenant).await?;
        let detail = tenants::detail(&mut tx)
            .await?
            .ok_or(ApiError::NotFound("tenant"))?;
        let keys = state
            .secrets
            .get(&mut tx)
            .await?
            .map(|s| s.exchange_keys)
            .unwrap_or_default();
        tx.commit().await?;
        let strategies = match &input.strategies {
            Some(s) => s.clone(),
            None => detail
                .strategies
                .map(serde_json::from_value)
                .transpose()
                .map_err(|e| ApiError::Internal(anyhow::anyhow!("stored strategies: {e}")))?
                .unwrap_or_default(),
        };
        let refused = live::venues_without_execution(&strategies, &keys);
        if !refused.is_empty() {
            return Err(ApiError::Validation(vec![live::venues_refused(
                mode, &refused,
            )]));
        }
        if detail.mode != mode.as_str() {
            live::preflight_venues(settings, &strategies, &keys)
                .await
                .map_err(ApiError::Validation)?;
        }
    }
    let mut tx = state.db.tenant(tenant).await?;
    let current = lock_state(&mut tx).await?;
    if !current.is_editable() {
        return Err(ApiError::Conflict(format!(
            "tenant is {current}; it cannot be changed"
        )));
    }
    let stored = tenants::detail(&mut tx)
        .await?
        .ok_or(ApiError::NotFound("tenant"))?;
    let before = stored.mode;
    crate::billing::check(
        &mut tx,
        &crate::billing::Wanted::of(input.mode, input.strategies.as_ref(), None),
    )
    .await?;
    let changed: Vec<&str> = body.keys().map(String::as_str).collect();
    // The kill switch alone replaces nothing: the running worker acts on it.
    let risk_changed = input.risk.as_ref().is_some_and(|risk| {
        stored.risk.as_ref().map(crate::provision::launch_risk)
            != Some(crate::provision::launch_risk(&to_json(risk)))
    });
    let spec_changed = input.mode.is_some() || input.strategies.is_some() || risk_changed;
    tenants::update(&mut tx, input.name.as_deref(), input.mode, spec_changed)
        .await
        .map_err(|err| name_taken(err, input.name.as_deref().unwrap_or_default()))?;
    configs::update(
        &mut tx,
        input.strategies.as_ref().map(to_json).as_ref(),
        input.risk.as_ref().map(to_json).as_ref(),
    )
    .await?;
    audit::append(
        &mut tx,
        &caller.actor(),
        "tenant.update",
        json!({"fields": changed}),
    )
    .await?;
    if let Some(mode) = input.mode.filter(|m| m.as_str() != before) {
        audit::append(
            &mut tx,
            &caller.actor(),
            "tenant.mode",
            json!({"from": before, "to": mode.as_str()}),
        )
        .await?;
    }
    let view = load_view(&mut tx)
        .await?
        .ok_or(ApiError::NotFound("tenant"))?;
    tx.commit().await?;
    state.wake();
    Ok(Json(view))
}

/// Replace a tenant's exchange keys (write-only: the response shows fingerprints).
#[utoipa::path(put, path = "/tenants/{id}/exchange-keys", operation_id = "rotate_exchange_keys", tag = "tenants",
    request_body = Object,
    params(("id" = Uuid, Path, description = "the tenant's id")),
    responses(
        (status = 200, description = "the tenant, whose worker restarts with the new keys", body = TenantView),
        (status = 400, description = "the body is not a JSON object", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "no bearer token, or not a valid one", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 402, description = "the tenant's plan does not allow this; each error names the entitlement", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such tenant, or not one this token may see", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "the tenant's state does not allow this", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "a field of the request is invalid", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn rotate_keys(
    State(state): State<AppState>,
    TenantAccess { caller, tenant }: TenantAccess,
    body: Bytes,
) -> ApiResult<Json<TenantView>> {
    let body = parse_body(&body)?;
    let keys = parse_exchange_keys(&Value::Object(body)).map_err(ApiError::Validation)?;
    let mut tx = state.db.tenant(tenant).await?;
    let current = lock_state(&mut tx).await?;
    if !current.is_editable() {
        return Err(ApiError::Conflict(format!(
            "tenant is {current}; its keys cannot be changed"
        )));
    }
    crate::billing::check(
        &mut tx,
        &crate::billing::Wanted::of(None, None, Some(&keys)),
    )
    .await?;
    let mut secret = state.secrets.get(&mut tx).await?.unwrap_or_default();
    secret.exchange_keys = keys.clone();
    state.secrets.put(&mut tx, &secret).await?;
    tenants::bump_spec_version(&mut tx).await?;
    let fingerprints = polybot_secrets::fingerprints(&mut tx).await?;
    audit::append(
        &mut tx,
        &caller.actor(),
        "tenant.rotate_keys",
        json!({"venues": keys.venues().collect::<Vec<_>>(), "fingerprints": fingerprints}),
    )
    .await?;
    let view = load_view(&mut tx)
        .await?
        .ok_or(ApiError::NotFound("tenant"))?;
    tx.commit().await?;
    state.wake();
    Ok(Json(view))
}

/// The body of `POST /tenants/{id}/pause` (documentation; the handler validates it).
#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct PauseRequest {
    /// An operator's reason for holding the tenant, up to 200 characters,
    /// shown to the tenant. Only an operator token may give one.
    reason: Option<String>,
}

/// Stop a tenant's worker until resumed. An operator's pause is a hold:
/// the tenant's own tokens cannot resume it.
#[utoipa::path(post, path = "/tenants/{id}/pause", operation_id = "pause_tenant", tag = "tenants",
    request_body(content = Option<PauseRequest>, description = "optional: the operator's reason"),
    params(("id" = Uuid, Path, description = "the tenant's id")),
    responses(
        (status = 200, description = "the paused tenant", body = TenantView),
        (status = 400, description = "the body is not a JSON object", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "no bearer token, or not a valid one", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "a tenant token gave a reason; only an operator holds a tenant", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such tenant, or not one this token may see", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "the tenant's state does not allow this", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "a field of the request is invalid", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn pause(
    State(state): State<AppState>,
    access: TenantAccess,
    body: Bytes,
) -> ApiResult<Json<TenantView>> {
    let reason = if body.is_empty() {
        None
    } else {
        let body = parse_body(&body)?;
        let mut errors = Vec::new();
        for key in body.keys().filter(|k| *k != "reason") {
            errors.push(unknown_field(key, key, &["reason"]));
        }
        let reason = match body.get("reason") {
            None | Some(Value::Null) => None,
            Some(Value::String(r))
                if (1..=200).contains(&r.chars().count()) && !r.chars().any(char::is_control) =>
            {
                Some(r.clone())
            }
            Some(_) => {
                errors.push(FieldError::new(
                    "reason",
                    "must be text of 1 to 200 printable characters",
                ));
                None
            }
        };
        if !errors.is_empty() {
            return Err(ApiError::Validation(errors));
        }
        reason
    };
    if reason.is_some() && access.caller != Caller::Operator {
        return Err(ApiError::Forbidden(
            "only an operator holds a tenant; a tenant's pause takes no reason",
        ));
    }
    transition(&state, access, TenantAction::Pause, reason.as_deref()).await
}

/// Start a paused tenant again; retry a failed onboarding; restore an
/// offboarded tenant within its secret's recovery window.
#[utoipa::path(post, path = "/tenants/{id}/resume", operation_id = "resume_tenant", tag = "tenants",
    params(("id" = Uuid, Path, description = "the tenant's id")),
    responses(
        (status = 200, description = "the resumed tenant", body = TenantView),
        (status = 401, description = "no bearer token, or not a valid one", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such tenant, or not one this token may see", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "the tenant's state does not allow this, an operator holds it paused and the token is the tenant's, or (local launcher) the machine runs no more workers: `/problems/capacity`, naming the limit reached and its figures", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn resume(
    State(state): State<AppState>,
    access: TenantAccess,
) -> ApiResult<Json<TenantView>> {
    transition(&state, access, TenantAction::Resume, None).await
}

async fn transition(
    state: &AppState,
    TenantAccess { caller, tenant }: TenantAccess,
    action: TenantAction,
    hold_reason: Option<&str>,
) -> ApiResult<Json<TenantView>> {
    let mut tx = state.db.tenant(tenant).await?;
    let before = tenants::lock_standing(&mut tx)
        .await?
        .ok_or(ApiError::NotFound("tenant"))?;
    let actor = match caller {
        Caller::Operator => Actor::Operator,
        Caller::Tenant(_) => Actor::Tenant,
    };
    let held = before
        .apply(action, actor)
        .map_err(|refusal| ApiError::Conflict(refusal.to_string()))?;
    let step = held.transition;
    // A tenant that starts holding a worker slot (resumed from paused,
    // failed or offboarded) needs room for its worker on this machine.
    let admitted = match &state.local_workers {
        Some(workers) if capacity::holds_slot(step.to) && !capacity::holds_slot(step.from) => {
            Some(workers.admit(&state.db).await?)
        }
        _ => None,
    };
    if step.restarts_onboarding
        && step.from == TenantState::Offboarded
        && !state.secrets.restore(&mut tx).await?
    {
        return Err(ApiError::Conflict(
            "the tenant's secret is past its recovery window; onboard it again".into(),
        ));
    }
    tenants::set_state(&mut tx, step.to, step.restarts_onboarding).await?;
    let hold_changed = held.held_by_operator != before.held_by_operator;
    if hold_changed || (held.held_by_operator && hold_reason.is_some()) {
        tenants::set_hold(&mut tx, held.held_by_operator, hold_reason).await?;
    }
    if held.changes(before) {
        audit::append(
            &mut tx,
            &caller.actor(),
            &format!("tenant.{}", action.verb()),
            json!({"from": step.from, "to": step.to, "held_by_operator": held.held_by_operator, "reason": hold_reason}),
        )
        .await?;
    }
    let view = load_view(&mut tx)
        .await?
        .ok_or(ApiError::NotFound("tenant"))?;
    tx.commit().await?;
    drop(admitted);
    if step.restarts_onboarding {
        state.start_provisioning(tenant);
    }
    state.wake();
    Ok(Json(view))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeleteQuery {
    /// Also erase every row of the tenant (GDPR).
    purge: Option<bool>,
}

/// Offboard a tenant: worker stopped, secret scheduled for deletion, data
/// kept; with `?purge=true` the tenant's rows are erased too.
#[utoipa::path(delete, path = "/tenants/{id}", operation_id = "delete_tenant", tag = "tenants",
    params(("id" = Uuid, Path, description = "the tenant's id"), DeleteQuery),
    responses(
        (status = 202, description = "offboarding started; the tenant as it is now: `offboarded`, or still `offboarding` when a step must be retried (the reconciler's leader finishes it)", body = TenantView),
        (status = 204, description = "the tenant was already offboarded"),
        (status = 409, description = "`purge=true` while the tenant is still `offboarding`; repeat once it is `offboarded`", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "no bearer token, or not a valid one", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "the token is a tenant's; only an operator token may do this", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such tenant, or not one this token may see", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn delete(
    State(state): State<AppState>,
    _: Operator,
    TenantAccess { caller, tenant }: TenantAccess,
    Query(query): Query<DeleteQuery>,
) -> ApiResult<Response> {
    let mut tx = state.db.tenant(tenant).await?;
    let current = lock_state(&mut tx).await?;
    // Deleting an offboarded tenant is not an error: it only purges (if asked).
    let offboard = current.apply(TenantAction::Offboard).ok();
    if let Some(step) = offboard {
        tenants::set_state(&mut tx, step.to, false).await?;
        audit::append(
            &mut tx,
            &caller.actor(),
            "tenant.offboard",
            json!({"purge": query.purge.unwrap_or(false)}),
        )
        .await?;
    }
    tx.commit().await?;
    state.tokens.clear();
    if offboard.is_some()
        && let Err(err) = state.provisioner.offboard(tenant).await
    {
        // The tenant is `offboarding` for good: what did not finish (a role
        // that cannot be dropped yet, a secret store that did not answer) is
        // the leader's to retry, not the caller's to see as a 500.
        tracing::warn!(%tenant, error = %err, "offboarding did not finish; the reconciler's leader retries it");
        state.wake();
    }
    if query.purge.unwrap_or(false) {
        let mut tx = state.db.tenant(tenant).await?;
        // Purging before the role is dropped and the secret scheduled for
        // deletion would leave them behind with nothing to retry them.
        let now = lock_state(&mut tx).await?;
        if now != TenantState::Offboarded {
            return Err(ApiError::Conflict(format!(
                "the tenant is {now}: offboarding has started but not finished (the reconciler retries it); purge with another DELETE once it is offboarded"
            )));
        }
        tenants::purge(&mut tx).await?;
        tx.commit().await?;
        tracing::info!(%tenant, actor = caller.actor(), "tenant purged");
        state.wake();
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let mut tx = state.db.tenant(tenant).await?;
    let view = load_view(&mut tx)
        .await?
        .ok_or(ApiError::NotFound("tenant"))?;
    tx.commit().await?;
    Ok((StatusCode::ACCEPTED, Json(view)).into_response())
}

/// The longest token label accepted, in characters.
const MAX_TOKEN_LABEL: usize = 100;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TokenCreated {
    pub id: Uuid,
    pub tenant_id: Uuid,
    /// Shown once; only its hash is stored.
    pub token: String,
    /// After this the token is refused.
    pub expires_at: DateTime<Utc>,
}

/// The body of `POST /tenants/{id}/tokens` (documentation; the handler validates it).
#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct CreateTokenRequest {
    /// A name for the token, up to 100 characters (a longer one is a 422).
    #[schema(max_length = 100)]
    label: Option<String>,
    /// 1 to 365 days (default 90). A tenant's token cannot create a token
    /// that outlives itself.
    expires_in_days: Option<i64>,
}

/// Create a bearer token for a tenant (operator, or the tenant itself).
#[utoipa::path(post, path = "/tenants/{id}/tokens", operation_id = "create_tenant_token", tag = "tenants",
    request_body(content = Option<CreateTokenRequest>, description = "optional: the label and lifetime"),
    params(("id" = Uuid, Path, description = "the tenant's id")),
    responses(
        (status = 201, description = "a new bearer token for the tenant, shown only this once", body = TokenCreated),
        (status = 400, description = "the body is not a JSON object", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "no bearer token, or not a valid one", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 402, description = "the tenant's plan does not allow this; each error names the entitlement", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "a tenant token asked for a token that outlives itself", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such tenant, or not one this token may see", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "the tenant's state does not allow this, or it holds the maximum number of tokens", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "a field of the request is invalid", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create_token(
    State(state): State<AppState>,
    access: TenantAccess,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<TokenCreated>)> {
    let own = bearer(&headers).map(hash_token);
    create_token_bounded(state, access, own.as_deref(), body).await
}

/// Creates a tenant token; a tenant caller's `own` is the hash of the token
/// it acts with (its bearer, or the one its dashboard session was opened
/// with), whose expiry the new token may not pass.
pub(crate) async fn create_token_bounded(
    state: AppState,
    TenantAccess { caller, tenant }: TenantAccess,
    own: Option<&[u8]>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<TokenCreated>)> {
    let known = ["label", "expires_in_days"];
    let (label, lifetime) = if body.is_empty() {
        (String::new(), None)
    } else {
        let body = parse_body(&body)?;
        let mut errors = Vec::new();
        for key in body.keys().filter(|k| !known.contains(&k.as_str())) {
            errors.push(unknown_field(key, key, &known));
        }
        let lifetime = match body.get("expires_in_days") {
            None | Some(Value::Null) => None,
            Some(days) => {
                let days = days.as_i64().and_then(TokenLifetime::days);
                if days.is_none() {
                    errors.push(FieldError::new(
                        "expires_in_days",
                        format!(
                            "must be a whole number of days from 1 to {}",
                            TokenLifetime::MAX.as_days()
                        ),
                    ));
                }
                days
            }
        };
        let label = match body.get("label") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(label)) if label.chars().count() <= MAX_TOKEN_LABEL => label.clone(),
            Some(Value::String(_)) => {
                errors.push(FieldError::new(
                    "label",
                    format!("must be at most {MAX_TOKEN_LABEL} characters"),
                ));
                String::new()
            }
            Some(_) => {
                errors.push(FieldError::new("label", "must be a string"));
                String::new()
            }
        };
        if !errors.is_empty() {
            return Err(ApiError::Validation(errors));
        }
        (label, lifetime)
    };
    let now = Utc::now();
    let mut tx = state.db.tenant(tenant).await?;
    let current = lock_state(&mut tx).await?;
    if !current.is_editable() {
        return Err(ApiError::Conflict(format!("tenant is {current}")));
    }
    let mut expires_at = lifetime.unwrap_or(TokenLifetime::DEFAULT).expiry(now);
    if let Caller::Tenant(_) = caller {
        // A token may hand on no more than it has: never a longer life.
        let own = match own {
            Some(hash) => tokens::expiry_of(&mut tx, hash).await?,
            None => None,
        };
        let own = own.ok_or(ApiError::Unauthorized)?;
        if expires_at > own {
            if lifetime.is_some() {
                return Err(ApiError::Forbidden(
                    "a tenant token cannot create a token that outlives itself",
                ));
            }
            expires_at = own;
        }
    }
    let live = tokens::count_live(&mut tx).await?;
    crate::billing::check_token_cap(&mut tx, live).await?;
    if live >= MAX_TOKENS_PER_TENANT {
        return Err(ApiError::Conflict(format!(
            "the tenant already has {MAX_TOKENS_PER_TENANT} live tokens, the maximum; revoke one first"
        )));
    }
    let (token_id, token) = create_tenant_token(&mut tx, &label, expires_at).await?;
    audit::append(
        &mut tx,
        &caller.actor(),
        "tenant.token_created",
        json!({"token_id": token_id, "label": label, "expires_at": expires_at}),
    )
    .await?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(TokenCreated {
            id: token_id,
            tenant_id: tenant.as_uuid(),
            token: secrecy::ExposeSecret::expose_secret(&token).to_owned(),
            expires_at,
        }),
    ))
}

/// A tenant token as listed: never the token itself.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TokenView {
    pub id: Uuid,
    pub label: String,
    pub created_at: DateTime<Utc>,
    /// After this the token is refused.
    pub expires_at: DateTime<Utc>,
    /// When it last authenticated a request that missed the auth cache.
    pub last_used_at: Option<DateTime<Utc>>,
    /// Whether it has expired.
    pub expired: bool,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TokenList {
    /// Every unrevoked token of the tenant, oldest first (expired ones included).
    pub items: Vec<TokenView>,
}

/// List a tenant's tokens (never their secrets).
#[utoipa::path(get, path = "/tenants/{id}/tokens", operation_id = "list_tenant_tokens", tag = "tenants",
    params(("id" = Uuid, Path, description = "the tenant's id")),
    responses(
        (status = 200, description = "the tenant's unrevoked tokens", body = TokenList),
        (status = 401, description = "no bearer token, or not a valid one", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such tenant, or not one this token may see", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_tokens(
    State(state): State<AppState>,
    TenantAccess { tenant, .. }: TenantAccess,
) -> ApiResult<Json<TokenList>> {
    let mut tx = state.db.tenant(tenant).await?;
    if !tenants::exists(&mut tx).await? {
        return Err(ApiError::NotFound("tenant"));
    }
    let rows = tokens::list(&mut tx).await?;
    tx.commit().await?;
    let now = Utc::now();
    let items = rows
        .into_iter()
        .map(|t| TokenView {
            expired: t.expires_at <= now,
            id: t.id,
            label: t.label,
            created_at: t.created_at,
            expires_at: t.expires_at,
            last_used_at: t.last_used_at,
        })
        .collect();
    Ok(Json(TokenList { items }))
}

/// Revoke one of a tenant's tokens; it is refused from then on.
#[utoipa::path(delete, path = "/tenants/{id}/tokens/{token_id}", operation_id = "revoke_tenant_token", tag = "tenants",
    params(
        ("id" = Uuid, Path, description = "the tenant's id"),
        ("token_id" = Uuid, Path, description = "the token's id, as listed"),
    ),
    responses(
        (status = 204, description = "the token is revoked"),
        (status = 401, description = "no bearer token, or not a valid one", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such tenant or unrevoked token, or not one this token may see", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn revoke_token(
    State(state): State<AppState>,
    Path((id, token_id)): Path<(Uuid, Uuid)>,
    caller: Caller,
) -> ApiResult<StatusCode> {
    let TenantAccess { caller, tenant } = TenantAccess::check(caller, id)?;
    let mut tx = state.db.tenant(tenant).await?;
    if !tokens::revoke(&mut tx, token_id).await? {
        return Err(ApiError::NotFound("token"));
    }
    audit::append(
        &mut tx,
        &caller.actor(),
        "tenant.token_revoked",
        json!({"token_id": token_id}),
    )
    .await?;
    tx.commit().await?;
    // This process stops honouring it now; other replicas within CACHE_TTL.
    state.tokens.clear();
    Ok(StatusCode::NO_CONTENT)
}
