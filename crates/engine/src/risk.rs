//! Per-tenant risk checks, applied to every opportunity's orders as a batch:
//! if any leg would break a limit, no leg is sent (an arbitrage with one leg
//! missing is a naked bet).

use rust_decimal::Decimal;
use serde::Serialize;

use polybot_core::risk::RiskLimits;
use polybot_core::strategy::Venue;

use crate::clock::Timestamp;
use crate::decision::LegPlan;
use crate::market::Markets;
use crate::portfolio::Portfolio;
use crate::types::{MarketId, Side};

/// The limit an order would break.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RiskViolation {
    #[error("the kill switch is on: no new orders")]
    KillSwitch,
    #[error(
        "an order in {market} would commit {notional} ({size} at {limit_price}), over max_order_notional {limit}"
    )]
    OrderNotional {
        market: MarketId,
        size: Decimal,
        limit_price: Decimal,
        notional: Decimal,
        limit: Decimal,
    },
    #[error("position in {market} would be {would_be}, over max_position_per_market {limit}")]
    MarketPosition {
        market: MarketId,
        would_be: Decimal,
        limit: Decimal,
    },
    #[error("total exposure would be {would_be}, over max_total_exposure {limit}")]
    TotalExposure { would_be: Decimal, limit: Decimal },
    #[error("today's loss is {loss}, at or over max_daily_loss {limit}")]
    DailyLoss { loss: Decimal, limit: Decimal },
    #[error("open orders would be {would_be}, over max_open_orders {limit}")]
    OpenOrders { would_be: u32, limit: u32 },
    #[error("{venue} balance {available} does not cover {needed}")]
    InsufficientBalance {
        venue: Venue,
        needed: Decimal,
        available: Decimal,
    },
}

#[derive(Debug)]
pub struct RiskManager {
    limits: RiskLimits,
    kill_switch: bool,
    open_orders: u32,
    day: Option<i64>,
    day_start_equity: Decimal,
    /// Cost of positions the venue held before this engine started whose
    /// market the engine does not know yet (live: found when the worker
    /// reconciled); once it does, they are positions of the portfolio.
    unlisted_carried: Decimal,
}

impl RiskManager {
    pub fn new(limits: RiskLimits) -> Self {
        Self {
            kill_switch: limits.kill_switch,
            limits,
            open_orders: 0,
            day: None,
            day_start_equity: Decimal::ZERO,
            unlisted_carried: Decimal::ZERO,
        }
    }

    /// Sets the cost of carried positions whose market the engine does not
    /// know yet; it counts towards `max_total_exposure`.
    pub fn set_unlisted_carried(&mut self, cost: Decimal) {
        self.unlisted_carried = cost;
    }

    /// A position carried from before the engine started was booked into
    /// the portfolio at `cost` after today's count began: today's start
    /// moves with it, so finding it is neither a gain nor a loss.
    pub fn carried_booked(&mut self, cost: Decimal) {
        if self.day.is_some() {
            self.day_start_equity += cost;
        }
    }

    pub fn limits(&self) -> &RiskLimits {
        &self.limits
    }

    pub fn set_kill_switch(&mut self, on: bool) {
        self.kill_switch = on;
    }

    pub fn kill_switch(&self) -> bool {
        self.kill_switch
    }

    pub fn open_orders(&self) -> u32 {
        self.open_orders
    }

    pub fn order_opened(&mut self) {
        self.open_orders += 1;
    }

    pub fn order_closed(&mut self) {
        self.open_orders = self.open_orders.saturating_sub(1);
    }

    /// Starts a new UTC day's loss count when `now` is in a new day.
    #[inline]
    pub fn roll_day(&mut self, now: Timestamp, portfolio: &Portfolio, markets: &Markets) {
        let day = now.utc_day();
        if self.day != Some(day) {
            self.day_start_equity = if self.day.is_none() {
                portfolio.starting_equity()
            } else {
                portfolio.equity(markets)
            };
            self.day = Some(day);
        }
    }

    /// Today's PnL, marked to market (negative is a loss); zero before the
    /// first event, when no day has begun (and nothing can have moved).
    pub fn daily_pnl(&self, portfolio: &Portfolio, markets: &Markets) -> Decimal {
        if self.day.is_none() {
            return Decimal::ZERO;
        }
        portfolio.equity(markets) - self.day_start_equity
    }

    /// Whether today's loss has reached `max_daily_loss`: while it has,
    /// [`check`](Self::check) refuses every new order.
    pub fn daily_loss_limit_hit(&self, portfolio: &Portfolio, markets: &Markets) -> bool {
        -self.daily_pnl(portfolio, markets) >= self.limits.max_daily_loss
    }

    /// Checks a batch of legs against every limit.
    pub fn check(
        &self,
        legs: &[LegPlan],
        portfolio: &Portfolio,
        markets: &Markets,
    ) -> Result<(), RiskViolation> {
        if self.kill_switch {
            return Err(RiskViolation::KillSwitch);
        }
        // Each order on its own: the most it can commit is its limit price
        // times its size, whichever way it trades.
        for leg in legs {
            let notional = leg.limit_price * leg.size;
            if notional > self.limits.max_order_notional {
                return Err(RiskViolation::OrderNotional {
                    market: leg.market.clone(),
                    size: leg.size,
                    limit_price: leg.limit_price,
                    notional,
                    limit: self.limits.max_order_notional,
                });
            }
        }
        let loss = -self.daily_pnl(portfolio, markets);
        if loss >= self.limits.max_daily_loss {
            return Err(RiskViolation::DailyLoss {
                loss,
                limit: self.limits.max_daily_loss,
            });
        }
        let would_be = self.open_orders + legs.len() as u32;
        if would_be > self.limits.max_open_orders {
            return Err(RiskViolation::OpenOrders {
                would_be,
                limit: self.limits.max_open_orders,
            });
        }
        let mut added_total = Decimal::ZERO;
        for (i, leg) in legs.iter().enumerate() {
            if leg.side == Side::Sell {
                continue;
            }
            let Some(m) = markets.find(leg.market.as_str()) else {
                continue;
            };
            // Legs in the same market add up (complement arbitrage buys every outcome).
            if legs[..i].iter().any(|l| l.market == leg.market) {
                continue;
            }
            let added: Decimal = legs
                .iter()
                .filter(|l| l.market == leg.market && l.side == Side::Buy)
                .map(|l| l.expected_avg_price * l.size)
                .sum();
            added_total += added;
            let would_be = portfolio.market_exposure(m) + added;
            if would_be > self.limits.max_position_per_market {
                return Err(RiskViolation::MarketPosition {
                    market: leg.market.clone(),
                    would_be,
                    limit: self.limits.max_position_per_market,
                });
            }
        }
        let would_be = portfolio.total_exposure() + self.unlisted_carried + added_total;
        if would_be > self.limits.max_total_exposure {
            return Err(RiskViolation::TotalExposure {
                would_be,
                limit: self.limits.max_total_exposure,
            });
        }
        for venue in Venue::ALL {
            let needed: Decimal = legs
                .iter()
                .filter(|l| l.venue == venue && l.side == Side::Buy)
                .map(LegPlan::expected_cost)
                .sum();
            let available = portfolio.cash(venue);
            if needed > available {
                return Err(RiskViolation::InsufficientBalance {
                    venue,
                    needed,
                    available,
                });
            }
        }
        Ok(())
    }
}
