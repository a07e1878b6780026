//! The ECS launcher against moto's ECS emulation on loopback (started by
//! scripts/test, patched by scripts/moto_server.py). Each test has a cluster
//! and tenants of its own, so the tests share one emulator safely.

use std::collections::{BTreeMap, HashMap};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_ecs::config::Credentials;
use aws_sdk_ecs::types::{TaskDefinitionField, TaskField};
use polybot_core::{Mode, TenantId};
use polybot_launcher::ecs::{
    DEFINITION_HASH_TAG, EcsConfig, EcsLauncher, SPEC_HASH_TAG, STARTED_BY, family, https_client,
};
use polybot_launcher::{LaunchError, LaunchSpec, Launcher, Phase};

const REGION: &str = "us-east-1";

fn endpoint() -> String {
    std::env::var("POLYBOT_TEST_AWS_ENDPOINT").unwrap_or_else(|_| {
        panic!(
            "POLYBOT_TEST_AWS_ENDPOINT is not set: these tests need the AWS emulator (moto on \
             loopback) that scripts/test starts. Run them with `scripts/test -- -p polybot-launcher`."
        )
    })
}

async fn aws() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint())
        .region(Region::new(REGION))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "tests"))
        .http_client(https_client())
        .load()
        .await
}

/// Tasks stay where they are until told (moto otherwise walks them to STOPPED).
async fn manual_task_transitions() {
    let reply = reqwest::Client::new()
        .post(format!(
            "{}/moto-api/state-manager/set-transition",
            endpoint()
        ))
        .body(r#"{"model_name":"ecs::task","transition":{"progression":"manual","times":1000000}}"#)
        .send()
        .await
        .expect("moto's state manager answers");
    assert!(
        reply.status().is_success(),
        "set-transition: {}",
        reply.status()
    );
}

/// A subnet moto's EC2 knows (its default VPC has one per zone).
async fn a_subnet() -> String {
    let body = reqwest::Client::new()
        .post(endpoint())
        .header(
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=testing/20240101/us-east-1/ec2/aws4_request, \
             SignedHeaders=host, Signature=0",
        )
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("Action=DescribeSubnets&Version=2016-11-15")
        .send()
        .await
        .expect("moto's EC2 answers")
        .text()
        .await
        .expect("a body");
    let start = body.find("<subnetId>").expect("moto has a default subnet") + "<subnetId>".len();
    let end = start + body[start..].find('<').expect("a closing tag");
    body[start..end].to_owned()
}

struct Fixture {
    aws: SdkConfig,
    client: aws_sdk_ecs::Client,
    config: EcsConfig,
}

async fn fixture() -> Fixture {
    manual_task_transitions().await;
    let aws = aws().await;
    let client = aws_sdk_ecs::Client::new(&aws);
    let cluster = format!("polybot-test-{}", TenantId::new());
    let created = client
        .create_cluster()
        .cluster_name(&cluster)
        .send()
        .await
        .expect("moto creates the cluster");
    assert_eq!(
        created.cluster().and_then(|c| c.cluster_name()),
        Some(cluster.as_str())
    );
    let config = EcsConfig {
        cluster,
        subnets: vec![a_subnet().await],
        security_groups: vec![],
        worker_image: "123456789012.dkr.ecr.us-east-1.amazonaws.com/polybot:test".into(),
        execution_role_arn: "arn:aws:iam::123456789012:role/polybot-worker-execution".into(),
        task_role_arn: "arn:aws:iam::123456789012:role/polybot-worker-task".into(),
        log_group: "/polybot/workers".into(),
        region: REGION.into(),
        assign_public_ip: false,
        spot_for_paper: false,
        cost_tags: BTreeMap::from([("cost-center".to_owned(), "bots".to_owned())]),
        cpu: 256,
        memory: 512,
        ibkr_gateway_image: None,
        worker_settings_secret_arn: None,
    };
    Fixture {
        aws,
        client,
        config,
    }
}

fn secret_arn(tenant: TenantId) -> String {
    format!("arn:aws:secretsmanager:{REGION}:123456789012:secret:polybot/tenants/{tenant}-AbC123")
}

fn spec(tenant: TenantId, hash: &str) -> LaunchSpec {
    LaunchSpec {
        tenant,
        spec_hash: hash.into(),
        mode: Mode::Paper,
        secret_env: BTreeMap::new(),
        secret_reference: Some(secret_arn(tenant)),
        env: BTreeMap::from([("POLYBOT_LOG".to_owned(), "info".to_owned())]),
        ibkr: false,
    }
}

async fn revisions(f: &Fixture, tenant: TenantId) -> Vec<String> {
    f.client
        .list_task_definitions()
        .family_prefix(family(tenant))
        .send()
        .await
        .expect("ListTaskDefinitions")
        .task_definition_arns()
        .to_vec()
}

#[tokio::test]
async fn ensure_spec_registers_a_revision_once_and_again_only_when_the_definition_changes() {
    let f = fixture().await;
    let tenant = TenantId::new();
    let launcher = EcsLauncher::new(f.config.clone(), &f.aws).unwrap();

    launcher.ensure_spec(&spec(tenant, "h1")).await.unwrap();
    launcher.ensure_spec(&spec(tenant, "h1")).await.unwrap();
    // A new spec hash (new config or keys) needs no new revision: it travels
    // as a RunTask override.
    launcher.ensure_spec(&spec(tenant, "h2")).await.unwrap();
    assert_eq!(revisions(&f, tenant).await.len(), 1);

    // A restarted control plane finds the revision by its definition hash.
    let restarted = EcsLauncher::new(f.config.clone(), &f.aws).unwrap();
    restarted.ensure_spec(&spec(tenant, "h1")).await.unwrap();
    assert_eq!(revisions(&f, tenant).await.len(), 1);

    // A bigger plan is a different definition.
    restarted.set_tenant_size(tenant, 512, 1024).unwrap();
    restarted.ensure_spec(&spec(tenant, "h1")).await.unwrap();
    restarted.ensure_spec(&spec(tenant, "h1")).await.unwrap();
    let arns = revisions(&f, tenant).await;
    assert_eq!(arns.len(), 2, "{arns:?}");
}

#[tokio::test]
async fn the_registered_definition_is_the_template_with_the_tenants_secret_and_tags() {
    let f = fixture().await;
    let tenant = TenantId::new();
    let launcher = EcsLauncher::new(f.config.clone(), &f.aws).unwrap();
    launcher.ensure_spec(&spec(tenant, "h1")).await.unwrap();

    let described = f
        .client
        .describe_task_definition()
        .task_definition(family(tenant))
        .include(TaskDefinitionField::Tags)
        .send()
        .await
        .unwrap();
    let td = described.task_definition().unwrap();
    assert_eq!(td.family(), Some(format!("polybot-t-{tenant}").as_str()));
    assert_eq!(td.cpu(), Some("256"));
    assert_eq!(td.memory(), Some("512"));
    assert_eq!(
        td.runtime_platform()
            .and_then(|p| p.cpu_architecture())
            .map(|a| a.as_str()),
        Some("ARM64")
    );
    assert_eq!(
        td.execution_role_arn(),
        Some("arn:aws:iam::123456789012:role/polybot-worker-execution")
    );
    let worker = &td.container_definitions()[0];
    assert_eq!(worker.name(), Some("worker"));
    assert_eq!(worker.image(), Some(f.config.worker_image.as_str()));
    let secrets: HashMap<&str, &str> = worker
        .secrets()
        .iter()
        .map(|s| (s.name(), s.value_from()))
        .collect();
    let arn = secret_arn(tenant);
    assert_eq!(
        secrets,
        HashMap::from([
            ("EXCHANGE_KEYS", format!("{arn}:EXCHANGE_KEYS::").as_str()),
            ("DATABASE_URL", format!("{arn}:DATABASE_URL::").as_str()),
        ])
    );
    let env: HashMap<&str, &str> = worker
        .environment()
        .iter()
        .filter_map(|e| Some((e.name()?, e.value()?)))
        .collect();
    assert_eq!(env.get("TENANT_ID"), Some(&tenant.to_string().as_str()));
    assert_eq!(env.get("POLYBOT_MODE"), Some(&"paper"));
    let log = worker.log_configuration().unwrap();
    assert_eq!(log.log_driver().as_str(), "awslogs");
    assert_eq!(
        log.options()
            .and_then(|o| o.get("awslogs-group"))
            .map(String::as_str),
        Some("/polybot/workers")
    );
    let tags: HashMap<&str, &str> = described
        .tags()
        .iter()
        .filter_map(|t| Some((t.key()?, t.value()?)))
        .collect();
    assert_eq!(tags.get("tenant_id"), Some(&tenant.to_string().as_str()));
    assert_eq!(tags.get("cost-center"), Some(&"bots"));
    assert_eq!(tags.get(DEFINITION_HASH_TAG).map(|h| h.len()), Some(32));
}

#[tokio::test]
async fn start_runs_exactly_one_task_with_its_group_tags_and_spec_hash() {
    let f = fixture().await;
    let tenant = TenantId::new();
    let launcher = EcsLauncher::new(f.config.clone(), &f.aws).unwrap();
    let spec = spec(tenant, "spec-1");
    launcher.ensure_spec(&spec).await.unwrap();
    let started = launcher.start(&spec).await.unwrap();
    assert_eq!(started.tenant, tenant);
    assert_eq!(started.spec_hash, "spec-1");
    assert!(started.phase.is_live(), "{:?}", started.phase);

    let listed = f
        .client
        .list_tasks()
        .cluster(&f.config.cluster)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.task_arns(), std::slice::from_ref(&started.id));
    let described = f
        .client
        .describe_tasks()
        .cluster(&f.config.cluster)
        .tasks(&started.id)
        .include(TaskField::Tags)
        .send()
        .await
        .unwrap();
    let task = &described.tasks()[0];
    assert_eq!(task.group(), Some(format!("tenant:{tenant}").as_str()));
    assert_eq!(task.started_by(), Some(STARTED_BY));
    assert_eq!(
        task.task_definition_arn()
            .map(|a| a.ends_with(&format!("task-definition/polybot-t-{tenant}:1"))),
        Some(true),
        "{:?}",
        task.task_definition_arn()
    );
    assert!(
        task.tags()
            .iter()
            .any(|t| t.key() == Some(SPEC_HASH_TAG) && t.value() == Some("spec-1")),
        "{:?}",
        task.tags()
    );
    let overrides: HashMap<&str, &str> = task
        .overrides()
        .unwrap()
        .container_overrides()
        .iter()
        .filter(|c| c.name() == Some("worker"))
        .flat_map(|c| c.environment())
        .filter_map(|e| Some((e.name()?, e.value()?)))
        .collect();
    assert_eq!(
        overrides,
        HashMap::from([("POLYBOT_SPEC_HASH", "spec-1"), ("POLYBOT_LOG", "info")])
    );
    let attachment = &task.attachments()[0];
    assert!(
        attachment.details().iter().any(
            |d| d.name() == Some("subnetId") && d.value() == Some(f.config.subnets[0].as_str())
        ),
        "the task's network interface is in the configured subnet"
    );

    let instances = launcher.list().await.unwrap();
    let ours: Vec<_> = instances.iter().filter(|i| i.tenant == tenant).collect();
    assert_eq!(ours.len(), 1);
    assert_eq!(ours[0].id, started.id);
    assert_eq!(ours[0].phase, Phase::Running);
    assert_eq!(ours[0].spec_hash, "spec-1");
}

#[tokio::test]
async fn stop_stops_the_task_and_list_reports_its_exit_while_ecs_knows_it() {
    let f = fixture().await;
    let tenant = TenantId::new();
    let launcher = EcsLauncher::new(f.config.clone(), &f.aws).unwrap();
    let spec = spec(tenant, "spec-1");
    let started = launcher.start(&spec).await.unwrap();

    launcher
        .stop(&started, "stopped by the reconciler: paused")
        .await
        .unwrap();

    let first = launcher.list().await.unwrap();
    let exited: Vec<_> = first.iter().filter(|i| i.id == started.id).collect();
    assert_eq!(exited.len(), 1);
    match &exited[0].phase {
        Phase::Exited(exit) => {
            assert!(exit.reason.contains("paused"), "{}", exit.reason)
        }
        other => panic!("expected an exit, got {other:?}"),
    }
    // Every listing reports it (the reconciler counts it once, by its ARN).
    let second = launcher.list().await.unwrap();
    assert!(
        second
            .iter()
            .any(|i| i.id == started.id && !i.phase.is_live()),
        "the stopped task is listed again: {second:?}"
    );

    // A replacement is a new launch: a new task, not the stopped one again.
    let replacement = launcher.start(&spec).await.unwrap();
    assert_ne!(replacement.id, started.id);
    let live: Vec<_> = launcher
        .list()
        .await
        .unwrap()
        .into_iter()
        .filter(|i| i.tenant == tenant && i.phase.is_live())
        .collect();
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].id, replacement.id);
}

#[tokio::test]
async fn a_fargate_size_aws_does_not_offer_is_rejected_with_the_sizes_to_use() {
    let f = fixture().await;
    let config = EcsConfig {
        memory: 256,
        ..f.config.clone()
    };
    let err = EcsLauncher::new(config, &f.aws).unwrap_err();
    assert!(matches!(err, LaunchError::InvalidSpec { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "ecs launcher: invalid spec: 256 MB is not a valid Fargate memory size for 0.25 vCPU: use 512, 1024 or 2048"
    );
    let launcher = EcsLauncher::new(f.config.clone(), &f.aws).unwrap();
    let err = launcher
        .set_tenant_size(TenantId::new(), 1024, 1024)
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("1024 MB is not a valid Fargate memory size for 1 vCPU"),
        "{err}"
    );
}

#[tokio::test]
async fn a_tenant_without_a_secret_reference_cannot_run_on_ecs() {
    let f = fixture().await;
    let launcher = EcsLauncher::new(f.config.clone(), &f.aws).unwrap();
    let tenant = TenantId::new();
    let spec = LaunchSpec {
        secret_reference: None,
        ..spec(tenant, "h")
    };
    let err = launcher.start(&spec).await.unwrap_err();
    assert!(err.to_string().contains("--secrets aws"), "{err}");
    assert!(revisions(&f, tenant).await.is_empty());
}

/// The definition the emulator accepted is exactly what the launcher
/// rendered from deploy/ecs, with and without the IB Gateway sidecar.
#[tokio::test]
async fn the_rendered_definition_is_accepted_as_is_with_and_without_the_ibkr_sidecar() {
    let mut f = fixture().await;
    f.config.ibkr_gateway_image = Some("ghcr.io/gnzsnz/ib-gateway:stable".into());
    let launcher = EcsLauncher::new(f.config.clone(), &f.aws).unwrap();
    for ibkr in [false, true] {
        let tenant = TenantId::new();
        let mut spec = spec(tenant, "h1");
        spec.ibkr = ibkr;
        let (rendered, _) = launcher.task_definition(&spec).unwrap();
        launcher.ensure_spec(&spec).await.unwrap();
        let described = f
            .client
            .describe_task_definition()
            .task_definition(family(tenant))
            .send()
            .await
            .unwrap();
        let td = described.task_definition().unwrap();
        assert_eq!(td.family(), Some(rendered.family.as_str()));
        assert_eq!(td.cpu(), rendered.cpu.as_deref());
        assert_eq!(td.memory(), rendered.memory.as_deref());
        let containers = &rendered.container_definitions;
        let names: Vec<&str> = td
            .container_definitions()
            .iter()
            .filter_map(|c| c.name())
            .collect();
        let expected: Vec<&str> = containers.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, expected);
        assert_eq!(
            names,
            if ibkr {
                vec!["worker", "ibkr-gateway"]
            } else {
                vec!["worker"]
            }
        );
        for (registered, wanted) in td.container_definitions().iter().zip(containers) {
            assert_eq!(registered.image(), Some(wanted.image.as_str()));
            assert_eq!(registered.essential(), wanted.essential);
            let env: Vec<(String, String)> = registered
                .environment()
                .iter()
                .map(|e| {
                    (
                        e.name().unwrap_or_default().to_owned(),
                        e.value().unwrap_or_default().to_owned(),
                    )
                })
                .collect();
            let want_env: Vec<(String, String)> = wanted
                .environment
                .iter()
                .map(|e| (e.name.clone(), e.value.clone()))
                .collect();
            assert_eq!(env, want_env);
            let secrets: Vec<(String, String)> = registered
                .secrets()
                .iter()
                .map(|s| (s.name().to_owned(), s.value_from().to_owned()))
                .collect();
            let want_secrets: Vec<(String, String)> = wanted
                .secrets
                .iter()
                .map(|s| (s.name.clone(), s.value_from.clone()))
                .collect();
            assert_eq!(secrets, want_secrets);
            let depends: Vec<(String, String)> = registered
                .depends_on()
                .iter()
                .map(|d| {
                    (
                        d.container_name().to_owned(),
                        d.condition().as_str().to_owned(),
                    )
                })
                .collect();
            let want_depends: Vec<(String, String)> = wanted
                .depends_on
                .iter()
                .map(|d| (d.container_name.clone(), d.condition.clone()))
                .collect();
            assert_eq!(depends, want_depends);
        }
        if ibkr {
            assert_eq!(
                td.memory(),
                Some("2048"),
                "the sidecar gets a task big enough for it"
            );
            let worker = &td.container_definitions()[0];
            assert!(worker.depends_on().iter().any(
                |d| d.container_name() == "ibkr-gateway" && d.condition().as_str() == "HEALTHY"
            ));
            assert!(
                worker
                    .environment()
                    .iter()
                    .any(|e| e.name() == Some("POLYBOT_IBKR_GATEWAY_ADDR"))
            );
        }
    }
}
