//! The fleet read model (`repo::fleet`) on a real database: two tenants, one
//! busy and one idle, so that every figure is checked against rows of the
//! other tenant that must not count.

use chrono::{Duration, Utc};
use polybot_core::TenantId;
use polybot_core::lifecycle::TenantState;
use polybot_core::worker::{
    BreakerPosition, StrategyHealth, StrategyStatus, WorkerHealth, WorkerPhase,
};
use polybot_store::repo::fleet::{self, StatusFilter};
use polybot_store::repo::heartbeats;
use polybot_store::repo::runtime::{self, Observation};
use polybot_store::testing::create_tenant;
use polybot_store::{Db, OperatorTx, Scope};
use rust_decimal::Decimal;
use serde_json::json;
use sqlx::PgPool;

async fn exec(db: &Db, tenant: TenantId, statements: &[&str]) {
    let mut tx = db.tenant(tenant).await.unwrap();
    for sql in statements {
        sqlx::query(sql)
            .bind(tenant.as_uuid())
            .execute(&mut *tx)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    tx.commit().await.unwrap();
}

fn health(breaker: BreakerPosition) -> WorkerHealth {
    WorkerHealth {
        version: WorkerHealth::VERSION,
        phase: WorkerPhase::Running,
        strategies: [(
            "complement_arb".to_owned(),
            StrategyHealth {
                status: StrategyStatus::BreakerOpen,
                breaker,
                reason: Some("polymarket clob: HTTP 503".into()),
                ..StrategyHealth::default()
            },
        )]
        .into(),
        ..WorkerHealth::default()
    }
}

async fn heartbeat(
    db: &Db,
    tenant: TenantId,
    epoch: i64,
    ago_secs: i64,
    health: serde_json::Value,
) {
    let mut tx = db.tenant(tenant).await.unwrap();
    sqlx::query(
        "INSERT INTO worker_heartbeats (tenant_id, epoch, at, health) \
         VALUES ($1, $2, now() - make_interval(secs => $3), $4)",
    )
    .bind(tenant.as_uuid())
    .bind(epoch)
    .bind(ago_secs as f64)
    .bind(health)
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
}

/// Tenant "busy" (active, with activity of every kind) and "idle" (active,
/// nothing else).
async fn two_tenants(pool: PgPool) -> (Db, TenantId, TenantId) {
    let db = Db::from_pool(pool, Scope::Control);
    let busy = create_tenant(&db, "busy").await.unwrap();
    let idle = create_tenant(&db, "idle").await.unwrap();
    for t in [busy, idle] {
        exec(
            &db,
            t,
            &[
                "UPDATE tenants SET state = 'active' WHERE id = $1",
                "INSERT INTO tenant_configs (tenant_id, strategies) VALUES ($1, '{\"complement_arb\": {}}')",
            ],
        )
        .await;
    }
    exec(
        &db,
        busy,
        &[
            "INSERT INTO opportunities (id, tenant_id, strategy, venue, market, executed_at) \
             VALUES (gen_random_uuid(), $1, 'complement_arb', 'polymarket', 'm1', now())",
            "INSERT INTO opportunities (id, tenant_id, strategy, venue, market) \
             VALUES (gen_random_uuid(), $1, 'complement_arb', 'polymarket', 'm2')",
            "INSERT INTO trades (id, tenant_id, strategy, venue, market, side, price, size, realized_pnl) \
             VALUES (gen_random_uuid(), $1, 'complement_arb', 'polymarket', 'm1', 'buy', 0.4, 10, 1.5)",
            "INSERT INTO trades (id, tenant_id, strategy, venue, market, side, price, size, realized_pnl) \
             VALUES (gen_random_uuid(), $1, 'complement_arb', 'polymarket', 'm1', 'sell', 0.4, 10, -0.25)",
            "INSERT INTO trades (id, tenant_id, strategy, venue, market, side, price, size, realized_pnl, executed_at) \
             VALUES (gen_random_uuid(), $1, 'complement_arb', 'polymarket', 'm1', 'buy', 0.4, 10, 5, now() - interval '2 days')",
            "INSERT INTO tenant_runtime_events (tenant_id, kind, detail) VALUES ($1, 'crashed', 'exit 1')",
            "INSERT INTO tenant_runtime_events (tenant_id, kind, detail) VALUES ($1, 'error', 'throttled')",
            "INSERT INTO tenant_runtime_events (tenant_id, kind, detail) VALUES ($1, 'started', 'worker 1')",
            "INSERT INTO worker_availability (tenant_id, minute, desired_ms, up_ms) \
             VALUES ($1, date_trunc('minute', now()), 60000, 30000)",
            "INSERT INTO worker_availability (tenant_id, minute, desired_ms, up_ms) \
             VALUES ($1, date_trunc('minute', now() - interval '2 days'), 60000, 60000)",
            "INSERT INTO alert_states (tenant_id, alert, subject, firing, summary, fired_at) \
             VALUES ($1, 'breaker_open', 'complement_arb', true, 's', now())",
            "INSERT INTO alert_states (tenant_id, alert, firing, summary, fired_at) \
             VALUES ($1, 'heartbeat_stale', true, 's', now())",
            "INSERT INTO alert_states (tenant_id, alert, firing, summary, fired_at) \
             VALUES ($1, 'crash_loop', false, 's', now())",
        ],
    )
    .await;
    heartbeat(&db, busy, 1, 600, health(BreakerPosition::Closed).to_json()).await;
    heartbeat(&db, busy, 2, 3, health(BreakerPosition::Open).to_json()).await;
    (db, busy, idle)
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn the_fleets_figures_count_each_tenants_own_rows(pool: PgPool) {
    let (db, busy, idle) = two_tenants(pool).await;
    let mut op = db.operator().await.unwrap();
    let all = fleet::figures(&mut op).await.unwrap();
    op.commit().await.unwrap();
    let names: Vec<&str> = all.iter().map(|f| f.status.name.as_str()).collect();
    assert_eq!(names, ["busy", "idle"]);
    let (b, i) = (&all[0], &all[1]);
    assert_eq!(b.status.tenant_id(), busy);
    assert_eq!(
        (b.opportunities, b.opportunities_executed, b.trades),
        (2, 1, 3)
    );
    assert_eq!(b.pnl_total, Decimal::new(625, 2));
    assert_eq!(b.pnl_today, Decimal::new(125, 2));
    assert_eq!(b.errors, 2, "crashed and error count, started does not");
    assert_eq!(b.availability_1h, Some(0.5));
    assert_eq!(b.availability_30d, Some(0.75));
    assert_eq!(
        b.firing_alerts,
        ["breaker_open:complement_arb", "heartbeat_stale"]
    );
    let hb = b.status.heartbeat.as_ref().expect("a heartbeat");
    assert_eq!(hb.epoch, 2, "the newest heartbeat");
    assert!((3..10).contains(&hb.age_seconds()), "{}", hb.age_seconds());
    assert_eq!(
        b.status.breakers(),
        [("complement_arb", BreakerPosition::Open)]
    );
    assert_eq!(
        b.status.health().unwrap().strategies["complement_arb"]
            .reason
            .as_deref(),
        Some("polymarket clob: HTTP 503")
    );

    assert_eq!(i.status.tenant_id(), idle);
    assert_eq!(
        (i.opportunities, i.opportunities_executed, i.trades),
        (0, 0, 0)
    );
    assert_eq!(
        (i.pnl_total, i.pnl_today, i.errors),
        (Decimal::ZERO, Decimal::ZERO, 0)
    );
    assert_eq!((i.availability_1h, i.availability_30d), (None, None));
    assert!(i.firing_alerts.is_empty());
    assert_eq!(i.status.heartbeat, None);
    assert_eq!(i.status.actual(), "pending");
    assert_eq!(i.status.desired(), "running");
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_tenants_own_figures_show_none_of_the_other_tenants_rows(pool: PgPool) {
    let (db, busy, idle) = two_tenants(pool).await;
    let mut tx = db.tenant(idle).await.unwrap();
    let own = fleet::tenant_figures(&mut tx)
        .await
        .unwrap()
        .expect("idle exists");
    tx.commit().await.unwrap();
    assert_eq!(own.status.tenant_id(), idle);
    assert_eq!((own.opportunities, own.trades, own.errors), (0, 0, 0));
    assert!(own.firing_alerts.is_empty());
    assert_eq!(own.status.heartbeat, None);

    let mut tx = db.tenant(busy).await.unwrap();
    let own = fleet::tenant_figures(&mut tx)
        .await
        .unwrap()
        .expect("busy exists");
    tx.commit().await.unwrap();
    assert_eq!((own.opportunities, own.trades, own.errors), (2, 3, 2));
    assert_eq!(own.pnl_total, Decimal::new(625, 2));
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn offboarded_tenants_have_no_figures_in_the_fleet(pool: PgPool) {
    let (db, busy, idle) = two_tenants(pool).await;
    exec(
        &db,
        idle,
        &["UPDATE tenants SET state = 'offboarded' WHERE id = $1"],
    )
    .await;
    let mut op = db.operator().await.unwrap();
    let all = fleet::figures(&mut op).await.unwrap();
    op.commit().await.unwrap();
    let ids: Vec<TenantId> = all.iter().map(|f| f.status.tenant_id()).collect();
    assert_eq!(ids, [busy]);
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_status_carries_the_runtime_row_and_the_newest_heartbeat(pool: PgPool) {
    let (db, busy, idle) = two_tenants(pool).await;
    let mut tx = db.tenant(busy).await.unwrap();
    runtime::record(
        &mut tx,
        &Observation {
            desired: "running",
            actual: "running",
            instance_id: Some("i-1".into()),
            spec_hash: "abc".into(),
            restarts: 2,
            launch_failures: 0,
            backoff_until: None,
            last_exit: Some("worker i-0: exit 1".into()),
            last_error: None,
            last_action: None,
        },
    )
    .await
    .unwrap();
    let status = fleet::status(&mut tx).await.unwrap().expect("busy exists");
    tx.commit().await.unwrap();
    assert_eq!(status.name, "busy");
    assert_eq!(status.state, TenantState::Active);
    assert_eq!(status.provisioning_step, "created");
    let runtime = status.runtime.as_ref().expect("a runtime row");
    assert_eq!(runtime.actual, "running");
    assert_eq!(runtime.instance_id.as_deref(), Some("i-1"));
    assert_eq!(runtime.restarts, 2);
    assert_eq!(runtime.last_exit.as_deref(), Some("worker i-0: exit 1"));
    assert_eq!(status.actual(), "running");
    assert_eq!(status.heartbeat.as_ref().map(|h| h.epoch), Some(2));
    assert_eq!(status.health().map(|h| h.phase), Some(WorkerPhase::Running));

    // The idle tenant's scope shows its own status, never the busy one's.
    let mut tx = db.tenant(idle).await.unwrap();
    let status = fleet::status(&mut tx).await.unwrap().expect("idle exists");
    tx.commit().await.unwrap();
    assert_eq!(status.name, "idle");
    assert_eq!(status.runtime, None);
    assert_eq!(status.heartbeat, None);
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_heartbeat_that_is_not_worker_health_reads_without_health(pool: PgPool) {
    let (db, _busy, idle) = two_tenants(pool).await;
    heartbeat(&db, idle, 1, 0, json!({"phase": 7})).await;
    let mut tx = db.tenant(idle).await.unwrap();
    let status = fleet::status(&mut tx).await.unwrap().expect("idle exists");
    tx.commit().await.unwrap();
    let hb = status.heartbeat.as_ref().expect("a heartbeat");
    assert_eq!(hb.epoch, 1);
    assert_eq!(hb.health, None);
    assert!(status.breakers().is_empty());
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn the_newest_heartbeat_is_the_tenants_own(pool: PgPool) {
    let (db, busy, idle) = two_tenants(pool).await;
    let mut tx = db.tenant(idle).await.unwrap();
    assert_eq!(heartbeats::newest(&mut tx).await.unwrap(), None);
    tx.commit().await.unwrap();
    let mut tx = db.tenant(busy).await.unwrap();
    let hb = heartbeats::newest(&mut tx)
        .await
        .unwrap()
        .expect("a heartbeat");
    tx.commit().await.unwrap();
    assert_eq!(hb.epoch, 2);
    assert_eq!(hb.health(), Some(health(BreakerPosition::Open)));
}

/// The tenants of one page of statuses.
async fn page(op: &mut OperatorTx, filter: StatusFilter) -> Vec<TenantId> {
    fleet::statuses(op, &filter)
        .await
        .unwrap()
        .iter()
        .map(|s| s.tenant_id())
        .collect()
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn statuses_page_by_id_and_filter_by_state_and_worker(pool: PgPool) {
    let (db, busy, idle) = two_tenants(pool).await;
    exec(
        &db,
        idle,
        &["UPDATE tenants SET state = 'paused' WHERE id = $1"],
    )
    .await;
    let mut sorted = [busy, idle];
    sorted.sort_by_key(|t| t.as_uuid());
    let mut op = db.operator().await.unwrap();
    let all = page(
        &mut op,
        StatusFilter {
            limit: 10,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(all, sorted);
    let first = page(
        &mut op,
        StatusFilter {
            limit: 1,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(first, [sorted[0]]);
    let next = page(
        &mut op,
        StatusFilter {
            limit: 1,
            after: Some(sorted[0].as_uuid()),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(next, [sorted[1]]);
    let paused = page(
        &mut op,
        StatusFilter {
            limit: 10,
            state: Some("paused".into()),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(paused, [idle]);
    let pending = page(
        &mut op,
        StatusFilter {
            limit: 10,
            worker: Some("pending".into()),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(pending, sorted);
    let running = page(
        &mut op,
        StatusFilter {
            limit: 10,
            worker: Some("running".into()),
            ..Default::default()
        },
    )
    .await;
    assert!(running.is_empty());
    op.commit().await.unwrap();
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn tenants_are_counted_by_state(pool: PgPool) {
    let (db, _busy, idle) = two_tenants(pool).await;
    exec(
        &db,
        idle,
        &["UPDATE tenants SET state = 'paused' WHERE id = $1"],
    )
    .await;
    let mut op = db.operator().await.unwrap();
    let counts = fleet::count_by_state(&mut op).await.unwrap();
    op.commit().await.unwrap();
    assert_eq!(counts, [(TenantState::Active, 1), (TenantState::Paused, 1)]);
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn the_desired_state_joins_config_secret_runtime_and_heartbeat(pool: PgPool) {
    let (db, busy, idle) = two_tenants(pool).await;
    exec(
        &db,
        busy,
        &["INSERT INTO tenant_secrets (tenant_id, store, ciphertext, version) VALUES ($1, 'local', '\\x00', 4)"],
    )
    .await;
    let mut tx = db.tenant(idle).await.unwrap();
    runtime::record(
        &mut tx,
        &Observation {
            desired: "running",
            actual: "crash_loop",
            instance_id: None,
            spec_hash: "h".into(),
            restarts: 3,
            launch_failures: 0,
            backoff_until: Some(Utc::now() + Duration::seconds(30)),
            last_exit: None,
            last_error: Some("worker crashed".into()),
            last_action: None,
        },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();

    let mut op = db.operator().await.unwrap();
    let mut rows = fleet::desired(&mut op).await.unwrap();
    op.commit().await.unwrap();
    rows.sort_by_key(|r| r.id != busy.as_uuid());
    assert_eq!(rows.len(), 2);
    let (b, i) = (&rows[0], &rows[1]);
    assert_eq!((b.state.as_str(), b.mode.as_str()), ("active", "paper"));
    assert_eq!(b.strategies, json!({"complement_arb": {}}));
    assert_eq!(b.secret_version, Some(4));
    assert_eq!(b.runtime, None);
    assert!(
        b.last_heartbeat
            .is_some_and(|at| Utc::now() - at < Duration::seconds(60))
    );
    assert_eq!(i.id, idle.as_uuid());
    assert_eq!(i.secret_version, None);
    assert_eq!(i.last_heartbeat, None);
    let r = i.runtime.as_ref().expect("idle's runtime row");
    assert_eq!((r.actual.as_str(), r.restarts), ("crash_loop", 3));
    assert!(r.backoff_until.is_some());

    // An offboarded tenant drops out once its worker is known stopped.
    exec(
        &db,
        idle,
        &["UPDATE tenants SET state = 'offboarded' WHERE id = $1"],
    )
    .await;
    let mut op = db.operator().await.unwrap();
    assert_eq!(
        fleet::desired(&mut op).await.unwrap().len(),
        2,
        "crash_loop is not stopped"
    );
    op.commit().await.unwrap();
    exec(
        &db,
        idle,
        &["UPDATE tenant_runtime SET actual = 'stopped' WHERE tenant_id = $1"],
    )
    .await;
    let mut op = db.operator().await.unwrap();
    let ids: Vec<_> = fleet::desired(&mut op)
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    op.commit().await.unwrap();
    assert_eq!(ids, [busy.as_uuid()]);
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn what_alerts_watch_is_each_tenants_pnl_loss_limit_and_recent_fencing(pool: PgPool) {
    let (db, busy, idle) = two_tenants(pool).await;
    exec(
        &db,
        busy,
        &[
            "UPDATE tenant_configs SET risk = '{\"max_daily_loss\": \"50\"}' WHERE tenant_id = $1",
            "INSERT INTO tenant_runtime_events (tenant_id, kind, detail, at) \
             VALUES ($1, 'fenced', 'worker i-0: fenced long ago', now() - interval '1 hour')",
            "INSERT INTO tenant_runtime_events (tenant_id, kind, detail) VALUES ($1, 'fenced', 'worker i-1: fenced')",
        ],
    )
    .await;
    let mut op = db.operator().await.unwrap();
    let mut watched = fleet::watched(&mut op, std::time::Duration::from_secs(300))
        .await
        .unwrap()
        .tenants;
    op.commit().await.unwrap();
    watched.sort_by_key(|w| w.status.name.clone());
    assert_eq!(watched.len(), 2);
    let (b, i) = (&watched[0], &watched[1]);
    assert_eq!(b.status.tenant_id(), busy);
    assert_eq!(b.pnl_today, Decimal::new(125, 2));
    assert_eq!(b.max_daily_loss, Some(Decimal::new(50, 0)));
    assert_eq!(b.fenced.as_deref(), Some("worker i-1: fenced"));
    assert_eq!(b.status.heartbeat.as_ref().map(|h| h.epoch), Some(2));
    assert_eq!(i.status.tenant_id(), idle);
    assert_eq!(
        (i.pnl_today, i.max_daily_loss, i.fenced.as_deref()),
        (Decimal::ZERO, None, None)
    );
}

/// The database's clock, read apart.
async fn db_now(db: &Db) -> chrono::DateTime<Utc> {
    let mut op = db.operator().await.unwrap();
    let now = sqlx::query_scalar("SELECT now()")
        .fetch_one(&mut *op)
        .await
        .unwrap();
    op.commit().await.unwrap();
    now
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn alerts_watch_each_tenants_newest_heartbeat_todays_pnl_and_newest_recent_fencing(
    pool: PgPool,
) {
    let db = Db::from_pool(pool, Scope::Control);
    let a = create_tenant(&db, "alpha").await.unwrap();
    let b = create_tenant(&db, "beta").await.unwrap();
    let gone = create_tenant(&db, "gone").await.unwrap();
    exec(
        &db,
        a,
        &["UPDATE tenants SET state = 'active' WHERE id = $1"],
    )
    .await;
    exec(
        &db,
        gone,
        &["UPDATE tenants SET state = 'offboarded' WHERE id = $1"],
    )
    .await;
    exec(
        &db,
        a,
        &[
            // A loss limit written with spaces still counts.
            "INSERT INTO tenant_configs (tenant_id, risk) VALUES ($1, '{\"max_daily_loss\": \" 10 \"}')",
            "INSERT INTO tenant_runtime (tenant_id, actual, restarts, last_exit) \
             VALUES ($1, 'crash_loop', 4, 'exit code 1')",
            "INSERT INTO worker_heartbeats (tenant_id, epoch, at, health) \
             VALUES ($1, 1, now() - interval '1 minute', '{\"phase\": \"starting\"}')",
            "INSERT INTO worker_heartbeats (tenant_id, epoch, at, health) \
             VALUES ($1, 2, now() - interval '5 seconds', '{\"phase\": \"running\"}')",
            // Today's trades count, yesterday's do not.
            "INSERT INTO trades (id, tenant_id, strategy, venue, market, side, price, size, realized_pnl) \
             VALUES (gen_random_uuid(), $1, 's', 'kalshi', 'm', 'buy', 0.5, 1, -7.25)",
            "INSERT INTO trades (id, tenant_id, strategy, venue, market, side, price, size, realized_pnl) \
             VALUES (gen_random_uuid(), $1, 's', 'kalshi', 'm', 'buy', 0.5, 1, 2)",
            "INSERT INTO trades (id, tenant_id, strategy, venue, market, side, price, size, realized_pnl, executed_at) \
             VALUES (gen_random_uuid(), $1, 's', 'kalshi', 'm', 'buy', 0.5, 1, -100, \
                     date_trunc('day', now(), 'UTC') - interval '1 second')",
            // The newest fencing inside the window; one outside it and another kind do not count.
            "INSERT INTO tenant_runtime_events (tenant_id, kind, detail, at) \
             VALUES ($1, 'fenced', 'worker 1: exit code 3', now() - interval '2 minutes')",
            "INSERT INTO tenant_runtime_events (tenant_id, kind, detail, at) \
             VALUES ($1, 'fenced', 'worker 2: exit code 3', now() - interval '1 minute')",
            "INSERT INTO tenant_runtime_events (tenant_id, kind, detail, at) \
             VALUES ($1, 'fenced', 'worker 0: exit code 3', now() - interval '1 hour')",
            "INSERT INTO tenant_runtime_events (tenant_id, kind, detail) VALUES ($1, 'crashed', 'x')",
        ],
    )
    .await;
    // b's old fencing is outside the window; b has nothing else.
    exec(
        &db,
        b,
        &[
            "INSERT INTO tenant_runtime_events (tenant_id, kind, detail, at) \
           VALUES ($1, 'fenced', 'old', now() - interval '1 hour')",
        ],
    )
    .await;
    let before = db_now(&db).await;
    let mut op = db.operator().await.unwrap();
    let watch = fleet::watched(&mut op, std::time::Duration::from_secs(600))
        .await
        .unwrap();
    op.commit().await.unwrap();
    assert!(watch.now >= before, "{} < {before}", watch.now);

    let mut ids: Vec<TenantId> = watch.tenants.iter().map(|t| t.status.tenant_id()).collect();
    ids.sort();
    let mut expected = vec![a, b];
    expected.sort();
    assert_eq!(ids, expected, "the offboarded tenant is not watched");

    let alpha = watch
        .tenants
        .iter()
        .find(|t| t.status.tenant_id() == a)
        .unwrap();
    assert_eq!(alpha.status.name, "alpha");
    assert_eq!(alpha.status.state, TenantState::Active);
    assert_eq!(alpha.status.actual(), "crash_loop");
    assert_eq!(alpha.status.restarts(), 4);
    let runtime = alpha.status.runtime.as_ref().expect("a runtime row");
    assert_eq!(runtime.last_exit.as_deref(), Some("exit code 1"));
    let hb = alpha.status.heartbeat.as_ref().expect("a heartbeat");
    assert_eq!(hb.epoch, 2, "the newest heartbeat");
    let age = watch.now - hb.at;
    assert!(
        age >= Duration::seconds(5) && age < Duration::seconds(6),
        "{age}"
    );
    assert_eq!(alpha.pnl_today, Decimal::new(-525, 2));
    assert_eq!(alpha.max_daily_loss, Some(Decimal::new(10, 0)));
    assert_eq!(alpha.fenced.as_deref(), Some("worker 2: exit code 3"));

    let beta = watch
        .tenants
        .iter()
        .find(|t| t.status.tenant_id() == b)
        .unwrap();
    assert_eq!(beta.status.state, TenantState::Provisioning);
    assert_eq!(
        (
            &beta.status.runtime,
            &beta.status.heartbeat,
            beta.pnl_today,
            beta.max_daily_loss,
            &beta.fenced,
        ),
        (&None, &None, Decimal::ZERO, None, &None)
    );
}
