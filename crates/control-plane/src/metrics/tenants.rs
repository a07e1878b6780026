//! The series read from the database at scrape time: fleet gauges (tenants
//! by state, workers desired and running, the SLO objective) and each
//! tenant's series, labelled `tenant_id`.
//!
//! They are `prometheus-client` collectors over a snapshot of the store's
//! fleet read model (`polybot_store::repo::fleet`), built per scrape; this
//! module reads nothing itself.

use std::fmt;

use polybot_core::lifecycle::TenantState;
use polybot_core::worker::BreakerPosition;
use polybot_store::repo::fleet::TenantFigures;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

/// The worker availability objective (99.5 % of desired time, 30 days).
pub const AVAILABILITY_OBJECTIVE: &str = "0.995";

/// One sample's value.
#[derive(Debug, Clone, Copy)]
enum Value {
    Gauge(i64),
    Count(u64),
    Ratio(f64),
    /// An exact amount. Prometheus holds every sample as a float, so the
    /// exposition is where an amount becomes one; a whole amount is written
    /// as an integer (`2`, not `2.0`).
    Amount(Decimal),
}

fn count(n: i64) -> Value {
    Value::Count(u64::try_from(n).unwrap_or(0))
}

fn encode_value(mut metric: MetricEncoder, value: Value) -> fmt::Result {
    match value {
        Value::Gauge(v) => metric.encode_gauge(&v),
        Value::Count(n) => ConstCounter::new(n).encode(metric),
        Value::Ratio(r) => metric.encode_gauge(&r),
        Value::Amount(d) => {
            let d = d.normalize();
            match d.to_i64().filter(|_| d.scale() == 0) {
                Some(whole) => metric.encode_gauge(&whole),
                None => metric.encode_gauge(&d.to_f64().unwrap_or(f64::NAN)),
            }
        }
    }
}

/// `name` with its help and type, and one sample per `(labels, value)`.
fn family<L: EncodeLabelSet>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    samples: impl IntoIterator<Item = (L, Value)>,
) -> fmt::Result {
    let mut metric = encoder.encode_descriptor(name, help, None, kind)?;
    for (labels, value) in samples {
        encode_value(metric.encode_family(&labels)?, value)?;
    }
    Ok(())
}

/// `name` with its help and type, and one unlabelled sample.
fn single(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    value: Value,
) -> fmt::Result {
    encode_value(encoder.encode_descriptor(name, help, None, kind)?, value)
}

/// The fleet-wide gauges, for operator scrapes.
#[derive(Debug)]
pub(super) struct FleetGauges {
    /// (state, tenants), from the store; `polybot_tenants` reports every
    /// state, at zero if it has none.
    pub by_state: Vec<(TenantState, i64)>,
    pub desired: usize,
    pub running: usize,
    /// Workers that should run but wait for the account's Fargate capacity.
    pub waiting_for_capacity: usize,
    /// The unfinished rollout's tenants: done, rolling, pending (zeros
    /// without one).
    pub rollout: [i64; 3],
}

impl FleetGauges {
    pub fn new(by_state: Vec<(TenantState, i64)>, figures: &[TenantFigures]) -> Self {
        Self {
            by_state,
            desired: figures
                .iter()
                .filter(|f| f.status.desired_running())
                .count(),
            running: figures
                .iter()
                .filter(|f| f.status.actual() == "running")
                .count(),
            waiting_for_capacity: figures
                .iter()
                .filter(|f| f.status.actual() == "capacity")
                .count(),
            rollout: [0; 3],
        }
    }

    /// With the unfinished rollout's progress.
    pub fn with_rollout(
        mut self,
        progress: Option<polybot_store::repo::rollouts::Progress>,
    ) -> Self {
        if let Some(p) = progress {
            self.rollout = [p.done, p.rolling, p.pending()];
        }
        self
    }
}

impl Collector for FleetGauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        family(
            &mut encoder,
            "polybot_tenants",
            "Tenants by lifecycle state.",
            MetricType::Gauge,
            TenantState::ALL.iter().map(|s| {
                let n = self
                    .by_state
                    .iter()
                    .find(|(state, _)| state == s)
                    .map_or(0, |(_, n)| *n);
                ([("state", s.as_str())], Value::Gauge(n))
            }),
        )?;
        let usize_gauge = |n: usize| Value::Gauge(i64::try_from(n).unwrap_or(i64::MAX));
        single(
            &mut encoder,
            "polybot_workers_desired",
            "Workers that should run (active tenants).",
            MetricType::Gauge,
            usize_gauge(self.desired),
        )?;
        single(
            &mut encoder,
            "polybot_workers_running",
            "Workers running with a fresh heartbeat.",
            MetricType::Gauge,
            usize_gauge(self.running),
        )?;
        single(
            &mut encoder,
            "polybot_workers_waiting_for_capacity",
            "Workers that should run but wait for the account's Fargate vCPU quota.",
            MetricType::Gauge,
            usize_gauge(self.waiting_for_capacity),
        )?;
        family(
            &mut encoder,
            "polybot_rollout_tenants",
            "Tenants of the unfinished fleet rollout by progress (done, rolling, pending); zero without one.",
            MetricType::Gauge,
            ["done", "rolling", "pending"]
                .into_iter()
                .zip(self.rollout)
                .map(|(state, n)| ([("state", state)], Value::Gauge(n))),
        )?;
        single(
            &mut encoder,
            "polybot_slo_availability_objective",
            "The worker availability objective over 30 days.",
            MetricType::Gauge,
            Value::Amount(AVAILABILITY_OBJECTIVE.parse().unwrap_or_default()),
        )
    }
}

/// Each tenant's series.
#[derive(Debug)]
pub(super) struct TenantSeries(pub Vec<TenantFigures>);

fn breaker_value(position: BreakerPosition) -> i64 {
    match position {
        BreakerPosition::Open => 2,
        BreakerPosition::HalfOpen => 1,
        BreakerPosition::Closed => 0,
    }
}

impl Collector for TenantSeries {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let ids: Vec<String> = self.0.iter().map(|f| f.status.id.to_string()).collect();
        let rows = || ids.iter().map(String::as_str).zip(&self.0);
        // One label, `tenant_id`, and one value per tenant.
        let mut per_tenant =
            |name: &str,
             help: &str,
             kind: MetricType,
             value: &dyn Fn(&TenantFigures) -> Option<Value>| {
                family(
                    &mut encoder,
                    name,
                    help,
                    kind,
                    rows().filter_map(|(id, f)| Some(([("tenant_id", id)], value(f)?))),
                )
            };
        per_tenant(
            "polybot_tenant_worker_desired",
            "1 if the tenant's worker should run.",
            MetricType::Gauge,
            &|f| Some(Value::Gauge(i64::from(f.status.desired_running()))),
        )?;
        per_tenant(
            "polybot_tenant_worker_up",
            "1 if the worker runs and heartbeats (reconciler's view).",
            MetricType::Gauge,
            &|f| Some(Value::Gauge(i64::from(f.status.actual() == "running"))),
        )?;
        per_tenant(
            "polybot_tenant_worker_restarts",
            "Restarts since the worker last ran steadily.",
            MetricType::Gauge,
            &|f| Some(Value::Gauge(i64::from(f.status.restarts()))),
        )?;
        per_tenant(
            "polybot_tenant_heartbeat_age_seconds",
            "Seconds since the newest heartbeat.",
            MetricType::Gauge,
            &|f| f.status.heartbeat.as_ref().map(|h| Value::Amount(h.age())),
        )?;
        per_tenant(
            "polybot_tenant_opportunities",
            "Opportunities detected.",
            MetricType::Counter,
            &|f| Some(count(f.opportunities)),
        )?;
        per_tenant(
            "polybot_tenant_opportunities_executed",
            "Opportunities executed.",
            MetricType::Counter,
            &|f| Some(count(f.opportunities_executed)),
        )?;
        per_tenant(
            "polybot_tenant_trades",
            "Trades (paper or live fills and settlements).",
            MetricType::Counter,
            &|f| Some(count(f.trades)),
        )?;
        per_tenant(
            "polybot_tenant_pnl",
            "Realized PnL since onboarding, net of fees (quote currency).",
            MetricType::Gauge,
            &|f| Some(Value::Amount(f.pnl_total)),
        )?;
        per_tenant(
            "polybot_tenant_pnl_today",
            "PnL today as the engine reports it (on the data's own day), else realized net of fees since midnight UTC.",
            MetricType::Gauge,
            &|f| Some(Value::Amount(f.today())),
        )?;
        per_tenant(
            "polybot_tenant_errors",
            "Worker crashes and launcher errors the reconciler recorded.",
            MetricType::Counter,
            &|f| Some(count(f.errors)),
        )?;
        family(
            &mut encoder,
            "polybot_tenant_info",
            "1 per tenant, with its name and lifecycle state.",
            MetricType::Gauge,
            rows().map(|(id, f)| {
                (
                    [
                        ("tenant_id", id),
                        ("name", f.status.name.as_str()),
                        ("state", f.status.state.as_str()),
                    ],
                    Value::Gauge(1),
                )
            }),
        )?;
        family(
            &mut encoder,
            "polybot_tenant_breaker_state",
            "Per strategy circuit breaker: 0 closed, 1 half open, 2 open.",
            MetricType::Gauge,
            rows().flat_map(|(id, f)| {
                f.status.breakers().into_iter().map(move |(strategy, b)| {
                    (
                        [("tenant_id", id), ("strategy", strategy)],
                        Value::Gauge(breaker_value(b)),
                    )
                })
            }),
        )?;
        family(
            &mut encoder,
            "polybot_tenant_availability_ratio",
            "Worker availability SLI: running time / desired time over the window.",
            MetricType::Gauge,
            rows().flat_map(|(id, f)| {
                [("1h", f.availability_1h), ("30d", f.availability_30d)]
                    .into_iter()
                    .filter_map(move |(window, ratio)| {
                        Some((
                            [("tenant_id", id), ("window", window)],
                            Value::Ratio(ratio?),
                        ))
                    })
            }),
        )?;
        family(
            &mut encoder,
            "polybot_tenant_alert_firing",
            "1 while an alert fires for the tenant.",
            MetricType::Gauge,
            rows().flat_map(|(id, f)| {
                f.firing_alerts.iter().map(move |alert| {
                    let (alert, subject) = alert.split_once(':').unwrap_or((alert, ""));
                    (
                        [("tenant_id", id), ("alert", alert), ("subject", subject)],
                        Value::Gauge(1),
                    )
                })
            }),
        )
    }
}
