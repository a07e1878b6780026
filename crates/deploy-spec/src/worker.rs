//! The worker's ECS task definition, rendered from `deploy/ecs/`.
//!
//! The templates are compiled in with `include_str!`, so the JSON an operator
//! reads in `deploy/ecs/` is byte for byte what the ECS launcher registers:
//! the two cannot drift. Each tenant gets its own task-definition family,
//! `polybot-t-<tenant id>`, whose container `secrets` point at that
//! tenant's secret only; ECS injects them with the execution role, and the
//! worker itself never calls Secrets Manager.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::fargate::{FargateSize, FargateSizeError};
use crate::template::{self, TemplateError, Vars};

/// `deploy/ecs/worker.task-definition.template.json`.
pub const WORKER_TEMPLATE: &str =
    include_str!("../../../deploy/ecs/worker.task-definition.template.json");

/// `deploy/ecs/ibkr-gateway.sidecar.template.json`: the gateway container,
/// and what it adds to the worker container (its `dependsOn` and environment).
pub const IBKR_SIDECAR_TEMPLATE: &str =
    include_str!("../../../deploy/ecs/ibkr-gateway.sidecar.template.json");

/// Name of the worker container in the task definition.
pub const WORKER_CONTAINER: &str = "worker";
/// Name of the IB Gateway sidecar container.
pub const IBKR_CONTAINER: &str = "ibkr-gateway";
/// The port the worker reaches the IB Gateway on, on localhost (tasks in
/// `awsvpc` mode share one network namespace).
pub const IBKR_GATEWAY_PORT: u16 = 4002;
/// Task memory (MiB) below which the IB Gateway (a Java application) and the
/// worker do not fit together.
pub const IBKR_MIN_TASK_MEMORY: u32 = 2048;
/// Prefix of every tenant's secret name; the IAM policies in `infra/` grant
/// exactly `polybot/tenants/*`.
pub const TENANT_SECRET_PREFIX: &str = "polybot/tenants/";
/// The operator-level settings every worker gets from the workers' settings
/// secret (`polybot/workers/settings`, JSON keys of these names), when one is
/// configured: injected by ECS like the tenant's own secrets, never put in
/// plain environment. ECS refuses to start a task whose secret lacks a key it
/// names, so the secret holds every one (an empty value means none:
/// `infra/secrets.tf`).
pub const WORKER_SETTINGS_KEYS: [&str; 2] = ["POLYBOT_NEWSAPI_KEY", "POLYBOT_MARKET_DATA_URL"];
/// Tag keys the template sets itself; `extra_tags` may not override them.
pub const RESERVED_TAG_KEYS: [&str; 2] = ["tenant_id", "polybot:component"];
/// ECS accepts at most 50 tags on a task definition.
pub const MAX_TAGS: usize = 50;

/// Whether the worker's orders are simulated or sent (`POLYBOT_MODE`). Also the
/// IB Gateway's trading mode when the sidecar runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkerMode {
    #[default]
    Paper,
    /// Orders signed and never sent; the IB Gateway trades paper.
    Shadow,
    Live,
}

impl WorkerMode {
    pub const fn as_str(&self) -> &'static str {
        match self {
            WorkerMode::Paper => "paper",
            WorkerMode::Shadow => "shadow",
            WorkerMode::Live => "live",
        }
    }

    /// The IB Gateway's `TRADING_MODE`: only a live worker trades live.
    pub const fn ibkr_trading_mode(&self) -> &'static str {
        match self {
            WorkerMode::Live => "live",
            WorkerMode::Paper | WorkerMode::Shadow => "paper",
        }
    }
}

impl fmt::Display for WorkerMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The IB Gateway sidecar, for tenants who enable IBKR.
///
/// Its credentials come from the tenant's secret (keys `IBKR_USERNAME` and
/// `IBKR_PASSWORD`). The image must serve the API on port 4002 in both
/// trading modes (IBC's `OverrideTwsApiPort=4002`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IbkrSidecar {
    /// The gateway image, e.g. `ghcr.io/gnzsnz/ib-gateway:stable` or a copy in
    /// the platform's ECR repository.
    pub image: String,
}

/// Everything a tenant's worker task definition depends on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerTaskSpec {
    /// The tenant's id, a lowercase hyphenated UUID (`TenantId`'s `Display`).
    pub tenant_id: String,
    /// The `polybot` image, by tag or (better) by digest.
    pub image: String,
    /// Full ARN of the tenant's secret, `…:secret:polybot/tenants/<tenant id>-XXXXXX`.
    pub secret_arn: String,
    /// CPU units; [`FargateSize::SMALLEST`] (256) unless the tenant needs more.
    pub cpu: u32,
    /// MiB; must pair with `cpu` (see [`FargateSize::new`]); 512 by default.
    pub memory: u32,
    pub execution_role_arn: String,
    pub task_role_arn: String,
    /// The workers' CloudWatch log group.
    pub log_group: String,
    /// AWS region of the cluster, the log group and the secret.
    pub region: String,
    pub mode: WorkerMode,
    /// The IB Gateway sidecar; `None` for tenants without IBKR.
    pub ibkr: Option<IbkrSidecar>,
    /// Tags besides `tenant_id` and `polybot:component`, e.g. a plan or cost centre.
    pub extra_tags: BTreeMap<String, String>,
    /// Full ARN of the operator's workers' settings secret
    /// ([`WORKER_SETTINGS_KEYS`]); `None` when there is none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings_secret_arn: Option<String>,
}

/// Why a worker task definition could not be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("{0:?} is not a tenant id: expected a lowercase UUID")]
    TenantId(String),
    #[error(transparent)]
    Size(#[from] FargateSizeError),
    #[error(
        "the IB Gateway sidecar needs at least {IBKR_MIN_TASK_MEMORY} MB of task memory; \
         {memory} MB was asked for"
    )]
    IbkrMemory { memory: u32 },
    #[error(
        "{arn:?} is not tenant {tenant_id}'s secret: expected \
         arn:aws:secretsmanager:{region}:<account>:secret:polybot/tenants/{tenant_id}-<suffix>"
    )]
    SecretArn {
        arn: String,
        tenant_id: String,
        region: String,
    },
    #[error(
        "{0:?} is not the workers' settings secret: expected the ARN of a secret outside \
         polybot/tenants/ (polybot/workers/settings)"
    )]
    SettingsSecretArn(String),
    #[error("{field} {value:?} is not an IAM role ARN")]
    RoleArn { field: &'static str, value: String },
    #[error("{field} must not be empty or contain whitespace (got {value:?})")]
    Blank { field: &'static str, value: String },
    #[error("{0:?} is not an AWS region name")]
    Region(String),
    #[error("tag {key:?} is not allowed: {reason}")]
    Tag { key: String, reason: &'static str },
    #[error("a task definition takes at most {MAX_TAGS} tags; this one would have {0}")]
    TooManyTags(usize),
    #[error("template: {0}")]
    Template(#[from] TemplateError),
}

impl WorkerTaskSpec {
    /// The task-definition family, `polybot-t-<tenant id>`.
    pub fn family(&self) -> String {
        format!("polybot-t-{}", self.tenant_id)
    }

    /// The validated size.
    pub fn size(&self) -> Result<FargateSize, FargateSizeError> {
        FargateSize::new(self.cpu, self.memory)
    }

    /// Renders the task definition; see [`render_worker_task_definition`].
    pub fn render(&self) -> Result<Value, SpecError> {
        render_worker_task_definition(self)
    }

    fn validate(&self) -> Result<FargateSize, SpecError> {
        if !is_lowercase_uuid(&self.tenant_id) {
            return Err(SpecError::TenantId(self.tenant_id.clone()));
        }
        for (field, value) in [
            ("image", &self.image),
            ("log_group", &self.log_group),
            ("region", &self.region),
        ] {
            not_blank(field, value)?;
        }
        if let Some(ibkr) = &self.ibkr {
            not_blank("ibkr.image", &ibkr.image)?;
        }
        if let Some(arn) = &self.settings_secret_arn {
            not_blank("settings_secret_arn", arn)?;
            if !arn.starts_with("arn:") || arn.contains(TENANT_SECRET_PREFIX) {
                return Err(SpecError::SettingsSecretArn(arn.clone()));
            }
        }
        let region_ok = self
            .region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !region_ok {
            return Err(SpecError::Region(self.region.clone()));
        }
        role_arn("execution_role_arn", &self.execution_role_arn)?;
        role_arn("task_role_arn", &self.task_role_arn)?;
        if !is_tenant_secret(&self.secret_arn, &self.region, &self.tenant_id) {
            return Err(SpecError::SecretArn {
                arn: self.secret_arn.clone(),
                tenant_id: self.tenant_id.clone(),
                region: self.region.clone(),
            });
        }
        let size = self.size()?;
        if self.ibkr.is_some() && size.memory() < IBKR_MIN_TASK_MEMORY {
            return Err(SpecError::IbkrMemory {
                memory: size.memory(),
            });
        }
        for (key, value) in &self.extra_tags {
            check_tag(key, value)?;
        }
        let tags = RESERVED_TAG_KEYS.len() + self.extra_tags.len();
        if tags > MAX_TAGS {
            return Err(SpecError::TooManyTags(tags));
        }
        Ok(size)
    }

    fn vars(&self, size: FargateSize) -> Vars {
        let mut vars = Vars::from([
            ("tenant_id", json!(self.tenant_id)),
            ("image", json!(self.image)),
            ("secret_arn", json!(self.secret_arn)),
            ("cpu", json!(size.cpu().to_string())),
            ("memory", json!(size.memory().to_string())),
            ("execution_role_arn", json!(self.execution_role_arn)),
            ("task_role_arn", json!(self.task_role_arn)),
            ("log_group", json!(self.log_group)),
            ("region", json!(self.region)),
            ("mode", json!(self.mode.as_str())),
            ("ibkr_mode", json!(self.mode.ibkr_trading_mode())),
        ]);
        if let Some(ibkr) = &self.ibkr {
            vars.insert("ibkr_image", json!(ibkr.image));
        }
        vars
    }
}

/// Renders a tenant's worker task definition: the `RegisterTaskDefinition`
/// input (the AWS CLI's `--cli-input-json` shape, camelCase), with the IB
/// Gateway sidecar when `spec.ibkr` is set and `extra_tags` after the
/// template's own tags. Validates the spec first, including the Fargate size.
pub fn render_worker_task_definition(spec: &WorkerTaskSpec) -> Result<Value, SpecError> {
    let size = spec.validate()?;
    let vars = spec.vars(size);
    let mut task = template::render(WORKER_TEMPLATE, &vars)?;
    if spec.ibkr.is_some() {
        let sidecar = template::render(IBKR_SIDECAR_TEMPLATE, &vars)?;
        add_sidecar(&mut task, sidecar)?;
    }
    if let Some(arn) = &spec.settings_secret_arn {
        add_settings_secret(&mut task, arn)?;
    }
    let tags = task
        .get_mut("tags")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| malformed("the worker template has no \"tags\" list"))?;
    tags.extend(
        spec.extra_tags
            .iter()
            .map(|(key, value)| json!({ "key": key, "value": value })),
    );
    Ok(task)
}

fn add_sidecar(task: &mut Value, mut sidecar: Value) -> Result<(), SpecError> {
    let mut take = |key: &str| {
        sidecar
            .get_mut(key)
            .map(Value::take)
            .ok_or_else(|| malformed("the IBKR sidecar template lacks a key"))
    };
    let container = take("container")?;
    let depends_on = take("workerDependsOn")?;
    let environment = take("workerEnvironment")?;
    let Value::Array(environment) = environment else {
        return Err(malformed("workerEnvironment is not a list"));
    };
    let containers = task
        .get_mut("containerDefinitions")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| malformed("the worker template has no containerDefinitions"))?;
    let worker = containers
        .iter_mut()
        .find(|c| c.get("name").and_then(Value::as_str) == Some(WORKER_CONTAINER))
        .and_then(Value::as_object_mut)
        .ok_or_else(|| malformed("the worker template has no worker container"))?;
    worker.insert("dependsOn".into(), depends_on);
    worker
        .get_mut("environment")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| malformed("the worker container has no environment list"))?
        .extend(environment);
    containers.push(container);
    Ok(())
}

/// The operator's settings as further `secrets` of the worker container.
fn add_settings_secret(task: &mut Value, arn: &str) -> Result<(), SpecError> {
    let secrets = task
        .get_mut("containerDefinitions")
        .and_then(Value::as_array_mut)
        .and_then(|containers| {
            containers
                .iter_mut()
                .find(|c| c.get("name").and_then(Value::as_str) == Some(WORKER_CONTAINER))
        })
        .and_then(|worker| worker.get_mut("secrets"))
        .and_then(Value::as_array_mut)
        .ok_or_else(|| malformed("the worker container has no secrets list"))?;
    secrets.extend(
        WORKER_SETTINGS_KEYS
            .iter()
            .map(|key| json!({ "name": key, "valueFrom": format!("{arn}:{key}::") })),
    );
    Ok(())
}

fn malformed(what: &str) -> SpecError {
    SpecError::Template(TemplateError::Json(what.to_owned()))
}

fn not_blank(field: &'static str, value: &str) -> Result<(), SpecError> {
    if value.is_empty() || value.chars().any(char::is_whitespace) {
        return Err(SpecError::Blank {
            field,
            value: value.to_owned(),
        });
    }
    Ok(())
}

fn role_arn(field: &'static str, value: &str) -> Result<(), SpecError> {
    // arn:<partition>:iam::<12-digit account>:role/<path/name>
    let parts: Vec<&str> = value.splitn(6, ':').collect();
    let ok = matches!(
        parts.as_slice(),
        ["arn", partition, "iam", "", account, resource]
            if partition.starts_with("aws")
                && account.len() == 12
                && account.bytes().all(|b| b.is_ascii_digit())
                && resource.strip_prefix("role/").is_some_and(|name| !name.is_empty())
                && !value.chars().any(char::is_whitespace)
    );
    if ok {
        Ok(())
    } else {
        Err(SpecError::RoleArn {
            field,
            value: value.to_owned(),
        })
    }
}

/// `arn:<partition>:secretsmanager:<region>:<account>:secret:polybot/tenants/<tenant>`
/// with an optional `-XXXXXX` suffix (the six characters Secrets Manager adds).
fn is_tenant_secret(arn: &str, region: &str, tenant_id: &str) -> bool {
    let parts: Vec<&str> = arn.splitn(7, ':').collect();
    let [
        "arn",
        partition,
        "secretsmanager",
        arn_region,
        account,
        "secret",
        name,
    ] = parts.as_slice()
    else {
        return false;
    };
    let Some(rest) = name
        .strip_prefix(TENANT_SECRET_PREFIX)
        .and_then(|n| n.strip_prefix(tenant_id))
    else {
        return false;
    };
    let suffix_ok = rest.is_empty()
        || rest
            .strip_prefix('-')
            .is_some_and(|s| s.len() == 6 && s.bytes().all(|b| b.is_ascii_alphanumeric()));
    partition.starts_with("aws")
        && *arn_region == region
        && account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit())
        && suffix_ok
}

fn is_lowercase_uuid(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_digit() || (b'a'..=b'f').contains(&b),
        })
}

/// Tag rules from the ECS `Tag` reference: key 1–128 characters, value up to
/// 256, letters, digits, spaces and `+ - = . _ : / @`; `aws:` is reserved.
fn check_tag(key: &str, value: &str) -> Result<(), SpecError> {
    let allowed = |s: &str| {
        s.chars()
            .all(|c| c.is_alphanumeric() || c == ' ' || "+-=._:/@".contains(c))
    };
    let reason = if RESERVED_TAG_KEYS.contains(&key) {
        Some("the template sets it")
    } else if key.to_ascii_lowercase().starts_with("aws:") {
        Some("the aws: prefix is reserved by AWS")
    } else if key.is_empty() || key.chars().count() > 128 {
        Some("keys are 1 to 128 characters")
    } else if value.chars().count() > 256 {
        Some("values are at most 256 characters")
    } else if !allowed(key) || !allowed(value) {
        Some("tags may hold letters, digits, spaces and + - = . _ : / @ only")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(SpecError::Tag {
            key: key.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}
