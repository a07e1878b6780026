//! Config of single-venue complement arbitrage: buy every outcome of one
//! market when the asks, plus fees, add up to less than 1 minus a minimum edge.

use rust_decimal::Decimal;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{StrategyKind, Venue};
use crate::validation::{Checker, FieldError, Section, decimal, field_path};

/// Complement arbitrage (`strategies.complement_arb`): buy every outcome of one
/// market when the asks plus fees add up to less than 1 minus a minimum edge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ComplementArbConfig {
    /// Off keeps the settings but takes no decisions.
    pub enabled: bool,
    /// Prediction-market venues to scan.
    pub venues: Vec<Venue>,
    /// Minimum profit per complete set after fees, in price units (0.01 = 1¢ per $1 set).
    #[serde(with = "decimal")]
    #[schemars(schema_with = "decimal::schema")]
    pub min_edge: Decimal,
    /// Smallest set size worth trading, in shares.
    #[serde(with = "decimal")]
    #[schemars(schema_with = "decimal::schema")]
    pub min_size: Decimal,
    /// Largest set size per opportunity, in shares.
    #[serde(with = "decimal")]
    #[schemars(schema_with = "decimal::schema")]
    pub max_size: Decimal,
    /// How often the worker refreshes books it does not stream, in seconds.
    pub scan_interval_secs: u64,
    /// After trading a market, ignore it for this many seconds.
    pub market_cooldown_secs: u64,
}

impl Default for ComplementArbConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            venues: vec![Venue::Polymarket, Venue::Kalshi],
            min_edge: Decimal::new(1, 2),
            min_size: Decimal::ONE,
            max_size: Decimal::new(100, 0),
            scan_interval_secs: 5,
            market_cooldown_secs: 5,
        }
    }
}

impl ComplementArbConfig {
    pub const KIND: StrategyKind = StrategyKind::ComplementArb;

    /// Semantic errors, with paths under `strategies.complement_arb`.
    pub fn validate(&self) -> Vec<FieldError> {
        self.validate_at(&field_path(super::STRATEGIES_PATH, Self::KIND.as_str()))
    }
}

impl Section for ComplementArbConfig {
    const FIELDS: &'static [&'static str] = &[
        "enabled",
        "venues",
        "min_edge",
        "min_size",
        "max_size",
        "scan_interval_secs",
        "market_cooldown_secs",
    ];

    fn validate_at(&self, path: &str) -> Vec<FieldError> {
        let mut c = Checker::new(path);
        if self.venues.is_empty() {
            c.fail("venues", "must list at least one venue");
        }
        for v in &self.venues {
            if !v.is_prediction_market() {
                c.fail(
                    "venues",
                    format!("{v} lists no prediction markets: use polymarket or kalshi"),
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
        c.int_range("scan_interval_secs", self.scan_interval_secs, 1, 3600);
        c.int_range("market_cooldown_secs", self.market_cooldown_secs, 0, 86_400);
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
            &ComplementArbConfig::default(),
            ComplementArbConfig::FIELDS,
        );
    }

    #[test]
    fn the_defaults_are_valid() {
        assert_eq!(ComplementArbConfig::default().validate(), vec![]);
    }

    #[test]
    fn a_cex_venue_and_a_negative_size_are_both_reported() {
        let errors = parse_section::<ComplementArbConfig>(
            &json!({"venues": ["coinbase"], "max_size": "-1"}),
            "strategies.complement_arb",
        )
        .unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "strategies.complement_arb.venues",
                "strategies.complement_arb.max_size"
            ]
        );
        assert_eq!(errors[1].message, "must be greater than 0, got -1");
    }

    #[test]
    fn an_unknown_venue_name_is_a_type_error_on_that_field() {
        let errors = parse_section::<ComplementArbConfig>(
            &json!({"venues": ["binance"]}),
            "strategies.complement_arb",
        )
        .unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].field, "strategies.complement_arb.venues");
        assert!(
            errors[0].message.contains("unknown variant `binance`"),
            "{}",
            errors[0].message
        );
    }
}
