//! The billing endpoints: the plans, a tenant's plan, payment state and
//! usage (the tenant sees its own; an operator sees any), an operator's plan
//! change, and a Checkout session for a tenant to subscribe.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use chrono::{DateTime, Datelike, TimeZone, Utc};
use polybot_core::validation::{FieldError, unknown_field};
use polybot_store::TenantTx;
use polybot_store::repo::billing::{self, Plan, Standing, TenantBilling, Usage};
use polybot_store::repo::{audit, tenants};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;
use uuid::Uuid;

use super::stripe::{CheckoutRequest, Stripe, StripeError};
use super::{Wanted, exceeded, payment_hold, refuse_exceeded};
use crate::AppState;
use crate::auth::{Caller, Operator, TenantAccess};
use crate::error::{ApiError, ApiResult};

/// A plan and what it allows.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PlanView {
    pub id: String,
    pub name: String,
    pub strategies: Vec<String>,
    pub live_allowed: bool,
    pub venues: Vec<String>,
    /// CPU units and MiB of the worker; absent: the launcher's default size.
    pub worker_cpu: Option<i32>,
    pub worker_memory: Option<i32>,
    pub alert_channels: Vec<String>,
    pub max_tokens: i32,
    /// USD a month, as a decimal string.
    pub monthly_price: String,
    /// Whether a Checkout session can subscribe to it (it has a Stripe price).
    pub purchasable: bool,
    pub metered: bool,
}

impl From<Plan> for PlanView {
    fn from(p: Plan) -> Self {
        Self {
            purchasable: p.stripe_price_id.is_some(),
            id: p.id,
            name: p.name,
            strategies: p.strategies,
            live_allowed: p.live_allowed,
            venues: p.venues,
            worker_cpu: p.worker_cpu,
            worker_memory: p.worker_memory,
            alert_channels: p.alert_channels,
            max_tokens: p.max_tokens,
            monthly_price: p.monthly_price.normalize().to_string(),
            metered: p.metered,
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PlanList {
    pub items: Vec<PlanView>,
}

/// Usage in a period.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UsageView {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// Hours the worker ran (with a fresh heartbeat), as a decimal string.
    pub worker_hours: String,
    /// The worker size those hours ran at (the current plan's).
    pub worker_cpu: Option<i32>,
    pub worker_memory: Option<i32>,
    /// Orders the worker sent (trades recorded), paper and live.
    pub orders: i64,
    pub live_orders: i64,
    /// Requests made with the tenant's tokens (written every few seconds).
    pub api_calls: i64,
}

/// A tenant's billing: its plan, payment and usage this month.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BillingView {
    pub tenant_id: Uuid,
    /// Absent: the tenant has no plan (not limited, not billed).
    pub plan: Option<PlanView>,
    /// none, active, past_due or canceled.
    pub payment_state: String,
    /// Since when payment has been missing.
    pub lapsed_since: Option<DateTime<Utc>>,
    /// Why the worker is stopped for payment, if it is.
    pub payment_hold: Option<String>,
    pub stripe_customer_id: Option<String>,
    pub stripe_subscription_id: Option<String>,
    /// This calendar month (UTC) so far.
    pub usage: UsageView,
    /// Metered plans: usage before this time has been reported to Stripe.
    pub usage_reported_until: Option<DateTime<Utc>>,
}

/// The calendar month (UTC) `now` falls in, up to `now`.
pub fn this_month(now: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    let start = Utc
        .with_ymd_and_hms(now.year(), now.month(), 1, 0, 0, 0)
        .single()
        .unwrap_or(now);
    (start, now)
}

/// Hours in `ms` milliseconds, to two places.
pub fn hours(ms: i64) -> Decimal {
    (Decimal::from(ms) / Decimal::from(3_600_000)).round_dp(2)
}

/// Reads the transaction's tenant's billing view.
pub async fn load(
    tx: &mut TenantTx,
    now: DateTime<Utc>,
    grace: std::time::Duration,
) -> ApiResult<BillingView> {
    let row = billing::get(tx).await?;
    let plan = billing::tenant_plan(tx).await?;
    let (from, to) = this_month(now);
    let usage = billing::usage(tx, from, to).await?;
    Ok(view(
        tx.tenant().as_uuid(),
        row,
        plan,
        usage,
        (from, to),
        now,
        grace,
    ))
}

fn view(
    tenant: Uuid,
    row: Option<TenantBilling>,
    plan: Option<Plan>,
    usage: Usage,
    (from, to): (DateTime<Utc>, DateTime<Utc>),
    now: DateTime<Utc>,
    grace: std::time::Duration,
) -> BillingView {
    let hold = match (&row, &plan) {
        (Some(row), Some(plan)) => payment_hold(
            &Standing {
                tenant_id: tenant,
                plan_id: plan.id.clone(),
                worker_cpu: plan.worker_cpu,
                worker_memory: plan.worker_memory,
                monthly_price: plan.monthly_price,
                payment_state: row.payment_state.clone(),
                lapsed_since: row.lapsed_since,
            },
            now,
            grace,
        ),
        _ => None,
    };
    BillingView {
        tenant_id: tenant,
        payment_state: row
            .as_ref()
            .map_or("none", |r| r.payment_state.as_str())
            .to_owned(),
        lapsed_since: row.as_ref().and_then(|r| r.lapsed_since),
        payment_hold: hold,
        stripe_customer_id: row.as_ref().and_then(|r| r.stripe_customer_id.clone()),
        stripe_subscription_id: row.as_ref().and_then(|r| r.stripe_subscription_id.clone()),
        usage_reported_until: row.as_ref().and_then(|r| r.reported_until),
        usage: UsageView {
            from,
            to,
            worker_hours: hours(usage.worker_up_ms).to_string(),
            worker_cpu: plan.as_ref().and_then(|p| p.worker_cpu),
            worker_memory: plan.as_ref().and_then(|p| p.worker_memory),
            orders: usage.orders,
            live_orders: usage.live_orders,
            api_calls: usage.api_calls,
        },
        plan: plan.map(PlanView::from),
    }
}

/// The plans.
#[utoipa::path(get, path = "/plans", operation_id = "list_plans", tag = "billing",
    responses(
        (status = 200, description = "every plan and what it allows", body = PlanList),
        (status = 401, description = "no bearer token, or not a valid one", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_plans(State(state): State<AppState>, _: Caller) -> ApiResult<Json<PlanList>> {
    let mut op = state.db.operator().await?;
    let plans = billing::plans(&mut op).await?;
    op.commit().await?;
    Ok(Json(PlanList {
        items: plans.into_iter().map(PlanView::from).collect(),
    }))
}

/// A tenant's plan, payment state and usage this month.
#[utoipa::path(get, path = "/tenants/{id}/billing", operation_id = "get_tenant_billing", tag = "billing",
    params(("id" = Uuid, Path, description = "the tenant's id")),
    responses(
        (status = 200, description = "the tenant's billing", body = BillingView),
        (status = 401, description = "no bearer token, or not a valid one", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such tenant, or not one this token may see", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get(
    State(state): State<AppState>,
    TenantAccess { tenant, .. }: TenantAccess,
) -> ApiResult<Json<BillingView>> {
    let mut tx = state.db.tenant(tenant).await?;
    if !tenants::exists(&mut tx).await? {
        return Err(ApiError::NotFound("tenant"));
    }
    let view = load(&mut tx, Utc::now(), state.settings.billing.grace).await?;
    tx.commit().await?;
    Ok(Json(view))
}

/// The `plan` field of a body, the only field allowed.
fn plan_field(body: &Bytes) -> ApiResult<String> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("the body is not valid JSON ({e})")))?;
    let Value::Object(map) = value else {
        return Err(ApiError::BadRequest(
            "the body must be a JSON object".into(),
        ));
    };
    let mut errors: Vec<FieldError> = map
        .keys()
        .filter(|k| *k != "plan")
        .map(|k| unknown_field(k, k, &["plan"]))
        .collect();
    let plan = match map.get("plan").and_then(Value::as_str) {
        Some(p) if (1..=40).contains(&p.len()) => Some(p.to_owned()),
        _ => {
            errors.push(FieldError::new(
                "plan",
                "is required: a plan id (GET /plans)",
            ));
            None
        }
    };
    match plan {
        Some(plan) if errors.is_empty() => Ok(plan),
        _ => Err(ApiError::Validation(errors)),
    }
}

/// The plan named `id`, or a 422 naming the field.
pub async fn known_plan(tx: &mut TenantTx, id: &str) -> ApiResult<Plan> {
    billing::plan(tx, id).await?.ok_or_else(|| {
        ApiError::Validation(vec![FieldError::new(
            "plan",
            format!("{id:?} is not a plan (GET /plans lists them)"),
        )])
    })
}

/// Put a tenant on a plan (operator). Refused (402) while the tenant's
/// configuration exceeds the new plan; the worker is replaced at the plan's size.
#[utoipa::path(put, path = "/tenants/{id}/plan", operation_id = "set_tenant_plan", tag = "billing",
    request_body(content = Object, description = "{\"plan\": \"pro\"}"),
    params(("id" = Uuid, Path, description = "the tenant's id")),
    responses(
        (status = 200, description = "the tenant's billing on its new plan", body = BillingView),
        (status = 401, description = "no bearer token, or not a valid one", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 402, description = "the tenant's configuration exceeds the plan; each error names the entitlement", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "the token is a tenant's; only an operator token may do this", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such tenant", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "no such plan, or another field", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn set_plan(
    State(state): State<AppState>,
    _: Operator,
    TenantAccess { caller, tenant }: TenantAccess,
    body: Bytes,
) -> ApiResult<Json<BillingView>> {
    let id = plan_field(&body)?;
    let mut tx = state.db.tenant(tenant).await?;
    let detail = tenants::detail(&mut tx)
        .await?
        .ok_or(ApiError::NotFound("tenant"))?;
    if !detail.state.is_editable() {
        return Err(ApiError::Conflict(format!(
            "tenant is {}; its plan cannot be changed",
            detail.state
        )));
    }
    let plan = known_plan(&mut tx, &id).await?;
    refuse_exceeded(exceeded(&plan, &Wanted::stored(&detail)))?;
    if billing::set_plan(&mut tx, &plan.id).await? {
        audit::append(
            &mut tx,
            &caller.actor(),
            "tenant.plan",
            json!({"plan": plan.id}),
        )
        .await?;
    }
    let view = load(&mut tx, Utc::now(), state.settings.billing.grace).await?;
    tx.commit().await?;
    state.wake();
    Ok(Json(view))
}

/// Where the customer pays.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CheckoutView {
    /// The Checkout session's id.
    pub id: String,
    /// Stripe's payment page.
    pub url: Option<String>,
    pub stripe_customer_id: String,
}

fn stripe_failed(err: StripeError) -> ApiError {
    match err {
        StripeError::NotConfigured => ApiError::Unavailable(err.to_string()),
        other => ApiError::Internal(other.into()),
    }
}

/// Open a Stripe Checkout session subscribing the tenant to a plan (its
/// Stripe customer is created first, once). The plan takes effect when
/// Stripe reports the session completed.
#[utoipa::path(post, path = "/tenants/{id}/billing/checkout", operation_id = "create_checkout_session", tag = "billing",
    request_body(content = Object, description = "{\"plan\": \"pro\"}"),
    params(("id" = Uuid, Path, description = "the tenant's id")),
    responses(
        (status = 201, description = "a Checkout session; send the customer to its url", body = CheckoutView),
        (status = 401, description = "no bearer token, or not a valid one", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 402, description = "the tenant's configuration exceeds the plan; each error names the entitlement", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such tenant, or not one this token may see", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "no such plan, or it has no Stripe price", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Stripe is not configured", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn checkout(
    State(state): State<AppState>,
    TenantAccess { caller, tenant }: TenantAccess,
    body: Bytes,
) -> ApiResult<(axum::http::StatusCode, Json<CheckoutView>)> {
    let id = plan_field(&body)?;
    let settings = &state.settings.billing;
    let stripe = Stripe::from_settings(settings).map_err(stripe_failed)?;
    let mut tx = state.db.tenant(tenant).await?;
    let detail = tenants::detail(&mut tx)
        .await?
        .ok_or(ApiError::NotFound("tenant"))?;
    let plan = known_plan(&mut tx, &id).await?;
    let Some(price) = plan.stripe_price_id.clone() else {
        return Err(ApiError::Validation(vec![FieldError::new(
            "plan",
            format!("the {} plan has no Stripe price to subscribe to", plan.id),
        )]));
    };
    refuse_exceeded(exceeded(&plan, &Wanted::stored(&detail)))?;
    let row = billing::get(&mut tx).await?;
    tx.commit().await?;

    let customer = match row.as_ref().and_then(|r| r.stripe_customer_id.clone()) {
        Some(customer) => customer,
        None => {
            let customer = stripe
                .create_customer(tenant, &detail.name)
                .await
                .map_err(stripe_failed)?
                .id;
            let mut tx = state.db.tenant(tenant).await?;
            if billing::get(&mut tx).await?.is_none() {
                // The plan is the one being bought: it takes effect (and is
                // billed) when Stripe reports the session completed.
                billing::set_plan(&mut tx, &plan.id).await?;
            }
            billing::set_stripe_ids(&mut tx, Some(&customer), None).await?;
            tx.commit().await?;
            customer
        }
    };
    let session = stripe
        .create_checkout_session(&CheckoutRequest {
            tenant,
            customer: &customer,
            plan: &plan.id,
            price: &price,
            metered: plan.metered,
            success_url: &settings.success_url,
            cancel_url: &settings.cancel_url,
        })
        .await
        .map_err(stripe_failed)?;
    let mut tx = state.db.tenant(tenant).await?;
    audit::append(
        &mut tx,
        &caller.actor(),
        "tenant.checkout",
        json!({"plan": plan.id, "session": session.id}),
    )
    .await?;
    tx.commit().await?;
    Ok((
        axum::http::StatusCode::CREATED,
        Json(CheckoutView {
            id: session.id,
            url: session.url,
            stripe_customer_id: customer,
        }),
    ))
}

/// One tenant's plan, payment state and usage in a period (operators).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TenantUsageView {
    pub tenant_id: Uuid,
    pub name: String,
    /// Absent: the tenant has no plan (not limited, not billed).
    pub plan: Option<String>,
    /// The plan's price, USD a month, as a decimal string.
    pub monthly_price: Option<String>,
    /// none, active, past_due or canceled.
    pub payment_state: String,
    /// The plan's worker size; absent: the launcher's default.
    pub worker_cpu: Option<i32>,
    pub worker_memory: Option<i32>,
    /// Hours the worker ran (with a fresh heartbeat), as a decimal string.
    pub worker_hours: String,
    pub orders: i64,
    pub live_orders: i64,
    pub api_calls: i64,
}

/// Every tenant's usage in a period.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UsageList {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub items: Vec<TenantUsageView>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UsageQuery {
    /// A calendar month (UTC), `YYYY-MM`; default: this month so far.
    month: Option<String>,
}

/// The period `month` (`YYYY-MM`) names, up to `now` if it is this month;
/// `None` if it is not a month or has not begun.
pub fn month_period(month: &str, now: DateTime<Utc>) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let (year, m) = month.split_once('-')?;
    if m.len() != 2 {
        return None;
    }
    let first = chrono::NaiveDate::from_ymd_opt(year.parse().ok()?, m.parse().ok()?, 1)?;
    let next = first.checked_add_months(chrono::Months::new(1))?;
    let start = first.and_time(chrono::NaiveTime::MIN).and_utc();
    let end = next.and_time(chrono::NaiveTime::MIN).and_utc();
    (start <= now).then_some((start, end.min(now)))
}

/// Every tenant's plan, payment state and usage in a month: what `polybot
/// cost --per-tenant` prices.
#[utoipa::path(get, path = "/billing/usage", operation_id = "list_tenant_usage", tag = "billing",
    params(UsageQuery),
    responses(
        (status = 200, description = "every tenant's plan and usage in the month", body = UsageList),
        (status = 401, description = "no bearer token, or not a valid one", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "not an operator token", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "a field of the request is invalid", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn usage(
    State(state): State<AppState>,
    _: Operator,
    axum::extract::Query(query): axum::extract::Query<UsageQuery>,
) -> ApiResult<Json<UsageList>> {
    let now = Utc::now();
    let (from, to) = match &query.month {
        None => this_month(now),
        Some(month) => month_period(month, now).ok_or_else(|| {
            ApiError::Validation(vec![FieldError::new(
                "month",
                "must be a calendar month that has begun, as YYYY-MM",
            )])
        })?,
    };
    let mut op = state.db.operator().await?;
    let rows = billing::usage_by_tenant(&mut op, from, to).await?;
    op.commit().await?;
    Ok(Json(UsageList {
        from,
        to,
        items: rows.into_iter().map(usage_view).collect(),
    }))
}

pub fn usage_view(row: billing::TenantUsage) -> TenantUsageView {
    TenantUsageView {
        tenant_id: row.tenant_id,
        name: row.name,
        plan: row.plan_id,
        monthly_price: row.monthly_price.map(|p| p.normalize().to_string()),
        payment_state: row.payment_state.unwrap_or_else(|| "none".to_owned()),
        worker_cpu: row.worker_cpu,
        worker_memory: row.worker_memory,
        worker_hours: hours(row.worker_up_ms).to_string(),
        orders: row.orders,
        live_orders: row.live_orders,
        api_calls: row.api_calls,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_month_is_read_as_yyyy_mm_and_ends_now_if_current() {
        let now: DateTime<Utc> = "2027-03-10T08:00:00Z".parse().unwrap_or_default();
        let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap_or_default();
        assert_eq!(
            month_period("2027-02", now),
            Some((at("2027-02-01T00:00:00Z"), at("2027-03-01T00:00:00Z")))
        );
        assert_eq!(
            month_period("2026-12", now),
            Some((at("2026-12-01T00:00:00Z"), at("2027-01-01T00:00:00Z")))
        );
        assert_eq!(
            month_period("2027-03", now),
            Some((at("2027-03-01T00:00:00Z"), now))
        );
        assert_eq!(month_period("2027-04", now), None);
        assert_eq!(month_period("2027-13", now), None);
        assert_eq!(month_period("2027-3", now), None);
        assert_eq!(month_period("march", now), None);
    }
}
