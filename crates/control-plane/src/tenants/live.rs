//! Going live deliberately: what a switch to `shadow` or `live` must pass
//! before the mode changes — only venues that execute (Polymarket, Kalshi),
//! keys for every executing venue the tenant trades, each venue's keys
//! proven by a signed, read-only preflight (Polymarket: balance and
//! allowance on the CLOB; Kalshi: `GET /portfolio/balance`), the explicit
//! acknowledgement for `live`, and the platform setting that may keep the
//! switch to operators.
//!
//! Not here: the order path itself (`polybot_venues::execution`), or what
//! the worker does in each mode.

use std::sync::Arc;

use async_trait::async_trait;
use polybot_core::Mode;
use polybot_core::keys::ExchangeKeys;
use polybot_core::strategy::{StrategiesConfig, Venue};
use polybot_core::validation::FieldError;
use polybot_venues::execution::kalshi::{KalshiExecutor, KalshiKeys, KalshiSettings};
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
    /// Kalshi's trade API the preflight asks (the worker's `POLYBOT_KALSHI_URL`).
    pub kalshi: KalshiSettings,
}

impl Default for LiveSettings {
    fn default() -> Self {
        Self {
            requires_operator: true,
            polymarket: PolymarketSettings::default(),
            kalshi: KalshiSettings::default(),
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

/// The venues that execute.
const EXECUTING: [Venue; 2] = [Venue::Polymarket, Venue::Kalshi];

/// The prediction-market venues the tenant's strategies trade.
fn traded_venues(strategies: &StrategiesConfig) -> Vec<&'static str> {
    let mut traded: Vec<&'static str> = Vec::new();
    if let Some(c) = &strategies.complement_arb {
        traded.extend(c.venues.iter().map(Venue::as_str));
    }
    if strategies.cross_venue_arb.is_some() {
        traded.extend([Venue::Polymarket.as_str(), Venue::Kalshi.as_str()]);
    }
    traded
}

/// The venues a tenant trades on or holds keys for that cannot execute yet
/// (Polymarket and Kalshi do); a news feed's key is no venue.
pub fn venues_without_execution(
    strategies: &StrategiesConfig,
    keys: &ExchangeKeys,
) -> Vec<&'static str> {
    let mut traded = traded_venues(strategies);
    traded.extend(keys.venues().filter(|v| *v != "newsapi"));
    traded.retain(|v| !EXECUTING.iter().any(|e| e.as_str() == *v));
    traded.sort_unstable();
    traded.dedup();
    traded
}

/// Executing venues the tenant trades without holding keys for them: each
/// is a field error naming the keys to set.
pub fn venues_without_keys(strategies: &StrategiesConfig, keys: &ExchangeKeys) -> Vec<FieldError> {
    let mut traded = traded_venues(strategies);
    traded.sort_unstable();
    traded.dedup();
    traded
        .into_iter()
        .filter(|v| keys.venues().all(|held| held != *v))
        .map(|v| {
            FieldError::new(
                format!("exchange_keys.{v}"),
                format!(
                    "the tenant's strategies trade on {v}, so shadow and live need its keys; \
                     set them with PUT /tenants/{{id}}/exchange-keys first"
                ),
            )
        })
        .collect()
}

/// The refusal naming the venues that keep a tenant out of shadow and live.
pub fn venues_refused(mode: Mode, venues: &[&str]) -> FieldError {
    FieldError::new(
        "mode",
        format!(
            "{mode} needs live execution on every venue the tenant trades or holds keys for; \
             {} has none yet (only polymarket and kalshi do): remove its strategies and keys, or stay in paper",
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

/// The signed, read-only Kalshi preflight: reads the account's balance
/// (`GET /portfolio/balance`, RSA-PSS signed with the tenant's key). A
/// failure names the field and carries the venue's status and words, with
/// the key cut out.
pub async fn preflight_kalshi(
    settings: &KalshiSettings,
    keys: &ExchangeKeys,
) -> Result<(), FieldError> {
    let (Some(key_id), Some(pem)) = (
        keys.get("kalshi", "key_id"),
        keys.get("kalshi", "private_key_pem"),
    ) else {
        return Err(FieldError::new(
            "exchange_keys.kalshi",
            "key_id and private_key_pem are required for shadow and live; set the keys with PUT /tenants/{id}/exchange-keys first",
        ));
    };
    let secret = pem.expose_secret().trim().to_owned();
    let failed = |what: String| {
        let mut text = format!("the preflight against Kalshi failed: {what}");
        if secret.len() >= 4 {
            text = text.replace(secret.as_str(), "[redacted]");
        }
        FieldError::new("exchange_keys.kalshi", text)
    };
    let keys = KalshiKeys {
        key_id: key_id.expose_secret().trim().to_owned(),
        private_key_pem: pem.clone(),
    };
    let executor = KalshiExecutor::new(settings, &keys, Arc::new(ReadOnly))
        .map_err(|e| failed(e.to_string()))?;
    executor
        .balances()
        .await
        .map_err(|e| failed(e.to_string()))?;
    Ok(())
}

/// Every preflight a switch to shadow or live needs: keys for each
/// executing venue the strategies trade, and a signed read-only call to
/// each executing venue the tenant holds keys for.
pub async fn preflight_venues(
    settings: &LiveSettings,
    strategies: &StrategiesConfig,
    keys: &ExchangeKeys,
) -> Result<(), Vec<FieldError>> {
    let mut errors = venues_without_keys(strategies, keys);
    let holds = |venue: &str| keys.venues().any(|v| v == venue);
    if !holds("polymarket") && !holds("kalshi") {
        errors.push(FieldError::new(
            "exchange_keys",
            "shadow and live need Polymarket or Kalshi keys; set them with PUT /tenants/{id}/exchange-keys first",
        ));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    if holds("polymarket")
        && let Err(e) = preflight(&settings.polymarket, keys).await
    {
        errors.push(e);
    }
    if holds("kalshi")
        && let Err(e) = preflight_kalshi(&settings.kalshi, keys).await
    {
        errors.push(e);
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}
