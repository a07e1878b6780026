//! The dashboard's pages: fleet, tenant, onboarding, and the tenant actions.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use chrono::{DateTime, Utc};
use polybot_core::TenantId;
use polybot_core::validation::FieldError;
use polybot_store::{DbError, TenantTx};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde_json::{Map, Value};

use super::{
    Html, NoticeQuery, PathId, Session, UiError, UiResult, check_csrf, page, random_token,
    redirect, require, visible,
};
use crate::AppState;
use crate::auth::{Caller, Operator, TenantAccess};
use crate::error::ApiError;
use crate::metrics::{AVAILABILITY_OBJECTIVE, TenantFigures, load_figures};

const STYLE: &str = "<style>\
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}\
header{background:#1d2330;color:#fff;padding:8px 16px;display:flex;gap:16px;align-items:center}\
header a{color:#cfe0ff;text-decoration:none}header form{margin-left:auto}\
main{padding:16px}main.narrow{max-width:560px;margin:40px auto}\
table{border-collapse:collapse;width:100%;background:#fff;margin-bottom:16px}\
th,td{border-bottom:1px solid #e3e6eb;padding:4px 8px;text-align:left;vertical-align:top}\
th{background:#eef1f5;font-weight:600}\
.badge{display:inline-block;padding:0 6px;border-radius:8px;background:#e3e6eb;margin:1px}\
.ok,.running,.active,.closed{background:#d5f5dd}.bad,.crash_loop,.failed,.open{background:#ffd6d6}\
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
        .raw("</head><body>");
    if let Some(s) = session {
        h.raw("<header><strong>PolyBot Cloud</strong>");
        match s.caller {
            Caller::Operator => {
                h.raw("<a href=\"/ui/fleet\">Fleet</a><a href=\"/ui/tenants/new\" id=\"nav-onboard\">Onboard a tenant</a><span>operator</span>");
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

fn age(seconds: Option<f64>) -> String {
    match seconds {
        None => "never".to_owned(),
        Some(s) => {
            let s = s.round().to_i64().unwrap_or(0).max(0);
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
fn strategies(f: &TenantFigures) -> Vec<(String, String, String)> {
    let Some(map) = f
        .health
        .as_ref()
        .and_then(|h| h.get("strategies"))
        .and_then(Value::as_object)
    else {
        return Vec::new();
    };
    let breakers: BTreeMap<String, String> = f.breakers().into_iter().collect();
    map.iter()
        .map(|(name, s)| {
            let status = s
                .get("status")
                .and_then(Value::as_str)
                .unwrap_or("unknown")
                .to_owned();
            let breaker = breakers
                .get(name)
                .cloned()
                .unwrap_or_else(|| "closed".into());
            (name.clone(), status, breaker)
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Fleet
// ---------------------------------------------------------------------------

#[derive(Debug, serde::Deserialize, Default)]
pub struct FleetFilter {
    q: Option<String>,
    state: Option<String>,
    worker: Option<String>,
}

pub async fn fleet(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(filter): Query<FleetFilter>,
) -> UiResult<Response> {
    let session = require(&state, &headers).await?;
    let scope = match session.caller {
        Caller::Operator => None,
        Caller::Tenant(t) => Some(t),
    };
    let all = load_figures(&state, scope).await?;
    let needle = filter.q.as_deref().unwrap_or("").trim().to_lowercase();
    let state_filter = filter.state.as_deref().unwrap_or("").trim();
    let worker_filter = filter.worker.as_deref().unwrap_or("").trim();
    let shown: Vec<&TenantFigures> = all
        .iter()
        .filter(|f| {
            needle.is_empty()
                || f.name.to_lowercase().contains(&needle)
                || f.id.to_string().contains(&needle)
        })
        .filter(|f| state_filter.is_empty() || f.state == state_filter)
        .filter(|f| worker_filter.is_empty() || f.actual == worker_filter)
        .collect();

    let mut h = Html::new();
    head_with(&mut h, "Fleet", Some(&session), true);
    let desired = all.iter().filter(|f| f.desired_running()).count();
    let running = all.iter().filter(|f| f.actual == "running").count();
    let breakers_open = all
        .iter()
        .flat_map(|f| f.breakers())
        .filter(|(_, b)| b == "open")
        .count();
    let alerts: usize = all.iter().map(|f| f.firing_alerts.len()).sum();
    let pnl_today: Decimal = all.iter().map(|f| f.pnl_today).sum();
    h.raw("<main><h1>Fleet</h1><div class=\"cards\">")
        .el(
            "<div class=\"card\">Tenants <strong id=\"count-tenants\">",
            all.len(),
            "</strong></div>",
        )
        .el(
            "<div class=\"card\">Workers desired <strong id=\"count-desired\">",
            desired,
            "</strong></div>",
        )
        .el(
            "<div class=\"card\">running <strong id=\"count-running\">",
            running,
            "</strong></div>",
        )
        .el(
            "<div class=\"card\">Open breakers <strong>",
            breakers_open,
            "</strong></div>",
        )
        .el(
            "<div class=\"card\">Firing alerts <strong>",
            alerts,
            "</strong></div>",
        )
        .el(
            "<div class=\"card\">PnL today <strong>",
            pnl_today.normalize(),
            "</strong></div>",
        )
        .raw("</div>");

    // Filter and tenant selector (plain GET forms; work without script).
    h.raw("<form method=\"get\" action=\"/ui/fleet\" class=\"inline\"><input type=\"text\" name=\"q\" placeholder=\"name or id\" value=\"")
        .text(&needle)
        .raw("\"> <select name=\"state\"><option value=\"\">any state</option>");
    for s in ["provisioning", "active", "paused", "failed", "offboarding"] {
        h.raw("<option");
        if s == state_filter {
            h.raw(" selected");
        }
        h.el(">", s, "</option>");
    }
    h.raw("</select> <select name=\"worker\"><option value=\"\">any worker</option>");
    for s in [
        "running",
        "starting",
        "pending",
        "crash_loop",
        "stopping",
        "stopped",
        "failed",
    ] {
        h.raw("<option");
        if s == worker_filter {
            h.raw(" selected");
        }
        h.el(">", s, "</option>");
    }
    h.raw("</select> <button type=\"submit\">Filter</button></form> \
           <form method=\"get\" action=\"/ui/go\" class=\"inline\"><select name=\"tenant\" id=\"tenant-select\" onchange=\"this.form.submit()\"><option value=\"\">open a tenant…</option>");
    for f in &all {
        h.raw("<option value=\"")
            .text(f.id)
            .raw("\">")
            .text(&f.name)
            .raw("</option>");
    }
    h.raw("</select><noscript><button type=\"submit\">Open</button></noscript></form>");

    h.raw("<table id=\"fleet\"><thead><tr><th>Tenant</th><th>State</th><th>Desired</th><th>Worker</th><th>Heartbeat</th><th>Strategies</th><th>Open breakers</th><th>Alerts</th><th>Last error</th><th>PnL today</th><th>Availability 1 h / 30 d</th></tr></thead><tbody>");
    for f in &shown {
        let strategies = strategies(f);
        h.raw("<tr data-tenant=\"")
            .text(f.id)
            .raw("\"><td><a href=\"/ui/tenants/")
            .text(f.id)
            .raw("\">")
            .text(&f.name)
            .raw("</a></td><td>");
        badge(&mut h, &f.state);
        h.raw("</td><td>")
            .text(&f.desired)
            .raw("</td><td class=\"worker\">");
        badge(&mut h, &f.actual);
        if f.restarts > 0 {
            h.text(format!(" ({} restarts)", f.restarts));
        }
        h.raw("</td><td>")
            .text(age(f.heartbeat_age_seconds))
            .raw("</td><td>");
        if strategies.is_empty() {
            h.raw("–");
        }
        for (name, status, _) in &strategies {
            h.raw("<span class=\"badge ")
                .text(if status == "ok" { "ok" } else { "warn" })
                .raw("\">")
                .text(name)
                .raw(": ")
                .text(status)
                .raw("</span>");
        }
        h.raw("</td><td>");
        let open: Vec<&String> = strategies
            .iter()
            .filter(|(_, _, b)| b != "closed")
            .map(|(n, _, _)| n)
            .collect();
        if open.is_empty() {
            h.raw("none");
        }
        for name in open {
            h.raw("<span class=\"badge open\">")
                .text(name)
                .raw("</span>");
        }
        h.raw("</td><td>");
        if f.firing_alerts.is_empty() {
            h.raw("–");
        }
        for a in &f.firing_alerts {
            h.raw("<span class=\"badge bad\">").text(a).raw("</span>");
        }
        h.raw("</td><td class=\"error\">")
            .text(f.last_error.as_deref().unwrap_or(""))
            .raw("</td><td>")
            .text(f.pnl_today)
            .raw("</td><td>")
            .text(percent(f.availability_1h))
            .raw(" / ")
            .text(percent(f.availability_30d))
            .raw("</td></tr>");
    }
    if shown.is_empty() {
        h.raw("<tr><td colspan=\"11\">No tenant matches.</td></tr>");
    }
    h.raw("</tbody></table><p>Refreshes every 5 s. SLO: availability ≥ ")
        .text(percent(AVAILABILITY_OBJECTIVE.parse::<f64>().ok()))
        .raw(" of desired time over 30 days.</p></main></body></html>");
    Ok(page(StatusCode::OK, h.finish()))
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

// ---------------------------------------------------------------------------
// Tenant
// ---------------------------------------------------------------------------

type OpportunityRow = (
    DateTime<Utc>,
    String,
    String,
    String,
    String,
    Option<Decimal>,
    Option<Decimal>,
    Option<Decimal>,
    Option<DateTime<Utc>>,
);
type TradeRow = (
    DateTime<Utc>,
    String,
    String,
    String,
    String,
    Option<String>,
    Decimal,
    Decimal,
    Decimal,
    Option<Decimal>,
    String,
);

struct TenantData {
    events: Vec<(DateTime<Utc>, String, String)>,
    opportunities: Vec<OpportunityRow>,
    trades: Vec<TradeRow>,
    balances: Vec<(String, String, Decimal, DateTime<Utc>)>,
    pnl: Vec<(DateTime<Utc>, Decimal)>,
    audit: Vec<(DateTime<Utc>, String, String, Value)>,
    firing: Vec<(String, String, String, DateTime<Utc>)>,
    channels: Vec<crate::alerts::ChannelView>,
    worker: Option<crate::status::StatusView>,
}

async fn tenant_data(tx: &mut TenantTx) -> Result<TenantData, DbError> {
    let id = tx.tenant().as_uuid();
    let events = sqlx::query_as(
        "SELECT at, kind, detail FROM tenant_runtime_events WHERE tenant_id = $1 ORDER BY at DESC, id DESC LIMIT 50",
    )
    .bind(id)
    .fetch_all(&mut **tx)
    .await
    .map_err(DbError::query("reading the tenant's timeline"))?;
    let opportunities = sqlx::query_as(
        "SELECT detected_at, strategy, venue, market, description, edge, expected_profit, size, executed_at \
         FROM opportunities WHERE tenant_id = $1 ORDER BY detected_at DESC LIMIT 50",
    )
    .bind(id)
    .fetch_all(&mut **tx)
    .await
    .map_err(DbError::query("reading the tenant's opportunities"))?;
    let trades = sqlx::query_as(
        "SELECT executed_at, strategy, venue, market, side, outcome, price, size, fee, realized_pnl, mode \
         FROM trades WHERE tenant_id = $1 ORDER BY executed_at DESC LIMIT 50",
    )
    .bind(id)
    .fetch_all(&mut **tx)
    .await
    .map_err(DbError::query("reading the tenant's trades"))?;
    let balances = sqlx::query_as(
        "SELECT venue, asset, amount, updated_at FROM balances WHERE tenant_id = $1 ORDER BY venue, asset",
    )
    .bind(id)
    .fetch_all(&mut **tx)
    .await
    .map_err(DbError::query("reading the tenant's balances"))?;
    // Cumulative realized PnL, at most ~300 points over the last 30 days.
    let pnl = sqlx::query_as(
        "WITH c AS (SELECT executed_at, sum(coalesce(realized_pnl, 0)) OVER (ORDER BY executed_at, id) AS total, \
                           row_number() OVER (ORDER BY executed_at, id) AS n, count(*) OVER () AS k \
                    FROM trades WHERE tenant_id = $1 AND executed_at > now() - interval '30 days') \
         SELECT executed_at, total FROM c WHERE n % greatest(k / 300, 1) = 0 OR n = k ORDER BY n",
    )
    .bind(id)
    .fetch_all(&mut **tx)
    .await
    .map_err(DbError::query("reading the tenant's PnL"))?;
    let audit = sqlx::query_as(
        "SELECT at, actor, action, details FROM audit_log WHERE tenant_id = $1 ORDER BY at DESC, id DESC LIMIT 50",
    )
    .bind(id)
    .fetch_all(&mut **tx)
    .await
    .map_err(DbError::query("reading the tenant's audit log"))?;
    let firing = crate::alerts::firing(tx).await?;
    let channels = crate::alerts::tenant_channels(tx)
        .await?
        .iter()
        .map(crate::alerts::Channel::public_view)
        .collect();
    let worker = crate::status::load(tx).await?;
    Ok(TenantData {
        events,
        opportunities,
        trades,
        balances,
        pnl,
        audit,
        firing,
        channels,
        worker,
    })
}

/// An inline SVG line chart of cumulative PnL (integer and decimal maths only).
fn pnl_chart(h: &mut Html, points: &[(DateTime<Utc>, Decimal)]) {
    const W: i64 = 640;
    const H: i64 = 160;
    const PAD: i64 = 8;
    if points.len() < 2 {
        h.raw("<p id=\"pnl-chart\">Not enough trades yet for a chart.</p>");
        return;
    }
    let t0 = points[0].0.timestamp_millis();
    let t1 = points[points.len() - 1].0.timestamp_millis();
    let span = (t1 - t0).max(1);
    let min = points.iter().map(|p| p.1).fold(Decimal::ZERO, Decimal::min);
    let max = points.iter().map(|p| p.1).fold(Decimal::ZERO, Decimal::max);
    let range = if max == min { Decimal::ONE } else { max - min };
    let y = |v: Decimal| -> i64 {
        PAD + ((max - v) * Decimal::from(H - 2 * PAD) / range)
            .round()
            .to_i64()
            .unwrap_or(0)
    };
    let mut coords = String::new();
    for (at, v) in points {
        let x = PAD + (at.timestamp_millis() - t0) * (W - 2 * PAD) / span;
        coords.push_str(&format!("{x},{} ", y(*v)));
    }
    let zero = y(Decimal::ZERO);
    h.raw("<svg id=\"pnl-chart\" role=\"img\" aria-label=\"cumulative PnL\" width=\"640\" height=\"160\" viewBox=\"0 0 640 160\" style=\"background:#fff;border:1px solid #e3e6eb\">")
        .raw("<line x1=\"0\" x2=\"640\" stroke=\"#bbb\" stroke-dasharray=\"4\" y1=\"")
        .text(zero)
        .raw("\" y2=\"")
        .text(zero)
        .raw("\"/><polyline fill=\"none\" stroke=\"#2c6bed\" stroke-width=\"2\" points=\"")
        .text(coords.trim_end())
        .raw("\"/><text x=\"10\" y=\"14\" font-size=\"11\">max ")
        .text(max.normalize())
        .raw("</text><text x=\"10\" y=\"154\" font-size=\"11\">min ")
        .text(min.normalize())
        .raw("</text></svg><p>From ")
        .text(time(Some(points[0].0)))
        .raw(" to ")
        .text(time(Some(points[points.len() - 1].0)))
        .raw(" UTC; last ")
        .text(points[points.len() - 1].1.normalize())
        .raw("</p>");
}

fn dec(v: Option<Decimal>) -> String {
    v.map(|d| d.normalize().to_string())
        .unwrap_or_else(|| "–".to_owned())
}

fn action_button(
    h: &mut Html,
    session: &Session,
    tenant: TenantId,
    action: &'static str,
    label: &'static str,
    confirm: bool,
) {
    h.raw("<form method=\"post\" class=\"inline\" action=\"/ui/tenants/")
        .text(tenant)
        .raw("/")
        .raw(action)
        .raw("\"");
    if confirm {
        h.raw(" onsubmit=\"return confirm('Offboard this tenant? Its worker stops and its keys are scheduled for deletion.')\"");
    }
    h.raw("><input type=\"hidden\" name=\"csrf\" value=\"")
        .text(&session.csrf)
        .raw("\"><button type=\"submit\" id=\"action-")
        .raw(action)
        .raw("\">")
        .raw(label)
        .raw("</button></form> ");
}

pub async fn tenant(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): PathId,
    Query(notice): NoticeQuery,
) -> UiResult<Response> {
    let session = require(&state, &headers).await?;
    let tenant = visible(&session, &id)?;
    let figures = load_figures(&state, Some(tenant))
        .await?
        .into_iter()
        .next()
        .ok_or(UiError::NotFound)?;
    let access = TenantAccess::check(session.caller, tenant.as_uuid())?;
    let view = crate::tenants::get(State(state.clone()), access).await?.0;
    let mut tx = state.db.tenant(tenant).await?;
    let data = tenant_data(&mut tx).await?;
    tx.commit().await?;

    let mut h = Html::new();
    head(&mut h, &figures.name, Some(&session));
    h.raw("<main><h1 id=\"tenant-name\">")
        .text(&figures.name)
        .raw("</h1><p><code>")
        .text(figures.id)
        .raw("</code> · ")
        .text(&view.mode)
        .raw(" mode · onboarding step ")
        .text(&view.provisioning.step)
        .raw("</p>");
    if let Some(n) = notice.notice.as_deref() {
        h.el("<p class=\"notice\" id=\"notice\">", n, "</p>");
    }
    h.raw("<div class=\"cards\"><div class=\"card\">State ");
    badge(&mut h, &figures.state);
    h.raw("</div><div class=\"card\">Desired <strong>")
        .text(&figures.desired)
        .raw("</strong></div><div class=\"card\">Worker <span id=\"worker-state\">");
    badge(&mut h, &figures.actual);
    h.raw("</span>");
    if let Some(w) = &data.worker {
        if let Some(instance) = &w.worker.instance_id {
            h.text(format!(" (instance {instance})"));
        }
        if w.worker.restarts > 0 {
            h.text(format!(", {} restarts", w.worker.restarts));
        }
        if let Some(until) = w.worker.backoff_until {
            h.text(format!(", back-off until {}", time(Some(until))));
        }
    }
    h.raw("</div><div class=\"card\">Heartbeat ")
        .text(age(figures.heartbeat_age_seconds))
        .raw(" ago</div><div class=\"card\">PnL today <strong>")
        .text(figures.pnl_today)
        .raw("</strong>, total ")
        .text(figures.pnl_total)
        .raw("</div><div class=\"card\">Availability 1 h <strong>")
        .text(percent(figures.availability_1h))
        .raw("</strong>, 30 d <strong id=\"availability-30d\">")
        .text(percent(figures.availability_30d))
        .raw("</strong> (objective ")
        .text(percent(AVAILABILITY_OBJECTIVE.parse::<f64>().ok()))
        .raw(")</div><div class=\"card\">Opportunities ")
        .text(figures.opportunities)
        .raw(" (")
        .text(figures.opportunities_executed)
        .raw(" executed), trades ")
        .text(figures.trades)
        .raw("</div></div>");
    if let Some(err) = &figures.last_error {
        h.el("<p class=\"error\">Last error: ", err, "</p>");
    }
    h.raw("<p>");
    action_button(&mut h, &session, tenant, "pause", "Pause", false);
    action_button(&mut h, &session, tenant, "resume", "Resume", false);
    if session.caller == Caller::Operator {
        action_button(&mut h, &session, tenant, "offboard", "Offboard", true);
    }
    h.raw("</p>");

    // Alerts.
    h.raw("<h2>Alerts</h2>");
    if data.firing.is_empty() {
        h.raw("<p>No alert is firing.</p>");
    } else {
        h.raw("<table><tr><th>Alert</th><th>Subject</th><th>Since</th><th>Summary</th></tr>");
        for (alert, subject, summary, since) in &data.firing {
            h.el("<tr><td>", alert, "</td>")
                .el("<td>", subject, "</td>")
                .el("<td>", time(Some(*since)), "</td>")
                .el("<td>", summary, "</td></tr>");
        }
        h.raw("</table>");
    }
    h.raw("<p>Channels: ");
    if data.channels.is_empty() {
        h.raw("none (set them with <code>PUT /tenants/{id}/alert-channels</code>)");
    }
    for c in &data.channels {
        h.raw("<span class=\"badge\">")
            .text(&c.kind)
            .raw(" ")
            .text(&c.target)
            .raw(" ")
            .text(&c.secret_fingerprint)
            .raw("</span>");
    }
    h.raw("</p>");

    // Strategy health and venues.
    h.raw("<h2>Strategies</h2><table><tr><th>Strategy</th><th>Status</th><th>Circuit breaker</th></tr>");
    let strategies = strategies(&figures);
    if strategies.is_empty() {
        h.raw("<tr><td colspan=\"3\">No heartbeat has reported strategy health yet.</td></tr>");
    }
    for (name, status, breaker) in &strategies {
        h.el("<tr><td>", name, "</td><td>");
        badge(&mut h, status);
        h.raw("</td><td>");
        badge(&mut h, breaker);
        h.raw("</td></tr>");
    }
    h.raw("</table><h2>Venues</h2>");
    match figures
        .health
        .as_ref()
        .and_then(|h| h.get("venues"))
        .and_then(Value::as_object)
    {
        Some(venues) if !venues.is_empty() => {
            h.raw("<table><tr><th>Venue</th><th>Reachability</th></tr>");
            for (venue, v) in venues {
                let text = v
                    .as_str()
                    .map(str::to_owned)
                    .or_else(|| v.get("status").and_then(Value::as_str).map(str::to_owned))
                    .unwrap_or_else(|| v.to_string());
                h.el("<tr><td>", venue, "</td><td>");
                badge(&mut h, &text);
                h.raw("</td></tr>");
            }
            h.raw("</table>");
        }
        _ => {
            h.raw("<p>The worker has not reported venue reachability (see <code>polybot doctor</code>).</p>");
        }
    }
    h.raw("<p>Exchange keys: ");
    match view.exchange_keys.as_object() {
        Some(keys) if !keys.is_empty() => {
            for (venue, fp) in keys {
                h.raw("<span class=\"badge\">")
                    .text(venue)
                    .raw(" ")
                    .text(fp.as_str().unwrap_or(""))
                    .raw("</span>");
            }
        }
        _ => {
            h.raw("none (paper trading on public data)");
        }
    }
    h.raw("</p>");

    h.raw("<h2>PnL</h2>");
    pnl_chart(&mut h, &data.pnl);

    h.raw("<h2>Status timeline</h2><table id=\"timeline\"><tr><th>At (UTC)</th><th>Event</th><th>Detail</th></tr>");
    if data.events.is_empty() {
        h.raw("<tr><td colspan=\"3\">Nothing yet.</td></tr>");
    }
    for (at, kind, detail) in &data.events {
        h.el("<tr><td>", time(Some(*at)), "</td><td>");
        badge(&mut h, kind);
        h.el("</td><td>", detail, "</td></tr>");
    }
    h.raw("</table><h2>Recent opportunities</h2><table id=\"opportunities\"><tr><th>Detected</th><th>Strategy</th><th>Venue</th><th>Market</th><th>Description</th><th>Edge</th><th>Expected profit</th><th>Size</th><th>Executed at</th></tr>");
    if data.opportunities.is_empty() {
        h.raw("<tr><td colspan=\"9\">None yet.</td></tr>");
    }
    for (at, strategy, venue, market, description, edge, profit, size, executed) in
        &data.opportunities
    {
        h.el("<tr><td>", time(Some(*at)), "</td>")
            .el("<td>", strategy, "</td>")
            .el("<td>", venue, "</td>")
            .el("<td>", market, "</td>")
            .el("<td>", description, "</td>")
            .el("<td>", dec(*edge), "</td>")
            .el("<td>", dec(*profit), "</td>")
            .el("<td>", dec(*size), "</td>")
            .el("<td>", time(*executed), "</td></tr>");
    }
    h.raw("</table><h2>Trades</h2><table id=\"trades\"><tr><th>Executed</th><th>Strategy</th><th>Venue</th><th>Market</th><th>Side</th><th>Outcome</th><th>Price</th><th>Size</th><th>Fee</th><th>Realized PnL</th><th>Mode</th></tr>");
    if data.trades.is_empty() {
        h.raw("<tr><td colspan=\"11\">None yet.</td></tr>");
    }
    for (at, strategy, venue, market, side, outcome, price, size, fee, pnl, mode) in &data.trades {
        h.el("<tr><td>", time(Some(*at)), "</td>")
            .el("<td>", strategy, "</td>")
            .el("<td>", venue, "</td>")
            .el("<td>", market, "</td>")
            .el("<td>", side, "</td>")
            .el("<td>", outcome.as_deref().unwrap_or("–"), "</td>")
            .el("<td>", price.normalize(), "</td>")
            .el("<td>", size.normalize(), "</td>")
            .el("<td>", fee.normalize(), "</td>")
            .el("<td>", dec(*pnl), "</td>")
            .el("<td>", mode, "</td></tr>");
    }
    h.raw("</table><h2>Balances</h2><table id=\"balances\"><tr><th>Venue</th><th>Asset</th><th>Amount</th><th>Updated</th></tr>");
    if data.balances.is_empty() {
        h.raw("<tr><td colspan=\"4\">None yet.</td></tr>");
    }
    for (venue, asset, amount, at) in &data.balances {
        h.el("<tr><td>", venue, "</td>")
            .el("<td>", asset, "</td>")
            .el("<td>", amount.normalize(), "</td>")
            .el("<td>", time(Some(*at)), "</td></tr>");
    }
    h.raw("</table><h2>Audit log</h2><table id=\"audit\"><tr><th>At (UTC)</th><th>Actor</th><th>Action</th><th>Details</th></tr>");
    for (at, actor, action, details) in &data.audit {
        h.el("<tr><td>", time(Some(*at)), "</td>")
            .el("<td>", actor, "</td>")
            .el("<td>", action, "</td>")
            .el("<td><code>", details, "</code></td></tr>");
    }
    h.raw("</table></main></body></html>");
    Ok(page(StatusCode::OK, h.finish()))
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
            let view = crate::tenants::pause(State(state.clone()), access).await?;
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
    mode: &'a str,
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
    for m in ["paper", "live"] {
        h.raw("<option");
        if m == form.mode {
            h.raw(" selected");
        }
        h.el(">", m, "</option>");
    }
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
            mode: "paper",
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
        mode: field("mode"),
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
