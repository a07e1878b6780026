//! Shadow and live execution through the worker, against the CLOB stand-in:
//! an opportunity becomes signed orders the stand-in fills, and the tenant's
//! trades come from those fills, marked `live`; a timeout after the venue
//! took an order does not double it; a fenced twin sends nothing; a restart
//! finds the order its predecessor left open; shadow mode sends nothing; an
//! order in doubt after every retry, or found open at start, has its later
//! fills booked (the latter as `carried`).

use std::sync::Arc;
use std::time::Duration;

use polybot_core::keys::{ExchangeKeys, parse_exchange_keys};
use polybot_core::strategy::Venue;
use polybot_core::{Mode, TenantId};
use polybot_engine::{Decision, Engine, EngineConfig, EventClock, Replay};
use polybot_store::repo::audit;
use polybot_store::testing::{create_tenant, tenant_login};
use polybot_store::{Db, Scope};
use polybot_venues::execution::polymarket::{
    ApiCredentials, POLYGON, PolymarketExecutor, PolymarketKeys, PolymarketSettings,
};
use polybot_venues::execution::user_channel::UserChannelOptions;
use polybot_venues::execution::{
    ClientOrderId, ExecError, Executor, NoFence, OrderRequest, OrderSide, TimeInForce,
};
use polybot_venues::testing::{ClobStandIn, Fault, StandInMarket};
use polybot_worker::execution::{DbFence, Execution, ExecutionSettings};
use polybot_worker::{Pace, ReplaySettings, WorkerConfig, take_lease};
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use secrecy::SecretString;
use serde_json::{Value, json};
use sqlx::ConnectOptions;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tokio_util::sync::CancellationToken;

/// Anvil's first test key and its address.
const KEY: &str = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
const ADDRESS: &str = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266";

struct Venue1 {
    clob: ClobStandIn,
    market: StandInMarket,
    keys: ExchangeKeys,
    sdk_keys: PolymarketKeys,
}

/// The stand-in with one binary market whose YES and NO asks add up to
/// 0.95: a complement arbitrage of 100 sets.
async fn venue() -> Venue1 {
    let clob = ClobStandIn::start(POLYGON).await;
    let (api_key, secret, passphrase) = clob.open_account(ADDRESS, dec!(1000));
    let market = StandInMarket::binary(1);
    clob.list_market(market.clone());
    clob.set_asks(&market.tokens[0], &[(dec!(0.40), dec!(100))]);
    clob.set_asks(&market.tokens[1], &[(dec!(0.55), dec!(100))]);
    let keys = parse_exchange_keys(&json!({"polymarket": {
        "private_key": KEY, "api_key": api_key, "secret": secret, "passphrase": passphrase,
    }}))
    .unwrap_or_else(|e| panic!("{e:?}"));
    let sdk_keys = PolymarketKeys {
        private_key: SecretString::from(KEY),
        api: Some(ApiCredentials {
            api_key: SecretString::from(api_key),
            secret: SecretString::from(secret),
            passphrase: SecretString::from(passphrase),
        }),
    };
    Venue1 {
        clob,
        market,
        keys,
        sdk_keys,
    }
}

/// A recording of the market's books at the stand-in's prices.
fn recording(
    dir: &tempfile::TempDir,
    market: &StandInMarket,
    with_books: bool,
) -> std::path::PathBuf {
    let mut lines = vec![json!({
        "type": "market", "ts": 1_777_467_540_000_i64, "market": "pm-eth-5k", "venue": "polymarket",
        "outcomes": ["Yes", "No"], "fee_rate": "0.07", "question": "ETH above 5000 on Friday?",
        "condition_id": market.condition_id, "tokens": market.tokens,
    })];
    if with_books {
        lines.push(
            json!({"type": "book", "ts": 1_777_467_550_000_i64, "market": "pm-eth-5k",
            "outcome": "Yes", "bids": [["0.36", "50"]], "asks": [["0.40", "100"]]}),
        );
        lines.push(
            json!({"type": "book", "ts": 1_777_467_551_000_i64, "market": "pm-eth-5k",
            "outcome": "No", "bids": [["0.50", "100"]], "asks": [["0.55", "100"]]}),
        );
    }
    let path = dir.path().join("replay.jsonl");
    let text: Vec<String> = lines.iter().map(Value::to_string).collect();
    std::fs::write(&path, text.join("\n")).unwrap_or_else(|e| panic!("{e}"));
    path
}

async fn tenant(db: &Db) -> TenantId {
    tenant_with_risk(db, json!({})).await
}

async fn tenant_with_risk(db: &Db, risk: Value) -> TenantId {
    let tenant = create_tenant(db, "live-tenant").await.unwrap();
    let mut tx = db.tenant(tenant).await.unwrap();
    sqlx::query("INSERT INTO tenant_configs (tenant_id, strategies, risk) VALUES ($1, $2, $3)")
        .bind(tenant.as_uuid())
        .bind(json!({"complement_arb": {}}))
        .bind(risk)
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    tenant
}

/// The newest heartbeat's health.
async fn last_health(login: &PgConnectOptions) -> Option<Value> {
    let mut conn = login.connect().await.unwrap();
    sqlx::query_scalar("SELECT health FROM worker_heartbeats ORDER BY id DESC LIMIT 1")
        .fetch_optional(&mut conn)
        .await
        .unwrap()
}

/// Polls `check` every 50 ms until it holds or 20 s pass; returns whether it held.
async fn eventually<F, Fut>(mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..400 {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

fn settings(clob: &ClobStandIn) -> ExecutionSettings {
    ExecutionSettings {
        polymarket: PolymarketSettings {
            host: clob.url(),
            chain_id: POLYGON,
            timeout: Duration::from_millis(400),
        },
        user_channel: Some(clob.ws_url()),
        user_channel_options: UserChannelOptions {
            reconnect_min: Duration::from_millis(50),
            reconnect_max: Duration::from_millis(200),
            ping_interval: Duration::from_secs(10),
        },
        poll_every: Duration::from_millis(100),
        venue_heartbeat_every: Duration::from_millis(100),
        ..ExecutionSettings::default()
    }
}

fn config(
    tenant: TenantId,
    login: PgConnectOptions,
    mode: Mode,
    venue: &Venue1,
    replay: std::path::PathBuf,
) -> WorkerConfig {
    WorkerConfig {
        tenant,
        database: login,
        claim: None,
        keys: venue.keys.clone(),
        mode,
        spec_hash: "test-spec".into(),
        heartbeat: Duration::from_millis(200),
        replay: Some(ReplaySettings {
            path: replay,
            pace: Pace::AsFastAsPossible,
            exit_at_end: true,
        }),
        live: None,
        paper_balances: vec![(Venue::Polymarket, dec!(1000))],
        flush_every: Duration::from_millis(50),
        flush_rows: 500,
        sandbox_files: Vec::new(),
        execution: settings(&venue.clob),
    }
}

type Trade = (String, String, Decimal, Decimal, Decimal, String);

async fn trades(login: &PgConnectOptions) -> Vec<Trade> {
    let mut conn = login.connect().await.unwrap();
    sqlx::query_as(
        "SELECT market, outcome, price, size, fee, mode FROM trades ORDER BY outcome DESC",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap()
}

async fn opportunity_details(login: &PgConnectOptions) -> Vec<(Value, bool)> {
    let mut conn = login.connect().await.unwrap();
    sqlx::query_as(
        "SELECT details, executed_at IS NOT NULL FROM opportunities ORDER BY detected_at",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap()
}

async fn reconciled(control: &Db, tenant: TenantId) -> Vec<Value> {
    let mut tx = control.tenant(tenant).await.unwrap();
    let entries = audit::list(&mut tx).await.unwrap();
    tx.commit().await.unwrap();
    entries
        .into_iter()
        .filter(|e| e.action == "venue.reconciled" && e.actor == "worker")
        .map(|e| e.details)
        .collect()
}

fn s(x: &str) -> String {
    x.to_owned()
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn an_opportunity_becomes_signed_orders_the_venue_fills_and_the_trades_say_live(
    pool_opts: PgPoolOptions,
    base: PgConnectOptions,
) {
    let control = Db::from_pool(
        pool_opts.connect_with(base.clone()).await.unwrap(),
        Scope::Control,
    );
    let a = tenant(&control).await;
    let login = tenant_login(&control, &base, a).await.unwrap();
    let venue = venue().await;
    let dir = tempfile::tempdir().unwrap();
    let replay = recording(&dir, &venue.market, true);

    polybot_worker::run(
        config(a, login.clone(), Mode::Live, &venue, replay),
        CancellationToken::new(),
    )
    .await
    .unwrap();

    assert_eq!(venue.clob.order_posts(), 2);
    assert_eq!(
        venue.clob.position(ADDRESS, &venue.market.tokens[0]),
        dec!(100)
    );
    assert_eq!(
        venue.clob.position(ADDRESS, &venue.market.tokens[1]),
        dec!(100)
    );
    // 100 × 0.07 × p × (1 − p) per leg.
    assert_eq!(
        trades(&login).await,
        vec![
            (
                s("pm-eth-5k"),
                s("Yes"),
                dec!(0.4),
                dec!(100),
                dec!(1.68),
                s("live")
            ),
            (
                s("pm-eth-5k"),
                s("No"),
                dec!(0.55),
                dec!(100),
                dec!(1.7325),
                s("live")
            ),
        ]
    );
    let opportunities = opportunity_details(&login).await;
    assert_eq!(opportunities.len(), 1);
    let (details, executed) = &opportunities[0];
    assert!(executed);
    let orders = details["orders"].as_array().cloned().unwrap_or_default();
    assert_eq!(orders.len(), 2, "{details}");
    assert_eq!(orders[0]["state"], "filled");
    assert_eq!(orders[0]["filled"], "100");
    assert!(
        orders[0]["venue_order_id"]
            .as_str()
            .unwrap_or_default()
            .starts_with("0x")
    );
    assert_eq!(orders[0]["wire"]["orderType"], "FAK");
    // Before trading, the worker read the venue and recorded what it found.
    let found = reconciled(&control, a).await;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["balances"][0]["amount"], "1000");
    assert_eq!(found[0]["open_orders"], json!([]));
    // The cash the worker books is the venue's: 1000 − 95 − 3.4125.
    assert_eq!(venue.clob.balance(ADDRESS), dec!(901.5875));
    let mut conn = login.connect().await.unwrap();
    let cash: Decimal =
        sqlx::query_scalar("SELECT amount FROM balances WHERE venue = 'polymarket'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(cash, dec!(901.5875));
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_timeout_after_the_venue_took_the_order_does_not_double_it(
    pool_opts: PgPoolOptions,
    base: PgConnectOptions,
) {
    let control = Db::from_pool(
        pool_opts.connect_with(base.clone()).await.unwrap(),
        Scope::Control,
    );
    let a = tenant(&control).await;
    let login = tenant_login(&control, &base, a).await.unwrap();
    let venue = venue().await;
    venue
        .clob
        .push_fault(Fault::AcceptThenStall(Duration::from_secs(2)));
    let dir = tempfile::tempdir().unwrap();
    let replay = recording(&dir, &venue.market, true);

    polybot_worker::run(
        config(a, login.clone(), Mode::Live, &venue, replay),
        CancellationToken::new(),
    )
    .await
    .unwrap();

    assert_eq!(
        venue.clob.order_posts(),
        2,
        "one post per leg, none repeated"
    );
    assert_eq!(venue.clob.orders_taken(), 2);
    assert_eq!(
        venue.clob.position(ADDRESS, &venue.market.tokens[0]),
        dec!(100)
    );
    let trades = trades(&login).await;
    assert_eq!(trades.len(), 2, "{trades:?}");
    assert_eq!(trades[0].3, dec!(100));
    let (details, _) = &opportunity_details(&login).await[0];
    assert_eq!(details["orders"][0]["recovered"], true, "{details}");
    assert_eq!(details["orders"][1]["recovered"], false, "{details}");
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn shadow_mode_signs_and_records_the_orders_and_sends_none(
    pool_opts: PgPoolOptions,
    base: PgConnectOptions,
) {
    let control = Db::from_pool(
        pool_opts.connect_with(base.clone()).await.unwrap(),
        Scope::Control,
    );
    let a = tenant(&control).await;
    let login = tenant_login(&control, &base, a).await.unwrap();
    let venue = venue().await;
    let dir = tempfile::tempdir().unwrap();
    let replay = recording(&dir, &venue.market, true);

    polybot_worker::run(
        config(a, login.clone(), Mode::Shadow, &venue, replay),
        CancellationToken::new(),
    )
    .await
    .unwrap();

    assert_eq!(venue.clob.order_posts(), 0);
    assert!(trades(&login).await.is_empty());
    let opportunities = opportunity_details(&login).await;
    assert_eq!(opportunities.len(), 1);
    let (details, executed) = &opportunities[0];
    assert!(!executed, "{details}");
    assert_eq!(
        details["not_executed"],
        "shadow: orders signed and not sent"
    );
    let orders = details["orders"].as_array().cloned().unwrap_or_default();
    assert_eq!(orders.len(), 2);
    for order in &orders {
        assert_eq!(order["state"], "not_sent");
        assert!(
            order["wire"]["order"]["signature"]
                .as_str()
                .unwrap_or_default()
                .starts_with("0x"),
            "{order}"
        );
    }
    assert_eq!(orders[0]["wire"]["order"]["side"], "BUY");
    assert_eq!(
        orders[0]["wire"]["order"]["tokenId"],
        venue.market.tokens[0].as_str()
    );
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_fenced_twin_sends_no_order(pool_opts: PgPoolOptions, base: PgConnectOptions) {
    let control = Db::from_pool(
        pool_opts.connect_with(base.clone()).await.unwrap(),
        Scope::Control,
    );
    let a = tenant(&control).await;
    let login = tenant_login(&control, &base, a).await.unwrap();
    let worker_db = Db::connect(login.clone(), Scope::Worker(a), 2)
        .await
        .unwrap();
    let venue = venue().await;
    let dir = tempfile::tempdir().unwrap();
    let replay = recording(&dir, &venue.market, true);

    // The twin holds epoch 1; a newer worker takes epoch 2.
    let stale = take_lease(&worker_db, a, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(
        take_lease(&worker_db, a, Duration::from_secs(30))
            .await
            .unwrap(),
        2
    );
    let fence = Arc::new(DbFence {
        db: worker_db.clone(),
        tenant: a,
        epoch: stale,
    });
    let executor =
        polybot_worker::execution::connect(Mode::Live, &venue.keys, &settings(&venue.clob), fence)
            .await
            .unwrap()
            .expect("live mode has an executor");
    let mut execution = Execution::new(executor, a, stale);
    let mut engine = Engine::new(
        EngineConfig {
            strategies: polybot_core::strategy::parse_strategies(&json!({"complement_arb": {}}))
                .unwrap(),
            risk: Default::default(),
            balances: vec![(Venue::Polymarket, dec!(1000))],
        },
        EventClock::default(),
    )
    .unwrap();
    let text = std::fs::read_to_string(&replay).unwrap();
    let mut decisions = Vec::new();
    let mut refused = None;
    for event in Replay::new(text.as_bytes()) {
        decisions.clear();
        engine.on_event(&event.unwrap(), &mut decisions).unwrap();
        if decisions.iter().any(|d| matches!(d, Decision::Order(_))) {
            refused = Some(execution.execute(&mut engine, &mut decisions).await);
        }
    }
    assert!(
        matches!(refused, Some(Err(ExecError::Fenced { epoch: 2 }))),
        "{refused:?}"
    );
    assert_eq!(venue.clob.order_posts(), 0);
    worker_db.close().await;
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_restart_finds_the_order_its_predecessor_left_open(
    pool_opts: PgPoolOptions,
    base: PgConnectOptions,
) {
    let control = Db::from_pool(
        pool_opts.connect_with(base.clone()).await.unwrap(),
        Scope::Control,
    );
    let a = tenant(&control).await;
    let login = tenant_login(&control, &base, a).await.unwrap();
    let venue = venue().await;
    // A resting order the previous worker left at the venue.
    let previous = PolymarketExecutor::connect(
        &settings(&venue.clob).polymarket,
        &venue.sdk_keys,
        Arc::new(NoFence),
    )
    .await
    .unwrap();
    let rules = previous
        .market_rules(&venue.market.condition_id)
        .await
        .unwrap();
    let left = previous
        .place(
            &OrderRequest {
                client_id: ClientOrderId::derive(a.as_uuid().as_bytes(), 1, 1),
                market: venue.market.condition_id.clone(),
                instrument: venue.market.tokens[0].clone(),
                side: OrderSide::Buy,
                price: dec!(0.30),
                size: dec!(10),
                time_in_force: TimeInForce::GoodTillCancelled,
            },
            &rules,
        )
        .await
        .unwrap();
    assert_eq!(
        venue.clob.open_order_ids(),
        vec![left.venue_order_id.clone()]
    );
    let dir = tempfile::tempdir().unwrap();
    let replay = recording(&dir, &venue.market, false);

    polybot_worker::run(
        config(a, login.clone(), Mode::Live, &venue, replay),
        CancellationToken::new(),
    )
    .await
    .unwrap();

    let found = reconciled(&control, a).await;
    assert_eq!(found.len(), 1);
    let open = found[0]["open_orders"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(open.len(), 1, "{}", found[0]);
    assert_eq!(open[0]["venue_order_id"], left.venue_order_id.as_str());
    assert_eq!(open[0]["price"], "0.3");
    // Stopping, it left nothing resting.
    assert!(venue.clob.open_order_ids().is_empty());
    assert_eq!(venue.clob.order_posts(), 1);
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn the_kill_switch_cancels_open_orders_without_a_restart(
    pool_opts: PgPoolOptions,
    base: PgConnectOptions,
) {
    let control = Db::from_pool(
        pool_opts.connect_with(base.clone()).await.unwrap(),
        Scope::Control,
    );
    let a = tenant(&control).await;
    let login = tenant_login(&control, &base, a).await.unwrap();
    let venue = venue().await;
    let resting = PolymarketExecutor::connect(
        &settings(&venue.clob).polymarket,
        &venue.sdk_keys,
        Arc::new(NoFence),
    )
    .await
    .unwrap();
    let rules = resting
        .market_rules(&venue.market.condition_id)
        .await
        .unwrap();
    let mut request = OrderRequest {
        client_id: ClientOrderId::derive(a.as_uuid().as_bytes(), 9, 1),
        market: venue.market.condition_id.clone(),
        instrument: venue.market.tokens[0].clone(),
        side: OrderSide::Buy,
        price: dec!(0.30),
        size: dec!(10),
        time_in_force: TimeInForce::GoodTillCancelled,
    };
    resting.place(&request, &rules).await.unwrap();
    request.client_id = ClientOrderId::derive(a.as_uuid().as_bytes(), 9, 2);
    resting.place(&request, &rules).await.unwrap();
    assert_eq!(venue.clob.open_order_ids().len(), 2);
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(
        a,
        login.clone(),
        Mode::Live,
        &venue,
        recording(&dir, &venue.market, false),
    );
    if let Some(replay) = config.replay.as_mut() {
        replay.exit_at_end = false;
    }
    let stop = CancellationToken::new();
    let worker = tokio::spawn(polybot_worker::run(config, stop.clone()));
    assert!(eventually(|| async { !reconciled(&control, a).await.is_empty() }).await);
    assert_eq!(venue.clob.open_order_ids().len(), 2);

    let mut tx = control.tenant(a).await.unwrap();
    sqlx::query("UPDATE tenant_configs SET risk = '{\"kill_switch\": true}'")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();

    assert!(
        eventually(|| async { venue.clob.open_order_ids().is_empty() }).await,
        "the open orders were cancelled"
    );
    assert!(
        eventually(|| async {
            last_health(&login)
                .await
                .is_some_and(|h| h["kill_switch"] == true)
        })
        .await
    );
    assert!(!worker.is_finished(), "the same worker runs on");
    stop.cancel();
    worker.await.unwrap().unwrap();
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_venue_failing_every_order_opens_the_strategys_breaker(
    pool_opts: PgPoolOptions,
    base: PgConnectOptions,
) {
    let control = Db::from_pool(
        pool_opts.connect_with(base.clone()).await.unwrap(),
        Scope::Control,
    );
    let a = tenant_with_risk(&control, json!({"breaker_failure_threshold": 2})).await;
    let login = tenant_login(&control, &base, a).await.unwrap();
    let venue = venue().await;
    // Every attempt at both legs answers 500: four attempts per order.
    for _ in 0..8 {
        venue.clob.push_fault(Fault::ServerError);
    }
    let dir = tempfile::tempdir().unwrap();
    let replay = recording(&dir, &venue.market, true);

    polybot_worker::run(
        config(a, login.clone(), Mode::Live, &venue, replay),
        CancellationToken::new(),
    )
    .await
    .unwrap();

    assert_eq!(venue.clob.order_posts(), 8);
    assert_eq!(venue.clob.orders_taken(), 0);
    assert!(trades(&login).await.is_empty());
    let health = last_health(&login).await.unwrap_or_default();
    assert_eq!(
        health["strategies"]["complement_arb"]["breaker"], "open",
        "{health}"
    );
    let (details, executed) = &opportunity_details(&login).await[0];
    assert!(!executed);
    assert_eq!(details["orders"][0]["state"], "in_doubt", "{details}");
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn an_order_over_the_notional_cap_is_refused_in_paper_shadow_and_live(
    pool_opts: PgPoolOptions,
    base: PgConnectOptions,
) {
    let control = Db::from_pool(
        pool_opts.connect_with(base.clone()).await.unwrap(),
        Scope::Control,
    );
    // The NO leg is 100 at 0.55: 55 committed, over a cap of 50.
    let refusal =
        "an order in pm-eth-5k would commit 55.00 (100 at 0.55), over max_order_notional 50";
    for mode in [Mode::Paper, Mode::Shadow, Mode::Live] {
        let a = create_tenant(&control, &format!("capped-{mode}"))
            .await
            .unwrap();
        let mut tx = control.tenant(a).await.unwrap();
        sqlx::query("INSERT INTO tenant_configs (tenant_id, strategies, risk) VALUES ($1, $2, $3)")
            .bind(a.as_uuid())
            .bind(json!({"complement_arb": {}}))
            .bind(json!({"max_order_notional": "50"}))
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let login = tenant_login(&control, &base, a).await.unwrap();
        let venue = venue().await;
        let dir = tempfile::tempdir().unwrap();
        let replay = recording(&dir, &venue.market, true);

        polybot_worker::run(
            config(a, login.clone(), mode, &venue, replay),
            CancellationToken::new(),
        )
        .await
        .unwrap();

        assert_eq!(venue.clob.order_posts(), 0, "{mode}");
        assert!(trades(&login).await.is_empty(), "{mode}");
        let opportunities = opportunity_details(&login).await;
        assert_eq!(opportunities.len(), 1, "{mode}");
        let (details, executed) = &opportunities[0];
        assert!(!executed, "{mode}: {details}");
        assert_eq!(details["not_executed"], refusal, "{mode}: {details}");
        assert_eq!(details.get("orders"), None, "{mode}: {details}");
    }
}

/// Runs a live worker on the book recording until `stop`.
fn spawn_live(
    a: TenantId,
    login: &PgConnectOptions,
    venue: &Venue1,
    replay: std::path::PathBuf,
    stop: &CancellationToken,
) -> tokio::task::JoinHandle<Result<(), polybot_worker::WorkerError>> {
    let mut config = config(a, login.clone(), Mode::Live, venue, replay);
    if let Some(replay) = config.replay.as_mut() {
        replay.exit_at_end = false;
    }
    tokio::spawn(polybot_worker::run(config, stop.clone()))
}

async fn cash(login: &PgConnectOptions) -> Option<Decimal> {
    let mut conn = login.connect().await.unwrap();
    sqlx::query_scalar("SELECT amount FROM balances WHERE venue = 'polymarket'")
        .fetch_optional(&mut conn)
        .await
        .unwrap()
}

fn both_legs_live() -> Vec<Trade> {
    vec![
        (
            s("pm-eth-5k"),
            s("Yes"),
            dec!(0.4),
            dec!(100),
            dec!(1.68),
            s("live"),
        ),
        (
            s("pm-eth-5k"),
            s("No"),
            dec!(0.55),
            dec!(100),
            dec!(1.7325),
            s("live"),
        ),
    ]
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_fill_made_after_the_orders_answer_arrives_on_the_user_channel_and_is_booked_once(
    pool_opts: PgPoolOptions,
    base: PgConnectOptions,
) {
    let control = Db::from_pool(
        pool_opts.connect_with(base.clone()).await.unwrap(),
        Scope::Control,
    );
    let a = tenant(&control).await;
    let login = tenant_login(&control, &base, a).await.unwrap();
    let venue = venue().await;
    // The venue takes both orders as "delayed" and matches them later.
    venue.clob.hold_matching(true);
    let dir = tempfile::tempdir().unwrap();
    let stop = CancellationToken::new();
    let worker = spawn_live(
        a,
        &login,
        &venue,
        recording(&dir, &venue.market, true),
        &stop,
    );
    assert!(eventually(|| async { venue.clob.user_channel_subscribers() == 1 }).await);
    assert!(eventually(|| async { venue.clob.held_order_ids().len() == 2 }).await);
    assert!(trades(&login).await.is_empty(), "nothing filled yet");

    let released = venue.clob.release_held();
    assert_eq!(released.len(), 2);
    assert!(eventually(|| async { trades(&login).await.len() >= 2 }).await);
    assert!(eventually(|| async { cash(&login).await == Some(dec!(901.5875)) }).await);
    stop.cancel();
    worker.await.unwrap().unwrap();

    // Each trade came twice on the channel (matched, then confirmed): one row each.
    assert_eq!(trades(&login).await, both_legs_live());
    assert_eq!(venue.clob.order_posts(), 2);
    assert_eq!(venue.clob.balance(ADDRESS), dec!(901.5875));
    assert_eq!(cash(&login).await, Some(dec!(901.5875)));
    let (details, executed) = &opportunity_details(&login).await[0];
    assert!(executed, "{details}");
    assert_eq!(details["orders"][0]["state"], "pending", "{details}");
    assert_eq!(details.get("not_executed"), None, "{details}");
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn with_the_user_channel_down_a_later_fill_is_found_by_polling(
    pool_opts: PgPoolOptions,
    base: PgConnectOptions,
) {
    let control = Db::from_pool(
        pool_opts.connect_with(base.clone()).await.unwrap(),
        Scope::Control,
    );
    let a = tenant(&control).await;
    let login = tenant_login(&control, &base, a).await.unwrap();
    let venue = venue().await;
    venue.clob.set_user_channel(false);
    venue.clob.hold_matching(true);
    let dir = tempfile::tempdir().unwrap();
    let stop = CancellationToken::new();
    let worker = spawn_live(
        a,
        &login,
        &venue,
        recording(&dir, &venue.market, true),
        &stop,
    );
    assert!(eventually(|| async { venue.clob.held_order_ids().len() == 2 }).await);

    venue.clob.release_held();
    assert!(eventually(|| async { trades(&login).await.len() >= 2 }).await);
    assert!(eventually(|| async { cash(&login).await == Some(dec!(901.5875)) }).await);
    stop.cancel();
    worker.await.unwrap().unwrap();

    assert_eq!(venue.clob.user_channel_subscribers(), 0);
    assert_eq!(trades(&login).await, both_legs_live());
    assert_eq!(cash(&login).await, Some(dec!(901.5875)));
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn when_the_venues_heartbeat_fails_the_worker_cancels_its_orders_and_says_so(
    pool_opts: PgPoolOptions,
    base: PgConnectOptions,
) {
    let control = Db::from_pool(
        pool_opts.connect_with(base.clone()).await.unwrap(),
        Scope::Control,
    );
    let a = tenant(&control).await;
    let login = tenant_login(&control, &base, a).await.unwrap();
    let venue = venue().await;
    // The venue itself would wait a minute: any cancel before is the worker's.
    venue.clob.set_heartbeat_timeout(Duration::from_secs(60));
    let previous = PolymarketExecutor::connect(
        &settings(&venue.clob).polymarket,
        &venue.sdk_keys,
        Arc::new(NoFence),
    )
    .await
    .unwrap();
    let rules = previous
        .market_rules(&venue.market.condition_id)
        .await
        .unwrap();
    let resting = previous
        .place(
            &OrderRequest {
                client_id: ClientOrderId::derive(a.as_uuid().as_bytes(), 1, 1),
                market: venue.market.condition_id.clone(),
                instrument: venue.market.tokens[0].clone(),
                side: OrderSide::Buy,
                price: dec!(0.30),
                size: dec!(10),
                time_in_force: TimeInForce::GoodTillCancelled,
            },
            &rules,
        )
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let stop = CancellationToken::new();
    let worker = spawn_live(
        a,
        &login,
        &venue,
        recording(&dir, &venue.market, false),
        &stop,
    );
    assert!(eventually(|| async { venue.clob.heartbeats_received() >= 2 }).await);
    assert_eq!(
        venue.clob.open_order_ids(),
        vec![resting.venue_order_id.clone()]
    );

    venue.clob.fail_heartbeats(true);
    assert!(eventually(|| async { venue.clob.open_order_ids().is_empty() }).await);
    assert_eq!(venue.clob.cancel_all_requests(), 1);
    assert!(venue.clob.expired_orders().is_empty());
    let said = "the venue's cancel-on-disconnect heartbeat failed";
    assert!(
        eventually(|| async {
            last_health(&login).await.is_some_and(|h| {
                h["last_error"]
                    .as_str()
                    .is_some_and(|e| e.contains(said) && e.contains("cancelled 1 open orders"))
            })
        })
        .await,
        "{:?}",
        last_health(&login).await
    );
    assert!(!worker.is_finished(), "the worker runs on");
    stop.cancel();
    worker.await.unwrap().unwrap();
    let mut tx = control.tenant(a).await.unwrap();
    let lost: Vec<Value> = audit::list(&mut tx)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "venue.heartbeat_lost" && e.actor == "worker")
        .map(|e| e.details)
        .collect();
    tx.commit().await.unwrap();
    assert_eq!(lost.len(), 1, "{lost:?}");
    assert!(
        lost[0]["error"]
            .as_str()
            .is_some_and(|e| e.starts_with(said)),
        "{lost:?}"
    );
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn cancelling_every_order_frees_the_open_order_slots_of_working_orders(
    pool_opts: PgPoolOptions,
    base: PgConnectOptions,
) {
    let control = Db::from_pool(
        pool_opts.connect_with(base.clone()).await.unwrap(),
        Scope::Control,
    );
    let a = tenant(&control).await;
    let login = tenant_login(&control, &base, a).await.unwrap();
    let worker_db = Db::connect(login.clone(), Scope::Worker(a), 2)
        .await
        .unwrap();
    let epoch = take_lease(&worker_db, a, Duration::from_secs(30))
        .await
        .unwrap();
    let venue = venue().await;
    venue.clob.hold_matching(true);
    let fence = Arc::new(DbFence {
        db: worker_db.clone(),
        tenant: a,
        epoch,
    });
    let mut execution = polybot_worker::execution::start(
        Mode::Live,
        &venue.keys,
        &settings(&venue.clob),
        fence,
        a,
        epoch,
    )
    .await
    .unwrap();
    let mut engine = Engine::new(
        EngineConfig {
            strategies: polybot_core::strategy::parse_strategies(&json!({"complement_arb": {}}))
                .unwrap(),
            risk: Default::default(),
            balances: vec![(Venue::Polymarket, dec!(1000))],
        },
        EventClock::default(),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(recording(&dir, &venue.market, true)).unwrap();
    let mut decisions = Vec::new();
    for event in Replay::new(text.as_bytes()) {
        decisions.clear();
        engine.on_event(&event.unwrap(), &mut decisions).unwrap();
        if decisions.iter().any(|d| matches!(d, Decision::Order(_))) {
            execution
                .execute(&mut engine, &mut decisions)
                .await
                .unwrap();
        }
    }
    // Both legs are held by the venue: working, and counted as open.
    assert_eq!(venue.clob.held_order_ids().len(), 2);
    assert!(execution.has_working_orders());
    assert_eq!(engine.open_orders(), 2);

    let cancelled = execution
        .cancel_all(&mut engine, "cancelled: the kill switch is on")
        .await
        .unwrap();

    assert_eq!(cancelled.len(), 2);
    assert!(venue.clob.open_order_ids().is_empty());
    assert!(!execution.has_working_orders());
    assert_eq!(engine.open_orders(), 0);
    worker_db.close().await;
}

/// An earlier run of tenant `a` bought 10 YES at 0.40: the venue holds them.
async fn bought_earlier(venue: &Venue1, a: TenantId) {
    let previous = PolymarketExecutor::connect(
        &settings(&venue.clob).polymarket,
        &venue.sdk_keys,
        Arc::new(NoFence),
    )
    .await
    .unwrap();
    let rules = previous
        .market_rules(&venue.market.condition_id)
        .await
        .unwrap();
    previous
        .place(
            &OrderRequest {
                client_id: ClientOrderId::derive(a.as_uuid().as_bytes(), 1, 1),
                market: venue.market.condition_id.clone(),
                instrument: venue.market.tokens[0].clone(),
                side: OrderSide::Buy,
                price: dec!(0.40),
                size: dec!(10),
                time_in_force: TimeInForce::ImmediateOrCancel,
            },
            &rules,
        )
        .await
        .unwrap();
    assert_eq!(
        venue.clob.position(ADDRESS, &venue.market.tokens[0]),
        dec!(10)
    );
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_position_held_at_start_counts_towards_the_per_market_limit(
    pool_opts: PgPoolOptions,
    base: PgConnectOptions,
) {
    let control = Db::from_pool(
        pool_opts.connect_with(base.clone()).await.unwrap(),
        Scope::Control,
    );
    // The set costs 95; with the 4 already held the market would hold 99.
    let a = tenant_with_risk(&control, json!({"max_position_per_market": "97"})).await;
    let login = tenant_login(&control, &base, a).await.unwrap();
    let venue = venue().await;
    bought_earlier(&venue, a).await;
    let dir = tempfile::tempdir().unwrap();
    let replay = recording(&dir, &venue.market, true);

    polybot_worker::run(
        config(a, login.clone(), Mode::Live, &venue, replay),
        CancellationToken::new(),
    )
    .await
    .unwrap();

    let found = reconciled(&control, a).await;
    assert_eq!(
        found[0]["carried"],
        json!([{
            "market": venue.market.condition_id, "instrument": venue.market.tokens[0],
            "size": "10", "cost": "4",
        }]),
        "{}",
        found[0]
    );
    assert_eq!(venue.clob.order_posts(), 1, "only the earlier run's order");
    assert!(trades(&login).await.is_empty());
    let (details, executed) = &opportunity_details(&login).await[0];
    assert!(!executed);
    assert_eq!(
        details["not_executed"],
        "position in pm-eth-5k would be 99.00, over max_position_per_market 97",
        "{details}"
    );
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_position_held_at_start_whose_bid_fell_shows_its_loss_and_trips_the_daily_loss_limit(
    pool_opts: PgPoolOptions,
    base: PgConnectOptions,
) {
    let control = Db::from_pool(
        pool_opts.connect_with(base.clone()).await.unwrap(),
        Scope::Control,
    );
    // 10 YES cost 4; the recording bids 0.36 for YES: 0.40 lost today.
    let a = tenant_with_risk(&control, json!({"max_daily_loss": "0.4"})).await;
    let login = tenant_login(&control, &base, a).await.unwrap();
    let venue = venue().await;
    bought_earlier(&venue, a).await;
    let dir = tempfile::tempdir().unwrap();
    let replay = recording(&dir, &venue.market, true);

    polybot_worker::run(
        config(a, login.clone(), Mode::Live, &venue, replay),
        CancellationToken::new(),
    )
    .await
    .unwrap();

    let health = last_health(&login).await.expect("a heartbeat");
    let pnl = &health["pnl"];
    assert_eq!(pnl["unrealized"], "-0.4", "{pnl}");
    assert_eq!(pnl["daily"], "-0.4", "{pnl}");
    assert_eq!(pnl["exposure"], "4", "{pnl}");
    assert_eq!(pnl["daily_loss_limit_hit"], true, "{pnl}");
    let equity: Decimal = pnl["equity"].as_str().unwrap().parse().unwrap();
    let start: Decimal = pnl["starting_equity"].as_str().unwrap().parse().unwrap();
    assert_eq!(equity - start, dec!(-0.4), "{pnl}");
    assert_eq!(
        pnl["positions"],
        json!([{
            "strategy": "carried", "venue": "polymarket", "market": "pm-eth-5k",
            "outcome": "Yes", "quantity": "10", "avg_price": "0.4", "mark": "0.36",
            "locked": "0",
        }]),
        "{pnl}"
    );
    // The arbitrage the recording offers is refused: today's loss is at the limit.
    assert_eq!(venue.clob.order_posts(), 1, "only the earlier run's order");
    assert!(trades(&login).await.is_empty());
    let (details, executed) = &opportunity_details(&login).await[0];
    assert!(!executed);
    assert_eq!(
        details["not_executed"], "today's loss is 0.400, at or over max_daily_loss 0.4",
        "{details}"
    );
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn an_order_still_in_doubt_after_every_retry_is_found_later_and_its_fill_booked(
    pool_opts: PgPoolOptions,
    base: PgConnectOptions,
) {
    let control = Db::from_pool(
        pool_opts.connect_with(base.clone()).await.unwrap(),
        Scope::Control,
    );
    let a = tenant(&control).await;
    let login = tenant_login(&control, &base, a).await.unwrap();
    let venue = venue().await;
    // The YES leg is taken (and filled) but its answer never comes in time,
    // and every retry's look-up fails: the order is in doubt after all four
    // attempts. The venue answers the worker's next poll.
    venue
        .clob
        .push_fault(Fault::AcceptThenStall(Duration::from_secs(2)));
    venue.clob.fail_order_lookups(3);
    let dir = tempfile::tempdir().unwrap();
    let stop = CancellationToken::new();
    let worker = spawn_live(
        a,
        &login,
        &venue,
        recording(&dir, &venue.market, true),
        &stop,
    );
    assert!(eventually(|| async { trades(&login).await.len() >= 2 }).await);
    assert!(eventually(|| async { cash(&login).await == Some(dec!(901.5875)) }).await);
    stop.cancel();
    worker.await.unwrap().unwrap();

    // Booked once, as the strategy's trade, and never sent again.
    assert_eq!(trades(&login).await, both_legs_live());
    assert_eq!(venue.clob.order_posts(), 2);
    assert_eq!(venue.clob.orders_taken(), 2);
    assert_eq!(
        strategies_of_trades(&login).await,
        vec![s("complement_arb"); 2]
    );
    let (details, executed) = &opportunity_details(&login).await[0];
    assert!(executed, "{details}");
    assert_eq!(details["orders"][0]["state"], "in_doubt", "{details}");
    assert_eq!(details["orders"][1]["state"], "filled", "{details}");
}

async fn strategies_of_trades(login: &PgConnectOptions) -> Vec<String> {
    let mut conn = login.connect().await.unwrap();
    sqlx::query_scalar("SELECT strategy FROM trades ORDER BY outcome DESC")
        .fetch_all(&mut conn)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn an_order_found_open_at_start_that_fills_later_is_booked_as_a_carried_trade(
    pool_opts: PgPoolOptions,
    base: PgConnectOptions,
) {
    let control = Db::from_pool(
        pool_opts.connect_with(base.clone()).await.unwrap(),
        Scope::Control,
    );
    let a = tenant(&control).await;
    let login = tenant_login(&control, &base, a).await.unwrap();
    let venue = venue().await;
    // An earlier run's order for 10 YES up to 0.45, held by the venue.
    venue.clob.hold_matching(true);
    let previous = PolymarketExecutor::connect(
        &settings(&venue.clob).polymarket,
        &venue.sdk_keys,
        Arc::new(NoFence),
    )
    .await
    .unwrap();
    let rules = previous
        .market_rules(&venue.market.condition_id)
        .await
        .unwrap();
    let left = previous
        .place(
            &OrderRequest {
                client_id: ClientOrderId::derive(a.as_uuid().as_bytes(), 1, 1),
                market: venue.market.condition_id.clone(),
                instrument: venue.market.tokens[0].clone(),
                side: OrderSide::Buy,
                price: dec!(0.45),
                size: dec!(10),
                time_in_force: TimeInForce::GoodTillCancelled,
            },
            &rules,
        )
        .await
        .unwrap();
    assert_eq!(
        venue.clob.held_order_ids(),
        vec![left.venue_order_id.clone()]
    );
    let dir = tempfile::tempdir().unwrap();
    let stop = CancellationToken::new();
    // Only the market: no book, so the strategy trades nothing.
    let worker = spawn_live(
        a,
        &login,
        &venue,
        recording(&dir, &venue.market, false),
        &stop,
    );
    assert!(
        eventually(|| async {
            last_health(&login)
                .await
                .is_some_and(|h| h["source"]["finished"] == true)
        })
        .await
    );
    assert!(eventually(|| async { venue.clob.user_channel_subscribers() == 1 }).await);
    let found = reconciled(&control, a).await;
    assert_eq!(
        found[0]["open_orders"][0]["venue_order_id"],
        left.venue_order_id.as_str()
    );

    // The venue matches it now: 10 at the 0.40 ask.
    assert_eq!(venue.clob.release_held().len(), 1);
    assert!(eventually(|| async { !trades(&login).await.is_empty() }).await);
    assert!(
        eventually(|| async {
            last_health(&login)
                .await
                .is_some_and(|h| !h["pnl"]["by_strategy"]["carried"].is_null())
        })
        .await
    );
    let health = last_health(&login).await.unwrap_or_default();
    stop.cancel();
    worker.await.unwrap().unwrap();

    let trades = trades(&login).await;
    assert_eq!(trades.len(), 1, "{trades:?}");
    let (market, outcome, price, size, fee, mode) = trades[0].clone();
    assert_eq!(
        (
            market.as_str(),
            outcome.as_str(),
            price,
            size,
            mode.as_str()
        ),
        ("pm-eth-5k", "Yes", dec!(0.4), dec!(10), "live")
    );
    // The market's taker fee: 10 × 0.07 × 0.4 × 0.6.
    assert_eq!(fee, dec!(0.168));
    assert_eq!(strategies_of_trades(&login).await, vec![s("carried")]);
    // Bought, not traded out: no realised PnL, its fee paid, its position
    // held by no strategy.
    let carried = &health["pnl"]["by_strategy"]["carried"];
    assert_eq!(carried["realized"], "0", "{health}");
    assert_eq!(carried["fees"], fee.to_string(), "{health}");
    let positions = health["pnl"]["positions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(positions.len(), 1, "{health}");
    assert_eq!(positions[0]["strategy"], "carried");
    assert_eq!(positions[0]["quantity"], "10");
    assert_eq!(positions[0]["avg_price"], "0.4");
    let start: Decimal = found[0]["balances"][0]["amount"]
        .as_str()
        .unwrap_or_default()
        .parse()
        .unwrap();
    assert_eq!(cash(&login).await, Some(start - dec!(4) - fee));
    assert_eq!(venue.clob.order_posts(), 1, "the worker sent nothing");
}
