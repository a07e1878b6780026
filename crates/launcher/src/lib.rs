//! Where workers run.
//!
//! [`Launcher`] is what the reconciler drives: prepare a tenant's launch spec,
//! list what runs, start, stop. [`local::LocalLauncher`] runs `polybot worker`
//! processes on this machine (the embedded default and the tests); the ECS
//! Fargate launcher ([`ecs::EcsLauncher`]) runs one task per tenant. Both give
//! a worker the same environment contract, named in
//! [`polybot_core::worker::env`]: the tenant id, its database URL (the
//! tenant's own database role), its exchange keys (JSON), the mode, and the
//! spec hash.
//!
//! What does not live here: command-line flags (the CLI turns them into
//! [`ecs::EcsConfig`]) and deciding what should run (the reconciler).

use std::collections::BTreeMap;
use std::fmt;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use polybot_core::{Mode, TenantId};
use secrecy::SecretString;

pub mod ecs;
pub mod local;
pub mod local_capacity;
#[cfg(feature = "testing")]
pub mod testing;

pub use ecs::{EcsConfig, EcsLauncher, load_aws_config};

/// Everything a worker of one tenant is started with. Its `spec_hash` names
/// it: when the hash changes, the running worker is replaced.
#[derive(Clone)]
pub struct LaunchSpec {
    pub tenant: TenantId,
    pub spec_hash: String,
    pub mode: Mode,
    /// The secrets (the database URL and exchange keys, by their variable
    /// names), for launchers that pass secrets themselves: the local one
    /// writes them to the worker's stdin. ECS injects them from the secret
    /// named by `secret_reference` instead.
    pub secret_env: BTreeMap<String, SecretString>,
    /// The secret's reference (an ARN for Secrets Manager).
    pub secret_reference: Option<String>,
    /// Extra plain environment (endpoint overrides, replay files, log level).
    /// Only names in [`polybot_core::worker::env::FORWARDED`] and
    /// [`VENUE_URLS`](polybot_core::worker::env::VENUE_URLS) reach a worker
    /// ([`LaunchSpec::plain_env`]); anything else is dropped.
    pub env: BTreeMap<String, String>,
    /// Whether the tenant runs an IBKR gateway beside its worker.
    pub ibkr: bool,
}

impl LaunchSpec {
    /// The plain environment a launcher gives the worker: the entries of
    /// [`LaunchSpec::env`] on the worker-settings allowlist. Whatever else a
    /// caller put there (a control-plane token, its database URL) is dropped
    /// and named in a warning, never its value: a worker runs tenant code
    /// paths and must not hold the control plane's secrets.
    pub fn plain_env(&self) -> impl Iterator<Item = (&str, &str)> {
        self.env.iter().filter_map(|(name, value)| {
            if polybot_core::worker::env::is_forwarded(name) {
                Some((name.as_str(), value.as_str()))
            } else {
                tracing::warn!(
                    tenant = %self.tenant,
                    variable = %name,
                    "not passing a variable that is not a worker setting to the worker"
                );
                None
            }
        })
    }
}

impl fmt::Debug for LaunchSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LaunchSpec")
            .field("tenant", &self.tenant)
            .field("spec_hash", &self.spec_hash)
            .field("mode", &self.mode)
            .field("secret_env", &self.secret_env.keys().collect::<Vec<_>>())
            .field("secret_reference", &self.secret_reference)
            .field("env", &self.env)
            .field("ibkr", &self.ibkr)
            .finish()
    }
}

/// What a launcher reports of one worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// The launcher's id: a pid, a task ARN.
    pub id: String,
    pub tenant: TenantId,
    pub spec_hash: String,
    pub phase: Phase,
    pub started_at: DateTime<Utc>,
}

/// Where an instance is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// Launched, not yet running (ECS: PROVISIONING/PENDING).
    Starting,
    Running,
    /// Asked to stop, still there.
    Stopping,
    /// Gone; reported once so that the reconciler can record why.
    Exited(Exit),
}

impl Phase {
    /// Whether the instance still occupies the tenant's one worker slot.
    pub fn is_live(&self) -> bool {
        !matches!(self, Phase::Exited(_))
    }
}

/// How an instance ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exit {
    /// The process exit code or the container's.
    pub code: Option<i32>,
    /// Why, in words: `exit code 1`, `killed by SIGKILL`,
    /// `CannotPullContainerError: …`, `stopped by the reconciler: paused`.
    pub reason: String,
    /// Whether the launcher was asked to stop it (not a crash).
    pub requested: bool,
    pub at: DateTime<Utc>,
}

/// A launcher failure, with the operation and, where there is one, the API's answer.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("{launcher} launcher: {operation} failed: {message}")]
    Failed {
        launcher: &'static str,
        operation: &'static str,
        message: String,
    },
    /// The API throttled the call; the reconciler retries on its next pass.
    #[error("{launcher} launcher: {operation} was throttled: {message}")]
    Throttled {
        launcher: &'static str,
        operation: &'static str,
        message: String,
    },
    #[error("{launcher} launcher: invalid spec: {message}")]
    InvalidSpec {
        launcher: &'static str,
        message: String,
    },
    /// Starting would exceed the platform's capacity (the account's Fargate
    /// vCPU quota); nothing was called. The reconciler waits and tries again.
    #[error("{launcher} launcher: waiting for capacity: {message}")]
    Capacity {
        launcher: &'static str,
        message: String,
    },
}

/// One message of a task-event source (the ECS task state changes that
/// EventBridge delivers to an SQS queue).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskEvent {
    /// What [`TaskEvents::delete`] takes once the event is handled.
    pub receipt: String,
    /// The message's id, for logs.
    pub message_id: String,
    pub content: EventContent,
}

/// What a task event says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventContent {
    /// A change of one of the launcher's instances (an exit: `Phase::Exited`).
    Instance(Instance),
    /// A well-formed event about something else (another cluster's task, a
    /// task not started by the launcher): nothing to do.
    Ignored(String),
    /// Not an event of the documented shape: it is left on the queue, whose
    /// redrive policy moves it to the dead-letter queue after a few receives.
    Malformed(String),
}

/// A source of task state changes, consumed by the reconciler to wake early
/// and to learn exits even after the platform forgot the task.
#[async_trait]
pub trait TaskEvents: Send + Sync + fmt::Debug {
    /// The next events; waits (long-polls) up to the source's wait time, and
    /// returns none if nothing came.
    async fn receive(&self) -> Result<Vec<TaskEvent>, LaunchError>;

    /// Removes handled events from the source, by their receipts.
    async fn delete(&self, receipts: &[String]) -> Result<(), LaunchError>;
}

/// Runs workers.
#[async_trait]
pub trait Launcher: Send + Sync + fmt::Debug {
    /// `local` or `ecs`.
    fn kind(&self) -> &'static str;

    /// Whether the platform injects the tenant's secrets into the worker
    /// itself (ECS, from the secret's ARN), so that `LaunchSpec::secret_env`
    /// stays empty and the control plane never reads them in plaintext.
    fn injects_secrets(&self) -> bool {
        false
    }

    /// The worker size (CPU units, MiB) of `tenant`'s next `ensure_spec` and
    /// `start`, from its plan; `None` is the launcher's configured default.
    /// A launcher without sizes (local processes) has nothing to set.
    fn set_worker_size(
        &self,
        _tenant: TenantId,
        _size: Option<(u32, u32)>,
    ) -> Result<(), LaunchError> {
        Ok(())
    }

    /// Whether workers run an image a rollout may change (ECS); a launcher
    /// that runs this machine's program (local processes) has none.
    fn runs_images(&self) -> bool {
        false
    }

    /// The worker image of `tenant`'s next `ensure_spec` and `start`, from
    /// a fleet rollout; `None` is the launcher's configured image. A launcher
    /// without images refuses one.
    fn set_worker_image(&self, tenant: TenantId, image: Option<&str>) -> Result<(), LaunchError> {
        match image {
            None => Ok(()),
            Some(image) => Err(LaunchError::InvalidSpec {
                launcher: self.kind(),
                message: format!(
                    "tenant {tenant}: the {} launcher runs no worker images, so it cannot run {image}",
                    self.kind()
                ),
            }),
        }
    }

    /// Prepares whatever starting `spec` needs (a task definition revision on
    /// ECS; nothing locally). Idempotent: an unchanged spec changes nothing.
    async fn ensure_spec(&self, spec: &LaunchSpec) -> Result<(), LaunchError>;

    /// Every instance the launcher knows of, live ones and those that exited
    /// since the last call.
    async fn list(&self) -> Result<Vec<Instance>, LaunchError>;

    /// Starts one worker for `spec.tenant`.
    async fn start(&self, spec: &LaunchSpec) -> Result<Instance, LaunchError>;

    /// Asks `instance` to stop, with the reason recorded where the platform allows.
    async fn stop(&self, instance: &Instance, reason: &str) -> Result<(), LaunchError>;
}
