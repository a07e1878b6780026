//! `/metrics`: the Prometheus text exposition, on the `prometheus-client` crate.
//!
//! - [`process`]: the in-process series ([`Metrics`], shared through
//!   `AppState`): HTTP request durations, reconcile passes and actions,
//!   launcher API calls, alert notifications;
//! - [`launcher`]: the launcher wrapper that counts its calls;
//! - [`tenants`]: the series read at scrape time from the store's fleet read
//!   model (fleet gauges, per-tenant series labelled `tenant_id`, the
//!   availability SLO).
//!
//! Who may scrape: an operator token, the metrics token
//! (`POLYBOT_METRICS_TOKEN`, for a Prometheus server that should hold no
//! operator rights), or a tenant token, which gets only its own tenant's
//! series.

mod launcher;
mod process;
mod tenants;

use axum::extract::State;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use polybot_core::TenantId;
use polybot_store::DbError;
use polybot_store::repo::fleet;
use prometheus_client::encoding::prometheus_text;
use prometheus_client::registry::Registry;
use sha2::{Digest, Sha256};

pub use self::launcher::InstrumentedLauncher;
pub use self::process::{Metrics, track_http};
pub use self::tenants::AVAILABILITY_OBJECTIVE;
use self::tenants::{FleetGauges, TenantSeries};
use crate::AppState;
use crate::auth::{Caller, authenticate};
use crate::error::{ApiError, ApiResult};

/// The names of every series this module exports (the rules file's test
/// checks each alerting expression against it).
pub const EXPORTED: &[&str] = &[
    "polybot_tenants",
    "polybot_workers_desired",
    "polybot_workers_running",
    "polybot_tenant_info",
    "polybot_tenant_worker_desired",
    "polybot_tenant_worker_up",
    "polybot_tenant_worker_restarts",
    "polybot_tenant_heartbeat_age_seconds",
    "polybot_tenant_opportunities_total",
    "polybot_tenant_opportunities_executed_total",
    "polybot_tenant_trades_total",
    "polybot_tenant_pnl",
    "polybot_tenant_pnl_today",
    "polybot_tenant_errors_total",
    "polybot_tenant_breaker_state",
    "polybot_tenant_availability_ratio",
    "polybot_tenant_alert_firing",
    "polybot_slo_availability_objective",
    "polybot_http_request_duration_seconds",
    "polybot_reconcile_pass_duration_seconds",
    "polybot_reconcile_passes_total",
    "polybot_reconcile_pass_failures_total",
    "polybot_reconcile_actions_total",
    "polybot_launcher_api_calls_total",
    "polybot_launcher_api_errors_total",
    "polybot_launcher_api_throttles_total",
    "polybot_alert_notifications_total",
    "polybot_alert_evaluations_total",
];

/// The whole exposition for a scrape of every tenant (`None`) or of one.
pub async fn render(state: &AppState, scope: Option<TenantId>) -> Result<String, DbError> {
    let mut scraped = Registry::default();
    match scope {
        None => {
            let mut op = state.db.operator().await?;
            let figures = fleet::figures(&mut op).await?;
            let by_state = fleet::count_by_state(&mut op).await?;
            op.commit().await?;
            scraped.register_collector(Box::new(FleetGauges::new(by_state, &figures)));
            scraped.register_collector(Box::new(TenantSeries(figures)));
        }
        Some(tenant) => {
            let mut tx = state.db.tenant(tenant).await?;
            let figures = fleet::tenant_figures(&mut tx).await?;
            tx.commit().await?;
            scraped.register_collector(Box::new(TenantSeries(figures.into_iter().collect())));
        }
    }
    let mut out = String::with_capacity(16 * 1024);
    let encoded = prometheus_text::encode(&mut out, &scraped).and_then(|()| {
        // Process series are for operators only.
        match scope {
            None => state.metrics.encode(&mut out),
            Some(_) => Ok(()),
        }
    });
    if encoded.is_err() {
        // Only a `fmt::Write` to a String, which cannot fail; say so if it did.
        tracing::error!("encoding the metrics exposition failed");
    }
    Ok(out)
}

/// Who is scraping: everyone (operator or metrics token) or one tenant.
async fn scrape_scope(state: &AppState, headers: &HeaderMap) -> ApiResult<Option<TenantId>> {
    let token = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or(ApiError::Unauthorized)?;
    if let Some(expected) = &state.settings.metrics_token_hash {
        let given = Sha256::digest(token.as_bytes());
        if constant_time_eq(&given, expected) {
            return Ok(None);
        }
    }
    match authenticate(&state.db, &state.tokens, token).await? {
        Caller::Operator => Ok(None),
        Caller::Tenant(own) => Ok(Some(own)),
    }
}

pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `GET /metrics`: Prometheus text format. Operator or metrics token: every
/// series; a tenant token: only that tenant's.
#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "Prometheus text exposition", content_type = "text/plain"), (status = 401, body = crate::error::Problem)))]
pub async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    let scope = scrape_scope(&state, &headers).await?;
    let body = render(&state, scope).await?;
    let mut response = body.into_response();
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static(prometheus_text::CONTENT_TYPE),
    );
    Ok(response)
}
