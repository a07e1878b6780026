//! The single-tenant bot's tables are copied into the `default` tenant, once.

use polybot_store::legacy::{self, DEFAULT_TENANT};
use polybot_store::repo::opportunities;
use polybot_store::{Db, Scope};
use rust_decimal_macros::dec;
use sqlx::PgPool;

/// The tables as the Python bot created them (its later versions; `executed_at`
/// arrived late, so the older variant has only the `executed` flag).
async fn create_legacy_tables(pool: &PgPool, with_executed_at: bool) {
    let executed_at = if with_executed_at {
        ", executed_at TIMESTAMP"
    } else {
        ""
    };
    sqlx::raw_sql(&format!(
        "CREATE TABLE polybot_opportunities (
            id SERIAL PRIMARY KEY,
            timestamp TIMESTAMP DEFAULT NOW(),
            strategy VARCHAR(50),
            platform VARCHAR(20),
            market_id VARCHAR(100),
            market_question TEXT,
            side VARCHAR(10),
            price DECIMAL(10, 4),
            expected_profit DECIMAL(10, 4),
            confidence DECIMAL(5, 4),
            executed BOOLEAN DEFAULT FALSE,
            metadata JSONB{executed_at});
         CREATE TABLE polybot_trades (
            id SERIAL PRIMARY KEY,
            timestamp TIMESTAMP DEFAULT NOW(),
            strategy VARCHAR(50),
            platform VARCHAR(20),
            market_id VARCHAR(100),
            side VARCHAR(10),
            price DECIMAL(10, 4),
            size DECIMAL(18, 6),
            fee DECIMAL(18, 6),
            pnl DECIMAL(18, 6),
            order_id VARCHAR(100),
            status VARCHAR(20),
            paper BOOLEAN DEFAULT TRUE);
         CREATE TABLE polybot_balances (
            id SERIAL PRIMARY KEY,
            timestamp TIMESTAMP DEFAULT NOW(),
            platform VARCHAR(20),
            asset VARCHAR(20),
            balance DECIMAL(18, 6));"
    ))
    .execute(pool)
    .await
    .unwrap();
    let executed_at_value = if with_executed_at {
        ", '2025-03-01 12:00:05'"
    } else {
        ""
    };
    let executed_at_column = if with_executed_at {
        ", executed_at"
    } else {
        ""
    };
    sqlx::raw_sql(&format!(
        "INSERT INTO polybot_opportunities
            (timestamp, strategy, platform, market_id, market_question, side, price, expected_profit,
             confidence, executed, metadata{executed_at_column})
         VALUES
            ('2025-03-01 12:00:00', 'cross_platform_arb', 'polymarket', '0xabc', 'Will BTC close above 100k?',
             'YES', 0.4200, 0.0310, 0.9, TRUE, '{{\"kalshi_ticker\": \"KXBTC-25MAR01\"}}'{executed_at_value}),
            ('2025-03-01 12:01:00', 'complement_arb', 'kalshi', 'KXETH-25MAR01', 'ETH above 4k?',
             'NO', 0.5100, 0.0120, 0.7, FALSE, NULL{null});
         INSERT INTO polybot_trades (timestamp, strategy, platform, market_id, side, price, size, fee, pnl, order_id, status, paper)
         VALUES ('2025-03-01 12:00:06', 'cross_platform_arb', 'polymarket', '0xabc', 'BUY', 0.4200, 100, 0.61, 3.10, 'o-1', 'filled', TRUE);
         INSERT INTO polybot_balances (timestamp, platform, asset, balance) VALUES
            ('2025-03-01 11:00:00', 'polymarket', 'USDC', 1000),
            ('2025-03-01 13:00:00', 'polymarket', 'USDC', 1003.10),
            ('2025-03-01 13:00:00', 'kalshi', 'USD', 500);",
        null = if with_executed_at { ", NULL" } else { "" },
    ))
    .execute(pool)
    .await
    .unwrap();
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn legacy_rows_land_in_the_default_tenant_once(pool: PgPool) {
    create_legacy_tables(&pool, true).await;
    let db = Db::from_pool(pool, Scope::Control);

    let first = legacy::import(&db).await.unwrap();
    let counts: Vec<(&str, u64, u64)> = first
        .tables
        .iter()
        .map(|t| (t.target, t.found, t.imported))
        .collect();
    assert_eq!(
        counts,
        vec![
            ("opportunities", 2, 2),
            ("trades", 1, 1),
            ("balances", 3, 2)
        ]
    );

    let again = legacy::import(&db).await.unwrap();
    let counts: Vec<(&str, u64, u64)> = again
        .tables
        .iter()
        .map(|t| (t.target, t.found, t.imported))
        .collect();
    assert_eq!(
        counts,
        vec![
            ("opportunities", 2, 0),
            ("trades", 1, 0),
            ("balances", 3, 0)
        ]
    );
    assert_eq!(
        again.to_string().lines().next().unwrap(),
        "polybot_opportunities → opportunities (tenant default): 2 rows, 0 imported now"
    );

    let mut tx = db.tenant(DEFAULT_TENANT).await.unwrap();
    let rows = opportunities::list(&mut tx, 10, None).await.unwrap();
    assert_eq!(rows.len(), 2);
    let arb = rows.iter().find(|o| o.market == "0xabc").unwrap();
    assert_eq!(arb.strategy, "cross_platform_arb");
    assert_eq!(arb.venue, "polymarket");
    assert_eq!(arb.description, "Will BTC close above 100k?");
    assert_eq!(arb.expected_profit, Some(dec!(0.0310)));
    assert_eq!(
        arb.executed_at.unwrap().to_rfc3339(),
        "2025-03-01T12:00:05+00:00"
    );
    assert_eq!(arb.details["metadata"]["kalshi_ticker"], "KXBTC-25MAR01");
    let other = rows.iter().find(|o| o.market == "KXETH-25MAR01").unwrap();
    assert_eq!(other.executed_at, None);

    let (price, size, fee, pnl, mode): (
        rust_decimal::Decimal,
        rust_decimal::Decimal,
        rust_decimal::Decimal,
        Option<rust_decimal::Decimal>,
        String,
    ) = sqlx::query_as("SELECT price, size, fee, realized_pnl, mode FROM trades")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(
        (price, size, fee, pnl, mode.as_str()),
        (dec!(0.42), dec!(100), dec!(0.61), Some(dec!(3.10)), "paper")
    );

    let balances: Vec<(String, String, rust_decimal::Decimal)> =
        sqlx::query_as("SELECT venue, asset, amount FROM balances ORDER BY venue")
            .fetch_all(&mut *tx)
            .await
            .unwrap();
    assert_eq!(
        balances,
        vec![
            ("kalshi".into(), "USD".into(), dec!(500)),
            ("polymarket".into(), "USDC".into(), dec!(1003.10))
        ]
    );
    let (name, state): (String, String) = sqlx::query_as("SELECT name, state FROM tenants")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!((name.as_str(), state.as_str()), ("default", "paused"));
    tx.commit().await.unwrap();
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn an_old_opportunities_table_without_executed_at_uses_the_executed_flag(pool: PgPool) {
    create_legacy_tables(&pool, false).await;
    let db = Db::from_pool(pool, Scope::Control);
    legacy::import(&db).await.unwrap();

    let mut tx = db.tenant(DEFAULT_TENANT).await.unwrap();
    let rows = opportunities::list(&mut tx, 10, None).await.unwrap();
    let executed: Vec<(String, Option<String>)> = rows
        .iter()
        .map(|o| (o.market.clone(), o.executed_at.map(|t| t.to_rfc3339())))
        .collect();
    assert_eq!(
        executed,
        vec![
            ("KXETH-25MAR01".to_owned(), None),
            (
                "0xabc".to_owned(),
                Some("2025-03-01T12:00:00+00:00".to_owned())
            ),
        ]
    );
    tx.commit().await.unwrap();
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_database_without_legacy_tables_imports_nothing(pool: PgPool) {
    let db = Db::from_pool(pool, Scope::Control);
    let report = legacy::import(&db).await.unwrap();
    assert!(report.is_empty());
    assert_eq!(report.to_string(), "no legacy tables found");
}
