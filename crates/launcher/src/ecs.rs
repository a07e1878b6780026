//! ECS Fargate: one task per tenant, in a task-definition family of its own.
//!
//! What lives here: [`EcsLauncher`] (the [`Launcher`] on `aws-sdk-ecs`), its
//! configuration ([`EcsConfig`], and [`EcsArgs`], the `--ecs-*` flags the
//! control plane flattens in), and [`load_aws_config`], the SDK configuration
//! every AWS client of the platform is built from. What does not: the task
//! definition itself, which `polybot-deploy-spec` renders from
//! `deploy/ecs/worker.task-definition.template.json` (so the file an operator
//! reads is what is registered), and secrets, which the Secrets Manager store
//! writes.
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
//!   `tenant:<id>` (how [`list`](Launcher::list) finds the tenant of a task),
//!   tags propagated from the task definition plus the spec hash, and a
//!   `clientToken` derived from the tenant, the spec hash and an attempt:
//!   a call retried after a timeout or throttling carries the same token, so
//!   ECS starts at most one task for it.
//! - **Throttling.** Each API class has a client-side token bucket sized from
//!   ECS's documented account limits ([`RateLimits`]); throttling, 5xx and
//!   transport errors are retried with jittered exponential backoff
//!   ([`RetryPolicy`]); past the last attempt a throttled call returns
//!   [`LaunchError::Throttled`], which the reconciler retries on its next pass.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use async_trait::async_trait;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_ecs::Client;
use aws_sdk_ecs::config::SharedHttpClient;
use aws_sdk_ecs::config::retry::RetryConfig;
use aws_sdk_ecs::config::timeout::TimeoutConfig;
use aws_sdk_ecs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_ecs::operation::register_task_definition::builders::RegisterTaskDefinitionFluentBuilder;
use aws_sdk_ecs::types::{
    AssignPublicIp, AwsVpcConfiguration, CapacityProviderStrategyItem, Compatibility,
    ContainerCondition, ContainerDefinition, ContainerDependency, ContainerOverride,
    CpuArchitecture, DesiredStatus, HealthCheck, KeyValuePair, LinuxParameters, LogConfiguration,
    LogDriver, MountPoint, NetworkConfiguration, NetworkMode, OsFamily, PortMapping, PropagateTags,
    RuntimePlatform, Secret, Tag, Task, TaskDefinitionField, TaskField, TaskOverride, TaskStopCode,
    TransportProtocol, Volume,
};
use chrono::{DateTime, Utc};
use polybot_core::{Mode, TenantId};
use polybot_deploy_spec::worker::{MAX_TAGS, RESERVED_TAG_KEYS, WORKER_CONTAINER};
use polybot_deploy_spec::{FargateSize, IbkrSidecar, WorkerMode, WorkerTaskSpec};
use rand::Rng;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::{Exit, Instance, LaunchError, LaunchSpec, Launcher, Phase};

/// `startedBy` of every task the launcher starts; [`Launcher::list`] lists only these.
pub const STARTED_BY: &str = "polybot";
/// Task-definition family prefix: `polybot-t-<tenant id>`.
pub const FAMILY_PREFIX: &str = "polybot-t-";
/// `group` prefix: `tenant:<tenant id>`.
pub const GROUP_PREFIX: &str = "tenant:";
/// Task tag holding the [`LaunchSpec::spec_hash`] the task was started with.
pub const SPEC_HASH_TAG: &str = "polybot:spec-hash";
/// Task-definition tag holding the hash of the rendered definition.
pub const DEFINITION_HASH_TAG: &str = "polybot:definition-hash";
/// DescribeTasks takes at most this many tasks.
pub const DESCRIBE_TASKS_MAX: usize = 100;
/// StopTask keeps at most this many characters of the reason.
const STOP_REASON_MAX: usize = 255;
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

// --- SDK configuration -------------------------------------------------------

/// The HTTPS client of every AWS client: hyper 1 with rustls on ring (the
/// crypto provider the rest of the workspace already builds), trusting the
/// system's root certificates. Plain `http://` endpoints (an emulator on
/// loopback) work too.
pub fn https_client() -> SharedHttpClient {
    use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
    aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

/// The AWS SDK configuration as every AWS tool reads it: the standard
/// credential chain (environment, profile, web identity, ECS container and
/// EC2 instance credentials), the region (`AWS_REGION`, the profile), and
/// endpoint overrides (`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_ECS`,
/// `AWS_ENDPOINT_URL_SECRETS_MANAGER`). SSO profiles and `credential_process`
/// are not built in (they are SDK features this binary leaves out).
pub async fn load_aws_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(https_client())
        .load()
        .await
}

// --- configuration -----------------------------------------------------------

/// Where and how workers run on ECS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EcsConfig {
    /// Cluster name or ARN.
    pub cluster: String,
    pub subnets: Vec<String>,
    /// Empty: the VPC's default security group.
    pub security_groups: Vec<String>,
    /// The `polybot` image the worker runs.
    pub worker_image: String,
    /// The role ECS pulls the image and reads the tenant's secret with.
    pub execution_role_arn: String,
    /// The role the worker runs as (no Secrets Manager access).
    pub task_role_arn: String,
    /// The workers' CloudWatch log group (awslogs).
    pub log_group: String,
    /// The cluster's region (also the log group's and the secrets').
    pub region: String,
    pub assign_public_ip: bool,
    /// Paper tenants run on FARGATE_SPOT, as x86-64 tasks (Fargate Spot does
    /// not run ARM64); everyone else on FARGATE, ARM64.
    pub spot_for_paper: bool,
    /// Cost-allocation tags on every task definition, propagated to its tasks.
    pub cost_tags: BTreeMap<String, String>,
    /// Default task CPU units (1024 = 1 vCPU).
    pub cpu: u32,
    /// Default task memory, MiB; must pair with `cpu` as Fargate requires.
    pub memory: u32,
    /// The IB Gateway sidecar's image, for tenants with IBKR keys.
    pub ibkr_gateway_image: Option<String>,
}

impl EcsConfig {
    /// The default task size, validated.
    pub fn size(&self) -> Result<FargateSize, LaunchError> {
        FargateSize::new(self.cpu, self.memory).map_err(|e| invalid(e.to_string()))
    }
}

/// `polybot control-plane --launcher ecs` options.
///
/// All optional at parse time, so that the flags can be flattened into a
/// command that also runs other launchers; [`EcsArgs::into_config`] says
/// which ones ECS needs.
#[derive(Debug, Clone, clap::Args)]
pub struct EcsArgs {
    /// ECS cluster (name or ARN) the workers run in. Required with --launcher ecs.
    #[arg(long = "ecs-cluster", env = "POLYBOT_ECS_CLUSTER")]
    pub ecs_cluster: Option<String>,

    /// Subnets of the workers' network interfaces, comma-separated (private
    /// subnets with a NAT gateway, or public ones with --ecs-assign-public-ip).
    /// Required with --launcher ecs.
    #[arg(
        long = "ecs-subnets",
        env = "POLYBOT_ECS_SUBNETS",
        value_delimiter = ','
    )]
    pub ecs_subnets: Vec<String>,

    /// Security groups of the workers, comma-separated; none means the VPC's
    /// default group. Workers need outbound HTTPS only.
    #[arg(
        long = "ecs-security-groups",
        env = "POLYBOT_ECS_SECURITY_GROUPS",
        value_delimiter = ','
    )]
    pub ecs_security_groups: Vec<String>,

    /// The image workers run (the `polybot` image, best pinned by digest).
    /// Required with --launcher ecs.
    #[arg(long = "worker-image", env = "POLYBOT_WORKER_IMAGE")]
    pub worker_image: Option<String>,

    /// IAM role ECS starts workers with: pulls the image, writes logs, and
    /// reads the tenant's secret (polybot/tenants/*) to inject it. Required
    /// with --launcher ecs.
    #[arg(long = "execution-role-arn", env = "POLYBOT_EXECUTION_ROLE_ARN")]
    pub execution_role_arn: Option<String>,

    /// IAM role workers run as; it needs no AWS permissions (no Secrets
    /// Manager access). Required with --launcher ecs.
    #[arg(long = "task-role-arn", env = "POLYBOT_TASK_ROLE_ARN")]
    pub task_role_arn: Option<String>,

    /// CloudWatch log group of the workers' logs.
    #[arg(
        long = "worker-log-group",
        env = "POLYBOT_WORKER_LOG_GROUP",
        default_value = "/polybot/workers"
    )]
    pub worker_log_group: String,

    /// Give workers a public IP (only for public subnets without a NAT gateway).
    #[arg(long = "ecs-assign-public-ip", env = "POLYBOT_ECS_ASSIGN_PUBLIC_IP")]
    pub ecs_assign_public_ip: bool,

    /// Run paper-mode tenants on Fargate Spot (as x86-64 tasks: Spot does not
    /// run ARM64); live tenants always run On-Demand.
    #[arg(long = "ecs-spot-for-paper", env = "POLYBOT_ECS_SPOT_FOR_PAPER")]
    pub ecs_spot_for_paper: bool,

    /// Worker task CPU units (1024 = 1 vCPU): 256, 512, 1024, 2048, 4096, 8192 or 16384.
    #[arg(long = "worker-cpu", env = "POLYBOT_WORKER_CPU", default_value_t = 256)]
    pub worker_cpu: u32,

    /// Worker task memory in MiB, a size Fargate offers with --worker-cpu
    /// (512, 1024 or 2048 with 256 CPU units).
    #[arg(
        long = "worker-memory",
        env = "POLYBOT_WORKER_MEMORY",
        default_value_t = 512
    )]
    pub worker_memory: u32,

    /// Cost-allocation tag KEY=VALUE on every worker task definition and
    /// task; repeat the flag, or comma-separate in the environment variable.
    #[arg(
        long = "cost-tag",
        env = "POLYBOT_COST_TAGS",
        value_delimiter = ',',
        value_parser = parse_tag
    )]
    pub cost_tags: Vec<(String, String)>,

    /// Image of the IB Gateway sidecar, for tenants with IBKR keys.
    #[arg(long = "ibkr-gateway-image", env = "POLYBOT_IBKR_GATEWAY_IMAGE")]
    pub ibkr_gateway_image: Option<String>,
}

fn parse_tag(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_owned(), value.trim().to_owned()))
        }
        _ => Err(format!("{text:?} is not KEY=VALUE")),
    }
}

impl EcsArgs {
    /// The configuration, with the region of the SDK configuration; an error
    /// names each missing flag and its environment variable.
    pub fn into_config(self, aws: &SdkConfig) -> Result<EcsConfig, LaunchError> {
        let mut missing = Vec::new();
        let mut need = |value: Option<String>, what: &str| {
            value.filter(|v| !v.trim().is_empty()).unwrap_or_else(|| {
                missing.push(what.to_owned());
                String::new()
            })
        };
        let cluster = need(self.ecs_cluster, "--ecs-cluster (POLYBOT_ECS_CLUSTER)");
        let worker_image = need(self.worker_image, "--worker-image (POLYBOT_WORKER_IMAGE)");
        let execution_role_arn = need(
            self.execution_role_arn,
            "--execution-role-arn (POLYBOT_EXECUTION_ROLE_ARN)",
        );
        let task_role_arn = need(
            self.task_role_arn,
            "--task-role-arn (POLYBOT_TASK_ROLE_ARN)",
        );
        let region = need(
            aws.region().map(|r| r.to_string()),
            "an AWS region (AWS_REGION or the profile's region)",
        );
        let subnets: Vec<String> = self
            .ecs_subnets
            .into_iter()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect();
        if subnets.is_empty() {
            missing.push("--ecs-subnets (POLYBOT_ECS_SUBNETS)".to_owned());
        }
        if !missing.is_empty() {
            return Err(invalid(format!(
                "the ECS launcher needs {}",
                missing.join(", ")
            )));
        }
        Ok(EcsConfig {
            cluster,
            subnets,
            security_groups: self
                .ecs_security_groups
                .into_iter()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect(),
            worker_image,
            execution_role_arn,
            task_role_arn,
            log_group: self.worker_log_group,
            region,
            assign_public_ip: self.ecs_assign_public_ip,
            spot_for_paper: self.ecs_spot_for_paper,
            cost_tags: self.cost_tags.into_iter().collect(),
            cpu: self.worker_cpu,
            memory: self.worker_memory,
            ibkr_gateway_image: self.ibkr_gateway_image,
        })
    }
}

/// How a throttled or failed call is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Calls in all, the first included.
    pub max_attempts: u32,
    /// The backoff before the second call; it doubles after each.
    pub base_delay: Duration,
    /// The most the backoff grows to.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 6,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// "Full jitter": a random delay up to the exponential bound, so that
    /// clients throttled together do not retry together.
    fn backoff(&self, attempt: u32) -> Duration {
        let bound = self
            .base_delay
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20))
            .min(self.max_delay);
        let millis = u64::try_from(bound.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(rand::rng().random_range(0..=millis))
    }
}

/// A token bucket: `burst` calls at once, refilled at `per_second`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    pub burst: u32,
    pub per_second: u32,
}

/// Client-side rate limits per ECS API class, from ECS's documented
/// account-level limits (us-east-1 defaults, DESIGN.md "Scale"): RunTask and
/// StopTask share a bucket (burst 100, 40/s); ListTasks, DescribeTasks and
/// the task-definition reads another (burst 100, 20/s);
/// RegisterTaskDefinition has its own (burst 20, 1/s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    pub run_stop: Bucket,
    pub describe: Bucket,
    pub register: Bucket,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            run_stop: Bucket {
                burst: 100,
                per_second: 40,
            },
            describe: Bucket {
                burst: 100,
                per_second: 20,
            },
            register: Bucket {
                burst: 20,
                per_second: 1,
            },
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Api {
    RunStop,
    Describe,
    Register,
}

/// Tokens are counted in thousandths, so the refill needs no floats.
#[derive(Debug)]
struct TokenBucket {
    capacity: u128,
    per_second: u128,
    state: Mutex<(u128, Instant)>,
}

const MILLI: u128 = 1000;

impl TokenBucket {
    fn new(bucket: Bucket) -> Self {
        let capacity = u128::from(bucket.burst.max(1)) * MILLI;
        Self {
            capacity,
            per_second: u128::from(bucket.per_second.max(1)),
            state: Mutex::new((capacity, Instant::now())),
        }
    }

    async fn acquire(&self) {
        loop {
            let wait = {
                let mut state = lock(&self.state);
                let now = Instant::now();
                let refill = now.duration_since(state.1).as_nanos() * self.per_second * MILLI
                    / 1_000_000_000;
                if refill > 0 {
                    state.0 = (state.0 + refill).min(self.capacity);
                    state.1 = now;
                }
                if state.0 >= MILLI {
                    state.0 -= MILLI;
                    return;
                }
                let nanos = (MILLI - state.0) * 1_000_000_000 / (self.per_second * MILLI);
                Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
                    + Duration::from_micros(100)
            };
            tokio::time::sleep(wait).await;
        }
    }
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

// --- the launcher ------------------------------------------------------------

/// A registered revision of a tenant's task definition.
#[derive(Debug, Clone)]
struct Registered {
    hash: String,
    arn: String,
}

#[derive(Debug, Default)]
struct State {
    definitions: HashMap<TenantId, Registered>,
    sizes: HashMap<TenantId, FargateSize>,
    /// Successful RunTasks per tenant: the attempt part of the next clientToken.
    launches: HashMap<TenantId, u64>,
    /// STOPPED tasks already reported by `list`.
    reported: HashSet<String>,
}

/// Runs each tenant's worker as one ECS Fargate task.
#[derive(Debug)]
pub struct EcsLauncher {
    client: Client,
    config: EcsConfig,
    retry: RetryPolicy,
    run_stop: TokenBucket,
    describe: TokenBucket,
    register: TokenBucket,
    /// Random per launcher: a restarted control plane never reuses a token.
    incarnation: String,
    state: Mutex<State>,
}

impl EcsLauncher {
    /// A launcher for `config`, with clients built from `aws` (see
    /// [`load_aws_config`]). Checks the configuration by rendering a task
    /// definition, so a bad role ARN or Fargate size fails at startup.
    pub fn new(config: EcsConfig, aws: &SdkConfig) -> Result<Self, LaunchError> {
        let ecs = aws_sdk_ecs::config::Builder::from(aws)
            // Retries are ours: bounded, jittered, rate-limited, and with the
            // same clientToken.
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .operation_attempt_timeout(Duration::from_secs(20))
                    .build(),
            )
            .build();
        Self::from_client(config, Client::from_conf(ecs))
    }

    /// A launcher on an existing client (tests give one with mocked
    /// responses). The client should not retry by itself.
    pub fn from_client(config: EcsConfig, client: Client) -> Result<Self, LaunchError> {
        validate(&config)?;
        let limits = RateLimits::default();
        let mut nonce = [0u8; 4];
        rand::rng().fill(&mut nonce);
        Ok(Self {
            client,
            config,
            retry: RetryPolicy::default(),
            run_stop: TokenBucket::new(limits.run_stop),
            describe: TokenBucket::new(limits.describe),
            register: TokenBucket::new(limits.register),
            incarnation: hex::encode(nonce),
            state: Mutex::new(State::default()),
        })
    }

    pub fn with_retry_policy(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    pub fn with_rate_limits(mut self, limits: RateLimits) -> Self {
        self.run_stop = TokenBucket::new(limits.run_stop);
        self.describe = TokenBucket::new(limits.describe);
        self.register = TokenBucket::new(limits.register);
        self
    }

    pub fn config(&self) -> &EcsConfig {
        &self.config
    }

    /// The task size of `tenant`'s plan, instead of the configured default;
    /// the next [`ensure_spec`](Launcher::ensure_spec) registers a revision
    /// with it. Rejects sizes Fargate does not offer.
    pub fn set_tenant_size(
        &self,
        tenant: TenantId,
        cpu: u32,
        memory: u32,
    ) -> Result<(), LaunchError> {
        let size = FargateSize::new(cpu, memory).map_err(|e| invalid(e.to_string()))?;
        lock(&self.state).sizes.insert(tenant, size);
        Ok(())
    }

    fn size_of(&self, tenant: TenantId) -> Result<FargateSize, LaunchError> {
        match lock(&self.state).sizes.get(&tenant) {
            Some(size) => Ok(*size),
            None => self.config.size(),
        }
    }

    fn spot(&self, mode: Mode) -> bool {
        self.config.spot_for_paper && mode == Mode::Paper
    }

    /// The task definition `spec` runs with, as RegisterTaskDefinition's
    /// input, and its hash.
    pub fn task_definition(&self, spec: &LaunchSpec) -> Result<(Value, String), LaunchError> {
        let secret_arn = spec.secret_reference.clone().ok_or_else(|| {
            invalid(format!(
                "tenant {} has no secret reference: ECS injects the worker's secrets from \
                 Secrets Manager, so the control plane needs --secrets aws",
                spec.tenant
            ))
        })?;
        let mut size = self.size_of(spec.tenant)?;
        if spec.ibkr && size.memory() < polybot_deploy_spec::worker::IBKR_MIN_TASK_MEMORY {
            // The gateway needs room of its own: the smallest size that fits both.
            size = FargateSize::smallest_fitting(
                size.cpu(),
                polybot_deploy_spec::worker::IBKR_MIN_TASK_MEMORY,
            )
            .ok_or_else(|| invalid("no Fargate size fits the IB Gateway sidecar".to_owned()))?;
        }
        let ibkr = if spec.ibkr {
            let image = self.config.ibkr_gateway_image.clone().ok_or_else(|| {
                invalid(format!(
                    "tenant {} has IBKR keys but no IB Gateway image is configured \
                     (--ibkr-gateway-image, POLYBOT_IBKR_GATEWAY_IMAGE)",
                    spec.tenant
                ))
            })?;
            Some(IbkrSidecar { image })
        } else {
            None
        };
        render(
            &self.config,
            spec.tenant,
            spec.mode,
            secret_arn,
            size,
            ibkr,
            self.spot(spec.mode),
        )
    }

    /// The ARN of the revision `spec` runs with, registering one if the
    /// family has none with the same definition.
    async fn ensure_definition(&self, spec: &LaunchSpec) -> Result<String, LaunchError> {
        let (definition, hash) = self.task_definition(spec)?;
        if let Some(known) = lock(&self.state).definitions.get(&spec.tenant)
            && known.hash == hash
        {
            return Ok(known.arn.clone());
        }
        let arn = match self.latest_with_hash(spec.tenant, &hash).await? {
            Some(arn) => arn,
            None => self.register_definition(&definition).await?,
        };
        lock(&self.state).definitions.insert(
            spec.tenant,
            Registered {
                hash,
                arn: arn.clone(),
            },
        );
        Ok(arn)
    }

    /// The latest ACTIVE revision of the tenant's family, if its definition
    /// hash is `hash`.
    async fn latest_with_hash(
        &self,
        tenant: TenantId,
        hash: &str,
    ) -> Result<Option<String>, LaunchError> {
        let family = family(tenant);
        let listed = self
            .call(Api::Describe, "ListTaskDefinitions", || {
                self.client
                    .list_task_definitions()
                    .family_prefix(&family)
                    .status(aws_sdk_ecs::types::TaskDefinitionStatus::Active)
                    .sort(aws_sdk_ecs::types::SortOrder::Desc)
                    .max_results(100)
                    .send()
            })
            .await?;
        // The family prefix is a whole tenant id, so only this family matches;
        // the highest revision wins whatever order the page is in.
        let latest = listed
            .task_definition_arns()
            .iter()
            .filter(|arn| arn_family(arn) == Some(family.as_str()))
            .max_by_key(|arn| arn_revision(arn));
        let Some(latest) = latest else {
            return Ok(None);
        };
        let described = self
            .call(Api::Describe, "DescribeTaskDefinition", || {
                self.client
                    .describe_task_definition()
                    .task_definition(latest)
                    .include(TaskDefinitionField::Tags)
                    .send()
            })
            .await?;
        let same = described
            .tags()
            .iter()
            .any(|t| t.key() == Some(DEFINITION_HASH_TAG) && t.value() == Some(hash));
        Ok(same.then(|| latest.clone()))
    }

    async fn register_definition(&self, definition: &Value) -> Result<String, LaunchError> {
        let request = register_request(self.client.register_task_definition(), definition)?;
        let out = self
            .call(Api::Register, "RegisterTaskDefinition", || {
                request.clone().send()
            })
            .await?;
        let arn = out
            .task_definition()
            .and_then(|td| td.task_definition_arn())
            .ok_or_else(|| {
                failed(
                    "RegisterTaskDefinition",
                    "the response holds no task definition ARN".into(),
                )
            })?;
        tracing::info!(task_definition = arn, "registered a worker task definition");
        Ok(arn.to_owned())
    }

    /// Starts `spec`'s worker with the clientToken of (tenant, spec hash,
    /// `attempt`): calling again with the same three starts nothing new. The
    /// caller picks a new attempt for a new launch (after the previous task
    /// stopped).
    pub async fn start_attempt(
        &self,
        spec: &LaunchSpec,
        attempt: &str,
    ) -> Result<Instance, LaunchError> {
        let definition = self.ensure_definition(spec).await?;
        let token = client_token(spec.tenant, &spec.spec_hash, attempt);
        let spot = self.spot(spec.mode);
        let mut environment = vec![
            KeyValuePair::builder()
                .name("POLYBOT_SPEC_HASH")
                .value(&spec.spec_hash)
                .build(),
        ];
        environment.extend(
            spec.env
                .iter()
                .map(|(name, value)| KeyValuePair::builder().name(name).value(value).build()),
        );
        let vpc = AwsVpcConfiguration::builder()
            .set_subnets(Some(self.config.subnets.clone()))
            .set_security_groups(
                (!self.config.security_groups.is_empty())
                    .then(|| self.config.security_groups.clone()),
            )
            .assign_public_ip(if self.config.assign_public_ip {
                AssignPublicIp::Enabled
            } else {
                AssignPublicIp::Disabled
            })
            .build()
            .map_err(|e| invalid(format!("network configuration: {e}")))?;
        let capacity = CapacityProviderStrategyItem::builder()
            .capacity_provider(if spot { "FARGATE_SPOT" } else { "FARGATE" })
            .weight(1)
            .build()
            .map_err(|e| invalid(format!("capacity provider strategy: {e}")))?;
        let request = self
            .client
            .run_task()
            .cluster(&self.config.cluster)
            .task_definition(&definition)
            .count(1)
            .started_by(STARTED_BY)
            .group(group(spec.tenant))
            .client_token(&token)
            .capacity_provider_strategy(capacity)
            .network_configuration(
                NetworkConfiguration::builder()
                    .awsvpc_configuration(vpc)
                    .build(),
            )
            .overrides(
                TaskOverride::builder()
                    .container_overrides(
                        ContainerOverride::builder()
                            .name(WORKER_CONTAINER)
                            .set_environment(Some(environment))
                            .build(),
                    )
                    .build(),
            )
            // tenant_id and the cost tags come from the task definition.
            .propagate_tags(PropagateTags::TaskDefinition)
            .enable_ecs_managed_tags(true)
            .tags(tag(SPEC_HASH_TAG, &spec.spec_hash));
        let out = self
            .call(Api::RunStop, "RunTask", || request.clone().send())
            .await?;
        let Some(task) = out.tasks().first() else {
            let failures: Vec<String> = out
                .failures()
                .iter()
                .map(|f| {
                    [f.reason(), f.detail(), f.arn()]
                        .into_iter()
                        .flatten()
                        .collect::<Vec<_>>()
                        .join(": ")
                })
                .collect();
            return Err(failed(
                "RunTask",
                if failures.is_empty() {
                    "ECS started no task and gave no reason".into()
                } else {
                    format!("ECS started no task: {}", failures.join("; "))
                },
            ));
        };
        let instance = to_instance(task, Some(spec.tenant))
            .ok_or_else(|| failed("RunTask", "the started task has no ARN".into()))?;
        tracing::info!(tenant = %spec.tenant, task = %instance.id, spot, "started a worker task");
        Ok(Instance {
            spec_hash: spec.spec_hash.clone(),
            ..instance
        })
    }

    /// One API call with the class's rate limit, retrying throttling, 5xx
    /// and transport errors with jittered backoff.
    async fn call<T, E, F, Fut>(
        &self,
        api: Api,
        operation: &'static str,
        mut send: F,
    ) -> Result<T, LaunchError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, SdkError<E>>>,
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let bucket = match api {
            Api::RunStop => &self.run_stop,
            Api::Describe => &self.describe,
            Api::Register => &self.register,
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            bucket.acquire().await;
            let err = match send().await {
                Ok(out) => return Ok(out),
                Err(err) => err,
            };
            let kind = classify(&err);
            let message = describe_error(&err);
            if kind == Retry::No {
                return Err(failed(operation, message));
            }
            if attempt >= self.retry.max_attempts {
                let message = format!("{message} (gave up after {attempt} attempts)");
                return Err(if kind == Retry::Throttled {
                    LaunchError::Throttled {
                        launcher: LAUNCHER,
                        operation,
                        message,
                    }
                } else {
                    failed(operation, message)
                });
            }
            let delay = self.retry.backoff(attempt);
            tracing::debug!(operation, attempt, ?delay, error = %message, "retrying an ECS call");
            tokio::time::sleep(delay).await;
        }
    }
}

fn validate(config: &EcsConfig) -> Result<(), LaunchError> {
    if config.cluster.trim().is_empty() {
        return Err(invalid("the cluster is empty".into()));
    }
    if config.subnets.is_empty() {
        return Err(invalid("no subnets are configured".into()));
    }
    let size = config.size()?;
    // Render once for a made-up tenant: role ARNs, region, log group, image
    // and tags are checked now rather than at the first launch.
    let probe = TenantId::from_uuid(Default::default());
    let secret = format!(
        "arn:aws:secretsmanager:{}:000000000000:secret:polybot/tenants/{probe}-AAAAAA",
        config.region
    );
    render(
        config,
        probe,
        Mode::Paper,
        secret,
        size,
        None,
        config.spot_for_paper,
    )
    .map(|_| ())
}

/// Renders the tenant's task definition through `polybot-deploy-spec`, puts
/// it in the tenant's family, and tags it with its own hash.
fn render(
    config: &EcsConfig,
    tenant: TenantId,
    mode: Mode,
    secret_arn: String,
    size: FargateSize,
    ibkr: Option<IbkrSidecar>,
    spot: bool,
) -> Result<(Value, String), LaunchError> {
    let reserved: Vec<&str> = RESERVED_TAG_KEYS
        .iter()
        .copied()
        .chain([DEFINITION_HASH_TAG])
        .collect();
    if let Some(key) = config
        .cost_tags
        .keys()
        .find(|k| reserved.contains(&k.as_str()))
    {
        return Err(invalid(format!(
            "cost tag {key:?} is set by the launcher itself"
        )));
    }
    if config.cost_tags.len() + reserved.len() > MAX_TAGS {
        return Err(invalid(format!(
            "at most {} cost tags fit on a task definition; {} are configured",
            MAX_TAGS - reserved.len(),
            config.cost_tags.len()
        )));
    }
    let spec = WorkerTaskSpec {
        tenant_id: tenant.to_string(),
        image: config.worker_image.clone(),
        secret_arn,
        cpu: size.cpu(),
        memory: size.memory(),
        execution_role_arn: config.execution_role_arn.clone(),
        task_role_arn: config.task_role_arn.clone(),
        log_group: config.log_group.clone(),
        region: config.region.clone(),
        mode: match mode {
            Mode::Paper => WorkerMode::Paper,
            Mode::Live => WorkerMode::Live,
        },
        ibkr,
        extra_tags: config.cost_tags.clone(),
    };
    let mut definition = spec.render().map_err(|e| invalid(e.to_string()))?;
    let object = definition
        .as_object_mut()
        .ok_or_else(|| invalid("the rendered task definition is not an object".into()))?;
    object.insert("family".into(), Value::String(family(tenant)));
    if spot {
        // Fargate Spot runs x86-64 tasks only; the image is multi-platform.
        object.insert(
            "runtimePlatform".into(),
            serde_json::json!({"cpuArchitecture": "X86_64", "operatingSystemFamily": "LINUX"}),
        );
    }
    let hash = hex::encode(&Sha256::digest(definition.to_string().as_bytes())[..16]);
    if let Some(tags) = definition.get_mut("tags").and_then(Value::as_array_mut) {
        tags.push(serde_json::json!({"key": DEFINITION_HASH_TAG, "value": hash}));
    }
    Ok((definition, hash))
}

fn tag(key: &str, value: &str) -> Tag {
    Tag::builder().key(key).value(value).build()
}

/// `arn:…:task-definition/<family>:<revision>` → family.
fn arn_family(arn: &str) -> Option<&str> {
    let name = arn.rsplit_once('/')?.1;
    Some(name.rsplit_once(':')?.0)
}

fn arn_revision(arn: &str) -> u64 {
    arn.rsplit_once(':')
        .and_then(|(_, r)| r.parse().ok())
        .unwrap_or(0)
}

// --- errors ------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    No,
    Throttled,
    Transient,
}

/// Error codes AWS services use for throttling.
const THROTTLING_CODES: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "ThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "RequestThrottledException",
    "SlowDown",
];

fn classify<E: ProvideErrorMetadata>(err: &SdkError<E>) -> Retry {
    let status = err.raw_response().map(|r| r.status().as_u16());
    match err {
        SdkError::ServiceError(ctx) => {
            let code = ctx.err().code();
            if code.is_some_and(|c| THROTTLING_CODES.contains(&c)) || status == Some(429) {
                Retry::Throttled
            } else if code == Some("ServerException") || status.is_some_and(|s| s >= 500) {
                Retry::Transient
            } else {
                Retry::No
            }
        }
        SdkError::TimeoutError(_) => Retry::Transient,
        SdkError::DispatchFailure(failure) if failure.is_io() || failure.is_timeout() => {
            Retry::Transient
        }
        // An answer the SDK could not parse (an empty 429 or 503 from a proxy).
        SdkError::ResponseError(_) if status == Some(429) => Retry::Throttled,
        SdkError::ResponseError(_) if status.is_some_and(|s| s >= 500) => Retry::Transient,
        _ => Retry::No,
    }
}

/// The error code and message AWS sent, with the HTTP status; or the
/// transport error. ECS errors hold no secret values.
fn describe_error<E>(err: &SdkError<E>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let status = err
        .raw_response()
        .map(|r| format!(" (HTTP {})", r.status().as_u16()))
        .unwrap_or_default();
    match err {
        SdkError::ServiceError(ctx) => {
            let e = ctx.err();
            match (e.code(), e.message()) {
                (Some(code), Some(message)) => format!("{code}: {message}{status}"),
                (Some(code), None) => format!("{code}{status}"),
                _ => format!("{}{status}", DisplayErrorContext(err)),
            }
        }
        _ => format!("{}{status}", DisplayErrorContext(err)),
    }
}

// --- observing -----------------------------------------------------------------

fn chrono_time(t: Option<&aws_sdk_ecs::primitives::DateTime>) -> Option<DateTime<Utc>> {
    t.and_then(|t| DateTime::from_timestamp(t.secs(), t.subsec_nanos()))
}

/// The instance a task is, if it is one of ours (`group` `tenant:<id>`).
/// `tenant` overrides the group (RunTask's own answer).
fn to_instance(task: &Task, tenant: Option<TenantId>) -> Option<Instance> {
    let id = task.task_arn()?.to_owned();
    let tenant = match tenant {
        Some(tenant) => tenant,
        None => task
            .group()
            .and_then(|g| g.strip_prefix(GROUP_PREFIX))
            .and_then(|t| t.parse().ok())?,
    };
    let spec_hash = task
        .tags()
        .iter()
        .find(|t| t.key() == Some(SPEC_HASH_TAG))
        .and_then(|t| t.value())
        .or_else(|| {
            task.overrides()?
                .container_overrides()
                .iter()
                .flat_map(|c| c.environment())
                .find(|e| e.name() == Some("POLYBOT_SPEC_HASH"))
                .and_then(|e| e.value())
        })
        .unwrap_or_default()
        .to_owned();
    let started_at = chrono_time(task.started_at())
        .or_else(|| chrono_time(task.created_at()))
        .unwrap_or_else(Utc::now);
    Some(Instance {
        id,
        tenant,
        spec_hash,
        phase: phase(task),
        started_at,
    })
}

/// ECS's task lifecycle in the launcher's terms.
pub fn phase(task: &Task) -> Phase {
    let stopping = task.desired_status() == Some("STOPPED");
    match task.last_status().unwrap_or("PROVISIONING") {
        "STOPPED" => Phase::Exited(exit(task)),
        "DEACTIVATING" | "STOPPING" | "DEPROVISIONING" => Phase::Stopping,
        _ if stopping => Phase::Stopping,
        "RUNNING" => Phase::Running,
        _ => Phase::Starting,
    }
}

/// Why a STOPPED task stopped, from its stop code, its stopped reason and
/// its containers' exit codes and reasons, e.g.
/// `EssentialContainerExited: Essential container in task exited; container
/// worker exited with code 137 (killed by SIGKILL)`, `TaskFailedToStart:
/// ResourceInitializationError: unable to pull secrets …`, `SpotInterruption:
/// Your Spot Task was interrupted.`
pub fn exit(task: &Task) -> Exit {
    let code = task.stop_code();
    let requested = matches!(code, Some(TaskStopCode::UserInitiated));
    let stopped_reason = task.stopped_reason().filter(|r| !r.trim().is_empty());
    let mut parts = Vec::new();
    match (code, stopped_reason) {
        // StopTask's reason is the reconciler's own words.
        (Some(TaskStopCode::UserInitiated), Some(reason)) => parts.push(reason.to_owned()),
        (Some(code), Some(reason)) => parts.push(format!("{}: {reason}", code.as_str())),
        (Some(code), None) => parts.push(code.as_str().to_owned()),
        (None, Some(reason)) => parts.push(reason.to_owned()),
        (None, None) => {}
    }
    let worker = task
        .containers()
        .iter()
        .find(|c| c.name() == Some(WORKER_CONTAINER));
    let mut exit_code = worker.and_then(|c| c.exit_code());
    for container in task.containers() {
        let name = container.name().unwrap_or("?");
        if let Some(reason) = container.reason().filter(|r| !r.trim().is_empty()) {
            parts.push(format!("container {name}: {reason}"));
        }
        if let Some(code) = container.exit_code() {
            exit_code = exit_code.or(Some(code));
            let signal = match code {
                137 => " (killed by SIGKILL: out of memory, or still running at the stop timeout)",
                143 => " (killed by SIGTERM)",
                _ => "",
            };
            if !(requested && code == 0) {
                parts.push(format!(
                    "container {name} exited with exit code {code}{signal}"
                ));
            }
        }
    }
    let reason = if parts.is_empty() {
        "the task stopped; ECS gave no reason".to_owned()
    } else {
        parts.join("; ")
    };
    Exit {
        code: exit_code,
        reason,
        requested,
        at: chrono_time(task.stopped_at()).unwrap_or_else(Utc::now),
    }
}

#[async_trait]
impl Launcher for EcsLauncher {
    fn kind(&self) -> &'static str {
        LAUNCHER
    }

    fn injects_secrets(&self) -> bool {
        true
    }

    async fn ensure_spec(&self, spec: &LaunchSpec) -> Result<(), LaunchError> {
        self.ensure_definition(spec).await.map(|_| ())
    }

    async fn list(&self) -> Result<Vec<Instance>, LaunchError> {
        let mut arns: Vec<String> = Vec::new();
        for status in [DesiredStatus::Running, DesiredStatus::Stopped] {
            let mut next: Option<String> = None;
            loop {
                let out = self
                    .call(Api::Describe, "ListTasks", || {
                        self.client
                            .list_tasks()
                            .cluster(&self.config.cluster)
                            .started_by(STARTED_BY)
                            .desired_status(status.clone())
                            .max_results(100)
                            .set_next_token(next.clone())
                            .send()
                    })
                    .await?;
                arns.extend(out.task_arns().iter().cloned());
                next = out.next_token().map(str::to_owned);
                if next.is_none() {
                    break;
                }
            }
        }
        // A task that was asked to stop between the two listings is in both.
        let mut seen = HashSet::new();
        arns.retain(|arn| seen.insert(arn.clone()));

        let mut tasks = Vec::with_capacity(arns.len());
        for batch in arns.chunks(DESCRIBE_TASKS_MAX) {
            let out = self
                .call(Api::Describe, "DescribeTasks", || {
                    self.client
                        .describe_tasks()
                        .cluster(&self.config.cluster)
                        .set_tasks(Some(batch.to_vec()))
                        .include(TaskField::Tags)
                        .send()
                })
                .await?;
            tasks.extend(out.tasks().iter().cloned());
        }

        let mut state = lock(&self.state);
        let mut stopped_now = HashSet::new();
        let mut instances = Vec::with_capacity(tasks.len());
        for task in &tasks {
            let Some(instance) = to_instance(task, None) else {
                tracing::warn!(task = ?task.task_arn(), group = ?task.group(), "a task started by polybot has no tenant group; ignored");
                continue;
            };
            if let Phase::Exited(_) = instance.phase {
                stopped_now.insert(instance.id.clone());
                if state.reported.contains(&instance.id) {
                    continue;
                }
            }
            instances.push(instance);
        }
        // ECS forgets stopped tasks after a while; so does this set.
        state.reported = stopped_now;
        Ok(instances)
    }

    async fn start(&self, spec: &LaunchSpec) -> Result<Instance, LaunchError> {
        // The attempt changes only once a launch succeeded: a call that
        // failed or timed out is retried with the same clientToken.
        let launches = lock(&self.state)
            .launches
            .get(&spec.tenant)
            .copied()
            .unwrap_or(0);
        let attempt = format!("{}-{launches}", self.incarnation);
        let instance = self.start_attempt(spec, &attempt).await?;
        *lock(&self.state).launches.entry(spec.tenant).or_default() += 1;
        Ok(instance)
    }

    async fn stop(&self, instance: &Instance, reason: &str) -> Result<(), LaunchError> {
        let reason: String = reason.chars().take(STOP_REASON_MAX).collect();
        self.call(Api::RunStop, "StopTask", || {
            self.client
                .stop_task()
                .cluster(&self.config.cluster)
                .task(&instance.id)
                .reason(&reason)
                .send()
        })
        .await?;
        tracing::info!(tenant = %instance.tenant, task = %instance.id, reason, "stopped a worker task");
        Ok(())
    }
}

// --- the rendered JSON as RegisterTaskDefinition's input -------------------------

/// Fills `request` from the rendered task definition. Every key of the
/// template must be understood here: an unknown one is an error rather than
/// silently dropped, so the registered definition is the template's.
fn register_request(
    request: RegisterTaskDefinitionFluentBuilder,
    td: &Value,
) -> Result<RegisterTaskDefinitionFluentBuilder, LaunchError> {
    let td = object(td, "taskDefinition")?;
    known_keys(
        td,
        "taskDefinition",
        &[
            "family",
            "requiresCompatibilities",
            "networkMode",
            "cpu",
            "memory",
            "runtimePlatform",
            "executionRoleArn",
            "taskRoleArn",
            "containerDefinitions",
            "volumes",
            "tags",
        ],
    )?;
    let mut request = request
        .set_family(string(td, "family", "taskDefinition")?)
        .set_network_mode(
            string(td, "networkMode", "taskDefinition")?.map(|s| NetworkMode::from(s.as_str())),
        )
        .set_cpu(string(td, "cpu", "taskDefinition")?)
        .set_memory(string(td, "memory", "taskDefinition")?)
        .set_execution_role_arn(string(td, "executionRoleArn", "taskDefinition")?)
        .set_task_role_arn(string(td, "taskRoleArn", "taskDefinition")?);
    for c in strings(td, "requiresCompatibilities", "taskDefinition")? {
        request = request.requires_compatibilities(Compatibility::from(c.as_str()));
    }
    if let Some(platform) = td.get("runtimePlatform") {
        let p = object(platform, "runtimePlatform")?;
        known_keys(
            p,
            "runtimePlatform",
            &["cpuArchitecture", "operatingSystemFamily"],
        )?;
        request = request.runtime_platform(
            RuntimePlatform::builder()
                .set_cpu_architecture(
                    string(p, "cpuArchitecture", "runtimePlatform")?
                        .map(|s| CpuArchitecture::from(s.as_str())),
                )
                .set_operating_system_family(
                    string(p, "operatingSystemFamily", "runtimePlatform")?
                        .map(|s| OsFamily::from(s.as_str())),
                )
                .build(),
        );
    }
    for c in array(td, "containerDefinitions", "taskDefinition")? {
        request = request.container_definitions(container(c)?);
    }
    for v in array(td, "volumes", "taskDefinition")? {
        let v = object(v, "volumes[]")?;
        known_keys(v, "volumes[]", &["name"])?;
        request = request.volumes(
            Volume::builder()
                .set_name(string(v, "name", "volumes[]")?)
                .build(),
        );
    }
    for t in array(td, "tags", "taskDefinition")? {
        let t = object(t, "tags[]")?;
        known_keys(t, "tags[]", &["key", "value"])?;
        request = request.tags(
            Tag::builder()
                .set_key(string(t, "key", "tags[]")?)
                .set_value(string(t, "value", "tags[]")?)
                .build(),
        );
    }
    Ok(request)
}

fn container(value: &Value) -> Result<ContainerDefinition, LaunchError> {
    const AT: &str = "containerDefinitions[]";
    let c = object(value, AT)?;
    known_keys(
        c,
        AT,
        &[
            "name",
            "image",
            "essential",
            "command",
            "entryPoint",
            "user",
            "workingDirectory",
            "stopTimeout",
            "startTimeout",
            "readonlyRootFilesystem",
            "linuxParameters",
            "mountPoints",
            "portMappings",
            "environment",
            "secrets",
            "logConfiguration",
            "healthCheck",
            "dependsOn",
        ],
    )?;
    let mut b = ContainerDefinition::builder()
        .set_name(string(c, "name", AT)?)
        .set_image(string(c, "image", AT)?)
        .set_essential(boolean(c, "essential", AT)?)
        .set_user(string(c, "user", AT)?)
        .set_working_directory(string(c, "workingDirectory", AT)?)
        .set_stop_timeout(int(c, "stopTimeout", AT)?)
        .set_start_timeout(int(c, "startTimeout", AT)?)
        .set_readonly_root_filesystem(boolean(c, "readonlyRootFilesystem", AT)?);
    if c.contains_key("command") {
        b = b.set_command(Some(strings(c, "command", AT)?));
    }
    if c.contains_key("entryPoint") {
        b = b.set_entry_point(Some(strings(c, "entryPoint", AT)?));
    }
    if let Some(linux) = c.get("linuxParameters") {
        let l = object(linux, "linuxParameters")?;
        known_keys(l, "linuxParameters", &["initProcessEnabled"])?;
        b = b.linux_parameters(
            LinuxParameters::builder()
                .set_init_process_enabled(boolean(l, "initProcessEnabled", "linuxParameters")?)
                .build(),
        );
    }
    for m in array(c, "mountPoints", AT)? {
        let m = object(m, "mountPoints[]")?;
        known_keys(
            m,
            "mountPoints[]",
            &["sourceVolume", "containerPath", "readOnly"],
        )?;
        b = b.mount_points(
            MountPoint::builder()
                .set_source_volume(string(m, "sourceVolume", "mountPoints[]")?)
                .set_container_path(string(m, "containerPath", "mountPoints[]")?)
                .set_read_only(boolean(m, "readOnly", "mountPoints[]")?)
                .build(),
        );
    }
    for p in array(c, "portMappings", AT)? {
        let p = object(p, "portMappings[]")?;
        known_keys(
            p,
            "portMappings[]",
            &["containerPort", "hostPort", "protocol", "name"],
        )?;
        b = b.port_mappings(
            PortMapping::builder()
                .set_container_port(int(p, "containerPort", "portMappings[]")?)
                .set_host_port(int(p, "hostPort", "portMappings[]")?)
                .set_protocol(
                    string(p, "protocol", "portMappings[]")?
                        .map(|s| TransportProtocol::from(s.as_str())),
                )
                .set_name(string(p, "name", "portMappings[]")?)
                .build(),
        );
    }
    for e in array(c, "environment", AT)? {
        let e = object(e, "environment[]")?;
        known_keys(e, "environment[]", &["name", "value"])?;
        b = b.environment(
            KeyValuePair::builder()
                .set_name(string(e, "name", "environment[]")?)
                .set_value(string(e, "value", "environment[]")?)
                .build(),
        );
    }
    for s in array(c, "secrets", AT)? {
        let s = object(s, "secrets[]")?;
        known_keys(s, "secrets[]", &["name", "valueFrom"])?;
        b = b.secrets(
            Secret::builder()
                .set_name(string(s, "name", "secrets[]")?)
                .set_value_from(string(s, "valueFrom", "secrets[]")?)
                .build()
                .map_err(|e| invalid(format!("the template's secrets[]: {e}")))?,
        );
    }
    if let Some(log) = c.get("logConfiguration") {
        let l = object(log, "logConfiguration")?;
        known_keys(l, "logConfiguration", &["logDriver", "options"])?;
        let options = match l.get("options") {
            None => None,
            Some(o) => Some(
                object(o, "logConfiguration.options")?
                    .iter()
                    .map(|(k, v)| {
                        v.as_str()
                            .map(|v| (k.clone(), v.to_owned()))
                            .ok_or_else(|| {
                                template_error(&format!(
                                    "logConfiguration.options.{k} is not a string"
                                ))
                            })
                    })
                    .collect::<Result<HashMap<_, _>, _>>()?,
            ),
        };
        b = b.log_configuration(
            LogConfiguration::builder()
                .set_log_driver(
                    string(l, "logDriver", "logConfiguration")?
                        .map(|s| LogDriver::from(s.as_str())),
                )
                .set_options(options)
                .build()
                .map_err(|e| invalid(format!("the template's logConfiguration: {e}")))?,
        );
    }
    if let Some(check) = c.get("healthCheck") {
        const HC: &str = "healthCheck";
        let h = object(check, HC)?;
        known_keys(
            h,
            HC,
            &["command", "interval", "timeout", "retries", "startPeriod"],
        )?;
        b = b.health_check(
            HealthCheck::builder()
                .set_command(Some(strings(h, "command", HC)?))
                .set_interval(int(h, "interval", HC)?)
                .set_timeout(int(h, "timeout", HC)?)
                .set_retries(int(h, "retries", HC)?)
                .set_start_period(int(h, "startPeriod", HC)?)
                .build()
                .map_err(|e| invalid(format!("the template's healthCheck: {e}")))?,
        );
    }
    for d in array(c, "dependsOn", AT)? {
        let d = object(d, "dependsOn[]")?;
        known_keys(d, "dependsOn[]", &["containerName", "condition"])?;
        b = b.depends_on(
            ContainerDependency::builder()
                .set_container_name(string(d, "containerName", "dependsOn[]")?)
                .set_condition(
                    string(d, "condition", "dependsOn[]")?
                        .map(|s| ContainerCondition::from(s.as_str())),
                )
                .build()
                .map_err(|e| invalid(format!("the template's dependsOn[]: {e}")))?,
        );
    }
    Ok(b.build())
}

fn template_error(what: &str) -> LaunchError {
    invalid(format!("the worker task definition template: {what}"))
}

fn object<'a>(value: &'a Value, at: &str) -> Result<&'a Map<String, Value>, LaunchError> {
    value
        .as_object()
        .ok_or_else(|| template_error(&format!("{at} is not an object")))
}

fn known_keys(map: &Map<String, Value>, at: &str, known: &[&str]) -> Result<(), LaunchError> {
    match map.keys().find(|k| !known.contains(&k.as_str())) {
        Some(key) => Err(template_error(&format!(
            "{at}.{key} is not supported by the ECS launcher (add it to crates/launcher/src/ecs.rs)"
        ))),
        None => Ok(()),
    }
}

fn string(map: &Map<String, Value>, key: &str, at: &str) -> Result<Option<String>, LaunchError> {
    match map.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(template_error(&format!("{at}.{key} is not a string"))),
    }
}

fn boolean(map: &Map<String, Value>, key: &str, at: &str) -> Result<Option<bool>, LaunchError> {
    match map.get(key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(template_error(&format!("{at}.{key} is not a boolean"))),
    }
}

fn int(map: &Map<String, Value>, key: &str, at: &str) -> Result<Option<i32>, LaunchError> {
    match map.get(key) {
        None => Ok(None),
        Some(v) => v
            .as_i64()
            .and_then(|n| i32::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| template_error(&format!("{at}.{key} is not a 32-bit integer"))),
    }
}

fn array<'a>(map: &'a Map<String, Value>, key: &str, at: &str) -> Result<&'a [Value], LaunchError> {
    match map.get(key) {
        None => Ok(&[]),
        Some(Value::Array(items)) => Ok(items),
        Some(_) => Err(template_error(&format!("{at}.{key} is not a list"))),
    }
}

fn strings(map: &Map<String, Value>, key: &str, at: &str) -> Result<Vec<String>, LaunchError> {
    array(map, key, at)?
        .iter()
        .map(|v| {
            v.as_str()
                .map(str::to_owned)
                .ok_or_else(|| template_error(&format!("{at}.{key}[] is not a string")))
        })
        .collect()
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

    #[test]
    fn task_definition_arns_split_into_family_and_revision() {
        let arn = "arn:aws:ecs:us-east-1:123456789012:task-definition/polybot-t-x:12";
        assert_eq!(arn_family(arn), Some("polybot-t-x"));
        assert_eq!(arn_revision(arn), 12);
    }

    #[test]
    fn the_backoff_stays_within_its_bound() {
        let policy = RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(50),
        };
        for attempt in 1..10 {
            assert!(policy.backoff(attempt) <= Duration::from_millis(50));
        }
        assert!(policy.backoff(1) <= Duration::from_millis(10));
    }

    #[tokio::test(start_paused = true)]
    async fn the_token_bucket_lets_a_burst_through_then_paces_at_the_refill_rate() {
        let bucket = TokenBucket::new(Bucket {
            burst: 3,
            per_second: 2,
        });
        let start = tokio::time::Instant::now();
        for _ in 0..3 {
            bucket.acquire().await;
        }
        assert!(
            start.elapsed() < Duration::from_millis(1),
            "the burst waits for nothing"
        );
        for _ in 0..4 {
            bucket.acquire().await;
        }
        // Four more at two a second take about two seconds.
        let elapsed = start.elapsed();
        assert!(
            elapsed >= Duration::from_millis(1900) && elapsed <= Duration::from_millis(2500),
            "{elapsed:?}"
        );
    }

    #[test]
    fn cost_tags_are_parsed_as_key_value_pairs() {
        assert_eq!(parse_tag("team=bots"), Ok(("team".into(), "bots".into())));
        assert!(parse_tag("novalue").is_err());
        assert!(parse_tag("=x").is_err());
    }
}
