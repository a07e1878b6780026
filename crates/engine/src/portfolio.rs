//! The accounting of one tenant's engine: cash, positions and PnL. Every
//! fill is booked here, whoever executed it (paper, shadow or live), and
//! every resolution settles here.
//!
//! Positions are kept per strategy, market and outcome at their cost; fees
//! are a line of their own. So at every moment, exactly (all `Decimal`):
//!
//! `equity − starting equity = realised + unrealised − fees`
//!
//! - **realised**: what sells and resolutions returned over the cost basis
//!   they closed (a buy realises nothing);
//! - **unrealised**: open positions at their marks minus their cost;
//! - **locked**: the part of unrealised held as complete sets, which pay
//!   exactly 1 at resolution whatever happens: every outcome of one market,
//!   or the two legs of a cross-venue pair. They are valued at 1, not at the
//!   bids, so an arbitrage shows the edge it locked instead of a loss to the
//!   spread.
//!
//! Positions the venue held before the engine started (live: found when
//! the worker reconciled) are booked with [`Portfolio::carry`] into a
//! ledger of their own, at their cost basis: they count towards exposure,
//! are marked like any other position, and settle against that basis.
//!
//! Marks: the best bid (what a long could be sold for), else the last trade,
//! else the position's cost.
//!
//! Not here: fee formulas ([`crate::fees`]), how orders are executed, and
//! risk limits ([`crate::risk`], which reads exposure and equity from here).

use rust_decimal::Decimal;
use serde::Serialize;

use polybot_core::strategy::{StrategyKind, Venue};

use crate::decision::Fill;
use crate::market::Markets;
use crate::types::{MarketId, MarketIdx, OutcomeIdx, Side};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Position {
    qty: Decimal,
    cost: Decimal,
}

impl Position {
    fn avg(&self) -> Decimal {
        if self.qty.is_zero() {
            Decimal::ZERO
        } else {
            self.cost / self.qty
        }
    }
}

/// Two positions in different markets that together pay exactly 1 (a
/// cross-venue pair: YES here, NO there, on the same question).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Hedge {
    a: (MarketIdx, OutcomeIdx),
    b: (MarketIdx, OutcomeIdx),
}

/// One strategy's positions and PnL.
#[derive(Debug, Default)]
struct Ledger {
    positions: Vec<Vec<Position>>,
    held: Vec<MarketIdx>,
    hedges: Vec<Hedge>,
    realised: Decimal,
    fees: Decimal,
}

/// A ledger's open positions valued.
#[derive(Debug, Default, Clone, Copy)]
struct Valuation {
    value: Decimal,
    cost: Decimal,
    locked_value: Decimal,
    locked_cost: Decimal,
}

impl Ledger {
    fn position(&self, market: MarketIdx, outcome: OutcomeIdx) -> Position {
        self.positions
            .get(market)
            .and_then(|p| p.get(outcome))
            .copied()
            .unwrap_or_default()
    }

    /// Open quantities per held market, with complete sets and hedged pairs
    /// taken out and valued at 1.
    fn valuation(&self, markets: &Markets) -> (Valuation, Vec<(MarketIdx, Vec<Decimal>)>) {
        let mut v = Valuation::default();
        let mut rest: Vec<(MarketIdx, Vec<Decimal>)> = Vec::with_capacity(self.held.len());
        for &m in &self.held {
            let positions = &self.positions[m];
            let mut qty: Vec<Decimal> = positions.iter().map(|p| p.qty).collect();
            if positions.len() == markets.get(m).books.len() {
                let sets = qty.iter().copied().min().unwrap_or_default();
                if sets > Decimal::ZERO {
                    v.locked_value += sets;
                    for (q, p) in qty.iter_mut().zip(positions) {
                        v.locked_cost += sets * p.avg();
                        *q -= sets;
                    }
                }
            }
            v.cost += positions.iter().map(|p| p.cost).sum::<Decimal>();
            rest.push((m, qty));
        }
        for hedge in &self.hedges {
            let get = |rest: &[(MarketIdx, Vec<Decimal>)], (m, o): (MarketIdx, OutcomeIdx)| {
                rest.iter()
                    .position(|(held, _)| *held == m)
                    .filter(|&i| o < rest[i].1.len())
                    .map(|i| (i, rest[i].1[o]))
            };
            let (Some((ia, qa)), Some((ib, qb))) = (get(&rest, hedge.a), get(&rest, hedge.b))
            else {
                continue;
            };
            let pair = qa.min(qb);
            if pair <= Decimal::ZERO {
                continue;
            }
            v.locked_value += pair;
            v.locked_cost += pair * self.position(hedge.a.0, hedge.a.1).avg()
                + pair * self.position(hedge.b.0, hedge.b.1).avg();
            rest[ia].1[hedge.a.1] -= pair;
            rest[ib].1[hedge.b.1] -= pair;
        }
        v.value = v.locked_value;
        for (m, qty) in &rest {
            let state = markets.get(*m);
            for (outcome, q) in qty.iter().enumerate() {
                if *q <= Decimal::ZERO {
                    continue;
                }
                let pos = &self.positions[*m][outcome];
                let mark = state.mark(outcome).unwrap_or_else(|| pos.avg());
                v.value += *q * mark;
            }
        }
        (v, rest)
    }
}

#[derive(Debug, Default)]
pub struct Portfolio {
    cash: [Decimal; 5],
    starting_equity: Decimal,
    ledgers: [Ledger; 4],
    /// Positions held before the engine started, owned by no strategy.
    carried: Ledger,
    market_cost: Vec<Decimal>,
    total_cost: Decimal,
}

/// What one fill moves in the books: cash, a position, fees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Traded {
    pub venue: Venue,
    pub outcome: OutcomeIdx,
    pub side: Side,
    pub size: Decimal,
    pub notional: Decimal,
    pub fee: Decimal,
}

impl Traded {
    fn of(fill: &Fill) -> Self {
        Self {
            venue: fill.venue,
            outcome: fill.outcome,
            side: fill.side,
            size: fill.size,
            notional: fill.notional,
            fee: fill.fee,
        }
    }
}

/// One open position, for reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PositionView {
    /// The strategy that holds it; none for a position the venue held
    /// before the engine started.
    pub strategy: Option<StrategyKind>,
    pub market: MarketId,
    pub venue: Venue,
    pub outcome: OutcomeIdx,
    /// The outcome's name (`Yes`, `Down`, …).
    pub outcome_name: String,
    pub quantity: Decimal,
    pub avg_price: Decimal,
    pub cost: Decimal,
    /// The best bid, else the last trade, else the average price.
    pub mark: Decimal,
    /// How much of `quantity` is part of a complete set or a hedged pair
    /// (valued at what it pays at resolution, not at `mark`).
    pub locked: Decimal,
}

/// One strategy's PnL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StrategyPnl {
    pub strategy: StrategyKind,
    pub realised_pnl: Decimal,
    pub unrealised_pnl: Decimal,
    /// The part of `unrealised_pnl` locked in complete sets and hedged pairs.
    pub locked_pnl: Decimal,
    pub fees_paid: Decimal,
    pub exposure: Decimal,
}

impl StrategyPnl {
    /// What the strategy made: realised + unrealised − fees.
    pub fn net(&self) -> Decimal {
        self.realised_pnl + self.unrealised_pnl - self.fees_paid
    }
}

/// Balances, positions and PnL at one moment; `equity − starting_equity =
/// realised_pnl + unrealised_pnl − fees_paid`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PortfolioSnapshot {
    pub balances: Vec<(Venue, Decimal)>,
    pub positions: Vec<PositionView>,
    pub exposure: Decimal,
    /// Sells and resolutions over the cost basis they closed; fees excluded.
    pub realised_pnl: Decimal,
    /// Open positions at their marks minus their cost.
    pub unrealised_pnl: Decimal,
    /// The part of `unrealised_pnl` locked in complete sets and hedged pairs.
    pub locked_pnl: Decimal,
    pub fees_paid: Decimal,
    pub starting_equity: Decimal,
    pub equity: Decimal,
    /// Every strategy that traded, in [`StrategyKind::ALL`] order. Positions
    /// carried from before the engine started belong to none: they are in
    /// [`PortfolioSnapshot::carried`].
    pub by_strategy: Vec<StrategyPnl>,
    /// The positions the venue held before the engine started (and the
    /// fills of orders found open then), owned by no strategy, figured like
    /// a strategy's: `by_strategy` and `carried` add up to the totals.
    pub carried: Option<CarriedPnl>,
}

/// The PnL of what the venue held before the engine started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CarriedPnl {
    pub realised_pnl: Decimal,
    pub unrealised_pnl: Decimal,
    pub locked_pnl: Decimal,
    pub fees_paid: Decimal,
    pub exposure: Decimal,
}

/// What a resolution paid one strategy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Payout {
    pub strategy: StrategyKind,
    /// 1 per winning share.
    pub payout: Decimal,
    /// Payout minus the cost basis of every position in the market.
    pub realised_pnl: Decimal,
}

impl Portfolio {
    pub fn new(balances: &[(Venue, Decimal)]) -> Self {
        let mut p = Portfolio::default();
        for (venue, amount) in balances {
            p.cash[venue.index()] += *amount;
        }
        p.starting_equity = p.cash.iter().sum();
        p
    }

    /// Replaces a venue's cash with what the venue reports.
    pub fn set_cash(&mut self, venue: Venue, amount: Decimal) {
        let delta = amount - self.cash[venue.index()];
        self.cash[venue.index()] = amount;
        // Money found at the venue is not profit: it moves the start.
        self.starting_equity += delta;
    }

    pub fn cash(&self, venue: Venue) -> Decimal {
        self.cash[venue.index()]
    }

    pub fn total_exposure(&self) -> Decimal {
        self.total_cost
    }

    pub fn market_exposure(&self, market: MarketIdx) -> Decimal {
        self.market_cost.get(market).copied().unwrap_or_default()
    }

    pub fn realised_pnl(&self) -> Decimal {
        self.ledgers
            .iter()
            .chain(std::iter::once(&self.carried))
            .map(|l| l.realised)
            .sum()
    }

    pub fn fees_paid(&self) -> Decimal {
        self.ledgers
            .iter()
            .chain(std::iter::once(&self.carried))
            .map(|l| l.fees)
            .sum()
    }

    /// All strategies' quantity of one outcome.
    pub fn quantity(&self, market: MarketIdx, outcome: OutcomeIdx) -> Decimal {
        self.ledgers
            .iter()
            .map(|l| l.position(market, outcome).qty)
            .sum()
    }

    /// Books a fill (cash, position, cost basis, fee) into its strategy's
    /// ledger; `outcomes` is how many outcomes the market has. Returns the
    /// PnL it realised: zero for a buy, proceeds minus the basis sold for a
    /// sell (fees apart).
    pub fn apply_fill(&mut self, market: MarketIdx, outcomes: usize, fill: &Fill) -> Decimal {
        self.apply_to(Some(fill.strategy), market, outcomes, &Traded::of(fill))
    }

    /// [`Portfolio::apply_fill`] into the ledger of no strategy: a fill of
    /// an order the venue held before the engine started.
    pub fn apply_carried_fill(
        &mut self,
        market: MarketIdx,
        outcomes: usize,
        traded: &Traded,
    ) -> Decimal {
        self.apply_to(None, market, outcomes, traded)
    }

    fn apply_to(
        &mut self,
        owner: Option<StrategyKind>,
        market: MarketIdx,
        outcomes: usize,
        fill: &Traded,
    ) -> Decimal {
        if self.market_cost.len() <= market {
            self.market_cost.resize(market + 1, Decimal::ZERO);
        }
        let ledger = match owner {
            Some(kind) => &mut self.ledgers[kind.index()],
            None => &mut self.carried,
        };
        if ledger.positions.len() <= market {
            ledger.positions.resize_with(market + 1, Vec::new);
        }
        if ledger.positions[market].len() < outcomes {
            ledger.positions[market].resize(outcomes, Position::default());
        }
        let cash = &mut self.cash[fill.venue.index()];
        let pos = &mut ledger.positions[market][fill.outcome];
        let realised = match fill.side {
            Side::Buy => {
                *cash -= fill.notional + fill.fee;
                pos.qty += fill.size;
                pos.cost += fill.notional;
                self.market_cost[market] += fill.notional;
                self.total_cost += fill.notional;
                Decimal::ZERO
            }
            Side::Sell => {
                *cash += fill.notional - fill.fee;
                let sold = fill.size.min(pos.qty);
                let basis = if pos.qty.is_zero() {
                    Decimal::ZERO
                } else if sold == pos.qty {
                    pos.cost
                } else {
                    pos.cost * sold / pos.qty
                };
                pos.qty -= sold;
                pos.cost -= basis;
                self.market_cost[market] -= basis;
                self.total_cost -= basis;
                fill.notional - basis
            }
        };
        ledger.realised += realised;
        ledger.fees += fill.fee;
        if !ledger.held.contains(&market) {
            ledger.held.push(market);
        }
        realised
    }

    /// Books a position the venue held before the engine started: `size`
    /// of `outcome` at a cost basis of `cost`, owned by no strategy. Its
    /// cost counts towards exposure and moves the starting equity (money
    /// found at the venue is not profit); from here on it is marked like
    /// any other position and settles against `cost`.
    pub fn carry(
        &mut self,
        market: MarketIdx,
        outcomes: usize,
        outcome: OutcomeIdx,
        size: Decimal,
        cost: Decimal,
    ) {
        if self.market_cost.len() <= market {
            self.market_cost.resize(market + 1, Decimal::ZERO);
        }
        let ledger = &mut self.carried;
        if ledger.positions.len() <= market {
            ledger.positions.resize_with(market + 1, Vec::new);
        }
        if ledger.positions[market].len() < outcomes {
            ledger.positions[market].resize(outcomes, Position::default());
        }
        let pos = &mut ledger.positions[market][outcome];
        pos.qty += size;
        pos.cost += cost;
        if !ledger.held.contains(&market) {
            ledger.held.push(market);
        }
        self.market_cost[market] += cost;
        self.total_cost += cost;
        self.starting_equity += cost;
    }

    /// Records that `strategy`'s positions in `a` and `b` (market, outcome)
    /// pay exactly 1 together: the two legs of a cross-venue pair.
    pub fn hedge(
        &mut self,
        strategy: StrategyKind,
        a: (MarketIdx, OutcomeIdx),
        b: (MarketIdx, OutcomeIdx),
    ) {
        let ledger = &mut self.ledgers[strategy.index()];
        let hedge = Hedge { a, b };
        if a.0 != b.0 && !ledger.hedges.contains(&hedge) {
            ledger.hedges.push(hedge);
        }
    }

    /// Pays out a resolved market, 1 per winning share, strategy by
    /// strategy; strategies that held nothing in it get nothing.
    ///
    /// A position carried from before the engine started settles too, into
    /// the realised PnL against its cost basis; it has no strategy, so no
    /// [`Payout`] names it.
    pub fn settle(&mut self, venue: Venue, market: MarketIdx, winner: OutcomeIdx) -> Vec<Payout> {
        let mut payouts = Vec::new();
        for kind in StrategyKind::ALL {
            if let Some((payout, pnl)) = self.settle_ledger(Some(kind), venue, market, winner) {
                payouts.push(Payout {
                    strategy: kind,
                    payout,
                    realised_pnl: pnl,
                });
            }
        }
        self.settle_ledger(None, venue, market, winner);
        payouts
    }

    /// Settles one ledger's positions in `market` (`None`: the carried
    /// ledger); returns the payout and the PnL it realised, if it held any.
    fn settle_ledger(
        &mut self,
        kind: Option<StrategyKind>,
        venue: Venue,
        market: MarketIdx,
        winner: OutcomeIdx,
    ) -> Option<(Decimal, Decimal)> {
        let ledger = match kind {
            Some(kind) => &mut self.ledgers[kind.index()],
            None => &mut self.carried,
        };
        if !ledger.held.contains(&market) {
            return None;
        }
        ledger.held.retain(|m| *m != market);
        ledger.hedges.retain(|h| h.a.0 != market && h.b.0 != market);
        let mut payout = Decimal::ZERO;
        let mut basis = Decimal::ZERO;
        for (i, pos) in ledger.positions[market].iter_mut().enumerate() {
            if i == winner {
                payout += pos.qty;
            }
            basis += pos.cost;
            *pos = Position::default();
        }
        let pnl = payout - basis;
        ledger.realised += pnl;
        self.cash[venue.index()] += payout;
        self.market_cost[market] -= basis;
        self.total_cost -= basis;
        Some((payout, pnl))
    }

    /// Value of the open positions: sets and pairs at 1, the rest at marks.
    pub fn mark_value(&self, markets: &Markets) -> Decimal {
        self.ledgers
            .iter()
            .chain(std::iter::once(&self.carried))
            .map(|l| l.valuation(markets).0.value)
            .sum()
    }

    pub fn cash_total(&self) -> Decimal {
        self.cash.iter().sum()
    }

    pub fn equity(&self, markets: &Markets) -> Decimal {
        self.cash_total() + self.mark_value(markets)
    }

    pub fn unrealised_pnl(&self, markets: &Markets) -> Decimal {
        self.mark_value(markets) - self.total_cost
    }

    pub fn starting_equity(&self) -> Decimal {
        self.starting_equity
    }

    pub fn snapshot(&self, markets: &Markets) -> PortfolioSnapshot {
        let balances = Venue::ALL
            .iter()
            .filter(|v| !self.cash[v.index()].is_zero())
            .map(|v| (*v, self.cash[v.index()]))
            .collect();
        let mut positions = Vec::new();
        let mut by_strategy = Vec::new();
        let mut carried = None;
        let mut value = Decimal::ZERO;
        let mut locked = Decimal::ZERO;
        let ledgers = StrategyKind::ALL
            .into_iter()
            .map(|kind| (Some(kind), &self.ledgers[kind.index()]))
            .chain(std::iter::once((None, &self.carried)));
        for (kind, ledger) in ledgers {
            if ledger.positions.is_empty() {
                continue;
            }
            let (v, rest) = ledger.valuation(markets);
            value += v.value;
            locked += v.locked_value - v.locked_cost;
            match kind {
                Some(kind) => by_strategy.push(StrategyPnl {
                    strategy: kind,
                    realised_pnl: ledger.realised,
                    unrealised_pnl: v.value - v.cost,
                    locked_pnl: v.locked_value - v.locked_cost,
                    fees_paid: ledger.fees,
                    exposure: v.cost,
                }),
                None => {
                    carried = Some(CarriedPnl {
                        realised_pnl: ledger.realised,
                        unrealised_pnl: v.value - v.cost,
                        locked_pnl: v.locked_value - v.locked_cost,
                        fees_paid: ledger.fees,
                        exposure: v.cost,
                    })
                }
            }
            for (m, open) in &rest {
                let state = markets.get(*m);
                for (outcome, pos) in ledger.positions[*m].iter().enumerate() {
                    if pos.qty.is_zero() {
                        continue;
                    }
                    let avg = pos.avg();
                    positions.push(PositionView {
                        strategy: kind,
                        market: state.def.id.clone(),
                        venue: state.def.venue,
                        outcome,
                        outcome_name: state
                            .def
                            .outcomes
                            .get(outcome)
                            .cloned()
                            .unwrap_or_else(|| outcome.to_string()),
                        quantity: pos.qty,
                        avg_price: avg,
                        cost: pos.cost,
                        mark: state.mark(outcome).unwrap_or(avg),
                        locked: pos.qty - open[outcome].max(Decimal::ZERO),
                    });
                }
            }
        }
        PortfolioSnapshot {
            balances,
            positions,
            exposure: self.total_cost,
            realised_pnl: self.realised_pnl(),
            unrealised_pnl: value - self.total_cost,
            locked_pnl: locked,
            fees_paid: self.fees_paid(),
            starting_equity: self.starting_equity,
            equity: self.cash_total() + value,
            by_strategy,
            carried,
        }
    }
}

#[cfg(test)]
mod tests {
    use rust_decimal_macros::dec;

    use super::*;
    use crate::clock::Timestamp;
    use crate::decision::{OpportunityId, OrderId};
    use crate::event::{BookSnapshot, MarketDef};
    use crate::types::Level;

    fn market(markets: &mut Markets, bid: Decimal) -> MarketIdx {
        let (idx, _) = markets.upsert(MarketDef {
            id: MarketId::new("m"),
            venue: Venue::Kalshi,
            outcomes: vec!["Yes".into(), "No".into()],
            fee_rate: dec!(0.07),
            question: String::new(),
            resolution_source: None,
            window_start: None,
            closes_at: None,
            recurring: None,
            reference_price: None,
            venue_ids: None,
            fee_exponent: 1,
        });
        markets
            .apply_snapshot(&BookSnapshot {
                market: MarketId::new("m"),
                outcome: 0,
                bids: vec![Level::new(bid, dec!(100))],
                asks: vec![],
            })
            .unwrap();
        idx
    }

    fn fill(side: Side, size: Decimal, price: Decimal, fee: Decimal) -> Fill {
        Fill {
            order: OrderId(1),
            opportunity: OpportunityId(1),
            strategy: StrategyKind::NewsArb,
            ts: Timestamp(0),
            venue: Venue::Kalshi,
            market: MarketId::new("m"),
            outcome: 0,
            side,
            size,
            avg_price: price,
            notional: size * price,
            fee,
            realised_pnl: Decimal::ZERO,
        }
    }

    #[test]
    fn a_partial_sell_realises_against_the_average_cost_and_fees_stay_apart() {
        let mut markets = Markets::default();
        let m = market(&mut markets, dec!(0.50));
        let mut p = Portfolio::new(&[(Venue::Kalshi, dec!(100))]);
        assert_eq!(
            p.apply_fill(m, 2, &fill(Side::Buy, dec!(30), dec!(0.40), dec!(0.50))),
            dec!(0)
        );
        assert_eq!(
            p.apply_fill(m, 2, &fill(Side::Buy, dec!(30), dec!(0.20), dec!(0.30))),
            dec!(0)
        );
        // 20 of 60 at an average cost of 0.30, sold at 0.45.
        assert_eq!(
            p.apply_fill(m, 2, &fill(Side::Sell, dec!(20), dec!(0.45), dec!(0.20))),
            dec!(3)
        );
        let s = p.snapshot(&markets);
        assert_eq!(s.realised_pnl, dec!(3));
        assert_eq!(s.fees_paid, dec!(1.00));
        assert_eq!(s.exposure, dec!(12));
        // 40 left at the 0.50 bid: 20 − 12.
        assert_eq!(s.unrealised_pnl, dec!(8));
        assert_eq!(s.locked_pnl, dec!(0));
        assert_eq!(s.equity - s.starting_equity, dec!(10));
        assert_eq!(s.realised_pnl + s.unrealised_pnl - s.fees_paid, dec!(10));
        let payouts = p.settle(Venue::Kalshi, m, 1);
        assert_eq!(
            payouts,
            vec![Payout {
                strategy: StrategyKind::NewsArb,
                payout: dec!(0),
                realised_pnl: dec!(-12),
            }]
        );
        let s = p.snapshot(&markets);
        assert_eq!((s.realised_pnl, s.unrealised_pnl), (dec!(-9), dec!(0)));
        assert_eq!(s.equity - s.starting_equity, dec!(-10));
    }
}
