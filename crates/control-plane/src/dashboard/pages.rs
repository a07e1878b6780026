//! The dashboard's pages and their shared layout: the fleet page
//! ([`fleet_view`]) and the tenant page ([`tenant_view`]), each loaded into a
//! struct and then rendered by a pure function; onboarding, the tenant
//! selector and the tenant actions are here. The data comes from the store's
//! repositories (`polybot_store::repo`), never from SQL here.

mod billing_view;
mod fleet_view;
mod rollout_view;
mod settings;
mod tenant_view;
mod trader;

pub use self::billing_view::overview as billing;
pub use self::fleet_view::{fleet, fleet_live};
pub use self::rollout_view::{act as act_on_rollout, rollout};
pub use self::settings::{
    operator_channels, revoke_token, save as save_settings, save_operator_channels, settings,
};
pub use self::tenant_view::{tenant, tenant_live};

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
use serde_json::{Map, Value, json};

use super::config_form::{Form, Purpose, Values, keys_of, risk_of, strategies_of};
use super::{
    Html, Session, UiError, UiResult, check_csrf, check_csrf_value, page, random_token, redirect,
    require, visible,
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
.scroll{overflow-x:auto;max-width:100%}.num{text-align:right;font-variant-numeric:tabular-nums}\
.pos{color:#0b7a2a}.neg{color:#a40000}svg.chart{width:100%;max-width:760px;height:auto;background:#fff;border:1px solid #e3e6eb}\
button[disabled]{opacity:.5;cursor:not-allowed}fieldset{background:#fff;border:1px solid #e3e6eb;margin:8px 0}\
label.inline{display:inline;margin:0 8px 0 0}.help,.default{color:#5a6270;display:block;font-size:12px}\
fieldset.row{background:#f6f7f9}fieldset legend{font-weight:600}.choices,.rows{margin:8px 0}\
@media (max-width:700px){header{flex-wrap:wrap;gap:8px}main{padding:8px}main.narrow{margin:8px auto}\
input[type=text],input[type=password],select{min-width:0;max-width:100%}.card{flex:1 1 40%}}\
</style>";

/// `<!doctype html>…<body>` and, when signed in, the navigation bar.
pub fn head(h: &mut Html, title: &str, session: Option<&Session>) {
    head_for(h, title, session, None);
}

/// As [`head`]; a tenant session's bar names its tenant when `tenant_name`
/// is given (its id is no name for people).
pub fn head_for(h: &mut Html, title: &str, session: Option<&Session>, tenant_name: Option<&str>) {
    h.raw("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">")
        .raw("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">")
        .raw("<link rel=\"icon\" href=\"/ui/favicon.svg\" type=\"image/svg+xml\">");
    h.raw("<title>")
        .text(title)
        .raw(" · PolyBot Cloud</title>")
        .raw(STYLE)
        .raw("<script src=\"/ui/app.js\" defer></script></head><body>");
    if let Some(s) = session {
        h.raw("<header><strong>PolyBot Cloud</strong>");
        match s.caller {
            Caller::Operator => {
                h.raw("<a href=\"/ui/fleet\">Fleet</a><a href=\"/ui/tenants/new\" id=\"nav-onboard\">Onboard a tenant</a><a href=\"/ui/alert-channels\" id=\"nav-channels\">Alert channels</a><a href=\"/ui/billing\">Billing</a><a href=\"/ui/rollout\" id=\"nav-rollout\">Rollout</a><span>operator</span>");
            }
            Caller::Tenant(t) => {
                h.raw("<a href=\"/ui/tenants/")
                    .text(t)
                    .raw("\">My tenant</a><span id=\"signed-in-as\">");
                match tenant_name {
                    Some(name) => h.text(name),
                    None => h.raw("tenant"),
                };
                h.raw("</span>");
            }
        }
        h.raw("<form method=\"post\" action=\"/ui/logout\"><input type=\"hidden\" name=\"csrf\" value=\"")
            .text(&s.csrf)
            .raw("\"><button type=\"submit\">Sign out</button></form></header>");
    }
}

/// Money at the venues' precision: cents.
pub(crate) fn usd(d: Decimal) -> String {
    let cents = d.round_dp_with_strategy(2, rust_decimal::RoundingStrategy::MidpointAwayFromZero);
    format!("{cents:.2}")
}

/// A signed amount of money, with its class (`pos`, `neg`) for colour.
pub(crate) fn signed(d: Decimal) -> (&'static str, String) {
    let text = usd(d);
    let class = if text.starts_with('-') {
        "num neg"
    } else if d.is_zero() || text == "0.00" {
        "num"
    } else {
        "num pos"
    };
    (class, text)
}

/// A price or an edge per share, to a tenth of the finest tick (0.001 on
/// Polymarket): at most four places, at least two.
pub(crate) fn price(d: Decimal) -> String {
    let r = d.round_dp(4).normalize();
    if r.scale() < 2 {
        format!("{r:.2}")
    } else {
        r.to_string()
    }
}

/// Shares: at most two places.
pub(crate) fn shares(d: Decimal) -> String {
    d.round_dp(2).normalize().to_string()
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

/// How long ago the newest heartbeat was: "12 s ago", or "none yet".
fn heartbeat_age(seconds: Option<i64>) -> String {
    match seconds {
        None => "none yet".to_owned(),
        Some(_) => format!("{} ago", age(seconds)),
    }
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

/// What the tenant's worker should be doing, in words that fit its state:
/// a tenant still onboarding has no worker to want yet.
fn desired_text(status: &TenantStatus) -> &'static str {
    match status.state {
        polybot_core::lifecycle::TenantState::Provisioning => "running once onboarded",
        polybot_core::lifecycle::TenantState::Offboarding
        | polybot_core::lifecycle::TenantState::Offboarded => "stopped (offboarding)",
        _ => status.desired(),
    }
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

fn onboard_page(
    session: &Session,
    status: StatusCode,
    values: &Values,
    errors: &[FieldError],
    keys_given: bool,
) -> Response {
    let mut form = Form::new(values, errors);
    form.h
        .raw(
            "<label>Name <input type=\"text\" name=\"name\" id=\"name\" maxlength=\"100\" value=\"",
        )
        .text(values.one("name"))
        .raw("\"></label>");
    form.errors_of("name");
    form.h.raw("<label>Mode <select name=\"mode\" id=\"mode\">");
    form.h.raw("<option selected>paper</option>");
    // Live execution is not built yet: the API refuses it, so the form
    // does not offer it as a choice.
    form.h
        .raw("<option value=\"live\" disabled>live (not available yet)</option>");
    form.h.raw("</select></label>");
    form.errors_of("mode");
    form.h.raw("<h2>Strategies</h2><p class=\"help\">Tick the strategies to run; each field starts at its default.</p>");
    form.strategies();
    form.risk();
    form.keys("Exchange keys (optional in paper mode)");
    let unshown = form.unshown();
    let mut h = Html::new();
    head(&mut h, "Onboard a tenant", Some(session));
    h.raw("<main class=\"narrow\"><h1>Onboard a tenant</h1>");
    if !errors.is_empty() {
        h.raw("<p class=\"error\" id=\"form-errors\">")
            .text(errors.len())
            .raw(" field(s) are invalid; nothing was created.");
        if keys_given {
            h.raw(" Exchange keys are never shown again: enter them once more.");
        }
        h.raw("</p>");
        for e in unshown {
            h.raw("<span class=\"field-error\" data-field=\"")
                .text(&e.field)
                .raw("\">")
                .text(e)
                .raw("</span>");
        }
    }
    h.raw("<form method=\"post\" action=\"/ui/tenants/new\" id=\"onboard\"><input type=\"hidden\" name=\"csrf\" value=\"")
        .text(&session.csrf)
        .raw("\"><input type=\"hidden\" name=\"idempotency_key\" value=\"")
        .text(random_token())
        .raw("\">");
    h.append(form.h);
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
    let values = Values::of_config(&json!({"complement_arb": {}}), &json!({}));
    Ok(onboard_page(&session, StatusCode::OK, &values, &[], false))
}

/// Builds `POST /tenants`'s JSON body from the form's fields (as the schema
/// types them) and hands it to the API handler itself: the same validation,
/// the same messages, shown beside the fields they name.
pub async fn onboard(
    State(state): State<AppState>,
    headers: HeaderMap,
    axum::Form(pairs): axum::Form<Vec<(String, String)>>,
) -> UiResult<Response> {
    let session = require(&state, &headers).await?;
    let mut values = Values::from_pairs(&pairs);
    check_csrf_value(&session, values.one("csrf"))?;
    if session.caller != Caller::Operator {
        return Err(UiError::Forbidden("only an operator may onboard tenants"));
    }
    let mut body = Map::new();
    body.insert("name".into(), Value::String(values.one("name").to_owned()));
    body.insert("mode".into(), Value::String(values.one("mode").to_owned()));
    body.insert("strategies".into(), strategies_of(&values, Purpose::Create));
    body.insert("risk".into(), risk_of(&values));
    if let Some(keys) = keys_of(&values) {
        body.insert("exchange_keys".into(), keys);
    }
    let mut api_headers = HeaderMap::new();
    let key = values.one("idempotency_key");
    if let Ok(key) = HeaderValue::from_str(key)
        && !key.is_empty()
    {
        api_headers.insert("idempotency-key", key);
    }
    let bytes = Bytes::from(Value::Object(body).to_string());
    let operator = Operator::check(session.caller)?;
    let result = crate::tenants::create(State(state.clone()), operator, api_headers, bytes).await;
    // Keys are never shown again: the form comes back without them.
    let keys_given = keys_of(&values).is_some();
    values.forget_keys();
    match result {
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
            &values,
            &errors,
            keys_given,
        )),
        // A taken name is the name field's error, shown beside it.
        Err(ApiError::Conflict(message)) if message.starts_with("name: ") => Ok(onboard_page(
            &session,
            StatusCode::CONFLICT,
            &values,
            &[FieldError::new("name", &message["name: ".len()..])],
            keys_given,
        )),
        Err(other) => Err(other.into()),
    }
}
