//! The reconciler driving the ECS launcher and the Secrets Manager store,
//! against the AWS emulator on loopback (moto, started by scripts/test).

use crate::common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_ecs::config::Credentials;
use axum::http::Method;
use common::{Harness, OPERATOR};
use polybot_control_plane::reconcile::Reconciler;
use polybot_control_plane::{AppState, WorkerDatabase};
use polybot_core::TenantId;
use polybot_launcher::ecs::{EcsConfig, EcsLauncher, https_client};
use polybot_launcher::{Launcher, Phase};
use polybot_secrets::aws::AwsSecretStore;
use serde_json::json;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

pub(crate) fn endpoint() -> String {
    std::env::var("POLYBOT_TEST_AWS_ENDPOINT").unwrap_or_else(|_| {
        panic!("POLYBOT_TEST_AWS_ENDPOINT is not set: run these tests through scripts/test, which starts the AWS emulator")
    })
}

pub(crate) async fn aws() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "tests"))
        .http_client(https_client())
        .load()
        .await
}

pub(crate) async fn moto_setup() -> String {
    let http = reqwest::Client::new();
    let reply = http
        .post(format!(
            "{}/moto-api/state-manager/set-transition",
            endpoint()
        ))
        .body(r#"{"model_name":"ecs::task","transition":{"progression":"manual","times":1000000}}"#)
        .send()
        .await
        .unwrap();
    assert!(reply.status().is_success());
    let body = http
        .post(endpoint())
        .header(
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=testing/20240101/us-east-1/ec2/aws4_request, SignedHeaders=host, Signature=0",
        )
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("Action=DescribeSubnets&Version=2016-11-15")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let start = body.find("<subnetId>").unwrap() + "<subnetId>".len();
    body[start..start + body[start..].find('<').unwrap()].to_owned()
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn the_reconciler_runs_one_ecs_task_per_active_tenant_and_replaces_a_stopped_one(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let subnet = moto_setup().await;
    let aws = aws().await;
    let ecs = aws_sdk_ecs::Client::new(&aws);
    let cluster = format!("polybot-it-{}", TenantId::new());
    ecs.create_cluster()
        .cluster_name(&cluster)
        .send()
        .await
        .unwrap();

    // A control plane whose secrets live in Secrets Manager.
    let mut h = Harness::new(pool_opts, options.clone()).await;
    let store = Arc::new(AwsSecretStore::new(
        &aws,
        polybot_core::keys::FingerprintKey::from_bytes([3; 32]),
    ));
    h.state = AppState::new(
        h.state.db.clone(),
        store.clone(),
        WorkerDatabase::from_options(&options),
    );
    let image = "123456789012.dkr.ecr.us-east-1.amazonaws.com/polybot:v1";
    let launcher = Arc::new(
        EcsLauncher::new(
            EcsConfig {
                cluster: cluster.clone(),
                subnets: vec![subnet],
                security_groups: vec![],
                worker_image: image.into(),
                execution_role_arn: "arn:aws:iam::123456789012:role/polybot-worker-execution"
                    .into(),
                task_role_arn: "arn:aws:iam::123456789012:role/polybot-worker-task".into(),
                log_group: "/polybot/workers".into(),
                region: "us-east-1".into(),
                assign_public_ip: false,
                spot_for_paper: false,
                cost_tags: BTreeMap::new(),
                cpu: 256,
                memory: 512,
                ibkr_gateway_image: None,
                worker_settings_secret_arn: None,
            },
            &aws,
        )
        .unwrap(),
    );
    // The production path: the launcher wrapped for metrics, which must keep
    // saying that ECS injects the secrets itself.
    let instrumented = polybot_control_plane::metrics::InstrumentedLauncher::wrap(
        launcher.clone(),
        h.state.metrics.clone(),
    );
    assert!(instrumented.injects_secrets());
    let mut reconciler = Reconciler::new(
        h.state.db.clone(),
        launcher.clone(),
        store,
        h.state.reconcile.clone(),
    )
    .with_metrics(h.state.metrics.clone());
    reconciler.backoff.base = Duration::from_millis(50);
    reconciler.spec_salt = image.into();

    let a = h.onboard(json!({"name": "a"})).await;
    let b = h.onboard(json!({"name": "b"})).await;
    let report = reconciler.pass().await.unwrap();
    assert_eq!((report.started, report.errors), (2, 0), "{report:?}");

    // Exactly one task per tenant, with the tenant's task definition and secret.
    let live = |instances: &[polybot_launcher::Instance], tenant: &str| {
        instances
            .iter()
            .filter(|i| i.tenant.to_string() == tenant && i.phase.is_live())
            .cloned()
            .collect::<Vec<_>>()
    };
    let instances = launcher.list().await.unwrap();
    let (task_a, task_b) = (live(&instances, &a), live(&instances, &b));
    assert_eq!((task_a.len(), task_b.len()), (1, 1));
    let described = ecs
        .describe_tasks()
        .cluster(&cluster)
        .tasks(&task_a[0].id)
        .include(aws_sdk_ecs::types::TaskField::Tags)
        .send()
        .await
        .unwrap();
    let task = &described.tasks()[0];
    assert_eq!(task.group(), Some(format!("tenant:{a}").as_str()));
    let definition = ecs
        .describe_task_definition()
        .task_definition(task.task_definition_arn().unwrap())
        .include(aws_sdk_ecs::types::TaskDefinitionField::Tags)
        .send()
        .await
        .unwrap();
    let family = definition
        .task_definition()
        .unwrap()
        .family()
        .unwrap()
        .to_owned();
    assert_eq!(family, format!("polybot-t-{a}"));
    let secrets: Vec<String> = definition
        .task_definition()
        .unwrap()
        .container_definitions()[0]
        .secrets()
        .iter()
        .map(|s| s.value_from().to_owned())
        .collect();
    assert!(
        secrets
            .iter()
            .all(|arn| arn.contains(&format!("secret:polybot/tenants/{a}"))),
        "{secrets:?}"
    );
    let tags: Vec<(String, String)> = definition
        .tags()
        .iter()
        .map(|t| {
            (
                t.key().unwrap_or_default().to_owned(),
                t.value().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert!(
        tags.contains(&("tenant_id".to_owned(), a.clone())),
        "{tags:?}"
    );

    // Another pass changes nothing.
    let report = reconciler.pass().await.unwrap();
    assert_eq!((report.started, report.stopped), (0, 0), "{report:?}");

    // Pause A: its task is stopped.
    let paused = h
        .call(
            Method::POST,
            &format!("/tenants/{a}/pause"),
            Some(OPERATOR),
            None,
        )
        .await;
    assert_eq!(paused.body["state"], "paused");
    let report = reconciler.pass().await.unwrap();
    assert_eq!(report.stopped, 1, "{report:?}");
    let stopped = ecs
        .describe_tasks()
        .cluster(&cluster)
        .tasks(&task_a[0].id)
        .send()
        .await
        .unwrap();
    assert_eq!(stopped.tasks()[0].desired_status(), Some("STOPPED"));

    // B's task stops on its own: recorded with its reason, and replaced.
    ecs.stop_task()
        .cluster(&cluster)
        .task(&task_b[0].id)
        .reason("Essential container in task exited")
        .send()
        .await
        .unwrap();
    let mut replaced = None;
    for _ in 0..40 {
        reconciler.pass().await.unwrap();
        let now = launcher.list().await.unwrap();
        if let Some(new) = live(&now, &b)
            .into_iter()
            .find(|i| i.id != task_b[0].id && i.phase != Phase::Stopping)
        {
            replaced = Some(new);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let replaced = replaced.expect("the stopped task was replaced");
    assert_ne!(replaced.id, task_b[0].id);
    let status = h
        .call(
            Method::GET,
            &format!("/tenants/{b}/status"),
            Some(OPERATOR),
            None,
        )
        .await;
    assert_eq!(status.body["worker"]["restarts"], 1, "{}", status.text);
    assert!(
        status.body["worker"]["last_exit"]
            .as_str()
            .is_some_and(|e| e.contains(&task_b[0].id)),
        "{}",
        status.text
    );
    let timeline = h
        .count(&format!("SELECT count(*) FROM tenant_runtime_events WHERE tenant_id = '{b}' AND kind = 'crashed'"))
        .await;
    assert_eq!(timeline, 1);
}

/// The event path end to end, as a deployment runs it: the rule and queues
/// of `infra/events.tf` in the emulator, a task stopped there, and the task
/// state change ECS would send (its documented shape; the emulator emits
/// none) published to the bus with PutEvents. The leader's consumer receives
/// it through the queue and wakes the reconciler, which records the exit
/// from the event and replaces the worker; the message is deleted. The
/// reconciler's timer is an hour, so nothing but the event can wake it.
///
/// The same steps (`polybot_launcher::testing`: `event_plumbing` before the
/// control plane starts, with `POLYBOT_ECS_EVENTS_QUEUE_URL` set to its
/// queue; then `stopped_task_detail` and `publish_task_state_change` after
/// stopping the task) extend the deployment rehearsal.
#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_task_state_change_through_eventbridge_and_sqs_wakes_the_reconciler_to_replace_the_worker(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    use polybot_launcher::TaskEvents;
    use polybot_launcher::ecs::SqsTaskEvents;
    use polybot_launcher::testing::{
        event_plumbing, publish_task_state_change, stopped_task_detail,
    };

    let subnet = moto_setup().await;
    let aws = aws().await;
    let ecs = aws_sdk_ecs::Client::new(&aws);
    let cluster = format!("polybot-ev-{}", TenantId::new());
    let cluster_arn = ecs
        .create_cluster()
        .cluster_name(&cluster)
        .send()
        .await
        .unwrap()
        .cluster()
        .and_then(|c| c.cluster_arn())
        .unwrap()
        .to_owned();
    let plumbing = event_plumbing(&aws, &endpoint(), &cluster, &cluster_arn, 5)
        .await
        .unwrap();

    let mut h = Harness::new(pool_opts, options.clone()).await;
    let store = Arc::new(AwsSecretStore::new(
        &aws,
        polybot_core::keys::FingerprintKey::from_bytes([3; 32]),
    ));
    h.state = AppState::new(
        h.state.db.clone(),
        store.clone(),
        WorkerDatabase::from_options(&options),
    );
    let launcher = Arc::new(
        EcsLauncher::new(
            EcsConfig {
                cluster: cluster.clone(),
                subnets: vec![subnet],
                security_groups: vec![],
                worker_image: "123456789012.dkr.ecr.us-east-1.amazonaws.com/polybot:v1".into(),
                execution_role_arn: "arn:aws:iam::123456789012:role/polybot-worker-execution"
                    .into(),
                task_role_arn: "arn:aws:iam::123456789012:role/polybot-worker-task".into(),
                log_group: "/polybot/workers".into(),
                region: "us-east-1".into(),
                assign_public_ip: false,
                spot_for_paper: false,
                cost_tags: BTreeMap::new(),
                cpu: 256,
                memory: 512,
                ibkr_gateway_image: None,
                worker_settings_secret_arn: None,
            },
            &aws,
        )
        .unwrap(),
    );
    let events = SqsTaskEvents::new(&aws, plumbing.queue_url.clone(), cluster.clone())
        .with_wait(Duration::from_secs(1));
    let mut reconciler = Reconciler::new(
        h.state.db.clone(),
        launcher.clone(),
        store,
        Arc::new(tokio::sync::Notify::new()),
    )
    .with_events(Arc::new(events));
    reconciler.interval = Duration::from_secs(3600);
    reconciler.backstop_interval = Duration::from_secs(3600);
    reconciler.backoff.base = Duration::from_millis(1);

    let a = h.onboard(json!({"name": "a"})).await;
    let stop = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(reconciler.run(stop.clone()));
    let live = |instances: &[polybot_launcher::Instance]| {
        instances
            .iter()
            .filter(|i| i.tenant.to_string() == a && i.phase.is_live())
            .cloned()
            .collect::<Vec<_>>()
    };
    let mut first = Vec::new();
    for _ in 0..100 {
        first = live(&launcher.list().await.unwrap());
        if !first.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(first.len(), 1, "the leader's first pass started the worker");
    let task = first[0].clone();

    // ECS stops the task (its worker exited with code 1) and says so.
    ecs.stop_task()
        .cluster(&cluster)
        .task(&task.id)
        .reason("Essential container in task exited")
        .send()
        .await
        .unwrap();
    let detail = stopped_task_detail(task.tenant, &task.id, &cluster_arn, &task.spec_hash, 1);
    publish_task_state_change(&endpoint(), &detail)
        .await
        .unwrap();

    let mut replacement = None;
    for _ in 0..100 {
        if let Some(new) = live(&launcher.list().await.unwrap())
            .into_iter()
            .find(|i| i.id != task.id)
        {
            replacement = Some(new);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.cancel();
    running.await.unwrap();
    let replacement =
        replacement.expect("the event woke the reconciler, which replaced the worker");
    assert_ne!(replacement.id, task.id);

    let status = h
        .call(
            Method::GET,
            &format!("/tenants/{a}/status"),
            Some(OPERATOR),
            None,
        )
        .await;
    assert_eq!(status.body["worker"]["restarts"], 1, "{}", status.text);
    assert_eq!(
        status.body["worker"]["last_exit"],
        format!(
            "worker {}: EssentialContainerExited: Essential container in task exited; \
             container worker exited with exit code 1",
            task.id
        ),
        "the exit is the event's"
    );
    assert_eq!(
        h.count(&format!(
            "SELECT count(*) FROM worker_exits WHERE tenant_id = '{a}' AND instance_id = '{}' AND exit_code = 1",
            task.id
        ))
        .await,
        1
    );
    // Recorded, the message was deleted: nothing is left on the queue.
    let left = SqsTaskEvents::new(&aws, plumbing.queue_url, cluster)
        .with_wait(Duration::ZERO)
        .with_visibility_timeout(Duration::ZERO);
    assert_eq!(left.receive().await.unwrap(), []);
}
