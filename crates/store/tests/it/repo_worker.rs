//! The repositories a worker writes through: the lease, heartbeats, trades,
//! balances and its configuration. Each runs as the tenant's own login role
//! (what a worker is), with a second tenant that must see none of it.

use std::time::Duration;

use chrono::{DateTime, Utc};
use polybot_core::worker::{StrategyHealth, StrategyStatus, WorkerHealth, WorkerPhase};
use polybot_core::{Mode, TenantId};
use polybot_store::repo::balances::{self, NewBalance};
use polybot_store::repo::trades::{self, NewTrade};
use polybot_store::repo::{configs, heartbeats, lease};
use polybot_store::testing::{create_tenant, tenant_login};
use polybot_store::{Db, DbError, Scope};
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use serde_json::json;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use uuid::Uuid;

const TTL: Duration = Duration::from_secs(30);

/// The control plane's pool, and tenants A and B with each its worker's pool.
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
    let epoch = lease::take(&mut tx, "pid 1 on test", TTL).await.unwrap();
    tx.commit().await.unwrap();
    epoch
}

async fn lease_of(db: &Db, tenant: TenantId) -> Option<lease::Lease> {
    let mut tx = db.tenant(tenant).await.unwrap();
    let lease = lease::get(&mut tx).await.unwrap();
    tx.commit().await.unwrap();
    lease
}

async fn now(db: &Db, tenant: TenantId) -> DateTime<Utc> {
    let mut tx = db.tenant(tenant).await.unwrap();
    let now: DateTime<Utc> = sqlx::query_scalar("SELECT now()")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    now
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn each_take_of_a_lease_moves_its_epoch_and_only_its_tenants(
    pool_opts: PgPoolOptions,
    base: PgConnectOptions,
) {
    let f = two_tenants(pool_opts, base).await;
    assert_eq!(lease_of(&f.a_worker, f.a).await, None);
    assert_eq!(take(&f.a_worker, f.a).await, 1);
    assert_eq!(take(&f.a_worker, f.a).await, 2);
    assert_eq!(take(&f.b_worker, f.b).await, 1, "B's epochs are its own");

    let a = lease_of(&f.a_worker, f.a).await.expect("A's lease");
    assert_eq!(a.epoch, 2);
    assert_eq!(a.holder, "pid 1 on test");
    assert_eq!(a.expires_at - a.renewed_at, chrono::Duration::seconds(30));
    // The control plane scoped to B sees B's lease, not A's.
    assert_eq!(lease_of(&f.control, f.b).await.map(|l| l.epoch), Some(1));
    let mut tx = f.b_worker.tenant(f.b).await.unwrap();
    let seen: i64 = sqlx::query_scalar("SELECT count(*) FROM worker_leases")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(seen, 1, "B's role reads only its own lease");
    tx.commit().await.unwrap();
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn the_fenced_check_reads_the_current_epoch_and_refuses_a_stale_one(
    pool_opts: PgPoolOptions,
    base: PgConnectOptions,
) {
    let f = two_tenants(pool_opts, base).await;
    let mut tx = f.a_worker.tenant(f.a).await.unwrap();
    assert_eq!(lease::epoch_for_share(&mut tx).await.unwrap(), None);
    tx.commit().await.unwrap();
    assert!(matches!(
        f.a_worker.fenced(f.a, 1).await,
        Err(DbError::LeaseMissing { mine: 1, .. })
    ));

    let stale = take(&f.a_worker, f.a).await;
    let current = take(&f.a_worker, f.a).await;
    let mut tx = f.a_worker.tenant(f.a).await.unwrap();
    assert_eq!(
        lease::epoch_for_share(&mut tx).await.unwrap(),
        Some(current)
    );
    tx.commit().await.unwrap();
    let fenced = f.a_worker.fenced(f.a, current).await.unwrap();
    assert_eq!(fenced.epoch(), Some(current));
    fenced.commit().await.unwrap();
    assert!(matches!(
        f.a_worker.fenced(f.a, stale).await,
        Err(DbError::Fenced {
            mine: 1,
            current: 2,
            ..
        })
    ));
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn renewing_extends_the_held_lease_and_releasing_lets_it_expire(
    pool_opts: PgPoolOptions,
    base: PgConnectOptions,
) {
    let f = two_tenants(pool_opts, base).await;
    let epoch = take(&f.a_worker, f.a).await;
    take(&f.b_worker, f.b).await;
    let b_before = lease_of(&f.b_worker, f.b).await.unwrap();

    let mut tx = f.a_worker.fenced(f.a, epoch).await.unwrap();
    assert!(
        lease::renew(&mut tx, Duration::from_secs(600))
            .await
            .unwrap()
    );
    tx.commit().await.unwrap();
    let renewed = lease_of(&f.a_worker, f.a).await.unwrap();
    assert_eq!(
        renewed.expires_at - renewed.renewed_at,
        chrono::Duration::seconds(600)
    );
    // Outside a fenced transaction there is no epoch to renew.
    let mut tx = f.a_worker.tenant(f.a).await.unwrap();
    assert!(!lease::renew(&mut tx, TTL).await.unwrap());
    assert!(!lease::release(&mut tx).await.unwrap());
    tx.commit().await.unwrap();

    let mut tx = f.a_worker.fenced(f.a, epoch).await.unwrap();
    assert!(lease::release(&mut tx).await.unwrap());
    tx.commit().await.unwrap();
    let released = lease_of(&f.a_worker, f.a).await.unwrap();
    assert_eq!(released.epoch, epoch, "the epoch stays");
    assert!(released.expires_at <= now(&f.a_worker, f.a).await);
    assert_eq!(take(&f.a_worker, f.a).await, epoch + 1);
    assert_eq!(
        lease_of(&f.b_worker, f.b).await.unwrap(),
        b_before,
        "A's renewals leave B's lease alone"
    );
}

fn health(phase: WorkerPhase, reason: &str) -> WorkerHealth {
    WorkerHealth {
        version: WorkerHealth::VERSION,
        phase,
        spec_hash: "spec-1".into(),
        strategies: [(
            "news_arb".to_owned(),
            StrategyHealth {
                status: StrategyStatus::Degraded,
                reason: Some(reason.to_owned()),
                ..StrategyHealth::default()
            },
        )]
        .into(),
        ..WorkerHealth::default()
    }
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn the_newest_heartbeat_reads_back_as_written_by_its_tenant_only(
    pool_opts: PgPoolOptions,
    base: PgConnectOptions,
) {
    let f = two_tenants(pool_opts, base).await;
    let epoch = take(&f.a_worker, f.a).await;
    let mut tx = f.a_worker.tenant(f.a).await.unwrap();
    assert_eq!(heartbeats::newest(&mut tx).await.unwrap(), None);
    tx.commit().await.unwrap();

    let first = health(WorkerPhase::Running, "feed down");
    let last = health(WorkerPhase::Stopping, "feed still down");
    for h in [&first, &last] {
        let mut tx = f.a_worker.fenced(f.a, epoch).await.unwrap();
        heartbeats::insert(&mut tx, h).await.unwrap();
        tx.commit().await.unwrap();
    }

    let mut tx = f.control.tenant(f.a).await.unwrap();
    let newest = heartbeats::newest(&mut tx)
        .await
        .unwrap()
        .expect("A's heartbeat");
    tx.commit().await.unwrap();
    assert_eq!(newest.epoch, epoch);
    assert_eq!(newest.health["phase"], json!("stopped"));
    assert_eq!(newest.health(), Some(last));
    let mut tx = f.control.tenant(f.b).await.unwrap();
    assert_eq!(
        heartbeats::newest(&mut tx).await.unwrap(),
        None,
        "B has none"
    );
    tx.commit().await.unwrap();
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_heartbeat_no_worker_could_have_written_reads_as_none(
    pool_opts: PgPoolOptions,
    base: PgConnectOptions,
) {
    let f = two_tenants(pool_opts, base).await;
    let mut tx = f.control.tenant(f.a).await.unwrap();
    sqlx::query("INSERT INTO worker_heartbeats (tenant_id, epoch, health) VALUES ($1, 1, $2)")
        .bind(f.a.as_uuid())
        .bind(json!({"phase": 7}))
        .execute(&mut *tx)
        .await
        .unwrap();
    let newest = heartbeats::newest(&mut tx).await.unwrap().expect("the row");
    tx.commit().await.unwrap();
    assert_eq!(newest.health, json!({"phase": 7}));
    assert_eq!(newest.health(), None);
}

fn trade(id: Uuid, side: &str, pnl: Decimal) -> NewTrade {
    NewTrade {
        id,
        opportunity_id: None,
        strategy: "complement_arb".into(),
        venue: "polymarket".into(),
        market: "pm-eth-5k".into(),
        side: side.into(),
        outcome: "Yes".into(),
        price: dec!(0.40),
        size: dec!(100),
        fee: dec!(1.68),
        realized_pnl: pnl,
        details: json!({"order": 1}),
        executed_at: DateTime::from_timestamp_millis(1_700_000_000_000).unwrap(),
    }
}

type StoredTrade = (Uuid, String, Decimal, Option<Decimal>, String, i64);

async fn stored_trades(db: &Db, tenant: TenantId) -> Vec<StoredTrade> {
    let mut tx = db.tenant(tenant).await.unwrap();
    let rows = sqlx::query_as(
        "SELECT id, side, price, realized_pnl, mode, epoch FROM trades ORDER BY side, id",
    )
    .fetch_all(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    rows
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_trade_batch_is_written_once_with_its_epoch_and_mode(
    pool_opts: PgPoolOptions,
    base: PgConnectOptions,
) {
    let f = two_tenants(pool_opts, base).await;
    let epoch = take(&f.a_worker, f.a).await;
    let (buy, settle) = (Uuid::new_v4(), Uuid::new_v4());
    let batch = [
        trade(buy, "buy", dec!(-1.68)),
        trade(settle, "settle", dec!(5)),
    ];
    let mut tx = f.a_worker.fenced(f.a, epoch).await.unwrap();
    assert_eq!(
        trades::insert_batch(&mut tx, &[], Mode::Paper)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        trades::insert_batch(&mut tx, &batch, Mode::Paper)
            .await
            .unwrap(),
        2
    );
    tx.commit().await.unwrap();
    // A replayed batch writes nothing twice.
    let mut tx = f.a_worker.fenced(f.a, epoch).await.unwrap();
    assert_eq!(
        trades::insert_batch(&mut tx, &batch, Mode::Paper)
            .await
            .unwrap(),
        0
    );
    tx.commit().await.unwrap();

    assert_eq!(
        stored_trades(&f.a_worker, f.a).await,
        vec![
            (
                buy,
                "buy".into(),
                dec!(0.40),
                Some(dec!(-1.68)),
                "paper".into(),
                epoch
            ),
            (
                settle,
                "settle".into(),
                dec!(0.40),
                Some(dec!(5)),
                "paper".into(),
                epoch
            ),
        ]
    );
    assert_eq!(stored_trades(&f.b_worker, f.b).await, vec![]);
    assert_eq!(stored_trades(&f.control, f.b).await, vec![]);
}

async fn stored_balances(db: &Db, tenant: TenantId) -> Vec<(String, String, Decimal, i64)> {
    let mut tx = db.tenant(tenant).await.unwrap();
    let rows = sqlx::query_as("SELECT venue, asset, amount, epoch FROM balances ORDER BY venue")
        .fetch_all(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    rows
}

fn balance(venue: &str, asset: &str, amount: Decimal) -> NewBalance {
    NewBalance {
        venue: venue.into(),
        asset: asset.into(),
        amount,
    }
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn balances_are_set_per_venue_and_asset_by_the_newest_epoch(
    pool_opts: PgPoolOptions,
    base: PgConnectOptions,
) {
    let f = two_tenants(pool_opts, base).await;
    let first = take(&f.a_worker, f.a).await;
    let mut tx = f.a_worker.fenced(f.a, first).await.unwrap();
    assert_eq!(balances::upsert(&mut tx, &[]).await.unwrap(), 0);
    let written = balances::upsert(
        &mut tx,
        &[
            balance("polymarket", "USDC", dec!(1000)),
            balance("kalshi", "USD", dec!(1000)),
        ],
    )
    .await
    .unwrap();
    assert_eq!(written, 2);
    tx.commit().await.unwrap();

    let second = take(&f.a_worker, f.a).await;
    let mut tx = f.a_worker.fenced(f.a, second).await.unwrap();
    balances::upsert(&mut tx, &[balance("kalshi", "USD", dec!(958.32))])
        .await
        .unwrap();
    tx.commit().await.unwrap();

    assert_eq!(
        stored_balances(&f.a_worker, f.a).await,
        vec![
            ("kalshi".into(), "USD".into(), dec!(958.32), second),
            ("polymarket".into(), "USDC".into(), dec!(1000), first),
        ]
    );
    assert_eq!(stored_balances(&f.b_worker, f.b).await, vec![]);
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_worker_reads_its_own_tenants_name_and_configuration(
    pool_opts: PgPoolOptions,
    base: PgConnectOptions,
) {
    let f = two_tenants(pool_opts, base).await;
    let mut tx = f.a_worker.tenant(f.a).await.unwrap();
    assert_eq!(configs::for_worker(&mut tx).await.unwrap(), None);
    tx.commit().await.unwrap();

    let strategies = json!({"complement_arb": {"min_edge": "0.02"}});
    let risk = json!({"max_daily_loss": "250"});
    let mut tx = f.control.tenant(f.a).await.unwrap();
    sqlx::query("INSERT INTO tenant_configs (tenant_id, strategies, risk) VALUES ($1, $2, $3)")
        .bind(f.a.as_uuid())
        .bind(&strategies)
        .bind(&risk)
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let mut tx = f.a_worker.tenant(f.a).await.unwrap();
    assert_eq!(
        configs::for_worker(&mut tx).await.unwrap(),
        Some(configs::WorkerConfigRow {
            name: "tenant-a".into(),
            strategies,
            risk,
        })
    );
    tx.commit().await.unwrap();
    let mut tx = f.b_worker.tenant(f.b).await.unwrap();
    assert_eq!(
        configs::for_worker(&mut tx).await.unwrap(),
        None,
        "B reads none of A's configuration"
    );
    tx.commit().await.unwrap();
}
