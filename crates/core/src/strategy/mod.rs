//! The strategies' typed configs, as a tenant writes them at onboarding.
//!
//! Each strategy has its own module with a `deny_unknown_fields` config, its
//! defaults and its `validate()`; [`parse_strategies`] checks the whole
//! `strategies` object and reports every bad field with its JSON path.
//!
//! The strategies' logic lives in `polybot-engine` (`engine/src/strategies/<name>/`),
//! not here.

mod complement_arb;
mod cross_venue_arb;
mod crypto_15m;
mod news_arb;

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use complement_arb::ComplementArbConfig;
pub use cross_venue_arb::{BasisRiskPolicy, CrossVenueArbConfig, CuratedPair};
pub use crypto_15m::Crypto15mConfig;
pub use news_arb::{NewsArbConfig, NewsRule};

use crate::validation::{FieldError, Section, field_path, parse_section, unknown_field};

/// The JSON path of the strategies object inside a tenant's config.
pub const STRATEGIES_PATH: &str = "strategies";

/// The four strategies, named as in configs, health reports and the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StrategyKind {
    ComplementArb,
    CrossVenueArb,
    #[serde(rename = "crypto_15m")]
    Crypto15m,
    NewsArb,
}

impl StrategyKind {
    pub const ALL: [StrategyKind; 4] = [
        StrategyKind::ComplementArb,
        StrategyKind::CrossVenueArb,
        StrategyKind::Crypto15m,
        StrategyKind::NewsArb,
    ];

    pub const fn as_str(&self) -> &'static str {
        match self {
            StrategyKind::ComplementArb => "complement_arb",
            StrategyKind::CrossVenueArb => "cross_venue_arb",
            StrategyKind::Crypto15m => "crypto_15m",
            StrategyKind::NewsArb => "news_arb",
        }
    }

    /// A dense index (0..4), for per-strategy arrays.
    pub const fn index(&self) -> usize {
        match self {
            StrategyKind::ComplementArb => 0,
            StrategyKind::CrossVenueArb => 1,
            StrategyKind::Crypto15m => 2,
            StrategyKind::NewsArb => 3,
        }
    }
}

impl fmt::Display for StrategyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for StrategyKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        StrategyKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("{s:?} is not a strategy: expected one of {STRATEGY_NAMES:?}"))
    }
}

const STRATEGY_NAMES: &[&str] = &[
    "complement_arb",
    "cross_venue_arb",
    "crypto_15m",
    "news_arb",
];

/// A trading venue. Prediction markets settle at 0 or 1 per share; the CEXs
/// quote spot prices (and could be traded with a percentage fee).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Venue {
    Polymarket,
    Kalshi,
    BinanceUs,
    Coinbase,
    Kraken,
}

impl Venue {
    pub const ALL: [Venue; 5] = [
        Venue::Polymarket,
        Venue::Kalshi,
        Venue::BinanceUs,
        Venue::Coinbase,
        Venue::Kraken,
    ];

    pub const fn as_str(&self) -> &'static str {
        match self {
            Venue::Polymarket => "polymarket",
            Venue::Kalshi => "kalshi",
            Venue::BinanceUs => "binance_us",
            Venue::Coinbase => "coinbase",
            Venue::Kraken => "kraken",
        }
    }

    /// Whether the venue lists prediction markets (shares paying 0 or 1).
    pub const fn is_prediction_market(&self) -> bool {
        matches!(self, Venue::Polymarket | Venue::Kalshi)
    }

    /// A dense index (0..5), for per-venue arrays.
    pub const fn index(&self) -> usize {
        match self {
            Venue::Polymarket => 0,
            Venue::Kalshi => 1,
            Venue::BinanceUs => 2,
            Venue::Coinbase => 3,
            Venue::Kraken => 4,
        }
    }
}

impl fmt::Display for Venue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Venue {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Venue::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "{s:?} is not a venue: expected polymarket, kalshi, binance_us, coinbase or kraken"
                )
            })
    }
}

/// Which strategies a tenant runs and how; a strategy that is absent is off.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StrategiesConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub complement_arb: Option<ComplementArbConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cross_venue_arb: Option<CrossVenueArbConfig>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "crypto_15m"
    )]
    pub crypto_15m: Option<Crypto15mConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub news_arb: Option<NewsArbConfig>,
}

impl StrategiesConfig {
    /// All four strategies with their defaults.
    pub fn all_defaults() -> Self {
        Self {
            complement_arb: Some(ComplementArbConfig::default()),
            cross_venue_arb: Some(CrossVenueArbConfig::default()),
            crypto_15m: Some(Crypto15mConfig::default()),
            news_arb: Some(NewsArbConfig::default()),
        }
    }

    /// Whether `kind` is configured and enabled.
    pub fn is_enabled(&self, kind: StrategyKind) -> bool {
        match kind {
            StrategyKind::ComplementArb => self.complement_arb.as_ref().is_some_and(|c| c.enabled),
            StrategyKind::CrossVenueArb => self.cross_venue_arb.as_ref().is_some_and(|c| c.enabled),
            StrategyKind::Crypto15m => self.crypto_15m.as_ref().is_some_and(|c| c.enabled),
            StrategyKind::NewsArb => self.news_arb.as_ref().is_some_and(|c| c.enabled),
        }
    }

    /// Every semantic error, with paths under `strategies.`.
    pub fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if let Some(c) = &self.complement_arb {
            errors.extend(c.validate());
        }
        if let Some(c) = &self.cross_venue_arb {
            errors.extend(c.validate());
        }
        if let Some(c) = &self.crypto_15m {
            errors.extend(c.validate());
        }
        if let Some(c) = &self.news_arb {
            errors.extend(c.validate());
        }
        errors
    }
}

/// Parses a tenant's `strategies` object, reporting every bad field: unknown
/// strategies, unknown or misnamed fields, wrong types and out-of-range values.
pub fn parse_strategies(value: &Value) -> Result<StrategiesConfig, Vec<FieldError>> {
    let path = STRATEGIES_PATH;
    let Value::Object(map) = value else {
        return Err(vec![FieldError::new(
            path,
            "expected an object keyed by strategy name",
        )]);
    };
    let mut config = StrategiesConfig::default();
    let mut errors = Vec::new();
    for (name, section) in map {
        let spath = field_path(path, name);
        if section.is_null() {
            continue;
        }
        match name.as_str() {
            "complement_arb" => collect(section, &spath, &mut errors, &mut config.complement_arb),
            "cross_venue_arb" => collect(section, &spath, &mut errors, &mut config.cross_venue_arb),
            "crypto_15m" => collect(section, &spath, &mut errors, &mut config.crypto_15m),
            "news_arb" => collect(section, &spath, &mut errors, &mut config.news_arb),
            other => {
                let mut err = unknown_field(&spath, other, STRATEGY_NAMES);
                err.message = err.message.replacen("unknown field", "unknown strategy", 1);
                errors.push(err);
            }
        }
    }
    if errors.is_empty() {
        Ok(config)
    } else {
        Err(errors)
    }
}

fn collect<T: Section>(
    value: &Value,
    path: &str,
    errors: &mut Vec<FieldError>,
    slot: &mut Option<T>,
) {
    match parse_section::<T>(value, path) {
        Ok(section) => *slot = Some(section),
        Err(errs) => errors.extend(errs),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn fields(errors: &[FieldError]) -> Vec<&str> {
        let mut f: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        f.sort_unstable();
        f
    }

    #[test]
    fn an_empty_object_means_no_strategy_runs() {
        let config = parse_strategies(&json!({})).unwrap();
        assert_eq!(config, StrategiesConfig::default());
        assert!(StrategyKind::ALL.iter().all(|k| !config.is_enabled(*k)));
    }

    #[test]
    fn a_strategy_given_as_an_empty_object_runs_with_its_defaults() {
        let config = parse_strategies(&json!({"crypto_15m": {}})).unwrap();
        assert_eq!(config.crypto_15m, Some(Crypto15mConfig::default()));
        assert!(config.is_enabled(StrategyKind::Crypto15m));
        assert!(!config.is_enabled(StrategyKind::NewsArb));
    }

    #[test]
    fn an_unknown_strategy_is_rejected_with_its_name_as_the_field() {
        let errors =
            parse_strategies(&json!({"complement_arbs": {}, "martingale": {}})).unwrap_err();
        assert_eq!(
            fields(&errors),
            ["strategies.complement_arbs", "strategies.martingale"]
        );
        let typo = errors
            .iter()
            .find(|e| e.field == "strategies.complement_arbs")
            .unwrap();
        assert_eq!(
            typo.message,
            "unknown strategy `complement_arbs`; did you mean `complement_arb`?"
        );
    }

    #[test]
    fn a_misnamed_scan_interval_is_reported_with_the_real_name() {
        let errors =
            parse_strategies(&json!({"crypto_15m": {"scan_interval_sec": 5}})).unwrap_err();
        assert_eq!(
            errors,
            vec![FieldError::new(
                "strategies.crypto_15m.scan_interval_sec",
                "unknown field `scan_interval_sec`; did you mean `scan_interval_secs`?"
            )]
        );
    }

    #[test]
    fn every_bad_field_of_every_strategy_is_reported_at_once() {
        let errors = parse_strategies(&json!({
            "complement_arb": {"min_edge": "1.5", "max_size": -10, "scan_interval_sec": 3},
            "cross_venue_arb": {"pairs": [{"polymarket": "", "kalshi": "KXBTC", "colour": 1}]},
            "crypto_15m": {"min_edge": -0.01, "assets": "BTC", "volatility_window_secs": -5},
            "news_arb": {"rules": [{"market": "m", "outcome": "Yes", "keywords": ["fed"], "fair_price": 1.2}]}
        }))
        .unwrap_err();
        assert_eq!(
            fields(&errors),
            [
                "strategies.complement_arb.max_size",
                "strategies.complement_arb.min_edge",
                "strategies.complement_arb.scan_interval_sec",
                "strategies.cross_venue_arb.pairs[0].colour",
                "strategies.cross_venue_arb.pairs[0].polymarket",
                "strategies.crypto_15m.assets",
                "strategies.crypto_15m.min_edge",
                "strategies.crypto_15m.volatility_window_secs",
                "strategies.news_arb.rules[0].fair_price",
            ]
        );
    }

    #[test]
    fn a_valid_full_config_round_trips_through_json() {
        let config = StrategiesConfig::all_defaults();
        assert!(config.validate().is_empty());
        let value = serde_json::to_value(&config).unwrap();
        assert_eq!(parse_strategies(&value).unwrap(), config);
    }

    #[test]
    fn strategy_and_venue_names_round_trip() {
        for kind in StrategyKind::ALL {
            assert_eq!(kind.as_str().parse::<StrategyKind>(), Ok(kind));
            assert_eq!(serde_json::to_value(kind).unwrap(), json!(kind.as_str()));
        }
        for venue in Venue::ALL {
            assert_eq!(venue.as_str().parse::<Venue>(), Ok(venue));
            assert_eq!(serde_json::to_value(venue).unwrap(), json!(venue.as_str()));
        }
    }
}
