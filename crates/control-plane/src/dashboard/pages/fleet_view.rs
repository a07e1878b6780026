//! The fleet page: every tenant the session may see, with its worker,
//! heartbeat, strategies, breakers, alerts, PnL and availability. It loads the
//! store's fleet figures ([`load`]), then renders them ([`render`], a pure
//! function of what was loaded). The figures and the table are re-read every
//! 5 s by the page's script from [`fleet_live`] with the same filter; the
//! filter form is not replaced, so typing in it is never interrupted.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use polybot_core::lifecycle::TenantState;
use polybot_core::worker::BreakerPosition;
use polybot_store::DbError;
use polybot_store::repo::fleet::{self, TenantFigures};
use rust_decimal::Decimal;

use super::{
    badge, desired_text, head_for, heartbeat_age, mode_badge, percent, signed, strategies, usd,
};
use crate::AppState;
use crate::auth::Caller;
use crate::dashboard::{Html, Session, UiResult, page, require};
use crate::metrics::AVAILABILITY_OBJECTIVE;

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
    let all = load(&state, session.caller).await?;
    // Operators see an unfinished rollout's progress above the fleet.
    let rollout = match session.caller {
        Caller::Operator => crate::rollout::latest(&state)
            .await?
            .filter(|r| matches!(r.state.as_str(), "running" | "paused")),
        Caller::Tenant(_) => None,
    };
    Ok(page(
        StatusCode::OK,
        render(&session, &all, &filter, rollout.as_ref()),
    ))
}

/// The page's live part (figures and table) as JSON, for the page's script.
pub async fn fleet_live(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(filter): Query<FleetFilter>,
) -> UiResult<Response> {
    let session = require(&state, &headers).await?;
    let all = load(&state, session.caller).await?;
    let mut h = Html::new();
    live(&mut h, &all, &filter);
    Ok(crate::dashboard::live_json(h.finish()))
}

/// `?q=…&state=…&worker=…` for the live part's URL, each value escaped
/// for a query string.
fn query_string(filter: &FleetFilter) -> String {
    let mut out = String::new();
    for (key, value) in [
        ("q", &filter.q),
        ("state", &filter.state),
        ("worker", &filter.worker),
    ] {
        let Some(value) = value.as_deref().filter(|v| !v.is_empty()) else {
            continue;
        };
        out.push(if out.is_empty() { '?' } else { '&' });
        out.push_str(key);
        out.push('=');
        for b in value.bytes() {
            if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.' {
                out.push(char::from(b));
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    out
}

/// Every tenant's figures for an operator; a tenant's own for a tenant.
pub(crate) async fn load(state: &AppState, caller: Caller) -> Result<Vec<TenantFigures>, DbError> {
    match caller {
        Caller::Operator => {
            let mut op = state.db.operator().await?;
            let all = fleet::figures(&mut op).await?;
            op.commit().await?;
            Ok(all)
        }
        Caller::Tenant(own) => {
            let mut tx = state.db.tenant(own).await?;
            let figures = fleet::tenant_figures(&mut tx).await?;
            tx.commit().await?;
            Ok(figures.into_iter().collect())
        }
    }
}

/// The page for `all`, showing those that pass `filter`.
pub(crate) fn render(
    session: &Session,
    all: &[TenantFigures],
    filter: &FleetFilter,
    rollout: Option<&crate::rollout::RolloutView>,
) -> String {
    let needle = filter.q.as_deref().unwrap_or("").trim().to_lowercase();
    let state_filter = filter.state.as_deref().unwrap_or("").trim();
    let worker_filter = filter.worker.as_deref().unwrap_or("").trim();
    let mut h = Html::new();
    let own_name = match session.caller {
        Caller::Tenant(_) => all.first().map(|f| f.status.name.as_str()),
        Caller::Operator => None,
    };
    head_for(&mut h, "Fleet", Some(session), own_name);
    h.raw("<main><h1>Fleet</h1>");
    if let Some(r) = rollout {
        h.raw("<p class=\"notice\" id=\"fleet-rollout\"><a href=\"/ui/rollout\">Rollout ")
            .text(r.id)
            .raw("</a> ")
            .text(&r.state)
            .raw(": ")
            .text(r.progress.done)
            .raw(" of ")
            .text(r.progress.total)
            .raw(" tenants done, ")
            .text(r.progress.rolling)
            .raw(" rolling.</p>");
    }
    // Filter and tenant selector (plain GET forms; work without script).
    h.raw("<form method=\"get\" action=\"/ui/fleet\" class=\"inline\" id=\"fleet-filter\"><input type=\"text\" name=\"q\" id=\"fleet-q\" placeholder=\"name or id\" value=\"")
        .text(&needle)
        .raw("\"> <select name=\"state\"><option value=\"\">any state</option>");
    // The fleet page never shows an offboarded tenant.
    let states = TenantState::ALL
        .iter()
        .filter(|s| **s != TenantState::Offboarded)
        .map(|s| s.as_str());
    for s in states {
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
        "launch_backoff",
        "capacity",
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
           <form method=\"get\" action=\"/ui/go\" class=\"inline\"><select name=\"tenant\" id=\"tenant-select\"><option value=\"\">open a tenant…</option>");
    for f in all {
        h.raw("<option value=\"")
            .text(f.status.id)
            .raw("\">")
            .text(&f.status.name)
            .raw("</option>");
    }
    h.raw("</select><noscript><button type=\"submit\">Open</button></noscript></form>");
    h.raw("<div id=\"fleet-live\" data-live=\"/ui/fleet/live")
        .text(query_string(filter))
        .raw("\">");
    live(&mut h, all, filter);
    h.raw("</div><p>Updates every 5 s. SLO: availability ≥ ")
        .text(percent(AVAILABILITY_OBJECTIVE.parse::<f64>().ok()))
        .raw(" of desired time over 30 days.</p></main></body></html>");
    h.finish()
}

/// The figures and the table of those that pass `filter`.
fn live(h: &mut Html, all: &[TenantFigures], filter: &FleetFilter) {
    let needle = filter.q.as_deref().unwrap_or("").trim().to_lowercase();
    let state_filter = filter.state.as_deref().unwrap_or("").trim();
    let worker_filter = filter.worker.as_deref().unwrap_or("").trim();
    let shown: Vec<&TenantFigures> = all
        .iter()
        .filter(|f| {
            needle.is_empty()
                || f.status.name.to_lowercase().contains(&needle)
                || f.status.id.to_string().contains(&needle)
        })
        .filter(|f| state_filter.is_empty() || f.status.state.as_str() == state_filter)
        .filter(|f| worker_filter.is_empty() || f.status.actual() == worker_filter)
        .collect();
    let desired = all.iter().filter(|f| f.status.desired_running()).count();
    let running = all
        .iter()
        .filter(|f| f.status.actual() == "running")
        .count();
    let breakers_open = all
        .iter()
        .flat_map(|f| f.status.breakers())
        .filter(|(_, b)| *b == BreakerPosition::Open)
        .count();
    let alerts: usize = all.iter().map(|f| f.firing_alerts.len()).sum();
    let pnl_today: Decimal = all.iter().map(TenantFigures::today).sum();
    h.raw("<div class=\"cards\">")
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
            "<div class=\"card\">PnL today <strong id=\"fleet-pnl-today\">",
            usd(pnl_today),
            "</strong></div>",
        )
        .raw("</div>");
    h.raw("<div class=\"scroll\"><table id=\"fleet\"><thead><tr><th>Tenant</th><th>State</th><th>Desired</th><th>Worker</th><th>Heartbeat</th><th>Strategies</th><th>Open breakers</th><th>Alerts</th><th>Last error</th><th class=\"num\">PnL today</th><th>Availability 1 h / 30 d</th></tr></thead><tbody>");
    for f in &shown {
        row(h, f);
    }
    if shown.is_empty() {
        h.raw("<tr><td colspan=\"11\">No tenant matches.</td></tr>");
    }
    h.raw("</tbody></table></div>");
}

/// One tenant's row of the fleet table.
fn row(h: &mut Html, f: &TenantFigures) {
    let status = &f.status;
    let strategies = strategies(status);
    h.raw("<tr data-tenant=\"")
        .text(status.id)
        .raw("\"><td><a href=\"/ui/tenants/")
        .text(status.id)
        .raw("\">")
        .text(&status.name)
        .raw("</a>");
    mode_badge(h, &status.mode);
    h.raw("</td><td>");
    badge(h, status.state.as_str());
    h.raw("</td><td>")
        .text(desired_text(status))
        .raw("</td><td class=\"worker\">");
    badge(h, status.actual());
    if status.restarts() > 0 {
        h.text(format!(" ({} restarts)", status.restarts()));
    }
    h.raw("</td><td>")
        .text(heartbeat_age(
            status.heartbeat.as_ref().map(|hb| hb.age_seconds()),
        ))
        .raw("</td><td>");
    if strategies.is_empty() {
        h.raw("–");
    }
    for (name, strategy, _) in &strategies {
        h.raw("<span class=\"badge ")
            .text(if strategy.as_str() == "ok" {
                "ok"
            } else {
                "warn"
            })
            .raw("\">")
            .text(name)
            .raw(": ")
            .text(strategy.as_str())
            .raw("</span>");
    }
    h.raw("</td><td>");
    let open: Vec<&str> = strategies
        .iter()
        .filter(|(_, _, b)| *b != BreakerPosition::Closed)
        .map(|(n, _, _)| *n)
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
        .text(status.runtime_or_tenant_error().unwrap_or(""))
        .raw("</td>");
    let (class, text) = signed(f.today());
    h.raw("<td class=\"")
        .raw(class)
        .raw("\">")
        .text(text)
        .raw("</td><td>")
        .text(percent(f.availability_1h))
        .raw(" / ")
        .text(percent(f.availability_30d))
        .raw("</td></tr>");
}
