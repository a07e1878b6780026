//! The worker task definition the ECS launcher registers, rendered from the
//! templates in `deploy/ecs/`.

use std::collections::BTreeMap;
use std::path::Path;

use polybot_deploy_spec::worker::{IBKR_SIDECAR_TEMPLATE, WORKER_TEMPLATE};
use polybot_deploy_spec::{
    FargateSize, IbkrSidecar, SpecError, WorkerMode, WorkerTaskSpec, render_worker_task_definition,
};
use serde_json::{Value, json};

const TENANT: &str = "6f1c0c9e-3b7a-4a55-9d0e-2f4f7f6f1a2b";
const OTHER_TENANT: &str = "0b9e2c4e-1d0a-4c8e-8a51-3c1e2b7a9f00";

fn spec() -> WorkerTaskSpec {
    WorkerTaskSpec {
        tenant_id: TENANT.into(),
        image: "123456789012.dkr.ecr.us-east-1.amazonaws.com/polybot@sha256:abc123".into(),
        secret_arn: format!(
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:polybot/tenants/{TENANT}-Ab12Cd"
        ),
        cpu: FargateSize::SMALLEST.cpu(),
        memory: FargateSize::SMALLEST.memory(),
        execution_role_arn: "arn:aws:iam::123456789012:role/polybot-worker-execution".into(),
        task_role_arn: "arn:aws:iam::123456789012:role/polybot-worker-task".into(),
        log_group: "/polybot/workers".into(),
        region: "us-east-1".into(),
        mode: WorkerMode::Paper,
        ibkr: None,
        extra_tags: BTreeMap::new(),
        settings_secret_arn: None,
    }
}

fn with_ibkr() -> WorkerTaskSpec {
    WorkerTaskSpec {
        memory: 2048,
        ibkr: Some(IbkrSidecar {
            image: "ghcr.io/gnzsnz/ib-gateway:stable".into(),
        }),
        ..spec()
    }
}

fn container<'a>(task: &'a Value, name: &str) -> &'a Value {
    task["containerDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no {name} container"))
}

fn names(list: &Value) -> Vec<&str> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect()
}

#[test]
fn the_renderer_embeds_the_files_in_deploy_ecs() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/ecs");
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap();
    assert_eq!(
        WORKER_TEMPLATE,
        read("worker.task-definition.template.json")
    );
    assert_eq!(
        IBKR_SIDECAR_TEMPLATE,
        read("ibkr-gateway.sidecar.template.json")
    );
}

#[test]
fn a_worker_without_ibkr_is_one_arm64_fargate_container_reading_its_tenants_secret() {
    let task = render_worker_task_definition(&spec()).unwrap();
    assert_eq!(task["family"], format!("polybot-t-{TENANT}"));
    assert_eq!(task["requiresCompatibilities"], json!(["FARGATE"]));
    assert_eq!(task["networkMode"], "awsvpc");
    assert_eq!(task["cpu"], "256");
    assert_eq!(task["memory"], "512");
    assert_eq!(task["runtimePlatform"]["cpuArchitecture"], "ARM64");
    assert_eq!(task["executionRoleArn"], spec().execution_role_arn);
    assert_eq!(task["taskRoleArn"], spec().task_role_arn);
    assert_eq!(task["containerDefinitions"].as_array().unwrap().len(), 1);

    let worker = container(&task, "worker");
    assert_eq!(worker["image"], spec().image);
    assert_eq!(worker["essential"], true);
    assert_eq!(worker["stopTimeout"], 30);
    assert_eq!(worker["command"], json!(["worker"]));
    assert!(worker.get("dependsOn").is_none());
    assert_eq!(
        worker["environment"],
        json!([
            { "name": "TENANT_ID", "value": TENANT },
            { "name": "POLYBOT_MODE", "value": "paper" },
        ])
    );
    assert_eq!(
        worker["secrets"],
        json!([
            { "name": "EXCHANGE_KEYS", "valueFrom": format!("{}:EXCHANGE_KEYS::", spec().secret_arn) },
            { "name": "DATABASE_URL", "valueFrom": format!("{}:DATABASE_URL::", spec().secret_arn) },
        ])
    );
    let log = &worker["logConfiguration"];
    assert_eq!(log["logDriver"], "awslogs");
    assert_eq!(log["options"]["awslogs-group"], "/polybot/workers");
    assert_eq!(log["options"]["awslogs-region"], "us-east-1");
    assert_eq!(
        log["options"]["awslogs-stream-prefix"],
        format!("tenant-{TENANT}")
    );
    assert_eq!(
        task["tags"],
        json!([
            { "key": "tenant_id", "value": TENANT },
            { "key": "polybot:component", "value": "worker" },
        ])
    );
    assert!(
        !task.to_string().contains("{{"),
        "a placeholder was left: {task}"
    );
}

#[test]
fn a_worker_with_ibkr_starts_after_a_healthy_gateway_on_port_4002() {
    let spec = with_ibkr();
    let task = render_worker_task_definition(&spec).unwrap();
    assert_eq!(task["memory"], "2048");
    assert_eq!(
        names(&task["containerDefinitions"]),
        ["worker", "ibkr-gateway"]
    );

    let worker = container(&task, "worker");
    assert_eq!(
        worker["dependsOn"],
        json!([{ "containerName": "ibkr-gateway", "condition": "HEALTHY" }])
    );
    assert_eq!(
        names(&worker["environment"]),
        ["TENANT_ID", "POLYBOT_MODE", "POLYBOT_IBKR_GATEWAY_ADDR"]
    );
    assert_eq!(worker["environment"][2]["value"], "127.0.0.1:4002");

    let gateway = container(&task, "ibkr-gateway");
    assert_eq!(gateway["image"], "ghcr.io/gnzsnz/ib-gateway:stable");
    assert_eq!(gateway["portMappings"][0]["containerPort"], 4002);
    assert_eq!(gateway["healthCheck"]["command"][0], "CMD-SHELL");
    assert!(
        gateway["healthCheck"]["command"][1]
            .as_str()
            .unwrap()
            .contains("4002")
    );
    assert_eq!(
        gateway["secrets"],
        json!([
            { "name": "TWS_USERID", "valueFrom": format!("{}:IBKR_USERNAME::", spec.secret_arn) },
            { "name": "TWS_PASSWORD", "valueFrom": format!("{}:IBKR_PASSWORD::", spec.secret_arn) },
        ])
    );
    assert_eq!(
        gateway["environment"][0],
        json!({ "name": "TRADING_MODE", "value": "paper" })
    );
    assert_eq!(
        gateway["logConfiguration"]["options"]["awslogs-stream-prefix"],
        format!("tenant-{TENANT}-ibkr")
    );
    assert!(
        !task.to_string().contains("{{"),
        "a placeholder was left: {task}"
    );
}

#[test]
fn every_secret_reference_points_at_the_tenants_own_secret() {
    let spec = with_ibkr();
    let task = render_worker_task_definition(&spec).unwrap();
    let prefix =
        format!("arn:aws:secretsmanager:us-east-1:123456789012:secret:polybot/tenants/{TENANT}-");
    let mut count = 0;
    for c in task["containerDefinitions"].as_array().unwrap() {
        for s in c["secrets"].as_array().unwrap() {
            assert!(s["valueFrom"].as_str().unwrap().starts_with(&prefix), "{s}");
            count += 1;
        }
    }
    assert_eq!(count, 4);
}

#[test]
fn live_mode_reaches_the_worker_and_the_gateway() {
    let spec = WorkerTaskSpec {
        mode: WorkerMode::Live,
        ..with_ibkr()
    };
    let task = render_worker_task_definition(&spec).unwrap();
    assert_eq!(
        container(&task, "worker")["environment"][1]["value"],
        "live"
    );
    assert_eq!(
        container(&task, "ibkr-gateway")["environment"][0]["value"],
        "live"
    );
}

#[test]
fn extra_tags_follow_the_templates_tags() {
    let spec = WorkerTaskSpec {
        extra_tags: BTreeMap::from([
            ("plan".to_owned(), "pro".to_owned()),
            ("cost-centre".to_owned(), "trading".to_owned()),
        ]),
        ..spec()
    };
    let task = render_worker_task_definition(&spec).unwrap();
    assert_eq!(
        task["tags"],
        json!([
            { "key": "tenant_id", "value": TENANT },
            { "key": "polybot:component", "value": "worker" },
            { "key": "cost-centre", "value": "trading" },
            { "key": "plan", "value": "pro" },
        ])
    );
}

#[test]
fn an_invalid_fargate_size_is_refused_with_the_sizes_to_use() {
    let err = render_worker_task_definition(&WorkerTaskSpec {
        memory: 256,
        ..spec()
    })
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "256 MB is not a valid Fargate memory size for 0.25 vCPU: use 512, 1024 or 2048"
    );
}

#[test]
fn the_gateway_needs_two_gigabytes_of_task_memory() {
    let err = render_worker_task_definition(&WorkerTaskSpec {
        memory: 1024,
        ..with_ibkr()
    })
    .unwrap_err();
    assert_eq!(err, SpecError::IbkrMemory { memory: 1024 });
}

#[test]
fn another_tenants_secret_is_refused() {
    let err = render_worker_task_definition(&WorkerTaskSpec {
        secret_arn: format!(
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:polybot/tenants/{OTHER_TENANT}-Ab12Cd"
        ),
        ..spec()
    })
    .unwrap_err();
    assert!(matches!(err, SpecError::SecretArn { .. }), "{err:?}");
}

#[test]
fn a_secret_outside_the_tenant_prefix_or_region_is_refused() {
    for arn in [
        format!("arn:aws:secretsmanager:us-east-1:123456789012:secret:other/{TENANT}-Ab12Cd"),
        format!(
            "arn:aws:secretsmanager:eu-west-1:123456789012:secret:polybot/tenants/{TENANT}-Ab12Cd"
        ),
        format!(
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:polybot/tenants/{TENANT}-extra-Ab12Cd"
        ),
        format!("polybot/tenants/{TENANT}"),
    ] {
        let err = render_worker_task_definition(&WorkerTaskSpec {
            secret_arn: arn.clone(),
            ..spec()
        })
        .unwrap_err();
        assert!(matches!(err, SpecError::SecretArn { .. }), "{arn}: {err:?}");
    }
}

#[test]
fn malformed_identifiers_are_refused() {
    let err = render_worker_task_definition(&WorkerTaskSpec {
        tenant_id: TENANT.to_uppercase(),
        ..spec()
    })
    .unwrap_err();
    assert!(matches!(err, SpecError::TenantId(_)), "{err:?}");

    let err = render_worker_task_definition(&WorkerTaskSpec {
        task_role_arn: "arn:aws:iam::123456789012:user/someone".into(),
        ..spec()
    })
    .unwrap_err();
    assert_eq!(
        err,
        SpecError::RoleArn {
            field: "task_role_arn",
            value: "arn:aws:iam::123456789012:user/someone".into()
        }
    );

    let err = render_worker_task_definition(&WorkerTaskSpec {
        image: "polybot latest".into(),
        ..spec()
    })
    .unwrap_err();
    assert!(
        matches!(err, SpecError::Blank { field: "image", .. }),
        "{err:?}"
    );
}

#[test]
fn reserved_and_aws_tags_are_refused() {
    for key in ["tenant_id", "aws:createdBy", "bad{key}"] {
        let err = render_worker_task_definition(&WorkerTaskSpec {
            extra_tags: BTreeMap::from([(key.to_owned(), "x".to_owned())]),
            ..spec()
        })
        .unwrap_err();
        assert!(matches!(err, SpecError::Tag { .. }), "{key}: {err:?}");
    }
    let too_many = (0..49).map(|i| (format!("k{i}"), "v".to_owned())).collect();
    let err = render_worker_task_definition(&WorkerTaskSpec {
        extra_tags: too_many,
        ..spec()
    })
    .unwrap_err();
    assert_eq!(err, SpecError::TooManyTags(51));
}

#[test]
fn the_spec_round_trips_through_json() {
    let spec = with_ibkr();
    let text = serde_json::to_string(&spec).unwrap();
    let back: WorkerTaskSpec = serde_json::from_str(&text).unwrap();
    assert_eq!(back, spec);
    assert_eq!(spec.family(), format!("polybot-t-{TENANT}"));
    assert_eq!(spec.size(), FargateSize::new(256, 2048));
}

#[test]
fn the_operators_worker_settings_are_injected_from_their_secret_when_there_is_one() {
    let without = render_worker_task_definition(&spec()).unwrap();
    assert_eq!(
        names(&container(&without, "worker")["secrets"]),
        ["EXCHANGE_KEYS", "DATABASE_URL"]
    );
    let arn =
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:polybot/workers/settings-Xy12Zw";
    let with = render_worker_task_definition(&WorkerTaskSpec {
        settings_secret_arn: Some(arn.into()),
        ..spec()
    })
    .unwrap();
    let secrets = &container(&with, "worker")["secrets"];
    assert_eq!(
        names(secrets),
        [
            "EXCHANGE_KEYS",
            "DATABASE_URL",
            "POLYBOT_NEWSAPI_KEY",
            "POLYBOT_MARKET_DATA_URL"
        ]
    );
    assert_eq!(
        secrets[2]["valueFrom"],
        format!("{arn}:POLYBOT_NEWSAPI_KEY::")
    );
    // The shared market data's Redis URL holds the `worker` user's password:
    // from the secret, never in plain environment.
    assert_eq!(
        secrets[3]["valueFrom"],
        format!("{arn}:POLYBOT_MARKET_DATA_URL::")
    );
    assert!(
        container(&with, "worker")["environment"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["name"] != "POLYBOT_MARKET_DATA_URL")
    );
    // Never a tenant's secret: that one the worker execution role reads for
    // every tenant, so it must hold no tenant's data.
    let tenants = spec().secret_arn;
    let err = render_worker_task_definition(&WorkerTaskSpec {
        settings_secret_arn: Some(tenants),
        ..spec()
    })
    .unwrap_err();
    assert!(
        err.to_string().contains("polybot/workers/settings"),
        "{err}"
    );
}
