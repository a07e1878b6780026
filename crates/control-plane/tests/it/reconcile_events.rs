//! The reconciler with a task-event source: exits counted once whoever sees
//! them (an event, the listing, a second reconciler), a failing launch that
//! backs off for its tenant only, and a tenant that waits for capacity.

use crate::common;

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::http::Method;
use chrono::Utc;
use common::{Harness, OPERATOR};
use polybot_control_plane::reconcile::Reconciler;
use polybot_core::TenantId;
use polybot_launcher::{
    EventContent, Exit, Instance, LaunchError, LaunchSpec, Launcher, Phase, TaskEvent, TaskEvents,
};
use serde_json::{Value, json};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tokio::sync::Notify;

/// Tasks in memory: started ones run, until the test stops them.
#[derive(Debug, Default)]
struct FakeLauncher {
    tasks: Mutex<Vec<Instance>>,
    started: Mutex<u32>,
    /// Tenants whose launches fail.
    failing: Mutex<HashSet<TenantId>>,
    /// Start attempts per tenant.
    attempts: Mutex<Vec<TenantId>>,
    /// At most this many live tasks (the quota).
    capacity: Mutex<Option<usize>>,
}

impl FakeLauncher {
    fn live(&self, tenant: &str) -> Vec<Instance> {
        self.tasks
            .lock()
            .unwrap()
            .iter()
            .filter(|i| i.tenant.to_string() == tenant && i.phase.is_live())
            .cloned()
            .collect()
    }

    /// The task crashes; returns it as it now is.
    fn crash(&self, id: &str) -> Instance {
        let mut tasks = self.tasks.lock().unwrap();
        let task = tasks.iter_mut().find(|i| i.id == id).expect("a task");
        task.phase = Phase::Exited(Exit {
            code: Some(1),
            reason: "EssentialContainerExited: container worker exited with exit code 1".into(),
            requested: false,
            at: Utc::now(),
        });
        task.clone()
    }

    fn attempts(&self, tenant: &str) -> usize {
        self.attempts
            .lock()
            .unwrap()
            .iter()
            .filter(|t| t.to_string() == tenant)
            .count()
    }
}

#[async_trait]
impl Launcher for FakeLauncher {
    fn kind(&self) -> &'static str {
        "fake"
    }

    async fn ensure_spec(&self, _spec: &LaunchSpec) -> Result<(), LaunchError> {
        Ok(())
    }

    async fn list(&self) -> Result<Vec<Instance>, LaunchError> {
        Ok(self.tasks.lock().unwrap().clone())
    }

    async fn start(&self, spec: &LaunchSpec) -> Result<Instance, LaunchError> {
        if let Some(limit) = *self.capacity.lock().unwrap() {
            let live = self
                .tasks
                .lock()
                .unwrap()
                .iter()
                .filter(|i| i.phase.is_live())
                .count();
            if live >= limit {
                return Err(LaunchError::Capacity {
                    launcher: "fake",
                    message: format!("{live} of {limit} vCPU in use"),
                });
            }
        }
        self.attempts.lock().unwrap().push(spec.tenant);
        if self.failing.lock().unwrap().contains(&spec.tenant) {
            return Err(LaunchError::Failed {
                launcher: "fake",
                operation: "RunTask",
                message: "AccessDeniedException: not authorized to perform ecs:RunTask".into(),
            });
        }
        let n = {
            let mut started = self.started.lock().unwrap();
            *started += 1;
            *started
        };
        let instance = Instance {
            id: format!("arn:aws:ecs:us-east-1:123456789012:task/polybot/task-{n}"),
            tenant: spec.tenant,
            spec_hash: spec.spec_hash.clone(),
            phase: Phase::Running,
            started_at: Utc::now(),
        };
        self.tasks.lock().unwrap().push(instance.clone());
        Ok(instance)
    }

    async fn stop(&self, instance: &Instance, reason: &str) -> Result<(), LaunchError> {
        let mut tasks = self.tasks.lock().unwrap();
        if let Some(task) = tasks.iter_mut().find(|i| i.id == instance.id) {
            task.phase = Phase::Exited(Exit {
                code: Some(0),
                reason: reason.to_owned(),
                requested: true,
                at: Utc::now(),
            });
        }
        Ok(())
    }
}

/// A queue in memory, delivering at least once as SQS does.
#[derive(Debug, Default)]
struct FakeQueue {
    messages: Mutex<VecDeque<TaskEvent>>,
    deleted: Mutex<Vec<String>>,
    sent: Mutex<u32>,
}

impl FakeQueue {
    fn send(&self, content: EventContent) -> String {
        let n = {
            let mut sent = self.sent.lock().unwrap();
            *sent += 1;
            *sent
        };
        let receipt = format!("receipt-{n}");
        self.messages.lock().unwrap().push_back(TaskEvent {
            receipt: receipt.clone(),
            message_id: format!("message-{n}"),
            content,
        });
        receipt
    }

    fn deleted(&self) -> Vec<String> {
        self.deleted.lock().unwrap().clone()
    }
}

#[async_trait]
impl TaskEvents for FakeQueue {
    async fn receive(&self) -> Result<Vec<TaskEvent>, LaunchError> {
        let messages: Vec<TaskEvent> = self.messages.lock().unwrap().drain(..).collect();
        if messages.is_empty() {
            // A long poll that found nothing: SQS waits before answering, so
            // a consumer never spins on an empty queue.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(messages)
    }

    async fn delete(&self, receipts: &[String]) -> Result<(), LaunchError> {
        self.deleted.lock().unwrap().extend_from_slice(receipts);
        Ok(())
    }
}

fn reconciler(h: &Harness, launcher: &Arc<FakeLauncher>, queue: &Arc<FakeQueue>) -> Reconciler {
    let mut reconciler = Reconciler::new(
        h.state.db.clone(),
        launcher.clone(),
        h.state.secrets.clone(),
        Arc::new(Notify::new()),
    )
    .with_events(queue.clone());
    reconciler.backoff.base = Duration::from_millis(1);
    reconciler
}

async fn status(h: &Harness, tenant: &str) -> Value {
    let reply = h
        .call(
            Method::GET,
            &format!("/tenants/{tenant}/status"),
            Some(OPERATOR),
            None,
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.body
}

async fn timeline_kinds(h: &Harness, tenant: &str, kind: &str) -> i64 {
    h.count(&format!(
        "SELECT count(*) FROM tenant_runtime_events WHERE tenant_id = '{tenant}' AND kind = '{kind}'"
    ))
    .await
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn an_exit_seen_by_an_event_the_listing_and_a_second_reconciler_is_counted_once(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let h = Harness::new(pool_opts, options).await;
    let launcher = Arc::new(FakeLauncher::default());
    let queue = Arc::new(FakeQueue::default());
    let first = reconciler(&h, &launcher, &queue);
    let a = h.onboard(json!({"name": "a"})).await;
    assert_eq!(first.pass().await.unwrap().started, 1);
    let task = launcher.live(&a)[0].id.clone();

    // The worker crashes; ECS sends the event and still lists the task.
    let stopped = launcher.crash(&task);
    let receipt = queue.send(EventContent::Instance(stopped.clone()));
    assert_eq!(first.receive_events().await.unwrap(), 1);
    assert_eq!(
        queue.deleted(),
        [] as [String; 0],
        "not before the exit is recorded"
    );
    let report = first.pass().await.unwrap();
    assert_eq!(report.exits, 1, "{report:?}");
    assert_eq!(queue.deleted(), std::slice::from_ref(&receipt));
    let after = status(&h, &a).await;
    assert_eq!(after["worker"]["restarts"], 1, "{after}");
    assert_eq!(
        after["worker"]["last_exit"],
        format!(
            "worker {task}: EssentialContainerExited: container worker exited with exit code 1"
        )
    );

    // The backstop lists it again; the queue delivers the event a second
    // time; a second reconciler (a new leader, with a fresh memory) sees both.
    let second = reconciler(&h, &launcher, &queue);
    let again = queue.send(EventContent::Instance(stopped));
    assert_eq!(second.receive_events().await.unwrap(), 1);
    for reconciler in [&second, &first, &second] {
        let report = reconciler.pass().await.unwrap();
        assert_eq!(report.exits, 0, "{report:?}");
    }
    assert_eq!(queue.deleted(), [receipt, again]);
    assert_eq!(status(&h, &a).await["worker"]["restarts"], 1);
    assert_eq!(
        h.count(&format!(
            "SELECT count(*) FROM worker_exits WHERE tenant_id = '{a}'"
        ))
        .await,
        1
    );
    assert_eq!(timeline_kinds(&h, &a, "crashed").await, 1);
    // And the worker was replaced, once.
    let live = launcher.live(&a);
    assert_eq!(live.len(), 1);
    assert_ne!(live[0].id, task);
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn an_exit_the_listing_no_longer_has_is_learned_from_its_event(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let h = Harness::new(pool_opts, options).await;
    let launcher = Arc::new(FakeLauncher::default());
    let queue = Arc::new(FakeQueue::default());
    let reconciler = reconciler(&h, &launcher, &queue);
    let a = h.onboard(json!({"name": "a"})).await;
    reconciler.pass().await.unwrap();
    let task = launcher.live(&a)[0].id.clone();
    // ECS forgot the task before the backstop listed it.
    let stopped = launcher.crash(&task);
    launcher.tasks.lock().unwrap().retain(|i| i.id != task);
    queue.send(EventContent::Instance(stopped));
    // A malformed message beside it changes nothing and is not deleted.
    queue.send(EventContent::Malformed(
        "not an ECS task state-change event".into(),
    ));
    assert_eq!(reconciler.receive_events().await.unwrap(), 1);
    let report = reconciler.pass().await.unwrap();
    assert_eq!((report.exits, report.errors), (1, 0), "{report:?}");
    assert_eq!(queue.deleted(), ["receipt-1"]);
    assert_eq!(status(&h, &a).await["worker"]["restarts"], 1);
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn an_exit_listed_before_its_code_is_known_is_completed_by_its_event_and_counted_once(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let h = Harness::new(pool_opts, options).await;
    let launcher = Arc::new(FakeLauncher::default());
    let queue = Arc::new(FakeQueue::default());
    let reconciler = reconciler(&h, &launcher, &queue);
    let a = h.onboard(json!({"name": "a"})).await;
    reconciler.pass().await.unwrap();
    let task = launcher.live(&a)[0].id.clone();

    // The listing sees the task stopped before its container's exit code is
    // known (as the emulator lists it, and ECS part-way through a stop).
    let stopped = launcher.crash(&task);
    {
        let mut tasks = launcher.tasks.lock().unwrap();
        let listed = tasks.iter_mut().find(|i| i.id == task).unwrap();
        listed.phase = Phase::Exited(Exit {
            code: None,
            reason: "Essential container in task exited".into(),
            requested: false,
            at: Utc::now(),
        });
    }
    let report = reconciler.pass().await.unwrap();
    assert_eq!(report.exits, 1, "{report:?}");
    let first = status(&h, &a).await;
    assert_eq!(first["worker"]["restarts"], 1, "{first}");
    assert_eq!(
        first["worker"]["last_exit"],
        format!("worker {task}: Essential container in task exited")
    );

    // Then ECS's event, with the code: the exit is completed, not counted
    // again, and its message goes.
    let receipt = queue.send(EventContent::Instance(stopped));
    assert_eq!(reconciler.receive_events().await.unwrap(), 1);
    reconciler.pass().await.unwrap();
    assert_eq!(queue.deleted(), [receipt]);
    let after = status(&h, &a).await;
    assert_eq!(after["worker"]["restarts"], 1, "{after}");
    assert_eq!(
        after["worker"]["last_exit"],
        format!(
            "worker {task}: EssentialContainerExited: container worker exited with exit code 1"
        )
    );
    assert_eq!(
        h.count(&format!(
            "SELECT count(*) FROM worker_exits WHERE tenant_id = '{a}' AND exit_code = 1"
        ))
        .await,
        1
    );
    assert_eq!(timeline_kinds(&h, &a, "crashed").await, 1);

    // A later sighting without the code changes nothing back.
    reconciler.pass().await.unwrap();
    assert_eq!(
        status(&h, &a).await["worker"]["last_exit"],
        after["worker"]["last_exit"]
    );
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_failing_launch_backs_off_for_its_tenant_and_the_others_start(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let h = Harness::new(pool_opts, options).await;
    let launcher = Arc::new(FakeLauncher::default());
    let queue = Arc::new(FakeQueue::default());
    let mut reconciler = reconciler(&h, &launcher, &queue);
    reconciler.backoff.launch_base = Duration::from_secs(3600);
    reconciler.backoff.launch_cap = Duration::from_secs(7200);
    let a = h.onboard(json!({"name": "a"})).await;
    let b = h.onboard(json!({"name": "b"})).await;
    launcher
        .failing
        .lock()
        .unwrap()
        .insert(a.parse::<TenantId>().unwrap());

    let report = reconciler.pass().await.unwrap();
    assert_eq!((report.started, report.errors), (1, 1), "{report:?}");
    let failed = status(&h, &a).await;
    assert_eq!(failed["worker"]["state"], "launch_backoff", "{failed}");
    assert_eq!(failed["worker"]["launch_failures"], 1);
    let error = failed["last_error"].as_str().unwrap();
    assert!(
        error.starts_with(
            "fake launcher: RunTask failed: AccessDeniedException: not authorized \
             to perform ecs:RunTask (failed 1 time in a row; next try in "
        ),
        "{error}"
    );
    let until: chrono::DateTime<Utc> =
        serde_json::from_value(failed["worker"]["backoff_until"].clone()).unwrap();
    assert!(
        until > Utc::now() + chrono::Duration::minutes(29),
        "{until}"
    );
    assert_eq!(status(&h, &b).await["worker"]["state"], "starting");

    // Passes during the back-off do not call RunTask for A.
    for _ in 0..3 {
        reconciler.pass().await.unwrap();
    }
    assert_eq!(launcher.attempts(&a), 1);
    assert_eq!(launcher.attempts(&b), 1);

    // Once it ends, A is tried again, fails again, and waits longer.
    sqlx::query("UPDATE tenant_runtime SET backoff_until = now() - interval '1 second' WHERE tenant_id = $1::uuid")
        .bind(&a)
        .execute(&h.pool)
        .await
        .unwrap();
    reconciler.pass().await.unwrap();
    assert_eq!(launcher.attempts(&a), 2);
    let twice = status(&h, &a).await;
    assert_eq!(twice["worker"]["launch_failures"], 2);
    let until2: chrono::DateTime<Utc> =
        serde_json::from_value(twice["worker"]["backoff_until"].clone()).unwrap();
    assert!(
        until2 > Utc::now() + chrono::Duration::minutes(59),
        "{until2}"
    );

    // Fixed, it starts, and the count is forgotten.
    launcher.failing.lock().unwrap().clear();
    sqlx::query("UPDATE tenant_runtime SET backoff_until = now() - interval '1 second' WHERE tenant_id = $1::uuid")
        .bind(&a)
        .execute(&h.pool)
        .await
        .unwrap();
    assert_eq!(reconciler.pass().await.unwrap().started, 1);
    let started = status(&h, &a).await;
    assert_eq!(started["worker"]["state"], "starting");
    assert_eq!(started["worker"]["launch_failures"], 0);
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_tenant_past_the_capacity_waits_in_capacity_and_starts_when_a_task_stops(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let h = Harness::new(pool_opts, options).await;
    let launcher = Arc::new(FakeLauncher::default());
    *launcher.capacity.lock().unwrap() = Some(1);
    let queue = Arc::new(FakeQueue::default());
    let reconciler = reconciler(&h, &launcher, &queue);
    let a = h.onboard(json!({"name": "a"})).await;
    reconciler.pass().await.unwrap();
    let b = h.onboard(json!({"name": "b"})).await;

    for _ in 0..3 {
        let report = reconciler.pass().await.unwrap();
        assert_eq!((report.waiting, report.errors), (1, 0), "{report:?}");
    }
    let waiting = status(&h, &b).await;
    assert_eq!(waiting["worker"]["state"], "capacity", "{waiting}");
    assert_eq!(waiting["worker"]["launch_failures"], 0);
    assert_eq!(
        waiting["last_error"], "fake launcher: waiting for capacity: 1 of 1 vCPU in use",
        "{waiting}"
    );
    assert_eq!(timeline_kinds(&h, &b, "capacity").await, 1, "said once");
    let fleet = h
        .call(Method::GET, "/fleet?worker=capacity", Some(OPERATOR), None)
        .await;
    assert_eq!(fleet.status, 200, "{}", fleet.text);
    assert!(
        fleet.text.contains(&b) && !fleet.text.contains(&a),
        "{}",
        fleet.text
    );

    // A is paused: its task stops, and B starts on the next passes.
    let paused = h
        .call(
            Method::POST,
            &format!("/tenants/{a}/pause"),
            Some(OPERATOR),
            None,
        )
        .await;
    assert_eq!(paused.body["state"], "paused", "{}", paused.text);
    reconciler.pass().await.unwrap();
    reconciler.pass().await.unwrap();
    assert_eq!(launcher.live(&b).len(), 1);
    assert_eq!(status(&h, &b).await["worker"]["state"], "starting");
}

/// Waits (up to 20 s) until `done` holds, polling.
async fn eventually(what: &str, mut done: impl AsyncFnMut() -> bool) {
    for _ in 0..200 {
        if done().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what} never happened");
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_tenant_onboarded_through_a_standby_replica_wakes_the_leader_at_once(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let h = Harness::new(pool_opts, options).await;
    let launcher = Arc::new(FakeLauncher::default());
    let queue = Arc::new(FakeQueue::default());
    // The leader, on another replica: with its event source and a settled
    // fleet it would not pass again for an hour on its own.
    let mut leader = reconciler(&h, &launcher, &queue);
    leader.backstop_interval = Duration::from_secs(3600);
    let stop = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(leader.run(stop.clone()));
    eventually(
        "the leader listening for other replicas' changes",
        async || {
            h.count(
                "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() \
             AND query LIKE 'LISTEN %polybot_reconcile%'",
            )
            .await
                == 1
        },
    )
    .await;

    // The API replica `h` (not the leader) onboards a tenant.
    let a = h.onboard(json!({"name": "a"})).await;

    eventually("the leader starting the tenant's worker", async || {
        launcher.live(&a).len() == 1
    })
    .await;
    stop.cancel();
    running.await.unwrap();
    assert_eq!(launcher.live(&a).len(), 1);
}
