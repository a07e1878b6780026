//! Onboarding and offboarding as durable, idempotent state machines.
//!
//! A tenant's row records the last step completed (`provisioning_step`):
//!
//! ```text
//! created → role → secret → spec → done (state active)
//! ```
//!
//! - `created`: the API wrote the tenant, its configuration and its exchange
//!   keys (sealed in the secret store) in one transaction.
//! - `role`: the tenant's database access exists: its claim key (workers
//!   share one login through the pooler, see [`WorkerDatabase`]) or, without
//!   a pooler, its own login role.
//! - `secret`: the secret holds the keys and the worker's `DATABASE_URL`:
//!   the shared login with a freshly minted claim, or the tenant role's
//!   credentials (its password is set in the same transaction that writes
//!   the secret: role changes are transactional in PostgreSQL, so the two
//!   cannot disagree).
//! - `spec`: the launch spec (what the worker runs) is prepared.
//!
//! Each step commits with its marker, so a control plane killed anywhere
//! resumes at the next step on restart ([`Provisioner::resume_all`]) and
//! creates nothing twice. A step that fails leaves the tenant `failed` with the
//! error, drops the database role it may have created, and keeps the sealed
//! keys so that `POST /tenants/{id}/resume` can retry.

use std::sync::Arc;

use polybot_core::TenantId;
use polybot_core::lifecycle::{TenantAction, TenantState};
use polybot_secrets::{SecretStore, TenantSecret};
use polybot_store::repo::{audit, configs, runtime, tenants};
use polybot_store::{Db, DbError, TenantTx};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use sqlx::postgres::{PgConnectOptions, PgSslMode};
use tokio::sync::Notify;

/// One onboarding step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Created,
    Role,
    Secret,
    Spec,
    Done,
}

impl Step {
    pub fn as_str(&self) -> &'static str {
        match self {
            Step::Created => "created",
            Step::Role => "role",
            Step::Secret => "secret",
            Step::Spec => "spec",
            Step::Done => "done",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "created" => Step::Created,
            "role" => Step::Role,
            "secret" => Step::Secret,
            "spec" => Step::Spec,
            "done" => Step::Done,
            _ => return None,
        })
    }
}

/// What a fault injector (tests only) does after a step commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Stop as if the process died: no compensation, no `failed` state.
    Crash,
    /// Fail the next step with an error.
    Fail,
}

pub type FaultHook = Arc<dyn Fn(Step) -> Option<Fault> + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error("simulated crash after step {0:?}")]
    Crashed(Step),
    #[error("onboarding step `{step}` failed: {message}")]
    Step { step: &'static str, message: String },
    #[error(
        "this control plane has no shared worker login: start it with POLYBOT_WORKER_DATABASE_URL \
         (the workers' login at the pooler, created by `polybot migrate --worker-database-url`) \
         before moving tenants to it"
    )]
    NoSharedLogin,
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Where one tenant stands in the move from its own login role to the
/// shared worker login ([`Provisioner::move_to_shared_login`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MoveStep {
    /// The secret now names the shared login with the tenant's claim (the
    /// reconciler replaces the worker) and the old role can no longer log
    /// in; it is dropped once the old worker's sessions are gone.
    Moved,
    /// Moved; the old role still has sessions (the old worker has not
    /// stopped yet).
    Waiting,
    /// The old role is gone: the move is complete.
    Dropped,
    /// Not moved: the tenant is onboarding, failed or being deleted (its
    /// own steps create or drop its role).
    Skipped,
}

/// What moving one tenant did, or in a dry run would do.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LoginMove {
    pub tenant: TenantId,
    pub step: MoveStep,
    pub detail: String,
}

/// Where workers reach the database, with the control plane's TLS settings
/// (`sslmode`, and `sslrootcert` when it names a file) so that a worker
/// verifies the server exactly as the control plane does.
///
/// With a [`SharedLogin`] (the pooler), every worker logs in with the
/// fleet's one worker login and its transactions carry the tenant's claim
/// (`polybot_store::claims`); without one, each tenant gets a login role of
/// its own on the control plane's server (a server pool per tenant: no
/// pooling; kept for deployments that run no pooler yet).
#[derive(Debug, Clone)]
pub struct WorkerDatabase {
    pub host: String,
    pub port: u16,
    pub database: String,
    pub ssl_mode: PgSslMode,
    /// The CA certificate file the server's certificate is checked against.
    pub ssl_root_cert: Option<String>,
    /// The fleet's shared worker login, when workers go through the pooler.
    pub shared_login: Option<SharedLogin>,
}

/// The fleet's shared worker login (a member of `polybot_worker`), as
/// workers reach it through the pooler.
#[derive(Clone)]
pub struct SharedLogin {
    pub user: String,
    pub password: SecretString,
    /// How long each minted claim is honoured.
    pub claim_lifetime: std::time::Duration,
}

impl std::fmt::Debug for SharedLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedLogin")
            .field("user", &self.user)
            .field("password", &"[REDACTED]")
            .field("claim_lifetime", &self.claim_lifetime)
            .finish()
    }
}

impl WorkerDatabase {
    /// Workers log in to the control plane's server, each with a role of its own.
    pub fn from_options(options: &PgConnectOptions) -> Self {
        Self {
            host: options.get_host().to_owned(),
            port: options.get_port(),
            database: options.get_database().unwrap_or("postgres").to_owned(),
            ssl_mode: options.get_ssl_mode(),
            ssl_root_cert: ssl_root_cert_file(options),
            shared_login: None,
        }
    }

    /// Workers log in with `worker` (the shared worker login's options, as
    /// workers reach the pooler: host, port, database, TLS, user and
    /// `password`) and carry their tenant's claim.
    pub fn shared(worker: &PgConnectOptions, password: SecretString) -> Self {
        Self {
            shared_login: Some(SharedLogin {
                user: worker.get_username().to_owned(),
                password,
                claim_lifetime: polybot_store::claims::DEFAULT_LIFETIME,
            }),
            ..Self::from_options(worker)
        }
    }

    /// The worker's `DATABASE_URL` through the pooler: the shared login, and
    /// the claim as `polybot_claim`. The claim is plain text
    /// (`v1.<uuid>.<digits>.<hex>`), the login's name and password are
    /// checked to need no escaping where they are configured.
    fn shared_url(&self, login: &SharedLogin, claim: &polybot_store::WorkerClaim) -> SecretString {
        let mut url = format!(
            "postgres://{}:{}@{}:{}/{}?sslmode={}",
            login.user,
            login.password.expose_secret(),
            self.host,
            self.port,
            self.database,
            ssl_mode_name(self.ssl_mode),
        );
        if let Some(cert) = &self.ssl_root_cert {
            url.push_str("&sslrootcert=");
            url.extend(url::form_urlencoded::byte_serialize(cert.as_bytes()));
        }
        url.push('&');
        url.push_str(polybot_store::claims::URL_PARAMETER);
        url.push('=');
        url.push_str(claim.expose_secret());
        SecretString::from(url)
    }

    /// The tenant's `DATABASE_URL`. Role names and passwords are hex, so
    /// they need no escaping; the certificate path is query-encoded.
    fn url(&self, tenant: TenantId, password: &str) -> SecretString {
        let mut url = format!(
            "postgres://{}:{password}@{}:{}/{}?sslmode={}",
            tenant.db_role(),
            self.host,
            self.port,
            self.database,
            ssl_mode_name(self.ssl_mode),
        );
        if let Some(cert) = &self.ssl_root_cert {
            url.push_str("&sslrootcert=");
            url.extend(url::form_urlencoded::byte_serialize(cert.as_bytes()));
        }
        SecretString::from(url)
    }
}

fn ssl_mode_name(mode: PgSslMode) -> &'static str {
    match mode {
        PgSslMode::Disable => "disable",
        PgSslMode::Allow => "allow",
        PgSslMode::Prefer => "prefer",
        PgSslMode::Require => "require",
        PgSslMode::VerifyCa => "verify-ca",
        PgSslMode::VerifyFull => "verify-full",
    }
}

/// The `sslrootcert` file of `options` (from its URL or `PGSSLROOTCERT`).
/// sqlx has no getter for it, only its own URL rendering, which writes a file
/// as `file: <path>`; a certificate given inline (only possible in code) has
/// no URL form and is not passed on.
fn ssl_root_cert_file(options: &PgConnectOptions) -> Option<String> {
    use sqlx::ConnectOptions;
    options
        .to_url_lossy()
        .query_pairs()
        .find(|(key, _)| key == "sslrootcert")
        .and_then(|(_, value)| value.strip_prefix("file: ").map(ToOwned::to_owned))
}

/// Drives onboarding and offboarding.
#[derive(Clone)]
pub struct Provisioner {
    db: Db,
    secrets: Arc<dyn SecretStore>,
    worker_db: WorkerDatabase,
    wake: Arc<Notify>,
    fault: Option<FaultHook>,
    /// How long an offboarded tenant's secret can be restored.
    pub recovery_days: u32,
}

impl std::fmt::Debug for Provisioner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provisioner")
            .field("secrets", &self.secrets.kind())
            .field("worker_db", &self.worker_db)
            .finish_non_exhaustive()
    }
}

fn random_password() -> String {
    let mut bytes = [0u8; 24];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

impl Provisioner {
    pub fn new(
        db: Db,
        secrets: Arc<dyn SecretStore>,
        worker_db: WorkerDatabase,
        wake: Arc<Notify>,
    ) -> Self {
        Self {
            db,
            secrets,
            worker_db,
            wake,
            fault: None,
            recovery_days: 30,
        }
    }

    /// Tests: act on each committed step as the hook says.
    pub fn with_fault(mut self, hook: FaultHook) -> Self {
        self.fault = Some(hook);
        self
    }

    /// Completes the onboarding of every tenant left mid-way (at start-up).
    pub async fn resume_all(&self) -> Result<usize, ProvisionError> {
        let mut op = self.db.operator().await?;
        let pending = tenants::with_pending_steps(&mut op).await?;
        op.commit().await?;
        let count = pending.len();
        for tenant in pending {
            if let Err(err) = self.run(tenant).await {
                tracing::warn!(%tenant, error = %err, "resuming a tenant's onboarding failed");
            }
        }
        Ok(count)
    }

    /// Renews the worker claims that expire within `within` (the shared
    /// worker login only): for each such active or paused tenant, mints a
    /// fresh claim and rewrites the secret's `DATABASE_URL` with it. The
    /// secret's new version changes the launch spec, so the reconciler
    /// replaces the worker, which starts with the new claim. Returns how many
    /// were renewed.
    pub async fn renew_claims(&self, within: std::time::Duration) -> Result<usize, ProvisionError> {
        let Some(login) = &self.worker_db.shared_login else {
            return Ok(0);
        };
        let mut op = self.db.operator().await?;
        let due = polybot_store::claims::expiring(&mut op, within, 100).await?;
        op.commit().await?;
        let mut renewed = 0;
        for tenant in due {
            let mut tx = self.db.tenant(tenant).await?;
            let Some(onboarding) = tenants::lock_onboarding(&mut tx).await? else {
                continue;
            };
            if !matches!(onboarding.state, TenantState::Active | TenantState::Paused) {
                continue;
            }
            let claim = polybot_store::claims::mint_in(&mut tx, login.claim_lifetime).await?;
            let mut secret = self
                .secrets
                .get(&mut tx)
                .await
                .map_err(|e| step_err(Step::Secret, e))?
                .unwrap_or_else(TenantSecret::default);
            secret.database_url = Some(self.worker_db.shared_url(login, &claim));
            self.secrets
                .put(&mut tx, &secret)
                .await
                .map_err(|e| step_err(Step::Secret, e))?;
            audit::append(
                &mut tx,
                "control-plane",
                "tenant.worker_claim_renewed",
                serde_json::json!({"expires_at": claim.expires_at()}),
            )
            .await?;
            tx.commit().await?;
            tracing::info!(%tenant, expires_at = %claim.expires_at(), "renewed the worker's database claim");
            renewed += 1;
        }
        if renewed > 0 {
            crate::wake_leader(&self.db, &self.wake);
        }
        Ok(renewed)
    }

    /// Moves every active or paused tenant that still logs in with a role
    /// of its own to the shared worker login (`polybot fleet
    /// move-to-shared-login`). Per tenant, in one transaction: a claim is
    /// minted, the secret's `DATABASE_URL` becomes the shared login's with
    /// it (a new secret version, so the reconciler replaces the worker), and
    /// the old role loses LOGIN. A role that can no longer log in and has
    /// no session left is dropped. Each step is decided from the catalog
    /// and the secret, so a run cut short anywhere is completed by the next;
    /// a dry run reports what a run would do and changes nothing. Returns
    /// one entry per tenant role found.
    pub async fn move_to_shared_login(
        &self,
        dry_run: bool,
    ) -> Result<Vec<LoginMove>, ProvisionError> {
        let Some(login) = &self.worker_db.shared_login else {
            return Err(ProvisionError::NoSharedLogin);
        };
        self.step_logins(Some(login), dry_run).await
    }

    /// Drops the tenant roles a move blocked once no session uses them
    /// (the leader's periodic pass: a move's last step needs no operator).
    /// Returns how many it dropped.
    pub async fn drop_unused_logins(&self) -> Result<usize, ProvisionError> {
        let done = self.step_logins(None, false).await?;
        Ok(done.iter().filter(|m| m.step == MoveStep::Dropped).count())
    }

    /// One pass over the tenant roles: moves (with `login`) and drops.
    async fn step_logins(
        &self,
        login: Option<&SharedLogin>,
        dry_run: bool,
    ) -> Result<Vec<LoginMove>, ProvisionError> {
        let mut op = self.db.operator().await?;
        let found = polybot_store::roles::tenant_logins(&mut op).await?;
        op.commit().await?;
        let mut out = Vec::new();
        let mut moved = false;
        for role in found {
            let tenant = role.tenant;
            if login.is_none() && role.can_login {
                continue; // not blocked: only a move blocks a role
            }
            let entry = |step: MoveStep, detail: String| LoginMove {
                tenant,
                step,
                detail,
            };
            let mut tx = self.db.tenant(tenant).await?;
            let state = tenants::lock_onboarding(&mut tx).await?.map(|o| o.state);
            if !matches!(state, Some(TenantState::Active | TenantState::Paused)) {
                tx.rollback().await?;
                // Roles are the cluster's: one whose tenant is not in this
                // database belongs to another deployment and is left alone.
                if let (Some(_), Some(state)) = (login, state) {
                    out.push(entry(
                        MoveStep::Skipped,
                        format!(
                            "the tenant is {}: its onboarding or offboarding creates or drops the role",
                            state.as_str()
                        ),
                    ));
                }
                continue;
            }
            let mut secret = self
                .secrets
                .get(&mut tx)
                .await
                .map_err(|e| step_err(Step::Secret, e))?
                .unwrap_or_else(TenantSecret::default);
            let own = tenant.db_role();
            let on_own_login = secret.database_url.as_ref().is_none_or(|url| {
                url::Url::parse(url.expose_secret()).is_ok_and(|u| u.username() == own)
            });
            if let Some(login) = login
                && (on_own_login || role.can_login)
            {
                let detail = "the secret names the shared login with the tenant's claim \
                              (the reconciler replaces the worker); the old role can no longer \
                              log in and is dropped once the old worker has stopped";
                if dry_run {
                    tx.rollback().await?;
                    out.push(entry(MoveStep::Moved, format!("would be moved: {detail}")));
                    continue;
                }
                if on_own_login {
                    let claim =
                        polybot_store::claims::mint_in(&mut tx, login.claim_lifetime).await?;
                    secret.database_url = Some(self.worker_db.shared_url(login, &claim));
                    self.secrets
                        .put(&mut tx, &secret)
                        .await
                        .map_err(|e| step_err(Step::Secret, e))?;
                }
                polybot_store::roles::block_tenant_login_in(&mut tx).await?;
                audit::append(
                    &mut tx,
                    "control-plane",
                    "tenant.moved_to_shared_login",
                    serde_json::json!({"old_role": own}),
                )
                .await?;
                tx.commit().await?;
                tracing::info!(%tenant, "moved the tenant's worker to the shared database login");
                moved = true;
                out.push(entry(MoveStep::Moved, detail.to_owned()));
                continue;
            }
            if on_own_login {
                // Blocked, yet its worker is still given this role: not a
                // move's doing, so not a move's to drop.
                tx.rollback().await?;
                continue;
            }
            if role.sessions > 0 {
                tx.rollback().await?;
                out.push(entry(
                    MoveStep::Waiting,
                    format!(
                        "the old role still has {} session(s): the old worker has not stopped yet",
                        role.sessions
                    ),
                ));
                continue;
            }
            if dry_run {
                tx.rollback().await?;
                out.push(entry(
                    MoveStep::Dropped,
                    "would be dropped: the old role has no session left".to_owned(),
                ));
                continue;
            }
            polybot_store::roles::drop_tenant_role_in(&mut tx).await?;
            audit::append(
                &mut tx,
                "control-plane",
                "tenant.own_login_dropped",
                serde_json::json!({"old_role": tenant.db_role()}),
            )
            .await?;
            tx.commit().await?;
            tracing::info!(%tenant, "dropped the tenant's old database login");
            out.push(entry(
                MoveStep::Dropped,
                "the old role is dropped: the move is complete".to_owned(),
            ));
        }
        if moved {
            crate::wake_leader(&self.db, &self.wake);
        }
        Ok(out)
    }

    /// Runs `tenant`'s onboarding (or offboarding) from where it stands to the end.
    pub async fn run(&self, tenant: TenantId) -> Result<(), ProvisionError> {
        loop {
            let mut tx = self.db.tenant(tenant).await?;
            let Some(onboarding) = tenants::lock_onboarding(&mut tx).await? else {
                return Ok(());
            };
            let state = onboarding.state;
            match state {
                TenantState::Provisioning => {}
                TenantState::Offboarding => {
                    tx.commit().await?;
                    return self.offboard(tenant).await;
                }
                _ => return Ok(()),
            }
            let step = Step::parse(&onboarding.provisioning_step).unwrap_or(Step::Created);
            let fault = self.fault.as_ref().and_then(|hook| hook(step));
            let next = match fault {
                Some(Fault::Fail) => Err(ProvisionError::Step {
                    step: next_step(step).as_str(),
                    message: "injected failure".into(),
                }),
                _ => self.advance(&mut tx, tenant, step).await,
            };
            match next {
                Ok(next) => {
                    let state = if next == Step::Done {
                        state
                            .apply(TenantAction::OnboardingDone)
                            .map_err(|refused| step_err(next, refused))?
                            .to
                    } else {
                        state
                    };
                    tenants::record_onboarding_step(&mut tx, next.as_str(), state).await?;
                    audit::append(
                        &mut tx,
                        "control-plane",
                        "tenant.onboarding_step",
                        serde_json::json!({"step": next.as_str()}),
                    )
                    .await?;
                    tx.commit().await?;
                    tracing::info!(%tenant, step = next.as_str(), "onboarding step done");
                    if next == Step::Done {
                        crate::wake_leader(&self.db, &self.wake);
                        return Ok(());
                    }
                    if let Some(Fault::Crash) = self.fault.as_ref().and_then(|hook| hook(next)) {
                        return Err(ProvisionError::Crashed(next));
                    }
                }
                Err(err) => {
                    tx.rollback().await?;
                    self.fail(tenant, &err).await?;
                    return Err(err);
                }
            }
        }
    }

    /// Performs the step after `done` inside `tx`; returns the step reached.
    async fn advance(
        &self,
        tx: &mut TenantTx,
        tenant: TenantId,
        done: Step,
    ) -> Result<Step, ProvisionError> {
        match (done, &self.worker_db.shared_login) {
            // The tenant's claim key: minting creates it (this claim is
            // thrown away; the next step mints the one the secret keeps).
            (Step::Created, Some(login)) => {
                polybot_store::claims::mint_in(tx, login.claim_lifetime)
                    .await
                    .map_err(|e| step_err(Step::Role, e))?;
                Ok(Step::Role)
            }
            (Step::Role, Some(login)) => {
                let claim = polybot_store::claims::mint_in(tx, login.claim_lifetime)
                    .await
                    .map_err(|e| step_err(Step::Secret, e))?;
                let mut secret = self
                    .secrets
                    .get(tx)
                    .await
                    .map_err(|e| step_err(Step::Secret, e))?
                    .unwrap_or_else(TenantSecret::default);
                secret.database_url = Some(self.worker_db.shared_url(login, &claim));
                self.secrets
                    .put(tx, &secret)
                    .await
                    .map_err(|e| step_err(Step::Secret, e))?;
                Ok(Step::Secret)
            }
            (Step::Created, None) => {
                // A random password that nobody keeps: the next step sets the
                // real one together with the secret.
                polybot_store::roles::ensure_tenant_role_in(
                    tx,
                    &SecretString::from(random_password()),
                )
                .await
                .map_err(|e| step_err(Step::Role, e))?;
                Ok(Step::Role)
            }
            (Step::Role, None) => {
                let password = random_password();
                polybot_store::roles::ensure_tenant_role_in(
                    tx,
                    &SecretString::from(password.clone()),
                )
                .await
                .map_err(|e| step_err(Step::Secret, e))?;
                let mut secret = self
                    .secrets
                    .get(tx)
                    .await
                    .map_err(|e| step_err(Step::Secret, e))?
                    .unwrap_or_else(TenantSecret::default);
                secret.database_url = Some(self.worker_db.url(tenant, &password));
                self.secrets
                    .put(tx, &secret)
                    .await
                    .map_err(|e| step_err(Step::Secret, e))?;
                Ok(Step::Secret)
            }
            (Step::Secret, _) => {
                prepare_spec(tx)
                    .await
                    .map_err(|e| step_err(Step::Spec, e))?;
                Ok(Step::Spec)
            }
            (Step::Spec | Step::Done, _) => Ok(Step::Done),
        }
    }

    /// Marks the tenant failed and undoes what onboarding created (the claim
    /// key or role, and the launch spec); the sealed keys stay for a retry.
    async fn fail(&self, tenant: TenantId, err: &ProvisionError) -> Result<(), ProvisionError> {
        let mut tx = self.db.tenant(tenant).await?;
        polybot_store::claims::revoke_in(&mut tx).await?;
        polybot_store::roles::drop_tenant_role_in(&mut tx).await?;
        runtime::remove(&mut tx).await?;
        tenants::mark_failed(&mut tx, &err.to_string()).await?;
        audit::append(
            &mut tx,
            "control-plane",
            "tenant.onboarding_failed",
            serde_json::json!({"error": err.to_string()}),
        )
        .await?;
        tx.commit().await?;
        tracing::warn!(%tenant, error = %err, "onboarding failed; compensated");
        Ok(())
    }

    /// Offboarding: the worker is stopped by the reconciler (the tenant is no
    /// longer desired), the tenant's database sessions are ended, the secret
    /// is scheduled for deletion, the tenant's worker claims are revoked and
    /// its own database role (if it has one) is dropped with whatever it
    /// owns. Data is kept. Idempotent, and a no-op unless the tenant is
    /// `offboarding`; a failure leaves it `offboarding`, and the reconciler
    /// retries it ([`Provisioner::resume_all`]).
    pub async fn offboard(&self, tenant: TenantId) -> Result<(), ProvisionError> {
        // A session of the tenant's login (holding a TEMP table, say) would
        // make DROP ROLE fail: end them in a commit of their own, so that the
        // NOLOGIN keeps them from coming back before the role is dropped.
        let mut tx = self.db.tenant(tenant).await?;
        if !still_offboarding(&mut tx).await? {
            return Ok(());
        }
        let ended = polybot_store::roles::end_tenant_sessions_in(&mut tx).await?;
        tx.commit().await?;
        if ended > 0 {
            tracing::info!(%tenant, sessions = ended, "ended the tenant's database sessions");
        }
        let mut tx = self.db.tenant(tenant).await?;
        // Another offboarding of this tenant may have finished meanwhile.
        if !still_offboarding(&mut tx).await? {
            return Ok(());
        }
        self.secrets
            .schedule_deletion(&mut tx, self.recovery_days)
            .await
            .map_err(|e| step_err(Step::Done, e))?;
        // A worker of the shared login holding a claim sees nothing from its
        // next statement on; a tenant's own login is dropped.
        polybot_store::claims::revoke_in(&mut tx).await?;
        polybot_store::roles::drop_tenant_role_in(&mut tx).await?;
        tenants::mark_offboarded(&mut tx).await?;
        audit::append(
            &mut tx,
            "control-plane",
            "tenant.offboarded",
            serde_json::json!({}),
        )
        .await?;
        tx.commit().await?;
        crate::wake_leader(&self.db, &self.wake);
        Ok(())
    }
}

/// Locks the tenant row (so that two offboardings of one tenant run one
/// after the other) and says whether it is still `offboarding`.
async fn still_offboarding(tx: &mut TenantTx) -> Result<bool, DbError> {
    Ok(tenants::lock_onboarding(tx)
        .await?
        .is_some_and(|o| o.state == TenantState::Offboarding))
}

fn next_step(step: Step) -> Step {
    match step {
        Step::Created => Step::Role,
        Step::Role => Step::Secret,
        Step::Secret => Step::Spec,
        Step::Spec | Step::Done => Step::Done,
    }
}

fn step_err(step: Step, err: impl std::fmt::Display) -> ProvisionError {
    ProvisionError::Step {
        step: step.as_str(),
        message: err.to_string(),
    }
}

/// The risk settings a worker's launch depends on: all but the kill switch,
/// which a running worker reads with every heartbeat and acts on (refuses
/// new orders, cancels the open ones) without a restart.
pub fn launch_risk(risk: &serde_json::Value) -> serde_json::Value {
    let mut risk = risk.clone();
    if let Some(fields) = risk.as_object_mut() {
        fields.remove("kill_switch");
    }
    risk
}

/// The hash of everything a worker's launch depends on; a change replaces the worker.
/// The risk settings' `kill_switch` is left out ([`launch_risk`]), so
/// flipping it replaces nothing.
pub fn hash_spec(
    mode: &str,
    spec_version: i64,
    strategies: &serde_json::Value,
    risk: &serde_json::Value,
    secret_version: Option<i64>,
) -> String {
    let mut hash = Sha256::new();
    hash.update(mode.as_bytes());
    hash.update(spec_version.to_be_bytes());
    hash.update(strategies.to_string().as_bytes());
    hash.update(launch_risk(risk).to_string().as_bytes());
    hash.update(secret_version.unwrap_or(0).to_be_bytes());
    hex::encode(&hash.finalize()[..16])
}

/// [`hash_spec`] of the transaction's tenant as stored.
pub async fn spec_hash(tx: &mut TenantTx) -> Result<String, DbError> {
    let spec = configs::launch_spec(tx).await?;
    Ok(hash_spec(
        &spec.mode,
        spec.spec_version,
        &spec.strategies,
        &spec.risk,
        spec.secret_version,
    ))
}

/// Records the launch spec the reconciler will start the worker with.
async fn prepare_spec(tx: &mut TenantTx) -> Result<(), DbError> {
    let hash = spec_hash(tx).await?;
    runtime::prepare_launch(tx, &hash).await
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    #[test]
    fn the_kill_switch_does_not_change_the_spec_but_another_risk_setting_does() {
        let strategies = serde_json::json!({"complement_arb": {}});
        let hash = |risk: serde_json::Value| hash_spec("live", 1, &strategies, &risk, Some(1));
        let off = hash(serde_json::json!({"max_order_notional": "50", "kill_switch": false}));
        assert_eq!(
            hash(serde_json::json!({"max_order_notional": "50", "kill_switch": true})),
            off
        );
        assert_ne!(
            hash(serde_json::json!({"max_order_notional": "60", "kill_switch": false})),
            off
        );
    }

    #[test]
    fn a_workers_database_url_keeps_the_control_planes_tls_settings() {
        let control_plane: PgConnectOptions =
            "postgres://polybot:pw@db.example.com:5432/polybot?sslmode=verify-full&sslrootcert=/etc/ssl/rds%20ca.pem"
                .parse()
                .unwrap();
        let tenant = TenantId::new();

        let url = WorkerDatabase::from_options(&control_plane).url(tenant, "abc123");
        let worker: PgConnectOptions = url.expose_secret().parse().unwrap();
        assert_eq!(worker.get_username(), tenant.db_role());
        assert_eq!(worker.get_host(), "db.example.com");
        assert_eq!(worker.get_database(), Some("polybot"));
        assert!(matches!(worker.get_ssl_mode(), PgSslMode::VerifyFull));
        assert_eq!(
            ssl_root_cert_file(&worker).as_deref(),
            Some("/etc/ssl/rds ca.pem")
        );
    }

    #[test]
    fn a_control_plane_that_requires_tls_gives_its_workers_a_url_that_requires_it() {
        let control_plane: PgConnectOptions = "postgres://polybot:pw@db/polybot?sslmode=require"
            .parse()
            .unwrap();
        let url = WorkerDatabase::from_options(&control_plane).url(TenantId::new(), "abc123");
        let worker: PgConnectOptions = url.expose_secret().parse().unwrap();
        assert!(matches!(worker.get_ssl_mode(), PgSslMode::Require));
        assert_eq!(ssl_root_cert_file(&worker), None);
    }
}
