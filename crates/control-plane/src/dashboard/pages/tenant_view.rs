//! The tenant page: its worker and figures, the trader view ([`super::trader`]:
//! equity, charts, positions, PnL by strategy), alerts, strategies and
//! venues, timeline, opportunities, trades, balances and audit log, with the
//! pause / resume / offboard buttons (enabled when the tenant's state allows
//! them). [`load`] reads everything into a [`TenantPage`]; [`render`] is a
//! pure function of it. The live part (figures, trader view, trades) is
//! re-read every 5 s by the page's script from [`tenant_live`], so the page
//! never reloads as a whole.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use polybot_core::TenantId;
use polybot_core::lifecycle::TenantState;
use polybot_store::TenantTx;
use polybot_store::repo::alerts::{self as alert_states, FiringAlert};
use polybot_store::repo::audit::{self, AuditEntry};
use polybot_store::repo::balances::{self, Balance};
use polybot_store::repo::fleet::{self, TenantFigures};
use polybot_store::repo::opportunities::{self, Opportunity};
use polybot_store::repo::runtime::{self, Event};
use polybot_store::repo::trades::{self, Trade};
use rust_decimal::Decimal;

use super::trader::{self, Trader};
use super::{
    badge, desired_text, head_for, heartbeat_age, mode_badge, percent, price, shares, signed,
    strategies, time, usd,
};
use crate::AppState;
use crate::auth::{Caller, TenantAccess};
use crate::dashboard::{
    Html, NoticeQuery, PathId, Session, UiError, UiResult, page, require, visible,
};
use crate::metrics::AVAILABILITY_OBJECTIVE;
use crate::tenants::TenantView;

/// How many rows of each list the page shows.
const LIST: i64 = 50;
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
    pub trader: Trader,
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

/// The page's live part as JSON (`{"html": …}`), for the page's script.
pub async fn tenant_live(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): PathId,
) -> UiResult<Response> {
    let session = require(&state, &headers).await?;
    let tenant = visible(&session, &id)?;
    let loaded = load(&state, session.caller, tenant).await?;
    let mut h = Html::new();
    live(&mut h, &session, &loaded);
    Ok(crate::dashboard::live_json(h.finish()))
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

async fn read(tx: &mut TenantTx, figures: TenantFigures, view: TenantView) -> UiResult<TenantPage> {
    Ok(TenantPage {
        events: runtime::recent_events(tx, LIST).await?,
        opportunities: opportunities::page(tx, None, None, LIST).await?,
        trades: trades::page(tx, None, None, LIST).await?,
        balances: balances::page(tx, None, BALANCES).await?,
        trader: trader::read(tx).await?,
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

/// A tenant action's button, disabled (with why, on hover) when the
/// tenant's state does not allow it.
fn action_button(
    h: &mut Html,
    session: &Session,
    tenant: TenantId,
    (action, label): (&'static str, &'static str),
    confirm: bool,
    refused: Option<&'static str>,
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
        .raw("\"");
    if let Some(why) = refused {
        h.raw(" disabled title=\"").raw(why).raw("\"");
    }
    h.raw(">").raw(label).raw("</button></form> ");
}

/// The page for what [`load`] read.
pub(crate) fn render(session: &Session, data: &TenantPage, notice: Option<&str>) -> String {
    let status = &data.figures.status;
    let view = &data.view;
    let tenant = status.tenant_id();
    let mut h = Html::new();
    let own_name = matches!(session.caller, Caller::Tenant(_)).then_some(status.name.as_str());
    head_for(&mut h, &status.name, Some(session), own_name);
    h.raw("<main><h1 id=\"tenant-name\">").text(&status.name);
    mode_badge(&mut h, &view.mode);
    h.raw("</h1><p><code>")
        .text(status.id)
        .raw("</code> · ")
        .text(&view.mode)
        .raw(" mode · onboarding step ")
        .text(&view.provisioning.step)
        .raw(" · <a href=\"/ui/tenants/")
        .text(tenant)
        .raw("/settings\" id=\"settings-link\">Settings</a> (strategies, risk limits, keys)</p>");
    if let Some(n) = notice {
        h.el("<p class=\"notice\" id=\"notice\">", n, "</p>");
    }
    h.raw("<div id=\"live\" data-live=\"/ui/tenants/")
        .text(tenant)
        .raw("/live\">");
    live(&mut h, session, data);
    h.raw("</div>");
    alerts(&mut h, data);
    health(&mut h, data);
    super::billing_view::section(&mut h, data.billing.as_ref());
    tables(&mut h, data);
    h.raw("</main></body></html>");
    h.finish()
}

/// What changes while one looks: state, worker, figures, buttons, the
/// trader view and the newest trades.
fn live(h: &mut Html, session: &Session, data: &TenantPage) {
    let figures = &data.figures;
    let status = &figures.status;
    let view = &data.view;
    let tenant = status.tenant_id();
    h.raw("<div class=\"cards\"><div class=\"card\">State ");
    badge(h, status.state.as_str());
    h.raw("</div><div class=\"card\">Desired <strong id=\"desired\">")
        .text(desired_text(status))
        .raw("</strong></div><div class=\"card\">Worker <span id=\"worker-state\">");
    badge(h, status.actual());
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
    h.raw("</div><div class=\"card\">Heartbeat <span id=\"heartbeat\">")
        .text(heartbeat_age(
            status.heartbeat.as_ref().map(|hb| hb.age_seconds()),
        ))
        .raw("</span></div><div class=\"card\">Availability 1 h <strong>")
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
    let state = status.state;
    h.raw("<p>");
    action_button(
        h,
        session,
        tenant,
        ("pause", "Pause"),
        false,
        (state != TenantState::Active).then_some("only an active tenant can be paused"),
    );
    let resume_refused = if !matches!(state, TenantState::Paused | TenantState::Failed) {
        Some("only a paused or failed tenant can be resumed")
    } else if view.held_by_operator && session.caller != Caller::Operator {
        Some("an operator holds this tenant paused")
    } else {
        None
    };
    let resume = if state == TenantState::Failed {
        ("resume", "Retry onboarding")
    } else {
        ("resume", "Resume")
    };
    action_button(h, session, tenant, resume, false, resume_refused);
    if session.caller == Caller::Operator {
        action_button(
            h,
            session,
            tenant,
            ("offboard", "Offboard"),
            true,
            matches!(state, TenantState::Offboarding | TenantState::Offboarded)
                .then_some("the tenant is already being offboarded"),
        );
    }
    h.raw("</p>");
    trader::render(h, &data.trader, &data.trades);
    trades_table(h, &data.trades);
    opportunities_table(h, data);
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
        h.raw("none (add them in the <a href=\"/ui/tenants/")
            .text(data.figures.status.tenant_id())
            .raw("/settings#channels\">settings</a>)");
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
    h.raw("</table>");
    h.raw("<h2>Balances</h2><div class=\"scroll\"><table id=\"balances\"><tr><th>Venue</th><th>Asset</th><th>Amount</th><th>Updated</th></tr>");
    if data.balances.is_empty() {
        h.raw("<tr><td colspan=\"4\">None yet.</td></tr>");
    }
    for b in &data.balances {
        h.el("<tr><td>", &b.venue, "</td>")
            .el("<td>", &b.asset, "</td>")
            .el("<td class=\"num\">", usd(b.amount), "</td>")
            .el("<td>", time(Some(b.updated_at)), "</td></tr>");
    }
    h.raw("</table></div><h2>Audit log</h2><div class=\"scroll\"><table id=\"audit\"><tr><th>At (UTC)</th><th>Actor</th><th>Action</th><th>Details</th></tr>");
    for a in &data.audit {
        h.el("<tr><td>", time(Some(a.at)), "</td>")
            .el("<td>", &a.actor, "</td>")
            .el("<td>", &a.action, "</td>")
            .el("<td><code>", &a.details, "</code></td></tr>");
    }
    h.raw("</table></div>");
}

fn dash() -> String {
    "–".to_owned()
}

/// The newest opportunities.
fn opportunities_table(h: &mut Html, data: &TenantPage) {
    h.raw("<h2>Recent opportunities</h2><div class=\"scroll\"><table id=\"opportunities\"><tr><th>Detected</th><th>Strategy</th><th>Venue</th><th>Market</th><th>Description</th><th>Edge</th><th>Expected profit</th><th>Size</th><th>Executed at</th></tr>");
    if data.opportunities.is_empty() {
        h.raw("<tr><td colspan=\"9\">None yet.</td></tr>");
    }
    for o in &data.opportunities {
        h.el("<tr><td>", time(Some(o.detected_at)), "</td>")
            .el("<td>", &o.strategy, "</td>")
            .el("<td>", &o.venue, "</td>")
            .el("<td>", &o.market, "</td>")
            .el("<td>", &o.description, "</td>")
            .el(
                "<td class=\"num\">",
                o.edge.map_or_else(dash, price),
                "</td>",
            )
            .el(
                "<td class=\"num\">",
                o.expected_profit.map_or_else(dash, usd),
                "</td>",
            )
            .el(
                "<td class=\"num\">",
                o.size.map_or_else(dash, shares),
                "</td>",
            )
            .el("<td>", time(o.executed_at), "</td></tr>");
    }
    h.raw("</table></div>");
}

/// The newest trades, with the markers' colours' meaning.
fn trades_table(h: &mut Html, trades: &[Trade]) {
    h.raw("<h2>Trades</h2><div class=\"scroll\"><table id=\"trades\"><tr><th>Executed (UTC)</th><th>Strategy</th><th>Venue</th><th>Market</th><th>Side</th><th>Outcome</th><th class=\"num\">Price</th><th class=\"num\">Shares</th><th class=\"num\">Fee</th><th class=\"num\">Realized</th><th>Mode</th></tr>");
    if trades.is_empty() {
        h.raw("<tr><td colspan=\"11\">None yet.</td></tr>");
    }
    for t in trades {
        h.el("<tr><td>", time(Some(t.executed_at)), "</td>")
            .el("<td>", &t.strategy, "</td>")
            .el("<td>", &t.venue, "</td>")
            .el("<td>", &t.market, "</td>")
            .el("<td>", &t.side, "</td>")
            .el("<td>", t.outcome.as_deref().unwrap_or("–"), "</td>")
            .el("<td class=\"num\">", price(t.price), "</td>")
            .el("<td class=\"num\">", shares(t.size), "</td>")
            .el("<td class=\"num\">", usd(t.fee), "</td>");
        let (class, text) = signed(t.realized_pnl.unwrap_or(Decimal::ZERO));
        h.raw("<td class=\"")
            .raw(class)
            .raw("\">")
            .text(text)
            .raw("</td>")
            .el("<td>", &t.mode, "</td></tr>");
    }
    h.raw("</table></div>");
}
