//! Fleet-wide rollouts: the API's refusals, and a rollout driven by the
//! reconciler across ECS tenants in the AWS emulator (moto), paced by a
//! clock the test steps, paused, resumed, carried on by a restarted control
//! plane, and a second one aborted.

use crate::common;
use crate::ecs_fleet::{aws, moto_setup};

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{Method, StatusCode};
use chrono::{DateTime, SubsecRound, Utc};
use common::{Harness, OPERATOR};
use polybot_control_plane::reconcile::Reconciler;
use polybot_control_plane::{AppState, WorkerDatabase};
use polybot_core::TenantId;
use polybot_launcher::ecs::{EcsConfig, EcsLauncher};
use polybot_launcher::{Instance, Launcher, Phase};
use polybot_secrets::aws::AwsSecretStore;
use serde_json::{Value, json};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

fn fields(reply: &common::Reply) -> Vec<String> {
    reply.body["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| e["field"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn starting_a_rollout_refuses_bad_input_naming_each_field(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let h = Harness::new(pool_opts, options).await;
    let none = h
        .call(Method::GET, "/fleet/rollouts/current", Some(OPERATOR), None)
        .await;
    assert_eq!(none.status, StatusCode::NOT_FOUND);
    assert_eq!(none.body["detail"], "rollout not found");

    let bad = h
        .call(
            Method::POST,
            "/fleet/rollouts",
            Some(OPERATOR),
            Some(
                json!({"image": "has spaces", "settings": {"DATABASE_URL": "postgres://x"},
                        "per_minute": 0, "pace": 3}),
            ),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.text);
    assert_eq!(
        bad.headers["content-type"], "application/problem+json",
        "{}",
        bad.text
    );
    assert_eq!(
        fields(&bad),
        ["pace", "image", "settings.DATABASE_URL", "per_minute"],
        "{}",
        bad.text
    );

    // The local launcher (this harness's) runs no image.
    let local = h
        .call(
            Method::POST,
            "/fleet/rollouts",
            Some(OPERATOR),
            Some(json!({"image": "polybot:v2", "per_minute": 10})),
        )
        .await;
    assert_eq!(local.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(fields(&local), ["image"]);
    assert!(
        local.body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("local launcher"),
        "{}",
        local.text
    );

    let nothing = h
        .call(
            Method::POST,
            "/fleet/rollouts",
            Some(OPERATOR),
            Some(json!({"per_minute": 10})),
        )
        .await;
    assert_eq!(fields(&nothing), ["image"]);
    assert_eq!(
        nothing.body["errors"][0]["message"],
        "a rollout needs an image, settings, or both"
    );

    // Tenants may not start one.
    let tenant = h.onboard(json!({"name": "t"})).await;
    let token = h
        .call(
            Method::POST,
            &format!("/tenants/{tenant}/tokens"),
            Some(OPERATOR),
            Some(json!({})),
        )
        .await;
    let token = token.body["token"].as_str().unwrap().to_owned();
    let refused = h
        .call(
            Method::POST,
            "/fleet/rollouts",
            Some(&token),
            Some(json!({"settings": {"POLYBOT_LOG": "debug"}, "per_minute": 10})),
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(h.count("SELECT count(*) FROM fleet_rollouts").await, 0);
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn one_rollout_runs_at_a_time_and_finished_ones_take_no_controls(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let h = Harness::new(pool_opts, options).await;
    let start = |level: &'static str| {
        h.call(
            Method::POST,
            "/fleet/rollouts",
            Some(OPERATOR),
            Some(json!({"settings": {"POLYBOT_LOG": level}, "per_minute": 12})),
        )
    };
    let first = start("debug").await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
    assert_eq!(first.body["state"], "running");
    assert_eq!(first.body["per_minute"], 12);
    assert_eq!(first.body["settings"], json!({"POLYBOT_LOG": "debug"}));
    assert_eq!(first.body["image"], Value::Null);
    let id = first.body["id"].as_i64().unwrap();

    let second = start("info").await;
    assert_eq!(second.status, StatusCode::CONFLICT, "{}", second.text);
    assert_eq!(
        second.body["detail"],
        format!("rollout {id} is running: resume or abort it before starting another")
    );
    assert_eq!(second.headers["content-type"], "application/problem+json");

    let paused = h
        .call(
            Method::POST,
            &format!("/fleet/rollouts/{id}/pause"),
            Some(OPERATOR),
            None,
        )
        .await;
    assert_eq!(paused.body["state"], "paused", "{}", paused.text);
    assert_eq!(paused.body["reason"], "paused by the operator");
    assert_eq!(start("info").await.status, StatusCode::CONFLICT);

    let aborted = h
        .call(
            Method::POST,
            &format!("/fleet/rollouts/{id}/abort"),
            Some(OPERATOR),
            None,
        )
        .await;
    assert_eq!(aborted.body["state"], "aborted", "{}", aborted.text);
    assert!(aborted.body["finished_at"].is_string());
    let resumed = h
        .call(
            Method::POST,
            &format!("/fleet/rollouts/{id}/resume"),
            Some(OPERATOR),
            None,
        )
        .await;
    assert_eq!(resumed.status, StatusCode::CONFLICT, "{}", resumed.text);
    let missing = h
        .call(
            Method::POST,
            "/fleet/rollouts/9999/pause",
            Some(OPERATOR),
            None,
        )
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);

    let next = start("info").await;
    assert_eq!(next.status, StatusCode::CREATED, "{}", next.text);
    let current = h
        .call(Method::GET, "/fleet/rollouts/current", Some(OPERATOR), None)
        .await;
    assert_eq!(current.body["id"], next.body["id"]);
    let old = h
        .call(
            Method::GET,
            &format!("/fleet/rollouts/{id}"),
            Some(OPERATOR),
            None,
        )
        .await;
    assert_eq!(old.body["state"], "aborted");
}

fn ecs_config(cluster: &str, subnet: &str) -> EcsConfig {
    EcsConfig {
        cluster: cluster.to_owned(),
        subnets: vec![subnet.to_owned()],
        security_groups: vec![],
        worker_image: IMAGE_V1.into(),
        execution_role_arn: "arn:aws:iam::123456789012:role/polybot-worker-execution".into(),
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
    }
}

const IMAGE_V1: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com/polybot:v1";
const IMAGE_V2: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com/polybot:v2";
const IMAGE_V3: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com/polybot:v3";

/// A control plane's reconciler as `polybot control-plane --launcher ecs`
/// builds it, on a clock the test steps.
fn reconciler(
    h: &Harness,
    launcher: Arc<EcsLauncher>,
    store: Arc<AwsSecretStore>,
    clock: &Arc<Mutex<DateTime<Utc>>>,
) -> Reconciler {
    let mut reconciler = Reconciler::new(
        h.state.db.clone(),
        launcher,
        store,
        h.state.reconcile.clone(),
    );
    reconciler.spec_salt = IMAGE_V1.into();
    // The emulator's StopTask sets no stop code, so a stop the reconciler
    // asked for reads as a crash: keep its back-off short.
    reconciler.backoff.base = Duration::from_millis(1);
    let clock = clock.clone();
    reconciler.clock = Arc::new(move || *clock.lock().unwrap());
    reconciler
}

fn live(instances: &[Instance], tenant: &str) -> Vec<Instance> {
    instances
        .iter()
        .filter(|i| i.tenant.to_string() == tenant && i.phase.is_live())
        .cloned()
        .collect()
}

/// The image of the task definition `task` runs.
async fn image_of(ecs: &aws_sdk_ecs::Client, cluster: &str, task: &str) -> String {
    let described = ecs
        .describe_tasks()
        .cluster(cluster)
        .tasks(task)
        .send()
        .await
        .unwrap();
    let definition = ecs
        .describe_task_definition()
        .task_definition(described.tasks()[0].task_definition_arn().unwrap())
        .send()
        .await
        .unwrap();
    definition
        .task_definition()
        .unwrap()
        .container_definitions()[0]
        .image()
        .unwrap()
        .to_owned()
}

/// Passes (at the clock's time) until `done` tenants of the current rollout
/// run its release; returns the tenants begun meanwhile. Each pass checks
/// that no tenant has two live workers.
async fn pass_until_done(
    h: &Harness,
    reconciler: &Reconciler,
    launcher: &EcsLauncher,
    tenants: &[String],
    done: i64,
) -> usize {
    let mut begun = 0;
    for _ in 0..60 {
        let report = reconciler.pass().await.unwrap();
        assert_eq!(report.errors, 0, "{report:?}");
        begun += report.rollout.begun;
        let instances = launcher.list().await.unwrap();
        for tenant in tenants {
            let live: Vec<Instance> = live(&instances, tenant)
                .into_iter()
                .filter(|i| i.phase != Phase::Stopping)
                .collect();
            assert!(live.len() <= 1, "tenant {tenant} has two workers: {live:?}");
        }
        let current = h
            .call(Method::GET, "/fleet/rollouts/current", Some(OPERATOR), None)
            .await;
        if current.body["progress"]["done"] == done && current.body["progress"]["rolling"] == 0 {
            return begun;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let current = h
        .call(Method::GET, "/fleet/rollouts/current", Some(OPERATOR), None)
        .await;
    let fleet = h.call(Method::GET, "/fleet", Some(OPERATOR), None).await;
    panic!(
        "the rollout never got {done} tenants done: {}\nfleet: {}",
        current.text, fleet.text
    );
}

async fn progress(h: &Harness) -> (Value, Value) {
    let current = h
        .call(Method::GET, "/fleet/rollouts/current", Some(OPERATOR), None)
        .await;
    (
        current.body["state"].clone(),
        current.body["progress"].clone(),
    )
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn an_image_rollout_replaces_each_ecs_task_at_its_rate_through_pause_resume_and_a_restart(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let subnet = moto_setup().await;
    let aws = aws().await;
    let ecs = aws_sdk_ecs::Client::new(&aws);
    let cluster = format!("polybot-ro-{}", TenantId::new());
    ecs.create_cluster()
        .cluster_name(&cluster)
        .send()
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
    h.state.worker_images = true;
    let launcher = Arc::new(EcsLauncher::new(ecs_config(&cluster, &subnet), &aws).unwrap());
    // Whole seconds: the database keeps microseconds.
    let t0: DateTime<Utc> = Utc::now().trunc_subsecs(0);
    let clock = Arc::new(Mutex::new(t0));
    let first = reconciler(&h, launcher.clone(), store.clone(), &clock);

    let mut tenants = Vec::new();
    for name in ["a", "b", "c"] {
        tenants.push(h.onboard(json!({"name": name})).await);
    }
    let report = first.pass().await.unwrap();
    assert_eq!((report.started, report.errors), (3, 0), "{report:?}");
    let before = launcher.list().await.unwrap();
    let old: BTreeMap<String, String> = tenants
        .iter()
        .map(|t| (t.clone(), live(&before, t)[0].id.clone()))
        .collect();
    for task in old.values() {
        assert_eq!(image_of(&ecs, &cluster, task).await, IMAGE_V1);
    }

    // One a second: the fastest RegisterTaskDefinition allows.
    let started = h
        .call(
            Method::POST,
            "/fleet/rollouts",
            Some(OPERATOR),
            Some(json!({"image": IMAGE_V2, "per_minute": 60})),
        )
        .await;
    assert_eq!(started.status, StatusCode::CREATED, "{}", started.text);
    let id = started.body["id"].as_i64().unwrap();
    assert_eq!(started.body["progress"]["total"], 3);
    assert_eq!(started.body["progress"]["pending"], 3);

    // At t0 one tenant begins; however many passes run at t0, no other does.
    let begun = pass_until_done(&h, &first, &launcher, &tenants, 1).await;
    assert_eq!(begun, 1);
    let (state, progress_now) = progress(&h).await;
    assert_eq!(state, "running");
    assert_eq!(progress_now["pending"], 2, "{progress_now}");
    let next_at: DateTime<Utc> = serde_json::from_value(
        h.call(Method::GET, "/fleet/rollouts/current", Some(OPERATOR), None)
            .await
            .body["next_at"]
            .clone(),
    )
    .unwrap();
    assert_eq!(next_at, t0 + chrono::Duration::seconds(1));

    // Paused: time passes, nothing begins.
    let paused = h
        .call(
            Method::POST,
            &format!("/fleet/rollouts/{id}/pause"),
            Some(OPERATOR),
            None,
        )
        .await;
    assert_eq!(paused.body["state"], "paused");
    *clock.lock().unwrap() = t0 + chrono::Duration::seconds(30);
    for _ in 0..3 {
        let report = first.pass().await.unwrap();
        assert_eq!(report.rollout.begun, 0, "{report:?}");
        assert_eq!(report.rollout.next_due, None, "{report:?}");
    }
    assert_eq!(progress(&h).await.1["pending"], 2);

    // Resumed: the next tenant begins at once (its interval passed long
    // ago), and only one.
    let resumed = h
        .call(
            Method::POST,
            &format!("/fleet/rollouts/{id}/resume"),
            Some(OPERATOR),
            None,
        )
        .await;
    assert_eq!(resumed.body["state"], "running");
    let report = first.pass().await.unwrap();
    assert_eq!(report.rollout.begun, 1, "{report:?}");
    assert_eq!(
        report.rollout.next_due,
        Some(t0 + chrono::Duration::seconds(31))
    );

    // The control plane restarts mid-rollout: a new launcher and reconciler
    // (nothing in memory) carry on from the database.
    drop(first);
    let launcher = Arc::new(EcsLauncher::new(ecs_config(&cluster, &subnet), &aws).unwrap());
    let second = reconciler(&h, launcher.clone(), store.clone(), &clock);
    assert_eq!(
        pass_until_done(&h, &second, &launcher, &tenants, 2).await,
        0,
        "nothing begins before its time"
    );
    *clock.lock().unwrap() = t0 + chrono::Duration::seconds(31);
    assert_eq!(
        pass_until_done(&h, &second, &launcher, &tenants, 3).await,
        1
    );
    let report = second.pass().await.unwrap();
    assert_eq!(report.rollout.completed, None, "done in the previous pass");
    let (state, progress_now) = progress(&h).await;
    assert_eq!(state, "done");
    assert_eq!(
        progress_now,
        json!({"total": 3, "done": 3, "rolling": 0, "pending": 0})
    );

    // Every tenant runs one task, of a new revision of its own family with
    // the new image; the old tasks were stopped.
    let after = launcher.list().await.unwrap();
    for tenant in &tenants {
        let now = live(&after, tenant);
        assert_eq!(now.len(), 1, "{now:?}");
        assert_ne!(now[0].id, old[tenant]);
        assert_eq!(image_of(&ecs, &cluster, &now[0].id).await, IMAGE_V2);
        let revisions = ecs
            .list_task_definitions()
            .family_prefix(format!("polybot-t-{tenant}"))
            .send()
            .await
            .unwrap();
        assert_eq!(revisions.task_definition_arns().len(), 2, "{revisions:?}");
        let stopped = ecs
            .describe_tasks()
            .cluster(&cluster)
            .tasks(&old[tenant])
            .send()
            .await
            .unwrap();
        assert_eq!(stopped.tasks()[0].desired_status(), Some("STOPPED"));
    }
    // At the rate: the tenants began at t0, t0+30 s (the resume) and t0+31 s.
    let began: Vec<DateTime<Utc>> = sqlx::query_scalar(
        "SELECT began_at FROM tenant_releases WHERE rollout_id = $1 ORDER BY began_at",
    )
    .bind(id)
    .fetch_all(&h.pool)
    .await
    .unwrap();
    let offsets: Vec<i64> = began.iter().map(|b| (*b - t0).num_seconds()).collect();
    assert_eq!(offsets, [0, 30, 31]);

    // A second rollout, aborted after its first tenant: that tenant keeps
    // v3, the others stay on v2, and nothing more begins.
    let third = h
        .call(
            Method::POST,
            "/fleet/rollouts",
            Some(OPERATOR),
            Some(json!({"image": IMAGE_V3, "per_minute": 60})),
        )
        .await;
    assert_eq!(third.status, StatusCode::CREATED, "{}", third.text);
    let third = third.body["id"].as_i64().unwrap();
    assert_eq!(
        pass_until_done(&h, &second, &launcher, &tenants, 1).await,
        1
    );
    // Its worker of v3 dies: the rollout pauses itself at that tenant.
    let reached = h
        .call(Method::GET, "/fleet/rollouts/current", Some(OPERATOR), None)
        .await
        .body["recent"][0]["tenant_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let v3_task = live(&launcher.list().await.unwrap(), &reached)[0]
        .id
        .clone();
    assert_eq!(image_of(&ecs, &cluster, &v3_task).await, IMAGE_V3);
    ecs.stop_task()
        .cluster(&cluster)
        .task(&v3_task)
        .reason("Essential container in task exited")
        .send()
        .await
        .unwrap();
    *clock.lock().unwrap() = t0 + chrono::Duration::seconds(60);
    let report = second.pass().await.unwrap();
    assert!(report.rollout.paused, "{report:?}");
    assert_eq!(report.rollout.begun, 0, "{report:?}");
    let paused = h
        .call(Method::GET, "/fleet/rollouts/current", Some(OPERATOR), None)
        .await;
    assert_eq!(paused.body["state"], "paused", "{}", paused.text);
    let reason = paused.body["reason"].as_str().unwrap();
    assert!(
        reason.starts_with(&format!(
            "paused: tenant {reached}'s worker of the new release failed (worker {v3_task} crashed: "
        )),
        "{reason}"
    );
    let aborted = h
        .call(
            Method::POST,
            &format!("/fleet/rollouts/{third}/abort"),
            Some(OPERATOR),
            None,
        )
        .await;
    assert_eq!(aborted.body["state"], "aborted", "{}", aborted.text);
    *clock.lock().unwrap() = t0 + chrono::Duration::seconds(120);
    for _ in 0..3 {
        assert_eq!(second.pass().await.unwrap().rollout.begun, 0);
    }
    let after = launcher.list().await.unwrap();
    let mut images = Vec::new();
    for tenant in &tenants {
        let now = live(&after, tenant);
        assert_eq!(now.len(), 1, "{now:?}");
        images.push(image_of(&ecs, &cluster, &now[0].id).await);
    }
    images.sort();
    assert_eq!(images, [IMAGE_V2, IMAGE_V2, IMAGE_V3]);
    let (state, progress_now) = progress(&h).await;
    assert_eq!(state, "aborted");
    assert_eq!(
        progress_now,
        json!({"total": 3, "done": 1, "rolling": 0, "pending": 2})
    );
}

/// Runs whatever it is asked to, as local processes would (no images), and
/// remembers the settings each start was given.
#[derive(Debug, Default)]
struct SettingsLauncher {
    running: Mutex<BTreeMap<TenantId, Instance>>,
    starts: Mutex<Vec<(TenantId, BTreeMap<String, String>)>>,
}

#[async_trait::async_trait]
impl Launcher for SettingsLauncher {
    fn kind(&self) -> &'static str {
        "settings"
    }

    async fn ensure_spec(
        &self,
        _spec: &polybot_launcher::LaunchSpec,
    ) -> Result<(), polybot_launcher::LaunchError> {
        Ok(())
    }

    async fn list(&self) -> Result<Vec<Instance>, polybot_launcher::LaunchError> {
        Ok(self.running.lock().unwrap().values().cloned().collect())
    }

    async fn start(
        &self,
        spec: &polybot_launcher::LaunchSpec,
    ) -> Result<Instance, polybot_launcher::LaunchError> {
        let env: BTreeMap<String, String> = spec
            .plain_env()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let mut starts = self.starts.lock().unwrap();
        starts.push((spec.tenant, env));
        let instance = Instance {
            id: format!("w-{}", starts.len()),
            tenant: spec.tenant,
            spec_hash: spec.spec_hash.clone(),
            phase: Phase::Running,
            started_at: Utc::now(),
        };
        self.running
            .lock()
            .unwrap()
            .insert(spec.tenant, instance.clone());
        Ok(instance)
    }

    async fn stop(
        &self,
        instance: &Instance,
        _reason: &str,
    ) -> Result<(), polybot_launcher::LaunchError> {
        self.running.lock().unwrap().remove(&instance.tenant);
        Ok(())
    }
}

impl SettingsLauncher {
    /// The settings of `tenant`'s latest start.
    fn last_env(&self, tenant: &str) -> BTreeMap<String, String> {
        self.starts
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|(t, _)| t.to_string() == tenant)
            .map(|(_, env)| env.clone())
            .unwrap_or_default()
    }

    fn starts_of(&self, tenant: &str) -> usize {
        self.starts
            .lock()
            .unwrap()
            .iter()
            .filter(|(t, _)| t.to_string() == tenant)
            .count()
    }
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_settings_rollout_restarts_each_worker_with_them_and_later_tenants_get_them_too(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let h = Harness::new(pool_opts, options).await;
    let launcher = Arc::new(SettingsLauncher::default());
    let t0 = Utc::now().trunc_subsecs(0);
    let clock = Arc::new(Mutex::new(t0));
    let mut reconciler = Reconciler::new(
        h.state.db.clone(),
        launcher.clone(),
        h.state.secrets.clone(),
        h.state.reconcile.clone(),
    );
    reconciler
        .worker_env
        .insert("POLYBOT_HEARTBEAT_SECS".into(), "5".into());
    let at = clock.clone();
    reconciler.clock = Arc::new(move || *at.lock().unwrap());
    let a = h.onboard(json!({"name": "a"})).await;
    let b = h.onboard(json!({"name": "b"})).await;
    assert_eq!(reconciler.pass().await.unwrap().started, 2);
    assert_eq!(launcher.last_env(&a).get("POLYBOT_LOG"), None);

    let started = h
        .call(
            Method::POST,
            "/fleet/rollouts",
            Some(OPERATOR),
            Some(json!({"settings": {"POLYBOT_LOG": "debug"}, "per_minute": 2})),
        )
        .await;
    assert_eq!(started.status, StatusCode::CREATED, "{}", started.text);
    // Half a minute apart at 2 a minute: one tenant now, one at t0 + 30 s.
    for _ in 0..4 {
        reconciler.pass().await.unwrap();
    }
    let first = progress(&h).await.1;
    assert_eq!(first["done"], 1, "{first}");
    assert_eq!(first["pending"], 1, "{first}");
    *clock.lock().unwrap() = t0 + chrono::Duration::seconds(29);
    assert_eq!(reconciler.pass().await.unwrap().rollout.begun, 0);
    *clock.lock().unwrap() = t0 + chrono::Duration::seconds(30);
    for _ in 0..4 {
        reconciler.pass().await.unwrap();
    }
    let (state, done) = progress(&h).await;
    assert_eq!(state, "done", "{done}");
    for tenant in [&a, &b] {
        let env = launcher.last_env(tenant);
        assert_eq!(env["POLYBOT_LOG"], "debug", "{env:?}");
        assert_eq!(env["POLYBOT_HEARTBEAT_SECS"], "5", "{env:?}");
        assert_eq!(launcher.starts_of(tenant), 2, "one replacement each");
    }
    // A tenant onboarded after the rollout runs the fleet's release.
    let c = h.onboard(json!({"name": "c"})).await;
    assert_eq!(reconciler.pass().await.unwrap().started, 1);
    assert_eq!(launcher.last_env(&c)["POLYBOT_LOG"], "debug");
    // Nothing else was replaced.
    assert_eq!(reconciler.pass().await.unwrap().started, 0);
}
