//! Two-leg cross-venue execution through the worker, against both
//! stand-ins (the Polymarket CLOB and Kalshi): a cross-venue opportunity
//! (YES on Polymarket at 0.40, NO on Kalshi at 0.50) becomes one pair whose
//! legs go out together; a leg that fails or fills short is completed or
//! unwound within the tenant's limits; every pair is in the tenant's
//! paired-position ledger with its legs, status, locked edge or realised
//! loss; a venue that goes away mid-pair leaves the pair open, and the next
//! start settles it from both venues' fills.

use std::time::Duration;

use polybot_core::keys::{ExchangeKeys, parse_exchange_keys};
use polybot_core::strategy::Venue;
use polybot_core::{Mode, TenantId};
use polybot_store::testing::{create_tenant, tenant_login};
use polybot_store::{Db, Scope};
use polybot_venues::execution::kalshi::KalshiSettings;
use polybot_venues::execution::polymarket::{POLYGON, PolymarketSettings};
use polybot_venues::testing::{ClobStandIn, KalshiFault, KalshiStandIn, StandInMarket};
use polybot_worker::execution::ExecutionSettings;
use polybot_worker::{Pace, ReplaySettings, WorkerConfig};
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use serde_json::{Value, json};
use sqlx::ConnectOptions;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tokio_util::sync::CancellationToken;

/// Anvil's first test key and its address.
const KEY: &str = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
const ADDRESS: &str = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266";
const PEM: &str = include_str!("../../../venues/tests/fixtures/kalshi_test_key_pkcs8.pem");
const KEY_ID: &str = "a952bcbe-ec3b-4b5b-b8f9-11dae589608c";
const TICKER: &str = "KXETHD-26JAN01-T5000";
const SOURCE: &str = "https://www.cfbenchmarks.com/data/indices/ETHUSD_RTI";
const CLOSES: i64 = 1_777_500_000_000;

struct Venues {
    clob: ClobStandIn,
    kalshi: KalshiStandIn,
    market: StandInMarket,
    keys: ExchangeKeys,
}

/// Both stand-ins: Polymarket's YES asks 0.40 × 100 (bids 0.38 × 100, where
/// an unwind sells), Kalshi's YES bids `kalshi_yes_bids` (its NO asks at
/// 1 − bid) and NO bids 0.45 × 100.
async fn venues(kalshi_yes_bids: &[(Decimal, Decimal)]) -> Venues {
    let clob = ClobStandIn::start(POLYGON).await;
    let (api_key, secret, passphrase) = clob.open_account(ADDRESS, dec!(1000));
    let market = StandInMarket::binary(7);
    clob.list_market(market.clone());
    clob.set_asks(&market.tokens[0], &[(dec!(0.40), dec!(100))]);
    clob.set_bids(&market.tokens[0], &[(dec!(0.38), dec!(100))]);
    clob.set_asks(&market.tokens[1], &[(dec!(0.70), dec!(100))]);
    let kalshi = KalshiStandIn::start().await;
    kalshi.open_account_for_private_key(KEY_ID, PEM, dec!(1000));
    kalshi.list_market(TICKER);
    kalshi.set_book(TICKER, kalshi_yes_bids, &[(dec!(0.45), dec!(100))]);
    let keys = parse_exchange_keys(&json!({
        "polymarket": {
            "private_key": KEY, "api_key": api_key, "secret": secret, "passphrase": passphrase,
        },
        "kalshi": {"key_id": KEY_ID, "private_key_pem": PEM},
    }))
    .unwrap_or_else(|e| panic!("{e:?}"));
    Venues {
        clob,
        kalshi,
        market,
        keys,
    }
}

/// The two markets (same resolution source and close) and, with `books`,
/// the books the engine sees: YES on Polymarket at 0.40 plus NO on Kalshi
/// at 0.50 pays 1 for 0.90 before fees.
fn recording(dir: &tempfile::TempDir, market: &StandInMarket, books: bool) -> std::path::PathBuf {
    let mut lines = vec![
        json!({
            "type": "market", "ts": 1_777_467_540_000_i64, "market": "pm-eth-5k", "venue": "polymarket",
            "outcomes": ["Yes", "No"], "fee_rate": "0.07", "question": "ETH above 5000?",
            "resolution_source": SOURCE, "closes_at": CLOSES,
            "condition_id": market.condition_id, "tokens": market.tokens,
        }),
        json!({
            "type": "market", "ts": 1_777_467_540_000_i64, "market": TICKER, "venue": "kalshi",
            "outcomes": ["Yes", "No"], "fee_rate": "0.07", "question": "ETH above 5000?",
            "resolution_source": SOURCE, "closes_at": CLOSES,
        }),
    ];
    if books {
        lines.extend([
            json!({"type": "book", "ts": 1_777_467_550_000_i64, "market": "pm-eth-5k",
                "outcome": "Yes", "bids": [["0.38", "100"]], "asks": [["0.40", "100"]]}),
            json!({"type": "book", "ts": 1_777_467_550_100_i64, "market": "pm-eth-5k",
                "outcome": "No", "bids": [["0.25", "100"]], "asks": [["0.70", "100"]]}),
            json!({"type": "book", "ts": 1_777_467_550_200_i64, "market": TICKER,
                "outcome": "No", "bids": [["0.45", "100"]], "asks": []}),
            json!({"type": "book", "ts": 1_777_467_550_300_i64, "market": TICKER,
                "outcome": "Yes", "bids": [["0.50", "100"]], "asks": []}),
        ]);
    }
    let path = dir
        .path()
        .join(if books { "pair.jsonl" } else { "markets.jsonl" });
    let text: Vec<String> = lines.iter().map(Value::to_string).collect();
    std::fs::write(&path, text.join("\n")).unwrap_or_else(|e| panic!("{e}"));
    path
}

async fn tenant(db: &Db, risk: Value) -> TenantId {
    let tenant = create_tenant(db, "pair-tenant").await.unwrap();
    let mut tx = db.tenant(tenant).await.unwrap();
    sqlx::query("INSERT INTO tenant_configs (tenant_id, strategies, risk) VALUES ($1, $2, $3)")
        .bind(tenant.as_uuid())
        .bind(json!({"cross_venue_arb": {
            "match_recurring_crypto": false,
            "pairs": [{"polymarket": "pm-eth-5k", "kalshi": TICKER}],
        }}))
        .bind(risk)
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    tenant
}

fn config(
    tenant: TenantId,
    login: PgConnectOptions,
    v: &Venues,
    replay: std::path::PathBuf,
) -> WorkerConfig {
    WorkerConfig {
        tenant,
        database: login,
        claim: None,
        keys: v.keys.clone(),
        mode: Mode::Live,
        spec_hash: "test-spec".into(),
        heartbeat: Duration::from_millis(200),
        replay: Some(ReplaySettings {
            path: replay,
            pace: Pace::AsFastAsPossible,
            exit_at_end: true,
        }),
        live: None,
        paper_balances: vec![(Venue::Polymarket, dec!(1000)), (Venue::Kalshi, dec!(1000))],
        flush_every: Duration::from_millis(50),
        flush_rows: 500,
        sandbox_files: Vec::new(),
        execution: ExecutionSettings {
            polymarket: PolymarketSettings {
                host: v.clob.url(),
                chain_id: POLYGON,
                timeout: Duration::from_millis(400),
            },
            user_channel: None,
            poll_every: Duration::from_millis(100),
            venue_heartbeat_every: Duration::from_millis(100),
            kalshi: KalshiSettings {
                base: v.kalshi.url(),
                timeout: Duration::from_millis(400),
                ..KalshiSettings::default()
            },
            ..ExecutionSettings::default()
        },
    }
}

/// The ledger's pairs as (status, matched, locked edge, realised loss, legs,
/// resolution, note), oldest first.
type PairRow = (
    String,
    Decimal,
    Decimal,
    Decimal,
    Value,
    String,
    Option<String>,
);

async fn pairs(login: &PgConnectOptions) -> Vec<PairRow> {
    let mut conn = login.connect().await.unwrap();
    sqlx::query_as(
        "SELECT status, matched, locked_edge, realised_loss, legs, resolution, note \
         FROM paired_positions ORDER BY opened_at",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap()
}

/// (venue, side, outcome, price, size, fee) of every trade, by venue then time.
type Trade = (String, String, String, Decimal, Decimal, Decimal);

async fn trades(login: &PgConnectOptions) -> Vec<Trade> {
    let mut conn = login.connect().await.unwrap();
    sqlx::query_as(
        "SELECT venue, side, outcome, price, size, fee FROM trades \
         WHERE mode = 'live' ORDER BY venue DESC, executed_at, side",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap()
}

fn trade(
    venue: &str,
    side: &str,
    outcome: &str,
    price: Decimal,
    size: Decimal,
    fee: Decimal,
) -> Trade {
    (
        venue.to_owned(),
        side.to_owned(),
        outcome.to_owned(),
        price,
        size,
        fee,
    )
}

/// (step, venue, side, price, filled, fees) of each order of a pair.
fn steps(legs: &Value) -> Vec<(String, String, String, String, String, String)> {
    legs.as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|l| {
            let text = |k: &str| l[k].as_str().unwrap_or_default().to_owned();
            (
                text("step"),
                text("venue"),
                text("side"),
                text("price"),
                text("filled"),
                text("fees"),
            )
        })
        .collect()
}

fn step(
    s: &str,
    venue: &str,
    side: &str,
    price: &str,
    filled: &str,
    fees: &str,
) -> (String, String, String, String, String, String) {
    (
        s.into(),
        venue.into(),
        side.into(),
        price.into(),
        filled.into(),
        fees.into(),
    )
}

async fn setup(
    pool_opts: PgPoolOptions,
    base: &PgConnectOptions,
    risk: Value,
) -> (Db, TenantId, PgConnectOptions) {
    let control = Db::from_pool(
        pool_opts.connect_with(base.clone()).await.unwrap(),
        Scope::Control,
    );
    let a = tenant(&control, risk).await;
    let login = tenant_login(&control, base, a).await.unwrap();
    (control, a, login)
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn both_legs_fill_and_the_pair_is_locked_with_its_edge_after_both_venues_fees(
    pool_opts: PgPoolOptions,
    base: PgConnectOptions,
) {
    let (_control, a, login) = setup(pool_opts, &base, json!({})).await;
    let v = venues(&[(dec!(0.50), dec!(100))]).await;
    let dir = tempfile::tempdir().unwrap();

    polybot_worker::run(
        config(a, login.clone(), &v, recording(&dir, &v.market, true)),
        CancellationToken::new(),
    )
    .await
    .unwrap();

    assert_eq!(v.clob.order_posts(), 1);
    assert_eq!(v.kalshi.order_creates(), 1);
    assert_eq!(v.clob.position(ADDRESS, &v.market.tokens[0]), dec!(100));
    assert_eq!(v.kalshi.position(KEY_ID, TICKER), dec!(-100));
    let found = pairs(&login).await;
    assert_eq!(found.len(), 1, "{found:?}");
    let (status, matched, edge, loss, legs, resolution, note) = &found[0];
    assert_eq!(status, "locked");
    assert_eq!(*matched, dec!(100));
    // 100 × (1 − (0.40 + 1.68/100) − (0.50 + 1.75/100)).
    assert_eq!(*edge, dec!(6.57));
    assert_eq!(*loss, dec!(0));
    assert_eq!(note, &None);
    assert_eq!(
        steps(legs),
        vec![
            step("entry", "polymarket", "buy", "0.4", "100", "1.68"),
            step("entry", "kalshi", "buy", "0.5", "100", "1.75"),
        ]
    );
    assert_eq!(legs[0]["outcome"], "Yes");
    assert_eq!(legs[1]["outcome"], "No");
    assert_eq!(legs[1]["instrument"], "no");
    assert!(
        legs[0]["client_order_id"]
            .as_str()
            .is_some_and(|c| c.len() == 32),
        "{legs}"
    );
    assert!(legs[1]["venue_order_id"].as_str().is_some(), "{legs}");
    assert!(resolution.starts_with("100 complete sets"), "{resolution}");
    assert!(
        resolution.contains("against 93.43 paid with fees"),
        "{resolution}"
    );
    assert_eq!(
        trades(&login).await,
        vec![
            trade(
                "polymarket",
                "buy",
                "Yes",
                dec!(0.40),
                dec!(100),
                dec!(1.68)
            ),
            trade("kalshi", "buy", "No", dec!(0.50), dec!(100), dec!(1.75)),
        ]
    );
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_rejected_kalshi_leg_has_the_polymarket_leg_sold_back_and_the_loss_recorded(
    pool_opts: PgPoolOptions,
    base: PgConnectOptions,
) {
    let (_control, a, login) = setup(pool_opts, &base, json!({})).await;
    let v = venues(&[(dec!(0.50), dec!(100))]).await;
    v.kalshi
        .push_fault(KalshiFault::Reject("market_closed".into()));
    let dir = tempfile::tempdir().unwrap();

    polybot_worker::run(
        config(a, login.clone(), &v, recording(&dir, &v.market, true)),
        CancellationToken::new(),
    )
    .await
    .unwrap();

    // A refusal is not retried: one create, nothing taken at Kalshi.
    assert_eq!(v.kalshi.order_creates(), 1);
    assert_eq!(v.kalshi.orders_taken(), 0);
    assert_eq!(v.clob.order_posts(), 2);
    assert_eq!(v.clob.position(ADDRESS, &v.market.tokens[0]), dec!(0));
    let found = pairs(&login).await;
    let (status, matched, edge, loss, legs, resolution, _) = &found[0];
    assert_eq!(status, "unwound");
    assert_eq!(*matched, dec!(0));
    assert_eq!(*edge, dec!(0));
    // Bought at 0.4168 a share with fees, sold at 0.38 less 1.6492 of fees.
    assert_eq!(*loss, dec!(5.3292));
    assert_eq!(
        steps(legs),
        vec![
            step("entry", "polymarket", "buy", "0.4", "100", "1.68"),
            step("entry", "kalshi", "buy", "0.5", "0", "0"),
            step("unwind", "polymarket", "sell", "0.38", "100", "1.6492"),
        ]
    );
    assert!(
        legs[1]["error"]
            .as_str()
            .is_some_and(|e| e.contains("market_closed")),
        "{legs}"
    );
    assert_eq!(resolution, "nothing is held: nothing happens at resolution");
    assert_eq!(
        trades(&login).await,
        vec![
            trade(
                "polymarket",
                "buy",
                "Yes",
                dec!(0.40),
                dec!(100),
                dec!(1.68)
            ),
            trade(
                "polymarket",
                "sell",
                "Yes",
                dec!(0.38),
                dec!(100),
                dec!(1.6492)
            ),
        ]
    );
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_short_kalshi_fill_is_completed_within_the_slippage_limit(
    pool_opts: PgPoolOptions,
    base: PgConnectOptions,
) {
    let (_control, a, login) = setup(pool_opts, &base, json!({"pair_max_slippage": "0.02"})).await;
    // 60 NO at 0.50, then 40 at 0.51 (within 0.02 of the leg's limit).
    let v = venues(&[(dec!(0.49), dec!(40)), (dec!(0.50), dec!(60))]).await;
    let dir = tempfile::tempdir().unwrap();

    polybot_worker::run(
        config(a, login.clone(), &v, recording(&dir, &v.market, true)),
        CancellationToken::new(),
    )
    .await
    .unwrap();

    assert_eq!(v.kalshi.order_creates(), 2);
    assert_eq!(v.kalshi.position(KEY_ID, TICKER), dec!(-100));
    assert_eq!(v.clob.position(ADDRESS, &v.market.tokens[0]), dec!(100));
    let (status, matched, edge, loss, legs, _, _) = &pairs(&login).await[0];
    assert_eq!(status, "completed");
    assert_eq!(*matched, dec!(100));
    // Kalshi: (60 × 0.50 + 1.05 + 40 × 0.51 + 0.70) / 100 = 0.5215 a share.
    assert_eq!(*edge, dec!(6.17));
    assert_eq!(*loss, dec!(0));
    assert_eq!(
        steps(legs),
        vec![
            step("entry", "polymarket", "buy", "0.4", "100", "1.68"),
            step("entry", "kalshi", "buy", "0.5", "60", "1.05"),
            step("complete", "kalshi", "buy", "0.52", "40", "0.7"),
        ]
    );
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_short_kalshi_fill_that_cannot_be_completed_is_unwound_to_the_smaller_leg(
    pool_opts: PgPoolOptions,
    base: PgConnectOptions,
) {
    let (_control, a, login) = setup(pool_opts, &base, json!({"pair_max_slippage": "0.02"})).await;
    // 60 NO at 0.50, the rest at 0.60: beyond the slippage limit.
    let v = venues(&[(dec!(0.40), dec!(40)), (dec!(0.50), dec!(60))]).await;
    let dir = tempfile::tempdir().unwrap();

    polybot_worker::run(
        config(a, login.clone(), &v, recording(&dir, &v.market, true)),
        CancellationToken::new(),
    )
    .await
    .unwrap();

    // The entry and three completing attempts, none of which filled.
    assert_eq!(v.kalshi.order_creates(), 4);
    assert_eq!(v.kalshi.position(KEY_ID, TICKER), dec!(-60));
    assert_eq!(v.clob.position(ADDRESS, &v.market.tokens[0]), dec!(60));
    let (status, matched, edge, loss, legs, resolution, _) = &pairs(&login).await[0];
    assert_eq!(status, "unwound");
    assert_eq!(*matched, dec!(60));
    // 60 × (1 − 0.4168 − 0.5175).
    assert_eq!(*edge, dec!(3.942));
    // 40 × 0.4168 − (40 × 0.38 − 0.65968).
    assert_eq!(*loss, dec!(2.13168));
    let s = steps(legs);
    assert_eq!(s.len(), 6, "{legs}");
    assert_eq!(s[1], step("entry", "kalshi", "buy", "0.5", "60", "1.05"));
    assert_eq!(s[2], step("complete", "kalshi", "buy", "0.52", "0", "0"));
    assert_eq!(
        s[5],
        step("unwind", "polymarket", "sell", "0.38", "40", "0.65968")
    );
    assert!(resolution.starts_with("60 complete sets"), "{resolution}");
    assert!(!resolution.contains("unhedged"), "{resolution}");
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn kalshi_going_away_mid_pair_leaves_it_open_and_the_next_start_completes_it_from_both_venues_fills(
    pool_opts: PgPoolOptions,
    base: PgConnectOptions,
) {
    let risk = json!({"pair_max_latency_ms": 1000, "pair_max_repair_ms": 1000});
    let (_control, a, login) = setup(pool_opts, &base, risk).await;
    let v = venues(&[(dec!(0.50), dec!(100))]).await;
    // Kalshi answers every create with a 500 while the pair runs.
    for _ in 0..50 {
        v.kalshi.push_fault(KalshiFault::ServerError);
    }
    let dir = tempfile::tempdir().unwrap();

    polybot_worker::run(
        config(a, login.clone(), &v, recording(&dir, &v.market, true)),
        CancellationToken::new(),
    )
    .await
    .unwrap();

    assert_eq!(v.kalshi.orders_taken(), 0);
    assert_eq!(v.clob.position(ADDRESS, &v.market.tokens[0]), dec!(100));
    let found = pairs(&login).await;
    let (status, matched, _, _, legs, resolution, note) = &found[0];
    assert_eq!(status, "open");
    assert_eq!(*matched, dec!(0));
    assert!(
        note.as_deref().is_some_and(|n| n.contains("in doubt")),
        "{note:?}"
    );
    // The Polymarket leg filled (on its entry, or on asking again after an
    // answer a loaded machine lost).
    let polymarket_filled: Decimal = legs
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["venue"] == "polymarket")
        .filter_map(|l| l["filled"].as_str()?.parse::<Decimal>().ok())
        .sum();
    assert_eq!(polymarket_filled, dec!(100), "{legs}");
    assert!(
        resolution.contains("100 Yes shares on polymarket"),
        "{resolution}"
    );

    // Kalshi is back; the worker restarts on a recording without books (no
    // new opportunity) and settles the pair from both venues' fills.
    assert!(v.kalshi.clear_faults() > 0);
    let creates = v.kalshi.order_creates();
    polybot_worker::run(
        config(a, login.clone(), &v, recording(&dir, &v.market, false)),
        CancellationToken::new(),
    )
    .await
    .unwrap();

    assert_eq!(v.kalshi.order_creates(), creates + 1);
    assert_eq!(v.kalshi.position(KEY_ID, TICKER), dec!(-100));
    assert_eq!(v.clob.position(ADDRESS, &v.market.tokens[0]), dec!(100));
    assert_eq!(v.clob.order_posts(), 1);
    let found = pairs(&login).await;
    assert_eq!(found.len(), 1);
    let (status, matched, edge, loss, legs, _, note) = &found[0];
    assert_eq!(status, "completed");
    assert_eq!(*matched, dec!(100));
    assert_eq!(*edge, dec!(6.57));
    assert_eq!(*loss, dec!(0));
    assert!(
        note.as_deref()
            .is_some_and(|n| n.starts_with("recovered at start (epoch 2)")),
        "{note:?}"
    );
    assert_eq!(
        steps(legs),
        vec![
            step("recheck", "polymarket", "buy", "0.4", "100", "1.68"),
            step("complete", "kalshi", "buy", "0.52", "100", "1.75"),
        ]
    );
}
