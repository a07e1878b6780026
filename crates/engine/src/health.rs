//! Per-strategy health, as the worker reports it in heartbeats, and the
//! feed health the worker tells the engine about ([`FeedHealth`] events).

use serde::Serialize;

use polybot_core::strategy::StrategyKind;

use crate::breaker::BreakerState;
use crate::clock::Timestamp;

/// A strategy's status is the heartbeat's: one type, defined with the worker
/// contract in core.
pub use polybot_core::worker::StrategyStatus as HealthStatus;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StrategyHealth {
    pub strategy: StrategyKind,
    pub status: HealthStatus,
    /// Why the status is not `ok`.
    pub reason: Option<String>,
    pub breaker: BreakerState,
    pub consecutive_failures: u32,
}

/// A data source rate limiting the worker (NewsAPI's 429).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimit {
    /// When the source may be asked again; none if unknown.
    pub until: Option<Timestamp>,
    pub reason: String,
}

/// What the worker knows about the data one strategy depends on: carried by
/// [`crate::EventKind::FeedHealth`], so that a recording of a live stream
/// reproduces a degraded or rate-limited strategy.
///
/// Level-triggered: each event replaces the strategy's previous feed health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedHealth {
    pub strategy: StrategyKind,
    /// Why the strategy's data is degraded (a venue down, geo-blocked); none
    /// while every feed it needs delivers.
    pub degraded: Option<String>,
    /// A source is rate limiting the worker; none once it answers again.
    pub rate_limited: Option<RateLimit>,
}
