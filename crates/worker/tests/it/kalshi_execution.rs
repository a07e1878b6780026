//! Live execution on Kalshi through the worker, against the Kalshi
//! stand-in: an opportunity on a Kalshi market becomes RSA-PSS signed
//! orders the stand-in verifies, takes and fills; the tenant's trades come
//! from those fills with Kalshi's fees, marked `live`; a timeout after the
//! exchange took an order does not double it; shadow mode sends nothing.

use std::time::Duration;

use polybot_core::keys::{ExchangeKeys, parse_exchange_keys};
use polybot_core::strategy::Venue;
use polybot_core::{Mode, TenantId};
use polybot_store::repo::audit;
use polybot_store::testing::{create_tenant, tenant_login};
use polybot_store::{Db, Scope};
use polybot_venues::execution::kalshi::KalshiSettings;
use polybot_venues::testing::{KalshiFault, KalshiStandIn};
use polybot_worker::execution::ExecutionSettings;
use polybot_worker::{Pace, ReplaySettings, WorkerConfig};
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use serde_json::{Value, json};
use sqlx::ConnectOptions;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tokio_util::sync::CancellationToken;

const PEM: &str = include_str!("../../../venues/tests/fixtures/kalshi_test_key_pkcs8.pem");
const KEY_ID: &str = "a952bcbe-ec3b-4b5b-b8f9-11dae589608c";
const TICKER: &str = "KXETH-26JAN01-T5000";

/// The stand-in with the market's book: YES bids 0.50 × 100 and NO bids
/// 0.55 × 100, so YES asks 0.45 and NO asks 0.50 — 100 sets for 0.95.
async fn stand_in() -> KalshiStandIn {
    let kalshi = KalshiStandIn::start().await;
    kalshi.open_account_for_private_key(KEY_ID, PEM, dec!(1000));
    kalshi.list_market(TICKER);
    kalshi.set_book(
        TICKER,
        &[(dec!(0.50), dec!(100))],
        &[(dec!(0.55), dec!(100))],
    );
    kalshi
}

fn keys() -> ExchangeKeys {
    parse_exchange_keys(&json!({"kalshi": {"key_id": KEY_ID, "private_key_pem": PEM}}))
        .unwrap_or_else(|e| panic!("{e:?}"))
}

/// A recording of the Kalshi market at the stand-in's book (bids only, as
/// Kalshi publishes it; the engine mirrors the asks).
fn recording(dir: &tempfile::TempDir) -> std::path::PathBuf {
    let lines = [
        json!({
            "type": "market", "ts": 1_777_467_540_000_i64, "market": TICKER, "venue": "kalshi",
            "outcomes": ["Yes", "No"], "fee_rate": "0.07", "question": "ETH above 5000?",
        }),
        json!({"type": "book", "ts": 1_777_467_550_000_i64, "market": TICKER,
            "outcome": "Yes", "bids": [["0.50", "100"]], "asks": []}),
        json!({"type": "book", "ts": 1_777_467_551_000_i64, "market": TICKER,
            "outcome": "No", "bids": [["0.55", "100"]], "asks": []}),
    ];
    let path = dir.path().join("kalshi.jsonl");
    let text: Vec<String> = lines.iter().map(Value::to_string).collect();
    std::fs::write(&path, text.join("\n")).unwrap_or_else(|e| panic!("{e}"));
    path
}

async fn tenant(db: &Db) -> TenantId {
    let tenant = create_tenant(db, "kalshi-tenant").await.unwrap();
    let mut tx = db.tenant(tenant).await.unwrap();
    sqlx::query("INSERT INTO tenant_configs (tenant_id, strategies, risk) VALUES ($1, $2, $3)")
        .bind(tenant.as_uuid())
        .bind(json!({"complement_arb": {"venues": ["kalshi"]}}))
        .bind(json!({}))
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    tenant
}

fn config(
    tenant: TenantId,
    login: PgConnectOptions,
    mode: Mode,
    kalshi: &KalshiStandIn,
    replay: std::path::PathBuf,
) -> WorkerConfig {
    WorkerConfig {
        tenant,
        database: login,
        claim: None,
        keys: keys(),
        mode,
        spec_hash: "test-spec".into(),
        heartbeat: Duration::from_millis(200),
        replay: Some(ReplaySettings {
            path: replay,
            pace: Pace::AsFastAsPossible,
            exit_at_end: true,
        }),
        live: None,
        paper_balances: vec![(Venue::Kalshi, dec!(1000))],
        flush_every: Duration::from_millis(50),
        flush_rows: 500,
        sandbox_files: Vec::new(),
        execution: ExecutionSettings {
            kalshi: KalshiSettings {
                base: kalshi.url(),
                timeout: Duration::from_millis(400),
                ..KalshiSettings::default()
            },
            ..ExecutionSettings::default()
        },
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

fn s(x: &str) -> String {
    x.to_owned()
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn an_opportunity_on_kalshi_becomes_signed_orders_the_exchange_fills_and_the_trades_say_live(
    pool_opts: PgPoolOptions,
    base: PgConnectOptions,
) {
    let control = Db::from_pool(
        pool_opts.connect_with(base.clone()).await.unwrap(),
        Scope::Control,
    );
    let a = tenant(&control).await;
    let login = tenant_login(&control, &base, a).await.unwrap();
    let kalshi = stand_in().await;
    let dir = tempfile::tempdir().unwrap();

    polybot_worker::run(
        config(a, login.clone(), Mode::Live, &kalshi, recording(&dir)),
        CancellationToken::new(),
    )
    .await
    .unwrap();

    assert_eq!(kalshi.order_creates(), 2);
    assert!(kalshi.rejections().is_empty(), "{:?}", kalshi.rejections());
    // 100 YES and 100 NO: the position nets to zero at Kalshi.
    assert_eq!(kalshi.position(KEY_ID, TICKER), dec!(0));
    // Kalshi's fees: ceil_cent(0.07 × 100 × p × (1 − p)) per leg.
    assert_eq!(
        trades(&login).await,
        vec![
            (
                s(TICKER),
                s("Yes"),
                dec!(0.45),
                dec!(100),
                dec!(1.74),
                s("live")
            ),
            (
                s(TICKER),
                s("No"),
                dec!(0.50),
                dec!(100),
                dec!(1.75),
                s("live")
            ),
        ]
    );
    let opportunities = opportunity_details(&login).await;
    assert_eq!(opportunities.len(), 1);
    let (details, executed) = &opportunities[0];
    assert!(executed, "{details}");
    let orders = details["orders"].as_array().cloned().unwrap_or_default();
    assert_eq!(orders.len(), 2, "{details}");
    assert_eq!(orders[0]["state"], "filled");
    assert_eq!(orders[0]["filled"], "100");
    assert_eq!(orders[0]["wire"]["ticker"], TICKER);
    assert_eq!(orders[0]["wire"]["time_in_force"], "immediate_or_cancel");
    assert_eq!(orders[0]["wire"]["side"], "yes");
    assert_eq!(orders[1]["wire"]["side"], "no");
    // Every request the worker made was signed with the tenant's key and
    // verified with its public half; the worker read the account first.
    let signed = kalshi.signed_requests();
    assert!(
        signed.iter().position(|r| r == "GET /portfolio/balance")
            < signed.iter().position(|r| r == "POST /portfolio/orders"),
        "{signed:?}"
    );
    let mut tx = control.tenant(a).await.unwrap();
    let found: Vec<Value> = audit::list(&mut tx)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "venue.reconciled")
        .map(|e| e.details)
        .collect();
    tx.commit().await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(
        found[0]["venues"]["kalshi"]["balances"][0]["amount"],
        "1000"
    );
    // The cash the worker books is the exchange's: 1000 − 95 − 3.49.
    assert_eq!(kalshi.balance(KEY_ID), dec!(901.51));
    let mut conn = login.connect().await.unwrap();
    let cash: Decimal = sqlx::query_scalar("SELECT amount FROM balances WHERE venue = 'kalshi'")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(cash, dec!(901.51));
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_live_kalshi_worker_listens_on_the_fill_channel_and_books_each_fill_once(
    pool_opts: PgPoolOptions,
    base: PgConnectOptions,
) {
    let control = Db::from_pool(
        pool_opts.connect_with(base.clone()).await.unwrap(),
        Scope::Control,
    );
    let a = tenant(&control).await;
    let login = tenant_login(&control, &base, a).await.unwrap();
    let kalshi = stand_in().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(a, login.clone(), Mode::Live, &kalshi, recording(&dir));
    config.execution.kalshi_ws = Some(kalshi.ws_url());
    // The recording's 11 s at 5× speed: the fill channel is subscribed
    // well before the order, whose fills the stand-in pushes on it too.
    if let Some(replay) = config.replay.as_mut() {
        replay.pace = Pace::Speed(dec!(5));
    }

    polybot_worker::run(config, CancellationToken::new())
        .await
        .unwrap();

    assert_eq!(kalshi.order_creates(), 2);
    // The handshake was signed with the tenant's key and verified.
    assert_eq!(kalshi.ws_handshakes(), 1);
    assert_eq!(
        kalshi.ws_commands(),
        vec![json!({"id": 1, "cmd": "subscribe", "params": {"channels": ["fill"]}})]
    );
    // Each fill came in the order's answer and on the channel: booked once.
    let booked = trades(&login).await;
    assert_eq!(
        booked
            .iter()
            .map(|(_, outcome, price, size, fee, _)| (outcome.clone(), *price, *size, *fee))
            .collect::<Vec<_>>(),
        vec![
            (s("Yes"), dec!(0.45), dec!(100), dec!(1.74)),
            (s("No"), dec!(0.50), dec!(100), dec!(1.75)),
        ]
    );
    assert_eq!(kalshi.balance(KEY_ID), dec!(901.51));
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_kalshi_timeout_after_the_exchange_took_the_order_does_not_double_it(
    pool_opts: PgPoolOptions,
    base: PgConnectOptions,
) {
    let control = Db::from_pool(
        pool_opts.connect_with(base.clone()).await.unwrap(),
        Scope::Control,
    );
    let a = tenant(&control).await;
    let login = tenant_login(&control, &base, a).await.unwrap();
    let kalshi = stand_in().await;
    kalshi.push_fault(KalshiFault::AcceptThenStall(Duration::from_secs(2)));
    let dir = tempfile::tempdir().unwrap();

    polybot_worker::run(
        config(a, login.clone(), Mode::Live, &kalshi, recording(&dir)),
        CancellationToken::new(),
    )
    .await
    .unwrap();

    // The first leg's create was sent twice and taken once.
    assert_eq!(kalshi.order_creates(), 3);
    assert_eq!(kalshi.orders_taken(), 2);
    let trades = trades(&login).await;
    assert_eq!(trades.len(), 2, "{trades:?}");
    let (details, _) = &opportunity_details(&login).await[0];
    assert_eq!(details["orders"][0]["recovered"], true, "{details}");
    assert_eq!(details["orders"][1]["recovered"], false, "{details}");
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn kalshi_shadow_mode_signs_the_orders_and_sends_none(
    pool_opts: PgPoolOptions,
    base: PgConnectOptions,
) {
    let control = Db::from_pool(
        pool_opts.connect_with(base.clone()).await.unwrap(),
        Scope::Control,
    );
    let a = tenant(&control).await;
    let login = tenant_login(&control, &base, a).await.unwrap();
    let kalshi = stand_in().await;
    let dir = tempfile::tempdir().unwrap();

    polybot_worker::run(
        config(a, login.clone(), Mode::Shadow, &kalshi, recording(&dir)),
        CancellationToken::new(),
    )
    .await
    .unwrap();

    assert_eq!(kalshi.order_creates(), 0);
    assert!(trades(&login).await.is_empty());
    let (details, executed) = &opportunity_details(&login).await[0];
    assert!(!executed, "{details}");
    let orders = details["orders"].as_array().cloned().unwrap_or_default();
    assert_eq!(orders.len(), 2);
    assert!(orders.iter().all(|o| o["state"] == "not_sent"), "{details}");
    assert_eq!(orders[0]["wire"]["yes_price_dollars"], "0.4500");
}
