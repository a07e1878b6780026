//! The operator dashboard: server-rendered HTML under `/ui/`.
//!
//! **Sign-in and sessions.** One signs in with a bearer token (operator
//! `pbo_…` or tenant `pbt_…`). The server keeps the session: a random 256-bit
//! id in the `pb_session` cookie (`HttpOnly`, `SameSite=Strict`, `Path=/`,
//! `Secure` unless the listener is loopback, `POLYBOT_COOKIE_SECURE` overriding),
//! stored only as its SHA-256
//! hash in `dashboard_sessions` together with the **hash** of the token used.
//! Every request re-resolves that token hash, so revoking the token or
//! offboarding the tenant ends its sessions at once; signing out deletes the
//! row. No server key is needed, so replicas share sessions through the
//! database.
//!
//! **CSRF.** Each session has its own random token, embedded as a hidden
//! `csrf` field in every form and compared (constant time) on every POST;
//! `SameSite=Strict` is the second line. The sign-in form, which has no
//! session yet, uses a double-submit cookie (`pb_login`, `Path=/ui/login`).
//!
//! **Scope.** An operator session sees the fleet; a tenant session sees its
//! own tenant only (any other tenant's page is a 404, as in the API). The
//! actions go through the API's own handlers (`tenants::create`, `pause`,
//! `resume`, `delete`), so validation, messages, permissions and the audit log
//! are identical.

mod config_form;
mod html;
mod pages;

use std::collections::BTreeMap;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use polybot_core::TenantId;
use polybot_store::DbError;
use polybot_store::repo::sessions;
use rand::RngCore;
use sha2::{Digest, Sha256};
use uuid::Uuid;

pub use html::{Html, escape};

use crate::AppState;
use crate::auth::{Caller, TenantAccess, hash_token};
use crate::error::ApiError;
use crate::metrics::constant_time_eq;

const SESSION_COOKIE: &str = "pb_session";
const LOGIN_COOKIE: &str = "pb_login";

/// The dashboard's routes (merged into the API router).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { redirect("/ui/fleet") }))
        .route("/ui", get(|| async { redirect("/ui/fleet") }))
        .route("/ui/", get(|| async { redirect("/ui/fleet") }))
        .route("/ui/app.js", get(script))
        .route("/ui/favicon.svg", get(favicon))
        .route("/ui/config-schema", get(config_schema))
        .route("/favicon.ico", get(favicon))
        .route("/ui/login", get(login_page).post(login))
        .route("/ui/logout", post(logout))
        .route("/ui/fleet", get(pages::fleet))
        .route("/ui/fleet/live", get(pages::fleet_live))
        .route("/ui/go", get(pages::go))
        .route("/ui/billing", get(pages::billing))
        .route("/ui/rollout", get(pages::rollout))
        .route("/ui/rollout/{id}/{action}", post(pages::act_on_rollout))
        .route(
            "/ui/tenants/new",
            get(pages::onboard_form).post(pages::onboard),
        )
        .route("/ui/tenants/{id}", get(pages::tenant))
        .route("/ui/tenants/{id}/live", get(pages::tenant_live))
        .route("/ui/tenants/{id}/settings", get(pages::settings))
        .route(
            "/ui/alert-channels",
            get(pages::operator_channels).post(pages::save_operator_channels),
        )
        .route(
            "/ui/tenants/{id}/settings/{part}",
            post(pages::save_settings),
        )
        .route(
            "/ui/tenants/{id}/tokens/{token_id}/revoke",
            post(pages::revoke_token),
        )
        .route("/ui/tenants/{id}/{action}", post(pages::act))
}

/// A signed-in dashboard user.
#[derive(Debug, Clone)]
pub struct Session {
    pub caller: Caller,
    pub csrf: String,
    id_hash: Vec<u8>,
    /// The hash of the token the session was opened with: a token created
    /// from the session never outlives it.
    pub(crate) token_hash: Vec<u8>,
}

/// Why a dashboard request did not render its page.
#[derive(Debug)]
pub enum UiError {
    /// No (valid) session: go sign in.
    SignIn,
    /// 404.
    NotFound,
    /// 403, with why.
    Forbidden(&'static str),
    /// 403: the form's CSRF token is missing or wrong.
    Csrf,
    /// An API error, shown with its status and message.
    Api(ApiError),
}

impl From<DbError> for UiError {
    fn from(err: DbError) -> Self {
        UiError::Api(err.into())
    }
}

impl From<ApiError> for UiError {
    fn from(err: ApiError) -> Self {
        match err {
            ApiError::NotFound(_) => UiError::NotFound,
            other => UiError::Api(other),
        }
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            UiError::SignIn => return redirect("/ui/login"),
            UiError::NotFound => (StatusCode::NOT_FOUND, "Not found.".to_owned()),
            UiError::Forbidden(why) => (StatusCode::FORBIDDEN, why.to_owned()),
            UiError::Csrf => (
                StatusCode::FORBIDDEN,
                "This form has expired or did not come from this dashboard; reload the page and try again."
                    .to_owned(),
            ),
            UiError::Api(err) => {
                let problem = err.problem();
                if let ApiError::Internal(cause) = &err {
                    tracing::error!(error = format!("{cause:#}"), "dashboard request failed");
                }
                (err.status(), problem.detail)
            }
        };
        let mut h = Html::new();
        pages::head(&mut h, "Error", None);
        h.raw("<main><h1>")
            .text(status.as_u16())
            .raw(" ")
            .text(status.canonical_reason().unwrap_or("Error"))
            .raw("</h1><p class=\"error\" id=\"error\">")
            .text(message)
            .raw("</p><p><a href=\"/ui/fleet\">Back to the fleet</a></p></main></body></html>");
        page(status, h.finish())
    }
}

pub type UiResult<T> = Result<T, UiError>;

/// A 303 to `to` (a path this module built).
pub fn redirect(to: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        response.headers_mut().insert(LOCATION, v);
    }
    response
}

/// An HTML response that no cache keeps.
pub fn page(status: StatusCode, body: String) -> Response {
    let mut response = (status, axum::response::Html(body)).into_response();
    let headers = response.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; script-src 'self'; connect-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    response
}

/// The dashboard's script: the CSP (`script-src 'self'`) runs no inline script.
async fn script() -> Response {
    let mut response = include_str!("static/app.js").into_response();
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/javascript; charset=utf-8"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// The JSON Schema of a tenant's configuration, from which the forms are
/// rendered (public: it holds no tenant's data).
async fn config_schema() -> Response {
    let mut response = axum::Json(&*config_form::SCHEMA).into_response();
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// The dashboard's icon: a rising line on the header's colour.
async fn favicon() -> Response {
    const ICON: &str = "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 32 32\">\
<rect width=\"32\" height=\"32\" rx=\"6\" fill=\"#1d2330\"/>\
<polyline points=\"5,24 12,17 18,20 27,8\" fill=\"none\" stroke=\"#5bd68a\" stroke-width=\"3\" stroke-linecap=\"round\" stroke-linejoin=\"round\"/></svg>";
    let mut response = ICON.into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("image/svg+xml"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("max-age=86400"));
    response
}

/// A live part of a page, as the page's script fetches it: `{"html": …}`
/// (markup the server escaped), never cached.
pub fn live_json(html: String) -> Response {
    let mut response = axum::Json(serde_json::json!({ "html": html })).into_response();
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

fn set_cookie(state: &AppState, name: &str, value: &str, path: &str, max_age: u64) -> HeaderValue {
    let secure = if state.settings.cookies_secure() {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("invalid=; Max-Age=0"))
}

/// The session of this request, if its cookie names a live one whose token still works.
pub async fn session(state: &AppState, headers: &HeaderMap) -> Result<Option<Session>, DbError> {
    let Some(id) = cookie(headers, SESSION_COOKIE) else {
        return Ok(None);
    };
    let id_hash = Sha256::digest(id.as_bytes()).to_vec();
    let mut op = state.db.operator().await?;
    let row = sessions::find(&mut op, &id_hash).await?;
    op.commit().await?;
    Ok(row.and_then(|row| {
        let caller = match (row.operator_token, row.tenant_id()) {
            (Some(_), _) => Caller::Operator,
            (None, Some(tenant)) => Caller::Tenant(tenant),
            (None, None) => return None,
        };
        Some(Session {
            caller,
            csrf: row.csrf_token,
            id_hash,
            token_hash: row.token_hash,
        })
    }))
}

/// The session, or a redirect to the sign-in page.
pub async fn require(state: &AppState, headers: &HeaderMap) -> UiResult<Session> {
    session(state, headers).await?.ok_or(UiError::SignIn)
}

/// Checks the form's CSRF token against the session's.
pub fn check_csrf(session: &Session, form: &BTreeMap<String, String>) -> UiResult<()> {
    check_csrf_value(session, form.get("csrf").map(String::as_str).unwrap_or(""))
}

/// Checks a form's CSRF token (as given) against the session's.
pub fn check_csrf_value(session: &Session, given: &str) -> UiResult<()> {
    if !given.is_empty() && constant_time_eq(given.as_bytes(), session.csrf.as_bytes()) {
        Ok(())
    } else {
        Err(UiError::Csrf)
    }
}

async fn login_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if matches!(session(&state, &headers).await, Ok(Some(_))) {
        return redirect("/ui/fleet");
    }
    login_form(&state, StatusCode::OK, None)
}

fn login_form(state: &AppState, status: StatusCode, error: Option<&str>) -> Response {
    let csrf = random_token();
    let mut h = Html::new();
    pages::head(&mut h, "Sign in", None);
    h.raw("<main class=\"narrow\"><h1>PolyBot Cloud</h1><p>Sign in with the operator token (<code>pbo_…</code>, in <code>&lt;data-dir&gt;/operator-token</code>) or a tenant token (<code>pbt_…</code>).</p>");
    if let Some(error) = error {
        h.el("<p class=\"error\" id=\"error\">", error, "</p>");
    }
    h.raw("<form method=\"post\" action=\"/ui/login\"><input type=\"hidden\" name=\"csrf\" value=\"")
        .text(&csrf)
        .raw("\"><label>Token <input type=\"password\" name=\"token\" id=\"token\" autocomplete=\"off\" required autofocus></label> <button type=\"submit\" id=\"sign-in\">Sign in</button></form></main></body></html>");
    let mut response = page(status, h.finish());
    response.headers_mut().append(
        SET_COOKIE,
        set_cookie(state, LOGIN_COOKIE, &csrf, "/ui/login", 600),
    );
    response
}

async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    extensions: axum::http::Extensions,
    axum::Form(form): axum::Form<BTreeMap<String, String>>,
) -> UiResult<Response> {
    let expected = cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    let given = form.get("csrf").cloned().unwrap_or_default();
    if expected.is_empty() || !constant_time_eq(expected.as_bytes(), given.as_bytes()) {
        return Ok(login_form(
            &state,
            StatusCode::FORBIDDEN,
            Some("The sign-in form expired; please try again."),
        ));
    }
    let token = form.get("token").map(|t| t.trim()).unwrap_or_default();
    let caller =
        match crate::throttle::authenticate_throttled(&state, &headers, &extensions, token).await {
            Ok(caller) => caller,
            Err(ApiError::Unauthorized) => {
                return Ok(login_form(
                    &state,
                    StatusCode::UNAUTHORIZED,
                    Some("That token is not valid (or was revoked)."),
                ));
            }
            Err(other) => return Err(other.into()),
        };
    let id = random_token();
    let ttl = state.settings.session_ttl;
    let mut op = state.db.operator().await?;
    sessions::delete_expired(&mut op).await?;
    sessions::open(
        &mut op,
        &Sha256::digest(id.as_bytes()),
        &hash_token(token),
        &random_token(),
        ttl,
    )
    .await?;
    op.commit().await?;
    tracing::info!(actor = caller.actor(), "dashboard sign-in");
    let to = match caller {
        Caller::Operator => "/ui/fleet".to_owned(),
        Caller::Tenant(t) => format!("/ui/tenants/{t}"),
    };
    let mut response = redirect(&to);
    let headers = response.headers_mut();
    headers.append(
        SET_COOKIE,
        set_cookie(&state, SESSION_COOKIE, &id, "/", ttl.as_secs()),
    );
    headers.append(
        SET_COOKIE,
        set_cookie(&state, LOGIN_COOKIE, "", "/ui/login", 0),
    );
    Ok(response)
}

async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<BTreeMap<String, String>>,
) -> UiResult<Response> {
    let session = require(&state, &headers).await?;
    check_csrf(&session, &form)?;
    let mut op = state.db.operator().await?;
    sessions::close(&mut op, &session.id_hash).await?;
    op.commit().await?;
    let mut response = redirect("/ui/login");
    response
        .headers_mut()
        .append(SET_COOKIE, set_cookie(&state, SESSION_COOKIE, "", "/", 0));
    Ok(response)
}

/// `?notice=` on a page after an action.
#[derive(Debug, serde::Deserialize, Default)]
pub struct Notice {
    pub notice: Option<String>,
}

/// The dashboard's view of a tenant id in a path: a tenant session may see
/// only its own; anything else is a 404.
pub fn visible(session: &Session, id: &str) -> UiResult<TenantId> {
    let id: Uuid = id.parse().map_err(|_| UiError::NotFound)?;
    Ok(TenantAccess::check(session.caller, id)?.tenant)
}

pub(crate) type PathId = Path<String>;
pub(crate) type NoticeQuery = Query<Notice>;
