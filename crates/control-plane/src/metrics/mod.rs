//! `/metrics`: the Prometheus text exposition, written by hand (no metrics
//! crate: a handful of counters and histograms do not need one).
//!
//! Two kinds of series:
//! - **in-process** ([`Metrics`], shared through `AppState`): HTTP request
//!   durations (the [`track_http`] middleware), reconcile passes and actions
//!   (hooks in the reconciler), launcher API calls, errors and throttles
//!   ([`InstrumentedLauncher`]), alert notifications;
//! - **read at scrape time** from the database: fleet gauges, per-tenant
//!   series labelled `tenant_id`, and the availability SLO.
//!
//! Who may scrape: an operator token, the metrics token
//! (`POLYBOT_METRICS_TOKEN`, for a Prometheus server that should hold no
//! operator rights), or a tenant token, which gets only its own tenant's
//! series. Durations are kept in integer microseconds (the workspace denies
//! float arithmetic) and printed as seconds.

use std::collections::BTreeMap;
use std::fmt::{Display, Write as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::extract::{MatchedPath, Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use polybot_core::TenantId;
use polybot_launcher::{Instance, LaunchError, LaunchSpec, Launcher};
use polybot_store::DbError;
use rust_decimal::Decimal;
use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::AppState;
use crate::auth::{Caller, authenticate};
use crate::error::{ApiError, ApiResult};

/// Histogram upper bounds, in microseconds, and as Prometheus prints them.
const BUCKETS: [(u64, &str); 12] = [
    (1_000, "0.001"),
    (5_000, "0.005"),
    (10_000, "0.01"),
    (25_000, "0.025"),
    (50_000, "0.05"),
    (100_000, "0.1"),
    (250_000, "0.25"),
    (500_000, "0.5"),
    (1_000_000, "1"),
    (2_500_000, "2.5"),
    (5_000_000, "5"),
    (10_000_000, "10"),
];

#[derive(Debug, Clone, Default)]
struct Histogram {
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum_micros: u64,
}

impl Histogram {
    fn observe(&mut self, elapsed: Duration) {
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        for (slot, (bound, _)) in self.buckets.iter_mut().zip(BUCKETS) {
            if micros <= bound {
                *slot += 1;
            }
        }
        self.count += 1;
        self.sum_micros = self.sum_micros.saturating_add(micros);
    }

    fn write(&self, out: &mut String, name: &str, labels: &[(&str, &str)]) {
        for ((_, le), n) in BUCKETS.iter().zip(self.buckets) {
            let mut with_le = labels.to_vec();
            with_le.push(("le", le));
            sample(out, &format!("{name}_bucket"), &with_le, n);
        }
        let mut inf = labels.to_vec();
        inf.push(("le", "+Inf"));
        sample(out, &format!("{name}_bucket"), &inf, self.count);
        sample(
            out,
            &format!("{name}_sum"),
            labels,
            seconds(self.sum_micros),
        );
        sample(out, &format!("{name}_count"), labels, self.count);
    }
}

/// Microseconds as decimal seconds (`1.500000`).
fn seconds(micros: u64) -> String {
    format!("{}.{:06}", micros / 1_000_000, micros % 1_000_000)
}

/// (method, route, status) of an HTTP request.
type HttpKey = (String, String, u16);

#[derive(Debug, Default)]
struct Inner {
    http: Mutex<BTreeMap<HttpKey, Histogram>>,
    reconcile_duration: Mutex<Histogram>,
    reconcile_passes: AtomicU64,
    reconcile_failures: AtomicU64,
    reconcile_actions: Mutex<BTreeMap<&'static str, u64>>,
    /// (launcher, operation, outcome) → calls.
    launcher_calls: Mutex<BTreeMap<(&'static str, &'static str, &'static str), u64>>,
    /// (channel kind, outcome) → notifications.
    notifications: Mutex<BTreeMap<(String, &'static str), u64>>,
    alert_evaluations: AtomicU64,
}

/// The in-process registry; cheap to clone, shared by the router, the
/// reconciler and the alert evaluator.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl Metrics {
    pub fn observe_http(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        if let Ok(mut http) = self.inner.http.lock() {
            http.entry((method.to_owned(), route.to_owned(), status))
                .or_default()
                .observe(elapsed);
        }
    }

    /// One reconcile pass: its duration, whether it failed, and what it did.
    pub fn observe_reconcile(&self, elapsed: Duration, actions: &[(&'static str, usize)]) {
        self.inner.reconcile_passes.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut h) = self.inner.reconcile_duration.lock() {
            h.observe(elapsed);
        }
        if let Ok(mut counts) = self.inner.reconcile_actions.lock() {
            for (action, n) in actions {
                *counts.entry(action).or_default() += u64::try_from(*n).unwrap_or(0);
            }
        }
    }

    pub fn reconcile_failed(&self) {
        self.inner
            .reconcile_failures
            .fetch_add(1, Ordering::Relaxed);
    }

    pub fn launcher_call(
        &self,
        launcher: &'static str,
        operation: &'static str,
        outcome: &'static str,
    ) {
        if let Ok(mut calls) = self.inner.launcher_calls.lock() {
            *calls.entry((launcher, operation, outcome)).or_default() += 1;
        }
    }

    pub fn notification(&self, channel: &str, outcome: &'static str) {
        if let Ok(mut n) = self.inner.notifications.lock() {
            *n.entry((channel.to_owned(), outcome)).or_default() += 1;
        }
    }

    pub fn alert_evaluation(&self) {
        self.inner.alert_evaluations.fetch_add(1, Ordering::Relaxed);
    }

    fn write_process(&self, out: &mut String) {
        header(
            out,
            "polybot_http_request_duration_seconds",
            "histogram",
            "HTTP requests served by the control plane, by route template and status.",
        );
        if let Ok(http) = self.inner.http.lock() {
            for ((method, route, status), h) in http.iter() {
                let status = status.to_string();
                h.write(
                    out,
                    "polybot_http_request_duration_seconds",
                    &[("method", method), ("route", route), ("status", &status)],
                );
            }
        }
        header(
            out,
            "polybot_reconcile_pass_duration_seconds",
            "histogram",
            "How long one reconcile pass took (reads, plan, launcher calls, writes).",
        );
        if let Ok(h) = self.inner.reconcile_duration.lock() {
            h.write(out, "polybot_reconcile_pass_duration_seconds", &[]);
        }
        header(
            out,
            "polybot_reconcile_passes_total",
            "counter",
            "Reconcile passes run by this replica while it was the leader.",
        );
        sample(
            out,
            "polybot_reconcile_passes_total",
            &[],
            self.inner.reconcile_passes.load(Ordering::Relaxed),
        );
        header(
            out,
            "polybot_reconcile_pass_failures_total",
            "counter",
            "Reconcile passes that failed before finishing (database errors).",
        );
        sample(
            out,
            "polybot_reconcile_pass_failures_total",
            &[],
            self.inner.reconcile_failures.load(Ordering::Relaxed),
        );
        header(
            out,
            "polybot_reconcile_actions_total",
            "counter",
            "What reconcile passes did: started, stopped, exits recorded, errors.",
        );
        if let Ok(actions) = self.inner.reconcile_actions.lock() {
            for action in ["started", "stopped", "exits", "errors"] {
                let n = actions.get(action).copied().unwrap_or(0);
                sample(
                    out,
                    "polybot_reconcile_actions_total",
                    &[("action", action)],
                    n,
                );
            }
        }
        header(
            out,
            "polybot_launcher_api_calls_total",
            "counter",
            "Launcher API calls by operation and outcome (ok, error, throttled).",
        );
        if let Ok(calls) = self.inner.launcher_calls.lock() {
            for ((launcher, operation, outcome), n) in calls.iter() {
                sample(
                    out,
                    "polybot_launcher_api_calls_total",
                    &[
                        ("launcher", launcher),
                        ("operation", operation),
                        ("outcome", outcome),
                    ],
                    n,
                );
            }
            header(
                out,
                "polybot_launcher_api_errors_total",
                "counter",
                "Launcher API calls that failed (throttling excluded).",
            );
            header(
                out,
                "polybot_launcher_api_throttles_total",
                "counter",
                "Launcher API calls the cloud API throttled.",
            );
            let mut errors: BTreeMap<(&str, &str), u64> = BTreeMap::new();
            let mut throttles: BTreeMap<(&str, &str), u64> = BTreeMap::new();
            for ((launcher, operation, outcome), n) in calls.iter() {
                let map = match *outcome {
                    "error" => &mut errors,
                    "throttled" => &mut throttles,
                    _ => continue,
                };
                *map.entry((launcher, operation)).or_default() += n;
            }
            for ((launcher, operation), n) in errors {
                sample(
                    out,
                    "polybot_launcher_api_errors_total",
                    &[("launcher", launcher), ("operation", operation)],
                    n,
                );
            }
            for ((launcher, operation), n) in throttles {
                sample(
                    out,
                    "polybot_launcher_api_throttles_total",
                    &[("launcher", launcher), ("operation", operation)],
                    n,
                );
            }
        }
        header(
            out,
            "polybot_alert_notifications_total",
            "counter",
            "Alert notifications by channel kind and outcome (sent, failed, rate_limited).",
        );
        if let Ok(n) = self.inner.notifications.lock() {
            for ((channel, outcome), count) in n.iter() {
                sample(
                    out,
                    "polybot_alert_notifications_total",
                    &[("channel", channel), ("outcome", outcome)],
                    count,
                );
            }
        }
        header(
            out,
            "polybot_alert_evaluations_total",
            "counter",
            "Alert evaluation rounds run by this replica while it was the evaluator.",
        );
        sample(
            out,
            "polybot_alert_evaluations_total",
            &[],
            self.inner.alert_evaluations.load(Ordering::Relaxed),
        );
    }
}

// ---------------------------------------------------------------------------
// Exposition helpers
// ---------------------------------------------------------------------------

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    // Writing to a String cannot fail.
    out.push_str("# HELP ");
    out.push_str(name);
    out.push(' ');
    out.push_str(help);
    out.push_str("\n# TYPE ");
    out.push_str(name);
    out.push(' ');
    out.push_str(kind);
    out.push('\n');
}

fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: impl Display) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(k);
            out.push_str("=\"");
            for c in v.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '"' => out.push_str("\\\""),
                    '\n' => out.push_str("\\n"),
                    c => out.push(c),
                }
            }
            out.push('"');
        }
        out.push('}');
    }
    out.push(' ');
    if write!(out, "{value}").is_err() {
        out.push_str("NaN");
    }
    out.push('\n');
}

// ---------------------------------------------------------------------------
// HTTP middleware
// ---------------------------------------------------------------------------

/// Times every request, labelled by its route template (`/tenants/{id}`, never
/// the id itself, so that the series stay few and carry no tenant).
pub async fn track_http(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let response = next.run(request).await;
    state.metrics.observe_http(
        &method,
        &route,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

// ---------------------------------------------------------------------------
// The launcher, instrumented
// ---------------------------------------------------------------------------

/// A [`Launcher`] that counts its calls by outcome.
#[derive(Debug)]
pub struct InstrumentedLauncher {
    inner: Arc<dyn Launcher>,
    metrics: Metrics,
}

impl InstrumentedLauncher {
    pub fn wrap(inner: Arc<dyn Launcher>, metrics: Metrics) -> Arc<dyn Launcher> {
        Arc::new(Self { inner, metrics })
    }

    fn count<T>(&self, operation: &'static str, result: &Result<T, LaunchError>) {
        let outcome = match result {
            Ok(_) => "ok",
            Err(LaunchError::Throttled { .. }) => "throttled",
            Err(_) => "error",
        };
        self.metrics
            .launcher_call(self.inner.kind(), operation, outcome);
    }
}

#[async_trait]
impl Launcher for InstrumentedLauncher {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    fn injects_secrets(&self) -> bool {
        self.inner.injects_secrets()
    }

    async fn ensure_spec(&self, spec: &LaunchSpec) -> Result<(), LaunchError> {
        let result = self.inner.ensure_spec(spec).await;
        self.count("ensure_spec", &result);
        result
    }

    async fn list(&self) -> Result<Vec<Instance>, LaunchError> {
        let result = self.inner.list().await;
        self.count("list", &result);
        result
    }

    async fn start(&self, spec: &LaunchSpec) -> Result<Instance, LaunchError> {
        let result = self.inner.start(spec).await;
        self.count("start", &result);
        result
    }

    async fn stop(&self, instance: &Instance, reason: &str) -> Result<(), LaunchError> {
        let result = self.inner.stop(instance, reason).await;
        self.count("stop", &result);
        result
    }
}

// ---------------------------------------------------------------------------
// Per-tenant series, read at scrape time
// ---------------------------------------------------------------------------

/// One tenant's operational numbers, as `/metrics` and the dashboard show them.
#[derive(Debug, Clone)]
pub struct TenantFigures {
    pub id: Uuid,
    pub name: String,
    pub state: String,
    pub desired: String,
    pub actual: String,
    pub restarts: i32,
    pub last_error: Option<String>,
    pub heartbeat_at: Option<DateTime<Utc>>,
    pub heartbeat_age_seconds: Option<f64>,
    pub health: Option<Value>,
    pub opportunities: i64,
    pub opportunities_executed: i64,
    pub trades: i64,
    pub pnl_total: Decimal,
    pub pnl_today: Decimal,
    pub errors: i64,
    /// The availability SLI over the last hour and the last 30 days (None
    /// when the worker was never desired in the window).
    pub availability_1h: Option<f64>,
    pub availability_30d: Option<f64>,
    pub firing_alerts: Vec<String>,
}

impl TenantFigures {
    /// Strategy name → breaker state (`closed`, `half_open`, `open`), from the newest heartbeat.
    pub fn breakers(&self) -> Vec<(String, String)> {
        let Some(strategies) = self
            .health
            .as_ref()
            .and_then(|h| h.get("strategies"))
            .and_then(Value::as_object)
        else {
            return Vec::new();
        };
        strategies
            .iter()
            .map(|(name, s)| {
                let breaker = s
                    .get("breaker")
                    .and_then(|b| {
                        b.as_str()
                            .or_else(|| b.get("state").and_then(Value::as_str))
                    })
                    .unwrap_or("closed")
                    .replace('-', "_");
                (name.clone(), breaker)
            })
            .collect()
    }

    pub fn desired_running(&self) -> bool {
        self.state == "active"
    }
}

#[derive(sqlx::FromRow)]
struct FiguresRow {
    id: Uuid,
    name: String,
    state: String,
    desired: Option<String>,
    actual: Option<String>,
    restarts: Option<i32>,
    last_error: Option<String>,
    heartbeat_at: Option<DateTime<Utc>>,
    heartbeat_age_seconds: Option<f64>,
    health: Option<Value>,
    opportunities: i64,
    opportunities_executed: i64,
    trades: i64,
    pnl_total: Decimal,
    pnl_today: Decimal,
    errors: i64,
    availability_1h: Option<f64>,
    availability_30d: Option<f64>,
    firing_alerts: Vec<String>,
}

const FIGURES_SELECT: &str = "SELECT t.id, t.name, t.state, r.desired, r.actual, r.restarts, \
        coalesce(r.last_error, t.last_error) AS last_error, h.at AS heartbeat_at, \
        extract(epoch FROM now() - h.at)::float8 AS heartbeat_age_seconds, h.health, \
        (SELECT count(*) FROM opportunities o WHERE o.tenant_id = t.id) AS opportunities, \
        (SELECT count(*) FROM opportunities o WHERE o.tenant_id = t.id AND o.executed_at IS NOT NULL) AS opportunities_executed, \
        (SELECT count(*) FROM trades x WHERE x.tenant_id = t.id) AS trades, \
        (SELECT coalesce(sum(x.realized_pnl), 0) FROM trades x WHERE x.tenant_id = t.id) AS pnl_total, \
        (SELECT coalesce(sum(x.realized_pnl), 0) FROM trades x WHERE x.tenant_id = t.id \
            AND x.executed_at >= date_trunc('day', now(), 'UTC')) AS pnl_today, \
        (SELECT count(*) FROM tenant_runtime_events e WHERE e.tenant_id = t.id AND e.kind IN ('crashed', 'fenced', 'error')) AS errors, \
        (SELECT sum(a.up_ms)::float8 / nullif(sum(a.desired_ms), 0) FROM worker_availability a \
            WHERE a.tenant_id = t.id AND a.minute >= now() - interval '1 hour') AS availability_1h, \
        (SELECT sum(a.up_ms)::float8 / nullif(sum(a.desired_ms), 0) FROM worker_availability a \
            WHERE a.tenant_id = t.id AND a.minute >= now() - interval '30 days') AS availability_30d, \
        ARRAY(SELECT s.alert || CASE WHEN s.subject = '' THEN '' ELSE ':' || s.subject END \
              FROM alert_states s WHERE s.tenant_id = t.id AND s.firing ORDER BY 1) AS firing_alerts \
     FROM tenants t \
     LEFT JOIN tenant_runtime r ON r.tenant_id = t.id \
     LEFT JOIN LATERAL (SELECT at, health FROM worker_heartbeats \
                        WHERE tenant_id = t.id ORDER BY at DESC LIMIT 1) h ON true";

fn figures_from(row: FiguresRow) -> TenantFigures {
    let FiguresRow {
        id,
        name,
        state,
        desired,
        actual,
        restarts,
        last_error,
        heartbeat_at,
        heartbeat_age_seconds,
        health,
        opportunities,
        opportunities_executed,
        trades,
        pnl_total,
        pnl_today,
        errors,
        availability_1h,
        availability_30d,
        firing_alerts,
    } = row;
    TenantFigures {
        id,
        name,
        desired: desired.unwrap_or_else(|| {
            if state == "active" {
                "running"
            } else {
                "stopped"
            }
            .to_owned()
        }),
        state,
        actual: actual.unwrap_or_else(|| "pending".to_owned()),
        restarts: restarts.unwrap_or(0),
        last_error,
        heartbeat_at,
        heartbeat_age_seconds,
        health,
        opportunities,
        opportunities_executed,
        trades,
        pnl_total: pnl_total.normalize(),
        pnl_today: pnl_today.normalize(),
        errors,
        availability_1h,
        availability_30d,
        firing_alerts,
    }
}

/// Every tenant's figures (operator scope), or only `only`'s (its own scope).
pub async fn load_figures(
    state: &AppState,
    only: Option<TenantId>,
) -> Result<Vec<TenantFigures>, DbError> {
    let rows: Vec<FiguresRow> = match only {
        Some(tenant) => {
            let mut tx = state.db.tenant(tenant).await?;
            let rows = sqlx::query_as(&format!("{FIGURES_SELECT} WHERE t.id = $1"))
                .bind(tenant.as_uuid())
                .fetch_all(&mut *tx)
                .await
                .map_err(DbError::query("reading a tenant's figures"))?;
            tx.commit().await?;
            rows
        }
        None => {
            let mut op = state.db.operator().await?;
            let rows = sqlx::query_as(&format!(
                "{FIGURES_SELECT} WHERE t.state <> 'offboarded' ORDER BY t.name, t.id"
            ))
            .fetch_all(&mut *op)
            .await
            .map_err(DbError::query("reading the fleet's figures"))?;
            op.commit().await?;
            rows
        }
    };
    Ok(rows.into_iter().map(figures_from).collect())
}

async fn tenants_by_state(state: &AppState) -> Result<Vec<(String, i64)>, DbError> {
    let mut op = state.db.operator().await?;
    let rows = sqlx::query_as("SELECT state, count(*) FROM tenants GROUP BY state")
        .fetch_all(&mut *op)
        .await
        .map_err(DbError::query("counting tenants by state"))?;
    op.commit().await?;
    Ok(rows)
}

const TENANT_STATES: [&str; 6] = [
    "provisioning",
    "active",
    "paused",
    "failed",
    "offboarding",
    "offboarded",
];

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

/// The worker availability objective (99.5 % of desired time, 30 days).
pub const AVAILABILITY_OBJECTIVE: &str = "0.995";

fn breaker_value(state: &str) -> u8 {
    match state {
        "open" => 2,
        "half_open" => 1,
        _ => 0,
    }
}

fn write_tenants(out: &mut String, figures: &[TenantFigures]) {
    let series: [(&str, &str, &str); 14] = [
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
            "Realized PnL since midnight UTC, net of fees.",
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
    for (name, kind, help) in series {
        header(out, name, kind, help);
        for f in figures {
            let id = f.id.to_string();
            let t: &[(&str, &str)] = &[("tenant_id", &id)];
            match name {
                "polybot_tenant_info" => sample(
                    out,
                    name,
                    &[("tenant_id", &id), ("name", &f.name), ("state", &f.state)],
                    1,
                ),
                "polybot_tenant_worker_desired" => {
                    sample(out, name, t, u8::from(f.desired_running()))
                }
                "polybot_tenant_worker_up" => sample(out, name, t, u8::from(f.actual == "running")),
                "polybot_tenant_worker_restarts" => sample(out, name, t, f.restarts),
                "polybot_tenant_heartbeat_age_seconds" => {
                    if let Some(age) = f.heartbeat_age_seconds {
                        sample(out, name, t, format!("{age:.3}"));
                    }
                }
                "polybot_tenant_opportunities_total" => sample(out, name, t, f.opportunities),
                "polybot_tenant_opportunities_executed_total" => {
                    sample(out, name, t, f.opportunities_executed)
                }
                "polybot_tenant_trades_total" => sample(out, name, t, f.trades),
                "polybot_tenant_pnl" => sample(out, name, t, f.pnl_total),
                "polybot_tenant_pnl_today" => sample(out, name, t, f.pnl_today),
                "polybot_tenant_errors_total" => sample(out, name, t, f.errors),
                "polybot_tenant_breaker_state" => {
                    for (strategy, breaker) in f.breakers() {
                        sample(
                            out,
                            name,
                            &[("tenant_id", &id), ("strategy", &strategy)],
                            breaker_value(&breaker),
                        );
                    }
                }
                "polybot_tenant_availability_ratio" => {
                    for (window, value) in [("1h", f.availability_1h), ("30d", f.availability_30d)]
                    {
                        if let Some(v) = value {
                            sample(
                                out,
                                name,
                                &[("tenant_id", &id), ("window", window)],
                                format!("{v:.6}"),
                            );
                        }
                    }
                }
                "polybot_tenant_alert_firing" => {
                    for alert in &f.firing_alerts {
                        let (alert, subject) = alert.split_once(':').unwrap_or((alert, ""));
                        sample(
                            out,
                            name,
                            &[("tenant_id", &id), ("alert", alert), ("subject", subject)],
                            1,
                        );
                    }
                }
                _ => {}
            }
        }
    }
}

/// The whole exposition for `caller`.
pub async fn render(state: &AppState, scope: Option<TenantId>) -> Result<String, DbError> {
    let mut out = String::with_capacity(16 * 1024);
    let figures = load_figures(state, scope).await?;
    if scope.is_none() {
        let by_state = tenants_by_state(state).await?;
        header(
            &mut out,
            "polybot_tenants",
            "gauge",
            "Tenants by lifecycle state.",
        );
        for s in TENANT_STATES {
            let n = by_state
                .iter()
                .find(|(state, _)| state == s)
                .map_or(0, |(_, n)| *n);
            sample(&mut out, "polybot_tenants", &[("state", s)], n);
        }
        header(
            &mut out,
            "polybot_workers_desired",
            "gauge",
            "Workers that should run (active tenants).",
        );
        sample(
            &mut out,
            "polybot_workers_desired",
            &[],
            figures.iter().filter(|f| f.desired_running()).count(),
        );
        header(
            &mut out,
            "polybot_workers_running",
            "gauge",
            "Workers running with a fresh heartbeat.",
        );
        sample(
            &mut out,
            "polybot_workers_running",
            &[],
            figures.iter().filter(|f| f.actual == "running").count(),
        );
        header(
            &mut out,
            "polybot_slo_availability_objective",
            "gauge",
            "The worker availability objective over 30 days.",
        );
        sample(
            &mut out,
            "polybot_slo_availability_objective",
            &[],
            AVAILABILITY_OBJECTIVE,
        );
        state.metrics.write_process(&mut out);
    }
    write_tenants(&mut out, &figures);
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
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(response)
}
