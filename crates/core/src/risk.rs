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
    /// A cross-venue pair whose legs filled unequally is repaired by
    /// completing the short leg at up to its limit price plus this much, or
    /// by selling the long leg's excess at down to its fill price minus
    /// this much, in price units per share (0 to 0.5). Default 0.02.
    #[serde(with = "decimal")]
    #[schemars(schema_with = "decimal::schema")]
    pub pair_max_slippage: Decimal,
    /// How long both legs of a cross-venue pair may take to answer, sent
    /// together as immediate-or-cancel orders, in milliseconds (50 to
    /// 30,000). A leg that has not answered by then is in doubt and is asked
    /// for again during the repair. Default 1,500.
    pub pair_max_latency_ms: u64,
    /// How long the repair of a broken pair (completing or unwinding) may
    /// take after the legs answered, in milliseconds (0 to 60,000; 0 never
    /// repairs: an unequal pair is recorded broken). Default 5,000.
    pub pair_max_repair_ms: u64,
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
            pair_max_slippage: Decimal::new(2, 2),
            pair_max_latency_ms: 1_500,
            pair_max_repair_ms: 5_000,
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
        "pair_max_slippage",
        "pair_max_latency_ms",
        "pair_max_repair_ms",
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
        c.non_negative("pair_max_slippage", self.pair_max_slippage);
        if self.pair_max_slippage > Decimal::new(5, 1) {
            c.fail(
                "pair_max_slippage",
                format!(
                    "must be at most 0.5 (a price unit is the whole payout), got {}",
                    self.pair_max_slippage
                ),
            );
        }
        c.int_range("pair_max_latency_ms", self.pair_max_latency_ms, 50, 30_000);
        c.int_range("pair_max_repair_ms", self.pair_max_repair_ms, 0, 60_000);
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
    fn the_pair_repair_limits_default_sensibly_and_bad_values_name_their_field() {
        let limits = RiskLimits::default();
        assert_eq!(limits.pair_max_slippage, Decimal::new(2, 2));
        assert_eq!(limits.pair_max_latency_ms, 1_500);
        assert_eq!(limits.pair_max_repair_ms, 5_000);
        let parsed =
            parse_risk(&json!({"pair_max_slippage": "0.05", "pair_max_repair_ms": 0})).unwrap();
        assert_eq!(parsed.pair_max_slippage, Decimal::new(5, 2));
        assert_eq!(parsed.pair_max_repair_ms, 0);
        let errors = parse_risk(&json!({
            "pair_max_slippage": "0.6",
            "pair_max_latency_ms": 10,
            "pair_max_repair_ms": 60_001
        }))
        .unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "risk.pair_max_slippage",
                "risk.pair_max_latency_ms",
                "risk.pair_max_repair_ms"
            ]
        );
        assert_eq!(
            errors[0].message,
            "must be at most 0.5 (a price unit is the whole payout), got 0.6"
        );
        let negative = parse_risk(&json!({"pair_max_slippage": "-0.01"})).unwrap_err();
        assert_eq!(negative[0].field, "risk.pair_max_slippage");
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
