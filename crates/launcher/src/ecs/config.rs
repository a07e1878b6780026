//! [`EcsConfig`]: where and how workers run on ECS, as plain typed values.
//!
//! What does not live here: the command-line flags and environment variables
//! that fill it (`polybot control-plane --ecs-*`, in `crates/cli`), and the
//! AWS credentials and region, which come from the SDK configuration
//! ([`load_aws_config`](super::load_aws_config)).

use std::collections::BTreeMap;

use polybot_core::{Mode, TenantId};
use polybot_deploy_spec::FargateSize;

use super::invalid;
use super::task_definition;
use crate::LaunchError;

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
    /// The operator's workers' settings secret (the NewsAPI key), injected
    /// into every worker; `None` when there is none.
    pub worker_settings_secret_arn: Option<String>,
}

impl EcsConfig {
    /// The default task size, validated.
    pub fn size(&self) -> Result<FargateSize, LaunchError> {
        FargateSize::new(self.cpu, self.memory).map_err(|e| invalid(e.to_string()))
    }

    /// Whether a tenant in `mode` runs on Fargate Spot.
    pub fn spot(&self, mode: Mode) -> bool {
        self.spot_for_paper && mode == Mode::Paper
    }

    /// Checks the configuration by rendering a task definition for a made-up
    /// tenant, so that a bad role ARN, region, log group, image, cost tag or
    /// Fargate size fails at startup rather than at the first launch.
    pub fn validate(&self) -> Result<(), LaunchError> {
        if self.cluster.trim().is_empty() {
            return Err(invalid("the cluster is empty".into()));
        }
        if self.subnets.is_empty() {
            return Err(invalid("no subnets are configured".into()));
        }
        let size = self.size()?;
        let probe = TenantId::from_uuid(Default::default());
        let secret = format!(
            "arn:aws:secretsmanager:{}:000000000000:secret:polybot/tenants/{probe}-AAAAAA",
            self.region
        );
        task_definition::render(
            self,
            probe,
            Mode::Paper,
            secret,
            size,
            None,
            self.spot_for_paper,
        )
        .map(|_| ())
    }
}
