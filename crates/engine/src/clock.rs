//! Time as the engine sees it: an injected [`Clock`], never the system clock.
//!
//! A replay uses [`EventClock`] (time is the latest event's timestamp), tests use
//! [`ManualClock`], and the worker's live loop implements [`Clock`] over the
//! system time. The engine itself never reads the wall clock.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch (UTC).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub const fn from_millis(ms: i64) -> Self {
        Self(ms)
    }

    pub const fn from_secs(secs: i64) -> Self {
        Self(secs.saturating_mul(1000))
    }

    pub const fn millis(self) -> i64 {
        self.0
    }

    pub const fn plus_secs(self, secs: u64) -> Self {
        Self(self.0.saturating_add((secs as i64).saturating_mul(1000)))
    }

    /// Milliseconds from `earlier` to `self` (negative if `earlier` is later).
    pub const fn millis_since(self, earlier: Timestamp) -> i64 {
        self.0.saturating_sub(earlier.0)
    }

    /// The UTC day number, for daily limits.
    pub const fn utc_day(self) -> i64 {
        self.0.div_euclid(86_400_000)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}

/// The engine's source of "now".
pub trait Clock {
    fn now(&self) -> Timestamp;

    /// Called with each event's timestamp before the event is processed; a
    /// replay clock moves to it, a live clock ignores it.
    fn observe(&mut self, _event_ts: Timestamp) {}
}

/// Replay time: the latest event timestamp seen (never moves backwards).
#[derive(Debug, Clone, Copy, Default)]
pub struct EventClock {
    now: Timestamp,
}

impl EventClock {
    pub const fn starting_at(now: Timestamp) -> Self {
        Self { now }
    }
}

impl Clock for EventClock {
    fn now(&self) -> Timestamp {
        self.now
    }

    fn observe(&mut self, event_ts: Timestamp) {
        if event_ts > self.now {
            self.now = event_ts;
        }
    }
}

/// Time that only moves when a test says so.
#[derive(Debug, Clone, Copy, Default)]
pub struct ManualClock {
    now: Timestamp,
}

impl ManualClock {
    pub const fn at(now: Timestamp) -> Self {
        Self { now }
    }

    pub fn set(&mut self, now: Timestamp) {
        self.now = now;
    }

    pub fn advance_secs(&mut self, secs: u64) {
        self.now = self.now.plus_secs(secs);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        self.now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_clock_follows_events_but_never_goes_back() {
        let mut clock = EventClock::default();
        clock.observe(Timestamp(5_000));
        clock.observe(Timestamp(4_000));
        assert_eq!(clock.now(), Timestamp(5_000));
    }

    #[test]
    fn a_manual_clock_ignores_events() {
        let mut clock = ManualClock::at(Timestamp::from_secs(10));
        clock.observe(Timestamp::from_secs(99));
        clock.advance_secs(5);
        assert_eq!(clock.now(), Timestamp::from_secs(15));
    }

    #[test]
    fn utc_days_split_at_midnight() {
        assert_eq!(Timestamp(86_399_999).utc_day(), 0);
        assert_eq!(Timestamp(86_400_000).utc_day(), 1);
    }
}
