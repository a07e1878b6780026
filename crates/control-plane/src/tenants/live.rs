//! Going live deliberately: what a switch to `shadow` or `live` must pass
//! before the mode changes — only venues that execute (Polymarket), the
//! tenant's keys proven by a signed, read-only preflight against the CLOB,
//! the explicit acknowledgement for `live`, and the platform setting that
//! may keep the switch to operators.
//!
//! Not here: the order path itself (`polybot_venues::execution`), or what
//! the worker does in each mode.

use std::sync::Arc;

use async_trait::async_trait;
use polybot_core::Mode;
use polybot_core::keys::ExchangeKeys;
use polybot_core::strategy::{StrategiesConfig, Venue};
use polybot_core::validation::FieldError;
use polybot_venues::execution::polymarket::{
    ApiCredentials, PolymarketExecutor, PolymarketKeys, PolymarketSettings,
};
use polybot_venues::execution::{ExecError, Executor, Fence};
use secrecy::ExposeSecret;

/// The field a switch to `live` must carry, with exactly this text.
pub const ACKNOWLEDGEMENT_FIELD: &str = "live_acknowledgement";
/// The acknowledgement's text.
pub const ACKNOWLEDGEMENT: &str = "I understand real orders will be sent";

/// What the control plane needs to let a tenant go live.
#[derive(Debug, Clone)]
pub struct LiveSettings {
    /// Only an operator token may switch a tenant to `live`.
    pub requires_operator: bool,
    /// The CLOB the preflight asks (the worker's `POLYBOT_POLYMARKET_CLOB_URL`).
    pub polymarket: PolymarketSettings,
}

impl Default for LiveSettings {
    fn default() -> Self {
        Self {
            requires_operator: true,
            polymarket: PolymarketSettings::default(),
        }
    }
}

/// The 403 a tenant token gets when the platform keeps live to operators.
pub const OPERATOR_ONLY: &str = "this platform lets only an operator switch a tenant to live \
     (POLYBOT_LIVE_REQUIRES_OPERATOR); ask your operator";

/// The acknowledgement check: required with `live`, refused without it.
pub fn check_acknowledgement(
    mode: Option<Mode>,
    given: Option<&serde_json::Value>,
) -> Vec<FieldError> {
    let wanted = format!("must be exactly {ACKNOWLEDGEMENT:?}");
    match (mode, given) {
        (Some(Mode::Live), None) => vec![FieldError::new(
            ACKNOWLEDGEMENT_FIELD,
            format!("is required to switch to live, and {wanted}"),
        )],
        (Some(Mode::Live), Some(v)) if v.as_str() != Some(ACKNOWLEDGEMENT) => {
            vec![FieldError::new(ACKNOWLEDGEMENT_FIELD, wanted)]
        }
        (Some(Mode::Live), Some(_)) | (_, None) => Vec::new(),
        (_, Some(_)) => vec![FieldError::new(
            ACKNOWLEDGEMENT_FIELD,
            "is given only with mode live",
        )],
    }
}

/// The venues a tenant trades on or holds keys for that cannot execute yet
/// (only Polymarket does); a news feed's key is no venue.
pub fn venues_without_execution(
    strategies: &StrategiesConfig,
    keys: &ExchangeKeys,
) -> Vec<&'static str> {
    let mut traded: Vec<&'static str> = Vec::new();
    if let Some(c) = &strategies.complement_arb {
        traded.extend(c.venues.iter().map(Venue::as_str));
    }
    if strategies.cross_venue_arb.is_some() {
        traded.extend([Venue::Polymarket.as_str(), Venue::Kalshi.as_str()]);
    }
    traded.extend(keys.venues().filter(|v| *v != "newsapi"));
    traded.retain(|v| *v != Venue::Polymarket.as_str());
    traded.sort_unstable();
    traded.dedup();
    traded
}

/// The refusal naming the venues that keep a tenant out of shadow and live.
pub fn venues_refused(mode: Mode, venues: &[&str]) -> FieldError {
    FieldError::new(
        "mode",
        format!(
            "{mode} needs live execution on every venue the tenant trades or holds keys for; \
             {} has none yet (only polymarket does): remove its strategies and keys, or stay in paper",
            venues.join(", ")
        ),
    )
}

/// A fence that never holds: the preflight must not be able to send an order.
struct ReadOnly;

#[async_trait]
impl Fence for ReadOnly {
    async fn check(&self) -> Result<(), ExecError> {
        Err(ExecError::LeaseUnverified(
            "a preflight sends no orders".to_owned(),
        ))
    }
}

/// The signed, read-only preflight: authenticates with the tenant's
/// Polymarket keys and reads the collateral balance and allowance (an L2
/// request). A failure names the field and carries the venue's status and
/// words, with every key value cut out.
pub async fn preflight(
    settings: &PolymarketSettings,
    keys: &ExchangeKeys,
) -> Result<(), FieldError> {
    let field = |name: &str| keys.get("polymarket", name).cloned();
    let Some(private_key) = field("private_key") else {
        return Err(FieldError::new(
            "exchange_keys.polymarket.private_key",
            "is required for shadow and live; set the keys with PUT /tenants/{id}/exchange-keys first",
        ));
    };
    let api = match (field("api_key"), field("secret"), field("passphrase")) {
        (Some(api_key), Some(secret), Some(passphrase)) => Some(ApiCredentials {
            api_key,
            secret,
            passphrase,
        }),
        _ => None,
    };
    let secrets: Vec<String> = ["private_key", "api_key", "secret", "passphrase"]
        .iter()
        .filter_map(|name| keys.get("polymarket", name))
        .map(|s| s.expose_secret().trim().to_owned())
        .collect();
    let keys = PolymarketKeys { private_key, api };
    let failed = |what: String| {
        let mut text = format!("the preflight against the Polymarket CLOB failed: {what}");
        for secret in secrets.iter().filter(|s| s.len() >= 4) {
            text = text.replace(secret.as_str(), "[redacted]");
        }
        FieldError::new("exchange_keys.polymarket", text)
    };
    let executor = PolymarketExecutor::connect(settings, &keys, Arc::new(ReadOnly))
        .await
        .map_err(|e| failed(e.to_string()))?;
    executor
        .balances()
        .await
        .map_err(|e| failed(e.to_string()))?;
    Ok(())
}
