//! `/metrics`: the Prometheus text exposition, on the `prometheus-client` crate.
//!
//! - `process`: the in-process series ([`Metrics`], shared through
//!   `AppState`): HTTP request durations, reconcile passes and actions,
//!   launcher API calls, alert notifications;
//! - `launcher`: the launcher wrapper that counts its calls;
//! - `tenants`: the series read at scrape time from the store's fleet read
//!   model (fleet gauges, per-tenant series labelled `tenant_id`, the
//!   availability SLO).
//!
//! Who may scrape: an operator token, the metrics token
//! (`POLYBOT_METRICS_TOKEN`, for a Prometheus server that should hold no
//! operator rights), or a tenant token, which gets only its own tenant's
//! series.
//!
//! Names, types, help texts and labels are those of the hand-written
//! exposition this replaced (the tests below pin them). One difference: a
//! labelled series with no sample yet (no launcher error so far) is left out,
//! its `# HELP` and `# TYPE` lines included.

mod launcher;
mod process;
mod tenants;

use axum::extract::State;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use polybot_core::TenantId;
use polybot_store::DbError;
use polybot_store::repo::{fleet, rollouts};
use prometheus_client::encoding::prometheus_text;
use prometheus_client::registry::Registry;
use sha2::{Digest, Sha256};

pub use self::launcher::InstrumentedLauncher;
pub use self::process::{Metrics, track_http};
pub use self::tenants::AVAILABILITY_OBJECTIVE;
use self::tenants::{FleetGauges, TenantSeries};
use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};

/// The names of every series this module exports (the rules file's test
/// checks each alerting expression against it).
pub const EXPORTED: &[&str] = &[
    "polybot_tenants",
    "polybot_workers_desired",
    "polybot_workers_running",
    "polybot_workers_waiting_for_capacity",
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
    "polybot_rollout_tenants",
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
            let rollout = match rollouts::latest(&mut op).await? {
                Some(r) if matches!(r.state.as_str(), "running" | "paused") => {
                    Some(rollouts::progress(&mut op, r.id).await?)
                }
                _ => None,
            };
            op.commit().await?;
            scraped.register_collector(Box::new(
                FleetGauges::new(by_state, &figures).with_rollout(rollout),
            ));
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
async fn scrape_scope(
    state: &AppState,
    headers: &HeaderMap,
    extensions: &axum::http::Extensions,
) -> ApiResult<Option<TenantId>> {
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
    match crate::throttle::authenticate_throttled(state, headers, extensions, token).await? {
        Caller::Operator => Ok(None),
        Caller::Tenant(own) => Ok(Some(own)),
    }
}

pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `GET /metrics`: Prometheus text format. Operator or metrics token: every
/// series; a tenant token: only that tenant's.
#[utoipa::path(get, path = "/metrics", operation_id = "get_metrics", tag = "operations",
    responses(
        (status = 200, description = "Prometheus text exposition", content_type = "text/plain"),
        (status = 401, description = "no bearer token, or not a valid one", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn metrics(
    State(state): State<AppState>,
    headers: HeaderMap,
    extensions: axum::http::Extensions,
) -> ApiResult<Response> {
    let scope = scrape_scope(&state, &headers, &extensions).await?;
    let body = render(&state, scope).await?;
    let mut response = body.into_response();
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static(prometheus_text::CONTENT_TYPE),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chrono::Utc;
    use polybot_core::lifecycle::TenantState;
    use polybot_store::repo::fleet::{TenantFigures, TenantStatus};
    use rust_decimal::Decimal;
    use uuid::Uuid;

    use super::*;

    /// Every series' name, type and help, as the hand-written exposition
    /// wrote them before `prometheus-client` (dashboards and the rules file
    /// depend on them).
    const HEADERS: [(&str, &str, &str); 30] = [
        (
            "polybot_http_request_duration_seconds",
            "histogram",
            "HTTP requests served by the control plane, by route template and status.",
        ),
        (
            "polybot_reconcile_pass_duration_seconds",
            "histogram",
            "How long one reconcile pass took (reads, plan, launcher calls, writes).",
        ),
        (
            "polybot_reconcile_passes_total",
            "counter",
            "Reconcile passes run by this replica while it was the leader.",
        ),
        (
            "polybot_reconcile_pass_failures_total",
            "counter",
            "Reconcile passes that failed before finishing (database errors).",
        ),
        (
            "polybot_reconcile_actions_total",
            "counter",
            "What reconcile passes did: started, stopped, exits recorded, errors.",
        ),
        (
            "polybot_launcher_api_calls_total",
            "counter",
            "Launcher API calls by operation and outcome (ok, error, throttled).",
        ),
        (
            "polybot_launcher_api_errors_total",
            "counter",
            "Launcher API calls that failed (throttling excluded).",
        ),
        (
            "polybot_launcher_api_throttles_total",
            "counter",
            "Launcher API calls the cloud API throttled.",
        ),
        (
            "polybot_alert_notifications_total",
            "counter",
            "Alert notifications by channel kind and outcome (sent, failed, rate_limited).",
        ),
        (
            "polybot_alert_evaluations_total",
            "counter",
            "Alert evaluation rounds run by this replica while it was the evaluator.",
        ),
        ("polybot_tenants", "gauge", "Tenants by lifecycle state."),
        (
            "polybot_rollout_tenants",
            "gauge",
            "Tenants of the unfinished fleet rollout by progress (done, rolling, pending); zero without one.",
        ),
        (
            "polybot_workers_desired",
            "gauge",
            "Workers that should run (active tenants).",
        ),
        (
            "polybot_workers_running",
            "gauge",
            "Workers running with a fresh heartbeat.",
        ),
        (
            "polybot_workers_waiting_for_capacity",
            "gauge",
            "Workers that should run but wait for the account's Fargate vCPU quota.",
        ),
        (
            "polybot_slo_availability_objective",
            "gauge",
            "The worker availability objective over 30 days.",
        ),
        (
            "polybot_tenant_info",
            "gauge",
            "1 per tenant, with its name and lifecycle state.",
        ),
        (
            "polybot_tenant_worker_desired",
            "gauge",
            "1 if the tenant's worker should run.",
        ),
        (
            "polybot_tenant_worker_up",
            "gauge",
            "1 if the worker runs and heartbeats (reconciler's view).",
        ),
        (
            "polybot_tenant_worker_restarts",
            "gauge",
            "Restarts since the worker last ran steadily.",
        ),
        (
            "polybot_tenant_heartbeat_age_seconds",
            "gauge",
            "Seconds since the newest heartbeat.",
        ),
        (
            "polybot_tenant_opportunities_total",
            "counter",
            "Opportunities detected.",
        ),
        (
            "polybot_tenant_opportunities_executed_total",
            "counter",
            "Opportunities executed.",
        ),
        (
            "polybot_tenant_trades_total",
            "counter",
            "Trades (paper or live fills and settlements).",
        ),
        (
            "polybot_tenant_pnl",
            "gauge",
            "Realized PnL since onboarding, net of fees (quote currency).",
        ),
        (
            "polybot_tenant_pnl_today",
            "gauge",
            "PnL today as the engine reports it (on the data's own day), else realized net of fees since midnight UTC.",
        ),
        (
            "polybot_tenant_errors_total",
            "counter",
            "Worker crashes and launcher errors the reconciler recorded.",
        ),
        (
            "polybot_tenant_breaker_state",
            "gauge",
            "Per strategy circuit breaker: 0 closed, 1 half open, 2 open.",
        ),
        (
            "polybot_tenant_availability_ratio",
            "gauge",
            "Worker availability SLI: running time / desired time over the window.",
        ),
        (
            "polybot_tenant_alert_firing",
            "gauge",
            "1 while an alert fires for the tenant.",
        ),
    ];

    fn one_tenant() -> TenantFigures {
        TenantFigures {
            status: TenantStatus {
                id: Uuid::nil(),
                name: "alpha \"a\"".into(),
                state: TenantState::Active,
                mode: "paper".into(),
                provisioning_step: "done".into(),
                tenant_error: None,
                held_by_operator: false,
                hold_reason: None,
                updated_at: Utc::now(),
                runtime: None,
                heartbeat: None,
            },
            opportunities: 3,
            opportunities_executed: 1,
            trades: 2,
            pnl_total: Decimal::new(2, 0),
            pnl_today: Decimal::new(-125, 2),
            errors: 0,
            availability_1h: Some(0.5),
            availability_30d: None,
            firing_alerts: vec!["breaker_open:news_arb".into()],
        }
    }

    fn exposition() -> String {
        let metrics = Metrics::new();
        metrics.observe_http("GET", "/tenants", 200, Duration::from_millis(3));
        metrics.observe_reconcile(Duration::from_millis(20), &[("started", 2)]);
        metrics.launcher_call("fake", "start", "throttled");
        metrics.launcher_call("fake", "list", "error");
        metrics.notification("webhook", "sent");
        let figures = vec![one_tenant()];
        let mut scraped = Registry::default();
        scraped.register_collector(Box::new(
            FleetGauges::new(vec![(TenantState::Active, 1)], &figures).with_rollout(Some(
                polybot_store::repo::rollouts::Progress {
                    total: 5,
                    done: 2,
                    rolling: 1,
                },
            )),
        ));
        scraped.register_collector(Box::new(TenantSeries(figures)));
        let mut out = String::new();
        prometheus_text::encode(&mut out, &scraped).expect("encodes");
        metrics.encode(&mut out).expect("encodes");
        out
    }

    #[test]
    fn every_series_keeps_its_name_type_and_help() {
        let text = exposition();
        let mut headers: Vec<(String, String, String)> = Vec::new();
        let lines: Vec<&str> = text.lines().collect();
        for pair in lines.windows(2) {
            let (Some(help), Some(kind)) = (
                pair[0].strip_prefix("# HELP "),
                pair[1].strip_prefix("# TYPE "),
            ) else {
                continue;
            };
            let (name, help) = help.split_once(' ').expect("a help text");
            let (type_name, kind) = kind.split_once(' ').expect("a type");
            assert_eq!(name, type_name);
            headers.push((name.into(), kind.into(), help.into()));
        }
        headers.sort();
        let mut expected: Vec<(String, String, String)> = HEADERS
            .iter()
            .map(|(n, k, h)| ((*n).into(), (*k).into(), (*h).into()))
            .collect();
        expected.sort();
        assert_eq!(headers, expected);
        let mut names: Vec<&str> = HEADERS.iter().map(|(n, _, _)| *n).collect();
        names.sort_unstable();
        let mut exported = EXPORTED.to_vec();
        exported.sort_unstable();
        assert_eq!(names, exported, "EXPORTED lists every series");
    }

    #[test]
    fn samples_keep_their_labels_and_amounts_their_exact_value() {
        let text = exposition();
        let nil = Uuid::nil();
        for line in [
            format!("polybot_tenant_info{{tenant_id=\"{nil}\",name=\"alpha \\\"a\\\"\",state=\"active\"}} 1"),
            format!("polybot_tenant_pnl{{tenant_id=\"{nil}\"}} 2"),
            format!("polybot_tenant_pnl_today{{tenant_id=\"{nil}\"}} -1.25"),
            format!("polybot_tenant_opportunities_total{{tenant_id=\"{nil}\"}} 3"),
            format!("polybot_tenant_availability_ratio{{tenant_id=\"{nil}\",window=\"1h\"}} 0.5"),
            format!("polybot_tenant_alert_firing{{tenant_id=\"{nil}\",alert=\"breaker_open\",subject=\"news_arb\"}} 1"),
            "polybot_tenants{state=\"active\"} 1".to_owned(),
            "polybot_tenants{state=\"paused\"} 0".to_owned(),
            "polybot_workers_desired 1".to_owned(),
            "polybot_rollout_tenants{state=\"done\"} 2".to_owned(),
            "polybot_rollout_tenants{state=\"pending\"} 2".to_owned(),
            "polybot_workers_running 0".to_owned(),
            "polybot_slo_availability_objective 0.995".to_owned(),
            "polybot_reconcile_actions_total{action=\"started\"} 2".to_owned(),
            "polybot_reconcile_actions_total{action=\"errors\"} 0".to_owned(),
            "polybot_launcher_api_throttles_total{launcher=\"fake\",operation=\"start\"} 1".to_owned(),
            "polybot_alert_notifications_total{channel=\"webhook\",outcome=\"sent\"} 1".to_owned(),
            "polybot_http_request_duration_seconds_bucket{method=\"GET\",route=\"/tenants\",status=\"200\",le=\"0.005\"} 1".to_owned(),
            "polybot_reconcile_pass_duration_seconds_bucket{le=\"+Inf\"} 1".to_owned(),
        ] {
            assert!(text.lines().any(|l| l == line), "no line {line} in:\n{text}");
        }
        assert!(
            !text.contains("polybot_tenant_heartbeat_age_seconds{"),
            "no heartbeat, no age"
        );
    }
}
