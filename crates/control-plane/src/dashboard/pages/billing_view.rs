//! Billing on the dashboard: the tenant page's "Billing" section (its plan,
//! payment state, any payment hold and this month's usage; the tenant sees
//! its own, an operator any tenant's) and the operators' billing page
//! (`/ui/billing`: every tenant's plan, payment state and usage this month).
//!
//! The figures are those of `GET /tenants/{id}/billing` and `GET
//! /billing/usage` (`crate::billing::api`); this module only renders them.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use chrono::Utc;
use polybot_store::TenantTx;

use super::{badge, head, time};
use crate::AppState;
use crate::auth::Operator;
use crate::billing::api::{BillingView, TenantUsageView, this_month};
use crate::dashboard::{Html, UiResult, page, require};

/// The tenant's billing, for its page.
pub(crate) async fn load(state: &AppState, tx: &mut TenantTx) -> UiResult<BillingView> {
    Ok(crate::billing::api::load(tx, Utc::now(), state.settings.billing.grace).await?)
}

fn size(cpu: Option<i32>, memory: Option<i32>) -> String {
    match (cpu, memory) {
        (Some(cpu), Some(memory)) => format!("{cpu} CPU units / {memory} MiB"),
        _ => "the default size".to_owned(),
    }
}

/// The tenant page's "Billing" section.
pub(crate) fn section(h: &mut Html, billing: Option<&BillingView>) {
    let Some(b) = billing else {
        return;
    };
    h.raw("<h2>Billing</h2><table id=\"billing\"><tr><th>Plan</th><td>");
    match &b.plan {
        Some(plan) => {
            h.text(&plan.name)
                .raw(" (<code>")
                .text(&plan.id)
                .raw("</code>) · ")
                .text(&plan.monthly_price)
                .raw(" USD a month");
            if plan.metered {
                h.raw(" · usage metered");
            }
        }
        None => {
            h.raw("none: not limited, not billed");
        }
    }
    h.raw("</td></tr><tr><th>Payment</th><td>");
    badge(h, &b.payment_state);
    if let Some(since) = b.lapsed_since {
        h.text(format!(" since {}", time(Some(since))));
    }
    h.raw("</td></tr>");
    if let Some(hold) = &b.payment_hold {
        h.el(
            "<tr><th>Payment hold</th><td class=\"error\" id=\"payment-hold\">",
            hold,
            "</td></tr>",
        );
    }
    let u = &b.usage;
    h.raw("<tr><th>Usage this month</th><td id=\"billing-usage\">")
        .text(format!(
            "{} worker-hours at {}, {} orders ({} live), {} API calls",
            u.worker_hours,
            size(u.worker_cpu, u.worker_memory),
            u.orders,
            u.live_orders,
            u.api_calls
        ))
        .raw("</td></tr>");
    if let Some(until) = b.usage_reported_until {
        h.el(
            "<tr><th>Reported to Stripe</th><td>",
            format!("up to {}", time(Some(until))),
            "</td></tr>",
        );
    }
    h.raw("</table>");
}

/// `/ui/billing`: every tenant's plan, payment state and usage this month (operators).
pub async fn overview(State(state): State<AppState>, headers: HeaderMap) -> UiResult<Response> {
    let session = require(&state, &headers).await?;
    Operator::check(session.caller)?;
    let (from, to) = this_month(Utc::now());
    let mut op = state.db.operator().await?;
    let rows = polybot_store::repo::billing::usage_by_tenant(&mut op, from, to).await?;
    op.commit().await?;
    let rows: Vec<TenantUsageView> = rows
        .into_iter()
        .map(crate::billing::api::usage_view)
        .collect();
    let mut h = Html::new();
    head(&mut h, "Billing", Some(&session));
    render_overview(&mut h, &rows, from);
    Ok(page(StatusCode::OK, h.finish()))
}

fn render_overview(h: &mut Html, rows: &[TenantUsageView], from: chrono::DateTime<Utc>) {
    h.raw("<main><h1>Billing</h1><p>")
        .text(format!(
            "Usage since {} (this calendar month, UTC). `polybot cost --per-tenant` prices it.",
            from.format("%Y-%m-%d")
        ))
        .raw("</p><table id=\"billing-overview\"><thead><tr><th>Tenant</th><th>Plan</th><th>USD a month</th><th>Payment</th><th>Worker-hours</th><th>Orders</th><th>API calls</th></tr></thead><tbody>");
    for r in rows {
        h.raw("<tr><td><a href=\"/ui/tenants/")
            .text(r.tenant_id)
            .raw("\">")
            .text(&r.name)
            .raw("</a></td>")
            .el("<td>", r.plan.as_deref().unwrap_or("none"), "</td>")
            .el("<td>", r.monthly_price.as_deref().unwrap_or("-"), "</td>")
            .raw("<td>");
        badge(h, &r.payment_state);
        h.raw("</td>")
            .el("<td>", &r.worker_hours, "</td>")
            .el("<td>", r.orders, "</td>")
            .el("<td>", r.api_calls, "</td>")
            .raw("</tr>");
    }
    if rows.is_empty() {
        h.raw("<tr><td colspan=\"7\">No tenants yet.</td></tr>");
    }
    h.raw("</tbody></table></main></body></html>");
}
