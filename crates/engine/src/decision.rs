//! Decisions: what the engine hands back for each event. The worker persists
//! them (opportunities with `executed_at`, fills as trades) or, in live mode,
//! sends the orders.

use rust_decimal::Decimal;
use serde::Serialize;

use polybot_core::strategy::{StrategyKind, Venue};

use crate::clock::Timestamp;
use crate::risk::RiskViolation;
use crate::types::{MarketId, OutcomeIdx, Side};

/// Sequence number of an opportunity within one engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct OpportunityId(pub u64);

/// Sequence number of an order within one engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct OrderId(pub u64);

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Decision {
    /// A strategy found an edge; `executed_at` is set when it was acted on.
    Opportunity(Opportunity),
    /// An immediate-or-cancel limit order.
    Order(Order),
    /// A fill of an order, from the paper exchange or a venue.
    Fill(Fill),
    /// A fill of an order the venue held before the engine started (found
    /// open at start): booked into the positions of no strategy.
    CarriedFill(CarriedFill),
    /// The unfilled rest of an order, cancelled.
    Cancel(Cancel),
    /// Risk refused an opportunity's orders.
    Rejected(Rejection),
    /// A matched cross-venue pair that will never be traded, and why.
    PairBlocked(PairBlocked),
    /// A market resolved and the positions in it were paid out.
    Settlement(Settlement),
}

/// One leg of an opportunity as planned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LegPlan {
    pub venue: Venue,
    pub market: MarketId,
    pub outcome: OutcomeIdx,
    pub side: Side,
    /// The worst price the leg may pay.
    pub limit_price: Decimal,
    pub size: Decimal,
    /// The average price the book offered at decision time.
    pub expected_avg_price: Decimal,
    pub expected_fee: Decimal,
}

impl LegPlan {
    /// What the leg is expected to cost (or, selling, bring), fee included.
    pub fn expected_cost(&self) -> Decimal {
        self.expected_avg_price * self.size + self.expected_fee
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Opportunity {
    pub id: OpportunityId,
    pub strategy: StrategyKind,
    pub detected_at: Timestamp,
    pub legs: Vec<LegPlan>,
    /// Profit per unit (per complete set or per share) after fees.
    pub edge: Decimal,
    /// `edge × size`.
    pub expected_profit: Decimal,
    /// One line for people: what was seen.
    pub summary: String,
    /// When its orders were sent (paper: filled); none when not acted on.
    pub executed_at: Option<Timestamp>,
    /// Why it was not acted on, when it was not.
    pub rejection: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Order {
    pub id: OrderId,
    pub opportunity: OpportunityId,
    pub strategy: StrategyKind,
    pub ts: Timestamp,
    pub venue: Venue,
    pub market: MarketId,
    pub outcome: OutcomeIdx,
    pub side: Side,
    pub limit_price: Decimal,
    pub size: Decimal,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fill {
    pub order: OrderId,
    pub opportunity: OpportunityId,
    pub strategy: StrategyKind,
    pub ts: Timestamp,
    pub venue: Venue,
    pub market: MarketId,
    pub outcome: OutcomeIdx,
    pub side: Side,
    pub size: Decimal,
    pub avg_price: Decimal,
    /// Sum of price × size over the levels taken.
    pub notional: Decimal,
    pub fee: Decimal,
    /// PnL the fill realised in the accounting ([`crate::portfolio`]): zero
    /// for a buy, proceeds minus the cost basis sold for a sell; fees apart.
    pub realised_pnl: Decimal,
}

/// A venue's fill of an order that was open there before the engine
/// started: no strategy and no opportunity of this engine own it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CarriedFill {
    /// The venue's trade id (each is booked once).
    pub trade_id: String,
    /// The venue's id of the order.
    pub venue_order_id: String,
    pub ts: Timestamp,
    pub venue: Venue,
    pub market: MarketId,
    pub outcome: OutcomeIdx,
    pub side: Side,
    pub size: Decimal,
    pub avg_price: Decimal,
    pub notional: Decimal,
    pub fee: Decimal,
    pub realised_pnl: Decimal,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cancel {
    pub order: OrderId,
    pub ts: Timestamp,
    pub market: MarketId,
    pub remaining: Decimal,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejection {
    pub opportunity: OpportunityId,
    pub strategy: StrategyKind,
    pub ts: Timestamp,
    pub violation: RiskViolation,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PairBlocked {
    pub ts: Timestamp,
    pub polymarket: MarketId,
    pub kalshi: MarketId,
    pub reason: String,
    /// The known basis risk the pair was refused for, if that was the reason.
    pub basis_risk: Option<&'static str>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Settlement {
    pub ts: Timestamp,
    /// The strategy whose positions were paid (one settlement per strategy
    /// that held the market).
    pub strategy: StrategyKind,
    pub market: MarketId,
    pub winning_outcome: OutcomeIdx,
    /// Cash paid out (1 per winning share held).
    pub payout: Decimal,
    /// Payout minus the cost basis of every position in the market.
    pub realised_pnl: Decimal,
}
