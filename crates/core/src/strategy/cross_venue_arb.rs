//! Config of cross-venue arbitrage between Polymarket and Kalshi: buy YES on
//! one venue and NO on the other when both asks plus fees are below 1 minus a
//! minimum edge, on matched markets only.

use std::collections::BTreeSet;

use rust_decimal::Decimal;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::StrategyKind;
use crate::validation::{Checker, FieldError, Section, check_section_array, decimal, field_path};

/// Cross-venue arbitrage (`strategies.cross_venue_arb`): YES on Polymarket and
/// NO on Kalshi (or the reverse) on matched markets, when both asks plus fees
/// are below 1 minus a minimum edge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct CrossVenueArbConfig {
    /// Off keeps the settings but takes no decisions.
    pub enabled: bool,
    /// Minimum profit per hedged pair after both venues' fees, in price units.
    #[serde(with = "decimal")]
    #[schemars(schema_with = "decimal::schema")]
    pub min_edge: Decimal,
    /// Smallest pair size worth trading, in contracts.
    #[serde(with = "decimal")]
    #[schemars(schema_with = "decimal::schema")]
    pub min_size: Decimal,
    /// Largest pair size per opportunity, in contracts.
    #[serde(with = "decimal")]
    #[schemars(schema_with = "decimal::schema")]
    pub max_size: Decimal,
    /// How often the worker refreshes books it does not stream, in seconds.
    pub scan_interval_secs: u64,
    /// After trading a pair, ignore it for this many seconds.
    pub market_cooldown_secs: u64,
    /// Match recurring crypto markets by (asset, window, strike, direction).
    pub match_recurring_crypto: bool,
    /// Assets whose recurring markets are matched (upper case, e.g. "BTC").
    pub assets: Vec<String>,
    /// Hand-curated pairs, matched by market id on each venue.
    pub pairs: Vec<CuratedPair>,
    /// What to do with a pair whose two markets settle on different but
    /// closely related sources, a basis risk the platform knows about (e.g.
    /// Polymarket's 15-minute crypto markets on Chainlink, Kalshi's on CF
    /// Benchmarks): `refuse` never trades it, `price` trades it only with
    /// `basis_risk_edge` more edge. Any other source difference is refused.
    pub basis_risk: BasisRiskPolicy,
    /// The extra edge a priced basis-risk pair needs on top of `min_edge`,
    /// in price units (what the two sources may disagree by, in payoff).
    #[serde(with = "decimal")]
    #[schemars(schema_with = "decimal::schema")]
    pub basis_risk_edge: Decimal,
}

/// How cross-venue arbitrage treats a known basis risk between two markets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BasisRiskPolicy {
    /// The pair is never traded; it is listed as refused with the risk named.
    #[default]
    Refuse,
    /// The pair is traded when its edge clears `min_edge + basis_risk_edge`.
    Price,
}

impl Default for CrossVenueArbConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            min_edge: Decimal::new(2, 2),
            min_size: Decimal::ONE,
            max_size: Decimal::new(100, 0),
            scan_interval_secs: 5,
            market_cooldown_secs: 5,
            match_recurring_crypto: true,
            assets: vec!["BTC".to_owned(), "ETH".to_owned()],
            pairs: Vec::new(),
            basis_risk: BasisRiskPolicy::Refuse,
            basis_risk_edge: Decimal::new(3, 2),
        }
    }
}

/// One curated Polymarket ↔ Kalshi pair. It is still never traded when the two
/// markets' resolution sources or windows differ.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct CuratedPair {
    /// The Polymarket market id (as the feed names it).
    pub polymarket: String,
    /// The Kalshi market ticker.
    pub kalshi: String,
    /// Polymarket YES means Kalshi NO (e.g. "above" vs "below" the same strike).
    pub inverted: bool,
    /// Why the pair is believed equivalent, for the reviewer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Section for CuratedPair {
    const FIELDS: &'static [&'static str] = &["polymarket", "kalshi", "inverted", "note"];

    fn validate_at(&self, path: &str) -> Vec<FieldError> {
        let mut c = Checker::new(path);
        c.non_empty_text("polymarket", &self.polymarket);
        c.non_empty_text("kalshi", &self.kalshi);
        c.finish()
    }
}

impl CrossVenueArbConfig {
    pub const KIND: StrategyKind = StrategyKind::CrossVenueArb;

    /// Semantic errors, with paths under `strategies.cross_venue_arb`.
    pub fn validate(&self) -> Vec<FieldError> {
        self.validate_at(&field_path(super::STRATEGIES_PATH, Self::KIND.as_str()))
    }
}

pub(super) fn validate_assets(c: &mut Checker<'_>, field: &str, assets: &[String]) {
    if assets.is_empty() {
        c.fail(field, "must list at least one asset");
    }
    for a in assets {
        if a.is_empty()
            || a.len() > 10
            || !a
                .chars()
                .all(|ch| ch.is_ascii_uppercase() || ch.is_ascii_digit())
        {
            c.fail(
                field,
                format!("{a:?} is not an asset symbol: use upper case such as \"BTC\""),
            );
        }
    }
}

impl Section for CrossVenueArbConfig {
    const FIELDS: &'static [&'static str] = &[
        "enabled",
        "min_edge",
        "min_size",
        "max_size",
        "scan_interval_secs",
        "market_cooldown_secs",
        "match_recurring_crypto",
        "assets",
        "pairs",
        "basis_risk",
        "basis_risk_edge",
    ];

    fn validate_at(&self, path: &str) -> Vec<FieldError> {
        let mut c = Checker::new(path);
        c.probability("min_edge", self.min_edge, false);
        c.positive("min_size", self.min_size);
        c.positive("max_size", self.max_size);
        if self.min_size > self.max_size && self.max_size > Decimal::ZERO {
            c.fail(
                "min_size",
                format!("must not exceed max_size ({})", self.max_size),
            );
        }
        c.probability("basis_risk_edge", self.basis_risk_edge, false);
        if self.basis_risk == BasisRiskPolicy::Price && self.basis_risk_edge.is_zero() {
            c.fail(
                "basis_risk_edge",
                "must be above 0 when basis_risk is \"price\": a basis risk is never free",
            );
        }
        c.int_range("scan_interval_secs", self.scan_interval_secs, 1, 3600);
        c.int_range("market_cooldown_secs", self.market_cooldown_secs, 0, 86_400);
        if self.match_recurring_crypto {
            validate_assets(&mut c, "assets", &self.assets);
        }
        if !self.match_recurring_crypto && self.pairs.is_empty() {
            c.fail(
                "pairs",
                "no pair can match: list pairs or turn on match_recurring_crypto",
            );
        }
        let mut seen = BTreeSet::new();
        for (i, pair) in self.pairs.iter().enumerate() {
            let ppath = format!("{}.pairs[{i}]", c.path());
            c.merge(pair.validate_at(&ppath));
            if !seen.insert((pair.polymarket.as_str(), pair.kalshi.as_str())) {
                c.fail(&format!("pairs[{i}]"), "duplicates an earlier pair");
            }
        }
        c.finish()
    }

    fn check_nested(field: &str, value: &Value, path: &str, errors: &mut Vec<FieldError>) -> bool {
        if field == "pairs" {
            check_section_array::<CuratedPair>(value, path, errors);
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::validation::parse_section;

    #[test]
    fn the_field_lists_match_the_structs() {
        crate::validation::assert_fields_match(
            &CrossVenueArbConfig::default(),
            CrossVenueArbConfig::FIELDS,
        );
        let pair = CuratedPair {
            note: Some(String::new()),
            ..CuratedPair::default()
        };
        crate::validation::assert_fields_match(&pair, CuratedPair::FIELDS);
    }

    #[test]
    fn the_defaults_are_valid() {
        assert_eq!(CrossVenueArbConfig::default().validate(), vec![]);
    }

    #[test]
    fn a_curated_pair_parses_and_a_duplicate_is_rejected() {
        let pair = json!({"polymarket": "pm-fed-cut", "kalshi": "KXFED-25DEC", "inverted": true});
        let config = parse_section::<CrossVenueArbConfig>(
            &json!({"pairs": [pair.clone()]}),
            "strategies.cross_venue_arb",
        )
        .unwrap();
        assert!(config.pairs[0].inverted);
        let errors = parse_section::<CrossVenueArbConfig>(
            &json!({"pairs": [pair.clone(), pair]}),
            "strategies.cross_venue_arb",
        )
        .unwrap_err();
        assert_eq!(
            errors,
            vec![FieldError::new(
                "strategies.cross_venue_arb.pairs[1]",
                "duplicates an earlier pair"
            )]
        );
    }

    #[test]
    fn the_basis_risk_policy_parses_and_bad_values_name_their_field() {
        let config = parse_section::<CrossVenueArbConfig>(
            &json!({"basis_risk": "price", "basis_risk_edge": "0.05"}),
            "strategies.cross_venue_arb",
        )
        .unwrap();
        assert_eq!(config.basis_risk, BasisRiskPolicy::Price);
        assert_eq!(config.basis_risk_edge, Decimal::new(5, 2));
        let errors = parse_section::<CrossVenueArbConfig>(
            &json!({"basis_risk": "ignore"}),
            "strategies.cross_venue_arb",
        )
        .unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].field, "strategies.cross_venue_arb.basis_risk");
        let errors = parse_section::<CrossVenueArbConfig>(
            &json!({"basis_risk": "price", "basis_risk_edge": "0"}),
            "strategies.cross_venue_arb",
        )
        .unwrap_err();
        assert_eq!(
            errors,
            vec![FieldError::new(
                "strategies.cross_venue_arb.basis_risk_edge",
                "must be above 0 when basis_risk is \"price\": a basis risk is never free"
            )]
        );
        let errors = parse_section::<CrossVenueArbConfig>(
            &json!({"basis_risk_edge": "1.5"}),
            "strategies.cross_venue_arb",
        )
        .unwrap_err();
        assert_eq!(
            errors[0].field,
            "strategies.cross_venue_arb.basis_risk_edge"
        );
    }

    #[test]
    fn a_lower_case_asset_is_rejected() {
        let errors = parse_section::<CrossVenueArbConfig>(
            &json!({"assets": ["btc"]}),
            "strategies.cross_venue_arb",
        )
        .unwrap_err();
        assert_eq!(errors[0].field, "strategies.cross_venue_arb.assets");
    }
}
