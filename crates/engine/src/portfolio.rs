//! Positions, balances and PnL of one tenant's engine.
//!
//! Cost basis excludes fees; fees are booked straight into realised PnL, so
//! `realised + unrealised = equity − starting equity` at all times. Positions
//! are marked at the best bid (what they could be sold for), a complete set of
//! a market's outcomes at 1 (it pays exactly 1 at resolution), and a position
//! with no bid and no trade at its cost.

use rust_decimal::Decimal;
use serde::Serialize;

use polybot_core::strategy::Venue;

use crate::market::Markets;
use crate::types::{MarketId, MarketIdx, OutcomeIdx, Side};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Position {
    qty: Decimal,
    cost: Decimal,
}

#[derive(Debug, Default)]
pub struct Portfolio {
    cash: [Decimal; 5],
    starting_equity: Decimal,
    positions: Vec<Vec<Position>>,
    market_cost: Vec<Decimal>,
    total_cost: Decimal,
    realised: Decimal,
    fees_paid: Decimal,
    held: Vec<MarketIdx>,
}

/// One open position, for reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PositionView {
    pub market: MarketId,
    pub venue: Venue,
    pub outcome: OutcomeIdx,
    pub quantity: Decimal,
    pub avg_price: Decimal,
    pub cost: Decimal,
    pub mark: Decimal,
}

/// Balances, positions and PnL at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PortfolioSnapshot {
    pub balances: Vec<(Venue, Decimal)>,
    pub positions: Vec<PositionView>,
    pub exposure: Decimal,
    pub realised_pnl: Decimal,
    pub unrealised_pnl: Decimal,
    pub fees_paid: Decimal,
    pub equity: Decimal,
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
        self.realised
    }

    pub fn fees_paid(&self) -> Decimal {
        self.fees_paid
    }

    pub fn quantity(&self, market: MarketIdx, outcome: OutcomeIdx) -> Decimal {
        self.positions
            .get(market)
            .and_then(|p| p.get(outcome))
            .map(|p| p.qty)
            .unwrap_or_default()
    }

    fn ensure(&mut self, market: MarketIdx, outcomes: usize) {
        if self.positions.len() <= market {
            self.positions.resize_with(market + 1, Vec::new);
            self.market_cost.resize(market + 1, Decimal::ZERO);
        }
        if self.positions[market].len() < outcomes {
            self.positions[market].resize(outcomes, Position::default());
        }
    }

    /// Books a fill: cash, position, cost basis, fee.
    #[allow(clippy::too_many_arguments)]
    pub fn apply_fill(
        &mut self,
        venue: Venue,
        market: MarketIdx,
        outcomes: usize,
        outcome: OutcomeIdx,
        side: Side,
        size: Decimal,
        notional: Decimal,
        fee: Decimal,
    ) {
        self.ensure(market, outcomes);
        let cash = &mut self.cash[venue.index()];
        let pos = &mut self.positions[market][outcome];
        match side {
            Side::Buy => {
                *cash -= notional + fee;
                pos.qty += size;
                pos.cost += notional;
                self.market_cost[market] += notional;
                self.total_cost += notional;
            }
            Side::Sell => {
                *cash += notional - fee;
                let sold = size.min(pos.qty);
                let basis = if pos.qty.is_zero() {
                    Decimal::ZERO
                } else {
                    pos.cost * sold / pos.qty
                };
                pos.qty -= sold;
                pos.cost -= basis;
                self.market_cost[market] -= basis;
                self.total_cost -= basis;
                self.realised += notional - basis;
            }
        }
        self.realised -= fee;
        self.fees_paid += fee;
        if !self.held.contains(&market) {
            self.held.push(market);
        }
    }

    /// Pays out a resolved market: 1 per winning share. Returns (payout,
    /// realised PnL), or none when nothing was held in it.
    pub fn settle(
        &mut self,
        venue: Venue,
        market: MarketIdx,
        winner: OutcomeIdx,
    ) -> Option<(Decimal, Decimal)> {
        if !self.held.contains(&market) {
            return None;
        }
        let positions = self.positions.get_mut(market)?;
        let mut payout = Decimal::ZERO;
        let mut basis = Decimal::ZERO;
        for (i, pos) in positions.iter_mut().enumerate() {
            if i == winner {
                payout += pos.qty;
            }
            basis += pos.cost;
            *pos = Position::default();
        }
        self.cash[venue.index()] += payout;
        self.market_cost[market] -= basis;
        self.total_cost -= basis;
        let pnl = payout - basis;
        self.realised += pnl;
        self.held.retain(|m| *m != market);
        Some((payout, pnl))
    }

    /// Value of the open positions at their marks.
    pub fn mark_value(&self, markets: &Markets) -> Decimal {
        self.held
            .iter()
            .map(|&m| self.market_value(markets, m))
            .sum()
    }

    fn market_value(&self, markets: &Markets, m: MarketIdx) -> Decimal {
        let positions = &self.positions[m];
        let state = markets.get(m);
        let sets = if positions.len() == state.books.len() {
            positions.iter().map(|p| p.qty).min().unwrap_or_default()
        } else {
            Decimal::ZERO
        };
        let mut value = sets;
        for (outcome, pos) in positions.iter().enumerate() {
            let rest = pos.qty - sets;
            if rest <= Decimal::ZERO {
                continue;
            }
            let mark = state.mark(outcome).unwrap_or_else(|| {
                if pos.qty.is_zero() {
                    Decimal::ZERO
                } else {
                    pos.cost / pos.qty
                }
            });
            value += rest * mark;
        }
        value
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
        for &m in &self.held {
            let state = markets.get(m);
            for (outcome, pos) in self.positions[m].iter().enumerate() {
                if pos.qty.is_zero() {
                    continue;
                }
                let avg = pos.cost / pos.qty;
                positions.push(PositionView {
                    market: state.def.id.clone(),
                    venue: state.def.venue,
                    outcome,
                    quantity: pos.qty,
                    avg_price: avg,
                    cost: pos.cost,
                    mark: state.mark(outcome).unwrap_or(avg),
                });
            }
        }
        PortfolioSnapshot {
            balances,
            positions,
            exposure: self.total_cost,
            realised_pnl: self.realised,
            unrealised_pnl: self.unrealised_pnl(markets),
            fees_paid: self.fees_paid,
            equity: self.equity(markets),
        }
    }
}
