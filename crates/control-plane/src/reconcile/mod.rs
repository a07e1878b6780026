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
//!
//! Exits are counted once, by instance id, through `repo::exits`: every
//! listing reports the stopped tasks the platform still knows, and the pass
//! leaves out those already recorded, whichever leader recorded them. With a
//! task-event source ([`Reconciler::with_events`], ECS task state changes
//! from SQS) the leader also long-polls it in a task of its own
//! ([`events`]): an event wakes a pass early and brings the exit it
//! describes, and the listing becomes a slow backstop.
//!
//! After recording, a pass takes one step of the fleet rollout, if one is
//! unfinished ([`crate::rollout::drive`]): so only the leader drives it. A
//! rollout's release (image and settings) is mixed into each tenant's spec
//! hash, which is how a tenant the rollout reached gets its worker replaced.

mod billing;
pub mod events;
pub mod plan;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use polybot_core::lifecycle::TenantState;
use polybot_core::{Mode, TenantId, worker};
use polybot_launcher::{Exit, Instance, LaunchError, LaunchSpec, Launcher, Phase, TaskEvents};
use polybot_secrets::SecretStore;
use polybot_store::repo::exits::{self, NewExit};
use polybot_store::repo::fleet::{self, DesiredRow};
use polybot_store::repo::housekeeping;
use polybot_store::repo::rollouts::{self, Release};
use polybot_store::repo::runtime::{self, Observation};
use polybot_store::{Db, DbError, TenantTx};
use secrecy::SecretString;
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
/// Worker claims are renewed this long before they expire (they last a
/// year, `polybot_store::claims::DEFAULT_LIFETIME`).
pub const RENEW_CLAIMS_BEFORE: Duration = Duration::from_secs(30 * 24 * 3600);

/// The advisory-lock key of reconciler leadership.
pub const LEADER_KEY: i64 = 0x706f_6c79_626f_7401;

/// Drives the launcher towards the desired state.
#[derive(Clone)]
pub struct Reconciler {
    db: Db,
    launcher: Arc<dyn Launcher>,
    secrets: Arc<dyn SecretStore>,
    wake: Arc<Notify>,
    /// The time between passes when nothing wakes it (without a task-event
    /// source; with one, while a worker is starting, stopping or pending).
    pub interval: Duration,
    /// With a task-event source: the time between passes of a settled fleet
    /// (the ListTasks backstop); a back-off that ends sooner wakes it sooner.
    pub backstop_interval: Duration,
    /// Task state changes (ECS events through SQS), consumed by the leader.
    events: Option<Arc<dyn TaskEvents>>,
    /// Exits the event consumer received, for the next pass to record; each
    /// with its message's receipt, deleted once the pass has recorded it.
    inbox: Arc<Mutex<Vec<events::Pending>>>,
    pub backoff: Backoff,
    /// How many launcher calls run at once.
    pub concurrency: usize,
    /// Plain environment for every worker (endpoint overrides, replay data).
    pub worker_env: BTreeMap<String, String>,
    /// The operator's secrets for every worker (the NewsAPI key), from the
    /// local secret store ([`crate::worker_settings`]): handed over with the
    /// tenant's own secrets by launchers that do not inject secrets (ECS
    /// injects its own `polybot/workers/settings`).
    pub worker_secrets: BTreeMap<String, SecretString>,
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
    /// The time a rollout's pace is measured by (tests step it with their
    /// own clock; the rest of a pass reads the system's).
    pub clock: Clock,
}

/// Where the rollout step reads the time.
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

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
    /// Launches that failed in a row.
    launch_failures: u32,
    last_heartbeat: Option<DateTime<Utc>>,
    /// What `tenant_runtime` holds now, to skip writing it again unchanged.
    stored: Option<Stored>,
    /// The plan's worker size and any payment hold.
    terms: billing::Terms,
    /// What the worker runs beyond its spec: a rollout's image and settings
    /// (the tenant's own release, or the fleet's).
    release: Release,
    /// The rollout that gave the tenant its own release, and whether its
    /// worker is still being replaced.
    rolled_by: Option<(i64, bool)>,
    /// Not offboarding or offboarded: rollouts cover it.
    covered: bool,
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
    /// Tenants waiting for capacity (the account's Fargate quota).
    pub waiting: usize,
    /// No worker is starting, stopping or pending: the next pass can wait
    /// for an event or the backstop.
    pub settled: bool,
    /// The earliest back-off that ends after this pass, if any.
    pub next_backoff: Option<DateTime<Utc>>,
    /// What the rollout step did after the pass.
    pub rollout: crate::rollout::drive::StepReport,
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
            backstop_interval: Duration::from_secs(30),
            events: None,
            inbox: Arc::default(),
            backoff: Backoff::default(),
            concurrency: 8,
            worker_env: BTreeMap::new(),
            worker_secrets: BTreeMap::new(),
            heartbeat_stale: Duration::from_secs(30),
            spec_salt: String::new(),
            payment_grace: Duration::from_secs(72 * 3600),
            metrics: crate::metrics::Metrics::default(),
            provisioner: None,
            clock: Arc::new(Utc::now),
        }
    }

    /// Retries, while leading, every onboarding and offboarding left
    /// unfinished, so that no tenant stays `offboarding` after a failure.
    pub fn with_provisioner(mut self, provisioner: crate::provision::Provisioner) -> Self {
        self.provisioner = Some(provisioner);
        self
    }

    /// Runs [`Provisioner::resume_all`](crate::provision::Provisioner::resume_all)
    /// if a provisioner was given, then renews the worker claims due within
    /// [`RENEW_CLAIMS_BEFORE`] and drops the old login roles of moved tenants
    /// that no session uses any more; returns how many tenants it took up.
    pub async fn resume_unfinished(&self) -> Result<usize, crate::provision::ProvisionError> {
        match &self.provisioner {
            Some(provisioner) => {
                let resumed = provisioner.resume_all().await?;
                provisioner.renew_claims(RENEW_CLAIMS_BEFORE).await?;
                // A move to the shared login ends here, without the operator.
                provisioner.drop_unused_logins().await?;
                Ok(resumed)
            }
            None => Ok(0),
        }
    }

    /// Consumes `events` while leading: each wakes a pass early and brings
    /// the exit it describes; the launcher's listing runs at least every
    /// [`backstop_interval`](Self::backstop_interval).
    pub fn with_events(mut self, events: Arc<dyn TaskEvents>) -> Self {
        self.events = Some(events);
        self
    }

    /// Receives one batch of task events (waiting up to the source's long
    /// poll) and keeps their exits for the next pass; returns how many
    /// concern the launcher's workers. The leader's consumer does this in a
    /// loop; tests call it to step a reconciler by hand.
    pub async fn receive_events(&self) -> Result<usize, LaunchError> {
        let Some(source) = &self.events else {
            return Ok(0);
        };
        let batch = source.receive().await?;
        Ok(events::take(source.as_ref(), &self.inbox, batch).await)
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
            // The consumer runs while this replica leads: a standby leaves
            // the queue alone, and a message a dead leader received comes
            // back after its visibility timeout. Dropping the guard (losing
            // the lock, stopping) ends it.
            let consuming = CancellationToken::new();
            let _consumer = consuming.clone().drop_guard();
            let listening = consuming.child_token();
            if let Some(source) = &self.events {
                tokio::spawn(events::consume(
                    source.clone(),
                    self.inbox.clone(),
                    self.wake.clone(),
                    consuming,
                ));
            }
            // Changes accepted by other replicas arrive as announcements.
            tokio::spawn(listen_for_changes(
                self.db.clone(),
                self.wake.clone(),
                listening,
            ));
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
                let wait = self.next_wait(result.as_ref().ok(), (self.clock)());
                match result {
                    Ok(report)
                        if report.started + report.stopped + report.exits + report.errors > 0 =>
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
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
    }

    /// How long the leader waits for a wake-up before the next pass: the
    /// short interval without an event source or while workers are in
    /// motion; else the backstop, or less if a back-off ends sooner.
    fn next_wait(&self, report: Option<&PassReport>, now: DateTime<Utc>) -> Duration {
        // A rollout's next tenant is due: wake for it (not sooner than 100 ms).
        let until_rollout = report
            .and_then(|r| r.rollout.next_due)
            .map(|at| {
                (at - now)
                    .to_std()
                    .unwrap_or(Duration::ZERO)
                    .max(Duration::from_millis(100))
            })
            .unwrap_or(Duration::MAX);
        let Some(report) = report.filter(|r| r.settled && self.events.is_some()) else {
            return self.interval.min(until_rollout);
        };
        // A back-off that already ended (negative) is due now.
        let until_backoff = report
            .next_backoff
            .map(|at| (at - now).to_std().unwrap_or(Duration::ZERO))
            .unwrap_or(self.backstop_interval);
        self.backstop_interval
            .min(until_backoff)
            .max(self.interval.min(Duration::from_millis(100)))
            .min(until_rollout)
    }

    async fn read_desired(&self) -> Result<Vec<Row>, DbError> {
        let mut op = self.db.operator().await?;
        let rows = fleet::desired(&mut op).await?;
        let standings = polybot_store::repo::billing::standings(&mut op).await?;
        let fleet_release = rollouts::fleet_release(&mut op).await?;
        op.commit().await?;
        let mut terms = billing::terms(standings, Utc::now(), self.payment_grace);
        Ok(rows
            .into_iter()
            .map(|row| {
                let mut row = self.row(row, &fleet_release);
                if let Some(terms) = terms.remove(&row.desired.tenant) {
                    billing::apply(&mut row.desired, &terms);
                    row.terms = terms;
                }
                row
            })
            .collect())
    }

    /// A tenant as a pass plans it, from the store's read.
    fn row(&self, row: DesiredRow, fleet_release: &Release) -> Row {
        let mode: Mode = row.mode.parse().unwrap_or_default();
        let runtime = row.runtime;
        let (release, rolled_by) = match row.release {
            Some(own) => (own.release, Some((own.rollout_id, own.rolling))),
            None => (fleet_release.clone(), None),
        };
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
                    &release_salt(&self.spec_salt, &release),
                ),
                restarts: runtime
                    .as_ref()
                    .and_then(|r| u32::try_from(r.restarts).ok())
                    .unwrap_or(0),
                backoff_until: runtime.as_ref().and_then(|r| r.backoff_until),
            },
            mode,
            failed: row.state == TenantState::Failed,
            launch_failures: runtime
                .as_ref()
                .and_then(|r| u32::try_from(r.launch_failures).ok())
                .unwrap_or(0),
            last_heartbeat: row.last_heartbeat,
            stored: runtime.map(|r| Stored {
                actual: r.actual,
                instance_id: r.instance_id,
                spec_hash: r.spec_hash,
                observed_at: r.observed_at,
            }),
            terms: billing::Terms::default(),
            release,
            rolled_by,
            covered: !matches!(
                row.state,
                TenantState::Offboarding | TenantState::Offboarded
            ),
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
        let pending = std::mem::take(&mut *events::lock(&self.inbox));
        let result = self.pass_with(&pending).await;
        match &result {
            // Every exit an event brought is recorded (or was before): its
            // message can go.
            Ok((_, true)) if !pending.is_empty() => {
                if let Some(source) = &self.events {
                    events::delete(source.as_ref(), &pending).await;
                }
            }
            Ok((_, true)) => {}
            // Kept for the next pass; if this replica stops leading first,
            // the queue delivers them again after their visibility timeout.
            Ok((_, false)) | Err(_) => events::lock(&self.inbox).extend(pending),
        }
        result.map(|(report, _)| report)
    }

    /// A pass, and whether it recorded what it observed (not when the
    /// launcher could not list).
    async fn pass_with(&self, pending: &[events::Pending]) -> Result<(PassReport, bool), DbError> {
        let rows = self.read_desired().await?;
        let mut actual = match self.launcher.list().await {
            Ok(actual) => actual,
            Err(err) => {
                // Without knowing what runs, do nothing but say why.
                tracing::warn!(error = %err, "the launcher could not list workers");
                let report = PassReport {
                    tenants: rows.len(),
                    errors: 1,
                    ..Default::default()
                };
                return Ok((report, false));
            }
        };
        events::merge(&mut actual, pending);
        self.forget_recorded_exits(&mut actual).await?;
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
                Outcome::Failed(_) | Outcome::StartFailed(_) => report.errors += 1,
                Outcome::Waiting(_) => report.waiting += 1,
                Outcome::Reset => {}
            }
            outcomes.entry(tenant).or_default().push(outcome);
        }

        report.settled = true;
        let mut observed = Vec::with_capacity(rows.len());
        for row in &rows {
            let tenant = row.desired.tenant;
            let live: Vec<&Instance> = actual
                .iter()
                .filter(|i| i.tenant == tenant && i.phase.is_live())
                .collect();
            let outcomes = outcomes.remove(&tenant).unwrap_or_default();
            let failure = release_failure(row, &actual, &outcomes);
            let recorded = self.record(row, &live, outcomes, now).await?;
            report.settled &= !matches!(recorded.actual, "starting" | "stopping" | "pending");
            observed.push(crate::rollout::drive::Observed {
                tenant,
                covered: row.covered,
                release: row.release.clone(),
                rolled_by: row.rolled_by,
                settled: !row.desired.run || recorded.replaced,
                failure,
            });
            if let Some(until) = recorded.backoff_until.filter(|u| *u > now) {
                report.next_backoff = Some(report.next_backoff.map_or(until, |n| n.min(until)));
            }
        }
        // A rollout's trouble is the rollout's: logged, and the pass stands.
        match crate::rollout::drive::step(&self.db, &observed, (self.clock)()).await {
            Ok(step) => report.rollout = step,
            Err(err) => tracing::warn!(error = %err, "the rollout step failed; next pass retries"),
        }
        if report.rollout.begun > 0 {
            // The begun tenant's spec changed: replace its worker without
            // waiting for the backstop.
            report.settled = false;
        }
        Ok((report, true))
    }

    /// Leaves out of `actual` the exits already recorded (by this leader or
    /// an earlier one): each is counted once.
    async fn forget_recorded_exits(&self, actual: &mut Vec<Instance>) -> Result<(), DbError> {
        let exited: Vec<String> = actual
            .iter()
            .filter(|i| !i.phase.is_live())
            .map(|i| i.id.clone())
            .collect();
        if exited.is_empty() {
            return Ok(());
        }
        let mut op = self.db.operator().await?;
        let recorded = exits::recorded(&mut op, &exited).await?;
        op.commit().await?;
        // An exit recorded without its code stays in when this sighting
        // knows the code (the event after a part-way listing): the pass
        // completes the row without counting it again.
        actual.retain(|i| match (&i.phase, recorded.get(&i.id)) {
            (Phase::Exited(exit), Some(None)) => exit.code.is_some(),
            (_, Some(_)) => i.phase.is_live(),
            (_, None) => true,
        });
        Ok(())
    }

    async fn execute(&self, action: Action, row: Option<&Row>) -> Outcome {
        match action {
            Action::Start { tenant, spec_hash } => {
                let Some(row) = row else {
                    return Outcome::Failed("the tenant vanished".into());
                };
                match self.start(tenant, spec_hash, row).await {
                    Ok(instance) => Outcome::Started(instance),
                    Err(StartError::Capacity(message)) => Outcome::Waiting(message),
                    Err(StartError::Failed(message)) => Outcome::StartFailed(message),
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
                ..
            } => Outcome::Exited {
                instance_id,
                exit,
                crashed,
            },
            Action::ResetRestarts { .. } => Outcome::Reset,
        }
    }

    async fn start(
        &self,
        tenant: TenantId,
        spec_hash: String,
        row: &Row,
    ) -> Result<Instance, StartError> {
        let mode = row.mode;
        let failed = |e: &dyn std::fmt::Display| StartError::Failed(e.to_string());
        let mut tx = self.db.tenant(tenant).await.map_err(|e| failed(&e))?;
        let reference = self
            .secrets
            .reference(&mut tx)
            .await
            .map_err(|e| failed(&e))?;
        let venues = polybot_secrets::fingerprints(&mut tx)
            .await
            .map_err(|e| failed(&e))?;
        // A launcher that injects secrets itself (ECS, from the secret's ARN)
        // never gets them in plaintext; local processes get them as env.
        let secret = if !self.launcher.injects_secrets() {
            let secret = self.secrets.get(&mut tx).await.map_err(|e| failed(&e))?;
            Some(
                secret
                    .ok_or_else(|| failed(&"the tenant has no secret (onboarding incomplete)"))?,
            )
        } else {
            None
        };
        tx.commit().await.map_err(|e| failed(&e))?;
        let mut secret_env = BTreeMap::new();
        if let Some(secret) = &secret {
            let database_url = secret.database_url.clone().ok_or_else(|| {
                failed(&"the tenant's secret has no database credentials (onboarding incomplete)")
            })?;
            secret_env.insert(worker::env::DATABASE_URL.to_owned(), database_url);
            secret_env.insert(
                worker::env::EXCHANGE_KEYS.to_owned(),
                secret.exchange_keys.to_secret_json(),
            );
            secret_env.extend(self.worker_secrets.clone());
        }
        let spec = LaunchSpec {
            tenant,
            spec_hash,
            mode,
            ibkr: venues.get("ibkr").is_some(),
            secret_env,
            secret_reference: reference,
            env: self
                .worker_env
                .clone()
                .into_iter()
                .chain(row.release.settings.clone())
                .collect(),
        };
        self.launcher
            .set_worker_size(tenant, row.terms.size)
            .map_err(|e| failed(&e))?;
        self.launcher
            .set_worker_image(tenant, row.release.image.as_deref())
            .map_err(|e| failed(&e))?;
        let launched = match self.launcher.ensure_spec(&spec).await {
            Ok(()) => self.launcher.start(&spec).await,
            Err(err) => Err(err),
        };
        launched.map_err(|err| match err {
            LaunchError::Capacity { .. } => StartError::Capacity(err.to_string()),
            err => StartError::Failed(err.to_string()),
        })
    }

    /// Records `exit` of the tenant's instance `instance_id` in `tx`, opening
    /// it the first time; [`exits::Recorded::New`] if no reconciler recorded it
    /// before.
    async fn record_exit(
        &self,
        tenant: TenantId,
        tx: &mut Option<TenantTx>,
        instance_id: &str,
        exit: &Exit,
        crashed: bool,
    ) -> Result<exits::Recorded, DbError> {
        let tx = match tx {
            Some(tx) => tx,
            None => tx.insert(self.db.tenant(tenant).await?),
        };
        exits::record(
            tx,
            &NewExit {
                instance_id,
                exit_code: exit.code,
                reason: &exit.reason,
                requested: exit.requested,
                crashed,
                exited_at: exit.at,
            },
        )
        .await
    }

    /// Writes what this pass saw and did for one tenant; returns the state
    /// and back-off it recorded.
    async fn record(
        &self,
        row: &Row,
        live: &[&Instance],
        outcomes: Vec<Outcome>,
        now: DateTime<Utc>,
    ) -> Result<Recorded, DbError> {
        let tenant = row.desired.tenant;
        // Exits first, each in `worker_exits`: one that another pass or
        // leader recorded already changes nothing here.
        let mut tx: Option<TenantTx> = None;
        let mut counted: HashSet<&str> = HashSet::new();
        let mut completed: HashSet<&str> = HashSet::new();
        for outcome in &outcomes {
            if let Outcome::Exited {
                instance_id,
                exit,
                crashed,
            } = outcome
            {
                match self
                    .record_exit(tenant, &mut tx, instance_id, exit, *crashed)
                    .await?
                {
                    exits::Recorded::New => counted.insert(instance_id.as_str()),
                    exits::Recorded::Completed => completed.insert(instance_id.as_str()),
                    exits::Recorded::Known => false,
                };
            }
        }
        let mut restarts = row.desired.restarts;
        let mut backoff_until = row.desired.backoff_until;
        let mut launch_failures = row.launch_failures;
        let mut last_exit: Option<String> = None;
        let mut last_error: Option<String> = None;
        let mut last_action: Option<String> = None;
        let mut waiting: Option<&str> = None;
        let mut events: Vec<(&'static str, String)> = Vec::new();
        let mut started: Option<&Instance> = None;
        for outcome in &outcomes {
            match outcome {
                Outcome::Started(instance) => {
                    started = Some(instance);
                    launch_failures = 0;
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
                    exit,
                    crashed,
                } => {
                    if completed.contains(instance_id.as_str()) {
                        // Counted when first seen; now with its exit code.
                        last_exit = Some(format!("worker {instance_id}: {}", exit.reason));
                        continue;
                    }
                    if !counted.contains(instance_id.as_str()) {
                        continue;
                    }
                    let reason = &exit.reason;
                    if *crashed {
                        restarts = restarts.saturating_add(1);
                        let wait = chrono::Duration::from_std(self.backoff.delay(restarts))
                            .unwrap_or_default();
                        backoff_until = Some(exit.at.max(now) + wait);
                        last_error = Some(format!("worker {instance_id} crashed: {reason}"));
                    }
                    last_exit = Some(format!("worker {instance_id}: {reason}"));
                    let fenced = exit.code == Some(worker::exit::FENCED);
                    let kind = match (fenced, crashed) {
                        (true, _) => "fenced",
                        (false, true) => "crashed",
                        (false, false) => "exited",
                    };
                    events.push((kind, format!("worker {instance_id}: {reason}")));
                }
                Outcome::StartFailed(message) => {
                    launch_failures = launch_failures.saturating_add(1);
                    let wait = self.backoff.launch_delay(launch_failures, rand::random());
                    backoff_until =
                        Some(now + chrono::Duration::from_std(wait).unwrap_or_default());
                    let error = format!(
                        "{message} (failed {launch_failures} time{} in a row; next try in {} s)",
                        if launch_failures == 1 { "" } else { "s" },
                        wait.as_secs().max(1),
                    );
                    events.push(("error", error.clone()));
                    last_error = Some(error);
                }
                Outcome::Failed(message) => {
                    last_error = Some(format!("{} launcher: {message}", self.launcher.kind()));
                    events.push(("error", message.clone()));
                }
                Outcome::Waiting(message) => waiting = Some(message),
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
                None if waiting.is_some() => "capacity",
                None if backoff_until.is_some_and(|u| u > now) && launch_failures > 0 => {
                    "launch_backoff"
                }
                None if backoff_until.is_some_and(|u| u > now) => "crash_loop",
                None => "pending",
            }
        } else if live.is_empty() {
            "stopped"
        } else {
            "stopping"
        };
        if let Some(message) = waiting {
            // Said once, when the wait begins; every pass tries again
            // without a word until capacity frees.
            let already = row.stored.as_ref().is_some_and(|s| s.actual == "capacity");
            if !already {
                events.push(("capacity", message.to_owned()));
                last_error = Some(message.to_owned());
            }
        }
        let recorded = Recorded {
            actual,
            backoff_until,
            replaced: current.is_some(),
        };
        // Nothing happened and nothing changed: no write (one transaction per
        // tenant per pass would cost the database more than the pass itself),
        // except to refresh `observed_at` now and then.
        let eventful = outcomes.iter().any(|o| !matches!(o, Outcome::Waiting(_)));
        let unchanged = !eventful
            && tx.is_none()
            && row.stored.as_ref().is_some_and(|s| {
                s.actual == actual
                    && s.instance_id == current.map(|i| i.id.clone())
                    && s.spec_hash.as_deref() == Some(row.desired.spec_hash.as_str())
                    && now - s.observed_at
                        < chrono::Duration::from_std(OBSERVED_REFRESH).unwrap_or_default()
            });
        if unchanged {
            return Ok(recorded);
        }
        if let Some(hold) = &row.terms.hold {
            last_error = Some(hold.clone());
        }
        let mut tx = match tx {
            Some(tx) => tx,
            None => self.db.tenant(tenant).await?,
        };
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
                launch_failures: i32::try_from(launch_failures).unwrap_or(i32::MAX),
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
        tx.commit().await?;
        Ok(recorded)
    }
}

/// What [`Reconciler::record`] wrote for a tenant.
#[derive(Debug, Clone, Copy)]
struct Recorded {
    actual: &'static str,
    backoff_until: Option<DateTime<Utc>>,
    /// A live worker runs the tenant's current spec.
    replaced: bool,
}

/// Why a start did not happen.
#[derive(Debug)]
enum StartError {
    /// The launcher has no room for it (the Fargate quota): wait, no back-off.
    Capacity(String),
    /// Anything else: back off.
    Failed(String),
}

/// How the worker of `row`'s current spec failed in this pass, if it did: it
/// crashed (an exit nobody asked for of an instance with the current spec
/// hash), or it could not be launched. A stopped worker of an older spec is
/// no failure of the new one.
fn release_failure(row: &Row, actual: &[Instance], outcomes: &[Outcome]) -> Option<String> {
    outcomes.iter().find_map(|outcome| match outcome {
        Outcome::Exited {
            instance_id,
            exit,
            crashed: true,
        } if actual
            .iter()
            .any(|i| &i.id == instance_id && i.spec_hash == row.desired.spec_hash) =>
        {
            Some(format!("worker {instance_id} crashed: {}", exit.reason))
        }
        Outcome::StartFailed(message) => Some(format!("the worker did not start: {message}")),
        _ => None,
    })
}

/// What a spec hash is salted with: the launcher's own salt (on ECS its
/// configured image), or the release's image in its place, and the
/// release's settings. A tenant without a release keeps its hash, so a
/// control plane that learns of rollouts replaces no worker by itself.
fn release_salt(salt: &str, release: &Release) -> String {
    let mut salted = release.image.clone().unwrap_or_else(|| salt.to_owned());
    for (name, value) in &release.settings {
        salted.push_str(&format!("\n{name}={value}"));
    }
    salted
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
        exit: Exit,
        crashed: bool,
    },
    /// A start failed: back off. The message names the launcher.
    StartFailed(String),
    /// A start waits for capacity. The message names the launcher.
    Waiting(String),
    /// Another launcher call (a stop) failed.
    Failed(String),
    Reset,
}

/// While this replica leads: wakes its passes on every change another
/// replica announces ([`polybot_store::wakeups`]) until `stop`. A lost
/// connection is re-opened after a second; meanwhile the leader's own timer
/// still runs passes.
async fn listen_for_changes(db: Db, wake: Arc<Notify>, stop: CancellationToken) {
    let mut listener = None;
    loop {
        let result = async {
            let listener = match &mut listener {
                Some(listener) => listener,
                None => listener.insert(polybot_store::wakeups::listen(&db).await?),
            };
            listener.next().await
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            result = result => match result {
                Ok(()) => wake.notify_one(),
                Err(err) => {
                    tracing::warn!(error = %err, "not hearing other replicas' changes; retrying in 1 s");
                    listener = None;
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_without_a_release_keeps_its_spec_hash_and_a_release_changes_it() {
        let none = Release::default();
        assert_eq!(release_salt("img:v1", &none), "img:v1");
        assert_eq!(
            salted("h".into(), &release_salt("", &none)),
            "h",
            "local workers without a release keep their hash"
        );
        let image = Release {
            image: Some("img:v2".into()),
            settings: BTreeMap::new(),
        };
        // The release's image replaces the launcher's: a control plane
        // restarted with another --ecs-worker-image leaves rolled tenants be.
        assert_eq!(release_salt("img:v1", &image), "img:v2");
        assert_eq!(release_salt("img:v9", &image), "img:v2");
        let settings = Release {
            image: None,
            settings: BTreeMap::from([("POLYBOT_LOG".to_owned(), "debug".to_owned())]),
        };
        assert_eq!(release_salt("", &settings), "\nPOLYBOT_LOG=debug");
        assert_ne!(
            salted("h".into(), &release_salt("", &settings)),
            "h",
            "a setting replaces the worker"
        );
    }
}
