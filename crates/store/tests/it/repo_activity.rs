//! A tenant's recent activity as its dashboard page reads it (the newest
//! opportunities, trades and audit entries, balances, the PnL curve), with a
//! second tenant whose rows must not appear.

use polybot_core::TenantId;
use polybot_store::repo::{audit, balances, heartbeats, opportunities, trades};
use polybot_store::testing::create_tenant;
use polybot_store::{Db, Scope};
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

/// Tenant "a" with activity of every kind, tenant "b" with one row of each
/// that a's reads must not show.
async fn two_tenants(pool: PgPool) -> (Db, TenantId, TenantId) {
    let db = Db::from_pool(pool, Scope::Control);
    let a = create_tenant(&db, "a").await.unwrap();
    let b = create_tenant(&db, "b").await.unwrap();
    exec(
        &db,
        a,
        &[
            "INSERT INTO opportunities (id, tenant_id, strategy, venue, market, description, edge, detected_at) \
             VALUES (gen_random_uuid(), $1, 'complement_arb', 'polymarket', 'old', 'YES+NO < 1', 0.031, now() - interval '1 hour')",
            "INSERT INTO opportunities (id, tenant_id, strategy, venue, market, detected_at, executed_at) \
             VALUES (gen_random_uuid(), $1, 'complement_arb', 'polymarket', 'new', now(), now())",
            "INSERT INTO trades (id, tenant_id, strategy, venue, market, side, price, size, realized_pnl, executed_at) \
             VALUES (gen_random_uuid(), $1, 'complement_arb', 'polymarket', 'old', 'buy', 0.48, 10, 1.25, now() - interval '2 hours')",
            "INSERT INTO trades (id, tenant_id, strategy, venue, market, side, price, size, realized_pnl, executed_at) \
             VALUES (gen_random_uuid(), $1, 'complement_arb', 'polymarket', 'mid', 'sell', 0.51, 10, -0.5, now() - interval '1 hour')",
            "INSERT INTO trades (id, tenant_id, strategy, venue, market, side, price, size, realized_pnl) \
             VALUES (gen_random_uuid(), $1, 'complement_arb', 'polymarket', 'new', 'buy', 0.47, 10, 2)",
            "INSERT INTO trades (id, tenant_id, strategy, venue, market, side, price, size, realized_pnl, executed_at) \
             VALUES (gen_random_uuid(), $1, 'complement_arb', 'polymarket', 'ancient', 'buy', 0.47, 10, 100, now() - interval '40 days')",
            "INSERT INTO balances (tenant_id, venue, asset, amount) VALUES ($1, 'polymarket', 'USDC', 1002.75)",
            "INSERT INTO balances (tenant_id, venue, asset, amount) VALUES ($1, 'kalshi', 'USD', 50)",
            "INSERT INTO audit_log (tenant_id, actor, action, details) VALUES ($1, 'operator', 'tenant.create', '{\"name\": \"a\"}')",
            "INSERT INTO audit_log (tenant_id, actor, action) VALUES ($1, 'operator', 'tenant.pause')",
        ],
    )
    .await;
    exec(
        &db,
        b,
        &[
            "INSERT INTO opportunities (id, tenant_id, strategy, venue, market) \
             VALUES (gen_random_uuid(), $1, 'complement_arb', 'polymarket', 'b-only')",
            "INSERT INTO trades (id, tenant_id, strategy, venue, market, side, price, size, realized_pnl) \
             VALUES (gen_random_uuid(), $1, 'complement_arb', 'polymarket', 'b-only', 'buy', 0.5, 1, 7)",
            "INSERT INTO balances (tenant_id, venue, asset, amount) VALUES ($1, 'polymarket', 'USDC', 1)",
            "INSERT INTO audit_log (tenant_id, actor, action) VALUES ($1, 'operator', 'b-only')",
        ],
    )
    .await;
    (db, a, b)
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn recent_opportunities_and_trades_come_newest_first_and_only_the_tenants_own(pool: PgPool) {
    let (db, a, _b) = two_tenants(pool).await;
    let mut tx = db.tenant(a).await.unwrap();
    let opportunities = opportunities::page(&mut tx, None, None, 50).await.unwrap();
    let markets: Vec<&str> = opportunities.iter().map(|o| o.market.as_str()).collect();
    assert_eq!(markets, ["new", "old"]);
    assert_eq!(opportunities[1].description, "YES+NO < 1");
    assert_eq!(opportunities[1].edge, Some(Decimal::new(31, 3)));
    assert!(opportunities[0].executed_at.is_some());
    assert_eq!(opportunities[1].executed_at, None);

    let trades = trades::page(&mut tx, None, None, 2).await.unwrap();
    tx.commit().await.unwrap();
    let markets: Vec<&str> = trades.iter().map(|t| t.market.as_str()).collect();
    assert_eq!(markets, ["new", "mid"], "the newest two");
    assert_eq!(trades[1].side, "sell");
    assert_eq!(trades[1].price, Decimal::new(51, 2));
    assert_eq!(trades[1].realized_pnl, Some(Decimal::new(-5, 1)));
    assert_eq!(trades[1].fee, Decimal::ZERO);
    assert_eq!(trades[1].mode, "paper");
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn balances_come_by_venue_and_asset(pool: PgPool) {
    let (db, a, b) = two_tenants(pool).await;
    let mut tx = db.tenant(a).await.unwrap();
    let balances = balances::page(&mut tx, None, 1_000).await.unwrap();
    tx.commit().await.unwrap();
    let lines: Vec<(&str, &str, Decimal)> = balances
        .iter()
        .map(|b| (b.venue.as_str(), b.asset.as_str(), b.amount))
        .collect();
    assert_eq!(
        lines,
        [
            ("kalshi", "USD", Decimal::new(50, 0)),
            ("polymarket", "USDC", Decimal::new(100_275, 2))
        ]
    );
    let mut tx = db.tenant(b).await.unwrap();
    assert_eq!(balances::page(&mut tx, None, 1_000).await.unwrap().len(), 1);
    tx.commit().await.unwrap();
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn the_pnl_curve_accumulates_the_last_30_days_oldest_first(pool: PgPool) {
    let (db, a, _b) = two_tenants(pool).await;
    let mut tx = db.tenant(a).await.unwrap();
    let curve = trades::pnl_curve(&mut tx, 300).await.unwrap();
    let thinned = trades::pnl_curve(&mut tx, 1).await.unwrap();
    tx.commit().await.unwrap();
    let totals: Vec<Decimal> = curve.iter().map(|p| p.total).collect();
    // 1.25, then −0.5, then 2; the 40-day-old trade and b's are not counted.
    assert_eq!(
        totals,
        [
            Decimal::new(125, 2),
            Decimal::new(75, 2),
            Decimal::new(275, 2)
        ]
    );
    assert!(curve.windows(2).all(|w| w[0].at <= w[1].at));
    // Thinned to about one point: every third trade and the last, which here
    // are the same one.
    let thinned: Vec<Decimal> = thinned.iter().map(|p| p.total).collect();
    assert_eq!(thinned, [Decimal::new(275, 2)]);
}

/// A tenant whose trades carry a recording's dates (April 2026), with fees.
async fn replayed_tenant(db: &Db) -> TenantId {
    let r = create_tenant(db, "replayed").await.unwrap();
    exec(
        db,
        r,
        &[
            "INSERT INTO trades (id, tenant_id, strategy, venue, market, side, price, size, fee, realized_pnl, executed_at) \
             VALUES (gen_random_uuid(), $1, 'complement_arb', 'polymarket', 'm', 'buy', 0.4, 100, 1.68, 0, '2026-04-28T23:59:00Z')",
            "INSERT INTO trades (id, tenant_id, strategy, venue, market, side, price, size, fee, realized_pnl, executed_at) \
             VALUES (gen_random_uuid(), $1, 'complement_arb', 'polymarket', 'm', 'buy', 0.55, 100, 1.7325, 0, '2026-04-29T13:00:00Z')",
            "INSERT INTO trades (id, tenant_id, strategy, venue, market, side, price, size, fee, realized_pnl, executed_at) \
             VALUES (gen_random_uuid(), $1, 'complement_arb', 'polymarket', 'm', 'settle', 1, 100, 0, 5, '2026-04-29T13:15:00Z')",
        ],
    )
    .await;
    r
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_replayed_tenants_pnl_charts_on_the_recordings_own_dates_net_of_fees(pool: PgPool) {
    let (db, _a, _b) = two_tenants(pool).await;
    let r = replayed_tenant(&db).await;
    let mut tx = db.tenant(r).await.unwrap();
    let curve = trades::pnl_curve(&mut tx, 300).await.unwrap();
    let daily = trades::daily(&mut tx, 30).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        curve.iter().map(|p| p.total).collect::<Vec<_>>(),
        [
            Decimal::new(-168, 2),
            Decimal::new(-34125, 4),
            Decimal::new(15875, 4)
        ]
    );
    assert_eq!(
        daily
            .iter()
            .map(|d| (d.day.to_string(), d.trades, d.realized, d.fees))
            .collect::<Vec<_>>(),
        [
            (
                "2026-04-28".to_owned(),
                1,
                Decimal::ZERO,
                Decimal::new(168, 2)
            ),
            (
                "2026-04-29".to_owned(),
                2,
                Decimal::new(5, 0),
                Decimal::new(17325, 4)
            ),
        ]
    );
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn the_equity_curve_is_the_newest_runs_heartbeats_on_the_engines_clock(pool: PgPool) {
    let (db, a, b) = two_tenants(pool).await;
    let beat = |epoch: i64, clock: i64, equity: &str| {
        format!(
            "INSERT INTO worker_heartbeats (tenant_id, epoch, health) VALUES ($1, {epoch}, \
             '{{\"engine\": {{\"clock\": {clock}}}, \"pnl\": {{\"equity\": \"{equity}\", \"starting_equity\": \"1000\"}}}}')"
        )
    };
    let statements = [
        beat(1, 5, "900"),
        beat(2, 0, "1000"),
        beat(2, 1_000, "1000"),
        beat(2, 2_000, "1001.5"),
        beat(2, 3_000, "999.25"),
    ];
    let refs: Vec<&str> = statements.iter().map(String::as_str).collect();
    exec(&db, a, &refs).await;
    exec(&db, b, &[&beat(7, 1, "5")]).await;
    let mut tx = db.tenant(a).await.unwrap();
    let curve = heartbeats::equity_curve(&mut tx, 100).await.unwrap();
    let thinned = heartbeats::equity_curve(&mut tx, 1).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        curve
            .iter()
            .map(|p| (p.clock, p.pnl.as_str(), p.equity.as_str()))
            .collect::<Vec<_>>(),
        [
            (1_000, "0", "1000"),
            (2_000, "1.5", "1001.5"),
            (3_000, "-0.75", "999.25")
        ]
    );
    assert_eq!(thinned.iter().map(|p| p.clock).collect::<Vec<_>>(), [3_000]);
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn the_audit_log_comes_newest_first_and_only_the_tenants_own(pool: PgPool) {
    let (db, a, _b) = two_tenants(pool).await;
    let mut tx = db.tenant(a).await.unwrap();
    let audit = audit::recent(&mut tx, 50).await.unwrap();
    tx.commit().await.unwrap();
    let actions: Vec<&str> = audit.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["tenant.pause", "tenant.create"]);
    assert_eq!(audit[1].details, json!({"name": "a"}));
    assert_eq!(audit[0].actor, "operator");
}
