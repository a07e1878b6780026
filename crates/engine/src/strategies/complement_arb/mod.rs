//! Single-venue complement arbitrage: a complete set of a market's outcomes
//! (YES + NO, or every outcome of a multi-outcome market) pays exactly 1 at
//! resolution, so buying one for less than `1 − fees − min_edge` locks in the
//! difference.

#[cfg(test)]
mod tests;

use rust_decimal::Decimal;

use polybot_core::strategy::{ComplementArbConfig, StrategyKind};

use super::{LegRef, Proposal, plan_equal_size, sweep_equal_size};
use crate::clock::Timestamp;
use crate::market::Markets;
use crate::types::MarketIdx;

#[derive(Debug)]
pub struct ComplementArb {
    config: ComplementArbConfig,
    venues: [bool; 5],
    cooldown_until: Vec<Timestamp>,
    legs: Vec<LegRef>,
    cursor: Vec<(usize, Decimal)>,
}

impl ComplementArb {
    pub fn new(config: ComplementArbConfig) -> Self {
        let mut venues = [false; 5];
        for v in &config.venues {
            venues[v.index()] = true;
        }
        Self {
            config,
            venues,
            cooldown_until: Vec::new(),
            legs: Vec::with_capacity(8),
            cursor: Vec::with_capacity(8),
        }
    }

    pub fn config(&self) -> &ComplementArbConfig {
        &self.config
    }

    pub fn on_market_listed(&mut self, market: MarketIdx) {
        if self.cooldown_until.len() <= market {
            self.cooldown_until.resize(market + 1, Timestamp::default());
        }
    }

    /// Looks for a complete set below 1 in `market`'s books.
    pub fn evaluate(
        &mut self,
        now: Timestamp,
        markets: &Markets,
        market: MarketIdx,
        out: &mut Vec<Proposal>,
    ) {
        let state = markets.get(market);
        if !self.venues[state.def.venue.index()]
            || state.resolved.is_some()
            || state.books.len() < 2
            || now < self.cooldown_until[market]
            || state.def.closes_at.is_some_and(|c| now >= c)
        {
            return;
        }
        self.legs.clear();
        self.legs
            .extend((0..state.books.len()).map(|outcome| LegRef { market, outcome }));
        let size = sweep_equal_size(
            markets,
            &self.legs,
            Decimal::ONE,
            self.config.min_edge,
            self.config.max_size,
            &mut self.cursor,
        );
        if size < self.config.min_size {
            return;
        }
        let Some((legs, edge)) = plan_equal_size(
            markets,
            &self.legs,
            size,
            Decimal::ONE,
            self.config.min_edge,
        ) else {
            return;
        };
        self.cooldown_until[market] = now.plus_secs(self.config.market_cooldown_secs);
        let paid: Decimal = legs.iter().map(|l| l.expected_avg_price).sum();
        let fees: Decimal = legs.iter().map(|l| l.expected_fee).sum();
        let summary = format!(
            "{} outcomes of {} on {} for {} a set plus {} fees on {} sets: {} below 1 after fees",
            legs.len(),
            state.def.id,
            state.def.venue,
            paid.normalize(),
            fees.normalize(),
            size.normalize(),
            edge.round_dp(6).normalize(),
        );
        out.push(Proposal {
            strategy: StrategyKind::ComplementArb,
            legs,
            edge,
            size,
            summary,
        });
    }
}
