//! `/ui/rollout` (operators): the newest fleet-wide rollout, its progress
//! and the tenants it reached, with pause, resume and abort buttons that go
//! through the API's own transitions (`crate::rollout::control`). Starting a
//! rollout is the API's and `polybot fleet rollout start`'s.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::{badge, head, time};
use crate::AppState;
use crate::auth::Operator;
use crate::dashboard::{Html, Session, UiError, UiResult, check_csrf, page, redirect, require};
use crate::rollout::{Control, RolloutView};

/// The page.
pub async fn rollout(State(state): State<AppState>, headers: HeaderMap) -> UiResult<Response> {
    let session = require(&state, &headers).await?;
    Operator::check(session.caller)?;
    let latest = crate::rollout::latest(&state).await?;
    let mut h = Html::new();
    head(&mut h, "Rollout", Some(&session));
    render(&mut h, &session, latest.as_ref());
    Ok(page(StatusCode::OK, h.finish()))
}

/// Pause, resume or abort rollout `id`, then back to the page.
pub async fn act(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    axum::Form(form): axum::Form<BTreeMap<String, String>>,
) -> UiResult<Response> {
    let session = require(&state, &headers).await?;
    Operator::check(session.caller)?;
    check_csrf(&session, &form)?;
    let id: i64 = id.parse().map_err(|_| UiError::NotFound)?;
    let control = match action.as_str() {
        "pause" => Control::Pause,
        "resume" => Control::Resume,
        "abort" => Control::Abort,
        _ => return Err(UiError::NotFound),
    };
    crate::rollout::control(&state, id, control).await?;
    Ok(redirect("/ui/rollout"))
}

fn button(h: &mut Html, session: &Session, id: i64, action: &str, label: &str) {
    h.raw("<form class=\"inline\" method=\"post\" action=\"/ui/rollout/")
        .text(id)
        .raw("/")
        .text(action)
        .raw("\"><input type=\"hidden\" name=\"csrf\" value=\"")
        .text(&session.csrf)
        .raw("\"><button type=\"submit\" id=\"rollout-")
        .text(action)
        .raw("\">")
        .text(label)
        .raw("</button></form> ");
}

/// The page's body for `rollout` (none: how to start one).
pub fn render(h: &mut Html, session: &Session, rollout: Option<&RolloutView>) {
    h.raw("<main><h1>Rollout</h1>");
    let Some(r) = rollout else {
        h.raw("<p id=\"rollout-none\">No rollout yet. Start one with <code>polybot fleet rollout start --image IMAGE --per-minute N</code> (or <code>--setting NAME=VALUE</code>), or <code>POST /fleet/rollouts</code>.</p></main></body></html>");
        return;
    };
    h.raw("<div class=\"cards\" id=\"rollout\"><div class=\"card\">Rollout <strong>")
        .text(r.id)
        .raw("</strong> ");
    badge(h, &r.state);
    h.raw("</div><div class=\"card\" id=\"rollout-progress\"><strong>")
        .text(r.progress.done)
        .raw("</strong> of ")
        .text(r.progress.total)
        .raw(" done, ")
        .text(r.progress.rolling)
        .raw(" rolling, ")
        .text(r.progress.pending)
        .raw(" pending</div><div class=\"card\">")
        .text(r.per_minute)
        .raw(" tenants a minute at most</div></div>");
    let total = r.progress.total.max(1);
    h.raw("<progress max=\"")
        .text(total)
        .raw("\" value=\"")
        .text(r.progress.done)
        .raw("\" style=\"width:100%;max-width:760px\"></progress>");
    h.raw("<table id=\"rollout-change\"><tr><th>Image</th><td>")
        .text(r.image.as_deref().unwrap_or("unchanged"))
        .raw("</td></tr><tr><th>Settings</th><td>");
    if r.settings.is_empty() {
        h.raw("unchanged");
    }
    for (name, value) in &r.settings {
        h.raw("<code>")
            .text(name)
            .raw("=")
            .text(value)
            .raw("</code> ");
    }
    h.raw("</td></tr>").el(
        "<tr><th>Started</th><td>",
        time(Some(r.created_at)),
        "</td></tr>",
    );
    if let Some(reason) = &r.reason {
        h.el("<tr><th>Why</th><td>", reason, "</td></tr>");
    }
    if r.state == "running"
        && let Some(next) = r.next_at
    {
        h.el(
            "<tr><th>Next tenant</th><td>",
            time(Some(next)),
            "</td></tr>",
        );
    }
    if let Some(finished) = r.finished_at {
        h.el(
            "<tr><th>Finished</th><td>",
            time(Some(finished)),
            "</td></tr>",
        );
    }
    h.raw("</table><p>");
    match r.state.as_str() {
        "running" => {
            button(h, session, r.id, "pause", "Pause");
            button(h, session, r.id, "abort", "Abort");
        }
        "paused" => {
            button(h, session, r.id, "resume", "Resume");
            button(h, session, r.id, "abort", "Abort");
        }
        _ => {}
    }
    h.raw("</p><p class=\"help\">Abort stops beginning tenants: those already begun keep the new release, the others keep theirs. Nothing is rolled back.</p>");
    h.raw("<h2>Latest tenants</h2><table id=\"rollout-tenants\"><thead><tr><th>Tenant</th><th>State</th><th>Began</th><th>Done</th></tr></thead><tbody>");
    for t in &r.recent {
        h.raw("<tr><td><a href=\"/ui/tenants/")
            .text(t.tenant_id)
            .raw("\">")
            .text(&t.name)
            .raw("</a></td><td>");
        badge(h, &t.state);
        h.raw("</td>")
            .el("<td>", time(Some(t.began_at)), "</td>")
            .el("<td>", time(t.done_at), "</td>")
            .raw("</tr>");
    }
    if r.recent.is_empty() {
        h.raw("<tr><td colspan=\"4\">No tenant begun yet.</td></tr>");
    }
    h.raw("</tbody></table></main></body></html>");
}
