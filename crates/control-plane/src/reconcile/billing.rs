//! What a tenant's plan and payment change in a pass, before planning: the
//! worker's size (part of the spec hash, so a plan change replaces the
//! worker at its new size) and a payment hold (a lapsed payment past its
//! grace period: the worker is not to run, and the reason goes into the
//! tenant's status). Level-triggered like the rest: a paid invoice clears
//! the hold and the next pass starts the worker again. The tenant's own
//! pause/resume does not touch it — only payment does.
//!
//! The decision itself is `billing::payment_hold`; the planner (`plan.rs`)
//! is unchanged: it only sees `run = false` and another spec hash.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use polybot_core::TenantId;
use polybot_store::repo::billing::Standing;

use super::plan::Desired;

/// A tenant's billing, as a pass applies it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Terms {
    /// CPU units and MiB from the plan; `None`: the launcher's default.
    pub size: Option<(u32, u32)>,
    /// Why the worker must not run, if payment lapsed.
    pub hold: Option<String>,
}

/// The terms of every tenant with a plan.
pub(super) fn terms(
    standings: Vec<Standing>,
    now: DateTime<Utc>,
    grace: Duration,
) -> HashMap<TenantId, Terms> {
    standings
        .into_iter()
        .map(|s| {
            let terms = Terms {
                size: crate::billing::worker_size(s.worker_cpu, s.worker_memory),
                hold: crate::billing::payment_hold(&s, now, grace),
            };
            (TenantId::from_uuid(s.tenant_id), terms)
        })
        .collect()
}

/// `desired` under `terms`: not run while held; the size in the spec hash.
/// A tenant without a plan (or a plan without a size) keeps its hash, so
/// billing's arrival replaces no worker.
pub(super) fn apply(desired: &mut Desired, terms: &Terms) {
    if terms.hold.is_some() {
        desired.run = false;
    }
    if let Some((cpu, memory)) = terms.size {
        desired.spec_hash = super::salted(
            std::mem::take(&mut desired.spec_hash),
            &format!("size:{cpu}x{memory}"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desired() -> Desired {
        Desired {
            tenant: TenantId::from_uuid(uuid::Uuid::from_u128(1)),
            run: true,
            spec_hash: "abc".into(),
            restarts: 0,
            backoff_until: None,
        }
    }

    #[test]
    fn a_hold_stops_the_worker_and_a_size_changes_the_spec() {
        let mut held = desired();
        apply(
            &mut held,
            &Terms {
                size: None,
                hold: Some("paused for payment".into()),
            },
        );
        assert!(!held.run);
        assert_eq!(held.spec_hash, "abc");

        let mut small = desired();
        apply(
            &mut small,
            &Terms {
                size: Some((256, 512)),
                hold: None,
            },
        );
        let mut large = desired();
        apply(
            &mut large,
            &Terms {
                size: Some((1024, 2048)),
                hold: None,
            },
        );
        assert!(small.run);
        assert_ne!(small.spec_hash, "abc");
        assert_ne!(small.spec_hash, large.spec_hash);
    }

    #[test]
    fn no_plan_changes_nothing() {
        let mut d = desired();
        apply(&mut d, &Terms::default());
        assert_eq!(d, desired());
    }
}
