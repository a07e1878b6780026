//! The reconciler's writes (`repo::runtime`) and the leader's housekeeping
//! (`repo::housekeeping`) on a real database, with two tenants where one's
//! writes must not reach the other.

use chrono::{Duration, Utc};
use polybot_core::TenantId;
use polybot_store::repo::housekeeping::{self, Pruned};
use polybot_store::repo::runtime::{self, Observation};
use polybot_store::testing::create_tenant;
use polybot_store::{Db, Scope};
use sqlx::PgPool;

fn observation(actual: &'static str) -> Observation {
    Observation {
        desired: "running",
        actual,
        instance_id: Some("i-1".into()),
        spec_hash: "abc".into(),
        restarts: 0,
        launch_failures: 0,
        backoff_until: None,
        last_exit: None,
        last_error: None,
        last_action: None,
    }
}

async fn two_tenants(pool: PgPool) -> (Db, TenantId, TenantId) {
    let db = Db::from_pool(pool, Scope::Control);
    let a = create_tenant(&db, "a").await.unwrap();
    let b = create_tenant(&db, "b").await.unwrap();
    (db, a, b)
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn recording_creates_then_updates_the_runtime_row_keeping_what_the_pass_did_not_say(
    pool: PgPool,
) {
    let (db, a, b) = two_tenants(pool).await;
    let mut tx = db.tenant(a).await.unwrap();
    assert_eq!(runtime::get(&mut tx).await.unwrap(), None);
    runtime::record(
        &mut tx,
        &Observation {
            restarts: 1,
            launch_failures: 2,
            backoff_until: Some(Utc::now() + Duration::seconds(10)),
            last_exit: Some("worker i-0: exit 1".into()),
            last_error: Some("worker i-0 crashed: exit 1".into()),
            last_action: Some("started worker i-1".into()),
            ..observation("starting")
        },
    )
    .await
    .unwrap();
    let first = runtime::get(&mut tx).await.unwrap().expect("a row");
    assert_eq!(
        (
            first.desired.as_str(),
            first.actual.as_str(),
            first.restarts
        ),
        ("running", "starting", 1)
    );
    assert_eq!(first.launch_failures, 2);
    assert_eq!(first.instance_id.as_deref(), Some("i-1"));
    assert_eq!(first.spec_hash.as_deref(), Some("abc"));
    assert!(first.backoff_until.is_some());
    assert_eq!(first.last_action.as_deref(), Some("started worker i-1"));
    assert!(first.last_action_at.is_some());

    // A pass that says nothing of exits, errors or actions keeps them.
    runtime::record(&mut tx, &observation("starting"))
        .await
        .unwrap();
    let second = runtime::get(&mut tx).await.unwrap().expect("a row");
    assert_eq!(second.restarts, 0);
    assert_eq!(second.launch_failures, 0);
    assert_eq!(second.backoff_until, None);
    assert_eq!(second.last_exit.as_deref(), Some("worker i-0: exit 1"));
    assert_eq!(
        second.last_error.as_deref(),
        Some("worker i-0 crashed: exit 1")
    );
    assert_eq!(second.last_action.as_deref(), Some("started worker i-1"));
    assert_eq!(second.last_action_at, first.last_action_at);

    // A running worker clears the error, not the exit.
    runtime::record(&mut tx, &observation("running"))
        .await
        .unwrap();
    let third = runtime::get(&mut tx).await.unwrap().expect("a row");
    assert_eq!(third.actual, "running");
    assert_eq!(third.last_error, None);
    assert_eq!(third.last_exit.as_deref(), Some("worker i-0: exit 1"));
    tx.commit().await.unwrap();

    let mut tx = db.tenant(b).await.unwrap();
    assert_eq!(
        runtime::get(&mut tx).await.unwrap(),
        None,
        "b has no row of a's"
    );
    tx.commit().await.unwrap();
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn timeline_events_read_back_newest_first_and_only_for_their_tenant(pool: PgPool) {
    let (db, a, b) = two_tenants(pool).await;
    let mut tx = db.tenant(a).await.unwrap();
    runtime::add_event(&mut tx, "started", "worker i-1 started (spec abc)")
        .await
        .unwrap();
    runtime::add_event(&mut tx, "crashed", "worker i-1: exit 1")
        .await
        .unwrap();
    runtime::add_event(&mut tx, "steady", "worker steady; restart count reset")
        .await
        .unwrap();
    let events = runtime::recent_events(&mut tx, 2).await.unwrap();
    tx.commit().await.unwrap();
    let kinds: Vec<(&str, &str)> = events
        .iter()
        .map(|e| (e.kind.as_str(), e.detail.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("steady", "worker steady; restart count reset"),
            ("crashed", "worker i-1: exit 1")
        ]
    );

    let mut tx = db.tenant(b).await.unwrap();
    assert!(
        runtime::recent_events(&mut tx, 50)
            .await
            .unwrap()
            .is_empty()
    );
    tx.commit().await.unwrap();
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn pruning_deletes_old_rows_of_every_tenant_and_keeps_each_newest_heartbeat(pool: PgPool) {
    let (db, a, b) = two_tenants(pool.clone()).await;
    sqlx::raw_sql(&format!(
        "INSERT INTO worker_heartbeats (tenant_id, epoch, at) VALUES
           ('{a}', 1, now() - interval '3 days'), ('{a}', 2, now()),
           ('{b}', 1, now() - interval '3 days'), ('{b}', 1, now() - interval '2 days');
         INSERT INTO idempotency_keys (scope, key, request_hash, created_at) VALUES
           ('operator', 'old', '\\x00', now() - interval '2 days');
         INSERT INTO worker_availability (tenant_id, minute, desired_ms, up_ms) VALUES
           ('{a}', date_trunc('minute', now() - interval '40 days'), 60000, 60000),
           ('{b}', date_trunc('minute', now() - interval '1 day'), 60000, 60000);
         INSERT INTO tenant_runtime_events (tenant_id, at, kind, detail) VALUES
           ('{b}', now() - interval '100 days', 'started', 'long ago'),
           ('{b}', now(), 'started', 'now');",
        a = a.as_uuid(),
        b = b.as_uuid(),
    ))
    .execute(&pool)
    .await
    .unwrap();
    let mut op = db.operator().await.unwrap();
    let pruned = housekeeping::prune(&mut op, 1000).await.unwrap();
    op.commit().await.unwrap();
    assert_eq!(
        pruned,
        Pruned {
            heartbeats: 2,
            idempotency_keys: 1,
            availability_minutes: 1,
            timeline_events: 1,
            worker_exits: 0,
        }
    );
    let left: Vec<(String, i64)> = sqlx::query_as(
        "SELECT t.name, count(h.id) FROM tenants t LEFT JOIN worker_heartbeats h ON h.tenant_id = t.id \
         GROUP BY t.name ORDER BY t.name",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(left, [("a".to_owned(), 1), ("b".to_owned(), 1)]);
    let mut op = db.operator().await.unwrap();
    assert_eq!(
        housekeeping::prune(&mut op, 1000).await.unwrap(),
        Pruned::default()
    );
    op.commit().await.unwrap();
}
