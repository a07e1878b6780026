//! A tenant's settings page (`/ui/tenants/{id}/settings`), for the tenant and
//! for operators: its strategies and risk limits in the schema's form (saved
//! with the API's `PATCH /tenants/{id}`), its exchange keys replaced
//! write-only (`PUT /tenants/{id}/exchange-keys`), its alert channels
//! replaced (`PUT /tenants/{id}/alert-channels`, secrets write-only) and its
//! tokens listed, created (shown once) and revoked. Each form goes through the
//! API's own handler, so the rules (editable states, validation, audit) and
//! the messages are the API's; errors are shown beside their fields.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use polybot_core::validation::FieldError;
use serde_json::{Value, json};

use super::head_for;
use crate::AppState;
use crate::auth::{Caller, Operator, TenantAccess};
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
    Channels,
    Tokens,
}

/// How many channel rows the form offers (the API takes at most 10).
const CHANNEL_ROWS: usize = 3;

/// What the page shows besides the config.
struct Extras {
    channels: Vec<crate::alerts::ChannelView>,
    tokens: Vec<crate::tenants::TokenView>,
}

async fn extras(state: &AppState, session: &Session, view: &TenantView) -> UiResult<Extras> {
    let access = || TenantAccess::check(session.caller, view.id);
    let channels = crate::alerts::channels::get_tenant_channels(State(state.clone()), access()?)
        .await?
        .0
        .channels;
    let tokens = crate::tenants::list_tokens(State(state.clone()), access()?)
        .await?
        .0
        .items;
    Ok(Extras { channels, tokens })
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
    let extras = extras(&state, &session, &view).await?;
    Ok(render(
        &session,
        (&view, &extras),
        StatusCode::OK,
        &values,
        None,
        Shown {
            notice: notice.0.notice.as_deref(),
            token: None,
        },
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
            .await
            .map(|_| ());
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
                let extras = extras(&state, &session, &view).await?;
                return Ok(render(
                    &session,
                    (&view, &extras),
                    StatusCode::UNPROCESSABLE_ENTITY,
                    &shown,
                    Some((Part::Keys, &errors)),
                    Shown::default(),
                ));
            };
            let result = crate::tenants::rotate_keys(
                State(state.clone()),
                access()?,
                Bytes::from(keys.to_string()),
            )
            .await
            .map(|_| ());
            (
                Part::Keys,
                result,
                "Keys replaced: the worker restarts with them.",
            )
        }
        "channels" => {
            let body = json!({ "channels": channels_of(&values) });
            let result = crate::alerts::channels::put_tenant_channels(
                State(state.clone()),
                access()?,
                Bytes::from(body.to_string()),
            )
            .await
            .map(|_| ());
            (Part::Channels, result, "Alert channels saved.")
        }
        "tokens" => {
            let mut body = serde_json::Map::new();
            body.insert("label".into(), json!(values.one("label")));
            if !values.one("expires_in_days").is_empty() {
                let days = values.one("expires_in_days");
                body.insert(
                    "expires_in_days".into(),
                    days.parse::<i64>()
                        .map(Value::from)
                        .unwrap_or_else(|_| json!(days)),
                );
            }
            // A tenant session acts with the token it was opened with: the
            // new token never outlives that one.
            let created = crate::tenants::create_token_bounded(
                state.clone(),
                access()?,
                Some(&session.token_hash),
                Bytes::from(Value::Object(body).to_string()),
            )
            .await;
            match created {
                Ok((_, created)) => {
                    let extras = extras(&state, &session, &view).await?;
                    let values = Values::of_config(&view.strategies, &view.risk);
                    return Ok(render(
                        &session,
                        (&view, &extras),
                        StatusCode::CREATED,
                        &values,
                        None,
                        Shown {
                            notice: Some("Token created: copy it now, it is never shown again."),
                            token: Some(&created.0.token),
                        },
                    ));
                }
                // Asking for more life than the signed-in token has is the
                // lifetime field's fault, as the form shows it.
                Err(ApiError::Forbidden(why)) => (
                    Part::Tokens,
                    Err(ApiError::Validation(vec![FieldError::new(
                        "expires_in_days",
                        why,
                    )])),
                    "",
                ),
                Err(err) => (Part::Tokens, Err(err), ""),
            }
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
        Err(ApiError::Forbidden(why)) => vec![FieldError::new("tenant", why)],
        Err(other) => return Err(other.into()),
    };
    // Secrets are never shown again; the config form shows what was typed.
    let shown = match part {
        Part::Config => values,
        _ => Values::of_config(&view.strategies, &view.risk),
    };
    let extras = extras(&state, &session, &view).await?;
    let status = if errors.iter().any(|e| e.field == "tenant") {
        StatusCode::CONFLICT
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    Ok(render(
        &session,
        (&view, &extras),
        status,
        &shown,
        Some((part, &errors)),
        Shown::default(),
    ))
}

/// `POST /ui/tenants/{id}/tokens/{token_id}/revoke`, through the API's handler.
pub async fn revoke_token(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((id, token_id)): Path<(String, String)>,
    axum::Form(pairs): axum::Form<Vec<(String, String)>>,
) -> UiResult<Response> {
    let session = require(&state, &headers).await?;
    check_csrf_value(&session, Values::from_pairs(&pairs).one("csrf"))?;
    let tenant = visible(&session, &id)?;
    let token_id: uuid::Uuid = token_id
        .parse()
        .map_err(|_| crate::dashboard::UiError::NotFound)?;
    crate::tenants::revoke_token(
        State(state.clone()),
        Path((tenant.as_uuid(), token_id)),
        session.caller,
    )
    .await?;
    Ok(redirect(&format!(
        "/ui/tenants/{tenant}/settings?notice=Token+revoked%3A+it+is+refused+from+now+on."
    )))
}

/// `GET /ui/alert-channels`: the operator-wide channels (every tenant's alerts).
pub async fn operator_channels(
    State(state): State<AppState>,
    headers: HeaderMap,
    notice: NoticeQuery,
) -> UiResult<Response> {
    let session = require(&state, &headers).await?;
    let operator = Operator::check(session.caller)?;
    let channels = crate::alerts::channels::get_operator_channels(State(state.clone()), operator)
        .await?
        .0
        .channels;
    Ok(operator_channels_page(
        &session,
        StatusCode::OK,
        &channels,
        &[],
        notice.0.notice.as_deref(),
    ))
}

/// `POST /ui/alert-channels`, through the API's handler.
pub async fn save_operator_channels(
    State(state): State<AppState>,
    headers: HeaderMap,
    axum::Form(pairs): axum::Form<Vec<(String, String)>>,
) -> UiResult<Response> {
    let session = require(&state, &headers).await?;
    let values = Values::from_pairs(&pairs);
    check_csrf_value(&session, values.one("csrf"))?;
    let operator = Operator::check(session.caller)?;
    let body = json!({ "channels": channels_of(&values) });
    match crate::alerts::channels::put_operator_channels(
        State(state.clone()),
        operator,
        Bytes::from(body.to_string()),
    )
    .await
    {
        Ok(_) => Ok(redirect("/ui/alert-channels?notice=Alert+channels+saved.")),
        Err(ApiError::Validation(errors)) => {
            let channels =
                crate::alerts::channels::get_operator_channels(State(state.clone()), operator)
                    .await?
                    .0
                    .channels;
            Ok(operator_channels_page(
                &session,
                StatusCode::UNPROCESSABLE_ENTITY,
                &channels,
                &errors,
                None,
            ))
        }
        Err(other) => Err(other.into()),
    }
}

fn operator_channels_page(
    session: &Session,
    status: StatusCode,
    channels: &[crate::alerts::ChannelView],
    errors: &[FieldError],
    notice: Option<&str>,
) -> Response {
    let mut h = Html::new();
    head_for(&mut h, "Alert channels", Some(session), None);
    h.raw("<main class=\"narrow\"><h1>Operator alert channels</h1><p>These receive every tenant's alerts; each tenant's own channels are on its settings page.</p>");
    if let Some(n) = notice {
        h.el("<p class=\"notice\" id=\"notice\">", n, "</p>");
    }
    channels_section(&mut h, session, channels, "/ui/alert-channels", errors);
    h.raw("</main></body></html>");
    page(status, h.finish())
}

/// The `channels` list of the rows filled in.
fn channels_of(values: &Values) -> Vec<Value> {
    (0..CHANNEL_ROWS)
        .filter_map(|i| {
            let field = |name: &str| values.one(&format!("channels[{i}].{name}")).to_owned();
            let (target, secret) = (field("target"), field("secret"));
            if target.is_empty() && secret.is_empty() {
                return None;
            }
            Some(match field("kind").as_str() {
                "telegram" => json!({"kind": "telegram", "chat_id": target, "bot_token": secret}),
                kind => json!({"kind": kind, "url": target, "secret": secret}),
            })
        })
        .collect()
}

/// A notice, and a token just created (shown this once).
#[derive(Default)]
struct Shown<'a> {
    notice: Option<&'a str>,
    token: Option<&'a str>,
}

fn error_spans(h: &mut Html, errors: &[FieldError], prefix: &str) {
    for e in errors.iter().filter(|e| e.field.starts_with(prefix)) {
        h.raw("<span class=\"field-error\" data-field=\"")
            .text(&e.field)
            .raw("\">")
            .text(e)
            .raw("</span>");
    }
}

fn csrf_input(h: &mut Html, session: &Session) {
    h.raw("<input type=\"hidden\" name=\"csrf\" value=\"")
        .text(&session.csrf)
        .raw("\">");
}

fn channels_section(
    h: &mut Html,
    session: &Session,
    channels: &[crate::alerts::ChannelView],
    action: &str,
    errors: &[FieldError],
) {
    h.raw("<h2>Alert channels</h2><p id=\"channels\">Now: ");
    if channels.is_empty() {
        h.raw("none.");
    }
    for c in channels {
        h.raw("<span class=\"badge\">")
            .text(&c.kind)
            .raw(" ")
            .text(&c.target)
            .raw(" ")
            .text(&c.secret_fingerprint)
            .raw("</span> ");
    }
    h.raw("</p><p class=\"help\">Saving replaces the list with the rows filled in (none: no channel). A webhook takes a public https URL and a signing secret of 16 to 256 characters; Telegram a chat id (or @channel) and the bot's token. Secrets are write-only.</p>");
    error_spans(h, errors, "channels");
    error_spans(h, errors, "tenant");
    h.raw("<form method=\"post\" id=\"edit-channels\" action=\"")
        .text(action)
        .raw("\">");
    csrf_input(h, session);
    for i in 0..CHANNEL_ROWS {
        h.raw("<fieldset class=\"row\"><legend>Channel ")
            .text(i + 1)
            .raw("</legend><label>Kind <select name=\"channels[")
            .text(i)
            .raw("].kind\" id=\"channels-")
            .text(i)
            .raw("-kind\"><option>webhook</option><option>telegram</option></select></label><label>URL or chat id <input type=\"text\" name=\"channels[")
            .text(i)
            .raw("].target\" id=\"channels-")
            .text(i)
            .raw("-target\"></label><label>Secret or bot token <input type=\"password\" autocomplete=\"new-password\" name=\"channels[")
            .text(i)
            .raw("].secret\" id=\"channels-")
            .text(i)
            .raw("-secret\"></label></fieldset>");
    }
    h.raw("<button type=\"submit\" id=\"save-channels\">Save channels</button></form>");
}

fn tokens_section(
    h: &mut Html,
    session: &Session,
    view: &TenantView,
    extras: &Extras,
    errors: &[FieldError],
    token: Option<&str>,
) {
    h.raw("<h2>Tokens</h2>");
    if let Some(token) = token {
        h.raw("<p class=\"notice\">New token (shown once): <code id=\"new-token\">")
            .text(token)
            .raw("</code></p>");
    }
    if extras.tokens.is_empty() {
        h.raw("<p>No live token.</p>");
    } else {
        h.raw("<div class=\"scroll\"><table id=\"tokens\"><tr><th>Label</th><th>Created</th><th>Expires</th><th>Last used</th><th></th></tr>");
        for t in &extras.tokens {
            h.raw("<tr data-token=\"")
                .text(t.id)
                .raw("\">")
                .el("<td>", &t.label, "</td>")
                .el("<td>", t.created_at.format("%Y-%m-%d %H:%M"), "</td>")
                .el("<td>", t.expires_at.format("%Y-%m-%d %H:%M"), "");
            if t.expired {
                h.raw(" (expired)");
            }
            h.raw("</td>").el(
                "<td>",
                t.last_used_at
                    .map(|at| at.format("%Y-%m-%d %H:%M").to_string())
                    .unwrap_or_else(|| "–".to_owned()),
                "</td>",
            );
            h.raw("<td><form method=\"post\" class=\"inline\" data-confirm=\"Revoke this token? Whatever uses it is refused from then on.\" action=\"/ui/tenants/")
                .text(view.id)
                .raw("/tokens/")
                .text(t.id)
                .raw("/revoke\">");
            csrf_input(h, session);
            h.raw("<button type=\"submit\" class=\"revoke\">Revoke</button></form></td></tr>");
        }
        h.raw("</table></div>");
    }
    error_spans(h, errors, "");
    h.raw("<form method=\"post\" id=\"create-token\" action=\"/ui/tenants/")
        .text(view.id)
        .raw("/settings/tokens\">");
    csrf_input(h, session);
    h.raw("<label>Label <input type=\"text\" name=\"label\" id=\"token-label\" maxlength=\"100\"></label><label>Expires in days <input type=\"number\" name=\"expires_in_days\" id=\"token-days\" min=\"1\" step=\"1\" placeholder=\"the default\"></label><button type=\"submit\" id=\"create-token-button\">Create a token</button></form>");
    if let Caller::Tenant(_) = session.caller {
        h.raw("<p class=\"help\" id=\"token-bound\">A new token never outlives the token you signed in with.</p>");
    }
}

fn render(
    session: &Session,
    (view, extras): (&TenantView, &Extras),
    status: StatusCode,
    values: &Values,
    errors: Option<(Part, &[FieldError])>,
    shown: Shown<'_>,
) -> Response {
    let notice = shown.notice;
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
    channels_section(
        &mut h,
        session,
        &extras.channels,
        &format!("/ui/tenants/{}/settings/channels", view.id),
        errors_of(Part::Channels),
    );
    tokens_section(
        &mut h,
        session,
        view,
        extras,
        errors_of(Part::Tokens),
        shown.token,
    );
    h.raw("</main></body></html>");
    page(status, h.finish())
}
