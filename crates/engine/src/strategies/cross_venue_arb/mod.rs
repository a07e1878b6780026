//! Cross-venue arbitrage, Polymarket ↔ Kalshi: on two markets that resolve the
//! same way, YES on one venue plus NO on the other pays exactly 1, so buying
//! both below `1 − fees − min_edge` locks in the difference (both directions
//! are checked).
//!
//! Pairs come from deterministic matching of recurring crypto markets (same
//! asset, direction, strike and closing time) and from the tenant's curated
//! table. A pair whose resolution source, window or polarity differs is never
//! traded; the reason is recorded as a `PairBlocked` decision and in
//! [`PairView`]. Sources that differ in a known way (a [`BasisRisk`], e.g.
//! Chainlink vs CF Benchmarks) follow the tenant's `basis_risk`: refused like
//! any other difference, or priced, trading only with `basis_risk_edge` more
//! edge than `min_edge`.

mod matching;
#[cfg(test)]
mod tests;

use rust_decimal::Decimal;
use serde::Serialize;

use polybot_core::strategy::{BasisRiskPolicy, CrossVenueArbConfig, StrategyKind, Venue};

pub use matching::{
    BasisRisk, CHAINLINK_VS_CF_BENCHMARKS, MatchKey, compatibility, normalise_source,
};

use super::{LegRef, Proposal, plan_equal_size, sweep_equal_size};
use crate::clock::Timestamp;
use crate::decision::{Decision, PairBlocked};
use crate::market::Markets;
use crate::types::{FxHashMap, MarketId, MarketIdx};

/// How a pair was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PairOrigin {
    Recurring,
    Curated,
}

#[derive(Debug, Clone)]
struct Pair {
    polymarket: MarketIdx,
    kalshi: MarketIdx,
    inverted: bool,
    origin: PairOrigin,
    blocked: Option<String>,
    /// The known basis risk between the two sources, priced or refused.
    basis_risk: Option<BasisRisk>,
    /// Edge required on top of `min_edge` (a priced basis risk's).
    extra_edge: Decimal,
    cooldown_until: Timestamp,
}

/// A matched pair and whether it may be traded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PairView {
    pub polymarket: MarketId,
    pub kalshi: MarketId,
    pub inverted: bool,
    pub origin: PairOrigin,
    /// Why it is never traded; none when it is tradable.
    pub blocked: Option<String>,
    /// The known basis risk between the two markets' sources, if any
    /// (refused: see `blocked`; priced: see `extra_edge`).
    pub basis_risk: Option<&'static str>,
    /// Edge the pair needs on top of `min_edge`.
    pub extra_edge: Decimal,
}

#[derive(Debug)]
pub struct CrossVenueArb {
    config: CrossVenueArbConfig,
    pairs: Vec<Pair>,
    by_market: Vec<Vec<usize>>,
    recurring: FxHashMap<MatchKey, [Vec<MarketIdx>; 2]>,
    legs: [LegRef; 2],
    cursor: Vec<(usize, Decimal)>,
}

impl CrossVenueArb {
    pub fn new(config: CrossVenueArbConfig) -> Self {
        Self {
            config,
            pairs: Vec::new(),
            by_market: Vec::new(),
            recurring: FxHashMap::default(),
            legs: [LegRef {
                market: 0,
                outcome: 0,
            }; 2],
            cursor: Vec::with_capacity(2),
        }
    }

    pub fn config(&self) -> &CrossVenueArbConfig {
        &self.config
    }

    pub fn pairs(&self, markets: &Markets) -> Vec<PairView> {
        self.pairs
            .iter()
            .map(|p| PairView {
                polymarket: markets.get(p.polymarket).def.id.clone(),
                kalshi: markets.get(p.kalshi).def.id.clone(),
                inverted: p.inverted,
                origin: p.origin,
                blocked: p.blocked.clone(),
                basis_risk: p.basis_risk.map(|r| r.name),
                extra_edge: p.extra_edge,
            })
            .collect()
    }

    /// Whether `market` belongs to any tradable pair.
    #[inline]
    pub fn watches(&self, market: MarketIdx) -> bool {
        self.by_market.get(market).is_some_and(|p| !p.is_empty())
    }

    /// Matches a newly listed market against the other venue's markets and the
    /// curated table; blocked pairs are reported in `decisions`.
    pub fn on_market_listed(
        &mut self,
        now: Timestamp,
        markets: &Markets,
        market: MarketIdx,
        decisions: &mut Vec<Decision>,
    ) {
        if self.by_market.len() < markets.len() {
            self.by_market.resize_with(markets.len(), Vec::new);
        }
        let def = &markets.get(market).def;
        let side = match def.venue {
            Venue::Polymarket => 0,
            Venue::Kalshi => 1,
            _ => return,
        };
        if self.config.match_recurring_crypto
            && let Some(key) = MatchKey::of(def)
                .filter(|k| self.config.assets.iter().any(|a| a == k.asset.as_str()))
        {
            let entry = self.recurring.entry(key).or_default();
            if !entry[side].contains(&market) {
                entry[side].push(market);
                let others = entry[1 - side].clone();
                for other in others {
                    let (pm, k) = if side == 0 {
                        (market, other)
                    } else {
                        (other, market)
                    };
                    self.add_pair(now, markets, pm, k, false, PairOrigin::Recurring, decisions);
                }
            }
        }
        let curated: Vec<(String, String, bool)> = self
            .config
            .pairs
            .iter()
            .filter(|p| {
                let mine = if side == 0 { &p.polymarket } else { &p.kalshi };
                mine == def.id.as_str()
            })
            .map(|p| (p.polymarket.clone(), p.kalshi.clone(), p.inverted))
            .collect();
        for (pm_id, k_id, inverted) in curated {
            let (Some(pm), Some(k)) = (markets.find(&pm_id), markets.find(&k_id)) else {
                continue;
            };
            self.add_pair(
                now,
                markets,
                pm,
                k,
                inverted,
                PairOrigin::Curated,
                decisions,
            );
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn add_pair(
        &mut self,
        now: Timestamp,
        markets: &Markets,
        polymarket: MarketIdx,
        kalshi: MarketIdx,
        inverted: bool,
        origin: PairOrigin,
        decisions: &mut Vec<Decision>,
    ) {
        if self
            .pairs
            .iter()
            .any(|p| p.polymarket == polymarket && p.kalshi == kalshi)
        {
            return;
        }
        let pm_def = &markets.get(polymarket).def;
        let k_def = &markets.get(kalshi).def;
        let (blocked, basis_risk, extra_edge) = match compatibility(pm_def, k_def, inverted) {
            Err(reason) => (Some(reason), None, Decimal::ZERO),
            Ok(None) => (None, None, Decimal::ZERO),
            Ok(Some((risk, detail))) => match self.config.basis_risk {
                BasisRiskPolicy::Refuse => (
                    Some(format!("{detail}; refused (basis_risk is \"refuse\")")),
                    Some(risk),
                    Decimal::ZERO,
                ),
                BasisRiskPolicy::Price => (None, Some(risk), self.config.basis_risk_edge),
            },
        };
        if let Some(reason) = &blocked {
            decisions.push(Decision::PairBlocked(PairBlocked {
                ts: now,
                polymarket: pm_def.id.clone(),
                kalshi: k_def.id.clone(),
                reason: reason.clone(),
                basis_risk: basis_risk.map(|r| r.name),
            }));
        }
        let idx = self.pairs.len();
        let tradable = blocked.is_none();
        self.pairs.push(Pair {
            polymarket,
            kalshi,
            inverted,
            origin,
            blocked,
            basis_risk,
            extra_edge,
            cooldown_until: Timestamp::default(),
        });
        if tradable {
            self.by_market[polymarket].push(idx);
            self.by_market[kalshi].push(idx);
        }
    }

    /// Checks both directions of every tradable pair that `market` is part of.
    pub fn evaluate(
        &mut self,
        now: Timestamp,
        markets: &Markets,
        market: MarketIdx,
        out: &mut Vec<Proposal>,
    ) {
        let count = self.by_market.get(market).map_or(0, Vec::len);
        for j in 0..count {
            let p = self.by_market[market][j];
            let Pair {
                polymarket,
                kalshi,
                inverted,
                cooldown_until,
                extra_edge,
                basis_risk,
                ..
            } = self.pairs[p];
            let min_edge = self.config.min_edge + extra_edge;
            if now < cooldown_until {
                continue;
            }
            let (pm, k) = (markets.get(polymarket), markets.get(kalshi));
            if pm.resolved.is_some()
                || k.resolved.is_some()
                || pm.def.closes_at.is_some_and(|c| now >= c)
            {
                continue;
            }
            let mut best: Option<Proposal> = None;
            for pm_outcome in 0..2 {
                // Polymarket YES pairs with Kalshi NO, unless the pair is inverted.
                let k_outcome = if inverted { pm_outcome } else { 1 - pm_outcome };
                self.legs = [
                    LegRef {
                        market: polymarket,
                        outcome: pm_outcome,
                    },
                    LegRef {
                        market: kalshi,
                        outcome: k_outcome,
                    },
                ];
                let size = sweep_equal_size(
                    markets,
                    &self.legs,
                    Decimal::ONE,
                    min_edge,
                    self.config.max_size,
                    &mut self.cursor,
                );
                if size < self.config.min_size {
                    continue;
                }
                let Some((legs, edge)) =
                    plan_equal_size(markets, &self.legs, size, Decimal::ONE, min_edge)
                else {
                    continue;
                };
                if best
                    .as_ref()
                    .is_some_and(|b| b.edge * b.size >= edge * size)
                {
                    continue;
                }
                let priced = basis_risk.map_or_else(String::new, |r| {
                    format!(
                        " (basis risk {} priced at {} more edge)",
                        r.name,
                        extra_edge.normalize()
                    )
                });
                let summary = format!(
                    "{} {} on polymarket at {} + {} {} on kalshi at {} with fees {} + {}: {} below 1 on {} pairs{priced}",
                    pm.def.outcomes[pm_outcome],
                    pm.def.id,
                    legs[0].expected_avg_price.round_dp(6).normalize(),
                    k.def.outcomes[k_outcome],
                    k.def.id,
                    legs[1].expected_avg_price.round_dp(6).normalize(),
                    legs[0].expected_fee.normalize(),
                    legs[1].expected_fee.normalize(),
                    edge.round_dp(6).normalize(),
                    size.normalize(),
                );
                best = Some(Proposal {
                    strategy: StrategyKind::CrossVenueArb,
                    legs,
                    edge,
                    size,
                    summary,
                });
            }
            if let Some(proposal) = best {
                self.pairs[p].cooldown_until = now.plus_secs(self.config.market_cooldown_secs);
                out.push(proposal);
            }
        }
    }
}
