//! A rollout's pace, as pure functions of its rate, its last begun tenant
//! and the time: when the next tenant may begin.
//!
//! One tenant begins per step, at most one every `60 / per_minute` seconds.
//! The rate is measured from the last tenant actually begun (its
//! `began_at`, committed with its release), not from a schedule: a paused,
//! resumed or restarted rollout never catches up by beginning several at
//! once, and a control plane that died between beginning a tenant and
//! recording the next time still waits a full interval.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// The least time between two tenants at `per_minute` (clamped to 1..=60).
pub fn interval(per_minute: i32) -> Duration {
    let per_minute = u64::try_from(per_minute.clamp(1, 60)).unwrap_or(1);
    Duration::from_millis(60_000 / per_minute)
}

/// When the next tenant may begin: a full interval after the last one
/// began, and not before `not_before` (the rollout's recorded `next_at`).
/// `None`: at once.
pub fn next_due(
    per_minute: i32,
    last_began: Option<DateTime<Utc>>,
    not_before: Option<DateTime<Utc>>,
) -> Option<DateTime<Utc>> {
    let step = chrono::Duration::from_std(interval(per_minute)).unwrap_or_default();
    let after_last = last_began.map(|at| at + step);
    match (after_last, not_before) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// Whether a tenant may begin at `now`.
pub fn may_begin(due: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    due.is_none_or(|due| due <= now)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn at(millis: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(1_700_000_000_000 + millis).unwrap()
    }

    #[test]
    fn the_interval_follows_the_rate_and_stays_within_one_a_second() {
        assert_eq!(interval(60), Duration::from_secs(1));
        assert_eq!(interval(1), Duration::from_secs(60));
        assert_eq!(interval(7), Duration::from_millis(8571));
        // Out-of-range rates (the API refuses them) never go past 1/s.
        assert_eq!(interval(600), Duration::from_secs(1));
        assert_eq!(interval(0), Duration::from_secs(60));
    }

    #[test]
    fn the_first_tenant_begins_at_once_and_the_next_a_full_interval_after() {
        assert_eq!(next_due(30, None, None), None);
        assert!(may_begin(None, at(0)));
        let due = next_due(30, Some(at(0)), None);
        assert_eq!(due, Some(at(2000)));
        assert!(!may_begin(due, at(1999)));
        assert!(may_begin(due, at(2000)));
    }

    #[test]
    fn a_long_pause_does_not_let_a_burst_through() {
        // Began at 0, paused for an hour, resumed: one tenant now, and the
        // next a full interval after it, not a catch-up of thirty.
        let due = next_due(30, Some(at(0)), None);
        assert!(may_begin(due, at(3_600_000)));
        let due = next_due(30, Some(at(3_600_000)), None);
        assert_eq!(due, Some(at(3_602_000)));
    }

    #[test]
    fn a_recorded_next_time_later_than_the_rate_holds() {
        assert_eq!(next_due(60, Some(at(0)), Some(at(5000))), Some(at(5000)));
        assert_eq!(next_due(60, None, Some(at(5000))), Some(at(5000)));
        assert_eq!(
            next_due(60, Some(at(9000)), Some(at(5000))),
            Some(at(10_000))
        );
    }

    proptest! {
        /// Stepping at arbitrary times, beginning whenever allowed, never
        /// begins two tenants closer than the interval.
        #[test]
        fn tenants_never_begin_faster_than_the_rate(
            per_minute in 1i32..=60,
            steps in proptest::collection::vec(0i64..5_000, 1..200),
        ) {
            let mut now = 0;
            let mut began: Vec<i64> = Vec::new();
            for step in steps {
                now += step;
                let due = next_due(per_minute, began.last().map(|b| at(*b)), None);
                if may_begin(due, at(now)) {
                    began.push(now);
                }
            }
            let least = i64::try_from(interval(per_minute).as_millis()).unwrap();
            for pair in began.windows(2) {
                prop_assert!(pair[1] - pair[0] >= least, "{pair:?} at {per_minute}/min");
            }
        }
    }
}
