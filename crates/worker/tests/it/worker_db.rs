//! The worker on a real database: tenant A's worker plays a small recording
//! and writes opportunities, trades and balances that only A can read; a
//! worker whose lease was taken by a twin writes nothing more and stops.

use std::path::PathBuf;
use std::time::Duration;

use polybot_core::strategy::Venue;
use polybot_core::worker::{WorkerHealth, WorkerPhase};
use polybot_core::{Mode, TenantId};
use polybot_engine::{Engine, EngineConfig, EventClock, Replay};
use polybot_store::repo::{heartbeats, lease};
use polybot_store::testing::{create_tenant, tenant_login};
use polybot_store::{Db, DbError, Scope};
use polybot_worker::persist::Recorder;
use polybot_worker::{Pace, ReplaySettings, WorkerConfig, WorkerError, load_config, take_lease};
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use serde_json::{Value, json};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgConnection};
use tokio_util::sync::CancellationToken;

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/replay_small.jsonl")
}

/// The settings under which the recording makes one trade per strategy.
fn strategies() -> Value {
    json!({
        "complement_arb": {},
        "cross_venue_arb": {"min_edge": "0.01"},
        "crypto_15m": {
            "assets": ["BTC"], "spot_venues": ["coinbase"],
            "min_volatility_samples": 5, "volatility_window_secs": 600
        },
        "news_arb": {"rules": [{
            "market": "fed-cut-dec", "outcome": "Yes",
            "keywords": ["fed", "cuts"], "entities": ["powell", "fomc"],
            "fair_price": "0.90", "max_size": "40"
        }]}
    })
}

async fn tenant_with_config(db: &Db, name: &str) -> TenantId {
    let tenant = create_tenant(db, name).await.unwrap();
    let mut tx = db.tenant(tenant).await.unwrap();
    sqlx::query("INSERT INTO tenant_configs (tenant_id, strategies, risk) VALUES ($1, $2, '{}')")
        .bind(tenant.as_uuid())
        .bind(strategies())
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    tenant
}

fn worker_config(tenant: TenantId, login: PgConnectOptions, pace: Pace) -> WorkerConfig {
    WorkerConfig {
        tenant,
        database: login,
        claim: None,
        keys: Default::default(),
        mode: Mode::Paper,
        spec_hash: "test-spec".into(),
        heartbeat: Duration::from_millis(200),
        replay: Some(ReplaySettings {
            path: fixture(),
            pace,
            exit_at_end: true,
        }),
        live: None,
        paper_balances: vec![(Venue::Polymarket, dec!(1000)), (Venue::Kalshi, dec!(1000))],
        flush_every: Duration::from_millis(250),
        flush_rows: 500,
        sandbox_files: Vec::new(),
        execution: Default::default(),
    }
}

type TradeRow = (
    String,
    String,
    String,
    String,
    Decimal,
    Decimal,
    Decimal,
    Decimal,
    String,
);

async fn trades(conn: &mut PgConnection) -> Vec<TradeRow> {
    sqlx::query_as(
        "SELECT strategy, market, side, outcome, price, size, fee, realized_pnl, mode FROM trades \
         ORDER BY executed_at, side, market COLLATE \"C\", outcome DESC",
    )
    .fetch_all(conn)
    .await
    .unwrap()
}

async fn count(conn: &mut PgConnection, table: &str) -> i64 {
    // Table names are literals of this test.
    sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
        .fetch_one(conn)
        .await
        .unwrap()
}

fn s(x: &str) -> String {
    x.to_owned()
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_workers_replay_writes_rows_only_its_tenant_can_read(
    pool_opts: PgPoolOptions,
    base: PgConnectOptions,
) {
    let pool = pool_opts.connect_with(base.clone()).await.unwrap();
    let control = Db::from_pool(pool, Scope::Control);
    let a = tenant_with_config(&control, "tenant-a").await;
    let b = tenant_with_config(&control, "tenant-b").await;
    let a_login = tenant_login(&control, &base, a).await.unwrap();
    let b_login = tenant_login(&control, &base, b).await.unwrap();

    polybot_worker::run(
        worker_config(a, a_login.clone(), Pace::AsFastAsPossible),
        CancellationToken::new(),
    )
    .await
    .unwrap();

    let mut a_conn = a_login.connect().await.unwrap();
    let opportunities: Vec<(String, String, String, Decimal, Decimal, bool, i64)> = sqlx::query_as(
        "SELECT strategy, venue, market, edge, size, executed_at IS NOT NULL, epoch \
             FROM opportunities WHERE details -> 'refused' IS NULL ORDER BY detected_at, strategy",
    )
    .fetch_all(&mut a_conn)
    .await
    .unwrap();
    assert_eq!(
        opportunities,
        vec![
            (
                s("complement_arb"),
                s("polymarket"),
                s("pm-eth-5k"),
                dec!(0.0158750),
                dec!(100),
                true,
                1
            ),
            (
                s("cross_venue_arb"),
                s("polymarket+kalshi"),
                s("pm-btc-100k / KXBTC-100K"),
                dec!(0.0158750),
                dec!(100),
                true,
                1
            ),
            (
                s("crypto_15m"),
                s("polymarket"),
                s("btc-updown-15m-1777467600"),
                opportunities[2].3,
                dec!(30),
                true,
                1
            ),
            (
                s("news_arb"),
                s("polymarket"),
                s("fed-cut-dec"),
                dec!(0.051),
                dec!(40),
                true,
                1
            ),
        ]
    );
    assert!(opportunities[2].3 > dec!(0.03), "{}", opportunities[2].3);
    // The 15-minute pair across venues is refused, with its basis risk.
    let refused: Vec<(String, Option<Decimal>, serde_json::Value)> = sqlx::query_as(
        "SELECT market, edge, details -> 'refused' FROM opportunities \
         WHERE details -> 'refused' IS NOT NULL",
    )
    .fetch_all(&mut a_conn)
    .await
    .unwrap();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(
        refused[0].0,
        "btc-updown-15m-1777467600 / KXBTC15M-26APR290915"
    );
    assert_eq!(refused[0].1, None);
    assert_eq!(refused[0].2["basis_risk"], "chainlink_vs_cf_benchmarks");

    let paper = || s("paper");
    assert_eq!(
        trades(&mut a_conn).await,
        vec![
            (
                s("complement_arb"),
                s("pm-eth-5k"),
                s("buy"),
                s("Yes"),
                dec!(0.40),
                dec!(100),
                dec!(1.68),
                dec!(0),
                paper()
            ),
            (
                s("complement_arb"),
                s("pm-eth-5k"),
                s("buy"),
                s("No"),
                dec!(0.55),
                dec!(100),
                dec!(1.7325),
                dec!(0),
                paper()
            ),
            (
                s("cross_venue_arb"),
                s("KXBTC-100K"),
                s("buy"),
                s("No"),
                dec!(0.40),
                dec!(100),
                dec!(1.68),
                dec!(0),
                paper()
            ),
            (
                s("cross_venue_arb"),
                s("pm-btc-100k"),
                s("buy"),
                s("Yes"),
                dec!(0.55),
                dec!(100),
                dec!(1.7325),
                dec!(0),
                paper()
            ),
            (
                s("crypto_15m"),
                s("btc-updown-15m-1777467600"),
                s("buy"),
                s("Down"),
                dec!(0.70),
                dec!(30),
                dec!(0.441),
                dec!(0),
                paper()
            ),
            (
                s("news_arb"),
                s("fed-cut-dec"),
                s("buy"),
                s("Yes"),
                dec!(0.849),
                dec!(40),
                dec!(0),
                dec!(0),
                paper()
            ),
            (
                s("cross_venue_arb"),
                s("KXBTC-100K"),
                s("settle"),
                s("Yes"),
                dec!(1),
                dec!(0),
                dec!(0),
                dec!(-40),
                paper()
            ),
            (
                s("crypto_15m"),
                s("btc-updown-15m-1777467600"),
                s("settle"),
                s("Down"),
                dec!(1),
                dec!(30),
                dec!(0),
                dec!(9),
                paper()
            ),
            (
                s("cross_venue_arb"),
                s("pm-btc-100k"),
                s("settle"),
                s("Yes"),
                dec!(1),
                dec!(100),
                dec!(0),
                dec!(45),
                paper()
            ),
            (
                s("complement_arb"),
                s("pm-eth-5k"),
                s("settle"),
                s("Yes"),
                dec!(1),
                dec!(100),
                dec!(0),
                dec!(5),
                paper()
            ),
            (
                s("news_arb"),
                s("fed-cut-dec"),
                s("settle"),
                s("Yes"),
                dec!(1),
                dec!(40),
                dec!(0),
                dec!(6.04),
                paper()
            ),
        ]
    );
    let realized: Decimal = sqlx::query_scalar("SELECT sum(realized_pnl) FROM trades")
        .fetch_one(&mut a_conn)
        .await
        .unwrap();
    assert_eq!(realized, dec!(25.04));
    let fees: Decimal = sqlx::query_scalar("SELECT sum(fee) FROM trades")
        .fetch_one(&mut a_conn)
        .await
        .unwrap();
    // Realised minus fees: what the recording's 2,000 grew by.
    assert_eq!(realized - fees, dec!(17.774));
    // Every fill points at its opportunity.
    let orphans: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM trades t WHERE side <> 'settle' AND NOT EXISTS \
         (SELECT 1 FROM opportunities o WHERE o.id = t.opportunity_id)",
    )
    .fetch_one(&mut a_conn)
    .await
    .unwrap();
    assert_eq!(orphans, 0);

    let balances: Vec<(String, String, Decimal)> =
        sqlx::query_as("SELECT venue, asset, amount FROM balances ORDER BY venue")
            .fetch_all(&mut a_conn)
            .await
            .unwrap();
    assert_eq!(
        balances,
        vec![
            (s("kalshi"), s("USD"), dec!(958.32)),
            (s("polymarket"), s("USDC"), dec!(1059.454)),
        ]
    );

    let (phase, health): (String, Value) = sqlx::query_as(
        "SELECT health->>'phase', health FROM worker_heartbeats ORDER BY at DESC, id DESC LIMIT 1",
    )
    .fetch_one(&mut a_conn)
    .await
    .unwrap();
    assert_eq!(phase, "stopped");
    assert_eq!(
        health["pnl"],
        json!({"realized": "25.04", "unrealized": "0", "daily": "17.774", "fees": "7.266",
        "equity": "2017.774", "exposure": "0", "daily_loss_limit_hit": false,
        "locked": "0", "starting_equity": "2000", "positions": [],
        "by_strategy": {
            "complement_arb": {"realized": "5", "unrealized": "0", "locked": "0", "fees": "3.4125"},
            "cross_venue_arb": {"realized": "5", "unrealized": "0", "locked": "0", "fees": "3.4125"},
            "crypto_15m": {"realized": "9", "unrealized": "0", "locked": "0", "fees": "0.441"},
            "news_arb": {"realized": "6.04", "unrealized": "0", "locked": "0", "fees": "0"}
        }})
    );
    assert_eq!(
        health["strategies"]["complement_arb"],
        json!({"status": "ok", "breaker": "closed", "breaker_open_until": null, "reason": null,
               "consecutive_failures": 0})
    );
    assert_eq!(
        health["strategies"].as_object().unwrap().len(),
        4,
        "{health}"
    );
    assert_eq!(health["written"]["trades"], 11);
    assert_eq!(health["last_error"], Value::Null);
    // The same heartbeat, as the control plane reads it: the contract's type.
    let mut tx = control.tenant(a).await.unwrap();
    let newest = heartbeats::newest(&mut tx)
        .await
        .unwrap()
        .expect("a heartbeat");
    let lease = lease::get(&mut tx).await.unwrap().expect("a lease");
    tx.commit().await.unwrap();
    let typed = newest
        .health()
        .expect("the heartbeat reads as WorkerHealth");
    assert_eq!(typed.version, WorkerHealth::VERSION);
    assert_eq!(typed.phase, WorkerPhase::Stopping);
    // Every part of the contract that a reader uses is written: the
    // optional sections are present in a running worker's heartbeat, and
    // every field of the type is a key of the stored JSON.
    assert_eq!(typed.execution.as_deref(), Some("paper"));
    assert!(typed.pnl.is_some(), "{health}");
    assert!(
        typed.engine.as_ref().is_some_and(|e| e.events > 0),
        "{health}"
    );
    assert!(typed.source.is_some(), "{health}");
    assert!(typed.written.is_some(), "{health}");
    assert!(typed.pid > 0);
    for key in WorkerHealth::default()
        .to_json()
        .as_object()
        .unwrap()
        .keys()
    {
        assert!(
            health.get(key).is_some(),
            "the heartbeat lacks {key}: {health}"
        );
    }
    assert_eq!(typed.spec_hash, "test-spec");
    assert_eq!(typed.open_breakers().count(), 0);
    assert!(!typed.daily_loss_limit_hit());
    assert_eq!(
        typed.balances.get("kalshi").copied(),
        Some(dec!(958.32)),
        "{health}"
    );
    // A clean stop lets the lease expire, keeping its epoch.
    assert_eq!(lease.epoch, 1);
    assert!(lease.expires_at <= chrono::Utc::now(), "{lease:?}");

    // B's own role and the control plane scoped to B see none of it.
    let mut b_conn = b_login.connect().await.unwrap();
    for table in ["opportunities", "trades", "balances", "worker_heartbeats"] {
        assert_eq!(
            count(&mut b_conn, table).await,
            0,
            "B's role reads A's {table}"
        );
        let mut tx = control.tenant(b).await.unwrap();
        assert_eq!(
            count(&mut tx, table).await,
            0,
            "control plane scoped to B reads A's {table}"
        );
        tx.commit().await.unwrap();
        let mut tx = control.tenant(a).await.unwrap();
        assert!(
            count(&mut tx, table).await > 0,
            "control plane scoped to A reads A's {table}"
        );
        tx.commit().await.unwrap();
    }

    // A second run over the same recording writes nothing twice.
    polybot_worker::run(
        worker_config(a, a_login.clone(), Pace::AsFastAsPossible),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    // Four opportunities and the refused pair, once each.
    assert_eq!(count(&mut a_conn, "opportunities").await, 4 + 1);
    assert_eq!(count(&mut a_conn, "trades").await, 11);
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_fenced_workers_writes_are_refused_and_it_stops(
    pool_opts: PgPoolOptions,
    base: PgConnectOptions,
) {
    let pool = pool_opts.connect_with(base.clone()).await.unwrap();
    let control = Db::from_pool(pool, Scope::Control);
    let a = tenant_with_config(&control, "tenant-a").await;
    let a_login = tenant_login(&control, &base, a).await.unwrap();
    let worker_db = Db::connect(a_login.clone(), Scope::Worker(a), 2)
        .await
        .unwrap();

    // A batch of real decisions, held by a worker at epoch 1 ...
    let stale = take_lease(&worker_db, a, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(stale, 1);
    let tenant_config = load_config(&worker_db, a).await.unwrap();
    let mut engine = Engine::new(
        EngineConfig {
            strategies: tenant_config.strategies,
            risk: tenant_config.risk,
            balances: vec![(Venue::Polymarket, dec!(1000)), (Venue::Kalshi, dec!(1000))],
        },
        EventClock::default(),
    )
    .unwrap();
    let mut recorder = Recorder::new([7u8; 32], Mode::Paper);
    let mut paper = polybot_engine::PaperExchange::default();
    let text = std::fs::read_to_string(fixture()).unwrap();
    let events: Vec<_> = Replay::new(text.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap();
    let mut decisions = Vec::new();
    for event in &events {
        decisions.clear();
        engine.on_event(event, &mut decisions).unwrap();
        paper.execute(&mut engine, &mut decisions);
        recorder.record(&engine, &decisions);
    }
    // Four opportunities, the refused 15-minute pair across venues, 11 trades.
    assert_eq!(recorder.pending(), 4 + 1 + 11);
    // ... whose lease a twin takes (epoch 2): its flush is refused, nothing is written.
    assert_eq!(
        take_lease(&worker_db, a, Duration::from_secs(30))
            .await
            .unwrap(),
        2
    );
    let err = recorder
        .flush(&worker_db, a, stale, &engine.portfolio().balances)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            DbError::Fenced {
                mine: 1,
                current: 2,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(recorder.pending(), 16, "the batch is kept, not lost");
    let mut a_conn = a_login.connect().await.unwrap();
    for table in ["opportunities", "trades", "balances"] {
        assert_eq!(count(&mut a_conn, table).await, 0, "{table}");
    }

    // A running worker whose lease is taken stops with the fenced error.
    let worker = tokio::spawn(polybot_worker::run(
        worker_config(a, a_login.clone(), Pace::Speed(Decimal::ONE)),
        CancellationToken::new(),
    ));
    let mut epoch = 0;
    for _ in 0..100 {
        epoch =
            sqlx::query_scalar::<_, i64>("SELECT coalesce(max(epoch), 0) FROM worker_heartbeats")
                .fetch_one(&mut a_conn)
                .await
                .unwrap();
        if epoch == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(epoch, 3, "the worker's first heartbeat");
    assert_eq!(
        take_lease(&worker_db, a, Duration::from_secs(30))
            .await
            .unwrap(),
        4
    );
    let stopped = tokio::time::timeout(Duration::from_secs(10), worker)
        .await
        .expect("the fenced worker stops")
        .unwrap();
    match stopped {
        Err(WorkerError::Fenced(DbError::Fenced {
            mine: 3,
            current: 4,
            ..
        })) => {}
        other => panic!("expected the worker to be fenced, got {other:?}"),
    }
    // It was fenced before its first opportunity: nothing of epoch 3 but
    // heartbeats and (decided when the markets were listed) the refused
    // 15-minute pair across venues.
    let opportunities: i64 =
        sqlx::query_scalar("SELECT count(*) FROM opportunities WHERE details -> 'refused' IS NULL")
            .fetch_one(&mut a_conn)
            .await
            .unwrap();
    assert_eq!(opportunities, 0);
    worker_db.close().await;
}

/// Issue 22: the worker through PgBouncer with the shared worker login and
/// its tenant's claim plays the same recording and writes the same rows,
/// which only its tenant's claim reads; the other tenant's claim reads none.
#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_worker_through_pgbouncer_with_its_claim_writes_rows_only_its_tenant_can_read(
    pool_opts: PgPoolOptions,
    base: PgConnectOptions,
) {
    let pool = pool_opts.connect_with(base.clone()).await.unwrap();
    let control = Db::from_pool(pool, Scope::Control);
    let a = tenant_with_config(&control, "tenant-a").await;
    let b = tenant_with_config(&control, "tenant-b").await;
    let pooler = polybot_store::testing::TestPooler::start(&control, &base, 2).await;
    let shared = pooler.connect_options(base.get_database().unwrap());
    let year = Duration::from_secs(365 * 24 * 3600);
    let a_claim = polybot_store::testing::mint_claim(&control, a, year)
        .await
        .unwrap();
    let b_claim = polybot_store::testing::mint_claim(&control, b, year)
        .await
        .unwrap();

    let mut config = worker_config(a, shared.clone(), Pace::AsFastAsPossible);
    config.claim = Some(a_claim.clone());
    polybot_worker::run(config, CancellationToken::new())
        .await
        .unwrap();

    let counts = |tenant: TenantId, claim: polybot_store::WorkerClaim| {
        let shared = shared.clone();
        async move {
            let db = Db::connect_worker(shared, tenant, Some(claim), 1)
                .await
                .unwrap();
            let mut tx = db.tenant(tenant).await.unwrap();
            let mut seen = Vec::new();
            for table in ["opportunities", "trades", "balances", "worker_heartbeats"] {
                seen.push(count(&mut tx, table).await);
            }
            tx.commit().await.unwrap();
            db.close().await;
            seen
        }
    };
    let a_sees = counts(a, a_claim).await;
    assert!(a_sees.iter().all(|n| *n > 0), "{a_sees:?}");
    let mut a_direct = control.tenant(a).await.unwrap();
    let mut stored = Vec::new();
    for table in ["opportunities", "trades", "balances", "worker_heartbeats"] {
        stored.push(count(&mut a_direct, table).await);
    }
    a_direct.commit().await.unwrap();
    assert_eq!(a_sees, stored);
    assert_eq!(counts(b, b_claim).await, vec![0, 0, 0, 0]);
}
