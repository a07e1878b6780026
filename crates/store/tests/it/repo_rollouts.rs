//! Rollouts' rows (`repo::rollouts`) on a real database: one unfinished
//! rollout at a time, a tenant's release written in its own transaction and
//! read by the reconciler's fleet read, progress over the tenants a rollout
//! covers, and the fleet's release folded from completed rollouts.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use polybot_core::TenantId;
use polybot_core::lifecycle::TenantState;
use polybot_store::repo::rollouts::{self, Progress, Release};
use polybot_store::repo::{configs, fleet, tenants};
use polybot_store::testing::create_tenant;
use polybot_store::{Db, Scope};
use serde_json::json;
use sqlx::PgPool;

fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
}

async fn configured(db: &Db, name: &str) -> TenantId {
    let tenant = create_tenant(db, name).await.unwrap();
    let mut tx = db.tenant(tenant).await.unwrap();
    configs::insert(&mut tx, &json!({}), &json!({}))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    tenant
}

fn change(image: Option<&str>, settings: &[(&str, &str)]) -> Release {
    Release {
        image: image.map(str::to_owned),
        settings: settings
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<BTreeMap<_, _>>(),
    }
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn one_rollout_is_unfinished_at_a_time_and_releases_fold_in_order(pool: PgPool) {
    let db = Db::from_pool(pool, Scope::Control);
    let a = configured(&db, "a").await;
    let b = configured(&db, "b").await;
    let gone = configured(&db, "gone").await;
    let mut tx = db.tenant(gone).await.unwrap();
    tenants::set_state(&mut tx, TenantState::Offboarding, false)
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let mut op = db.operator().await.unwrap();
    let first = rollouts::start(
        &mut op,
        &change(Some("img:v2"), &[("POLYBOT_LOG", "debug")]),
        30,
    )
    .await
    .unwrap();
    assert_eq!(first.state, "running");
    assert_eq!(first.change.settings["POLYBOT_LOG"], "debug");
    op.commit().await.unwrap();

    let mut op = db.operator().await.unwrap();
    let err = rollouts::start(&mut op, &change(Some("img:v3"), &[]), 30)
        .await
        .expect_err("a second unfinished rollout");
    assert!(rollouts::is_one_unfinished(&err), "{err}");
    drop(op);

    // A's release, written in A's transaction, is what the reconciler reads.
    let mut tx = db.tenant(a).await.unwrap();
    rollouts::begin(
        &mut tx,
        first.id,
        &change(Some("img:v2"), &[("POLYBOT_LOG", "debug")]),
        at(0),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let mut op = db.operator().await.unwrap();
    assert_eq!(
        rollouts::progress(&mut op, first.id).await.unwrap(),
        Progress {
            total: 2,
            done: 0,
            rolling: 1
        },
        "the offboarding tenant is not covered"
    );
    assert_eq!(
        rollouts::last_began(&mut op, first.id).await.unwrap(),
        Some(at(0))
    );
    let read = fleet::desired(&mut op).await.unwrap();
    let of_a = read.iter().find(|r| r.id == a.as_uuid()).unwrap();
    let release = of_a.release.clone().expect("A has its own release");
    assert_eq!(release.rollout_id, first.id);
    assert!(release.rolling);
    assert_eq!(release.release.image.as_deref(), Some("img:v2"));
    let of_b = read.iter().find(|r| r.id == b.as_uuid()).unwrap();
    assert_eq!(of_b.release, None);
    op.commit().await.unwrap();

    // Finishing is once, and only for the rollout that gave the release.
    let mut tx = db.tenant(a).await.unwrap();
    assert!(
        !rollouts::finish_tenant(&mut tx, first.id + 1, at(1))
            .await
            .unwrap()
    );
    assert!(
        rollouts::finish_tenant(&mut tx, first.id, at(1))
            .await
            .unwrap()
    );
    assert!(
        !rollouts::finish_tenant(&mut tx, first.id, at(2))
            .await
            .unwrap()
    );
    tx.commit().await.unwrap();
    let mut op = db.operator().await.unwrap();
    let reached = rollouts::reached(&mut op, first.id, 10).await.unwrap();
    assert_eq!(reached.len(), 1);
    assert_eq!(
        (reached[0].name.as_str(), reached[0].state.as_str()),
        ("a", "done")
    );
    assert_eq!(reached[0].done_at, Some(at(1)));

    // Unfinished rollouts change nothing for tenants without a release;
    // done ones do, in order.
    assert_eq!(
        rollouts::fleet_release(&mut op).await.unwrap(),
        Release::default()
    );
    let done = rollouts::set_state(&mut op, first.id, "done", Some("all done"), None)
        .await
        .unwrap();
    assert!(done.finished_at.is_some());
    let second = rollouts::start(&mut op, &change(None, &[("POLYBOT_LOG", "info")]), 5)
        .await
        .unwrap();
    let locked = rollouts::lock_unfinished(&mut op).await.unwrap().unwrap();
    assert_eq!(locked.id, second.id);
    rollouts::set_state(&mut op, second.id, "done", None, None)
        .await
        .unwrap();
    assert_eq!(
        rollouts::fleet_release(&mut op).await.unwrap(),
        change(Some("img:v2"), &[("POLYBOT_LOG", "info")])
    );
    assert_eq!(rollouts::lock_unfinished(&mut op).await.unwrap(), None);
    assert_eq!(
        rollouts::latest(&mut op).await.unwrap().unwrap().id,
        second.id
    );
    op.commit().await.unwrap();
}
