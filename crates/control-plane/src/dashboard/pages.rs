//! The dashboard's pages and their shared layout: the fleet page
//! ([`fleet_view`]) and the tenant page ([`tenant_view`]), each loaded into a
//! struct and then rendered by a pure function; onboarding, the tenant
//! selector and the tenant actions are here. The data comes from the store's
//! repositories (`polybot_store::repo`), never from SQL here.

mod billing_view;
mod fleet_view;
mod tenant_view;

pub use self::billing_view::overview as billing;
pub use self::fleet_view::fleet;
pub use self::tenant_view::tenant;

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use chrono::{DateTime, Utc};
use polybot_core::validation::FieldError;
use polybot_core::worker::{BreakerPosition, StrategyStatus};
use polybot_store::repo::fleet::TenantStatus;
use rust_decimal::Decimal;
use serde_json::{Map, Value};

use super::{
    Html, Session, UiError, UiResult, check_csrf, page, random_token, redirect, require, visible,
};
use crate::AppState;
use crate::auth::{Caller, Operator, TenantAccess};
use crate::error::ApiError;

const STYLE: &str = "<style>\
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}\
header{background:#1d2330;color:#fff;padding:8px 16px;display:flex;gap:16px;align-items:center}\
header a{color:#cfe0ff;text-decoration:none}header form{margin-left:auto}\
main{padding:16px}main.narrow{max-width:560px;margin:40px auto}\
table{border-collapse:collapse;width:100%;background:#fff;margin-bottom:16px}\
th,td{border-bottom:1px solid #e3e6eb;padding:4px 8px;text-align:left;vertical-align:top}\
th{background:#eef1f5;font-weight:600}\
.badge{display:inline-block;padding:0 6px;border-radius:8px;background:#e3e6eb;margin:1px}\
.ok,.running,.active,.closed{background:#d5f5dd}.bad,.crash_loop,.launch_backoff,.failed,.open{background:#ffd6d6}.capacity{background:#fff1c2}\
.badge.mode-live{background:#b00020;color:#fff;font-weight:700}.badge.mode-shadow{background:#3d3d8f;color:#fff;font-weight:700}\
.warn,.starting,.pending,.paused,.half_open,.stopping,.provisioning{background:#fff1c2}\
.error{color:#a40000}.field-error{color:#a40000;display:block}\
.cards{display:flex;gap:12px;flex-wrap:wrap;margin-bottom:12px}\
.card{background:#fff;padding:8px 12px;border:1px solid #e3e6eb;border-radius:6px}\
form.inline{display:inline}label{display:block;margin:8px 0}\
textarea{width:100%;font-family:monospace}input[type=text],input[type=password],select{min-width:240px}\
.notice{background:#d5f5dd;padding:6px 10px;border-radius:4px}\
</style>";

/// `<!doctype html>…<body>` and, when signed in, the navigation bar.
pub fn head(h: &mut Html, title: &str, session: Option<&Session>) {
    head_with(h, title, session, false);
}

/// As [`head`]; `refresh` reloads the page every 5 s.
pub fn head_with(h: &mut Html, title: &str, session: Option<&Session>, refresh: bool) {
    h.raw("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">");
    if refresh {
        h.raw("<meta http-equiv=\"refresh\" content=\"5\">");
    }
    h.raw("<title>")
        .text(title)
        .raw(" · PolyBot Cloud</title>")
        .raw(STYLE)
        .raw("<script src=\"/ui/app.js\" defer></script></head><body>");
    if let Some(s) = session {
        h.raw("<header><strong>PolyBot Cloud</strong>");
        match s.caller {
            Caller::Operator => {
                h.raw("<a href=\"/ui/fleet\">Fleet</a><a href=\"/ui/tenants/new\" id=\"nav-onboard\">Onboard a tenant</a><a href=\"/ui/billing\">Billing</a><span>operator</span>");
            }
            Caller::Tenant(t) => {
                h.raw("<a href=\"/ui/tenants/")
                    .text(t)
                    .raw("\">My tenant</a><span>tenant ")
                    .text(t)
                    .raw("</span>");
            }
        }
        h.raw("<form method=\"post\" action=\"/ui/logout\"><input type=\"hidden\" name=\"csrf\" value=\"")
            .text(&s.csrf)
            .raw("\"><button type=\"submit\">Sign out</button></form></header>");
    }
}

/// A tenant that is not paper trading, unmistakable wherever it is named:
/// LIVE (real orders) or SHADOW (orders signed, none sent). Paper shows none.
fn mode_badge(h: &mut Html, mode: &str) {
    match mode {
        "live" => h.raw(" <span class=\"badge mode-live\" title=\"real orders are sent\">LIVE</span>"),
        "shadow" => h.raw(" <span class=\"badge mode-shadow\" title=\"orders are signed, none is sent\">SHADOW</span>"),
        _ => h,
    };
}

fn badge(h: &mut Html, value: &str) {
    // The class is one of the badge names when it is one, else none.
    h.raw("<span class=\"badge ");
    h.text(
        value
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect::<String>(),
    );
    h.raw("\">").text(value).raw("</span>");
}

fn age(seconds: Option<i64>) -> String {
    match seconds {
        None => "never".to_owned(),
        Some(s) => {
            let s = s.max(0);
            if s < 120 {
                format!("{s} s")
            } else if s < 7200 {
                format!("{} min", s / 60)
            } else {
                format!("{} h", s / 3600)
            }
        }
    }
}

fn percent(ratio: Option<f64>) -> String {
    ratio
        .and_then(|r| Decimal::try_from(r).ok())
        .map(|r| format!("{}%", (r * Decimal::ONE_HUNDRED).round_dp(2).normalize()))
        .unwrap_or_else(|| "–".to_owned())
}

fn time(at: Option<DateTime<Utc>>) -> String {
    at.map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| "–".to_owned())
}

/// Strategy health: name, status and breaker of each, from the newest heartbeat.
fn strategies(status: &TenantStatus) -> Vec<(&str, StrategyStatus, BreakerPosition)> {
    status
        .health()
        .map(|h| {
            h.strategies
                .iter()
                .map(|(name, s)| (name.as_str(), s.status, s.breaker))
                .collect()
        })
        .unwrap_or_default()
}

fn dec(v: Option<Decimal>) -> String {
    v.map(|d| d.normalize().to_string())
        .unwrap_or_else(|| "–".to_owned())
}

#[derive(Debug, serde::Deserialize)]
pub struct Go {
    tenant: Option<String>,
}

/// The tenant selector's target.
pub async fn go(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(go): Query<Go>,
) -> UiResult<Response> {
    let session = require(&state, &headers).await?;
    match go.tenant.as_deref().filter(|t| !t.is_empty()) {
        None => Ok(redirect("/ui/fleet")),
        Some(id) => {
            let tenant = visible(&session, id)?;
            Ok(redirect(&format!("/ui/tenants/{tenant}")))
        }
    }
}

/// Pause, resume or offboard, through the API's handlers.
pub async fn act(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    axum::Form(form): axum::Form<BTreeMap<String, String>>,
) -> UiResult<Response> {
    let session = require(&state, &headers).await?;
    check_csrf(&session, &form)?;
    let tenant = visible(&session, &id)?;
    let access = TenantAccess::check(session.caller, tenant.as_uuid())?;
    let notice = match action.as_str() {
        "pause" => {
            let view =
                crate::tenants::pause(State(state.clone()), access, Default::default()).await?;
            format!(
                "Paused (state {}): the worker is being stopped.",
                view.0.state
            )
        }
        "resume" => {
            let view = crate::tenants::resume(State(state.clone()), access).await?;
            format!(
                "Resumed (state {}): a worker is being started.",
                view.0.state
            )
        }
        "offboard" => {
            let query: crate::tenants::DeleteQuery =
                serde_json::from_value(Value::Object(Map::new()))
                    .map_err(|e| ApiError::Internal(e.into()))?;
            let response = crate::tenants::delete(
                State(state.clone()),
                Operator::check(session.caller)?,
                access,
                Query(query),
            )
            .await?;
            format!(
                "Offboarding ({}): the worker is stopped and the keys are scheduled for deletion.",
                response.status()
            )
        }
        _ => return Err(UiError::NotFound),
    };
    let mut encoded = String::with_capacity(notice.len() * 3);
    for b in notice.bytes() {
        if b.is_ascii_alphanumeric() || b == b'.' || b == b'-' {
            encoded.push(char::from(b));
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    Ok(redirect(&format!("/ui/tenants/{tenant}?notice={encoded}")))
}

// ---------------------------------------------------------------------------
// Onboarding
// ---------------------------------------------------------------------------

const DEFAULT_STRATEGIES: &str = "{\"complement_arb\": {}}";

struct FormState<'a> {
    name: &'a str,
    strategies: &'a str,
    risk: &'a str,
    keys_given: bool,
}

fn field_errors(h: &mut Html, errors: &[FieldError], prefix: &str) {
    for e in errors.iter().filter(|e| {
        e.field == prefix
            || e.field.starts_with(&format!("{prefix}."))
            || e.field.starts_with(&format!("{prefix}["))
    }) {
        h.raw("<span class=\"field-error\" data-field=\"")
            .text(&e.field)
            .raw("\">")
            .text(e)
            .raw("</span>");
    }
}

fn onboard_page(
    session: &Session,
    status: StatusCode,
    form: &FormState<'_>,
    errors: &[FieldError],
) -> Response {
    let mut h = Html::new();
    head(&mut h, "Onboard a tenant", Some(session));
    h.raw("<main class=\"narrow\"><h1>Onboard a tenant</h1>");
    if !errors.is_empty() {
        h.raw("<p class=\"error\" id=\"form-errors\">")
            .text(errors.len())
            .raw(" field(s) are invalid; nothing was created.");
        if form.keys_given {
            h.raw(" Exchange keys are never shown again: enter them once more.");
        }
        h.raw("</p>");
        let known = ["name", "mode", "strategies", "risk", "exchange_keys"];
        for e in errors.iter().filter(|e| {
            !known
                .iter()
                .any(|k| e.field == *k || e.field.starts_with(&format!("{k}.")))
        }) {
            h.el("<span class=\"field-error\">", e, "</span>");
        }
    }
    h.raw("<form method=\"post\" action=\"/ui/tenants/new\" id=\"onboard\"><input type=\"hidden\" name=\"csrf\" value=\"")
        .text(&session.csrf)
        .raw("\"><input type=\"hidden\" name=\"idempotency_key\" value=\"")
        .text(random_token())
        .raw("\"><label>Name <input type=\"text\" name=\"name\" id=\"name\" maxlength=\"100\" value=\"")
        .text(form.name)
        .raw("\"></label>");
    field_errors(&mut h, errors, "name");
    h.raw("<label>Mode <select name=\"mode\" id=\"mode\">");
    h.raw("<option selected>paper</option>");
    // A tenant starts in paper: going live is a separate, deliberate switch
    // (the API refuses it here), so the form does not offer it as a choice.
    h.raw("<option value=\"live\" disabled>live (switch after onboarding)</option>");
    h.raw("</select></label>");
    field_errors(&mut h, errors, "mode");
    h.raw("<label>Strategies (JSON: name → settings) <textarea name=\"strategies\" id=\"strategies\" rows=\"4\">")
        .text(form.strategies)
        .raw("</textarea></label>");
    field_errors(&mut h, errors, "strategies");
    h.raw("<label>Risk limits (JSON; empty for the defaults) <textarea name=\"risk\" id=\"risk\" rows=\"3\">")
        .text(form.risk)
        .raw("</textarea></label>");
    field_errors(&mut h, errors, "risk");
    h.raw("<label>Exchange keys (JSON: venue → fields; optional for paper mode). Write-only: only a masked fingerprint is shown afterwards. <textarea name=\"exchange_keys\" id=\"exchange_keys\" rows=\"4\" autocomplete=\"off\" spellcheck=\"false\" placeholder='{\"kalshi\": {\"key_id\": \"…\", \"private_key_pem\": \"…\"}}'></textarea></label>");
    field_errors(&mut h, errors, "exchange_keys");
    h.raw(
        "<button type=\"submit\" id=\"create\">Create tenant</button></form></main></body></html>",
    );
    page(status, h.finish())
}

pub async fn onboard_form(State(state): State<AppState>, headers: HeaderMap) -> UiResult<Response> {
    let session = require(&state, &headers).await?;
    if session.caller != Caller::Operator {
        return Err(UiError::Forbidden("only an operator may onboard tenants"));
    }
    Ok(onboard_page(
        &session,
        StatusCode::OK,
        &FormState {
            name: "",
            strategies: DEFAULT_STRATEGIES,
            risk: "",
            keys_given: false,
        },
        &[],
    ))
}

/// Builds `POST /tenants`'s JSON body from the form and hands it to the API
/// handler itself: the same validation, the same messages.
pub async fn onboard(
    State(state): State<AppState>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<BTreeMap<String, String>>,
) -> UiResult<Response> {
    let session = require(&state, &headers).await?;
    check_csrf(&session, &form)?;
    if session.caller != Caller::Operator {
        return Err(UiError::Forbidden("only an operator may onboard tenants"));
    }
    let field = |name: &str| form.get(name).map(String::as_str).unwrap_or("");
    let mut body = Map::new();
    let mut errors = Vec::new();
    body.insert("name".into(), Value::String(field("name").to_owned()));
    body.insert("mode".into(), Value::String(field("mode").to_owned()));
    for name in ["strategies", "risk", "exchange_keys"] {
        let text = field(name).trim();
        if text.is_empty() {
            continue;
        }
        match serde_json::from_str::<Value>(text) {
            Ok(v) => {
                body.insert(name.into(), v);
            }
            Err(e) => errors.push(FieldError::new(
                name,
                format!(
                    "is not valid JSON (line {}, column {})",
                    e.line(),
                    e.column()
                ),
            )),
        }
    }
    let keys_given = !field("exchange_keys").trim().is_empty();
    let form_state = FormState {
        name: field("name"),
        strategies: field("strategies"),
        risk: field("risk"),
        keys_given,
    };
    if !errors.is_empty() {
        return Ok(onboard_page(
            &session,
            StatusCode::UNPROCESSABLE_ENTITY,
            &form_state,
            &errors,
        ));
    }
    let mut api_headers = HeaderMap::new();
    if let Ok(key) = HeaderValue::from_str(field("idempotency_key"))
        && !field("idempotency_key").is_empty()
    {
        api_headers.insert("idempotency-key", key);
    }
    let bytes = Bytes::from(Value::Object(body).to_string());
    let operator = Operator::check(session.caller)?;
    match crate::tenants::create(State(state.clone()), operator, api_headers, bytes).await {
        Ok(response) => {
            let raw = axum::body::to_bytes(response.into_body(), 1 << 20)
                .await
                .map_err(|e| {
                    ApiError::Internal(anyhow::anyhow!("reading the created tenant: {e}"))
                })?;
            let created: Value =
                serde_json::from_slice(&raw).map_err(|e| ApiError::Internal(e.into()))?;
            let id = created
                .get("id")
                .and_then(Value::as_str)
                .and_then(|s| s.parse::<uuid::Uuid>().ok())
                .ok_or_else(|| {
                    ApiError::Internal(anyhow::anyhow!("the created tenant has no id"))
                })?;
            Ok(redirect(&format!(
                "/ui/tenants/{id}?notice=Created%3A+onboarding+runs+in+the+background."
            )))
        }
        Err(ApiError::Validation(errors)) => Ok(onboard_page(
            &session,
            StatusCode::UNPROCESSABLE_ENTITY,
            &form_state,
            &errors,
        )),
        Err(other) => Err(other.into()),
    }
}
