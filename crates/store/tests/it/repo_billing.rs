//! Billing's rows (`repo::billing`) on a real database: the seeded plans, a
//! tenant's plan and Stripe ids, payment states written in event order
//! whatever the arrival order, Stripe events recorded once, and usage; with
//! two tenants where one's writes must not reach the other.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use polybot_core::TenantId;
use polybot_store::repo::billing;
use polybot_store::testing::create_tenant;
use polybot_store::{Db, Scope};
use rust_decimal::Decimal;
use sqlx::PgPool;

async fn two_tenants(pool: PgPool) -> (Db, TenantId, TenantId) {
    let db = Db::from_pool(pool, Scope::Control);
    let a = create_tenant(&db, "a").await.unwrap();
    let b = create_tenant(&db, "b").await.unwrap();
    (db, a, b)
}

fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn the_seeded_plans_state_their_entitlements(pool: PgPool) {
    let (db, a, _) = two_tenants(pool).await;
    let mut tx = db.tenant(a).await.unwrap();
    let plans = billing::plans(&mut tx).await.unwrap();
    let ids: Vec<&str> = plans.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, vec!["free-paper", "pro", "live"]);
    let free = billing::plan(&mut tx, "free-paper").await.unwrap().unwrap();
    assert_eq!(free.strategies, vec!["complement_arb"]);
    assert!(!free.live_allowed);
    assert_eq!(
        (free.worker_cpu, free.worker_memory),
        (Some(256), Some(512))
    );
    assert_eq!(free.max_tokens, 2);
    assert_eq!(free.monthly_price, Decimal::ZERO);
    let live = billing::plan(&mut tx, "live").await.unwrap().unwrap();
    assert!(live.live_allowed && live.metered);
    assert_eq!(billing::plan(&mut tx, "gold").await.unwrap(), None);
    assert_eq!(
        billing::plan_for_price(&mut tx, "price_x").await.unwrap(),
        None
    );
    tx.commit().await.unwrap();
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_plan_and_stripe_ids_are_kept_per_tenant(pool: PgPool) {
    let (db, a, b) = two_tenants(pool).await;
    let mut tx = db.tenant(a).await.unwrap();
    assert_eq!(billing::get(&mut tx).await.unwrap(), None);
    assert_eq!(billing::tenant_plan(&mut tx).await.unwrap(), None);
    assert!(billing::set_plan(&mut tx, "pro").await.unwrap());
    assert!(
        !billing::set_plan(&mut tx, "pro").await.unwrap(),
        "unchanged"
    );
    billing::set_stripe_ids(&mut tx, Some("cus_a"), None)
        .await
        .unwrap();
    billing::set_stripe_ids(&mut tx, None, Some("sub_a"))
        .await
        .unwrap();
    let row = billing::lock(&mut tx).await.unwrap().unwrap();
    assert_eq!(row.plan_id, "pro");
    assert_eq!(row.stripe_customer_id.as_deref(), Some("cus_a"));
    assert_eq!(row.stripe_subscription_id.as_deref(), Some("sub_a"));
    assert_eq!(row.payment_state, "none");
    assert_eq!(
        billing::tenant_plan(&mut tx).await.unwrap().unwrap().id,
        "pro"
    );
    tx.commit().await.unwrap();

    let mut op = db.operator().await.unwrap();
    assert_eq!(
        billing::tenant_for_customer(&mut op, "cus_a")
            .await
            .unwrap(),
        Some(a)
    );
    assert_eq!(
        billing::tenant_for_customer(&mut op, "cus_b")
            .await
            .unwrap(),
        None
    );
    assert!(billing::has_billing(&mut op, a).await.unwrap());
    assert!(!billing::has_billing(&mut op, b).await.unwrap());
    let standings = billing::standings(&mut op).await.unwrap();
    assert_eq!(standings.len(), 1);
    assert_eq!(standings[0].tenant_id, a.as_uuid());
    assert_eq!(standings[0].worker_cpu, Some(512));
    assert_eq!(billing::list(&mut op).await.unwrap().len(), 1);
    op.commit().await.unwrap();

    let mut tx = db.tenant(b).await.unwrap();
    assert_eq!(
        billing::get(&mut tx).await.unwrap(),
        None,
        "b sees nothing of a"
    );
    tx.commit().await.unwrap();
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn payment_states_follow_event_time_not_arrival(pool: PgPool) {
    let (db, a, _) = two_tenants(pool).await;
    let mut tx = db.tenant(a).await.unwrap();
    billing::set_plan(&mut tx, "pro").await.unwrap();
    assert!(
        billing::apply_payment(&mut tx, "past_due", at(100))
            .await
            .unwrap()
    );
    // Still failing later: payment has been missing since the first failure.
    assert!(
        billing::apply_payment(&mut tx, "canceled", at(200))
            .await
            .unwrap()
    );
    let row = billing::get(&mut tx).await.unwrap().unwrap();
    assert_eq!(row.payment_state, "canceled");
    assert_eq!(row.lapsed_since, Some(at(100)));
    // An older event arriving late changes nothing.
    assert!(
        !billing::apply_payment(&mut tx, "active", at(150))
            .await
            .unwrap()
    );
    assert_eq!(
        billing::get(&mut tx).await.unwrap().unwrap().payment_state,
        "canceled"
    );
    // A newer payment clears the lapse.
    assert!(
        billing::apply_payment(&mut tx, "active", at(300))
            .await
            .unwrap()
    );
    let row = billing::get(&mut tx).await.unwrap().unwrap();
    assert_eq!(
        (row.payment_state.as_str(), row.lapsed_since),
        ("active", None)
    );
    assert_eq!(row.payment_event_at, Some(at(300)));
    billing::set_reported_until(&mut tx, at(400)).await.unwrap();
    assert_eq!(
        billing::get(&mut tx).await.unwrap().unwrap().reported_until,
        Some(at(400))
    );
    tx.commit().await.unwrap();
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_stripe_event_is_recorded_once(pool: PgPool) {
    let (db, a, _) = two_tenants(pool).await;
    let mut op = db.operator().await.unwrap();
    assert!(
        billing::record_event(&mut op, "evt_1", "invoice.paid", at(0), "applied")
            .await
            .unwrap()
    );
    assert!(
        !billing::record_event(&mut op, "evt_1", "invoice.paid", at(0), "again")
            .await
            .unwrap()
    );
    assert_eq!(
        billing::event_outcome(&mut op, "evt_1")
            .await
            .unwrap()
            .as_deref(),
        Some("applied")
    );
    assert_eq!(
        billing::event_outcome(&mut op, "evt_2").await.unwrap(),
        None
    );
    op.commit().await.unwrap();
    // From a tenant's transaction too (the webhook records in the same one).
    let mut tx = db.tenant(a).await.unwrap();
    assert!(
        billing::record_event(&mut tx, "evt_2", "invoice.paid", at(1), "applied")
            .await
            .unwrap()
    );
    tx.commit().await.unwrap();
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn usage_counts_worker_time_orders_and_api_calls_of_the_tenant_only(pool: PgPool) {
    let (db, a, b) = two_tenants(pool).await;
    let day = NaiveDate::from_ymd_opt(2027, 1, 15).unwrap();
    let noon = day.and_hms_opt(12, 0, 0).unwrap().and_utc();
    for tenant in [a, b] {
        let mut tx = db.tenant(tenant).await.unwrap();
        billing::add_api_calls(&mut tx, day, 3).await.unwrap();
        billing::add_api_calls(&mut tx, day, 4).await.unwrap();
        sqlx::query(
            "INSERT INTO worker_availability (tenant_id, minute, desired_ms, up_ms) VALUES ($1, $2, 60000, 45000)",
        )
        .bind(tenant.as_uuid())
        .bind(noon)
        .execute(&mut *tx)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO trades (id, tenant_id, strategy, venue, market, side, price, size, mode, executed_at) \
             VALUES (gen_random_uuid(), $1, 'complement_arb', 'polymarket', 'm', 'buy', 0.5, 10, 'paper', $2)",
        )
        .bind(tenant.as_uuid())
        .bind(noon)
        .execute(&mut *tx)
        .await
        .unwrap();
        tx.commit().await.unwrap();
    }
    let mut tx = db.tenant(a).await.unwrap();
    let usage = billing::usage(
        &mut tx,
        noon - Duration::hours(1),
        noon + Duration::hours(1),
    )
    .await
    .unwrap();
    assert_eq!(
        usage,
        billing::Usage {
            worker_up_ms: 45_000,
            orders: 1,
            live_orders: 0,
            api_calls: 7
        }
    );
    let before = billing::usage(&mut tx, noon - Duration::days(3), noon - Duration::days(2))
        .await
        .unwrap();
    assert_eq!(before, billing::Usage::default());
    tx.commit().await.unwrap();
}

/// Puts `tenant` on `plan` with Stripe customer `customer`.
async fn on_plan(db: &Db, tenant: TenantId, plan: &str, customer: &str) {
    let mut tx = db.tenant(tenant).await.unwrap();
    billing::set_plan(&mut tx, plan).await.unwrap();
    billing::set_stripe_ids(&mut tx, Some(customer), None)
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn only_tenants_on_a_metered_plan_with_a_customer_are_metered(pool: PgPool) {
    let (db, a, b) = two_tenants(pool).await;
    let c = create_tenant(&db, "c").await.unwrap();
    on_plan(&db, a, "live", "cus_a").await;
    on_plan(&db, b, "pro", "cus_b").await;
    let mut tx = db.tenant(c).await.unwrap();
    billing::set_plan(&mut tx, "live").await.unwrap();
    tx.commit().await.unwrap();
    let mut tx = db.tenant(a).await.unwrap();
    billing::set_reported_until(&mut tx, at(0)).await.unwrap();
    tx.commit().await.unwrap();

    let mut op = db.operator().await.unwrap();
    let metered = billing::metered(&mut op).await.unwrap();
    op.commit().await.unwrap();
    assert_eq!(
        metered,
        vec![billing::Metered {
            tenant_id: a.as_uuid(),
            plan_id: "live".into(),
            stripe_customer_id: "cus_a".into(),
            reported_until: Some(at(0)),
        }]
    );
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_report_is_recorded_once_per_tenant_day_and_metric(pool: PgPool) {
    let (db, a, b) = two_tenants(pool).await;
    let day = NaiveDate::from_ymd_opt(2027, 1, 15).unwrap();
    let mut tx = db.tenant(a).await.unwrap();
    assert!(
        billing::record_report(&mut tx, day, "orders", 4, "a-orders")
            .await
            .unwrap()
    );
    assert!(
        !billing::record_report(&mut tx, day, "orders", 5, "a-orders-again")
            .await
            .unwrap()
    );
    assert!(
        billing::record_report(&mut tx, day, "api_calls", 9, "a-calls")
            .await
            .unwrap()
    );
    let reports = billing::reports(&mut tx, day).await.unwrap();
    tx.commit().await.unwrap();
    let got: Vec<(&str, i64, &str)> = reports
        .iter()
        .map(|r| (r.metric.as_str(), r.value, r.identifier.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![("api_calls", 9, "a-calls"), ("orders", 4, "a-orders")]
    );
    let mut tx = db.tenant(b).await.unwrap();
    assert_eq!(billing::reports(&mut tx, day).await.unwrap(), vec![]);
    assert!(
        billing::record_report(&mut tx, day, "orders", 1, "b-orders")
            .await
            .unwrap()
    );
    tx.commit().await.unwrap();
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn every_tenants_usage_is_read_with_its_plan(pool: PgPool) {
    let (db, a, b) = two_tenants(pool).await;
    on_plan(&db, a, "pro", "cus_a").await;
    let day = NaiveDate::from_ymd_opt(2027, 1, 15).unwrap();
    let noon = day.and_hms_opt(12, 0, 0).unwrap().and_utc();
    let mut tx = db.tenant(a).await.unwrap();
    billing::add_api_calls(&mut tx, day, 6).await.unwrap();
    sqlx::query(
        "INSERT INTO worker_availability (tenant_id, minute, desired_ms, up_ms) VALUES ($1, $2, 60000, 60000)",
    )
    .bind(a.as_uuid())
    .bind(noon)
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let mut op = db.operator().await.unwrap();
    let rows = billing::usage_by_tenant(
        &mut op,
        noon - Duration::hours(1),
        noon + Duration::hours(1),
    )
    .await
    .unwrap();
    op.commit().await.unwrap();
    assert_eq!(rows.len(), 2);
    let (ra, rb) = (&rows[0], &rows[1]);
    assert_eq!((ra.tenant_id, ra.name.as_str()), (a.as_uuid(), "a"));
    assert_eq!(ra.plan_id.as_deref(), Some("pro"));
    assert_eq!((ra.worker_cpu, ra.worker_memory), (Some(512), Some(1024)));
    assert_eq!(ra.monthly_price, Some(Decimal::from(49)));
    assert_eq!(ra.payment_state.as_deref(), Some("none"));
    assert_eq!((ra.worker_up_ms, ra.orders, ra.api_calls), (60_000, 0, 6));
    assert_eq!((rb.tenant_id, rb.plan_id.as_deref()), (b.as_uuid(), None));
    assert_eq!((rb.worker_up_ms, rb.api_calls), (0, 0));
}
