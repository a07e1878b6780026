//! The leader prunes old heartbeats (each tenant keeps its newest) and old
//! idempotency records.

use crate::common;

use std::sync::Arc;

use common::Harness;
use polybot_control_plane::reconcile::Reconciler;
use polybot_launcher::local::LocalLauncher;
use serde_json::json;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn pruning_keeps_each_tenants_newest_heartbeat_and_recent_records(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let h = Harness::new(pool_opts, options).await;
    let a = h.onboard(json!({"name": "a"})).await;
    let b = h.onboard(json!({"name": "b"})).await;
    // A: three old heartbeats and a fresh one; B: three old ones only.
    sqlx::raw_sql(&format!(
        "INSERT INTO worker_heartbeats (tenant_id, epoch, at) VALUES
           ('{a}', 1, now() - interval '3 days'), ('{a}', 1, now() - interval '2 days'),
           ('{a}', 1, now() - interval '25 hours'), ('{a}', 2, now()),
           ('{b}', 1, now() - interval '3 days'), ('{b}', 1, now() - interval '2 days'),
           ('{b}', 1, now() - interval '25 hours');
         INSERT INTO idempotency_keys (scope, key, request_hash, created_at) VALUES
           ('operator', 'old', '\\x00', now() - interval '2 days'),
           ('operator', 'new', '\\x00', now());
         INSERT INTO worker_availability (tenant_id, minute, desired_ms, up_ms) VALUES
           ('{a}', date_trunc('minute', now() - interval '40 days'), 60000, 60000),
           ('{a}', date_trunc('minute', now() - interval '29 days'), 60000, 60000);
         INSERT INTO tenant_runtime_events (tenant_id, at, kind, detail) VALUES
           ('{b}', now() - interval '100 days', 'started', 'long ago');"
    ))
    .execute(&h.pool)
    .await
    .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let launcher =
        Arc::new(LocalLauncher::new("/bin/false".into(), dir.path().to_owned()).unwrap());
    let reconciler = Reconciler::new(
        h.state.db.clone(),
        launcher,
        h.state.secrets.clone(),
        h.state.reconcile.clone(),
    );
    let pruned = reconciler.prune().await.unwrap();
    assert_eq!(
        (
            pruned.heartbeats,
            pruned.idempotency_keys,
            pruned.availability_minutes,
            pruned.timeline_events
        ),
        (5, 1, 1, 1)
    );

    let left: Vec<(String, i64)> = sqlx::query_as(
        "SELECT tenant_id::text, epoch FROM worker_heartbeats ORDER BY tenant_id = $1::uuid DESC",
    )
    .bind(&a)
    .fetch_all(&h.pool)
    .await
    .unwrap();
    assert_eq!(left, vec![(a.clone(), 2), (b.clone(), 1)]);
    let keys: Vec<String> = sqlx::query_scalar("SELECT key FROM idempotency_keys")
        .fetch_all(&h.pool)
        .await
        .unwrap();
    assert_eq!(keys, vec!["new".to_owned()]);
    let minutes: i64 = sqlx::query_scalar("SELECT count(*) FROM worker_availability")
        .fetch_one(&h.pool)
        .await
        .unwrap();
    assert_eq!(minutes, 1, "the minute inside the SLO window stays");
    // Nothing more to do the second time.
    assert_eq!(reconciler.prune().await.unwrap(), Default::default());
}
