//! The recording a deployment's workers replay (`polybot up --demo`): which
//! assets and markets it holds, and the refusal of strategy settings that
//! name others, since a worker would wait for them in silence.
//!
//! Reading the replay itself is the engine's; this module only lists the
//! recording's `market` events. Outside replay deployments nothing here runs.

use std::collections::BTreeSet;

use polybot_core::strategy::StrategiesConfig;
use serde::Deserialize;

use polybot_core::validation::FieldError;

/// What a recording holds, by the names strategy settings use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recording {
    /// The underlying assets of its recurring crypto markets ("BTC").
    pub assets: BTreeSet<String>,
    /// Its market ids, as the venues' feeds name them.
    pub markets: BTreeSet<String>,
}

/// The part of a replay line this module reads.
#[derive(Deserialize)]
struct Line {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    market: Option<String>,
    #[serde(default)]
    asset: Option<String>,
}

impl Recording {
    /// The assets and markets of a recording in the engine's JSONL replay
    /// format; comment lines and events other than `market` are skipped.
    pub fn from_jsonl(text: &str) -> Self {
        let mut recording = Self::default();
        for line in text.lines().map(str::trim) {
            if !line.starts_with('{') || !line.contains("\"market\"") {
                continue;
            }
            let Ok(line) = serde_json::from_str::<Line>(line) else {
                continue;
            };
            if line.kind != "market" {
                continue;
            }
            recording.markets.extend(line.market);
            recording.assets.extend(line.asset);
        }
        recording
    }

    /// One error per asset or market named by an enabled strategy that the
    /// recording lacks, each listing what the recording has.
    pub fn refusals(&self, strategies: &StrategiesConfig) -> Vec<FieldError> {
        let mut errors = Vec::new();
        let asset = |errors: &mut Vec<FieldError>, field: String, asset: &str| {
            if !self.assets.contains(asset) {
                errors.push(FieldError::new(
                    field,
                    format!(
                        "the replayed recording has no {asset} markets; it has {}",
                        list(&self.assets)
                    ),
                ));
            }
        };
        let market = |errors: &mut Vec<FieldError>, field: String, market: &str| {
            if !self.markets.contains(market) {
                errors.push(FieldError::new(
                    field,
                    format!(
                        "the replayed recording has no market {market:?}; it has {}",
                        list(&self.markets)
                    ),
                ));
            }
        };
        if let Some(c) = strategies.crypto_15m.as_ref().filter(|c| c.enabled) {
            for (i, a) in c.assets.iter().enumerate() {
                asset(&mut errors, format!("strategies.crypto_15m.assets[{i}]"), a);
            }
        }
        if let Some(c) = strategies.cross_venue_arb.as_ref().filter(|c| c.enabled) {
            if c.match_recurring_crypto {
                for (i, a) in c.assets.iter().enumerate() {
                    asset(
                        &mut errors,
                        format!("strategies.cross_venue_arb.assets[{i}]"),
                        a,
                    );
                }
            }
            for (i, pair) in c.pairs.iter().enumerate() {
                let at = format!("strategies.cross_venue_arb.pairs[{i}]");
                market(&mut errors, format!("{at}.polymarket"), &pair.polymarket);
                market(&mut errors, format!("{at}.kalshi"), &pair.kalshi);
            }
        }
        if let Some(c) = strategies.news_arb.as_ref().filter(|c| c.enabled) {
            for (i, rule) in c.rules.iter().enumerate() {
                market(
                    &mut errors,
                    format!("strategies.news_arb.rules[{i}].market"),
                    &rule.market,
                );
            }
        }
        errors
    }
}

fn list(names: &BTreeSet<String>) -> String {
    if names.is_empty() {
        return "none".to_owned();
    }
    names
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const RECORDING: &str = concat!(
        "# a comment\n",
        "{\"type\":\"market\",\"ts\":1,\"market\":\"btc-updown\",\"venue\":\"polymarket\",\"asset\":\"BTC\"}\n",
        "{\"type\":\"market\",\"ts\":1,\"market\":\"fed-cut\",\"venue\":\"polymarket\"}\n",
        "{\"type\":\"book\",\"ts\":2,\"market\":\"other\",\"venue\":\"polymarket\"}\n",
    );

    #[test]
    fn a_recording_lists_the_assets_and_markets_of_its_market_events() {
        let recording = Recording::from_jsonl(RECORDING);
        assert_eq!(recording.assets, BTreeSet::from(["BTC".to_owned()]));
        assert_eq!(
            recording.markets,
            BTreeSet::from(["btc-updown".to_owned(), "fed-cut".to_owned()])
        );
    }

    #[test]
    fn an_asset_or_market_the_recording_lacks_is_refused_by_its_field() {
        let recording = Recording::from_jsonl(RECORDING);
        let strategies: StrategiesConfig = serde_json::from_value(serde_json::json!({
            "crypto_15m": {"assets": ["BTC", "ETH"]},
            "news_arb": {"rules": [{"market": "fed-cut", "outcome": "Yes"}, {"market": "nope", "outcome": "Yes"}]}
        }))
        .unwrap();
        let errors: Vec<(String, String)> = recording
            .refusals(&strategies)
            .into_iter()
            .map(|e| (e.field, e.message))
            .collect();
        assert_eq!(
            errors,
            vec![
                (
                    "strategies.crypto_15m.assets[1]".to_owned(),
                    "the replayed recording has no ETH markets; it has BTC".to_owned()
                ),
                (
                    "strategies.news_arb.rules[1].market".to_owned(),
                    "the replayed recording has no market \"nope\"; it has btc-updown, fed-cut"
                        .to_owned()
                ),
            ]
        );
    }
}
