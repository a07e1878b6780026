//! The alert evaluator: every `POLYBOT_ALERT_INTERVAL_SECS`, one replica (a
//! Postgres advisory lock, apart from the reconciler's) loads what the rules
//! need, runs them, records the transitions in `alert_states` and hands the
//! notifying ones to delivery. It also accumulates the availability SLI
//! (`worker_availability`).
//!
//! The state of each (tenant, alert, subject) lives in the database, so an
//! evaluator taking over after a failover neither repeats nor forgets an
//! alert. What fires is decided in `rules`; what it is decided on is the
//! fleet read model's (`polybot_store::repo::fleet::watched`); the alert
//! state's SQL is in `polybot_store::repo::alerts`; sending in `notify`.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use chrono::{DateTime, DurationRound, Utc};
use polybot_core::TenantId;
use polybot_store::DbError;
use polybot_store::repo::{alerts as repo, fleet};
use tokio_util::sync::CancellationToken;

use super::notify::{self, Notification, Notifier};
use super::rules::{self, AlertKey, AlertState, Limits, TenantInput, Transition};
use crate::AppState;

/// The advisory-lock key of the alert evaluator.
pub const EVALUATOR_KEY: i64 = 0x706f_6c79_626f_7402;

/// What one evaluation did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct EvalReport {
    pub tenants: usize,
    pub fired: usize,
    pub resolved: usize,
    pub notifications: usize,
}

/// One round's input: each tenant as the rules see it, the names the
/// messages show, and the database's clock at the read.
#[derive(Debug)]
struct Round {
    now: DateTime<Utc>,
    tenants: Vec<TenantInput>,
    names: HashMap<TenantId, String>,
}

/// Raises and resolves alerts, and accumulates worker availability.
#[derive(Debug)]
pub struct Evaluator {
    state: AppState,
    notifier: Notifier,
    last_round: Option<Instant>,
    last_flush: Instant,
    /// (tenant, minute) → (desired ms, up ms) not yet written.
    availability: HashMap<(TenantId, DateTime<Utc>), (i64, i64)>,
}

impl Evaluator {
    pub fn new(state: AppState) -> Self {
        let notifier = Notifier::new(&state);
        Self::with_notifier(state, notifier)
    }

    /// With a notifier of the caller's (tests: an injected resolver).
    pub fn with_notifier(state: AppState, notifier: Notifier) -> Self {
        Self {
            state,
            notifier,
            last_round: None,
            last_flush: Instant::now(),
            availability: HashMap::new(),
        }
    }

    /// Stands by until it holds the evaluator lock, then evaluates every
    /// interval until `stop`.
    pub async fn run(mut self, stop: CancellationToken) {
        let interval = self.state.settings.alerts.interval;
        loop {
            let lock = tokio::select! {
                _ = stop.cancelled() => return,
                lock = self.state.db.try_lead(EVALUATOR_KEY) => lock,
            };
            let mut lock = match lock {
                Ok(Some(lock)) => lock,
                Ok(None) => {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, "cannot take the alert evaluator lock; retrying");
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(2)) => continue,
                    }
                }
            };
            tracing::info!("this control plane evaluates alerts");
            self.last_round = None;
            loop {
                if !lock.still_held().await {
                    tracing::warn!("lost the alert evaluator lock; standing by");
                    break;
                }
                match self.evaluate().await {
                    Ok(report) if report.fired + report.resolved > 0 => {
                        tracing::info!(?report, "alerts evaluated");
                    }
                    Ok(_) => {}
                    Err(err) => tracing::warn!(error = %err, "alert evaluation failed"),
                }
                tokio::select! {
                    _ = stop.cancelled() => {
                        if let Err(err) = self.flush_availability().await {
                            tracing::warn!(error = %err, "could not write worker availability");
                        }
                        lock.release().await;
                        return;
                    }
                    _ = tokio::time::sleep(interval) => {}
                }
            }
        }
    }

    /// Loads the rules' input: every tenant not offboarded with its firing
    /// alerts, in one operator transaction.
    async fn load(&self) -> Result<Round, DbError> {
        let window = self.state.settings.alerts.fenced_window;
        let mut op = self.state.db.operator().await?;
        let watch = fleet::watched(&mut op, window).await?;
        let states = repo::firing_states(&mut op).await?;
        op.commit().await?;
        let mut alerts: HashMap<TenantId, Vec<AlertState>> = HashMap::new();
        for s in states {
            alerts
                .entry(TenantId::from_uuid(s.tenant_id))
                .or_default()
                .push(AlertState {
                    key: AlertKey {
                        alert: s.alert,
                        subject: s.subject,
                    },
                    summary: s.summary,
                    fired_at: s.fired_at,
                    clear_since: s.clear_since,
                });
        }
        let mut round = Round {
            now: watch.now,
            tenants: Vec::with_capacity(watch.tenants.len()),
            names: HashMap::with_capacity(watch.tenants.len()),
        };
        for watched in watch.tenants {
            let pnl_today = watched.today();
            let status = watched.status;
            let tenant = status.tenant_id();
            // A worker held for payment is not expected to run: for alerts
            // and availability its tenant counts as paused.
            let state = if status.state.wants_worker() && !status.desired_running() {
                polybot_core::lifecycle::TenantState::Paused
            } else {
                status.state
            };
            round.tenants.push(TenantInput {
                tenant,
                state,
                state_since: status.updated_at,
                worker: status.actual().to_owned(),
                restarts: status.restarts(),
                last_exit: status.runtime.and_then(|r| r.last_exit),
                heartbeat_at: status.heartbeat.as_ref().map(|h| h.at),
                health: status.heartbeat.and_then(|h| h.health),
                pnl_today,
                max_daily_loss: watched.max_daily_loss,
                fenced: watched.fenced,
                alerts: alerts.remove(&tenant).unwrap_or_default(),
            });
            round.names.insert(tenant, status.name);
        }
        Ok(round)
    }

    /// One round: load, decide, record, notify; and account availability.
    pub async fn evaluate(&mut self) -> Result<EvalReport, DbError> {
        let settings = self.state.settings.alerts.clone();
        let round = self.load().await?;
        let now = round.now;
        self.account(&round.tenants, now);
        let mut report = EvalReport {
            tenants: round.tenants.len(),
            ..Default::default()
        };
        let limits = Limits::from(&settings);
        let mut outbox: Vec<(TenantId, Notification)> = Vec::new();
        for (tenant, transitions) in rules::evaluate_fleet(&round.tenants, &limits, now) {
            let mut tx = self.state.db.tenant(tenant).await?;
            for t in &transitions {
                let key = t.key();
                match t {
                    Transition::Fire { summary, .. } => {
                        repo::raise(&mut tx, &key.alert, &key.subject, summary, now).await?;
                        report.fired += 1;
                    }
                    Transition::Hold { .. } => {
                        repo::set_clear_since(&mut tx, &key.alert, &key.subject, None).await?;
                    }
                    Transition::Clear { .. } => {
                        repo::set_clear_since(&mut tx, &key.alert, &key.subject, Some(now)).await?;
                    }
                    Transition::Resolve { .. } => {
                        repo::resolve(&mut tx, &key.alert, &key.subject, now).await?;
                        report.resolved += 1;
                    }
                }
            }
            tx.commit().await?;
            let name = round.names.get(&tenant).cloned().unwrap_or_default();
            outbox.extend(
                transitions
                    .into_iter()
                    .filter_map(|t| notification(tenant, &name, t, now))
                    .map(|n| (tenant, n)),
            );
        }
        self.state.metrics.alert_evaluation();
        if self.last_flush.elapsed() >= settings.availability_flush {
            self.flush_availability().await?;
        }
        if !outbox.is_empty() {
            report.notifications = notify::deliver(&self.state, &self.notifier, outbox).await;
        }
        Ok(report)
    }

    /// Adds the time since the last round to each active tenant's
    /// availability, as up if its worker runs with a fresh heartbeat.
    fn account(&mut self, tenants: &[TenantInput], now: DateTime<Utc>) {
        let settings = &self.state.settings.alerts;
        let elapsed = self
            .last_round
            .map(|t| t.elapsed())
            .unwrap_or_default()
            // A gap (standby, a stall) is not counted either way.
            .min(settings.interval.saturating_mul(3));
        self.last_round = Some(Instant::now());
        let elapsed_ms = i64::try_from(elapsed.as_millis()).unwrap_or(0);
        if elapsed_ms == 0 {
            return;
        }
        let stale = chrono::Duration::from_std(settings.availability_stale)
            .unwrap_or(chrono::Duration::MAX);
        let minute = now
            .duration_trunc(chrono::Duration::minutes(1))
            .unwrap_or(now);
        for t in tenants.iter().filter(|t| t.state.wants_worker()) {
            let up = t.worker == "running" && t.heartbeat_at.is_some_and(|at| now - at < stale);
            let slot = self.availability.entry((t.tenant, minute)).or_default();
            slot.0 += elapsed_ms;
            if up {
                slot.1 += elapsed_ms;
            }
        }
    }

    /// Writes the accumulated availability (one small upsert per tenant and minute).
    pub async fn flush_availability(&mut self) -> Result<(), DbError> {
        self.last_flush = Instant::now();
        let pending = std::mem::take(&mut self.availability);
        let mut by_tenant: BTreeMap<TenantId, Vec<(DateTime<Utc>, i64, i64)>> = BTreeMap::new();
        for ((tenant, minute), (desired, up)) in pending {
            by_tenant
                .entry(tenant)
                .or_default()
                .push((minute, desired, up));
        }
        for (tenant, rows) in by_tenant {
            let mut tx = self.state.db.tenant(tenant).await?;
            for (minute, desired, up) in rows {
                repo::add_availability(&mut tx, minute, desired, up).await?;
            }
            tx.commit().await?;
        }
        Ok(())
    }
}

/// The message a transition sends, if it sends one.
fn notification(
    tenant: TenantId,
    name: &str,
    transition: Transition,
    at: DateTime<Utc>,
) -> Option<Notification> {
    let (key, status, summary) = match transition {
        Transition::Fire { key, summary } => (key, "firing", summary),
        Transition::Resolve { key, summary } => (key, "resolved", summary),
        Transition::Hold { .. } | Transition::Clear { .. } => return None,
    };
    Some(Notification {
        alert: key.alert,
        status,
        tenant_id: tenant.as_uuid(),
        tenant_name: name.to_owned(),
        subject: key.subject,
        summary,
        at,
    })
}
