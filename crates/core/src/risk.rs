//! A tenant's risk limits: checked by the engine before every order, and by the
//! API at onboarding. The checks themselves live in `polybot-engine`.

use rust_decimal::Decimal;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::validation::{Checker, FieldError, Section, decimal, parse_section};

/// The JSON path of the risk object inside a tenant's config.
pub const RISK_PATH: &str = "risk";

/// `risk`: limits in the account currency (USD/USDC), applied per tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RiskLimits {
    /// The most one order may commit: its limit price times its size, in
    /// any mode (paper, shadow, live). An opportunity with a larger leg is
    /// refused whole. Default 100.
    #[serde(with = "decimal")]
    #[schemars(schema_with = "decimal::schema")]
    pub max_order_notional: Decimal,
    /// Cost basis held in one market (all outcomes) plus the new order's cost.
    #[serde(with = "decimal")]
    #[schemars(schema_with = "decimal::schema")]
    pub max_position_per_market: Decimal,
    /// Cost basis held across all markets plus the new order's cost.
    #[serde(with = "decimal")]
    #[schemars(schema_with = "decimal::schema")]
    pub max_total_exposure: Decimal,
    /// No new orders once today's (UTC) loss, marked to market, reaches this.
    #[serde(with = "decimal")]
    #[schemars(schema_with = "decimal::schema")]
    pub max_daily_loss: Decimal,
    /// Orders resting at the venues at once (live execution; paper fills at once).
    pub max_open_orders: u32,
    /// On: every new order is rejected.
    pub kill_switch: bool,
    /// Consecutive failures that open a strategy's circuit breaker.
    pub breaker_failure_threshold: u32,
    /// How long an open breaker waits before letting one trial through, in seconds.
    pub breaker_cooldown_secs: u64,
}

impl Default for RiskLimits {
    fn default() -> Self {
        Self {
            max_order_notional: Decimal::new(100, 0),
            max_position_per_market: Decimal::new(500, 0),
            max_total_exposure: Decimal::new(5_000, 0),
            max_daily_loss: Decimal::new(250, 0),
            max_open_orders: 20,
            kill_switch: false,
            breaker_failure_threshold: 5,
            breaker_cooldown_secs: 300,
        }
    }
}

impl RiskLimits {
    /// Semantic errors, with paths under `risk`.
    pub fn validate(&self) -> Vec<FieldError> {
        self.validate_at(RISK_PATH)
    }
}

impl Section for RiskLimits {
    const FIELDS: &'static [&'static str] = &[
        "max_order_notional",
        "max_position_per_market",
        "max_total_exposure",
        "max_daily_loss",
        "max_open_orders",
        "kill_switch",
        "breaker_failure_threshold",
        "breaker_cooldown_secs",
    ];

    fn validate_at(&self, path: &str) -> Vec<FieldError> {
        let mut c = Checker::new(path);
        c.positive("max_order_notional", self.max_order_notional);
        c.positive("max_position_per_market", self.max_position_per_market);
        c.positive("max_total_exposure", self.max_total_exposure);
        c.positive("max_daily_loss", self.max_daily_loss);
        if self.max_position_per_market > self.max_total_exposure
            && self.max_total_exposure > Decimal::ZERO
        {
            c.fail(
                "max_position_per_market",
                format!(
                    "must not exceed max_total_exposure ({})",
                    self.max_total_exposure
                ),
            );
        }
        c.int_range(
            "max_open_orders",
            u64::from(self.max_open_orders),
            1,
            10_000,
        );
        c.int_range(
            "breaker_failure_threshold",
            u64::from(self.breaker_failure_threshold),
            1,
            1_000,
        );
        c.int_range(
            "breaker_cooldown_secs",
            self.breaker_cooldown_secs,
            1,
            86_400,
        );
        c.finish()
    }
}

/// Parses a tenant's `risk` object, reporting every bad field.
pub fn parse_risk(value: &Value) -> Result<RiskLimits, Vec<FieldError>> {
    parse_section::<RiskLimits>(value, RISK_PATH)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_field_list_matches_the_struct() {
        crate::validation::assert_fields_match(&RiskLimits::default(), RiskLimits::FIELDS);
    }

    #[test]
    fn an_empty_risk_object_takes_the_defaults() {
        assert_eq!(parse_risk(&json!({})).unwrap(), RiskLimits::default());
        assert!(RiskLimits::default().validate().is_empty());
    }

    #[test]
    fn money_limits_read_from_strings_and_numbers() {
        let limits =
            parse_risk(&json!({"max_daily_loss": "12.50", "max_total_exposure": 1000})).unwrap();
        assert_eq!(limits.max_daily_loss, Decimal::new(1250, 2));
        assert_eq!(limits.max_total_exposure, Decimal::new(1000, 0));
    }

    #[test]
    fn every_bad_risk_field_is_reported() {
        let errors = parse_risk(&json!({
            "max_daily_loss": -5,
            "max_open_orders": -1,
            "kill_swich": true,
            "max_position_per_market": "lots"
        }))
        .unwrap_err();
        let mut fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        fields.sort_unstable();
        assert_eq!(
            fields,
            [
                "risk.kill_swich",
                "risk.max_daily_loss",
                "risk.max_open_orders",
                "risk.max_position_per_market"
            ]
        );
        let typo = errors
            .iter()
            .find(|e| e.field == "risk.kill_swich")
            .unwrap();
        assert_eq!(
            typo.message,
            "unknown field `kill_swich`; did you mean `kill_switch`?"
        );
        let words = errors
            .iter()
            .find(|e| e.field == "risk.max_position_per_market")
            .unwrap();
        assert_eq!(words.message, "\"lots\" is not a decimal number");
    }

    #[test]
    fn the_order_notional_cap_reads_as_a_decimal_and_must_be_positive() {
        assert_eq!(
            RiskLimits::default().max_order_notional,
            Decimal::new(100, 0)
        );
        let limits = parse_risk(&json!({"max_order_notional": "25.5"})).unwrap();
        assert_eq!(limits.max_order_notional, Decimal::new(255, 1));
        let errors = parse_risk(&json!({"max_order_notional": 0})).unwrap_err();
        assert_eq!(
            errors,
            vec![FieldError::new(
                "risk.max_order_notional",
                "must be greater than 0, got 0"
            )]
        );
        let errors = parse_risk(&json!({"max_order_notional": "fifty"})).unwrap_err();
        assert_eq!(
            errors,
            vec![FieldError::new(
                "risk.max_order_notional",
                "\"fifty\" is not a decimal number"
            )]
        );
    }

    #[test]
    fn a_per_market_limit_above_the_total_is_rejected() {
        let errors =
            parse_risk(&json!({"max_position_per_market": 600, "max_total_exposure": 500}))
                .unwrap_err();
        assert_eq!(
            errors,
            vec![FieldError::new(
                "risk.max_position_per_market",
                "must not exceed max_total_exposure (500)"
            )]
        );
    }
}
