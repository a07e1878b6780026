//! Config of the 15-minute crypto up/down strategy: Polymarket's
//! `*-updown-15m-*` markets priced from spot (Binance US, Coinbase, Kraken)
//! against the window's opening price, the time left and recent volatility.

use rust_decimal::Decimal;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::cross_venue_arb::validate_assets;
use super::{StrategyKind, Venue};
use crate::validation::{Checker, FieldError, Section, decimal, field_path};

/// 15-minute crypto up/down (`strategies.crypto_15m`): Polymarket's 15-minute
/// markets priced from spot against the window's opening price, the time left
/// and recent volatility.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Crypto15mConfig {
    /// Off keeps the settings but takes no decisions.
    pub enabled: bool,
    /// Assets whose 15-minute markets are traded (upper case, e.g. "BTC").
    pub assets: Vec<String>,
    /// Spot venues whose prices are combined (median) into the reference spot.
    pub spot_venues: Vec<Venue>,
    /// Minimum fair value minus (ask + fee) per share, in price units.
    #[serde(with = "decimal")]
    #[schemars(schema_with = "decimal::schema")]
    pub min_edge: Decimal,
    /// Smallest order worth sending, in shares.
    #[serde(with = "decimal")]
    #[schemars(schema_with = "decimal::schema")]
    pub min_size: Decimal,
    /// Largest order per opportunity, in shares.
    #[serde(with = "decimal")]
    #[schemars(schema_with = "decimal::schema")]
    pub max_size: Decimal,
    /// How often a market is re-priced on clock ticks alone (time decay), in seconds.
    pub scan_interval_secs: u64,
    /// Span of spot returns used for the volatility estimate, in seconds.
    pub volatility_window_secs: u64,
    /// Spot returns needed in that span before trading.
    pub min_volatility_samples: u32,
    /// No new orders in the last seconds of a window.
    pub min_remaining_secs: u64,
    /// A venue's spot price older than this is ignored, in seconds.
    pub max_spot_age_secs: u64,
    /// After trading a market, ignore it for this many seconds.
    pub market_cooldown_secs: u64,
}

impl Default for Crypto15mConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            assets: vec!["BTC".to_owned(), "ETH".to_owned()],
            spot_venues: vec![Venue::BinanceUs, Venue::Coinbase, Venue::Kraken],
            min_edge: Decimal::new(3, 2),
            min_size: Decimal::ONE,
            max_size: Decimal::new(50, 0),
            scan_interval_secs: 1,
            volatility_window_secs: 900,
            min_volatility_samples: 20,
            min_remaining_secs: 60,
            max_spot_age_secs: 10,
            market_cooldown_secs: 30,
        }
    }
}

impl Crypto15mConfig {
    pub const KIND: StrategyKind = StrategyKind::Crypto15m;

    /// Semantic errors, with paths under `strategies.crypto_15m`.
    pub fn validate(&self) -> Vec<FieldError> {
        self.validate_at(&field_path(super::STRATEGIES_PATH, Self::KIND.as_str()))
    }
}

impl Section for Crypto15mConfig {
    const FIELDS: &'static [&'static str] = &[
        "enabled",
        "assets",
        "spot_venues",
        "min_edge",
        "min_size",
        "max_size",
        "scan_interval_secs",
        "volatility_window_secs",
        "min_volatility_samples",
        "min_remaining_secs",
        "max_spot_age_secs",
        "market_cooldown_secs",
    ];

    fn validate_at(&self, path: &str) -> Vec<FieldError> {
        let mut c = Checker::new(path);
        validate_assets(&mut c, "assets", &self.assets);
        if self.spot_venues.is_empty() {
            c.fail("spot_venues", "must list at least one spot venue");
        }
        for v in &self.spot_venues {
            if v.is_prediction_market() {
                c.fail(
                    "spot_venues",
                    format!("{v} quotes no spot price: use binance_us, coinbase or kraken"),
                );
            }
        }
        c.probability("min_edge", self.min_edge, false);
        c.positive("min_size", self.min_size);
        c.positive("max_size", self.max_size);
        if self.min_size > self.max_size && self.max_size > Decimal::ZERO {
            c.fail(
                "min_size",
                format!("must not exceed max_size ({})", self.max_size),
            );
        }
        c.int_range("scan_interval_secs", self.scan_interval_secs, 1, 900);
        c.int_range(
            "volatility_window_secs",
            self.volatility_window_secs,
            60,
            86_400,
        );
        c.int_range(
            "min_volatility_samples",
            u64::from(self.min_volatility_samples),
            2,
            100_000,
        );
        c.int_range("min_remaining_secs", self.min_remaining_secs, 0, 899);
        c.int_range("max_spot_age_secs", self.max_spot_age_secs, 1, 600);
        c.int_range("market_cooldown_secs", self.market_cooldown_secs, 0, 900);
        c.finish()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::validation::parse_section;

    #[test]
    fn the_field_list_matches_the_struct() {
        crate::validation::assert_fields_match(
            &Crypto15mConfig::default(),
            Crypto15mConfig::FIELDS,
        );
    }

    #[test]
    fn the_defaults_are_valid() {
        assert_eq!(Crypto15mConfig::default().validate(), vec![]);
    }

    #[test]
    fn scan_interval_sec_is_not_scan_interval_secs() {
        let errors = parse_section::<Crypto15mConfig>(
            &json!({"scan_interval_sec": 2, "min_edge": "0.05"}),
            "strategies.crypto_15m",
        )
        .unwrap_err();
        assert_eq!(
            errors,
            vec![FieldError::new(
                "strategies.crypto_15m.scan_interval_sec",
                "unknown field `scan_interval_sec`; did you mean `scan_interval_secs`?"
            )]
        );
    }

    #[test]
    fn a_probability_above_one_and_a_prediction_venue_as_spot_are_reported() {
        let errors = parse_section::<Crypto15mConfig>(
            &json!({"min_edge": 1.01, "spot_venues": ["kalshi"]}),
            "strategies.crypto_15m",
        )
        .unwrap_err();
        assert_eq!(
            errors,
            vec![
                FieldError::new(
                    "strategies.crypto_15m.spot_venues",
                    "kalshi quotes no spot price: use binance_us, coinbase or kraken"
                ),
                FieldError::new(
                    "strategies.crypto_15m.min_edge",
                    "must be in [0, 1) (a price or probability), got 1.01"
                ),
            ]
        );
    }

    #[test]
    fn a_well_formed_config_keeps_its_values() {
        let config = parse_section::<Crypto15mConfig>(
            &json!({"assets": ["BTC"], "min_edge": "0.045", "max_size": 20, "scan_interval_secs": 2}),
            "strategies.crypto_15m",
        )
        .unwrap();
        assert_eq!(config.assets, ["BTC"]);
        assert_eq!(config.min_edge, Decimal::new(45, 3));
        assert_eq!(config.max_size, Decimal::new(20, 0));
        assert_eq!(config.scan_interval_secs, 2);
        assert_eq!(config.volatility_window_secs, 900);
    }
}
