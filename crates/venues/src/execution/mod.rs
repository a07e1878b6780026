//! Order execution at a venue: one [`Executor`] trait (place, cancel,
//! cancel-all, open orders, fills, positions, balances), its shadow
//! implementation ([`ShadowExecutor`]: orders built, signed and checked
//! against the market's rules, never sent), Polymarket's live one
//! ([`polymarket::PolymarketExecutor`], CLOB V2 through the official SDK)
//! and Kalshi's ([`kalshi::KalshiExecutor`], REST v2 with RSA-PSS signed
//! requests, live or shadow), and the two-leg execution of a cross-venue
//! pair across two executors ([`pair`]: both legs at once, then completed
//! or unwound within the tenant's limits).
//!
//! Exactly-once: every order carries a [`ClientOrderId`] derived from
//! (tenant, lease epoch, decision), which fixes the order's salt; an executor
//! remembers the order it signed for each id, so a retry after a timeout asks
//! the venue for that order before it sends anything, and sends the very same
//! signed order (the venue refuses a duplicate) when the venue has not seen
//! it. Before every send the executor asks its [`Fence`] whether the worker
//! still holds the tenant's lease: a fenced twin sends nothing.
//!
//! Not here: deciding what to trade (the engine), paper fills (the engine's
//! paper exchange, `polybot_engine::PaperExchange`, walks the book the engine
//! holds; the worker routes paper orders to it through the same
//! `Execution::execute` as these executors'), and persistence (the worker
//! records what an executor reports).

pub mod kalshi;
pub mod kalshi_fills;
pub mod pair;
pub mod polymarket;
pub mod shadow;
pub mod user_channel;

use std::fmt;

use async_trait::async_trait;
use rust_decimal::Decimal;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::VenueError;

pub use shadow::ShadowExecutor;

/// Which executor a tenant's mode selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionKind {
    /// Orders are filled by the engine's paper exchange.
    Paper,
    /// Orders are built, signed and validated, then only recorded.
    Shadow,
    /// Orders are sent to the venue.
    Live,
}

impl ExecutionKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            ExecutionKind::Paper => "paper",
            ExecutionKind::Shadow => "shadow",
            ExecutionKind::Live => "live",
        }
    }
}

/// The client's id of one order: the same (tenant, lease epoch, decision)
/// always gives the same id, and so the same salt in the signed order.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientOrderId([u8; 16]);

impl ClientOrderId {
    /// `decision` names the order within the worker's run (the engine's
    /// order sequence number); `epoch` is the lease epoch the worker holds.
    pub fn derive(tenant: &[u8; 16], epoch: i64, decision: u64) -> Self {
        let mut hash = Sha256::new();
        hash.update(b"polybot client order id v1");
        hash.update(tenant);
        hash.update(epoch.to_be_bytes());
        hash.update(decision.to_be_bytes());
        let digest = hash.finalize();
        let mut id = [0u8; 16];
        id.copy_from_slice(&digest[..16]);
        Self(id)
    }

    /// The order's salt: 53 bits, as the exchange's JSON number keeps exactly.
    pub fn salt(&self) -> u64 {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&self.0[..8]);
        u64::from_be_bytes(bytes) & ((1 << 53) - 1)
    }
}

impl fmt::Display for ClientOrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for ClientOrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClientOrderId({self})")
    }
}

impl Serialize for ClientOrderId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderSide {
    Buy,
    Sell,
}

/// How long an order may live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeInForce {
    /// Take what is there now, cancel the rest (Polymarket FAK): the
    /// engine's takers.
    ImmediateOrCancel,
    /// All now or nothing (Polymarket FOK).
    FillOrKill,
    /// Rest until cancelled.
    GoodTillCancelled,
    /// Rest until the given time (Unix seconds).
    GoodTillDate(i64),
}

/// One order as the engine decided it, in the venue's terms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrderRequest {
    pub client_id: ClientOrderId,
    /// The market (Polymarket: the condition id).
    pub market: String,
    /// The instrument (Polymarket: the outcome's token id, a decimal U256).
    pub instrument: String,
    pub side: OrderSide,
    pub price: Decimal,
    pub size: Decimal,
    pub time_in_force: TimeInForce,
}

/// A market's fee parameters, as the venue publishes them: the fee on `C`
/// shares at price `p` is `C · rate · (p · (1 − p))^exponent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FeeParams {
    pub rate: Decimal,
    pub exponent: u32,
    /// Makers pay nothing.
    pub taker_only: bool,
}

/// What the venue requires of an order in one market.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MarketRules {
    pub tick_size: Decimal,
    pub min_size: Decimal,
    pub neg_risk: bool,
    pub fees: FeeParams,
}

/// Why the market's rules refuse an order (checked before anything is signed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleViolation {
    #[error("price {price} is not a multiple of the market's tick size {tick}")]
    OffTick { price: Decimal, tick: Decimal },
    #[error("price {price} is outside [{tick}, 1 − {tick}]")]
    PriceOutOfRange { price: Decimal, tick: Decimal },
    #[error("size {size} is below the market's minimum order size {min}")]
    BelowMinimum { size: Decimal, min: Decimal },
}

impl MarketRules {
    /// The checks the exchange makes on price and size.
    pub fn check(&self, order: &OrderRequest) -> Result<(), RuleViolation> {
        let tick = self.tick_size;
        if order.price < tick || order.price > Decimal::ONE - tick {
            return Err(RuleViolation::PriceOutOfRange {
                price: order.price,
                tick,
            });
        }
        if !(order.price % tick).is_zero() {
            return Err(RuleViolation::OffTick {
                price: order.price,
                tick,
            });
        }
        if order.size < self.min_size {
            return Err(RuleViolation::BelowMinimum {
                size: order.size,
                min: self.min_size,
            });
        }
        Ok(())
    }
}

/// Where an order stands at the venue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderState {
    /// Resting on the book.
    Open,
    /// Filled in full.
    Filled,
    /// Done with part or none of it filled (cancelled, killed, expired).
    Closed,
    /// Accepted but held by the venue (Polymarket's "delayed" matching).
    Pending,
    /// Shadow mode: built and signed, never sent.
    NotSent,
}

/// An executor's answer to a placement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Placed {
    pub client_id: ClientOrderId,
    /// The venue's id (Polymarket: the order's EIP-712 hash).
    pub venue_order_id: String,
    pub state: OrderState,
    /// Shares filled so far.
    pub filled: Decimal,
    /// Trades the venue reported for the order so far.
    pub fills: Vec<VenueFill>,
    /// The venue's ids of every trade `fills` covers (an order's answer
    /// sums its trades into one fill): the same trades reported again by
    /// the user channel or `GET /data/trades` are not booked twice.
    pub trade_ids: Vec<String>,
    /// True when the venue had this order already (a retry found it).
    pub recovered: bool,
    /// The body that was (or, in shadow, would have been) sent.
    pub wire: String,
}

/// One trade of ours at the venue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VenueFill {
    pub trade_id: String,
    pub venue_order_id: String,
    /// The market (Polymarket: the condition id).
    pub market: String,
    pub instrument: String,
    pub side: OrderSide,
    pub price: Decimal,
    pub size: Decimal,
    /// Fee charged (computed from the market's fee parameters when the venue
    /// reports only a rate).
    pub fee: Decimal,
    /// Unix milliseconds.
    pub ts: i64,
}

/// An order resting at the venue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OpenOrder {
    pub venue_order_id: String,
    pub market: String,
    pub instrument: String,
    pub side: OrderSide,
    pub price: Decimal,
    pub size: Decimal,
    pub filled: Decimal,
}

/// Shares of one instrument held at the venue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VenuePosition {
    pub instrument: String,
    pub size: Decimal,
}

/// Cash at the venue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VenueBalance {
    pub asset: String,
    pub amount: Decimal,
}

/// Why an executor did not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The worker no longer holds the tenant's lease: nothing was sent.
    #[error("fenced: another worker holds the tenant's lease (epoch {epoch}); nothing sent")]
    Fenced { epoch: i64 },
    /// The lease could not be checked (the database is unreachable):
    /// nothing was sent.
    #[error("the tenant's lease could not be checked, so nothing was sent: {0}")]
    LeaseUnverified(String),
    /// The market's rules refuse the order: nothing was sent.
    #[error("{market}: {violation}")]
    Rules {
        market: String,
        violation: RuleViolation,
    },
    /// The venue refused the order (it was received and rejected).
    #[error("{venue} rejected order {client_id}: {reason}")]
    Rejected {
        venue: &'static str,
        client_id: ClientOrderId,
        reason: String,
    },
    /// The venue may or may not have the order (a timeout or a lost
    /// answer): retry the same request, which asks the venue first.
    #[error("order {client_id} is in doubt: {source}")]
    InDoubt {
        client_id: ClientOrderId,
        source: VenueError,
    },
    /// Any other failure talking to the venue.
    #[error(transparent)]
    Venue(#[from] VenueError),
}

impl ExecError {
    /// Whether a retry of the same request may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            ExecError::InDoubt { .. } => true,
            ExecError::Venue(e) => matches!(
                e.kind(),
                crate::ErrorKind::RateLimited { .. }
                    | crate::ErrorKind::Server { .. }
                    | crate::ErrorKind::Timeout { .. }
                    | crate::ErrorKind::Unreachable { .. }
            ),
            _ => false,
        }
    }

    /// Whether the venue itself refused or failed (counts towards the
    /// strategy's circuit breaker); a fence or a rule check does not.
    pub fn is_venue_failure(&self) -> bool {
        matches!(
            self,
            ExecError::Rejected { .. } | ExecError::InDoubt { .. } | ExecError::Venue(_)
        )
    }
}

/// The worker's lease, asked before every send.
#[async_trait]
pub trait Fence: Send + Sync {
    /// [`ExecError::Fenced`] when the lease is no longer this worker's,
    /// [`ExecError::LeaseUnverified`] when it cannot be told.
    async fn check(&self) -> Result<(), ExecError>;
}

/// A fence that always holds: for tools and benchmarks that run no worker.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoFence;

#[async_trait]
impl Fence for NoFence {
    async fn check(&self) -> Result<(), ExecError> {
        Ok(())
    }
}

/// Places and manages one tenant's orders at one venue.
#[async_trait]
pub trait Executor: Send + Sync {
    fn kind(&self) -> ExecutionKind;

    /// The market's rules and fee parameters, as the venue publishes them.
    async fn market_rules(&self, market: &str) -> Result<MarketRules, ExecError>;

    /// Places an order (or, in shadow, records it). Retrying the same
    /// request after [`ExecError::InDoubt`] never doubles the order.
    async fn place(&self, order: &OrderRequest, rules: &MarketRules) -> Result<Placed, ExecError>;

    async fn cancel(&self, venue_order_id: &str) -> Result<(), ExecError>;

    /// The order this executor placed (or tried to) for `order`'s client
    /// id, as the venue has it now, with its fills; `None` when the venue
    /// has no such order. Reads only, sends nothing: the worker asks it for
    /// an order left in doubt after every retry, until the venue answers.
    async fn find_order(&self, _order: &OrderRequest) -> Result<Option<Placed>, ExecError> {
        Ok(None)
    }

    /// Cancels every open order; returns the ids cancelled.
    async fn cancel_all(&self) -> Result<Vec<String>, ExecError>;

    async fn open_orders(&self) -> Result<Vec<OpenOrder>, ExecError>;

    /// Our trades at the venue since `since_ms` (Unix milliseconds).
    async fn fills(&self, since_ms: i64) -> Result<Vec<VenueFill>, ExecError>;

    async fn positions(&self) -> Result<Vec<VenuePosition>, ExecError>;

    async fn balances(&self) -> Result<Vec<VenueBalance>, ExecError>;

    /// Keeps the tenant's orders alive at a venue that cancels them when
    /// its client goes quiet (Polymarket's `POST /v1/heartbeats`): `previous`
    /// is the id the last heartbeat returned; the answer is the next one.
    /// `None` when the executor sends no heartbeats (paper, shadow).
    async fn heartbeat(&self, _previous: Option<String>) -> Result<Option<String>, ExecError> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use rust_decimal_macros::dec;

    use super::*;

    fn order(price: Decimal, size: Decimal) -> OrderRequest {
        OrderRequest {
            client_id: ClientOrderId::derive(&[1; 16], 1, 1),
            market: "0xabc".to_owned(),
            instrument: "1".to_owned(),
            side: OrderSide::Buy,
            price,
            size,
            time_in_force: TimeInForce::ImmediateOrCancel,
        }
    }

    fn rules() -> MarketRules {
        MarketRules {
            tick_size: dec!(0.01),
            min_size: dec!(5),
            neg_risk: false,
            fees: FeeParams {
                rate: dec!(0.07),
                exponent: 1,
                taker_only: true,
            },
        }
    }

    #[test]
    fn the_same_tenant_epoch_and_decision_give_the_same_id_and_salt() {
        let a = ClientOrderId::derive(&[7; 16], 3, 42);
        assert_eq!(a, ClientOrderId::derive(&[7; 16], 3, 42));
        assert_eq!(a.salt(), ClientOrderId::derive(&[7; 16], 3, 42).salt());
        assert_ne!(a, ClientOrderId::derive(&[7; 16], 4, 42));
        assert_ne!(a, ClientOrderId::derive(&[7; 16], 3, 43));
        assert_ne!(a, ClientOrderId::derive(&[8; 16], 3, 42));
        assert!(a.salt() < 1 << 53);
        assert_eq!(a.to_string().len(), 32);
    }

    #[test]
    fn the_rules_refuse_off_tick_out_of_range_and_undersized_orders() {
        assert_eq!(rules().check(&order(dec!(0.52), dec!(5))), Ok(()));
        assert_eq!(
            rules().check(&order(dec!(0.525), dec!(5))),
            Err(RuleViolation::OffTick {
                price: dec!(0.525),
                tick: dec!(0.01)
            })
        );
        assert_eq!(
            rules().check(&order(dec!(0.995), dec!(5))),
            Err(RuleViolation::PriceOutOfRange {
                price: dec!(0.995),
                tick: dec!(0.01)
            })
        );
        assert_eq!(
            rules().check(&order(dec!(0.5), dec!(4.99))),
            Err(RuleViolation::BelowMinimum {
                size: dec!(4.99),
                min: dec!(5)
            })
        );
    }
}
