//! Billing: the plans (`plans`, not tenant data), a tenant's plan and
//! payment state (`tenant_billing`), the Stripe events already applied
//! (`stripe_events`, not tenant data) and usage (`tenant_usage`, with orders
//! and worker time counted from `trades` and `worker_availability`).
//!
//! What a plan allows and when a missing payment stops a worker is decided
//! in the control plane; this module only reads and writes the rows. Event
//! ordering is kept here, in SQL, so that two deliveries racing cannot both
//! win: a payment state is only overwritten by an event created no earlier.

use chrono::{DateTime, NaiveDate, Utc};
use polybot_core::TenantId;
use rust_decimal::Decimal;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::{DbError, OperatorTx, TenantTx};

/// A plan and its entitlements.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Plan {
    pub id: String,
    pub name: String,
    /// Strategy names the tenant may configure.
    pub strategies: Vec<String>,
    pub live_allowed: bool,
    /// Venues the tenant may hold keys for.
    pub venues: Vec<String>,
    /// CPU units and MiB; `None` means the launcher's default size.
    pub worker_cpu: Option<i32>,
    pub worker_memory: Option<i32>,
    /// Alert channel kinds (`webhook`, `telegram`).
    pub alert_channels: Vec<String>,
    pub max_tokens: i32,
    /// USD a month; a plan with a price needs a paid subscription.
    pub monthly_price: Decimal,
    pub stripe_price_id: Option<String>,
    /// Worker-hours are reported to Stripe as meter events.
    pub metered: bool,
}

const PLAN_COLUMNS: &str = "id, name, strategies, live_allowed, venues, worker_cpu, worker_memory, \
     alert_channels, max_tokens, monthly_price, stripe_price_id, metered";

/// A tenant's billing row.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct TenantBilling {
    pub tenant_id: Uuid,
    pub plan_id: String,
    pub stripe_customer_id: Option<String>,
    pub stripe_subscription_id: Option<String>,
    /// `none`, `active`, `past_due` or `canceled`.
    pub payment_state: String,
    /// The `created` time of the Stripe event that set `payment_state`.
    pub payment_event_at: Option<DateTime<Utc>>,
    /// Since when payment has been missing.
    pub lapsed_since: Option<DateTime<Utc>>,
    pub reported_until: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

const BILLING_COLUMNS: &str = "tenant_id, plan_id, stripe_customer_id, stripe_subscription_id, \
     payment_state, payment_event_at, lapsed_since, reported_until, updated_at";

/// What the reconciler needs of a tenant's billing: its plan's worker size
/// and price, and its payment state.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Standing {
    pub tenant_id: Uuid,
    pub plan_id: String,
    pub worker_cpu: Option<i32>,
    pub worker_memory: Option<i32>,
    pub monthly_price: Decimal,
    pub payment_state: String,
    pub lapsed_since: Option<DateTime<Utc>>,
}

/// A tenant's usage over a period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct Usage {
    /// Milliseconds the worker ran with a fresh heartbeat.
    pub worker_up_ms: i64,
    /// Trades recorded (paper and live): the orders the worker sent.
    pub orders: i64,
    pub live_orders: i64,
    pub api_calls: i64,
}

/// One plan, by id.
pub async fn plan(conn: &mut PgConnection, id: &str) -> Result<Option<Plan>, DbError> {
    sqlx::query_as::<_, Plan>(&format!("SELECT {PLAN_COLUMNS} FROM plans WHERE id = $1"))
        .bind(id)
        .fetch_optional(conn)
        .await
        .map_err(DbError::query("reading a plan"))
}

/// Every plan, cheapest first.
pub async fn plans(conn: &mut PgConnection) -> Result<Vec<Plan>, DbError> {
    sqlx::query_as::<_, Plan>(&format!(
        "SELECT {PLAN_COLUMNS} FROM plans ORDER BY monthly_price, id"
    ))
    .fetch_all(conn)
    .await
    .map_err(DbError::query("listing plans"))
}

/// The plan whose Stripe price is `price`.
pub async fn plan_for_price(conn: &mut PgConnection, price: &str) -> Result<Option<Plan>, DbError> {
    sqlx::query_as::<_, Plan>(&format!(
        "SELECT {PLAN_COLUMNS} FROM plans WHERE stripe_price_id = $1"
    ))
    .bind(price)
    .fetch_optional(conn)
    .await
    .map_err(DbError::query("reading the plan of a Stripe price"))
}

/// The transaction's tenant's billing row, if it has a plan.
pub async fn get(tx: &mut TenantTx) -> Result<Option<TenantBilling>, DbError> {
    sqlx::query_as::<_, TenantBilling>(&format!(
        "SELECT {BILLING_COLUMNS} FROM tenant_billing WHERE tenant_id = $1"
    ))
    .bind(tx.tenant().as_uuid())
    .fetch_optional(&mut **tx)
    .await
    .map_err(DbError::query("reading the tenant's billing"))
}

/// The transaction's tenant's billing row, locked for an update.
pub async fn lock(tx: &mut TenantTx) -> Result<Option<TenantBilling>, DbError> {
    sqlx::query_as::<_, TenantBilling>(&format!(
        "SELECT {BILLING_COLUMNS} FROM tenant_billing WHERE tenant_id = $1 FOR UPDATE"
    ))
    .bind(tx.tenant().as_uuid())
    .fetch_optional(&mut **tx)
    .await
    .map_err(DbError::query("locking the tenant's billing"))
}

/// The transaction's tenant's plan, if it has one.
pub async fn tenant_plan(tx: &mut TenantTx) -> Result<Option<Plan>, DbError> {
    let columns = PLAN_COLUMNS
        .split(", ")
        .map(|c| format!("p.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    sqlx::query_as::<_, Plan>(&format!(
        "SELECT {columns} FROM tenant_billing b JOIN plans p ON p.id = b.plan_id WHERE b.tenant_id = $1"
    ))
    .bind(tx.tenant().as_uuid())
    .fetch_optional(&mut **tx)
    .await
    .map_err(DbError::query("reading the tenant's plan"))
}

/// Puts the transaction's tenant on `plan` (creating its billing row).
/// Returns whether the plan changed.
pub async fn set_plan(tx: &mut TenantTx, plan: &str) -> Result<bool, DbError> {
    let before: Option<String> =
        sqlx::query_scalar("SELECT plan_id FROM tenant_billing WHERE tenant_id = $1 FOR UPDATE")
            .bind(tx.tenant().as_uuid())
            .fetch_optional(&mut **tx)
            .await
            .map_err(DbError::query("reading the tenant's plan"))?;
    sqlx::query(
        "INSERT INTO tenant_billing (tenant_id, plan_id) VALUES ($1, $2) \
         ON CONFLICT (tenant_id) DO UPDATE SET plan_id = EXCLUDED.plan_id, updated_at = now()",
    )
    .bind(tx.tenant().as_uuid())
    .bind(plan)
    .execute(&mut **tx)
    .await
    .map_err(DbError::query("setting the tenant's plan"))?;
    Ok(before.as_deref() != Some(plan))
}

/// Records the tenant's Stripe customer and, if given, subscription (a
/// billing row must exist). Ids already stored are kept unless replaced.
pub async fn set_stripe_ids(
    tx: &mut TenantTx,
    customer: Option<&str>,
    subscription: Option<&str>,
) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE tenant_billing SET stripe_customer_id = coalesce($2, stripe_customer_id), \
         stripe_subscription_id = coalesce($3, stripe_subscription_id), updated_at = now() \
         WHERE tenant_id = $1",
    )
    .bind(tx.tenant().as_uuid())
    .bind(customer)
    .bind(subscription)
    .execute(&mut **tx)
    .await
    .map_err(DbError::query("recording the tenant's Stripe ids"))?;
    Ok(())
}

/// Sets the payment state from a Stripe event created at `event_at`, unless
/// an event created later already set it. Entering a missing-payment state
/// (`past_due`, `canceled`) keeps the time payment first went missing;
/// `active` clears it. Returns whether the state was written.
pub async fn apply_payment(
    tx: &mut TenantTx,
    state: &str,
    event_at: DateTime<Utc>,
) -> Result<bool, DbError> {
    let result = sqlx::query(
        "UPDATE tenant_billing SET payment_state = $2, payment_event_at = $3, \
         lapsed_since = CASE WHEN $2 IN ('past_due', 'canceled') \
                             THEN CASE WHEN payment_state IN ('past_due', 'canceled') \
                                       THEN coalesce(lapsed_since, $3) ELSE $3 END \
                        END, \
         updated_at = now() \
         WHERE tenant_id = $1 AND (payment_event_at IS NULL OR payment_event_at <= $3)",
    )
    .bind(tx.tenant().as_uuid())
    .bind(state)
    .bind(event_at)
    .execute(&mut **tx)
    .await
    .map_err(DbError::query("recording the tenant's payment state"))?;
    Ok(result.rows_affected() == 1)
}

/// The tenant whose Stripe customer is `customer`.
pub async fn tenant_for_customer(
    op: &mut OperatorTx,
    customer: &str,
) -> Result<Option<TenantId>, DbError> {
    let id: Option<Uuid> =
        sqlx::query_scalar("SELECT tenant_id FROM tenant_billing WHERE stripe_customer_id = $1")
            .bind(customer)
            .fetch_optional(&mut **op)
            .await
            .map_err(DbError::query("finding the tenant of a Stripe customer"))?;
    Ok(id.map(TenantId::from_uuid))
}

/// Whether `tenant` exists and has a billing row (operator read).
pub async fn has_billing(op: &mut OperatorTx, tenant: TenantId) -> Result<bool, DbError> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM tenant_billing WHERE tenant_id = $1)")
        .bind(tenant.as_uuid())
        .fetch_one(&mut **op)
        .await
        .map_err(DbError::query("checking a tenant's billing"))
}

/// Records a Stripe event by id; `false` if it was recorded before (a
/// redelivery or a replay), in which case nothing else should be done.
pub async fn record_event(
    conn: &mut PgConnection,
    id: &str,
    kind: &str,
    created: DateTime<Utc>,
    outcome: &str,
) -> Result<bool, DbError> {
    let result = sqlx::query(
        "INSERT INTO stripe_events (id, kind, created, outcome) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(id)
    .bind(kind)
    .bind(created)
    .bind(outcome.chars().take(300).collect::<String>())
    .execute(conn)
    .await
    .map_err(DbError::query("recording a Stripe event"))?;
    Ok(result.rows_affected() == 1)
}

/// What became of a recorded Stripe event.
pub async fn event_outcome(conn: &mut PgConnection, id: &str) -> Result<Option<String>, DbError> {
    sqlx::query_scalar("SELECT outcome FROM stripe_events WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await
        .map_err(DbError::query("reading a Stripe event"))
}

/// Every tenant with a plan, with what the reconciler needs of it.
pub async fn standings(op: &mut OperatorTx) -> Result<Vec<Standing>, DbError> {
    sqlx::query_as::<_, Standing>(
        "SELECT b.tenant_id, b.plan_id, p.worker_cpu, p.worker_memory, p.monthly_price, \
                b.payment_state, b.lapsed_since \
         FROM tenant_billing b JOIN plans p ON p.id = b.plan_id",
    )
    .fetch_all(&mut **op)
    .await
    .map_err(DbError::query("reading the tenants' billing"))
}

/// Every tenant's billing row (operator views).
pub async fn list(op: &mut OperatorTx) -> Result<Vec<TenantBilling>, DbError> {
    sqlx::query_as::<_, TenantBilling>(&format!(
        "SELECT {BILLING_COLUMNS} FROM tenant_billing ORDER BY tenant_id"
    ))
    .fetch_all(&mut **op)
    .await
    .map_err(DbError::query("listing the tenants' billing"))
}

/// Adds `calls` API calls to the transaction's tenant's count for `day`.
pub async fn add_api_calls(tx: &mut TenantTx, day: NaiveDate, calls: i64) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO tenant_usage (tenant_id, day, api_calls) VALUES ($1, $2, $3) \
         ON CONFLICT (tenant_id, day) DO UPDATE SET api_calls = tenant_usage.api_calls + EXCLUDED.api_calls",
    )
    .bind(tx.tenant().as_uuid())
    .bind(day)
    .bind(calls)
    .execute(&mut **tx)
    .await
    .map_err(DbError::query("counting the tenant's API calls"))?;
    Ok(())
}

/// The transaction's tenant's usage in `[from, to)` (API calls by whole
/// days: those whose date falls in the period).
pub async fn usage(
    tx: &mut TenantTx,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Usage, DbError> {
    sqlx::query_as::<_, Usage>(
        "SELECT \
            coalesce((SELECT sum(up_ms) FROM worker_availability \
                      WHERE tenant_id = $1 AND minute >= $2 AND minute < $3), 0)::bigint AS worker_up_ms, \
            (SELECT count(*) FROM trades WHERE tenant_id = $1 AND executed_at >= $2 AND executed_at < $3) AS orders, \
            (SELECT count(*) FROM trades WHERE tenant_id = $1 AND mode = 'live' \
                AND executed_at >= $2 AND executed_at < $3) AS live_orders, \
            coalesce((SELECT sum(api_calls) FROM tenant_usage \
                      WHERE tenant_id = $1 AND day >= ($2 AT TIME ZONE 'UTC')::date \
                        AND day <= (($3 - interval '1 microsecond') AT TIME ZONE 'UTC')::date), 0)::bigint AS api_calls",
    )
    .bind(tx.tenant().as_uuid())
    .bind(from)
    .bind(to)
    .fetch_one(&mut **tx)
    .await
    .map_err(DbError::query("reading the tenant's usage"))
}

/// Records that usage up to `until` has been reported to Stripe.
pub async fn set_reported_until(tx: &mut TenantTx, until: DateTime<Utc>) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE tenant_billing SET reported_until = $2, updated_at = now() WHERE tenant_id = $1",
    )
    .bind(tx.tenant().as_uuid())
    .bind(until)
    .execute(&mut **tx)
    .await
    .map_err(DbError::query("recording reported usage"))?;
    Ok(())
}

/// A tenant whose usage is reported to Stripe: its plan is metered and it
/// has a Stripe customer.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Metered {
    pub tenant_id: Uuid,
    pub plan_id: String,
    pub stripe_customer_id: String,
    /// Usage before this time has been reported; `None`: reporting has not begun.
    pub reported_until: Option<DateTime<Utc>>,
}

/// Every tenant whose usage is reported to Stripe.
pub async fn metered(op: &mut OperatorTx) -> Result<Vec<Metered>, DbError> {
    sqlx::query_as::<_, Metered>(
        "SELECT b.tenant_id, b.plan_id, b.stripe_customer_id, b.reported_until \
         FROM tenant_billing b JOIN plans p ON p.id = b.plan_id \
         WHERE p.metered AND b.stripe_customer_id IS NOT NULL \
         ORDER BY b.tenant_id",
    )
    .fetch_all(&mut **op)
    .await
    .map_err(DbError::query("listing the tenants with metered usage"))
}

/// One metric of one day reported to Stripe.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct UsageReport {
    pub day: NaiveDate,
    /// `worker_minutes`, `orders` or `api_calls`.
    pub metric: String,
    pub value: i64,
    /// The meter event's identifier.
    pub identifier: String,
    pub reported_at: DateTime<Utc>,
}

/// Records that the transaction's tenant's `metric` of `day` was reported;
/// `false` if it had been already.
pub async fn record_report(
    tx: &mut TenantTx,
    day: NaiveDate,
    metric: &str,
    value: i64,
    identifier: &str,
) -> Result<bool, DbError> {
    let result = sqlx::query(
        "INSERT INTO usage_reports (tenant_id, day, metric, value, identifier) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
    )
    .bind(tx.tenant().as_uuid())
    .bind(day)
    .bind(metric)
    .bind(value)
    .bind(identifier)
    .execute(&mut **tx)
    .await
    .map_err(DbError::query("recording reported usage"))?;
    Ok(result.rows_affected() == 1)
}

/// The transaction's tenant's reports since `from` (a day), oldest first.
pub async fn reports(tx: &mut TenantTx, from: NaiveDate) -> Result<Vec<UsageReport>, DbError> {
    sqlx::query_as::<_, UsageReport>(
        "SELECT day, metric, value, identifier, reported_at FROM usage_reports \
         WHERE tenant_id = $1 AND day >= $2 ORDER BY day, metric",
    )
    .bind(tx.tenant().as_uuid())
    .bind(from)
    .fetch_all(&mut **tx)
    .await
    .map_err(DbError::query("reading reported usage"))
}

/// A tenant's plan and usage over a period (operator views: cost and margin).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct TenantUsage {
    pub tenant_id: Uuid,
    pub name: String,
    /// `None`: the tenant has no plan.
    pub plan_id: Option<String>,
    pub worker_cpu: Option<i32>,
    pub worker_memory: Option<i32>,
    pub monthly_price: Option<Decimal>,
    pub payment_state: Option<String>,
    pub worker_up_ms: i64,
    pub orders: i64,
    pub live_orders: i64,
    pub api_calls: i64,
}

/// Every tenant not offboarded, with its plan and usage in `[from, to)`
/// (API calls by whole days, as in [`usage`]), by name.
pub async fn usage_by_tenant(
    op: &mut OperatorTx,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<TenantUsage>, DbError> {
    sqlx::query_as::<_, TenantUsage>(
        "SELECT t.id AS tenant_id, t.name, b.plan_id, p.worker_cpu, p.worker_memory, p.monthly_price, \
            b.payment_state, \
            coalesce((SELECT sum(up_ms) FROM worker_availability a \
                      WHERE a.tenant_id = t.id AND a.minute >= $1 AND a.minute < $2), 0)::bigint AS worker_up_ms, \
            (SELECT count(*) FROM trades r WHERE r.tenant_id = t.id \
                AND r.executed_at >= $1 AND r.executed_at < $2) AS orders, \
            (SELECT count(*) FROM trades r WHERE r.tenant_id = t.id AND r.mode = 'live' \
                AND r.executed_at >= $1 AND r.executed_at < $2) AS live_orders, \
            coalesce((SELECT sum(api_calls) FROM tenant_usage u \
                      WHERE u.tenant_id = t.id AND u.day >= ($1 AT TIME ZONE 'UTC')::date \
                        AND u.day <= (($2 - interval '1 microsecond') AT TIME ZONE 'UTC')::date), 0)::bigint AS api_calls \
         FROM tenants t \
         LEFT JOIN tenant_billing b ON b.tenant_id = t.id \
         LEFT JOIN plans p ON p.id = b.plan_id \
         WHERE t.state <> 'offboarded' \
         ORDER BY t.name, t.id",
    )
    .bind(from)
    .bind(to)
    .fetch_all(&mut **op)
    .await
    .map_err(DbError::query("reading every tenant's usage"))
}
