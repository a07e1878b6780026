//! Per-strategy health, as the worker reports it in heartbeats.

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

/// A rate limit reported by the worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimit {
    /// When the source may be asked again; none if unknown.
    pub until: Option<Timestamp>,
    pub reason: String,
}
