//! Config of news arbitrage: headlines (NewsAPI with the tenant's key, RSS or
//! Atom feeds) matched to markets by keywords and entities; a matching rule
//! names the outcome the news makes likely and the price it is worth.
//!
//! The polling and the news API's rate limit live in the worker; the engine
//! only matches headlines and prices the rules.

use std::collections::BTreeSet;

use rust_decimal::Decimal;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::StrategyKind;
use crate::validation::{Checker, FieldError, Section, check_section_array, decimal, field_path};

/// News arbitrage (`strategies.news_arb`): headlines matched to markets by
/// rules that name the outcome the news makes likely and what it is worth.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct NewsArbConfig {
    /// Off keeps the settings but takes no decisions.
    pub enabled: bool,
    /// How often the worker polls the news sources, in seconds.
    pub poll_interval_secs: u64,
    /// NewsAPI `q` parameter; absent means NewsAPI is not polled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub newsapi_query: Option<String>,
    /// RSS or Atom feed URLs (http or https).
    pub rss_feeds: Vec<String>,
    /// Headlines published longer ago than this are ignored, in seconds.
    pub max_headline_age_secs: u64,
    /// Minimum fair price minus (ask + fee) per share, in price units.
    #[serde(with = "decimal")]
    #[schemars(schema_with = "decimal::schema")]
    pub min_edge: Decimal,
    /// Largest order per headline and rule, in shares.
    #[serde(with = "decimal")]
    #[schemars(schema_with = "decimal::schema")]
    pub max_size: Decimal,
    /// After trading a market on news, ignore it for this many seconds.
    pub market_cooldown_secs: u64,
    /// How headlines map to markets.
    pub rules: Vec<NewsRule>,
}

impl Default for NewsArbConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            poll_interval_secs: 60,
            newsapi_query: None,
            rss_feeds: Vec::new(),
            max_headline_age_secs: 300,
            min_edge: Decimal::new(5, 2),
            max_size: Decimal::new(50, 0),
            market_cooldown_secs: 300,
            rules: Vec::new(),
        }
    }
}

/// One headline-to-market rule. A headline matches when it contains every
/// `keywords` entry, at least one `entities` entry (if any are listed) and no
/// `exclude` entry, as whole words, ignoring case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct NewsRule {
    /// The market id, as the venue's feed names it.
    pub market: String,
    /// The outcome the news makes likely (an outcome name of that market).
    pub outcome: String,
    pub keywords: Vec<String>,
    pub entities: Vec<String>,
    pub exclude: Vec<String>,
    /// What the outcome is worth once the news is out, in (0, 1).
    #[serde(with = "decimal")]
    #[schemars(schema_with = "decimal::schema")]
    pub fair_price: Decimal,
    /// Overrides the strategy's `max_size` for this rule.
    #[serde(with = "decimal::option", skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "decimal::option::schema")]
    pub max_size: Option<Decimal>,
}

impl Default for NewsRule {
    fn default() -> Self {
        Self {
            market: String::new(),
            outcome: String::new(),
            keywords: Vec::new(),
            entities: Vec::new(),
            exclude: Vec::new(),
            fair_price: Decimal::new(5, 1),
            max_size: None,
        }
    }
}

impl Section for NewsRule {
    const FIELDS: &'static [&'static str] = &[
        "market",
        "outcome",
        "keywords",
        "entities",
        "exclude",
        "fair_price",
        "max_size",
    ];

    fn validate_at(&self, path: &str) -> Vec<FieldError> {
        let mut c = Checker::new(path);
        c.non_empty_text("market", &self.market);
        c.non_empty_text("outcome", &self.outcome);
        if self.keywords.is_empty() && self.entities.is_empty() {
            c.fail("keywords", "a rule needs at least one keyword or entity");
        }
        for (field, words) in [
            ("keywords", &self.keywords),
            ("entities", &self.entities),
            ("exclude", &self.exclude),
        ] {
            if words.iter().any(|w| w.trim().is_empty()) {
                c.fail(field, "must not contain empty words");
            }
        }
        c.probability("fair_price", self.fair_price, true);
        if let Some(size) = self.max_size {
            c.positive("max_size", size);
        }
        c.finish()
    }
}

impl NewsArbConfig {
    pub const KIND: StrategyKind = StrategyKind::NewsArb;

    /// Semantic errors, with paths under `strategies.news_arb`.
    pub fn validate(&self) -> Vec<FieldError> {
        self.validate_at(&field_path(super::STRATEGIES_PATH, Self::KIND.as_str()))
    }
}

impl Section for NewsArbConfig {
    const FIELDS: &'static [&'static str] = &[
        "enabled",
        "poll_interval_secs",
        "newsapi_query",
        "rss_feeds",
        "max_headline_age_secs",
        "min_edge",
        "max_size",
        "market_cooldown_secs",
        "rules",
    ];

    fn validate_at(&self, path: &str) -> Vec<FieldError> {
        let mut c = Checker::new(path);
        // NewsAPI's free plan allows 100 requests a day: one a minute is already
        // over it, so shorter intervals only burn the quota into 429s.
        c.int_range("poll_interval_secs", self.poll_interval_secs, 60, 86_400);
        if let Some(q) = &self.newsapi_query {
            c.non_empty_text("newsapi_query", q);
        }
        let mut seen = BTreeSet::new();
        for (i, url) in self.rss_feeds.iter().enumerate() {
            if !(url.starts_with("https://") || url.starts_with("http://")) || url.len() < 12 {
                c.fail(
                    &format!("rss_feeds[{i}]"),
                    format!("{url:?} is not an http(s) URL"),
                );
            }
            if !seen.insert(url.as_str()) {
                c.fail(&format!("rss_feeds[{i}]"), "duplicates an earlier feed");
            }
        }
        c.int_range(
            "max_headline_age_secs",
            self.max_headline_age_secs,
            1,
            86_400,
        );
        c.probability("min_edge", self.min_edge, false);
        c.positive("max_size", self.max_size);
        c.int_range("market_cooldown_secs", self.market_cooldown_secs, 0, 86_400);
        for (i, rule) in self.rules.iter().enumerate() {
            let rpath = format!("{}.rules[{i}]", c.path());
            c.merge(rule.validate_at(&rpath));
        }
        c.finish()
    }

    fn check_nested(field: &str, value: &Value, path: &str, errors: &mut Vec<FieldError>) -> bool {
        if field == "rules" {
            check_section_array::<NewsRule>(value, path, errors);
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
        let full = NewsArbConfig {
            newsapi_query: Some("bitcoin".into()),
            ..NewsArbConfig::default()
        };
        crate::validation::assert_fields_match(&full, NewsArbConfig::FIELDS);
        let rule = NewsRule {
            max_size: Some(Decimal::ONE),
            ..NewsRule::default()
        };
        crate::validation::assert_fields_match(&rule, NewsRule::FIELDS);
    }

    #[test]
    fn the_defaults_are_valid() {
        assert_eq!(NewsArbConfig::default().validate(), vec![]);
    }

    #[test]
    fn a_rule_with_no_words_and_a_certain_price_gets_two_errors() {
        let errors = parse_section::<NewsArbConfig>(
            &json!({"rules": [{"market": "m", "outcome": "Yes", "fair_price": "1"}]}),
            "strategies.news_arb",
        )
        .unwrap_err();
        assert_eq!(
            errors,
            vec![
                FieldError::new(
                    "strategies.news_arb.rules[0].keywords",
                    "a rule needs at least one keyword or entity"
                ),
                FieldError::new(
                    "strategies.news_arb.rules[0].fair_price",
                    "must be in (0, 1) (a price or probability), got 1"
                ),
            ]
        );
    }

    #[test]
    fn a_feed_that_is_not_a_url_and_a_fast_poll_are_reported() {
        let errors = parse_section::<NewsArbConfig>(
            &json!({"rss_feeds": ["feeds.example.com/rss"], "poll_interval_secs": 5}),
            "strategies.news_arb",
        )
        .unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "strategies.news_arb.poll_interval_secs",
                "strategies.news_arb.rss_feeds[0]"
            ]
        );
    }
}
