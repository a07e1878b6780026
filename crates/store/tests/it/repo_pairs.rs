//! The paired-position ledger: a worker opens a pair in a transaction
//! fenced by its lease and settles it; its successor finds the pairs left
//! open; the API pages them. Each runs as the tenant's own login role, with
//! a second tenant that sees and changes none of it.

use std::time::Duration;

use polybot_core::TenantId;
use polybot_store::repo::lease;
use polybot_store::repo::pairs::{self, Settled};
use polybot_store::testing::{create_tenant, tenant_login};
use polybot_store::{Db, Scope};
use rust_decimal_macros::dec;
use serde_json::json;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use uuid::Uuid;

struct Fixture {
    control: Db,
    a: TenantId,
    b: TenantId,
    a_worker: Db,
    b_worker: Db,
}

async fn two_tenants(pool_opts: PgPoolOptions, base: PgConnectOptions) -> Fixture {
    let pool = pool_opts.connect_with(base.clone()).await.unwrap();
    let control = Db::from_pool(pool, Scope::Control);
    let a = create_tenant(&control, "tenant-a").await.unwrap();
    let b = create_tenant(&control, "tenant-b").await.unwrap();
    let a_login = tenant_login(&control, &base, a).await.unwrap();
    let b_login = tenant_login(&control, &base, b).await.unwrap();
    Fixture {
        a_worker: Db::connect(a_login, Scope::Worker(a), 2).await.unwrap(),
        b_worker: Db::connect(b_login, Scope::Worker(b), 2).await.unwrap(),
        control,
        a,
        b,
    }
}

async fn take(db: &Db, tenant: TenantId) -> i64 {
    let mut tx = db.tenant(tenant).await.unwrap();
    let epoch = lease::take(&mut tx, "pid 1 on test", Duration::from_secs(30))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    epoch
}

async fn open_pair(db: &Db, tenant: TenantId, epoch: i64, id: Uuid, opportunity: i64) {
    let mut tx = db.fenced(tenant, epoch).await.unwrap();
    let legs =
        json!([{"venue": "polymarket", "step": "entry"}, {"venue": "kalshi", "step": "entry"}]);
    pairs::open(&mut tx, id, "cross_venue_arb", opportunity, &legs)
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_pair_is_opened_settled_and_listed_for_its_tenant_only(
    pool_opts: PgPoolOptions,
    base: PgConnectOptions,
) {
    let f = two_tenants(pool_opts, base).await;
    let epoch = take(&f.a_worker, f.a).await;
    let (first, second) = (Uuid::new_v4(), Uuid::new_v4());
    open_pair(&f.a_worker, f.a, epoch, first, 1).await;
    open_pair(&f.a_worker, f.a, epoch, second, 2).await;
    // Opening the same pair again changes nothing.
    open_pair(&f.a_worker, f.a, epoch, first, 1).await;

    let mut tx = f.a_worker.tenant(f.a).await.unwrap();
    let open = pairs::open_pairs(&mut tx).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        open.iter().map(|p| p.id).collect::<Vec<_>>(),
        vec![first, second]
    );
    assert_eq!(open[0].epoch, epoch);
    assert_eq!(open[0].status, "open");
    assert_eq!(open[0].legs[1]["venue"], "kalshi");

    let legs =
        json!([{"venue": "polymarket", "filled": "100"}, {"venue": "kalshi", "filled": "100"}]);
    let settled = Settled {
        status: "locked",
        matched: dec!(100),
        locked_edge: dec!(6.57),
        realised_loss: dec!(0),
        legs: &legs,
        resolution: "100 complete sets pay 100",
        note: None,
    };
    let mut tx = f.a_worker.fenced(f.a, epoch).await.unwrap();
    assert!(pairs::settle(&mut tx, first, &settled).await.unwrap());
    tx.commit().await.unwrap();

    let mut tx = f.a_worker.tenant(f.a).await.unwrap();
    let open = pairs::open_pairs(&mut tx).await.unwrap();
    let locked = pairs::page(&mut tx, Some("locked"), None, 10)
        .await
        .unwrap();
    let all = pairs::page(&mut tx, None, None, 10).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(open.iter().map(|p| p.id).collect::<Vec<_>>(), vec![second]);
    assert_eq!(locked.len(), 1);
    assert_eq!(locked[0].id, first);
    assert_eq!(locked[0].matched, dec!(100));
    assert_eq!(locked[0].locked_edge, dec!(6.57));
    assert_eq!(locked[0].resolution, "100 complete sets pay 100");
    assert_eq!(locked[0].legs, legs);
    assert_eq!(all.len(), 2);
    let after = pairs::page(
        &mut f.a_worker.tenant(f.a).await.unwrap(),
        None,
        Some((all[0].opened_at, all[0].id)),
        10,
    )
    .await
    .unwrap();
    assert_eq!(
        after.iter().map(|p| p.id).collect::<Vec<_>>(),
        vec![all[1].id]
    );

    // B's worker and the control plane scoped to B see none of A's pairs,
    // and B cannot settle one of them.
    take(&f.b_worker, f.b).await;
    let mut tx = f.b_worker.fenced(f.b, 1).await.unwrap();
    assert!(pairs::open_pairs(&mut tx).await.unwrap().is_empty());
    assert!(
        pairs::page(&mut tx, None, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(!pairs::settle(&mut tx, second, &settled).await.unwrap());
    tx.commit().await.unwrap();
    let mut tx = f.control.tenant(f.b).await.unwrap();
    assert!(
        pairs::page(&mut tx, None, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    tx.commit().await.unwrap();
    let mut tx = f.control.tenant(f.a).await.unwrap();
    let seen = pairs::page(&mut tx, Some("open"), None, 10).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        seen.iter().map(|p| p.id).collect::<Vec<_>>(),
        vec![second],
        "B's settle changed nothing"
    );
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_pair_is_opened_only_in_a_transaction_fenced_by_the_lease(
    pool_opts: PgPoolOptions,
    base: PgConnectOptions,
) {
    let f = two_tenants(pool_opts, base).await;
    take(&f.a_worker, f.a).await;
    let mut tx = f.a_worker.tenant(f.a).await.unwrap();
    let refused = pairs::open(&mut tx, Uuid::new_v4(), "cross_venue_arb", 1, &json!([])).await;
    assert_eq!(
        refused.unwrap_err().sqlstate().as_deref(),
        Some("23502"),
        "no epoch: the not-null constraint refuses the row"
    );
}
