//! `repo::exits`: an exit is recorded once per instance, whoever sees it.

use chrono::{Duration, Utc};
use polybot_core::TenantId;
use polybot_store::repo::exits::{self, NewExit, Recorded};
use polybot_store::testing::create_tenant;
use polybot_store::{Db, Scope};
use sqlx::PgPool;

const TASK: &str = "arn:aws:ecs:us-east-1:123456789012:task/polybot/0123456789abcdef";

fn crash(instance_id: &str) -> NewExit<'_> {
    NewExit {
        instance_id,
        exit_code: Some(1),
        reason: "EssentialContainerExited: container worker exited with exit code 1",
        requested: false,
        crashed: true,
        exited_at: Utc::now(),
    }
}

async fn two_tenants(pool: PgPool) -> (Db, TenantId, TenantId) {
    let db = Db::from_pool(pool, Scope::Control);
    let a = create_tenant(&db, "a").await.unwrap();
    let b = create_tenant(&db, "b").await.unwrap();
    (db, a, b)
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn an_exit_is_new_the_first_time_only(pool: PgPool) {
    let (db, a, _) = two_tenants(pool).await;
    let mut tx = db.tenant(a).await.unwrap();
    assert_eq!(
        exits::record(&mut tx, &crash(TASK)).await.unwrap(),
        Recorded::New
    );
    tx.commit().await.unwrap();

    // Another reconciler (a new leader) seeing the same stopped task.
    let mut tx = db.tenant(a).await.unwrap();
    let again = NewExit {
        reason: "seen again by the backstop",
        ..crash(TASK)
    };
    assert_eq!(
        exits::record(&mut tx, &again).await.unwrap(),
        Recorded::Known
    );
    let recent = exits::recent(&mut tx, 10).await.unwrap();
    assert_eq!(recent.len(), 1);
    assert_eq!(recent[0].instance_id, TASK);
    assert_eq!(recent[0].exit_code, Some(1));
    assert_eq!(
        recent[0].reason,
        "EssentialContainerExited: container worker exited with exit code 1"
    );
    assert!(recent[0].crashed && !recent[0].requested);
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn an_exit_recorded_without_its_code_is_completed_once_by_a_sighting_that_has_it(
    pool: PgPool,
) {
    let (db, a, _) = two_tenants(pool).await;
    let mut tx = db.tenant(a).await.unwrap();
    let part_way = NewExit {
        exit_code: None,
        reason: "Essential container in task exited",
        ..crash(TASK)
    };
    assert_eq!(
        exits::record(&mut tx, &part_way).await.unwrap(),
        Recorded::New
    );
    // Another sighting without a code changes nothing.
    assert_eq!(
        exits::record(&mut tx, &part_way).await.unwrap(),
        Recorded::Known
    );
    // The event, with the code, completes the row.
    assert_eq!(
        exits::record(&mut tx, &crash(TASK)).await.unwrap(),
        Recorded::Completed
    );
    // And a code, once known, is never replaced.
    let other = NewExit {
        exit_code: Some(137),
        reason: "killed",
        ..crash(TASK)
    };
    assert_eq!(
        exits::record(&mut tx, &other).await.unwrap(),
        Recorded::Known
    );
    let recent = exits::recent(&mut tx, 10).await.unwrap();
    assert_eq!(recent.len(), 1);
    assert_eq!(recent[0].exit_code, Some(1));
    assert_eq!(
        recent[0].reason,
        "EssentialContainerExited: container worker exited with exit code 1"
    );
    tx.commit().await.unwrap();
    let mut op = db.operator().await.unwrap();
    let recorded = exits::recorded(&mut op, &[TASK.to_owned()]).await.unwrap();
    assert_eq!(recorded.get(TASK), Some(&Some(1)));
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn the_operator_reads_which_exits_are_recorded_across_tenants(pool: PgPool) {
    let (db, a, b) = two_tenants(pool).await;
    for (tenant, id) in [(a, "task-a"), (b, "task-b")] {
        let mut tx = db.tenant(tenant).await.unwrap();
        assert_eq!(
            exits::record(&mut tx, &crash(id)).await.unwrap(),
            Recorded::New
        );
        tx.commit().await.unwrap();
    }
    let mut op = db.operator().await.unwrap();
    let asked: Vec<String> = ["task-a", "task-b", "task-c"].map(String::from).to_vec();
    let mut recorded: Vec<(String, Option<i32>)> = exits::recorded(&mut op, &asked)
        .await
        .unwrap()
        .into_iter()
        .collect();
    recorded.sort();
    assert_eq!(
        recorded,
        [
            ("task-a".to_owned(), Some(1)),
            ("task-b".to_owned(), Some(1))
        ]
    );
    assert!(exits::recorded(&mut op, &[]).await.unwrap().is_empty());
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_tenant_sees_only_its_own_exits(pool: PgPool) {
    let (db, a, b) = two_tenants(pool).await;
    let mut tx = db.tenant(a).await.unwrap();
    assert_eq!(
        exits::record(&mut tx, &crash(TASK)).await.unwrap(),
        Recorded::New
    );
    tx.commit().await.unwrap();
    let mut tx = db.tenant(b).await.unwrap();
    assert_eq!(exits::recent(&mut tx, 10).await.unwrap(), []);
    // The same id under another tenant is another exit.
    assert_eq!(
        exits::record(&mut tx, &crash(TASK)).await.unwrap(),
        Recorded::New
    );
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn exits_older_than_the_retention_are_pruned_in_batches(pool: PgPool) {
    let (db, a, _) = two_tenants(pool.clone()).await;
    let mut tx = db.tenant(a).await.unwrap();
    for id in ["old-1", "old-2", "new"] {
        assert_eq!(
            exits::record(
                &mut tx,
                &NewExit {
                    exited_at: Utc::now() - Duration::days(8),
                    ..crash(id)
                }
            )
            .await
            .unwrap(),
            Recorded::New
        );
    }
    tx.commit().await.unwrap();
    sqlx::query(
        "UPDATE worker_exits SET recorded_at = now() - interval '8 days' WHERE instance_id LIKE 'old-%'",
    )
    .execute(&pool)
    .await
    .unwrap();
    let mut op = db.operator().await.unwrap();
    assert_eq!(exits::prune(&mut op, 7, 1).await.unwrap(), 1);
    assert_eq!(exits::prune(&mut op, 7, 10).await.unwrap(), 1);
    assert_eq!(exits::prune(&mut op, 7, 10).await.unwrap(), 0);
    op.commit().await.unwrap();
    let mut tx = db.tenant(a).await.unwrap();
    let left: Vec<String> = exits::recent(&mut tx, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.instance_id)
        .collect();
    assert_eq!(left, ["new"]);
}
