//! A thin typed client for the three Stripe API calls billing makes:
//! create a customer, open a Checkout session for a plan's subscription,
//! and send a meter event (metered usage).
//!
//! Why not `async-stripe`: its generated code covers Stripe's whole API
//! (hundreds of thousands of lines across its crates); three form-encoded
//! POSTs do not justify its build on this two-core machine, and reqwest
//! (already built for the venues) does them. Stripe's base URL is a
//! setting, so the tests run against a local stand-in.
//!
//! The secret key goes only into the `Authorization` header; it is never in
//! an error, a log line or `Debug`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use polybot_core::TenantId;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// A failed Stripe call, with what was called and what Stripe answered.
#[derive(Debug, thiserror::Error)]
pub enum StripeError {
    #[error("Stripe is not configured: POLYBOT_STRIPE_API_KEY is not set")]
    NotConfigured,
    #[error("Stripe {endpoint}: {source}")]
    Transport {
        endpoint: &'static str,
        #[source]
        source: reqwest::Error,
    },
    #[error("Stripe {endpoint}: HTTP {status}: {body}")]
    Status {
        endpoint: &'static str,
        status: u16,
        /// The start of Stripe's answer (its error message).
        body: String,
    },
    #[error("Stripe {endpoint}: unexpected answer: {message}")]
    Decode {
        endpoint: &'static str,
        message: String,
    },
}

/// The client. Cheap to clone.
#[derive(Clone)]
pub struct Stripe {
    http: reqwest::Client,
    base: String,
    key: SecretString,
}

impl std::fmt::Debug for Stripe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stripe")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// A Stripe customer (only what billing keeps).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Customer {
    pub id: String,
}

/// A Checkout session: the customer pays at `url`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CheckoutSession {
    pub id: String,
    pub url: Option<String>,
}

/// What a Checkout session subscribes to.
#[derive(Debug, Clone)]
pub struct CheckoutRequest<'a> {
    pub tenant: TenantId,
    pub customer: &'a str,
    pub plan: &'a str,
    pub price: &'a str,
    /// A metered price takes no quantity.
    pub metered: bool,
    pub success_url: &'a str,
    pub cancel_url: &'a str,
}

/// One meter event: `value` units for `customer` at `at`. `identifier`
/// makes a resend harmless (Stripe drops a duplicate identifier).
#[derive(Debug, Clone)]
pub struct MeterEvent<'a> {
    pub event_name: &'a str,
    pub customer: &'a str,
    pub value: u64,
    pub at: DateTime<Utc>,
    pub identifier: &'a str,
}

impl Stripe {
    pub fn new(base: &str, key: SecretString) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap_or_default();
        Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            key,
        }
    }

    /// The client of `settings`, if a key is configured.
    pub fn from_settings(settings: &super::BillingSettings) -> Result<Self, StripeError> {
        let key = settings
            .stripe_api_key
            .clone()
            .ok_or(StripeError::NotConfigured)?;
        Ok(Self::new(&settings.api_base, key))
    }

    async fn post<T: for<'de> Deserialize<'de>>(
        &self,
        endpoint: &'static str,
        idempotency_key: &str,
        form: &[(String, String)],
    ) -> Result<T, StripeError> {
        let response = self
            .http
            .post(format!("{}{endpoint}", self.base))
            .bearer_auth(self.key.expose_secret())
            .header("Idempotency-Key", idempotency_key)
            .form(form)
            .send()
            .await
            .map_err(|source| StripeError::Transport {
                endpoint,
                source: source.without_url(),
            })?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|source| StripeError::Transport { endpoint, source })?;
        if !status.is_success() {
            return Err(StripeError::Status {
                endpoint,
                status: status.as_u16(),
                body: text.chars().take(300).collect(),
            });
        }
        serde_json::from_str(&text).map_err(|e| StripeError::Decode {
            endpoint,
            message: e.to_string(),
        })
    }

    /// Creates the tenant's customer (the tenant id in its metadata).
    pub async fn create_customer(
        &self,
        tenant: TenantId,
        name: &str,
    ) -> Result<Customer, StripeError> {
        let form = vec![
            ("name".to_owned(), name.to_owned()),
            ("metadata[tenant_id]".to_owned(), tenant.to_string()),
        ];
        self.post("/v1/customers", &format!("customer-{tenant}"), &form)
            .await
    }

    /// Opens a Checkout session subscribing `customer` to `price`.
    pub async fn create_checkout_session(
        &self,
        request: &CheckoutRequest<'_>,
    ) -> Result<CheckoutSession, StripeError> {
        let tenant = request.tenant.to_string();
        let mut form = vec![
            ("mode".to_owned(), "subscription".to_owned()),
            ("customer".to_owned(), request.customer.to_owned()),
            ("client_reference_id".to_owned(), tenant.clone()),
            ("line_items[0][price]".to_owned(), request.price.to_owned()),
            ("metadata[tenant_id]".to_owned(), tenant.clone()),
            ("metadata[plan]".to_owned(), request.plan.to_owned()),
            (
                "subscription_data[metadata][tenant_id]".to_owned(),
                tenant.clone(),
            ),
            ("success_url".to_owned(), request.success_url.to_owned()),
            ("cancel_url".to_owned(), request.cancel_url.to_owned()),
        ];
        if !request.metered {
            form.push(("line_items[0][quantity]".to_owned(), "1".to_owned()));
        }
        // A new key per call: each call is a new session the customer asked for.
        let key = format!("checkout-{tenant}-{}", uuid::Uuid::new_v4());
        self.post("/v1/checkout/sessions", &key, &form).await
    }

    /// Sends one meter event.
    pub async fn send_meter_event(&self, event: &MeterEvent<'_>) -> Result<(), StripeError> {
        #[derive(Deserialize)]
        struct Accepted {}
        let form = vec![
            ("event_name".to_owned(), event.event_name.to_owned()),
            (
                "payload[stripe_customer_id]".to_owned(),
                event.customer.to_owned(),
            ),
            ("payload[value]".to_owned(), event.value.to_string()),
            ("identifier".to_owned(), event.identifier.to_owned()),
            ("timestamp".to_owned(), event.at.timestamp().to_string()),
        ];
        let _accepted: Accepted = self
            .post("/v1/billing/meter_events", event.identifier, &form)
            .await?;
        Ok(())
    }
}
