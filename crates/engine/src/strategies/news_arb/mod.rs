//! News arbitrage, the engine's part: headlines matched to markets by the
//! tenant's rules (keywords, entities, exclusions; whole words, any case). A
//! match opens a signal on the rule's market until the headline is
//! `max_headline_age_secs` old; while it is open, the outcome is bought
//! whenever its ask plus fee is below the rule's fair price minus `min_edge`.
//!
//! Polling NewsAPI and feeds, and respecting NewsAPI's rate limit, is the
//! worker's job; it reports a limit hit with an `EventKind::FeedHealth` event.

#[cfg(test)]
mod tests;

use std::collections::{HashSet, VecDeque};

use rust_decimal::Decimal;

use polybot_core::strategy::{NewsArbConfig, StrategyKind};

use super::{LegRef, Proposal, plan_equal_size, sweep_equal_size};
use crate::clock::Timestamp;
use crate::event::{Headline, MarketDef};
use crate::market::Markets;
use crate::types::{MarketIdx, OutcomeIdx};

/// How many headline ids are remembered to drop repeats across polls.
const SEEN_CAPACITY: usize = 4096;

#[derive(Debug, Clone)]
struct CompiledRule {
    market: String,
    outcome: String,
    keywords: Vec<String>,
    entities: Vec<String>,
    exclude: Vec<String>,
    fair_price: Decimal,
    max_size: Decimal,
    target: Option<(MarketIdx, OutcomeIdx)>,
}

impl CompiledRule {
    fn matches(&self, text: &str) -> bool {
        self.keywords.iter().all(|k| contains_word(text, k))
            && (self.entities.is_empty() || self.entities.iter().any(|e| contains_word(text, e)))
            && !self.exclude.iter().any(|x| contains_word(text, x))
    }
}

/// Whether `word` (lower case) occurs in `text` (lower case) as whole words.
pub fn contains_word(text: &str, word: &str) -> bool {
    if word.is_empty() {
        return false;
    }
    text.match_indices(word).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + word.len()..].chars().next();
        !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
    })
}

#[derive(Debug, Clone)]
struct Signal {
    rule: usize,
    headline: String,
    expires: Timestamp,
}

#[derive(Debug)]
pub struct NewsArb {
    config: NewsArbConfig,
    rules: Vec<CompiledRule>,
    signals: Vec<Option<Signal>>,
    cooldown_until: Vec<Timestamp>,
    seen: HashSet<String>,
    seen_order: VecDeque<String>,
    problems: Vec<String>,
    legs: [LegRef; 1],
    cursor: Vec<(usize, Decimal)>,
}

impl NewsArb {
    pub fn new(config: NewsArbConfig) -> Self {
        let lower = |words: &[String]| {
            words
                .iter()
                .map(|w| w.trim().to_lowercase())
                .collect::<Vec<_>>()
        };
        let rules = config
            .rules
            .iter()
            .map(|r| CompiledRule {
                market: r.market.clone(),
                outcome: r.outcome.clone(),
                keywords: lower(&r.keywords),
                entities: lower(&r.entities),
                exclude: lower(&r.exclude),
                fair_price: r.fair_price,
                max_size: r.max_size.unwrap_or(config.max_size),
                target: None,
            })
            .collect();
        Self {
            config,
            rules,
            signals: Vec::new(),
            cooldown_until: Vec::new(),
            seen: HashSet::new(),
            seen_order: VecDeque::new(),
            problems: Vec::new(),
            legs: [LegRef {
                market: 0,
                outcome: 0,
            }],
            cursor: Vec::with_capacity(1),
        }
    }

    pub fn config(&self) -> &NewsArbConfig {
        &self.config
    }

    /// Whether a headline signal is open on `market`.
    #[inline]
    pub fn watches(&self, market: MarketIdx) -> bool {
        matches!(self.signals.get(market), Some(Some(_)))
    }

    /// Resolves rules that name this market; a rule naming an outcome the
    /// market lacks is reported in health.
    pub fn on_market_listed(&mut self, market: MarketIdx, def: &MarketDef) {
        if self.signals.len() <= market {
            self.signals.resize(market + 1, None);
            self.cooldown_until.resize(market + 1, Timestamp::default());
        }
        for (i, rule) in self.rules.iter_mut().enumerate() {
            if rule.market != def.id.as_str() {
                continue;
            }
            match def.outcome_index(&rule.outcome) {
                Some(outcome) => rule.target = Some((market, outcome)),
                None => self.problems.push(format!(
                    "rules[{i}]: market {} has no outcome {:?} (it has {:?})",
                    def.id, rule.outcome, def.outcomes
                )),
            }
        }
    }

    /// Matches a headline against every rule and prices the markets it moves.
    pub fn on_headline(
        &mut self,
        now: Timestamp,
        headline: &Headline,
        markets: &Markets,
        out: &mut Vec<Proposal>,
    ) {
        let max_age_ms = (self.config.max_headline_age_secs as i64) * 1000;
        if now.millis_since(headline.published) > max_age_ms || !self.remember(&headline.id) {
            return;
        }
        let text = format!("{} {}", headline.title, headline.summary).to_lowercase();
        let expires = Timestamp(headline.published.0 + max_age_ms);
        for i in 0..self.rules.len() {
            let rule = &self.rules[i];
            let Some((market, _)) = rule.target else {
                continue;
            };
            if !rule.matches(&text) {
                continue;
            }
            self.signals[market] = Some(Signal {
                rule: i,
                headline: headline.title.clone(),
                expires,
            });
            self.evaluate(now, markets, market, out);
        }
    }

    fn remember(&mut self, id: &str) -> bool {
        if self.seen.contains(id) {
            return false;
        }
        if self.seen_order.len() == SEEN_CAPACITY
            && let Some(old) = self.seen_order.pop_front()
        {
            self.seen.remove(&old);
        }
        self.seen.insert(id.to_owned());
        self.seen_order.push_back(id.to_owned());
        true
    }

    /// Prices the open signal on `market`, if any.
    pub fn evaluate(
        &mut self,
        now: Timestamp,
        markets: &Markets,
        market: MarketIdx,
        out: &mut Vec<Proposal>,
    ) {
        let Some(Some(signal)) = self.signals.get(market) else {
            return;
        };
        if now >= signal.expires || markets.get(market).resolved.is_some() {
            self.signals[market] = None;
            return;
        }
        if now < self.cooldown_until[market] {
            return;
        }
        let rule = &self.rules[signal.rule];
        let Some((_, outcome)) = rule.target else {
            return;
        };
        self.legs = [LegRef { market, outcome }];
        let size = sweep_equal_size(
            markets,
            &self.legs,
            rule.fair_price,
            self.config.min_edge,
            rule.max_size,
            &mut self.cursor,
        );
        if size <= Decimal::ZERO {
            return;
        }
        let Some((legs, edge)) = plan_equal_size(
            markets,
            &self.legs,
            size,
            rule.fair_price,
            self.config.min_edge,
        ) else {
            return;
        };
        let state = markets.get(market);
        let summary = format!(
            "{:?} → {} {} at {} (fee {}) against the rule's {}: edge {} on {} shares",
            signal.headline,
            state.def.outcomes[outcome],
            state.def.id,
            legs[0].expected_avg_price.round_dp(6).normalize(),
            legs[0].expected_fee.normalize(),
            rule.fair_price.normalize(),
            edge.round_dp(6).normalize(),
            size.normalize(),
        );
        self.cooldown_until[market] = now.plus_secs(self.config.market_cooldown_secs);
        self.signals[market] = None;
        out.push(Proposal {
            strategy: StrategyKind::NewsArb,
            legs,
            edge,
            size,
            summary,
        });
    }

    /// Rules that can never fire, for health.
    pub fn health_issue(&self) -> Option<String> {
        (!self.problems.is_empty()).then(|| self.problems.join("; "))
    }
}
