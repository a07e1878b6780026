//! `POST /webhooks/stripe`: Stripe's events, verified by their signature and
//! applied to the tenant they concern, once each, in any order.
//!
//! - **Authenticated only by the signature** (no bearer token): the
//!   `Stripe-Signature` header carries `t=<unix time>` and one or more
//!   `v1=<hex>` HMAC-SHA256 signatures of `"{t}.{raw body}"` under the
//!   endpoint's signing secret (Stripe's documented scheme). One matching
//!   `v1` (compared in constant time) and a `t` within the tolerance window
//!   are required. A failed check counts against the client's budget in the
//!   authentication throttle, so guessing costs a 429.
//! - **Once each**: the event id is recorded in the same transaction as its
//!   effect; a redelivery or a replay is acknowledged and changes nothing.
//! - **In any order**: a payment state is written only by an event created
//!   no earlier than the one that set it (`repo::billing::apply_payment`), so
//!   a late `invoice.payment_failed` cannot undo a newer `invoice.paid`.
//! - **One tenant per event**: the tenant is found by its Stripe customer
//!   (stored when the customer was created), else by the `tenant_id` this
//!   control plane put in the Checkout session or subscription; an event
//!   whose customer belongs to no tenant, or to another one, changes nothing.
//!
//! What does not live here: deciding that a lapsed payment stops the worker
//! (`billing::payment_hold`, asked by the reconciler).

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{Extensions, HeaderMap};
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use polybot_core::TenantId;
use polybot_store::repo::{audit, billing};
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::Sha256;
use uuid::Uuid;

use super::PaymentState;
use crate::AppState;
use crate::error::{ApiError, ApiResult};

/// Why a `Stripe-Signature` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the Stripe-Signature header is missing")]
    Missing,
    #[error("the Stripe-Signature header has no t= timestamp or no v1= signature")]
    Malformed,
    #[error("the Stripe-Signature timestamp is outside the {0} s tolerance window")]
    Stale(u64),
    #[error("no v1 signature of the Stripe-Signature header matches")]
    Mismatch,
}

/// Checks `header` for `payload` under `secret` at `now` (unix seconds);
/// returns the signed timestamp.
pub fn verify(
    header: Option<&str>,
    payload: &[u8],
    secret: &[u8],
    now: i64,
    tolerance: Duration,
) -> Result<i64, SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) if timestamp.is_none() => timestamp = t.parse::<i64>().ok(),
            Some(("v1", hex_sig)) => {
                if let Ok(sig) = hex::decode(hex_sig) {
                    signatures.push(sig);
                }
            }
            _ => {}
        }
    }
    let (Some(timestamp), false) = (timestamp, signatures.is_empty()) else {
        return Err(SignatureError::Malformed);
    };
    let tolerance_secs = tolerance.as_secs();
    if now.abs_diff(timestamp) > tolerance_secs {
        return Err(SignatureError::Stale(tolerance_secs));
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).map_err(|_| SignatureError::Mismatch)?;
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(payload);
    // `verify_slice` compares in constant time.
    if signatures
        .iter()
        .any(|sig| mac.clone().verify_slice(sig).is_ok())
    {
        Ok(timestamp)
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// The `Stripe-Signature` value Stripe would send for `payload` at
/// `timestamp` (for tests and local tools).
pub fn sign(payload: &[u8], secret: &[u8], timestamp: i64) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(payload);
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

#[derive(Debug, Deserialize)]
struct Event {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    created: i64,
    data: EventData,
}

#[derive(Debug, Deserialize)]
struct EventData {
    object: Value,
}

fn text<'a>(object: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter()
        .try_fold(object, |v, key| v.get(key))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// The tenant an object names itself (Checkout's `client_reference_id`, or
/// the `tenant_id` metadata this control plane sets).
fn named_tenant(object: &Value) -> Option<TenantId> {
    text(object, &["client_reference_id"])
        .or_else(|| text(object, &["metadata", "tenant_id"]))
        .or_else(|| text(object, &["subscription_details", "metadata", "tenant_id"]))
        .and_then(|s| s.parse::<Uuid>().ok())
        .map(TenantId::from_uuid)
}

/// Receive a Stripe event (unauthenticated except by its signature).
#[utoipa::path(post, path = "/webhooks/stripe", operation_id = "receive_stripe_event", tag = "billing",
    security(()),
    request_body(content = Object, description = "a Stripe event, signed in the Stripe-Signature header"),
    params(("Stripe-Signature" = String, Header, description = "t=<unix time>,v1=<HMAC-SHA256 hex>[,v1=…]")),
    responses(
        (status = 200, description = "the event was applied, recorded as not concerning any tenant, or already received"),
        (status = 400, description = "the signature is missing, stale or wrong, or the body is not a Stripe event", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 429, description = "too many bad signatures from this client", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "no webhook secret is configured", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn receive(
    State(state): State<AppState>,
    headers: HeaderMap,
    extensions: Extensions,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let settings = &state.settings.billing;
    let Some(secret) = settings.webhook_secret.as_ref() else {
        return Err(ApiError::Unavailable(
            "Stripe webhooks are not configured (POLYBOT_STRIPE_WEBHOOK_SECRET)".into(),
        ));
    };
    if let Some(wait) = state.throttle.peer_blocked(&headers, &extensions) {
        return Err(ApiError::TooManyRequests {
            retry_after_secs: wait.as_secs().max(1),
        });
    }
    let header = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok());
    if let Err(err) = verify(
        header,
        &body,
        secret.expose_secret().as_bytes(),
        Utc::now().timestamp(),
        settings.tolerance,
    ) {
        state.throttle.peer_failed(&headers, &extensions);
        return Err(ApiError::BadRequest(err.to_string()));
    }
    let event: Event = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("the body is not a Stripe event: {e}")))?;
    let created = DateTime::from_timestamp(event.created, 0)
        .ok_or_else(|| ApiError::BadRequest("the event's created time is out of range".into()))?;
    let outcome = apply(&state, &event, created).await?;
    Ok(Json(
        json!({"received": true, "id": event.id, "outcome": outcome}),
    ))
}

/// Applies `event` once; returns what became of it.
async fn apply(state: &AppState, event: &Event, created: DateTime<Utc>) -> ApiResult<String> {
    let object = &event.data.object;
    let customer = text(object, &["customer"]);
    let mut op = state.db.operator().await?;
    if let Some(outcome) = billing::event_outcome(&mut op, &event.id).await? {
        op.commit().await?;
        return Ok(format!("duplicate: {outcome}"));
    }
    let by_customer = match customer {
        Some(customer) => billing::tenant_for_customer(&mut op, customer).await?,
        None => None,
    };
    let named = named_tenant(object);
    let tenant = match (by_customer, named) {
        (Some(found), Some(named)) if found != named => None,
        (Some(found), _) => Some(found),
        (None, named) => named,
    };
    let Some(tenant) = tenant else {
        let outcome = format!(
            "ignored: no tenant for Stripe customer {}",
            customer.unwrap_or("(none)")
        );
        billing::record_event(&mut op, &event.id, &event.kind, created, &outcome).await?;
        op.commit().await?;
        return Ok(outcome);
    };
    op.commit().await?;

    let mut tx = state.db.tenant(tenant).await?;
    let row = billing::lock(&mut tx).await?;
    // A customer stored for the tenant must be the event's.
    let foreign = match (&row, customer) {
        (Some(row), Some(customer)) => row
            .stripe_customer_id
            .as_deref()
            .is_some_and(|own| own != customer),
        _ => false,
    };
    let outcome = if foreign {
        format!("ignored: the customer is not tenant {tenant}'s")
    } else {
        effect(&mut tx, event, created, row.is_some()).await?
    };
    if !billing::record_event(&mut tx, &event.id, &event.kind, created, &outcome).await? {
        tx.rollback().await?;
        return Ok("duplicate: received concurrently".into());
    }
    if outcome.starts_with("applied") {
        audit::append(
            &mut tx,
            "stripe",
            &format!("billing.{}", event.kind),
            json!({"event": event.id, "outcome": outcome}),
        )
        .await?;
    }
    tx.commit().await?;
    state.wake();
    Ok(outcome)
}

/// The event's effect on the transaction's tenant's billing (its row locked,
/// if `has_row`).
async fn effect(
    tx: &mut polybot_store::TenantTx,
    event: &Event,
    created: DateTime<Utc>,
    has_row: bool,
) -> ApiResult<String> {
    let object = &event.data.object;
    let customer = text(object, &["customer"]);
    let mut has_row = has_row;
    if event.kind == "checkout.session.completed"
        && let Some(plan) = text(object, &["metadata", "plan"])
        && billing::plan(tx, plan).await?.is_some()
    {
        billing::set_plan(tx, plan).await?;
        has_row = true;
    }
    if !has_row {
        return Ok("ignored: the tenant has no plan".into());
    }
    let payment = match event.kind.as_str() {
        "checkout.session.completed" => {
            billing::set_stripe_ids(tx, customer, text(object, &["subscription"])).await?;
            match text(object, &["payment_status"]) {
                Some("paid" | "no_payment_required") => Some(PaymentState::Active),
                _ => None,
            }
        }
        "invoice.paid" => Some(PaymentState::Active),
        "invoice.payment_failed" => Some(PaymentState::PastDue),
        "customer.subscription.updated" | "customer.subscription.created" => {
            billing::set_stripe_ids(tx, customer, text(object, &["id"])).await?;
            text(object, &["status"]).and_then(PaymentState::from_subscription_status)
        }
        "customer.subscription.deleted" => Some(PaymentState::Canceled),
        other => return Ok(format!("ignored: {other} is not handled")),
    };
    let Some(payment) = payment else {
        return Ok("applied: ids recorded; payment state unchanged".into());
    };
    if !billing::apply_payment(tx, payment.as_str(), created).await? {
        return Ok(format!(
            "stale: a newer event already set the payment state (this one would set {})",
            payment.as_str()
        ));
    }
    // A subscription moved to another price moves the tenant to its plan.
    if event.kind == "customer.subscription.updated"
        && let Some(price) = object
            .pointer("/items/data/0/price/id")
            .and_then(Value::as_str)
        && let Some(plan) = billing::plan_for_price(tx, price).await?
    {
        billing::set_plan(tx, &plan.id).await?;
        return Ok(format!(
            "applied: payment {}; plan {}",
            payment.as_str(),
            plan.id
        ));
    }
    Ok(format!("applied: payment {}", payment.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"whsec_test_secret";

    #[test]
    fn a_signature_made_by_the_documented_scheme_verifies() {
        let payload = br#"{"id":"evt_1"}"#;
        let header = sign(payload, SECRET, 1_700_000_000);
        assert_eq!(
            verify(
                Some(&header),
                payload,
                SECRET,
                1_700_000_100,
                Duration::from_secs(300)
            ),
            Ok(1_700_000_000)
        );
    }

    #[test]
    fn any_one_of_several_v1_signatures_may_match() {
        let payload = b"{}";
        let good = sign(payload, SECRET, 100);
        let v1 = good.split_once(",v1=").unwrap().1;
        let header = format!("t=100,v1={},v0=abc,v1={v1}", "00".repeat(32));
        assert_eq!(
            verify(
                Some(&header),
                payload,
                SECRET,
                100,
                Duration::from_secs(300)
            ),
            Ok(100)
        );
    }

    #[test]
    fn a_wrong_secret_a_changed_body_or_an_old_timestamp_is_refused() {
        let payload = b"{\"a\":1}";
        let header = sign(payload, SECRET, 1000);
        let tolerance = Duration::from_secs(300);
        assert_eq!(
            verify(Some(&header), payload, b"whsec_other", 1000, tolerance),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(Some(&header), b"{\"a\":2}", SECRET, 1000, tolerance),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(Some(&header), payload, SECRET, 1301, tolerance),
            Err(SignatureError::Stale(300))
        );
        assert_eq!(
            verify(None, payload, SECRET, 1000, tolerance),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify(Some("v1=00"), payload, SECRET, 1000, tolerance),
            Err(SignatureError::Malformed)
        );
    }
}
