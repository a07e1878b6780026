//! [`EcsLauncher`]: the [`Launcher`] on `aws-sdk-ecs`: registers a tenant's
//! task definition when it changed, starts one task per tenant with an
//! idempotent clientToken, stops tasks, and lists them.
//!
//! What does not live here: the definition's content
//! ([`super::task_definition`]), rate limits and retries
//! ([`super::throttle`]), reading tasks ([`super::observe`]), and the
//! Fargate quotas a launch is admitted against ([`super::capacity`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_ecs::Client;
use aws_sdk_ecs::config::retry::RetryConfig;
use aws_sdk_ecs::config::timeout::TimeoutConfig;
use aws_sdk_ecs::types::{
    AssignPublicIp, AwsVpcConfiguration, CapacityProviderStrategyItem, ContainerOverride,
    KeyValuePair, NetworkConfiguration, PropagateTags, SortOrder, Tag, TaskDefinitionField,
    TaskDefinitionStatus, TaskOverride,
};
use polybot_core::TenantId;
use polybot_core::worker::env;
use polybot_deploy_spec::worker::{IBKR_MIN_TASK_MEMORY, WORKER_CONTAINER};
use polybot_deploy_spec::{FargateSize, IbkrSidecar};
use rand::Rng;

use super::capacity::{Admission, Capacity, QuotaSource, Quotas, ServiceQuotas};
use super::config::EcsConfig;
use super::task_definition::{self, TaskDefinition, arn_family, arn_revision};
use super::throttle::{Api, RateLimits, RetryPolicy, Throttle};
use super::{
    DEFINITION_HASH_TAG, LAUNCHER, SPEC_HASH_TAG, STARTED_BY, client_token, failed, family, group,
    invalid, lock, observe,
};
use crate::{Instance, LaunchError, LaunchSpec, Launcher};

/// StopTask keeps at most this many characters of the reason.
const STOP_REASON_MAX: usize = 255;

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
    /// Worker images a rollout gave tenants, in place of the configured one.
    images: HashMap<TenantId, String>,
    /// Successful RunTasks per tenant: the attempt part of the next clientToken.
    launches: HashMap<TenantId, u64>,
}

/// Runs each tenant's worker as one ECS Fargate task.
#[derive(Debug)]
pub struct EcsLauncher {
    client: Client,
    config: EcsConfig,
    throttle: Throttle,
    /// Random per launcher: a restarted control plane never reuses a token.
    incarnation: String,
    state: Mutex<State>,
    capacity: Capacity,
}

impl EcsLauncher {
    /// A launcher for `config`, with clients built from `aws` (see
    /// [`load_aws_config`](super::load_aws_config)). Checks the configuration
    /// by rendering a task definition, so a bad role ARN or Fargate size
    /// fails at startup.
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
        let quotas = aws_sdk_servicequotas::config::Builder::from(aws)
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .operation_attempt_timeout(Duration::from_secs(10))
                    .build(),
            )
            .build();
        Ok(
            Self::from_client(config, Client::from_conf(ecs))?.with_quota_source(Arc::new(
                ServiceQuotas::new(aws_sdk_servicequotas::Client::from_conf(quotas)),
            )),
        )
    }

    /// A launcher on an existing client (tests give one with mocked
    /// responses). The client should not retry by itself.
    pub fn from_client(config: EcsConfig, client: Client) -> Result<Self, LaunchError> {
        config.validate()?;
        let mut nonce = [0u8; 4];
        rand::rng().fill(&mut nonce);
        Ok(Self {
            client,
            config,
            throttle: Throttle::new(RateLimits::default(), RetryPolicy::default()),
            incarnation: hex::encode(nonce),
            state: Mutex::new(State::default()),
            capacity: Capacity::new(None, Quotas::default()),
        })
    }

    /// Where the account's Fargate vCPU quotas are read ([`new`](Self::new)
    /// reads Service Quotas; a client made with
    /// [`from_client`](Self::from_client) reads none until given one).
    pub fn with_quota_source(mut self, source: Arc<dyn QuotaSource>) -> Self {
        self.capacity.set_source(source);
        self
    }

    /// The operator's Fargate vCPU quotas, in place of Service Quotas' (a
    /// `None` keeps reading that one).
    pub fn with_fargate_quota(mut self, overrides: Quotas) -> Self {
        let source = self.capacity.source();
        self.capacity = Capacity::new(source, overrides);
        self
    }

    /// The account's Fargate vCPU quotas as the launcher knows them, and the
    /// CPU units its live tasks hold (for `/metrics`).
    pub async fn fargate_capacity(&self) -> (Quotas, super::capacity::InUse) {
        (self.capacity.quotas().await, self.capacity.in_use())
    }

    pub fn with_retry_policy(mut self, retry: RetryPolicy) -> Self {
        self.throttle.set_retry_policy(retry);
        self
    }

    pub fn with_rate_limits(mut self, limits: RateLimits) -> Self {
        self.throttle.set_rate_limits(limits);
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

    /// The task definition `spec` runs with, and its hash.
    pub fn task_definition(
        &self,
        spec: &LaunchSpec,
    ) -> Result<(TaskDefinition, String), LaunchError> {
        let secret_arn = spec.secret_reference.clone().ok_or_else(|| {
            invalid(format!(
                "tenant {} has no secret reference: ECS injects the worker's secrets from \
                 Secrets Manager, so the control plane needs --secrets aws",
                spec.tenant
            ))
        })?;
        let mut size = self.size_of(spec.tenant)?;
        if spec.ibkr && size.memory() < IBKR_MIN_TASK_MEMORY {
            // The gateway needs room of its own: the smallest size that fits both.
            size = FargateSize::smallest_fitting(size.cpu(), IBKR_MIN_TASK_MEMORY)
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
        // A rollout's image for this tenant renders a definition of its own
        // (another definition hash: a new revision of the tenant's family).
        let image = lock(&self.state).images.get(&spec.tenant).cloned();
        let rolled;
        let config = match image {
            Some(image) => {
                rolled = EcsConfig {
                    worker_image: image,
                    ..self.config.clone()
                };
                &rolled
            }
            None => &self.config,
        };
        task_definition::render(
            config,
            spec.tenant,
            spec.mode,
            secret_arn,
            size,
            ibkr,
            self.config.spot(spec.mode),
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
            .throttle
            .call(Api::Describe, "ListTaskDefinitions", || {
                self.client
                    .list_task_definitions()
                    .family_prefix(&family)
                    .status(TaskDefinitionStatus::Active)
                    .sort(SortOrder::Desc)
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
            .throttle
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

    async fn register_definition(
        &self,
        definition: &TaskDefinition,
    ) -> Result<String, LaunchError> {
        let request = definition.register_request(self.client.register_task_definition())?;
        let out = self
            .throttle
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
        let spot = self.config.spot(spec.mode);
        let needed = self.cpu_units(spec)?;
        if let Admission::Full(message) = self.capacity.admit(spot, needed).await {
            return Err(LaunchError::Capacity {
                launcher: LAUNCHER,
                message,
            });
        }
        let started = self.run_task(spec, &definition, &token, spot).await;
        if started.is_err() {
            self.capacity.release(spot, needed);
        }
        started
    }

    /// The CPU units `spec`'s task asks for.
    fn cpu_units(&self, spec: &LaunchSpec) -> Result<u32, LaunchError> {
        let (definition, _) = self.task_definition(spec)?;
        definition
            .cpu
            .as_deref()
            .and_then(|cpu| cpu.parse().ok())
            .ok_or_else(|| {
                invalid(format!(
                    "the task definition's cpu {:?} is not a number",
                    definition.cpu
                ))
            })
    }

    async fn run_task(
        &self,
        spec: &LaunchSpec,
        definition: &str,
        token: &str,
        spot: bool,
    ) -> Result<Instance, LaunchError> {
        let mut environment = vec![
            KeyValuePair::builder()
                .name(env::SPEC_HASH)
                .value(&spec.spec_hash)
                .build(),
        ];
        environment.extend(
            spec.plain_env()
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
            .task_definition(definition)
            .count(1)
            .started_by(STARTED_BY)
            .group(group(spec.tenant))
            .client_token(token)
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
            .tags(
                Tag::builder()
                    .key(SPEC_HASH_TAG)
                    .value(&spec.spec_hash)
                    .build(),
            );
        let out = self
            .throttle
            .call(Api::Launch, "RunTask", || request.clone().send())
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
        let instance = observe::instance(task, Some(spec.tenant))
            .ok_or_else(|| failed("RunTask", "the started task has no ARN".into()))?;
        tracing::info!(tenant = %spec.tenant, task = %instance.id, spot, "started a worker task");
        Ok(Instance {
            spec_hash: spec.spec_hash.clone(),
            ..instance
        })
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

    fn set_worker_size(
        &self,
        tenant: TenantId,
        size: Option<(u32, u32)>,
    ) -> Result<(), LaunchError> {
        match size {
            Some((cpu, memory)) => self.set_tenant_size(tenant, cpu, memory),
            None => {
                lock(&self.state).sizes.remove(&tenant);
                Ok(())
            }
        }
    }

    fn runs_images(&self) -> bool {
        true
    }

    fn set_worker_image(&self, tenant: TenantId, image: Option<&str>) -> Result<(), LaunchError> {
        let mut state = lock(&self.state);
        match image {
            Some(image) if image.trim().is_empty() => {
                return Err(invalid(format!(
                    "tenant {tenant}: the worker image is empty"
                )));
            }
            Some(image) => state.images.insert(tenant, image.to_owned()),
            None => state.images.remove(&tenant),
        };
        Ok(())
    }

    async fn ensure_spec(&self, spec: &LaunchSpec) -> Result<(), LaunchError> {
        self.ensure_definition(spec).await.map(|_| ())
    }

    async fn list(&self) -> Result<Vec<Instance>, LaunchError> {
        let tasks = observe::tasks(&self.client, &self.throttle, &self.config.cluster).await?;
        self.capacity.observed(observe::cpu_in_use(&tasks));
        Ok(observe::instances(&tasks))
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
        self.throttle
            .call(Api::RunStop, "StopTask", || {
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
