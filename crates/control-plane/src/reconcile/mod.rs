//! The reconciler: level-triggered, idempotent, one leader at a time.
//!
//! Each pass reads what should run (Postgres) and what runs (the launcher),
//! decides with the pure [`plan::plan`], acts with bounded concurrency, and
//! writes what it observed and did to `tenant_runtime` (and the timeline,
//! `tenant_runtime_events`). It never learns why it runs: a timer, an API
//! change ([`AppState::wake`](crate::AppState::wake)) or a new leadership all
//! lead to the same full pass. Only the replica holding the Postgres advisory
//! lock reconciles; the others stand by and take over within seconds of its
//! death.

pub mod plan;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use polybot_core::{Mode, TenantId};
use polybot_launcher::{Instance, LaunchSpec, Launcher, Phase};
use polybot_secrets::SecretStore;
use polybot_store::{Db, DbError};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use self::plan::{Action, Backoff, Desired};

/// The exit code of a worker fenced off by a newer one (`polybot_worker::EXIT_FENCED`).
const EXIT_FENCED: i32 = 3;

/// How stale `tenant_runtime.observed_at` may get before an unchanged
/// tenant's row is written again.
const OBSERVED_REFRESH: Duration = Duration::from_secs(30);

/// How often the leader prunes old heartbeats and idempotency records.
const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// The advisory-lock key of reconciler leadership.
pub const LEADER_KEY: i64 = 0x706f_6c79_626f_7401;

/// Drives the launcher towards the desired state.
#[derive(Clone)]
pub struct Reconciler {
    db: Db,
    launcher: Arc<dyn Launcher>,
    secrets: Arc<dyn SecretStore>,
    wake: Arc<Notify>,
    /// The time between passes when nothing wakes it.
    pub interval: Duration,
    pub backoff: Backoff,
    /// How many launcher calls run at once.
    pub concurrency: usize,
    /// Plain environment for every worker (endpoint overrides, replay data).
    pub worker_env: BTreeMap<String, String>,
    /// A heartbeat older than this makes a running worker `starting` again in status.
    pub heartbeat_stale: Duration,
    /// Mixed into every spec hash: what the launcher runs (the worker image
    /// on ECS), so that a new image replaces every worker.
    pub spec_salt: String,
    /// Where pass durations and actions are counted (see [`Reconciler::with_metrics`]).
    metrics: crate::metrics::Metrics,
}

impl std::fmt::Debug for Reconciler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reconciler")
            .field("launcher", &self.launcher.kind())
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

/// One tenant as a pass reads it.
#[derive(Debug, Clone)]
struct Row {
    desired: Desired,
    mode: Mode,
    failed: bool,
    last_heartbeat: Option<DateTime<Utc>>,
    /// What `tenant_runtime` holds now, to skip writing it again unchanged.
    stored: Option<Stored>,
}

/// The observed part of a `tenant_runtime` row.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stored {
    actual: String,
    instance_id: Option<String>,
    spec_hash: Option<String>,
    observed_at: DateTime<Utc>,
}

/// What one round of housekeeping deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub heartbeats: u64,
    pub idempotency_keys: u64,
    pub availability_minutes: u64,
    pub timeline_events: u64,
}

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassReport {
    pub tenants: usize,
    pub instances: usize,
    pub started: usize,
    pub stopped: usize,
    pub exits: usize,
    pub errors: usize,
}

impl Reconciler {
    pub fn new(
        db: Db,
        launcher: Arc<dyn Launcher>,
        secrets: Arc<dyn SecretStore>,
        wake: Arc<Notify>,
    ) -> Self {
        Self {
            db,
            launcher,
            secrets,
            wake,
            interval: Duration::from_secs(2),
            backoff: Backoff::default(),
            concurrency: 8,
            worker_env: BTreeMap::new(),
            heartbeat_stale: Duration::from_secs(30),
            spec_salt: String::new(),
            metrics: crate::metrics::Metrics::default(),
        }
    }

    /// Counts passes, actions and launcher calls in `metrics` (the
    /// `AppState`'s, so that `/metrics` shows them).
    pub fn with_metrics(mut self, metrics: crate::metrics::Metrics) -> Self {
        self.launcher = crate::metrics::InstrumentedLauncher::wrap(self.launcher, metrics.clone());
        self.metrics = metrics;
        self
    }

    /// Stands by until it holds leadership, then reconciles until `stop` (or
    /// until the lock is lost, and then stands by again).
    pub async fn run(self, stop: CancellationToken) {
        loop {
            let lock = tokio::select! {
                _ = stop.cancelled() => return,
                lock = self.db.try_lead(LEADER_KEY) => lock,
            };
            let mut lock = match lock {
                Ok(Some(lock)) => lock,
                Ok(None) => {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_millis(500)) => continue,
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, "cannot take the reconciler lock; retrying");
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(2)) => continue,
                    }
                }
            };
            tracing::info!("this control plane is the reconciler leader");
            let mut next_prune = tokio::time::Instant::now();
            loop {
                if tokio::time::Instant::now() >= next_prune {
                    match self.prune().await {
                        Ok(pruned) if pruned == Pruned::default() => {}
                        Ok(pruned) => tracing::info!(?pruned, "pruned old rows"),
                        Err(err) => tracing::warn!(error = %err, "pruning old rows failed"),
                    }
                    next_prune += PRUNE_EVERY;
                }
                if !lock.still_held().await {
                    tracing::warn!("lost the reconciler lock; standing by");
                    break;
                }
                let started = std::time::Instant::now();
                let result = self.pass().await;
                match &result {
                    Ok(r) => self.metrics.observe_reconcile(
                        started.elapsed(),
                        &[
                            ("started", r.started),
                            ("stopped", r.stopped),
                            ("exits", r.exits),
                            ("errors", r.errors),
                        ],
                    ),
                    Err(_) => self.metrics.reconcile_failed(),
                }
                match result {
                    Ok(report)
                        if report
                            != PassReport {
                                tenants: report.tenants,
                                instances: report.instances,
                                ..Default::default()
                            } =>
                    {
                        tracing::info!(?report, "reconcile pass");
                    }
                    Ok(_) => {}
                    Err(err) => {
                        tracing::warn!(error = %err, "reconcile pass failed; next pass soon")
                    }
                }
                tokio::select! {
                    _ = stop.cancelled() => {
                        lock.release().await;
                        return;
                    }
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(self.interval) => {}
                }
            }
        }
    }

    async fn read_desired(&self) -> Result<Vec<Row>, DbError> {
        type DesiredRow = (
            Uuid,
            String,
            String,
            i64,
            serde_json::Value,
            serde_json::Value,
            Option<i64>,
            Option<i32>,
            Option<DateTime<Utc>>,
            Option<DateTime<Utc>>,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<DateTime<Utc>>,
        );
        let mut op = self.db.operator().await?;
        let rows: Vec<DesiredRow> = sqlx::query_as(
            "SELECT t.id, t.state, t.mode, t.spec_version, c.strategies, c.risk, s.version, \
                    r.restarts, r.backoff_until, \
                    (SELECT max(at) FROM worker_heartbeats h WHERE h.tenant_id = t.id), \
                    r.actual, r.instance_id, r.spec_hash, r.observed_at \
             FROM tenants t JOIN tenant_configs c ON c.tenant_id = t.id \
             LEFT JOIN tenant_secrets s ON s.tenant_id = t.id \
             LEFT JOIN tenant_runtime r ON r.tenant_id = t.id \
             WHERE t.state <> 'offboarded' OR r.actual NOT IN ('stopped')",
        )
        .fetch_all(&mut *op)
        .await
        .map_err(DbError::query("reading the desired state"))?;
        op.commit().await?;
        Ok(rows
            .into_iter()
            .map(
                |(
                    id,
                    state,
                    mode,
                    spec_version,
                    strategies,
                    risk,
                    secret_version,
                    restarts,
                    backoff_until,
                    hb,
                    actual,
                    instance_id,
                    stored_hash,
                    observed_at,
                )| {
                    let mode: Mode = mode.parse().unwrap_or_default();
                    Row {
                        desired: Desired {
                            tenant: TenantId::from_uuid(id),
                            run: state == "active",
                            spec_hash: salted(
                                crate::provision::hash_spec(
                                    mode.as_str(),
                                    spec_version,
                                    &strategies,
                                    &risk,
                                    secret_version,
                                ),
                                &self.spec_salt,
                            ),
                            restarts: restarts.and_then(|r| u32::try_from(r).ok()).unwrap_or(0),
                            backoff_until,
                        },
                        mode,
                        failed: state == "failed",
                        last_heartbeat: hb,
                        stored: actual.zip(observed_at).map(|(actual, observed_at)| Stored {
                            actual,
                            instance_id,
                            spec_hash: stored_hash,
                            observed_at,
                        }),
                    }
                },
            )
            .collect())
    }

    /// Housekeeping, in bounded batches: heartbeats older than a day (each
    /// tenant keeps its newest), idempotency records older than a day,
    /// availability minutes older than 35 days (the SLO looks back 30) and
    /// timeline events older than 90 days.
    pub async fn prune(&self) -> Result<Pruned, DbError> {
        let mut op = self.db.operator().await?;
        let (heartbeats, idempotency_keys): (i64, i64) = sqlx::query_as(
            "SELECT heartbeats, idempotency_keys FROM \
             polybot.prune_history(interval '1 day', interval '1 day', 50000)",
        )
        .fetch_one(&mut *op)
        .await
        .map_err(DbError::query("pruning old heartbeats"))?;
        let (availability, events): (i64, i64) = sqlx::query_as(
            "SELECT availability, events FROM \
             polybot.prune_timeline(interval '35 days', interval '90 days', 50000)",
        )
        .fetch_one(&mut *op)
        .await
        .map_err(DbError::query("pruning old availability and timeline rows"))?;
        op.commit().await?;
        let n = |x: i64| u64::try_from(x).unwrap_or(0);
        Ok(Pruned {
            heartbeats: n(heartbeats),
            idempotency_keys: n(idempotency_keys),
            availability_minutes: n(availability),
            timeline_events: n(events),
        })
    }

    /// One full pass.
    pub async fn pass(&self) -> Result<PassReport, DbError> {
        let rows = self.read_desired().await?;
        let actual = match self.launcher.list().await {
            Ok(actual) => actual,
            Err(err) => {
                // Without knowing what runs, do nothing but say why.
                tracing::warn!(error = %err, "the launcher could not list workers");
                return Ok(PassReport {
                    tenants: rows.len(),
                    errors: 1,
                    ..Default::default()
                });
            }
        };
        let now = Utc::now();
        let desired: Vec<Desired> = rows.iter().map(|r| r.desired.clone()).collect();
        let actions = plan::plan(&desired, &actual, now, &self.backoff);
        let mut report = PassReport {
            tenants: rows.len(),
            instances: actual.iter().filter(|i| i.phase.is_live()).count(),
            ..Default::default()
        };

        // Record exits first (they decide back-off), then act.
        let mut outcomes: HashMap<TenantId, Vec<Outcome>> = HashMap::new();
        let by_tenant: HashMap<TenantId, &Row> =
            rows.iter().map(|r| (r.desired.tenant, r)).collect();
        let by_tenant = &by_tenant;
        let results: Vec<(TenantId, Outcome)> = futures::stream::iter(actions)
            .map(|action| async move {
                let tenant = action.tenant();
                (
                    tenant,
                    self.execute(action, by_tenant.get(&tenant).copied()).await,
                )
            })
            .buffer_unordered(self.concurrency.max(1))
            .collect()
            .await;
        for (tenant, outcome) in results {
            match &outcome {
                Outcome::Started(_) => report.started += 1,
                Outcome::Stopped(..) => report.stopped += 1,
                Outcome::Exited { .. } => report.exits += 1,
                Outcome::Failed(_) => report.errors += 1,
                Outcome::Reset => {}
            }
            outcomes.entry(tenant).or_default().push(outcome);
        }

        for row in &rows {
            let tenant = row.desired.tenant;
            let live: Vec<&Instance> = actual
                .iter()
                .filter(|i| i.tenant == tenant && i.phase.is_live())
                .collect();
            self.record(
                row,
                &live,
                outcomes.remove(&tenant).unwrap_or_default(),
                now,
            )
            .await?;
        }
        Ok(report)
    }

    async fn execute(&self, action: Action, row: Option<&Row>) -> Outcome {
        match action {
            Action::Start { tenant, spec_hash } => {
                let Some(row) = row else {
                    return Outcome::Failed("the tenant vanished".into());
                };
                match self.start(tenant, spec_hash, row.mode).await {
                    Ok(instance) => Outcome::Started(instance),
                    Err(message) => Outcome::Failed(message),
                }
            }
            Action::Stop {
                instance, reason, ..
            } => match self.launcher.stop(&instance, &reason).await {
                Ok(()) => Outcome::Stopped(instance.id, reason),
                Err(err) => Outcome::Failed(err.to_string()),
            },
            Action::RecordExit {
                instance_id,
                exit,
                crashed,
                restarts,
                backoff_until,
                ..
            } => Outcome::Exited {
                instance_id,
                fenced: exit.code == Some(EXIT_FENCED),
                reason: exit.reason,
                crashed,
                restarts,
                backoff_until,
            },
            Action::ResetRestarts { .. } => Outcome::Reset,
        }
    }

    async fn start(
        &self,
        tenant: TenantId,
        spec_hash: String,
        mode: Mode,
    ) -> Result<Instance, String> {
        let mut tx = self.db.tenant(tenant).await.map_err(|e| e.to_string())?;
        let reference = self
            .secrets
            .reference(&mut tx)
            .await
            .map_err(|e| e.to_string())?;
        let venues = polybot_secrets::fingerprints(&mut tx)
            .await
            .map_err(|e| e.to_string())?;
        // A launcher that injects secrets itself (ECS, from the secret's ARN)
        // never gets them in plaintext; local processes get them as env.
        let secret = if !self.launcher.injects_secrets() {
            let secret = self.secrets.get(&mut tx).await.map_err(|e| e.to_string())?;
            Some(secret.ok_or("the tenant has no secret (onboarding incomplete)")?)
        } else {
            None
        };
        tx.commit().await.map_err(|e| e.to_string())?;
        let mut secret_env = BTreeMap::new();
        if let Some(secret) = &secret {
            let database_url = secret
                .database_url
                .clone()
                .ok_or("the tenant's secret has no database credentials (onboarding incomplete)")?;
            secret_env.insert("DATABASE_URL".to_owned(), database_url);
            secret_env.insert(
                "EXCHANGE_KEYS".to_owned(),
                secret.exchange_keys.to_secret_json(),
            );
        }
        let spec = LaunchSpec {
            tenant,
            spec_hash,
            mode,
            ibkr: venues.get("ibkr").is_some(),
            secret_env,
            secret_reference: reference,
            env: self.worker_env.clone(),
        };
        self.launcher
            .ensure_spec(&spec)
            .await
            .map_err(|e| e.to_string())?;
        self.launcher.start(&spec).await.map_err(|e| e.to_string())
    }

    /// Writes what this pass saw and did for one tenant.
    async fn record(
        &self,
        row: &Row,
        live: &[&Instance],
        outcomes: Vec<Outcome>,
        now: DateTime<Utc>,
    ) -> Result<(), DbError> {
        let tenant = row.desired.tenant;
        let mut restarts = row.desired.restarts;
        let mut backoff_until = row.desired.backoff_until;
        let mut last_exit: Option<String> = None;
        let mut last_error: Option<String> = None;
        let mut last_action: Option<String> = None;
        let mut events: Vec<(&'static str, String)> = Vec::new();
        let mut started: Option<&Instance> = None;
        for outcome in &outcomes {
            match outcome {
                Outcome::Started(instance) => {
                    started = Some(instance);
                    last_action = Some(format!("started worker {}", instance.id));
                    events.push((
                        "started",
                        format!(
                            "worker {} started (spec {})",
                            instance.id, instance.spec_hash
                        ),
                    ));
                }
                Outcome::Stopped(id, reason) => {
                    last_action = Some(format!("stopping worker {id}: {reason}"));
                    events.push(("stopping", format!("worker {id}: {reason}")));
                }
                Outcome::Exited {
                    instance_id,
                    reason,
                    crashed,
                    fenced,
                    restarts: r,
                    backoff_until: b,
                } => {
                    restarts = *r;
                    backoff_until = *b;
                    last_exit = Some(format!("worker {instance_id}: {reason}"));
                    if *crashed {
                        last_error = Some(format!("worker {instance_id} crashed: {reason}"));
                    }
                    let kind = match (fenced, crashed) {
                        (true, _) => "fenced",
                        (false, true) => "crashed",
                        (false, false) => "exited",
                    };
                    events.push((kind, format!("worker {instance_id}: {reason}")));
                }
                Outcome::Failed(message) => {
                    last_error = Some(format!("{} launcher: {message}", self.launcher.kind()));
                    events.push(("error", message.clone()));
                }
                Outcome::Reset => {
                    restarts = 0;
                    backoff_until = None;
                    events.push(("steady", "worker steady; restart count reset".into()));
                }
            }
        }
        let current = started.or_else(|| {
            live.iter()
                .copied()
                .filter(|i| i.spec_hash == row.desired.spec_hash)
                .max_by_key(|i| i.started_at)
        });
        let fresh_heartbeat = |instance: &Instance| {
            row.last_heartbeat.is_some_and(|hb| {
                hb >= instance.started_at - chrono::Duration::seconds(1)
                    && now - hb
                        < chrono::Duration::from_std(self.heartbeat_stale).unwrap_or_default()
            })
        };
        let actual = if row.failed {
            "failed"
        } else if row.desired.run {
            match current {
                Some(i) if i.phase == Phase::Running && fresh_heartbeat(i) => "running",
                Some(_) => "starting",
                None if backoff_until.is_some_and(|u| u > now) => "crash_loop",
                None => "pending",
            }
        } else if live.is_empty() {
            "stopped"
        } else {
            "stopping"
        };
        // Nothing happened and nothing changed: no write (one transaction per
        // tenant per pass would cost the database more than the pass itself),
        // except to refresh `observed_at` now and then.
        let unchanged = outcomes.is_empty()
            && row.stored.as_ref().is_some_and(|s| {
                s.actual == actual
                    && s.instance_id == current.map(|i| i.id.clone())
                    && s.spec_hash.as_deref() == Some(row.desired.spec_hash.as_str())
                    && now - s.observed_at
                        < chrono::Duration::from_std(OBSERVED_REFRESH).unwrap_or_default()
            });
        if unchanged {
            return Ok(());
        }
        let mut tx = self.db.tenant(tenant).await?;
        sqlx::query(
            "INSERT INTO tenant_runtime (tenant_id, desired, actual, instance_id, spec_hash, restarts, backoff_until, \
                last_exit, last_error, last_action, last_action_at, observed_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, CASE WHEN $10 IS NULL THEN NULL ELSE now() END, now()) \
             ON CONFLICT (tenant_id) DO UPDATE SET desired = EXCLUDED.desired, actual = EXCLUDED.actual, \
                instance_id = EXCLUDED.instance_id, spec_hash = EXCLUDED.spec_hash, restarts = EXCLUDED.restarts, \
                backoff_until = EXCLUDED.backoff_until, \
                last_exit = coalesce(EXCLUDED.last_exit, tenant_runtime.last_exit), \
                last_error = CASE WHEN EXCLUDED.actual = 'running' THEN NULL \
                                  ELSE coalesce(EXCLUDED.last_error, tenant_runtime.last_error) END, \
                last_action = coalesce(EXCLUDED.last_action, tenant_runtime.last_action), \
                last_action_at = coalesce(EXCLUDED.last_action_at, tenant_runtime.last_action_at), \
                observed_at = now()",
        )
        .bind(tenant.as_uuid())
        .bind(if row.desired.run { "running" } else { "stopped" })
        .bind(actual)
        .bind(current.map(|i| i.id.clone()))
        .bind(&row.desired.spec_hash)
        .bind(i32::try_from(restarts).unwrap_or(i32::MAX))
        .bind(backoff_until)
        .bind(last_exit)
        .bind(last_error)
        .bind(last_action)
        .execute(&mut *tx)
        .await
        .map_err(DbError::query("recording what the reconciler observed"))?;
        for (kind, detail) in events {
            sqlx::query(
                "INSERT INTO tenant_runtime_events (tenant_id, kind, detail) VALUES ($1, $2, $3)",
            )
            .bind(tenant.as_uuid())
            .bind(kind)
            .bind(detail)
            .execute(&mut *tx)
            .await
            .map_err(DbError::query("recording a reconciler event"))?;
        }
        tx.commit().await
    }
}

/// `hash` with `salt` mixed in (unchanged when there is no salt).
fn salted(hash: String, salt: &str) -> String {
    if salt.is_empty() {
        return hash;
    }
    use sha2::{Digest, Sha256};
    hex::encode(&Sha256::digest(format!("{hash}:{salt}").as_bytes())[..16])
}

#[derive(Debug)]
enum Outcome {
    Started(Instance),
    Stopped(String, String),
    Exited {
        instance_id: String,
        reason: String,
        crashed: bool,
        /// It exited because a newer worker took its lease.
        fenced: bool,
        restarts: u32,
        backoff_until: Option<DateTime<Utc>>,
    },
    Failed(String),
    Reset,
}
