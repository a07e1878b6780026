//! A tenant's settings page (`/ui/tenants/{id}/settings`), for the tenant and
//! for operators: its strategies and risk limits in the schema's form (saved
//! with the API's `PATCH /tenants/{id}`), and its exchange keys replaced
//! write-only (`PUT /tenants/{id}/exchange-keys`). Each form goes through the
//! API's own handler, so the rules (editable states, validation, audit) and
//! the messages are the API's; errors are shown beside their fields.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use polybot_core::validation::FieldError;
use serde_json::json;

use super::head_for;
use crate::AppState;
use crate::auth::{Caller, TenantAccess};
use crate::dashboard::config_form::{Form, Purpose, Values, keys_of, risk_of, strategies_of};
use crate::dashboard::{
    Html, NoticeQuery, PathId, Session, UiResult, check_csrf_value, page, redirect, require,
    visible,
};
use crate::error::ApiError;
use crate::tenants::TenantView;

/// Which of the page's forms an error belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Config,
    Keys,
}

async fn view_of(state: &AppState, session: &Session, id: &str) -> UiResult<TenantView> {
    let tenant = visible(session, id)?;
    let access = TenantAccess::check(session.caller, tenant.as_uuid())?;
    Ok(crate::tenants::get(State(state.clone()), access).await?.0)
}

/// `GET /ui/tenants/{id}/settings`.
pub async fn settings(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): PathId,
    notice: NoticeQuery,
) -> UiResult<Response> {
    let session = require(&state, &headers).await?;
    let view = view_of(&state, &session, &id).await?;
    let values = Values::of_config(&view.strategies, &view.risk);
    Ok(render(
        &session,
        &view,
        StatusCode::OK,
        &values,
        None,
        notice.0.notice.as_deref(),
    ))
}

/// `POST /ui/tenants/{id}/settings/{part}`: `config` or `keys`.
pub async fn save(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((id, part)): Path<(String, String)>,
    axum::Form(pairs): axum::Form<Vec<(String, String)>>,
) -> UiResult<Response> {
    let session = require(&state, &headers).await?;
    let values = Values::from_pairs(&pairs);
    check_csrf_value(&session, values.one("csrf"))?;
    let view = view_of(&state, &session, &id).await?;
    let access = || TenantAccess::check(session.caller, view.id);
    let (part, result, notice) = match part.as_str() {
        "config" => {
            let body = json!({
                "strategies": strategies_of(&values, Purpose::Edit),
                "risk": risk_of(&values),
            });
            let result = crate::tenants::patch(
                State(state.clone()),
                access()?,
                Bytes::from(body.to_string()),
            )
            .await;
            (
                Part::Config,
                result,
                "Saved: the worker restarts with the new settings.",
            )
        }
        "keys" => {
            let Some(keys) = keys_of(&values) else {
                let errors = [FieldError::new(
                    "exchange_keys",
                    "enter the keys of at least one venue",
                )];
                let shown = Values::of_config(&view.strategies, &view.risk);
                return Ok(render(
                    &session,
                    &view,
                    StatusCode::UNPROCESSABLE_ENTITY,
                    &shown,
                    Some((Part::Keys, &errors)),
                    None,
                ));
            };
            let result = crate::tenants::rotate_keys(
                State(state.clone()),
                access()?,
                Bytes::from(keys.to_string()),
            )
            .await;
            (
                Part::Keys,
                result,
                "Keys replaced: the worker restarts with them.",
            )
        }
        _ => return Err(crate::dashboard::UiError::NotFound),
    };
    let errors = match result {
        Ok(_) => {
            return Ok(redirect(&format!(
                "/ui/tenants/{}/settings?notice={}",
                view.id,
                notice.replace(' ', "+").replace(':', "%3A")
            )));
        }
        Err(ApiError::Validation(errors)) => errors,
        // Not editable in its state (offboarding, say): the API's words.
        Err(ApiError::Conflict(message)) => vec![FieldError::new("tenant", message)],
        Err(other) => return Err(other.into()),
    };
    // The keys are never shown again; the config form shows what was typed.
    let shown = match part {
        Part::Config => values,
        Part::Keys => Values::of_config(&view.strategies, &view.risk),
    };
    Ok(render(
        &session,
        &view,
        StatusCode::UNPROCESSABLE_ENTITY,
        &shown,
        Some((part, &errors)),
        None,
    ))
}

fn render(
    session: &Session,
    view: &TenantView,
    status: StatusCode,
    values: &Values,
    errors: Option<(Part, &[FieldError])>,
    notice: Option<&str>,
) -> Response {
    let errors_of = |part: Part| match errors {
        Some((p, e)) if p == part => e,
        _ => &[],
    };
    let mut h = Html::new();
    let own_name = matches!(session.caller, Caller::Tenant(_)).then_some(view.name.as_str());
    head_for(&mut h, &view.name, Some(session), own_name);
    h.raw("<main class=\"narrow\"><h1>Settings of <span id=\"tenant-name\">")
        .text(&view.name)
        .raw("</span></h1><p><a href=\"/ui/tenants/")
        .text(view.id)
        .raw("\">Back to the tenant</a></p>");
    if let Some(n) = notice {
        h.el("<p class=\"notice\" id=\"notice\">", n, "</p>");
    }

    let config_errors = errors_of(Part::Config);
    let mut form = Form::new(values, config_errors);
    form.strategies();
    form.risk();
    let unshown = form.unshown();
    h.raw("<h2>Strategies and risk limits</h2>");
    if !config_errors.is_empty() {
        h.raw("<p class=\"error\" id=\"form-errors\">")
            .text(config_errors.len())
            .raw(" field(s) are invalid; nothing was saved.</p>");
        for e in unshown {
            h.raw("<span class=\"field-error\" data-field=\"")
                .text(&e.field)
                .raw("\">")
                .text(e)
                .raw("</span>");
        }
    }
    h.raw("<p class=\"help\">An unticked strategy keeps its settings, switched off.</p>");
    h.raw("<form method=\"post\" id=\"edit-config\" action=\"/ui/tenants/")
        .text(view.id)
        .raw("/settings/config\"><input type=\"hidden\" name=\"csrf\" value=\"")
        .text(&session.csrf)
        .raw("\">");
    h.append(form.h);
    h.raw("<button type=\"submit\" id=\"save-config\">Save</button></form>");

    let key_errors = errors_of(Part::Keys);
    let empty = Values::default();
    let mut form = Form::new(&empty, key_errors);
    form.keys("Replace the exchange keys");
    let unshown = form.unshown();
    h.raw("<h2>Exchange keys</h2><p id=\"fingerprints\">Now: ");
    match view.exchange_keys.as_object().filter(|k| !k.is_empty()) {
        None => {
            h.raw("none.");
        }
        Some(keys) => {
            for (venue, fingerprint) in keys {
                h.raw("<span class=\"badge\">")
                    .text(venue)
                    .raw(" ")
                    .text(fingerprint.as_str().unwrap_or(""))
                    .raw("</span> ");
            }
        }
    }
    h.raw("</p><p class=\"help\">Saving replaces every venue's keys: a venue left empty will have none.</p>");
    for e in unshown {
        h.raw("<span class=\"field-error\" data-field=\"")
            .text(&e.field)
            .raw("\">")
            .text(e)
            .raw("</span>");
    }
    h.raw("<form method=\"post\" id=\"rotate-keys\" action=\"/ui/tenants/")
        .text(view.id)
        .raw("/settings/keys\"><input type=\"hidden\" name=\"csrf\" value=\"")
        .text(&session.csrf)
        .raw("\">");
    h.append(form.h);
    h.raw("<button type=\"submit\" id=\"save-keys\">Replace keys</button></form>");
    h.raw("</main></body></html>");
    page(status, h.finish())
}
