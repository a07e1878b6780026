//! The reconciler: level-triggered, idempotent, one leader at a time.
//!
//! Each pass reads what should run (the store's fleet read model,
//! `repo::fleet::desired`) and what runs (the launcher), decides with the
//! pure [`plan::plan`], acts with bounded concurrency, and writes what it
//! observed and did through `repo::runtime` (the `tenant_runtime` row and the
//! tenant's timeline). No SQL is written here. It never learns why it runs: a timer, an API
//! change ([`AppState::wake`](crate::AppState::wake)) or a new leadership all
//! lead to the same full pass. Only the replica holding the Postgres advisory
//! lock reconciles; the others stand by and take over within seconds of its
//! death.

mod billing;
pub mod plan;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use polybot_core::lifecycle::TenantState;
use polybot_core::{Mode, TenantId, worker};
use polybot_launcher::{Instance, LaunchSpec, Launcher, Phase};
use polybot_secrets::SecretStore;
use polybot_store::repo::fleet::{self, DesiredRow};
use polybot_store::repo::housekeeping;
use polybot_store::repo::runtime::{self, Observation};
use polybot_store::{Db, DbError};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use self::plan::{Action, Backoff, Desired};

/// How stale `tenant_runtime.observed_at` may get before an unchanged
/// tenant's row is written again.
const OBSERVED_REFRESH: Duration = Duration::from_secs(30);

/// How often the leader prunes old heartbeats and idempotency records.
const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// How often the leader finishes onboardings and offboardings left unfinished
/// (a failed role drop, a control plane that died mid-way).
const RESUME_EVERY: Duration = Duration::from_secs(30);

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
    /// How long a tenant's worker keeps running after its payment went
    /// missing (see `billing::payment_hold`).
    pub payment_grace: Duration,
    /// Finishes unfinished onboardings and offboardings every
    /// `RESUME_EVERY` (see [`Reconciler::with_provisioner`]).
    provisioner: Option<crate::provision::Provisioner>,
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
    /// The plan's worker size and any payment hold.
    terms: billing::Terms,
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
pub use polybot_store::repo::housekeeping::Pruned;

/// Rows of each kind one round of housekeeping deletes at most.
const PRUNE_BATCH: i32 = 50_000;

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
            payment_grace: Duration::from_secs(72 * 3600),
            metrics: crate::metrics::Metrics::default(),
            provisioner: None,
        }
    }

    /// Retries, while leading, every onboarding and offboarding left
    /// unfinished, so that no tenant stays `offboarding` after a failure.
    pub fn with_provisioner(mut self, provisioner: crate::provision::Provisioner) -> Self {
        self.provisioner = Some(provisioner);
        self
    }

    /// Runs [`Provisioner::resume_all`](crate::provision::Provisioner::resume_all)
    /// if a provisioner was given; returns how many tenants it took up.
    pub async fn resume_unfinished(&self) -> Result<usize, crate::provision::ProvisionError> {
        match &self.provisioner {
            Some(provisioner) => provisioner.resume_all().await,
            None => Ok(0),
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
            let mut next_resume = tokio::time::Instant::now() + RESUME_EVERY;
            loop {
                if tokio::time::Instant::now() >= next_resume {
                    match self.resume_unfinished().await {
                        Ok(0) => {}
                        Ok(resumed) => tracing::info!(resumed, "took up unfinished onboardings"),
                        Err(err) => {
                            tracing::warn!(error = %err, "resuming unfinished onboardings failed")
                        }
                    }
                    next_resume += RESUME_EVERY;
                }
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
        let mut op = self.db.operator().await?;
        let rows = fleet::desired(&mut op).await?;
        let standings = polybot_store::repo::billing::standings(&mut op).await?;
        op.commit().await?;
        let mut terms = billing::terms(standings, Utc::now(), self.payment_grace);
        Ok(rows
            .into_iter()
            .map(|row| {
                let mut row = self.row(row);
                if let Some(terms) = terms.remove(&row.desired.tenant) {
                    billing::apply(&mut row.desired, &terms);
                    row.terms = terms;
                }
                row
            })
            .collect())
    }

    /// A tenant as a pass plans it, from the store's read.
    fn row(&self, row: DesiredRow) -> Row {
        let mode: Mode = row.mode.parse().unwrap_or_default();
        let runtime = row.runtime;
        Row {
            desired: Desired {
                tenant: TenantId::from_uuid(row.id),
                run: row.state.wants_worker(),
                spec_hash: salted(
                    crate::provision::hash_spec(
                        mode.as_str(),
                        row.spec_version,
                        &row.strategies,
                        &row.risk,
                        row.secret_version,
                    ),
                    &self.spec_salt,
                ),
                restarts: runtime
                    .as_ref()
                    .and_then(|r| u32::try_from(r.restarts).ok())
                    .unwrap_or(0),
                backoff_until: runtime.as_ref().and_then(|r| r.backoff_until),
            },
            mode,
            failed: row.state == TenantState::Failed,
            last_heartbeat: row.last_heartbeat,
            stored: runtime.map(|r| Stored {
                actual: r.actual,
                instance_id: r.instance_id,
                spec_hash: r.spec_hash,
                observed_at: r.observed_at,
            }),
            terms: billing::Terms::default(),
        }
    }

    /// Housekeeping, in bounded batches: heartbeats older than a day (each
    /// tenant keeps its newest), idempotency records older than a day,
    /// availability minutes older than 35 days (the SLO looks back 30) and
    /// timeline events older than 90 days.
    pub async fn prune(&self) -> Result<Pruned, DbError> {
        let mut op = self.db.operator().await?;
        let pruned = housekeeping::prune(&mut op, PRUNE_BATCH).await?;
        op.commit().await?;
        Ok(pruned)
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
                match self.start(tenant, spec_hash, row).await {
                    Ok(instance) => Outcome::Started(instance),
                    Err(message) => Outcome::Failed(message),
                }
            }
            Action::Stop {
                instance, reason, ..
            } => {
                // A payment hold is the reason, whatever the planner says.
                let reason = row.and_then(|r| r.terms.hold.clone()).unwrap_or(reason);
                match self.launcher.stop(&instance, &reason).await {
                    Ok(()) => Outcome::Stopped(instance.id, reason),
                    Err(err) => Outcome::Failed(err.to_string()),
                }
            }
            Action::RecordExit {
                instance_id,
                exit,
                crashed,
                restarts,
                backoff_until,
                ..
            } => Outcome::Exited {
                instance_id,
                fenced: exit.code == Some(worker::exit::FENCED),
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
        row: &Row,
    ) -> Result<Instance, String> {
        let mode = row.mode;
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
            secret_env.insert(worker::env::DATABASE_URL.to_owned(), database_url);
            secret_env.insert(
                worker::env::EXCHANGE_KEYS.to_owned(),
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
            .set_worker_size(tenant, row.terms.size)
            .map_err(|e| e.to_string())?;
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
        if let Some(hold) = &row.terms.hold {
            last_error = Some(hold.clone());
        }
        let mut tx = self.db.tenant(tenant).await?;
        runtime::record(
            &mut tx,
            &Observation {
                desired: if row.desired.run {
                    "running"
                } else if row.terms.hold.is_some() {
                    runtime::HELD_FOR_PAYMENT
                } else {
                    "stopped"
                },
                actual,
                instance_id: current.map(|i| i.id.clone()),
                spec_hash: row.desired.spec_hash.clone(),
                restarts: i32::try_from(restarts).unwrap_or(i32::MAX),
                backoff_until,
                last_exit,
                last_error,
                last_action,
            },
        )
        .await?;
        for (kind, detail) in events {
            runtime::add_event(&mut tx, kind, &detail).await?;
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
