//! The in-process series, on a `prometheus-client` registry: HTTP request
//! durations ([`track_http`]), reconcile passes and actions, launcher API
//! calls, alert notifications and evaluations.
//!
//! [`Metrics`] is shared through `AppState` by the router, the reconciler and
//! the alert evaluator. The series read from the database at scrape time are
//! in [`super::tenants`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::AppState;

/// Histogram upper bounds, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

fn histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

/// The reconcile actions always exported, at zero until they happen.
const ACTIONS: [&str; 4] = ["started", "stopped", "exits", "errors"];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabels {
    action: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LauncherCallLabels {
    launcher: &'static str,
    operation: &'static str,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LauncherLabels {
    launcher: &'static str,
    operation: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NotificationLabels {
    channel: String,
    outcome: &'static str,
}

#[derive(Debug)]
struct Inner {
    registry: Registry,
    http: Family<HttpLabels, Histogram, fn() -> Histogram>,
    reconcile_duration: Histogram,
    reconcile_passes: Counter,
    reconcile_failures: Counter,
    reconcile_actions: Family<ActionLabels, Counter>,
    launcher_calls: Family<LauncherCallLabels, Counter>,
    launcher_errors: Family<LauncherLabels, Counter>,
    launcher_throttles: Family<LauncherLabels, Counter>,
    notifications: Family<NotificationLabels, Counter>,
    alert_evaluations: Counter,
}

/// The in-process registry; cheap to clone, shared by the router, the
/// reconciler and the alert evaluator.
#[derive(Debug, Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let http = Family::<HttpLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            histogram as fn() -> Histogram,
        );
        let reconcile_duration = histogram();
        let reconcile_passes = Counter::default();
        let reconcile_failures = Counter::default();
        let reconcile_actions = Family::<ActionLabels, Counter>::default();
        for action in ACTIONS {
            // Created now so that each action is exported at zero before it happens.
            reconcile_actions
                .get_or_create(&ActionLabels { action })
                .inc_by(0);
        }
        let launcher_calls = Family::<LauncherCallLabels, Counter>::default();
        let launcher_errors = Family::<LauncherLabels, Counter>::default();
        let launcher_throttles = Family::<LauncherLabels, Counter>::default();
        let notifications = Family::<NotificationLabels, Counter>::default();
        let alert_evaluations = Counter::default();

        // `register` appends the final full stop to the help text, and the
        // encoder appends `_total` to a counter's name.
        let mut registry = Registry::default();
        registry.register(
            "polybot_http_request_duration_seconds",
            "HTTP requests served by the control plane, by route template and status",
            http.clone(),
        );
        registry.register(
            "polybot_reconcile_pass_duration_seconds",
            "How long one reconcile pass took (reads, plan, launcher calls, writes)",
            reconcile_duration.clone(),
        );
        registry.register(
            "polybot_reconcile_passes",
            "Reconcile passes run by this replica while it was the leader",
            reconcile_passes.clone(),
        );
        registry.register(
            "polybot_reconcile_pass_failures",
            "Reconcile passes that failed before finishing (database errors)",
            reconcile_failures.clone(),
        );
        registry.register(
            "polybot_reconcile_actions",
            "What reconcile passes did: started, stopped, exits recorded, errors",
            reconcile_actions.clone(),
        );
        registry.register(
            "polybot_launcher_api_calls",
            "Launcher API calls by operation and outcome (ok, error, throttled)",
            launcher_calls.clone(),
        );
        registry.register(
            "polybot_launcher_api_errors",
            "Launcher API calls that failed (throttling excluded)",
            launcher_errors.clone(),
        );
        registry.register(
            "polybot_launcher_api_throttles",
            "Launcher API calls the cloud API throttled",
            launcher_throttles.clone(),
        );
        registry.register(
            "polybot_alert_notifications",
            "Alert notifications by channel kind and outcome (sent, failed, rate_limited)",
            notifications.clone(),
        );
        registry.register(
            "polybot_alert_evaluations",
            "Alert evaluation rounds run by this replica while it was the evaluator",
            alert_evaluations.clone(),
        );
        Self {
            inner: Arc::new(Inner {
                registry,
                http,
                reconcile_duration,
                reconcile_passes,
                reconcile_failures,
                reconcile_actions,
                launcher_calls,
                launcher_errors,
                launcher_throttles,
                notifications,
                alert_evaluations,
            }),
        }
    }

    pub fn observe_http(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        self.inner
            .http
            .get_or_create(&HttpLabels {
                method: method.to_owned(),
                route: route.to_owned(),
                status,
            })
            .observe(elapsed.as_secs_f64());
    }

    /// One reconcile pass: its duration and what it did.
    pub fn observe_reconcile(&self, elapsed: Duration, actions: &[(&'static str, usize)]) {
        self.inner.reconcile_passes.inc();
        self.inner.reconcile_duration.observe(elapsed.as_secs_f64());
        for (action, n) in actions {
            self.inner
                .reconcile_actions
                .get_or_create(&ActionLabels { action })
                .inc_by(u64::try_from(*n).unwrap_or(0));
        }
    }

    pub fn reconcile_failed(&self) {
        self.inner.reconcile_failures.inc();
    }

    pub fn launcher_call(
        &self,
        launcher: &'static str,
        operation: &'static str,
        outcome: &'static str,
    ) {
        self.inner
            .launcher_calls
            .get_or_create(&LauncherCallLabels {
                launcher,
                operation,
                outcome,
            })
            .inc();
        let by_outcome = match outcome {
            "error" => &self.inner.launcher_errors,
            "throttled" => &self.inner.launcher_throttles,
            _ => return,
        };
        by_outcome
            .get_or_create(&LauncherLabels {
                launcher,
                operation,
            })
            .inc();
    }

    pub fn notification(&self, channel: &str, outcome: &'static str) {
        self.inner
            .notifications
            .get_or_create(&NotificationLabels {
                channel: channel.to_owned(),
                outcome,
            })
            .inc();
    }

    pub fn alert_evaluation(&self) {
        self.inner.alert_evaluations.inc();
    }

    /// Appends the in-process series to `out` (Prometheus text format 0.0.4).
    pub(super) fn encode(&self, out: &mut String) -> std::fmt::Result {
        prometheus_client::encoding::prometheus_text::encode(out, &self.inner.registry)
    }
}

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
