//! A circuit breaker around each strategy: it opens after N consecutive
//! failures, lets one trial through after a cooldown (half-open), and closes
//! on the next success. While open, the strategy takes no decisions.

use serde::Serialize;

use crate::clock::Timestamp;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum BreakerState {
    Closed,
    Open { until: Timestamp },
    HalfOpen,
}

#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    threshold: u32,
    cooldown_secs: u64,
    consecutive_failures: u32,
    state: BreakerState,
    last_failure: Option<String>,
}

impl CircuitBreaker {
    pub fn new(threshold: u32, cooldown_secs: u64) -> Self {
        Self {
            threshold: threshold.max(1),
            cooldown_secs,
            consecutive_failures: 0,
            state: BreakerState::Closed,
            last_failure: None,
        }
    }

    /// The state at `now` (an open breaker whose cooldown is over is half-open).
    pub fn state(&self, now: Timestamp) -> BreakerState {
        match self.state {
            BreakerState::Open { until } if now >= until => BreakerState::HalfOpen,
            s => s,
        }
    }

    /// Whether the strategy may act at `now`; moves open to half-open after the cooldown.
    #[inline]
    pub fn allows(&mut self, now: Timestamp) -> bool {
        match self.state {
            BreakerState::Closed | BreakerState::HalfOpen => true,
            BreakerState::Open { until } if now >= until => {
                self.state = BreakerState::HalfOpen;
                true
            }
            BreakerState::Open { .. } => false,
        }
    }

    pub fn record_success(&mut self) {
        self.consecutive_failures = 0;
        self.state = BreakerState::Closed;
    }

    pub fn record_failure(&mut self, now: Timestamp, reason: impl Into<String>) {
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        self.last_failure = Some(reason.into());
        let trial_failed = self.state(now) == BreakerState::HalfOpen;
        if trial_failed || self.consecutive_failures >= self.threshold {
            self.state = BreakerState::Open {
                until: now.plus_secs(self.cooldown_secs),
            };
        }
    }

    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    pub fn last_failure(&self) -> Option<&str> {
        self.last_failure.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_breaker_opens_on_the_nth_consecutive_failure() {
        let mut b = CircuitBreaker::new(3, 60);
        let t = Timestamp::from_secs(1_000);
        b.record_failure(t, "one");
        b.record_failure(t, "two");
        assert_eq!(b.state(t), BreakerState::Closed);
        assert!(b.allows(t));
        b.record_failure(t, "three");
        assert_eq!(
            b.state(t),
            BreakerState::Open {
                until: Timestamp::from_secs(1_060)
            }
        );
        assert!(!b.allows(t.plus_secs(59)));
        assert_eq!(b.last_failure(), Some("three"));
    }

    #[test]
    fn a_success_between_failures_resets_the_count() {
        let mut b = CircuitBreaker::new(2, 60);
        let t = Timestamp::from_secs(0);
        b.record_failure(t, "x");
        b.record_success();
        b.record_failure(t, "y");
        assert_eq!(b.state(t), BreakerState::Closed);
        assert_eq!(b.consecutive_failures(), 1);
    }

    #[test]
    fn after_the_cooldown_one_trial_is_let_through_and_a_success_closes_it() {
        let mut b = CircuitBreaker::new(1, 30);
        let t = Timestamp::from_secs(100);
        b.record_failure(t, "boom");
        assert!(!b.allows(t.plus_secs(29)));
        assert!(b.allows(t.plus_secs(30)));
        assert_eq!(b.state(t.plus_secs(30)), BreakerState::HalfOpen);
        b.record_success();
        assert_eq!(b.state(t.plus_secs(31)), BreakerState::Closed);
    }

    #[test]
    fn a_failed_trial_reopens_the_breaker_for_another_cooldown() {
        let mut b = CircuitBreaker::new(5, 30);
        let t = Timestamp::from_secs(100);
        for _ in 0..5 {
            b.record_failure(t, "boom");
        }
        let later = t.plus_secs(30);
        assert!(b.allows(later));
        b.record_failure(later, "trial failed");
        assert_eq!(
            b.state(later),
            BreakerState::Open {
                until: later.plus_secs(30)
            }
        );
    }
}
