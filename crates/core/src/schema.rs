//! The JSON Schema of a tenant's typed configuration (`strategies` and
//! `risk`), generated from the config structs themselves: their doc comments
//! are the fields' help, their `Default`s the fields' defaults. The dashboard
//! renders its forms from it and serves it at `/ui/config-schema`.
//!
//! Validation does not use it: [`crate::strategy::parse_strategies`] and
//! [`crate::risk::parse_risk`] remain the rules (the schema cannot say
//! "min_size must not exceed max_size").

use schemars::JsonSchema;
use serde_json::Value;

use crate::risk::RiskLimits;
use crate::strategy::{
    ComplementArbConfig, CrossVenueArbConfig, Crypto15mConfig, CuratedPair, NewsArbConfig,
    NewsRule, StrategiesConfig,
};
use crate::validation::Section;

/// What a tenant configures: the strategies it runs and its risk limits.
#[derive(JsonSchema)]
#[schemars(title = "Tenant configuration")]
#[allow(dead_code)] // Only its schema is used.
struct TenantConfig {
    strategies: StrategiesConfig,
    risk: RiskLimits,
}

/// The fields of a definition of the schema in the order its struct declares
/// them (the schema lists them by name), so that forms read as the docs do.
pub fn field_order(definition: &str) -> &'static [&'static str] {
    match definition {
        "ComplementArbConfig" => ComplementArbConfig::FIELDS,
        "CrossVenueArbConfig" => CrossVenueArbConfig::FIELDS,
        "CuratedPair" => CuratedPair::FIELDS,
        "Crypto15mConfig" => Crypto15mConfig::FIELDS,
        "NewsArbConfig" => NewsArbConfig::FIELDS,
        "NewsRule" => NewsRule::FIELDS,
        "RiskLimits" => RiskLimits::FIELDS,
        _ => &[],
    }
}

/// The schema (JSON Schema 2020-12), shared definitions under `$defs`.
pub fn tenant_config_schema() -> Value {
    schemars::schema_for!(TenantConfig).to_value()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def<'a>(schema: &'a Value, name: &str) -> &'a Value {
        &schema["$defs"][name]
    }

    #[test]
    fn every_strategy_has_its_fields_with_help_and_defaults() {
        let schema = tenant_config_schema();
        let strategies = def(&schema, "StrategiesConfig");
        for name in [
            "complement_arb",
            "cross_venue_arb",
            "crypto_15m",
            "news_arb",
        ] {
            assert!(
                strategies["properties"][name].is_object(),
                "{name} is missing: {strategies}"
            );
        }
        let complement = &def(&schema, "ComplementArbConfig")["properties"];
        assert_eq!(complement["min_edge"]["default"], "0.01");
        assert_eq!(complement["min_edge"]["format"], "decimal");
        assert_eq!(complement["scan_interval_secs"]["default"], 5);
        assert_eq!(complement["scan_interval_secs"]["type"], "integer");
        assert_eq!(
            complement["venues"]["default"],
            serde_json::json!(["polymarket", "kalshi"])
        );
        assert!(
            complement["max_size"]["description"]
                .as_str()
                .unwrap()
                .contains("Largest set size")
        );
    }

    #[test]
    fn every_definition_with_fields_has_its_order() {
        let schema = tenant_config_schema();
        for (name, def) in schema["$defs"].as_object().unwrap() {
            let Some(properties) = def["properties"].as_object() else {
                continue;
            };
            if name == "StrategiesConfig" {
                continue;
            }
            let mut ordered: Vec<&str> = field_order(name).to_vec();
            ordered.sort_unstable();
            let mut given: Vec<&str> = properties.keys().map(String::as_str).collect();
            given.sort_unstable();
            assert_eq!(ordered, given, "{name}");
        }
    }

    #[test]
    fn the_risk_limits_have_their_defaults() {
        let schema = tenant_config_schema();
        let risk = &def(&schema, "RiskLimits")["properties"];
        assert_eq!(risk["max_daily_loss"]["default"], "250");
        assert_eq!(risk["kill_switch"]["default"], false);
        assert_eq!(risk["kill_switch"]["type"], "boolean");
    }

    #[test]
    fn the_basis_risk_policy_is_in_the_schema_with_its_values() {
        let schema = tenant_config_schema();
        let cross = &def(&schema, "CrossVenueArbConfig")["properties"];
        assert_eq!(cross["basis_risk"]["default"], "refuse");
        assert_eq!(cross["basis_risk_edge"]["default"], "0.03");
        let policy = def(&schema, "BasisRiskPolicy").to_string();
        assert!(
            policy.contains("\"refuse\"") && policy.contains("\"price\""),
            "{policy}"
        );
    }
}
