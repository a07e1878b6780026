//! Per-strategy health, as the worker reports it in heartbeats.

use serde::Serialize;

use polybot_core::strategy::StrategyKind;

use crate::breaker::BreakerState;
use crate::clock::Timestamp;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    Ok,
    /// Working, but something needs attention (see the reason).
    Degraded,
    /// The circuit breaker is open: the strategy takes no decisions.
    BreakerOpen,
    /// A data source (the news API) is rate limiting the worker.
    RateLimited,
}

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
