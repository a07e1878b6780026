//! The tenant page: its worker, figures, alerts, strategies and venues, PnL
//! chart, timeline, opportunities, trades, balances and audit log, with the
//! pause / resume / offboard buttons. [`load`] reads everything into a
//! [`TenantPage`]; [`render`] is a pure function of it.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use polybot_core::TenantId;
use polybot_store::repo::alerts::{self as alert_states, FiringAlert};
use polybot_store::repo::audit::{self, AuditEntry};
use polybot_store::repo::balances::{self, Balance};
use polybot_store::repo::fleet::{self, TenantFigures};
use polybot_store::repo::opportunities::{self, Opportunity};
use polybot_store::repo::runtime::{self, Event};
use polybot_store::repo::trades::{self, PnlPoint, Trade};
use polybot_store::{DbError, TenantTx};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

use super::{age, badge, dec, head, mode_badge, percent, strategies, time};
use crate::AppState;
use crate::auth::{Caller, TenantAccess};
use crate::dashboard::{
    Html, NoticeQuery, PathId, Session, UiError, UiResult, page, require, visible,
};
use crate::metrics::AVAILABILITY_OBJECTIVE;
use crate::tenants::TenantView;

/// How many rows of each list the page shows.
const LIST: i64 = 50;
/// About how many points the PnL chart draws.
const CHART_POINTS: i64 = 300;
/// Balances shown: one per venue and asset, so every one of them.
const BALANCES: i64 = 1_000;

/// Everything the tenant page shows, loaded before it is rendered.
#[derive(Debug)]
pub(crate) struct TenantPage {
    pub figures: TenantFigures,
    pub view: TenantView,
    pub events: Vec<Event>,
    pub opportunities: Vec<Opportunity>,
    pub trades: Vec<Trade>,
    pub balances: Vec<Balance>,
    pub pnl: Vec<PnlPoint>,
    pub audit: Vec<AuditEntry>,
    /// (alert, subject, summary, since).
    pub firing: Vec<FiringAlert>,
    pub channels: Vec<crate::alerts::ChannelView>,
    pub billing: Option<crate::billing::api::BillingView>,
}

pub async fn tenant(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): PathId,
    Query(notice): NoticeQuery,
) -> UiResult<Response> {
    let session = require(&state, &headers).await?;
    let tenant = visible(&session, &id)?;
    let loaded = load(&state, session.caller, tenant).await?;
    Ok(page(
        StatusCode::OK,
        render(&session, &loaded, notice.notice.as_deref()),
    ))
}

/// Reads the page's data: the tenant's view through the API's own handler
/// (the same masking of keys), the rest in one tenant transaction.
pub(crate) async fn load(
    state: &AppState,
    caller: Caller,
    tenant: TenantId,
) -> UiResult<TenantPage> {
    let access = TenantAccess::check(caller, tenant.as_uuid())?;
    let view = crate::tenants::get(State(state.clone()), access).await?.0;
    let mut tx = state.db.tenant(tenant).await?;
    let figures = fleet::tenant_figures(&mut tx)
        .await?
        .ok_or(UiError::NotFound)?;
    let mut page = read(&mut tx, figures, view).await?;
    page.billing = Some(super::billing_view::load(state, &mut tx).await?);
    tx.commit().await?;
    Ok(page)
}

async fn read(
    tx: &mut TenantTx,
    figures: TenantFigures,
    view: TenantView,
) -> Result<TenantPage, DbError> {
    Ok(TenantPage {
        events: runtime::recent_events(tx, LIST).await?,
        opportunities: opportunities::page(tx, None, None, LIST).await?,
        trades: trades::page(tx, None, None, LIST).await?,
        balances: balances::page(tx, None, BALANCES).await?,
        pnl: trades::pnl_curve(tx, CHART_POINTS).await?,
        audit: audit::recent(tx, LIST).await?,
        firing: alert_states::firing(tx).await?,
        channels: crate::alerts::tenant_channels(tx)
            .await?
            .iter()
            .map(crate::alerts::Channel::public_view)
            .collect(),
        figures,
        view,
        billing: None,
    })
}

/// An inline SVG line chart of cumulative PnL (integer and decimal maths only).
fn pnl_chart(h: &mut Html, points: &[PnlPoint]) {
    const W: i64 = 640;
    const H: i64 = 160;
    const PAD: i64 = 8;
    let [first, .., last] = points else {
        h.raw("<p id=\"pnl-chart\">Not enough trades yet for a chart.</p>");
        return;
    };
    let t0 = first.at.timestamp_millis();
    let t1 = last.at.timestamp_millis();
    let span = (t1 - t0).max(1);
    let min = points
        .iter()
        .map(|p| p.total)
        .fold(Decimal::ZERO, Decimal::min);
    let max = points
        .iter()
        .map(|p| p.total)
        .fold(Decimal::ZERO, Decimal::max);
    let range = if max == min { Decimal::ONE } else { max - min };
    let y = |v: Decimal| -> i64 {
        PAD + ((max - v) * Decimal::from(H - 2 * PAD) / range)
            .round()
            .to_i64()
            .unwrap_or(0)
    };
    let mut coords = String::new();
    for p in points {
        let x = PAD + (p.at.timestamp_millis() - t0) * (W - 2 * PAD) / span;
        coords.push_str(&format!("{x},{} ", y(p.total)));
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
        .text(time(Some(first.at)))
        .raw(" to ")
        .text(time(Some(last.at)))
        .raw(" UTC; last ")
        .text(last.total.normalize())
        .raw("</p>");
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
        h.raw(" data-confirm=\"Offboard this tenant? Its worker stops and its keys are scheduled for deletion.\"");
    }
    h.raw("><input type=\"hidden\" name=\"csrf\" value=\"")
        .text(&session.csrf)
        .raw("\"><button type=\"submit\" id=\"action-")
        .raw(action)
        .raw("\">")
        .raw(label)
        .raw("</button></form> ");
}

/// The page for what [`load`] read.
pub(crate) fn render(session: &Session, data: &TenantPage, notice: Option<&str>) -> String {
    let figures = &data.figures;
    let status = &figures.status;
    let view = &data.view;
    let tenant = status.tenant_id();
    let mut h = Html::new();
    head(&mut h, &status.name, Some(session));
    h.raw("<main><h1 id=\"tenant-name\">").text(&status.name);
    mode_badge(&mut h, &view.mode);
    h.raw("</h1><p><code>")
        .text(status.id)
        .raw("</code> · ")
        .text(&view.mode)
        .raw(" mode · onboarding step ")
        .text(&view.provisioning.step)
        .raw("</p>");
    if let Some(n) = notice {
        h.el("<p class=\"notice\" id=\"notice\">", n, "</p>");
    }
    h.raw("<div class=\"cards\"><div class=\"card\">State ");
    badge(&mut h, status.state.as_str());
    h.raw("</div><div class=\"card\">Desired <strong>")
        .text(status.desired())
        .raw("</strong></div><div class=\"card\">Worker <span id=\"worker-state\">");
    badge(&mut h, status.actual());
    h.raw("</span>");
    if let Some(runtime) = &status.runtime {
        if let Some(instance) = &runtime.instance_id {
            h.text(format!(" (instance {instance})"));
        }
        if runtime.restarts > 0 {
            h.text(format!(", {} restarts", runtime.restarts));
        }
        if let Some(until) = runtime.backoff_until {
            h.text(format!(", back-off until {}", time(Some(until))));
        }
    }
    h.raw("</div><div class=\"card\">Heartbeat ")
        .text(age(status.heartbeat.as_ref().map(|hb| hb.age_seconds())))
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
    if let Some(err) = status.runtime_or_tenant_error() {
        h.el("<p class=\"error\">Last error: ", err, "</p>");
    }
    if view.held_by_operator {
        let reason = view
            .hold_reason
            .as_deref()
            .map(|r| format!(": {r}"))
            .unwrap_or_default();
        h.el(
            "<p class=\"error\" id=\"operator-hold\">",
            format!("Held by an operator{reason}. Only an operator can resume it."),
            "</p>",
        );
    }
    h.raw("<p>");
    action_button(&mut h, session, tenant, "pause", "Pause", false);
    action_button(&mut h, session, tenant, "resume", "Resume", false);
    if session.caller == Caller::Operator {
        action_button(&mut h, session, tenant, "offboard", "Offboard", true);
    }
    h.raw("</p>");

    alerts(&mut h, data);
    health(&mut h, data);
    super::billing_view::section(&mut h, data.billing.as_ref());
    h.raw("<h2>PnL</h2>");
    pnl_chart(&mut h, &data.pnl);
    tables(&mut h, data);
    h.raw("</main></body></html>");
    h.finish()
}

fn alerts(h: &mut Html, data: &TenantPage) {
    h.raw("<h2>Alerts</h2>");
    if data.firing.is_empty() {
        h.raw("<p>No alert is firing.</p>");
    } else {
        h.raw("<table><tr><th>Alert</th><th>Subject</th><th>Since</th><th>Summary</th></tr>");
        for a in &data.firing {
            h.el("<tr><td>", &a.alert, "</td>")
                .el("<td>", &a.subject, "</td>")
                .el("<td>", time(Some(a.fired_at)), "</td>")
                .el("<td>", &a.summary, "</td></tr>");
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
}

/// Strategy health, venue feeds and exchange keys.
fn health(h: &mut Html, data: &TenantPage) {
    let status = &data.figures.status;
    h.raw("<h2>Strategies</h2><table><tr><th>Strategy</th><th>Status</th><th>Circuit breaker</th></tr>");
    let strategies = strategies(status);
    if strategies.is_empty() {
        h.raw("<tr><td colspan=\"3\">No heartbeat has reported strategy health yet.</td></tr>");
    }
    for (name, strategy, breaker) in &strategies {
        h.el("<tr><td>", name, "</td><td>");
        badge(h, strategy.as_str());
        h.raw("</td><td>");
        badge(h, breaker.as_str());
        h.raw("</td></tr>");
    }
    h.raw("</table><h2>Venues</h2>");
    match status.health().map(|health| &health.venues) {
        Some(venues) if !venues.is_empty() => {
            h.raw("<table><tr><th>Venue</th><th>Reachability</th></tr>");
            for (venue, feed) in venues {
                h.el("<tr><td>", venue, "</td><td>");
                badge(h, feed.status.as_str());
                h.raw("</td></tr>");
            }
            h.raw("</table>");
        }
        _ => {
            h.raw("<p>The worker has not reported venue reachability (see <code>polybot doctor</code>).</p>");
        }
    }
    h.raw("<p>Exchange keys: ");
    match data.view.exchange_keys.as_object() {
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
}

/// Timeline, opportunities, trades, balances and audit log.
fn tables(h: &mut Html, data: &TenantPage) {
    h.raw("<h2>Status timeline</h2><table id=\"timeline\"><tr><th>At (UTC)</th><th>Event</th><th>Detail</th></tr>");
    if data.events.is_empty() {
        h.raw("<tr><td colspan=\"3\">Nothing yet.</td></tr>");
    }
    for e in &data.events {
        h.el("<tr><td>", time(Some(e.at)), "</td><td>");
        badge(h, &e.kind);
        h.el("</td><td>", &e.detail, "</td></tr>");
    }
    h.raw("</table><h2>Recent opportunities</h2><table id=\"opportunities\"><tr><th>Detected</th><th>Strategy</th><th>Venue</th><th>Market</th><th>Description</th><th>Edge</th><th>Expected profit</th><th>Size</th><th>Executed at</th></tr>");
    if data.opportunities.is_empty() {
        h.raw("<tr><td colspan=\"9\">None yet.</td></tr>");
    }
    for o in &data.opportunities {
        h.el("<tr><td>", time(Some(o.detected_at)), "</td>")
            .el("<td>", &o.strategy, "</td>")
            .el("<td>", &o.venue, "</td>")
            .el("<td>", &o.market, "</td>")
            .el("<td>", &o.description, "</td>")
            .el("<td>", dec(o.edge), "</td>")
            .el("<td>", dec(o.expected_profit), "</td>")
            .el("<td>", dec(o.size), "</td>")
            .el("<td>", time(o.executed_at), "</td></tr>");
    }
    h.raw("</table><h2>Trades</h2><table id=\"trades\"><tr><th>Executed</th><th>Strategy</th><th>Venue</th><th>Market</th><th>Side</th><th>Outcome</th><th>Price</th><th>Size</th><th>Fee</th><th>Realized PnL</th><th>Mode</th></tr>");
    if data.trades.is_empty() {
        h.raw("<tr><td colspan=\"11\">None yet.</td></tr>");
    }
    for t in &data.trades {
        h.el("<tr><td>", time(Some(t.executed_at)), "</td>")
            .el("<td>", &t.strategy, "</td>")
            .el("<td>", &t.venue, "</td>")
            .el("<td>", &t.market, "</td>")
            .el("<td>", &t.side, "</td>")
            .el("<td>", t.outcome.as_deref().unwrap_or("–"), "</td>")
            .el("<td>", t.price.normalize(), "</td>")
            .el("<td>", t.size.normalize(), "</td>")
            .el("<td>", t.fee.normalize(), "</td>")
            .el("<td>", dec(t.realized_pnl), "</td>")
            .el("<td>", &t.mode, "</td></tr>");
    }
    h.raw("</table><h2>Balances</h2><table id=\"balances\"><tr><th>Venue</th><th>Asset</th><th>Amount</th><th>Updated</th></tr>");
    if data.balances.is_empty() {
        h.raw("<tr><td colspan=\"4\">None yet.</td></tr>");
    }
    for b in &data.balances {
        h.el("<tr><td>", &b.venue, "</td>")
            .el("<td>", &b.asset, "</td>")
            .el("<td>", b.amount.normalize(), "</td>")
            .el("<td>", time(Some(b.updated_at)), "</td></tr>");
    }
    h.raw("</table><h2>Audit log</h2><table id=\"audit\"><tr><th>At (UTC)</th><th>Actor</th><th>Action</th><th>Details</th></tr>");
    for a in &data.audit {
        h.el("<tr><td>", time(Some(a.at)), "</td>")
            .el("<td>", &a.actor, "</td>")
            .el("<td>", &a.action, "</td>")
            .el("<td><code>", &a.details, "</code></td></tr>");
    }
    h.raw("</table>");
}
