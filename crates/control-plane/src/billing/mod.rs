//! Billing: what a tenant's plan allows, whether a missing payment stops its
//! worker, Stripe's webhooks ([`webhook`]) and API ([`stripe`]), and the
//! billing endpoints ([`api`]); API calls counted ([`calls`]) and metered
//! usage reported to Stripe ([`meter`]).
//!
//! A tenant without a plan (no `tenant_billing` row) is unlimited and never
//! billed: an operator-run tenant, or one onboarded before billing existed.
//! Entitlements are checked where a tenant asks for something — onboarding,
//! `PATCH`, key rotation, tokens, alert channels — and refused with a 402
//! naming the entitlement. The reconciler asks [`payment_hold`] whether a
//! tenant's worker may run; nothing here performs launcher calls. Rows are
//! read and written through `polybot_store::repo::billing`.

pub mod api;
pub mod calls;
pub mod meter;
pub mod stripe;
pub mod webhook;

use std::time::Duration;

use chrono::{DateTime, Utc};
use polybot_core::Mode;
use polybot_core::keys::ExchangeKeys;
use polybot_core::strategy::{StrategiesConfig, StrategyKind};
use polybot_core::validation::FieldError;
use polybot_store::TenantTx;
use polybot_store::repo::billing::{self, Plan, Standing};
use rust_decimal::Decimal;
use secrecy::SecretString;

use crate::error::{ApiError, ApiResult};

/// How billing is configured (see `docs/billing.md`).
#[derive(Clone)]
pub struct BillingSettings {
    /// `POLYBOT_STRIPE_API_KEY`: the secret key the Stripe calls use.
    pub stripe_api_key: Option<SecretString>,
    /// `POLYBOT_STRIPE_WEBHOOK_SECRET`: the endpoint's signing secret (`whsec_…`).
    pub webhook_secret: Option<SecretString>,
    /// `POLYBOT_STRIPE_API_BASE`: Stripe's API (tests point it at a stand-in).
    pub api_base: String,
    /// How old a webhook's signed timestamp may be.
    pub tolerance: Duration,
    /// How long a worker keeps running after payment went missing.
    pub grace: Duration,
    /// The plan of a tenant onboarded without one; `None`: no plan.
    pub default_plan: Option<String>,
    /// Where Checkout sends the customer back to.
    pub success_url: String,
    pub cancel_url: String,
}

impl std::fmt::Debug for BillingSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BillingSettings")
            .field("stripe_api_key", &self.stripe_api_key.is_some())
            .field("webhook_secret", &self.webhook_secret.is_some())
            .field("api_base", &self.api_base)
            .field("tolerance", &self.tolerance)
            .field("grace", &self.grace)
            .field("default_plan", &self.default_plan)
            .finish_non_exhaustive()
    }
}

impl Default for BillingSettings {
    fn default() -> Self {
        Self {
            stripe_api_key: None,
            webhook_secret: None,
            api_base: "https://api.stripe.com".to_owned(),
            tolerance: Duration::from_secs(300),
            grace: Duration::from_secs(72 * 3600),
            default_plan: None,
            success_url: "https://example.invalid/billing/done".to_owned(),
            cancel_url: "https://example.invalid/billing/cancelled".to_owned(),
        }
    }
}

/// Billing's flags and environment variables (merged into `polybot
/// control-plane` and `polybot up`).
#[derive(Debug, Clone, clap::Args)]
pub struct BillingArgs {
    /// Stripe's secret API key; without it the Stripe calls (Checkout,
    /// metered usage) are refused with a 503.
    #[arg(
        long,
        env = "POLYBOT_STRIPE_API_KEY",
        value_name = "KEY",
        hide_env_values = true
    )]
    pub stripe_api_key: Option<SecretString>,
    /// The signing secret of the Stripe webhook endpoint (`whsec_…`);
    /// without it `POST /webhooks/stripe` answers 503.
    #[arg(
        long,
        env = "POLYBOT_STRIPE_WEBHOOK_SECRET",
        value_name = "SECRET",
        hide_env_values = true
    )]
    pub stripe_webhook_secret: Option<SecretString>,
    /// Stripe's API base URL.
    #[arg(
        long,
        env = "POLYBOT_STRIPE_API_BASE",
        value_name = "URL",
        default_value = "https://api.stripe.com"
    )]
    pub stripe_api_base: String,
    /// Hours a worker keeps running after its tenant's payment went missing.
    #[arg(
        long,
        env = "POLYBOT_BILLING_GRACE_HOURS",
        value_name = "HOURS",
        default_value = "72"
    )]
    pub billing_grace_hours: u32,
    /// The plan given to a tenant onboarded without one (none: unlimited).
    #[arg(long, env = "POLYBOT_DEFAULT_PLAN", value_name = "PLAN")]
    pub default_plan: Option<String>,
    /// Where Stripe Checkout returns the customer after paying.
    #[arg(
        long,
        env = "POLYBOT_BILLING_SUCCESS_URL",
        value_name = "URL",
        default_value = "https://example.invalid/billing/done"
    )]
    pub billing_success_url: String,
    /// Where Stripe Checkout returns the customer who cancelled.
    #[arg(
        long,
        env = "POLYBOT_BILLING_CANCEL_URL",
        value_name = "URL",
        default_value = "https://example.invalid/billing/cancelled"
    )]
    pub billing_cancel_url: String,
}

impl From<BillingArgs> for BillingSettings {
    fn from(args: BillingArgs) -> Self {
        use secrecy::ExposeSecret;
        let present = |s: Option<SecretString>| s.filter(|s| !s.expose_secret().trim().is_empty());
        Self {
            stripe_api_key: present(args.stripe_api_key),
            webhook_secret: present(args.stripe_webhook_secret),
            api_base: args.stripe_api_base.trim_end_matches('/').to_owned(),
            grace: Duration::from_secs(u64::from(args.billing_grace_hours) * 3600),
            default_plan: args.default_plan.filter(|p| !p.trim().is_empty()),
            success_url: args.billing_success_url,
            cancel_url: args.billing_cancel_url,
            ..Self::default()
        }
    }
}

/// A payment state, as stored in `tenant_billing.payment_state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentState {
    /// No subscription yet.
    None,
    Active,
    PastDue,
    Canceled,
}

impl PaymentState {
    pub const fn as_str(self) -> &'static str {
        match self {
            PaymentState::None => "none",
            PaymentState::Active => "active",
            PaymentState::PastDue => "past_due",
            PaymentState::Canceled => "canceled",
        }
    }

    /// Stripe's subscription status, mapped: `active`/`trialing` are paid;
    /// `past_due`/`unpaid`/`incomplete` are missing payment; an ended
    /// subscription is canceled.
    pub fn from_subscription_status(status: &str) -> Option<Self> {
        match status {
            "active" | "trialing" => Some(PaymentState::Active),
            "past_due" | "unpaid" | "incomplete" => Some(PaymentState::PastDue),
            "canceled" | "incomplete_expired" => Some(PaymentState::Canceled),
            _ => None,
        }
    }
}

/// Why `standing`'s worker must not run at `now`, if it must not: its plan
/// has a price, payment has been missing since `lapsed_since`, and the
/// grace period is over. A free plan never lapses.
pub fn payment_hold(standing: &Standing, now: DateTime<Utc>, grace: Duration) -> Option<String> {
    if standing.monthly_price <= Decimal::ZERO {
        return None;
    }
    if !matches!(standing.payment_state.as_str(), "past_due" | "canceled") {
        return None;
    }
    let since = standing.lapsed_since?;
    let ends = since + chrono::Duration::from_std(grace).unwrap_or_default();
    (now >= ends).then(|| {
        format!(
            "paused for payment: the {} plan's payment is {} since {} and the grace period ended {}; \
             paying the open invoice resumes the worker",
            standing.plan_id,
            standing.payment_state.replace('_', " "),
            since.format("%Y-%m-%d %H:%M UTC"),
            ends.format("%Y-%m-%d %H:%M UTC"),
        )
    })
}

/// The worker size (CPU units, MiB) `plan` runs with; `None`: the launcher's default.
pub fn worker_size(cpu: Option<i32>, memory: Option<i32>) -> Option<(u32, u32)> {
    let cpu = u32::try_from(cpu?).ok()?;
    let memory = u32::try_from(memory?).ok()?;
    Some((cpu, memory))
}

/// What a request asks for that a plan may not allow, by name.
#[derive(Debug, Default)]
pub struct Wanted {
    pub live: bool,
    pub strategies: Vec<String>,
    pub venues: Vec<String>,
}

impl Wanted {
    /// What a request's (validated) fields ask for; absent fields ask nothing.
    pub fn of(
        mode: Option<Mode>,
        strategies: Option<&StrategiesConfig>,
        keys: Option<&ExchangeKeys>,
    ) -> Self {
        let configured = strategies
            .map(|s| serde_json::to_value(s).unwrap_or_default())
            .unwrap_or_default();
        Self {
            live: mode == Some(Mode::Live),
            strategies: StrategyKind::ALL
                .into_iter()
                .map(|k| k.as_str())
                .filter(|name| configured.get(name).is_some())
                .map(str::to_owned)
                .collect(),
            venues: keys
                .map(|k| k.venues().map(str::to_owned).collect())
                .unwrap_or_default(),
        }
    }

    /// What a stored tenant runs: its mode, configured strategies and the
    /// venues it holds keys for.
    pub fn stored(detail: &polybot_store::repo::tenants::TenantDetail) -> Self {
        let names = |v: &Option<serde_json::Value>| -> Vec<String> {
            v.as_ref()
                .and_then(serde_json::Value::as_object)
                .map(|o| o.keys().cloned().collect())
                .unwrap_or_default()
        };
        Self {
            live: detail.mode == Mode::Live.as_str(),
            strategies: names(&detail.strategies),
            venues: names(&detail.fingerprints),
        }
    }
}

/// Every entitlement `wanted` exceeds on `plan`, as field errors whose
/// message names the entitlement.
pub fn exceeded(plan: &Plan, wanted: &Wanted) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if wanted.live && !plan.live_allowed {
        errors.push(FieldError::new(
            "mode",
            format!(
                "the {} plan does not include live trading (entitlement live_allowed)",
                plan.id
            ),
        ));
    }
    for name in wanted
        .strategies
        .iter()
        .filter(|n| !plan.strategies.contains(n))
    {
        errors.push(FieldError::new(
            format!("strategies.{name}"),
            format!(
                "the {} plan does not include the {name} strategy (entitlement strategies: {})",
                plan.id,
                plan.strategies.join(", ")
            ),
        ));
    }
    for venue in wanted.venues.iter().filter(|v| !plan.venues.contains(v)) {
        errors.push(FieldError::new(
            format!("exchange_keys.{venue}"),
            format!(
                "the {} plan does not include the {venue} venue (entitlement venues: {})",
                plan.id,
                plan.venues.join(", ")
            ),
        ));
    }
    errors
}

/// Refuses (402) what the transaction's tenant's plan does not allow; a
/// tenant without a plan is not limited.
pub async fn check(tx: &mut TenantTx, wanted: &Wanted) -> ApiResult<()> {
    let Some(plan) = billing::tenant_plan(tx).await? else {
        return Ok(());
    };
    refuse_exceeded(exceeded(&plan, wanted))
}

/// A 402 for `errors`, if any.
pub fn refuse_exceeded(errors: Vec<FieldError>) -> ApiResult<()> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::PlanLimit(errors))
    }
}

/// Refuses (402) a token beyond the plan's cap, given how many are live.
pub async fn check_token_cap(tx: &mut TenantTx, live: i64) -> ApiResult<()> {
    let Some(plan) = billing::tenant_plan(tx).await? else {
        return Ok(());
    };
    if live >= i64::from(plan.max_tokens) {
        return Err(ApiError::PlanLimit(vec![FieldError::new(
            "tokens",
            format!(
                "the {} plan allows {} live tokens (entitlement max_tokens); revoke one first",
                plan.id, plan.max_tokens
            ),
        )]));
    }
    Ok(())
}

/// Refuses (402) alert channel kinds the plan does not include.
pub async fn check_channels<'a>(
    tx: &mut TenantTx,
    kinds: impl Iterator<Item = (usize, &'a str)>,
) -> ApiResult<()> {
    let Some(plan) = billing::tenant_plan(tx).await? else {
        return Ok(());
    };
    let errors = kinds
        .filter(|(_, kind)| !plan.alert_channels.iter().any(|k| k == kind))
        .map(|(n, kind)| {
            FieldError::new(
                format!("channels[{n}].kind"),
                format!(
                    "the {} plan does not include {kind} alert channels (entitlement alert_channels: {})",
                    plan.id,
                    plan.alert_channels.join(", ")
                ),
            )
        })
        .collect();
    refuse_exceeded(errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn standing(price: Decimal, state: &str, since: Option<i64>) -> Standing {
        Standing {
            tenant_id: uuid::Uuid::nil(),
            plan_id: "pro".into(),
            worker_cpu: None,
            worker_memory: None,
            monthly_price: price,
            payment_state: state.into(),
            lapsed_since: since.map(|s| DateTime::from_timestamp(s, 0).unwrap()),
        }
    }

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(secs, 0).unwrap()
    }

    #[test]
    fn a_missing_payment_holds_the_worker_only_after_the_grace_period() {
        let grace = Duration::from_secs(3600);
        let lapsed = standing(Decimal::from(49), "past_due", Some(1_000_000));
        assert_eq!(payment_hold(&lapsed, at(1_000_000 + 3599), grace), None);
        let reason = payment_hold(&lapsed, at(1_000_000 + 3600), grace).expect("held");
        assert!(reason.starts_with("paused for payment: the pro plan's payment is past due since"));
    }

    #[test]
    fn a_free_plan_or_a_paid_subscription_never_holds_the_worker() {
        let grace = Duration::ZERO;
        assert_eq!(
            payment_hold(
                &standing(Decimal::from(0), "canceled", Some(0)),
                at(10),
                grace
            ),
            None
        );
        assert_eq!(
            payment_hold(&standing(Decimal::from(49), "active", None), at(10), grace),
            None
        );
        assert_eq!(
            payment_hold(&standing(Decimal::from(49), "none", None), at(10), grace),
            None
        );
    }

    #[test]
    fn stripe_statuses_map_to_payment_states() {
        assert_eq!(
            PaymentState::from_subscription_status("trialing"),
            Some(PaymentState::Active)
        );
        assert_eq!(
            PaymentState::from_subscription_status("unpaid"),
            Some(PaymentState::PastDue)
        );
        assert_eq!(
            PaymentState::from_subscription_status("canceled"),
            Some(PaymentState::Canceled)
        );
        assert_eq!(PaymentState::from_subscription_status("paused"), None);
    }
}
