//! The `--ecs-*` flags of `polybot control-plane --launcher ecs`
//! ([`EcsArgs`]) and their translation into the launcher's plain
//! [`EcsConfig`].
//!
//! What does not live here: what the values mean to ECS (the launcher's
//! `ecs::config`), and checking them against the task-definition template,
//! which `EcsLauncher::new` does at startup.

use polybot_launcher::{EcsConfig, LaunchError};

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

    /// ARN of the operator's workers' settings secret (JSON with
    /// POLYBOT_NEWSAPI_KEY and POLYBOT_MARKET_DATA_URL, either may be empty),
    /// which ECS injects into every worker; empty for none.
    #[arg(
        long = "worker-settings-secret-arn",
        env = "POLYBOT_WORKER_SETTINGS_SECRET_ARN"
    )]
    pub worker_settings_secret_arn: Option<String>,

    /// URL of the SQS queue that EventBridge fills with the cluster's ECS
    /// task state changes (Terraform's `events_queue_url` output). With it
    /// the reconciler learns exits as they happen, and lists tasks only as
    /// a backstop (--ecs-backstop-secs); without it, it lists every 2 s.
    #[arg(long = "ecs-events-queue-url", env = "POLYBOT_ECS_EVENTS_QUEUE_URL")]
    pub ecs_events_queue_url: Option<String>,

    /// With an events queue: seconds between two listings of the cluster's
    /// tasks (ListTasks/DescribeTasks) while no worker is starting or
    /// stopping.
    #[arg(
        long = "ecs-backstop-secs",
        env = "POLYBOT_ECS_BACKSTOP_SECS",
        default_value_t = 30,
        value_parser = clap::value_parser!(u64).range(1..=3600)
    )]
    pub ecs_backstop_secs: u64,

    /// The account's Fargate On-Demand vCPU quota, instead of reading it from
    /// Service Quotas (L-3032A538). A worker that would exceed it waits in
    /// the `capacity` state.
    #[arg(
        long = "ecs-fargate-vcpu-quota",
        env = "POLYBOT_ECS_FARGATE_VCPU_QUOTA"
    )]
    pub ecs_fargate_vcpu_quota: Option<u32>,

    /// The account's Fargate Spot vCPU quota, instead of reading it from
    /// Service Quotas (L-36FBB829).
    #[arg(
        long = "ecs-fargate-spot-vcpu-quota",
        env = "POLYBOT_ECS_FARGATE_SPOT_VCPU_QUOTA"
    )]
    pub ecs_fargate_spot_vcpu_quota: Option<u32>,
}

impl EcsArgs {
    /// The Fargate vCPU quotas the operator set (`None`: read Service Quotas).
    pub fn fargate_quotas(&self) -> polybot_launcher::ecs::Quotas {
        polybot_launcher::ecs::Quotas {
            on_demand: self.ecs_fargate_vcpu_quota,
            spot: self.ecs_fargate_spot_vcpu_quota,
        }
    }

    /// The events queue's URL, if one is set.
    pub fn events_queue_url(&self) -> Option<String> {
        self.ecs_events_queue_url
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::to_owned)
    }
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
    /// The configuration, with `region` (the SDK configuration's); an error
    /// names each missing flag and its environment variable.
    pub fn into_config(self, region: Option<String>) -> Result<EcsConfig, LaunchError> {
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
        let region = need(region, "an AWS region (AWS_REGION or the profile's region)");
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
            return Err(LaunchError::InvalidSpec {
                launcher: "ecs",
                message: format!("the ECS launcher needs {}", missing.join(", ")),
            });
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
            worker_settings_secret_arn: self
                .worker_settings_secret_arn
                .map(|arn| arn.trim().to_owned())
                .filter(|arn| !arn.is_empty()),
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        ecs: EcsArgs,
    }

    fn parse(args: &[&str]) -> EcsArgs {
        Cli::try_parse_from(std::iter::once("polybot").chain(args.iter().copied()))
            .unwrap()
            .ecs
    }

    #[test]
    fn cost_tags_are_parsed_as_key_value_pairs() {
        assert_eq!(parse_tag("team=bots"), Ok(("team".into(), "bots".into())));
        assert!(parse_tag("novalue").is_err());
        assert!(parse_tag("=x").is_err());
    }

    #[test]
    fn the_flags_fill_the_launcher_config() {
        let args = parse(&[
            "--ecs-cluster",
            "polybot",
            "--ecs-subnets",
            "subnet-a, subnet-b",
            "--ecs-security-groups",
            "sg-1",
            "--worker-image",
            "ghcr.io/polybot/polybot:1",
            "--execution-role-arn",
            "arn:aws:iam::123456789012:role/exec",
            "--task-role-arn",
            "arn:aws:iam::123456789012:role/task",
            "--ecs-assign-public-ip",
            "--ecs-spot-for-paper",
            "--worker-cpu",
            "512",
            "--worker-memory",
            "1024",
            "--cost-tag",
            "team=bots",
            "--cost-tag",
            "plan=pro",
            "--ibkr-gateway-image",
            "ib:stable",
            "--worker-settings-secret-arn",
            "arn:aws:secretsmanager:eu-west-1:123456789012:secret:polybot/workers/settings-AbCdEf",
        ]);
        let config = args.into_config(Some("eu-west-1".into())).unwrap();
        assert_eq!(
            config,
            EcsConfig {
                cluster: "polybot".into(),
                subnets: vec!["subnet-a".into(), "subnet-b".into()],
                security_groups: vec!["sg-1".into()],
                worker_image: "ghcr.io/polybot/polybot:1".into(),
                execution_role_arn: "arn:aws:iam::123456789012:role/exec".into(),
                task_role_arn: "arn:aws:iam::123456789012:role/task".into(),
                log_group: "/polybot/workers".into(),
                region: "eu-west-1".into(),
                assign_public_ip: true,
                spot_for_paper: true,
                cost_tags: [("plan", "pro"), ("team", "bots")]
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect(),
                cpu: 512,
                memory: 1024,
                ibkr_gateway_image: Some("ib:stable".into()),
                worker_settings_secret_arn: Some(
                    "arn:aws:secretsmanager:eu-west-1:123456789012:secret:polybot/workers/settings-AbCdEf"
                        .into()
                ),
            }
        );
    }

    #[test]
    fn events_and_quota_flags_are_read() {
        let args = parse(&[
            "--ecs-events-queue-url",
            " https://sqs.eu-west-1.amazonaws.com/123456789012/polybot-ecs-events ",
            "--ecs-backstop-secs",
            "60",
            "--ecs-fargate-vcpu-quota",
            "6",
        ]);
        assert_eq!(
            args.events_queue_url().as_deref(),
            Some("https://sqs.eu-west-1.amazonaws.com/123456789012/polybot-ecs-events")
        );
        assert_eq!(args.ecs_backstop_secs, 60);
        assert_eq!(
            args.fargate_quotas(),
            polybot_launcher::ecs::Quotas {
                on_demand: Some(6),
                spot: None
            }
        );
        let defaults = parse(&[]);
        assert_eq!(defaults.events_queue_url(), None);
        assert_eq!(defaults.ecs_backstop_secs, 30);
        assert!(
            Cli::try_parse_from(["polybot", "--ecs-backstop-secs", "0"]).is_err(),
            "a zero backstop would list without pause"
        );
    }

    #[test]
    fn the_defaults_are_the_smallest_fargate_task_on_demand() {
        let args = parse(&[]);
        assert_eq!((args.worker_cpu, args.worker_memory), (256, 512));
        assert_eq!(args.worker_log_group, "/polybot/workers");
        assert!(!args.ecs_assign_public_ip && !args.ecs_spot_for_paper);
    }

    #[test]
    fn a_missing_setting_is_named_with_its_flag_and_variable() {
        let err = parse(&["--ecs-cluster", " ", "--ecs-subnets", ","])
            .into_config(None)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "ecs launcher: invalid spec: the ECS launcher needs \
             --ecs-cluster (POLYBOT_ECS_CLUSTER), --worker-image (POLYBOT_WORKER_IMAGE), \
             --execution-role-arn (POLYBOT_EXECUTION_ROLE_ARN), \
             --task-role-arn (POLYBOT_TASK_ROLE_ARN), \
             an AWS region (AWS_REGION or the profile's region), \
             --ecs-subnets (POLYBOT_ECS_SUBNETS)"
        );
    }

    #[test]
    fn every_flag_has_its_environment_variable() {
        use clap::CommandFactory;
        let command = Cli::command();
        let env: Vec<(String, String)> = command
            .get_arguments()
            .filter_map(|a| {
                Some((
                    a.get_long()?.to_owned(),
                    a.get_env()?.to_string_lossy().into_owned(),
                ))
            })
            .collect();
        let expected = [
            ("ecs-cluster", "POLYBOT_ECS_CLUSTER"),
            ("ecs-subnets", "POLYBOT_ECS_SUBNETS"),
            ("ecs-security-groups", "POLYBOT_ECS_SECURITY_GROUPS"),
            ("worker-image", "POLYBOT_WORKER_IMAGE"),
            ("execution-role-arn", "POLYBOT_EXECUTION_ROLE_ARN"),
            ("task-role-arn", "POLYBOT_TASK_ROLE_ARN"),
            ("worker-log-group", "POLYBOT_WORKER_LOG_GROUP"),
            ("ecs-assign-public-ip", "POLYBOT_ECS_ASSIGN_PUBLIC_IP"),
            ("ecs-spot-for-paper", "POLYBOT_ECS_SPOT_FOR_PAPER"),
            ("worker-cpu", "POLYBOT_WORKER_CPU"),
            ("worker-memory", "POLYBOT_WORKER_MEMORY"),
            ("cost-tag", "POLYBOT_COST_TAGS"),
            ("ibkr-gateway-image", "POLYBOT_IBKR_GATEWAY_IMAGE"),
            (
                "worker-settings-secret-arn",
                "POLYBOT_WORKER_SETTINGS_SECRET_ARN",
            ),
            ("ecs-events-queue-url", "POLYBOT_ECS_EVENTS_QUEUE_URL"),
            ("ecs-backstop-secs", "POLYBOT_ECS_BACKSTOP_SECS"),
            ("ecs-fargate-vcpu-quota", "POLYBOT_ECS_FARGATE_VCPU_QUOTA"),
            (
                "ecs-fargate-spot-vcpu-quota",
                "POLYBOT_ECS_FARGATE_SPOT_VCPU_QUOTA",
            ),
        ];
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(f, e)| ((*f).to_owned(), (*e).to_owned()))
            .collect();
        assert_eq!(env, expected);
    }
}
