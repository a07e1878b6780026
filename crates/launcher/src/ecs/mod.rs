//! ECS Fargate: one task per tenant, in a task-definition family of its own.
//!
//! What lives here, one concern a module:
//!
//! - [`config`]: [`EcsConfig`], where and how workers run (plain values; the
//!   `--ecs-*` flags that fill it are the CLI's, in `crates/cli`);
//! - [`sdk`]: [`load_aws_config`], the SDK configuration every AWS client of
//!   the platform is built from;
//! - [`throttle`]: the client-side token buckets ([`RateLimits`]) and the
//!   retry policy ([`RetryPolicy`]) every ECS call goes through;
//! - [`task_definition`]: the rendered definition as typed values
//!   ([`TaskDefinition`]) and their translation into RegisterTaskDefinition;
//! - [`observe`]: ListTasks/DescribeTasks, and a task in the launcher's terms
//!   ([`phase`], [`exit`]);
//! - [`events`]: ECS task state-change events from an SQS queue
//!   ([`SqsTaskEvents`], the [`TaskEvents`](crate::TaskEvents) on aws-sdk-sqs);
//! - [`capacity`]: the account's Fargate vCPU quotas and the admission of a
//!   launch against them;
//! - [`launcher`]: [`EcsLauncher`], the [`Launcher`](crate::Launcher) on
//!   `aws-sdk-ecs`.
//!
//! What does not: the task definition's content, which `polybot-deploy-spec`
//! renders from `deploy/ecs/worker.task-definition.template.json` (so the
//! file an operator reads is what is registered), and secrets, which the
//! Secrets Manager store writes.
//!
//! - **Task definitions.** Family `polybot-t-<tenant id>`, ARM64 Fargate, the
//!   configured size (the smallest, 0.25 vCPU / 512 MiB, by default; per
//!   tenant with [`EcsLauncher::set_tenant_size`]). The rendered definition
//!   is hashed and the hash is a tag of the revision
//!   ([`DEFINITION_HASH_TAG`]): an unchanged definition registers nothing.
//!   Things that change with every spec (the spec hash, extra environment)
//!   travel as RunTask container overrides instead, so that a config change
//!   does not cost a registration (RegisterTaskDefinition refills at 1/s).
//! - **Secrets.** The container's `secrets` point at the tenant's secret with
//!   a JSON key each: `<arn>:EXCHANGE_KEYS::` and `<arn>:DATABASE_URL::`.
//!   The Secrets Manager store writes those two top-level keys as strings
//!   beside the `exchange_keys`/`database_url` document, so ECS injects the
//!   exchange keys as the JSON text the worker expects in `EXCHANGE_KEYS`.
//!   The worker never calls Secrets Manager.
//! - **Launching.** RunTask with `startedBy` [`STARTED_BY`], `group`
//!   `tenant:<id>` (how [`list`](crate::Launcher::list) finds the tenant of a
//!   task), tags propagated from the task definition plus the spec hash, and
//!   a `clientToken` derived from the tenant, the spec hash and an attempt:
//!   a call retried after a timeout or throttling carries the same token, so
//!   ECS starts at most one task for it.
//! - **Throttling.** Each API class has a client-side token bucket sized from
//!   ECS's documented account limits ([`RateLimits`]); throttling, 5xx and
//!   transport errors are retried with jittered exponential backoff
//!   ([`RetryPolicy`]); past the last attempt a throttled call returns
//!   [`LaunchError::Throttled`], which the reconciler retries on its next pass.

use std::sync::{Mutex, MutexGuard, PoisonError};

use polybot_core::TenantId;
use sha2::{Digest, Sha256};

use crate::LaunchError;

pub mod capacity;
pub mod config;
pub mod events;
pub mod launcher;
pub mod observe;
pub mod sdk;
pub mod task_definition;
pub mod throttle;

pub use capacity::{InUse, QuotaSource, Quotas, ServiceQuotas};
pub use config::EcsConfig;
pub use events::SqsTaskEvents;
pub use launcher::EcsLauncher;
pub use observe::{exit, phase};
pub use sdk::{https_client, load_aws_config};
pub use task_definition::TaskDefinition;
pub use throttle::{Bucket, RateLimits, RetryPolicy};

/// `startedBy` of every task the launcher starts; [`Launcher::list`](crate::Launcher::list) lists only these.
pub const STARTED_BY: &str = "polybot";
/// Task-definition family prefix: `polybot-t-<tenant id>`.
pub const FAMILY_PREFIX: &str = "polybot-t-";
/// `group` prefix: `tenant:<tenant id>`.
pub const GROUP_PREFIX: &str = "tenant:";
/// Task tag holding the [`LaunchSpec::spec_hash`](crate::LaunchSpec::spec_hash) the task was started with.
pub const SPEC_HASH_TAG: &str = "polybot:spec-hash";
/// Task-definition tag holding the hash of the rendered definition.
pub const DEFINITION_HASH_TAG: &str = "polybot:definition-hash";
/// DescribeTasks takes at most this many tasks.
pub const DESCRIBE_TASKS_MAX: usize = 100;
const LAUNCHER: &str = "ecs";

/// The tenant's task-definition family.
pub fn family(tenant: TenantId) -> String {
    format!("{FAMILY_PREFIX}{tenant}")
}

/// The RunTask `group` of the tenant's tasks.
pub fn group(tenant: TenantId) -> String {
    format!("{GROUP_PREFIX}{tenant}")
}

/// The RunTask `clientToken` for one launch: the same tenant, spec hash and
/// attempt give the same token (64 hex characters, the API's maximum length).
pub fn client_token(tenant: TenantId, spec_hash: &str, attempt: &str) -> String {
    let mut hash = Sha256::new();
    for part in [tenant.to_string().as_str(), spec_hash, attempt] {
        hash.update(part.as_bytes());
        hash.update([0u8]);
    }
    hex::encode(hash.finalize())
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn invalid(message: String) -> LaunchError {
    LaunchError::InvalidSpec {
        launcher: LAUNCHER,
        message,
    }
}

fn failed(operation: &'static str, message: String) -> LaunchError {
    LaunchError::Failed {
        launcher: LAUNCHER,
        operation,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_token_depends_on_tenant_spec_and_attempt_only() {
        let tenant = TenantId::new();
        let a = client_token(tenant, "h1", "0");
        assert_eq!(a, client_token(tenant, "h1", "0"));
        assert_eq!(a.len(), 64);
        assert_ne!(a, client_token(tenant, "h1", "1"));
        assert_ne!(a, client_token(tenant, "h2", "0"));
        assert_ne!(a, client_token(TenantId::new(), "h1", "0"));
    }
}
