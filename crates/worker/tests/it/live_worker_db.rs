//! A tenant's worker on live data (a local mock of every venue) and a real
//! database: it writes the opportunities the engine finds, and its
//! heartbeats report the geo-blocked venue and the rate-limited news API.

use crate::live_mock;

use std::time::Duration;

use polybot_core::Mode;
use polybot_core::strategy::Venue;
use polybot_store::testing::{create_tenant, tenant_login};
use polybot_store::{Db, Scope};
use polybot_worker::WorkerConfig;
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgConnection};
use tokio_util::sync::CancellationToken;

/// The opportunities with an edge (refused cross-venue pairs have none).
async fn opportunities(conn: &mut PgConnection) -> Vec<(String, String, String, Decimal, Decimal)> {
    sqlx::query_as(
        "SELECT strategy, venue, market, edge, size FROM opportunities \
         WHERE edge IS NOT NULL ORDER BY detected_at",
    )
    .fetch_all(conn)
    .await
    .unwrap()
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_worker_on_live_data_writes_opportunities_and_reports_venue_health(
    pool_opts: PgPoolOptions,
    base: PgConnectOptions,
) {
    let server = live_mock::start().await;
    let pool = pool_opts.connect_with(base.clone()).await.unwrap();
    let control = Db::from_pool(pool, Scope::Control);
    let tenant = create_tenant(&control, "live-tenant").await.unwrap();
    let mut tx = control.tenant(tenant).await.unwrap();
    sqlx::query("INSERT INTO tenant_configs (tenant_id, strategies, risk) VALUES ($1, $2, '{}')")
        .bind(tenant.as_uuid())
        .bind(live_mock::strategies(&server))
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let login = tenant_login(&control, &base, tenant).await.unwrap();

    let config = WorkerConfig {
        tenant,
        database: login.clone(),
        claim: None,
        keys: live_mock::keys(),
        mode: Mode::Paper,
        spec_hash: "live-test".into(),
        heartbeat: Duration::from_millis(200),
        replay: None,
        live: Some(live_mock::settings(&server)),
        paper_balances: vec![(Venue::Polymarket, dec!(1000)), (Venue::Kalshi, dec!(1000))],
        flush_every: Duration::from_millis(100),
        flush_rows: 500,
        sandbox_files: Vec::new(),
        execution: Default::default(),
    };
    let stop = CancellationToken::new();
    let worker = tokio::spawn(polybot_worker::run(config, stop.clone()));

    // Wait (bounded) until the worker has written an opportunity and a
    // heartbeat that has heard from NewsAPI and Binance US.
    let mut conn = login.connect().await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let written = opportunities(&mut conn).await;
        let health: Option<Value> =
            sqlx::query_scalar("SELECT health FROM worker_heartbeats ORDER BY id DESC LIMIT 1")
                .fetch_optional(&mut conn)
                .await
                .unwrap();
        let heard = health.is_some_and(|h| {
            h["venues"]["newsapi"]["status"] == "rate_limited"
                && h["venues"]["binance_us"]["status"] == "geo_blocked"
        });
        if !written.is_empty() && heard {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no opportunity or no venue health within the deadline: {written:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.cancel();
    worker.await.unwrap().unwrap();

    // Complement arbitrage on the mocked market: YES at 0.40 + NO at 0.45,
    // 100 sets, fees 0.07·p·(1−p) per share on each leg.
    let written = opportunities(&mut conn).await;
    let first = &written[0];
    assert_eq!(
        (first.0.as_str(), first.1.as_str(), first.2.as_str()),
        ("complement_arb", "polymarket", live_mock::ARB_MARKET)
    );
    let fees = dec!(0.07) * dec!(0.40) * dec!(0.60) + dec!(0.07) * dec!(0.45) * dec!(0.55);
    assert_eq!(first.3, Decimal::ONE - dec!(0.85) - fees);
    assert_eq!(first.4, dec!(100));

    // The 15-minute pair across venues (Polymarket on Chainlink, Kalshi on
    // CF Benchmarks) is refused by default, with the basis risk named.
    let refused: Vec<(String, Value)> = sqlx::query_as(
        "SELECT market, details FROM opportunities WHERE details -> 'refused' IS NOT NULL",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(
        refused[0].1["refused"]["basis_risk"], "chainlink_vs_cf_benchmarks",
        "{refused:?}"
    );

    // The final heartbeat: venues and the strategies' health.
    let health: Value =
        sqlx::query_scalar("SELECT health FROM worker_heartbeats ORDER BY id DESC LIMIT 1")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(health["phase"], "stopped");
    assert_eq!(health["venues"]["binance_us"]["status"], "geo_blocked");
    assert_eq!(health["venues"]["coinbase"]["status"], "ok");
    assert_eq!(health["venues"]["polymarket_clob"]["status"], "ok");
    assert_eq!(health["strategies"]["news_arb"]["status"], "rate_limited");
    assert_eq!(health["strategies"]["complement_arb"]["status"], "ok");
    assert_eq!(health["strategies"]["crypto_15m"]["status"], "degraded");
    assert!(
        health["source"]["description"]
            .as_str()
            .unwrap()
            .starts_with("live data: Polymarket, Kalshi"),
        "{}",
        health["source"]
    );
}
