//! The four strategies, one folder each (their configs live in
//! `polybot_core::strategy`). A strategy reads books and prices and proposes
//! legs; it never sizes against risk, sends orders or books fills — the engine
//! does that, so that every strategy gets the same risk checks and execution.

pub mod complement_arb;
pub mod cross_venue_arb;
pub mod crypto_15m;
pub mod news_arb;

use rust_decimal::{Decimal, RoundingStrategy};

use polybot_core::strategy::StrategyKind;

use crate::decision::LegPlan;
use crate::fees::FeeModel;
use crate::market::Markets;
use crate::types::{Level, MarketIdx, OutcomeIdx, Side};

/// Sizes are traded in hundredths of a share (Kalshi's `_fp` counts have two
/// decimals; Polymarket accepts at least that).
pub const SIZE_DP: u32 = 2;

/// What a strategy wants done: buy every leg in the same size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposal {
    pub strategy: StrategyKind,
    pub legs: Vec<LegPlan>,
    /// Profit per unit after fees.
    pub edge: Decimal,
    pub size: Decimal,
    pub summary: String,
}

/// One leg to size: a market outcome whose asks are bought.
#[derive(Debug, Clone, Copy)]
pub struct LegRef {
    pub market: MarketIdx,
    pub outcome: OutcomeIdx,
}

/// The largest size `S ≤ max_size` such that buying `S` of every leg costs,
/// level by level, less than `payout − min_edge` per unit including each
/// venue's fee: the depth walk behind every strategy here. Returns the size
/// floored to [`SIZE_DP`] (zero when even the best level has no edge).
///
/// `cursor` is scratch space, reused across calls so that the hot path does
/// not allocate.
pub fn sweep_equal_size(
    markets: &Markets,
    legs: &[LegRef],
    payout: Decimal,
    min_edge: Decimal,
    max_size: Decimal,
    cursor: &mut Vec<(usize, Decimal)>,
) -> Decimal {
    cursor.clear();
    for leg in legs {
        let asks = markets.get(leg.market).books[leg.outcome].asks();
        match asks.first() {
            Some(level) => cursor.push((0, level.size)),
            None => return Decimal::ZERO,
        }
    }
    let threshold = payout - min_edge;
    let mut total = Decimal::ZERO;
    loop {
        let mut unit_cost = Decimal::ZERO;
        let mut step = max_size - total;
        for (leg, &(level, left)) in legs.iter().zip(cursor.iter()) {
            let state = markets.get(leg.market);
            let price = state.books[leg.outcome].asks()[level].price;
            unit_cost += price + state.fees.per_share(price);
            step = step.min(left);
        }
        if unit_cost >= threshold || step <= Decimal::ZERO {
            break;
        }
        total += step;
        let mut exhausted = false;
        for (leg, slot) in legs.iter().zip(cursor.iter_mut()) {
            slot.1 -= step;
            if slot.1 <= Decimal::ZERO {
                let asks: &[Level] = markets.get(leg.market).books[leg.outcome].asks();
                slot.0 += 1;
                match asks.get(slot.0) {
                    Some(next) => slot.1 = next.size,
                    None => exhausted = true,
                }
            }
        }
        if exhausted || total >= max_size {
            break;
        }
    }
    total.round_dp_with_strategy(SIZE_DP, RoundingStrategy::ToZero)
}

/// Prices `size` of every leg exactly (depth and each venue's rounded fee) and
/// returns the plans and the edge per unit, if it beats `min_edge`.
pub fn plan_equal_size(
    markets: &Markets,
    legs: &[LegRef],
    size: Decimal,
    payout: Decimal,
    min_edge: Decimal,
) -> Option<(Vec<LegPlan>, Decimal)> {
    if size <= Decimal::ZERO {
        return None;
    }
    let mut plans = Vec::with_capacity(legs.len());
    let mut cost = Decimal::ZERO;
    for leg in legs {
        let state = markets.get(leg.market);
        let book = &state.books[leg.outcome];
        let sweep = book.sweep(Side::Buy, Decimal::ONE, size, &state.fees);
        if sweep.filled < size {
            return None;
        }
        cost += sweep.notional + sweep.fee;
        plans.push(LegPlan {
            venue: state.def.venue,
            market: state.def.id.clone(),
            outcome: leg.outcome,
            side: Side::Buy,
            limit_price: sweep.worst_price,
            size,
            expected_avg_price: sweep.avg_price(),
            expected_fee: sweep.fee,
        });
    }
    let edge = (payout * size - cost) / size;
    (edge > min_edge).then_some((plans, edge))
}

/// The fee model's per-share cost at `price`, for summaries.
pub fn unit_cost(fees: &FeeModel, price: Decimal) -> Decimal {
    price + fees.per_share(price)
}

#[cfg(test)]
pub(crate) mod testkit {
    //! Builders shared by the strategies' tests.

    use rust_decimal::Decimal;

    use polybot_core::risk::RiskLimits;
    use polybot_core::strategy::{StrategiesConfig, Venue};

    use crate::clock::{EventClock, Timestamp};
    use crate::decision::{Decision, Fill, Opportunity};
    use crate::engine::{Engine, EngineConfig};
    use crate::event::{BookSnapshot, Event, EventKind, MarketDef, Resolution};
    use crate::types::{Level, MarketId};

    /// An engine with 1,000 of cash on each prediction venue.
    pub fn engine(strategies: StrategiesConfig, risk: RiskLimits) -> Engine<EventClock> {
        let config = EngineConfig {
            strategies,
            risk,
            balances: vec![
                (Venue::Polymarket, Decimal::new(1000, 0)),
                (Venue::Kalshi, Decimal::new(1000, 0)),
            ],
        };
        Engine::new(config, EventClock::default()).unwrap()
    }

    /// Feeds events, failing the test on a data error, and returns every decision.
    pub fn feed(
        engine: &mut Engine<EventClock>,
        events: impl IntoIterator<Item = Event>,
    ) -> Vec<Decision> {
        let mut out = Vec::new();
        let mut paper = crate::paper::PaperExchange::default();
        for event in events {
            let mut batch = Vec::new();
            engine.on_event(&event, &mut batch).unwrap();
            paper.execute(engine, &mut batch);
            out.append(&mut batch);
        }
        out
    }

    pub fn fills(decisions: &[Decision]) -> Vec<&Fill> {
        decisions
            .iter()
            .filter_map(|d| match d {
                Decision::Fill(f) => Some(f),
                _ => None,
            })
            .collect()
    }

    pub fn opportunities(decisions: &[Decision]) -> Vec<&Opportunity> {
        decisions
            .iter()
            .filter_map(|d| match d {
                Decision::Opportunity(o) => Some(o),
                _ => None,
            })
            .collect()
    }

    pub fn resolved(ts: i64, market: &str, outcome: usize) -> Event {
        Event::new(
            Timestamp(ts),
            EventKind::Resolved(Resolution {
                market: MarketId::new(market),
                outcome,
            }),
        )
    }

    pub fn market(id: &str, venue: Venue, outcomes: &[&str], fee_rate: Decimal) -> MarketDef {
        MarketDef {
            id: MarketId::new(id),
            venue,
            outcomes: outcomes.iter().map(|s| (*s).to_owned()).collect(),
            fee_rate,
            question: String::new(),
            resolution_source: None,
            window_start: None,
            closes_at: None,
            recurring: None,
            reference_price: None,
            venue_ids: None,
            fee_exponent: 1,
        }
    }

    pub fn listed(ts: i64, def: MarketDef) -> Event {
        Event::new(Timestamp(ts), EventKind::Market(Box::new(def)))
    }

    pub fn levels(pairs: &[(&str, &str)]) -> Vec<Level> {
        pairs
            .iter()
            .map(|(p, s)| Level::new(p.parse().unwrap(), s.parse().unwrap()))
            .collect()
    }

    pub fn book(
        ts: i64,
        market: &str,
        outcome: usize,
        bids: &[(&str, &str)],
        asks: &[(&str, &str)],
    ) -> Event {
        Event::new(
            Timestamp(ts),
            EventKind::Book(BookSnapshot {
                market: MarketId::new(market),
                outcome,
                bids: levels(bids),
                asks: levels(asks),
            }),
        )
    }
}
