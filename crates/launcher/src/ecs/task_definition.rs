//! The worker's task definition: rendered by `polybot-deploy-spec` from
//! `deploy/ecs/`, read into typed values ([`TaskDefinition`]), and translated
//! into RegisterTaskDefinition's input.
//!
//! The types mirror the fields of the template (and of the IB Gateway
//! sidecar template) with `deny_unknown_fields`: a field added to a template
//! that the launcher does not translate fails rendering instead of being
//! silently dropped, so the registered definition is the template's. The
//! free-form `logConfiguration.options` map is the one place any key goes.
//!
//! What does not live here: the templates and their validation (in
//! `polybot-deploy-spec`), and deciding when to register (the launcher).

use std::collections::HashMap;

use aws_sdk_ecs::operation::register_task_definition::builders::RegisterTaskDefinitionFluentBuilder;
use aws_sdk_ecs::types;
use polybot_core::{Mode, TenantId};
use polybot_deploy_spec::worker::{MAX_TAGS, RESERVED_TAG_KEYS};
use polybot_deploy_spec::{FargateSize, IbkrSidecar, WorkerMode, WorkerTaskSpec};
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::config::EcsConfig;
use super::{DEFINITION_HASH_TAG, family, invalid};
use crate::LaunchError;

/// A rendered task definition: RegisterTaskDefinition's input in the AWS
/// CLI's `--cli-input-json` shape (camelCase).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TaskDefinition {
    pub family: String,
    #[serde(default)]
    pub requires_compatibilities: Vec<String>,
    pub network_mode: Option<String>,
    pub cpu: Option<String>,
    pub memory: Option<String>,
    pub runtime_platform: Option<RuntimePlatform>,
    pub execution_role_arn: Option<String>,
    pub task_role_arn: Option<String>,
    pub container_definitions: Vec<ContainerDefinition>,
    #[serde(default)]
    pub volumes: Vec<Volume>,
    #[serde(default)]
    pub tags: Vec<Tag>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuntimePlatform {
    pub cpu_architecture: Option<String>,
    pub operating_system_family: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContainerDefinition {
    pub name: String,
    pub image: String,
    pub essential: Option<bool>,
    pub command: Option<Vec<String>>,
    pub entry_point: Option<Vec<String>>,
    pub user: Option<String>,
    pub working_directory: Option<String>,
    pub stop_timeout: Option<i32>,
    pub start_timeout: Option<i32>,
    pub readonly_root_filesystem: Option<bool>,
    pub linux_parameters: Option<LinuxParameters>,
    #[serde(default)]
    pub mount_points: Vec<MountPoint>,
    #[serde(default)]
    pub port_mappings: Vec<PortMapping>,
    #[serde(default)]
    pub environment: Vec<KeyValue>,
    #[serde(default)]
    pub secrets: Vec<Secret>,
    pub log_configuration: Option<LogConfiguration>,
    pub health_check: Option<HealthCheck>,
    #[serde(default)]
    pub depends_on: Vec<ContainerDependency>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LinuxParameters {
    pub init_process_enabled: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MountPoint {
    pub source_volume: Option<String>,
    pub container_path: Option<String>,
    pub read_only: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PortMapping {
    pub container_port: Option<i32>,
    pub host_port: Option<i32>,
    pub protocol: Option<String>,
    pub name: Option<String>,
}

/// An `environment` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyValue {
    pub name: String,
    pub value: String,
}

/// A `secrets` entry: `valueFrom` is `<secret arn>:<json key>::`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Secret {
    pub name: String,
    pub value_from: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LogConfiguration {
    pub log_driver: String,
    /// The log driver's own options (`awslogs-group`, `mode`, …): any key.
    pub options: Option<HashMap<String, String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HealthCheck {
    pub command: Vec<String>,
    pub interval: Option<i32>,
    pub timeout: Option<i32>,
    pub retries: Option<i32>,
    pub start_period: Option<i32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContainerDependency {
    pub container_name: String,
    pub condition: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Volume {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tag {
    pub key: String,
    pub value: String,
}

impl TaskDefinition {
    /// Reads a rendered definition; a field the types do not know is an error.
    pub fn from_rendered(rendered: Value) -> Result<Self, LaunchError> {
        serde_json::from_value(rendered).map_err(|e| {
            invalid(format!(
                "the worker task definition template: {e} (the ECS launcher registers only the \
                 fields it knows: add it to crates/launcher/src/ecs/task_definition.rs)"
            ))
        })
    }

    /// The container named `name`.
    pub fn container(&self, name: &str) -> Option<&ContainerDefinition> {
        self.container_definitions.iter().find(|c| c.name == name)
    }

    /// Fills `request` with the whole definition.
    pub fn register_request(
        &self,
        request: RegisterTaskDefinitionFluentBuilder,
    ) -> Result<RegisterTaskDefinitionFluentBuilder, LaunchError> {
        let mut request = request
            .family(&self.family)
            .set_network_mode(self.network_mode.as_deref().map(types::NetworkMode::from))
            .set_cpu(self.cpu.clone())
            .set_memory(self.memory.clone())
            .set_execution_role_arn(self.execution_role_arn.clone())
            .set_task_role_arn(self.task_role_arn.clone());
        for c in &self.requires_compatibilities {
            request = request.requires_compatibilities(types::Compatibility::from(c.as_str()));
        }
        if let Some(p) = &self.runtime_platform {
            request = request.runtime_platform(
                types::RuntimePlatform::builder()
                    .set_cpu_architecture(
                        p.cpu_architecture
                            .as_deref()
                            .map(types::CpuArchitecture::from),
                    )
                    .set_operating_system_family(
                        p.operating_system_family
                            .as_deref()
                            .map(types::OsFamily::from),
                    )
                    .build(),
            );
        }
        for c in &self.container_definitions {
            request = request.container_definitions(c.to_sdk()?);
        }
        for v in &self.volumes {
            request = request.volumes(types::Volume::builder().name(&v.name).build());
        }
        for t in &self.tags {
            request = request.tags(types::Tag::builder().key(&t.key).value(&t.value).build());
        }
        Ok(request)
    }
}

impl ContainerDefinition {
    fn to_sdk(&self) -> Result<types::ContainerDefinition, LaunchError> {
        let mut b = types::ContainerDefinition::builder()
            .name(&self.name)
            .image(&self.image)
            .set_essential(self.essential)
            .set_command(self.command.clone())
            .set_entry_point(self.entry_point.clone())
            .set_user(self.user.clone())
            .set_working_directory(self.working_directory.clone())
            .set_stop_timeout(self.stop_timeout)
            .set_start_timeout(self.start_timeout)
            .set_readonly_root_filesystem(self.readonly_root_filesystem);
        if let Some(l) = &self.linux_parameters {
            b = b.linux_parameters(
                types::LinuxParameters::builder()
                    .set_init_process_enabled(l.init_process_enabled)
                    .build(),
            );
        }
        for m in &self.mount_points {
            b = b.mount_points(
                types::MountPoint::builder()
                    .set_source_volume(m.source_volume.clone())
                    .set_container_path(m.container_path.clone())
                    .set_read_only(m.read_only)
                    .build(),
            );
        }
        for p in &self.port_mappings {
            b = b.port_mappings(
                types::PortMapping::builder()
                    .set_container_port(p.container_port)
                    .set_host_port(p.host_port)
                    .set_protocol(p.protocol.as_deref().map(types::TransportProtocol::from))
                    .set_name(p.name.clone())
                    .build(),
            );
        }
        for e in &self.environment {
            b = b.environment(
                types::KeyValuePair::builder()
                    .name(&e.name)
                    .value(&e.value)
                    .build(),
            );
        }
        for s in &self.secrets {
            b = b.secrets(
                types::Secret::builder()
                    .name(&s.name)
                    .value_from(&s.value_from)
                    .build()
                    .map_err(|e| invalid(format!("the template's secrets[]: {e}")))?,
            );
        }
        if let Some(l) = &self.log_configuration {
            b = b.log_configuration(
                types::LogConfiguration::builder()
                    .log_driver(types::LogDriver::from(l.log_driver.as_str()))
                    .set_options(l.options.clone())
                    .build()
                    .map_err(|e| invalid(format!("the template's logConfiguration: {e}")))?,
            );
        }
        if let Some(h) = &self.health_check {
            b = b.health_check(
                types::HealthCheck::builder()
                    .set_command(Some(h.command.clone()))
                    .set_interval(h.interval)
                    .set_timeout(h.timeout)
                    .set_retries(h.retries)
                    .set_start_period(h.start_period)
                    .build()
                    .map_err(|e| invalid(format!("the template's healthCheck: {e}")))?,
            );
        }
        for d in &self.depends_on {
            b = b.depends_on(
                types::ContainerDependency::builder()
                    .container_name(&d.container_name)
                    .condition(types::ContainerCondition::from(d.condition.as_str()))
                    .build()
                    .map_err(|e| invalid(format!("the template's dependsOn[]: {e}")))?,
            );
        }
        Ok(b.build())
    }
}

/// Renders the tenant's task definition through `polybot-deploy-spec`, puts
/// it in the tenant's family, and tags it with its own hash: the hash of the
/// rendered JSON text, so that it names the template's output exactly.
pub(super) fn render(
    config: &EcsConfig,
    tenant: TenantId,
    mode: Mode,
    secret_arn: String,
    size: FargateSize,
    ibkr: Option<IbkrSidecar>,
    spot: bool,
) -> Result<(TaskDefinition, String), LaunchError> {
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
            Mode::Shadow => WorkerMode::Shadow,
            Mode::Live => WorkerMode::Live,
        },
        ibkr,
        extra_tags: config.cost_tags.clone(),
        settings_secret_arn: config.worker_settings_secret_arn.clone(),
    };
    let mut rendered = spec.render().map_err(|e| invalid(e.to_string()))?;
    let object = rendered
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
    // Hashed before it is typed: the hash is what earlier control planes
    // tagged their revisions with, so an upgrade registers nothing new.
    let hash = hex::encode(&Sha256::digest(rendered.to_string().as_bytes())[..16]);
    let mut definition = TaskDefinition::from_rendered(rendered)?;
    definition.tags.push(Tag {
        key: DEFINITION_HASH_TAG.to_owned(),
        value: hash.clone(),
    });
    Ok((definition, hash))
}

/// `arn:…:task-definition/<family>:<revision>` → family.
pub(super) fn arn_family(arn: &str) -> Option<&str> {
    let name = arn.rsplit_once('/')?.1;
    Some(name.rsplit_once(':')?.0)
}

/// `arn:…:task-definition/<family>:<revision>` → revision (0 if there is none).
pub(super) fn arn_revision(arn: &str) -> u64 {
    arn.rsplit_once(':')
        .and_then(|(_, r)| r.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use polybot_core::worker::env;
    use polybot_deploy_spec::worker::{IBKR_CONTAINER, WORKER_CONTAINER};

    use super::*;

    fn config() -> EcsConfig {
        EcsConfig {
            cluster: "polybot".into(),
            subnets: vec!["subnet-1".into()],
            security_groups: vec![],
            worker_image: "ghcr.io/polybot/polybot:1".into(),
            execution_role_arn: "arn:aws:iam::123456789012:role/polybot-execution".into(),
            task_role_arn: "arn:aws:iam::123456789012:role/polybot-worker".into(),
            log_group: "/polybot/workers".into(),
            region: "us-east-1".into(),
            assign_public_ip: false,
            spot_for_paper: false,
            cost_tags: BTreeMap::from([("team".to_owned(), "bots".to_owned())]),
            cpu: 256,
            memory: 512,
            ibkr_gateway_image: None,
            worker_settings_secret_arn: None,
        }
    }

    fn rendered(tenant: TenantId, ibkr: bool, spot: bool) -> (TaskDefinition, String) {
        let secret = format!(
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:polybot/tenants/{tenant}-AbCdEf"
        );
        let (size, sidecar) = if ibkr {
            (
                FargateSize::new(256, 2048).unwrap(),
                Some(IbkrSidecar {
                    image: "ghcr.io/gnzsnz/ib-gateway:stable".into(),
                }),
            )
        } else {
            (FargateSize::new(256, 512).unwrap(), None)
        };
        render(&config(), tenant, Mode::Paper, secret, size, sidecar, spot).unwrap()
    }

    #[test]
    fn a_rendered_definition_parses_into_the_tenants_family_with_the_worker_contract() {
        let tenant = TenantId::new();
        let (td, hash) = rendered(tenant, false, false);
        assert_eq!(td.family, format!("polybot-t-{tenant}"));
        assert_eq!(td.requires_compatibilities, ["FARGATE"]);
        assert_eq!(td.network_mode.as_deref(), Some("awsvpc"));
        assert_eq!(td.cpu.as_deref(), Some("256"));
        assert_eq!(td.memory.as_deref(), Some("512"));
        assert_eq!(
            td.runtime_platform
                .as_ref()
                .and_then(|p| p.cpu_architecture.as_deref()),
            Some("ARM64")
        );
        let names: Vec<&str> = td
            .container_definitions
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(names, [WORKER_CONTAINER]);
        let worker = td.container(WORKER_CONTAINER).unwrap();
        assert_eq!(worker.image, "ghcr.io/polybot/polybot:1");
        assert_eq!(worker.command.as_deref(), Some(&["worker".to_owned()][..]));
        // The names the worker reads, from the one place they are defined.
        let environment: Vec<(&str, &str)> = worker
            .environment
            .iter()
            .map(|e| (e.name.as_str(), e.value.as_str()))
            .collect();
        let tenant_text = tenant.to_string();
        assert_eq!(
            environment,
            [(env::TENANT_ID, tenant_text.as_str()), (env::MODE, "paper")]
        );
        let secrets: Vec<&str> = worker.secrets.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(secrets, [env::EXCHANGE_KEYS, env::DATABASE_URL]);
        assert!(
            worker.secrets[0]
                .value_from
                .ends_with(&format!("{tenant}-AbCdEf:EXCHANGE_KEYS::"))
        );
        let log = worker.log_configuration.as_ref().unwrap();
        assert_eq!(log.log_driver, "awslogs");
        assert_eq!(
            log.options.as_ref().unwrap()["awslogs-stream-prefix"],
            format!("tenant-{tenant}")
        );
        let tags: Vec<(&str, &str)> = td
            .tags
            .iter()
            .map(|t| (t.key.as_str(), t.value.as_str()))
            .collect();
        assert_eq!(
            tags,
            [
                ("tenant_id", tenant_text.as_str()),
                ("polybot:component", "worker"),
                ("team", "bots"),
                (DEFINITION_HASH_TAG, hash.as_str()),
            ]
        );
        assert_eq!(hash.len(), 32);
    }

    #[test]
    fn the_ibkr_sidecar_parses_and_the_worker_waits_for_it() {
        let (td, _) = rendered(TenantId::new(), true, false);
        let names: Vec<&str> = td
            .container_definitions
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(names, [WORKER_CONTAINER, IBKR_CONTAINER]);
        let worker = td.container(WORKER_CONTAINER).unwrap();
        assert_eq!(
            worker.depends_on,
            [ContainerDependency {
                container_name: IBKR_CONTAINER.into(),
                condition: "HEALTHY".into(),
            }]
        );
        let gateway = td.container(IBKR_CONTAINER).unwrap();
        assert_eq!(gateway.port_mappings[0].container_port, Some(4002));
        assert_eq!(gateway.health_check.as_ref().unwrap().retries, Some(6));
        assert_eq!(td.memory.as_deref(), Some("2048"));
    }

    #[test]
    fn spot_tasks_run_on_x86_64_and_hash_differently() {
        let tenant = TenantId::new();
        let (on_demand, on_demand_hash) = rendered(tenant, false, false);
        let (spot, spot_hash) = rendered(tenant, false, true);
        assert_eq!(
            spot.runtime_platform.unwrap().cpu_architecture.as_deref(),
            Some("X86_64")
        );
        assert_ne!(on_demand_hash, spot_hash);
        assert_eq!(rendered(tenant, false, false).1, on_demand_hash);
        assert_eq!(on_demand.family, spot.family);
    }

    #[test]
    fn a_field_the_launcher_does_not_translate_is_refused() {
        let tenant = TenantId::new();
        let secret = format!(
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:polybot/tenants/{tenant}-AbCdEf"
        );
        let spec = WorkerTaskSpec {
            tenant_id: tenant.to_string(),
            image: "ghcr.io/polybot/polybot:1".into(),
            secret_arn: secret,
            cpu: 256,
            memory: 512,
            execution_role_arn: "arn:aws:iam::123456789012:role/polybot-execution".into(),
            task_role_arn: "arn:aws:iam::123456789012:role/polybot-worker".into(),
            log_group: "/polybot/workers".into(),
            region: "us-east-1".into(),
            mode: WorkerMode::Paper,
            ibkr: None,
            extra_tags: BTreeMap::new(),
            settings_secret_arn: None,
        };
        let good = spec.render().unwrap();
        assert!(TaskDefinition::from_rendered(good.clone()).is_ok());

        let mut top = good.clone();
        top["ipcMode"] = "task".into();
        let err = TaskDefinition::from_rendered(top).unwrap_err().to_string();
        assert!(err.contains("unknown field `ipcMode`"), "{err}");
        assert!(err.contains("ecs/task_definition.rs"), "{err}");

        let mut container = good.clone();
        container["containerDefinitions"][0]["privileged"] = true.into();
        let err = TaskDefinition::from_rendered(container)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `privileged`"), "{err}");

        let mut nested = good.clone();
        nested["containerDefinitions"][0]["secrets"][0]["versionStage"] = "AWSCURRENT".into();
        let err = TaskDefinition::from_rendered(nested)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `versionStage`"), "{err}");

        // The log driver's options are the driver's own: any key goes.
        let mut options = good;
        options["containerDefinitions"][0]["logConfiguration"]["options"]["awslogs-datetime-format"] =
            "%Y".into();
        let td = TaskDefinition::from_rendered(options).unwrap();
        let log = td.container_definitions[0]
            .log_configuration
            .as_ref()
            .unwrap();
        assert_eq!(
            log.options.as_ref().unwrap()["awslogs-datetime-format"],
            "%Y"
        );
    }

    #[test]
    fn a_value_of_the_wrong_type_is_refused() {
        let mut value = serde_json::json!({
            "family": "polybot-t-x",
            "containerDefinitions": [{"name": "worker", "image": "i", "stopTimeout": "30"}]
        });
        let err = TaskDefinition::from_rendered(value.clone())
            .unwrap_err()
            .to_string();
        assert!(err.contains("invalid type"), "{err}");
        value["containerDefinitions"][0]["stopTimeout"] = (i64::from(i32::MAX) + 1).into();
        assert!(TaskDefinition::from_rendered(value).is_err());
    }

    #[test]
    fn task_definition_arns_split_into_family_and_revision() {
        let arn = "arn:aws:ecs:us-east-1:123456789012:task-definition/polybot-t-x:12";
        assert_eq!(arn_family(arn), Some("polybot-t-x"));
        assert_eq!(arn_revision(arn), 12);
    }
}
