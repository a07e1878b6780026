//! The reconciler's decisions, as a pure function of what should run, what
//! runs, and the time: `plan(desired, actual, now) -> Vec<Action>`.
//!
//! Rules, per tenant:
//! - a worker that exited is recorded once; an exit nobody asked for while the
//!   tenant should run is a crash: the restart count grows and the next start
//!   waits `base · 2^(restarts−1)`, capped (`crash_loop` meanwhile);
//! - a tenant that should not run has every live worker stopped;
//! - a tenant that should run keeps exactly one live worker with its current
//!   spec: the newest such worker stays (it holds the lease), any other is
//!   stopped; workers of an older spec are stopped, and the new one starts
//!   only once they are gone (stop, then start);
//! - a worker of a tenant that no longer exists is stopped;
//! - a worker that has run its current spec for `stable_after` resets the
//!   restart count.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use chrono::{DateTime, Utc};
use polybot_core::TenantId;
use polybot_launcher::{Exit, Instance, Phase};

/// What should run for one tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    pub tenant: TenantId,
    pub run: bool,
    pub spec_hash: String,
    pub restarts: u32,
    pub backoff_until: Option<DateTime<Utc>>,
}

/// Crash-loop and failed-launch back-off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
    /// A worker up this long on its current spec is steady again.
    pub stable_after: Duration,
    /// The wait after a first failed launch (RunTask), doubling with each
    /// failure in a row up to `launch_cap`, jittered.
    pub launch_base: Duration,
    pub launch_cap: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(2),
            cap: Duration::from_secs(300),
            stable_after: Duration::from_secs(120),
            launch_base: Duration::from_secs(5),
            launch_cap: Duration::from_secs(600),
        }
    }
}

impl Backoff {
    /// The wait before the start that follows the `restarts`-th crash.
    pub fn delay(&self, restarts: u32) -> Duration {
        let exp = restarts.saturating_sub(1).min(30);
        self.base.saturating_mul(1u32 << exp).min(self.cap)
    }

    /// The wait after the `failures`-th failed launch in a row: the capped
    /// exponential delay, less a random part of up to half of it (`jitter`
    /// is any random number), so that tenants failing together (a quota, an
    /// outage) do not retry together.
    pub fn launch_delay(&self, failures: u32, jitter: u64) -> Duration {
        let exp = failures.saturating_sub(1).min(30);
        let full = self
            .launch_base
            .saturating_mul(1u32 << exp)
            .min(self.launch_cap);
        let full_ms = u64::try_from(full.as_millis()).unwrap_or(u64::MAX);
        let half = full_ms / 2;
        Duration::from_millis(full_ms - jitter % (half + 1))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Start {
        tenant: TenantId,
        spec_hash: String,
    },
    Stop {
        tenant: TenantId,
        instance: Instance,
        reason: String,
    },
    /// A worker ended: record why, and the resulting restart count and back-off.
    RecordExit {
        tenant: TenantId,
        instance_id: String,
        exit: Exit,
        crashed: bool,
        restarts: u32,
        backoff_until: Option<DateTime<Utc>>,
    },
    /// The worker has been steady: forget earlier crashes.
    ResetRestarts {
        tenant: TenantId,
    },
}

impl Action {
    pub fn tenant(&self) -> TenantId {
        match self {
            Action::Start { tenant, .. }
            | Action::Stop { tenant, .. }
            | Action::RecordExit { tenant, .. }
            | Action::ResetRestarts { tenant } => *tenant,
        }
    }
}

/// Decides what to do; see the module docs for the rules.
pub fn plan(
    desired: &[Desired],
    actual: &[Instance],
    now: DateTime<Utc>,
    backoff: &Backoff,
) -> Vec<Action> {
    let mut by_tenant: BTreeMap<TenantId, Vec<&Instance>> = BTreeMap::new();
    for instance in actual {
        by_tenant.entry(instance.tenant).or_default().push(instance);
    }
    let wanted: HashMap<TenantId, &Desired> = desired.iter().map(|d| (d.tenant, d)).collect();
    let mut actions = Vec::new();

    for (tenant, instances) in &by_tenant {
        if wanted.contains_key(tenant) {
            continue;
        }
        for instance in instances.iter().filter(|i| i.phase.is_live()) {
            if instance.phase != Phase::Stopping {
                actions.push(Action::Stop {
                    tenant: *tenant,
                    instance: (*instance).clone(),
                    reason: "the tenant no longer exists".into(),
                });
            }
        }
    }

    for d in desired {
        let instances = by_tenant.get(&d.tenant).map(Vec::as_slice).unwrap_or(&[]);
        let mut restarts = d.restarts;
        let mut backoff_until = d.backoff_until;
        for instance in instances {
            if let Phase::Exited(exit) = &instance.phase {
                let crashed = d.run && !exit.requested;
                if crashed {
                    restarts = restarts.saturating_add(1);
                    let wait =
                        chrono::Duration::from_std(backoff.delay(restarts)).unwrap_or_default();
                    backoff_until = Some(exit.at.max(now) + wait);
                }
                actions.push(Action::RecordExit {
                    tenant: d.tenant,
                    instance_id: instance.id.clone(),
                    exit: exit.clone(),
                    crashed,
                    restarts,
                    backoff_until,
                });
            }
        }
        let live: Vec<&Instance> = instances
            .iter()
            .copied()
            .filter(|i| i.phase.is_live())
            .collect();
        if !d.run {
            for instance in live.iter().filter(|i| i.phase != Phase::Stopping) {
                actions.push(Action::Stop {
                    tenant: d.tenant,
                    instance: (*instance).clone(),
                    reason: "the tenant is not active".into(),
                });
            }
            continue;
        }
        let (mut current, stale): (Vec<&Instance>, Vec<&Instance>) = live
            .iter()
            .copied()
            .partition(|i| i.spec_hash == d.spec_hash);
        for instance in stale.iter().filter(|i| i.phase != Phase::Stopping) {
            actions.push(Action::Stop {
                tenant: d.tenant,
                instance: (*instance).clone(),
                reason: "its spec changed (configuration, keys, mode or image)".into(),
            });
        }
        current.retain(|i| i.phase != Phase::Stopping);
        current.sort_by(|a, b| (a.started_at, &a.id).cmp(&(b.started_at, &b.id)));
        if let Some((newest, older)) = current.split_last() {
            for instance in older {
                actions.push(Action::Stop {
                    tenant: d.tenant,
                    instance: (*instance).clone(),
                    reason: "a second worker for the tenant".into(),
                });
            }
            let steady = chrono::Duration::from_std(backoff.stable_after).unwrap_or_default();
            if restarts > 0 && newest.phase == Phase::Running && now - newest.started_at >= steady {
                actions.push(Action::ResetRestarts { tenant: d.tenant });
            }
        } else {
            let stopping = live.iter().any(|i| i.phase == Phase::Stopping) || !stale.is_empty();
            let waiting = backoff_until.is_some_and(|until| until > now);
            if !stopping && !waiting {
                actions.push(Action::Start {
                    tenant: d.tenant,
                    spec_hash: d.spec_hash.clone(),
                });
            }
        }
    }
    actions
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use uuid::Uuid;

    use super::*;

    fn t(n: u8) -> TenantId {
        TenantId::from_uuid(Uuid::from_u128(u128::from(n) + 1))
    }

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap()
    }

    fn instance(tenant: TenantId, id: &str, spec: &str, phase: Phase, started: i64) -> Instance {
        Instance {
            id: id.into(),
            tenant,
            spec_hash: spec.into(),
            phase,
            started_at: at(started),
        }
    }

    fn crash(at_secs: i64) -> Phase {
        Phase::Exited(Exit {
            code: Some(1),
            reason: "exit code 1".into(),
            requested: false,
            at: at(at_secs),
        })
    }

    fn desired(tenant: TenantId, run: bool, spec: &str) -> Desired {
        Desired {
            tenant,
            run,
            spec_hash: spec.into(),
            restarts: 0,
            backoff_until: None,
        }
    }

    /// Applies actions to a simulated launcher and the desired state, as the
    /// executor and a launcher would.
    fn apply(
        desired: &mut [Desired],
        actual: &mut Vec<Instance>,
        actions: &[Action],
        now: DateTime<Utc>,
    ) {
        actual.retain(|i| i.phase.is_live());
        for (n, action) in actions.iter().enumerate() {
            match action {
                Action::Start { tenant, spec_hash } => actual.push(Instance {
                    id: format!("new-{n}-{}", actual.len()),
                    tenant: *tenant,
                    spec_hash: spec_hash.clone(),
                    phase: Phase::Running,
                    started_at: now,
                }),
                Action::Stop { instance, .. } => {
                    if let Some(i) = actual.iter_mut().find(|i| i.id == instance.id) {
                        i.phase = Phase::Stopping;
                    }
                }
                Action::RecordExit {
                    tenant,
                    restarts,
                    backoff_until,
                    ..
                } => {
                    let d = desired.iter_mut().find(|d| d.tenant == *tenant).unwrap();
                    d.restarts = *restarts;
                    d.backoff_until = *backoff_until;
                }
                Action::ResetRestarts { tenant } => {
                    let d = desired.iter_mut().find(|d| d.tenant == *tenant).unwrap();
                    d.restarts = 0;
                    d.backoff_until = None;
                }
            }
        }
    }

    #[test]
    fn every_active_tenant_gets_one_worker_and_paused_ones_none() {
        let desired = vec![desired(t(1), true, "a"), desired(t(2), false, "a")];
        let actions = plan(&desired, &[], at(0), &Backoff::default());
        assert_eq!(
            actions,
            vec![Action::Start {
                tenant: t(1),
                spec_hash: "a".into()
            }]
        );
    }

    #[test]
    fn a_changed_spec_is_stop_then_start() {
        let d = vec![desired(t(1), true, "new")];
        let old = instance(t(1), "1", "old", Phase::Running, 0);
        let first = plan(&d, std::slice::from_ref(&old), at(10), &Backoff::default());
        assert!(
            matches!(&first[..], [Action::Stop { reason, .. }] if reason.contains("spec changed"))
        );
        // While the old one is stopping, nothing starts.
        let stopping = instance(t(1), "1", "old", Phase::Stopping, 0);
        assert!(plan(&d, &[stopping], at(11), &Backoff::default()).is_empty());
        // Once it is gone, the new spec starts.
        let exited = instance(
            t(1),
            "1",
            "old",
            Phase::Exited(Exit {
                code: Some(0),
                reason: "exit code 0".into(),
                requested: true,
                at: at(12),
            }),
            0,
        );
        let next = plan(&d, &[exited], at(12), &Backoff::default());
        assert!(
            matches!(&next[..], [Action::RecordExit { crashed: false, .. }, Action::Start { spec_hash, .. }] if spec_hash == "new")
        );
    }

    #[test]
    fn the_newest_of_two_workers_stays() {
        let d = vec![desired(t(1), true, "a")];
        let old = instance(t(1), "1", "a", Phase::Running, 0);
        let new = instance(t(1), "2", "a", Phase::Running, 5);
        let actions = plan(&d, &[new, old.clone()], at(10), &Backoff::default());
        assert_eq!(
            actions,
            vec![Action::Stop {
                tenant: t(1),
                instance: old,
                reason: "a second worker for the tenant".into()
            }]
        );
    }

    #[test]
    fn failed_launches_back_off_exponentially_with_jitter_up_to_the_cap() {
        let policy = Backoff {
            launch_base: Duration::from_secs(5),
            launch_cap: Duration::from_secs(60),
            ..Backoff::default()
        };
        // Without jitter: the full delay.
        let full: Vec<u64> = (1..=6)
            .map(|n| policy.launch_delay(n, 0).as_secs())
            .collect();
        assert_eq!(full, vec![5, 10, 20, 40, 60, 60]);
        // The most jitter takes off half.
        assert_eq!(policy.launch_delay(3, 10_000), Duration::from_secs(10));
        for jitter in [1, 7_777, u64::MAX] {
            let d = policy.launch_delay(3, jitter);
            assert!(
                d >= Duration::from_secs(10) && d <= Duration::from_secs(20),
                "{d:?}"
            );
        }
    }

    #[test]
    fn crashes_back_off_exponentially_up_to_the_cap() {
        let policy = Backoff {
            base: Duration::from_secs(2),
            cap: Duration::from_secs(60),
            stable_after: Duration::from_secs(120),
            ..Backoff::default()
        };
        let delays: Vec<u64> = (1..=8).map(|n| policy.delay(n).as_secs()).collect();
        assert_eq!(delays, vec![2, 4, 8, 16, 32, 60, 60, 60]);

        let mut d = vec![desired(t(1), true, "a")];
        let crashed = instance(t(1), "1", "a", crash(100), 90);
        let actions = plan(&d, &[crashed], at(100), &policy);
        assert!(
            matches!(&actions[..], [Action::RecordExit { crashed: true, restarts: 1, backoff_until: Some(until), .. }] if *until == at(102))
        );
        d[0].restarts = 1;
        d[0].backoff_until = Some(at(102));
        assert!(
            plan(&d, &[], at(101), &policy).is_empty(),
            "no start during the back-off"
        );
        assert_eq!(
            plan(&d, &[], at(102), &policy),
            vec![Action::Start {
                tenant: t(1),
                spec_hash: "a".into()
            }]
        );
    }

    #[test]
    fn a_steady_worker_resets_the_restart_count() {
        let mut d = vec![desired(t(1), true, "a")];
        d[0].restarts = 3;
        let up = instance(t(1), "1", "a", Phase::Running, 0);
        assert!(plan(&d, std::slice::from_ref(&up), at(60), &Backoff::default()).is_empty());
        assert_eq!(
            plan(&d, &[up], at(121), &Backoff::default()),
            vec![Action::ResetRestarts { tenant: t(1) }]
        );
    }

    #[test]
    fn a_worker_of_a_deleted_tenant_is_stopped() {
        let orphan = instance(t(9), "9", "a", Phase::Running, 0);
        let actions = plan(&[], &[orphan], at(1), &Backoff::default());
        assert!(matches!(&actions[..], [Action::Stop { tenant, .. }] if *tenant == t(9)));
    }

    fn arb_phase() -> impl Strategy<Value = Phase> {
        prop_oneof![
            Just(Phase::Starting),
            Just(Phase::Running),
            Just(Phase::Stopping),
            any::<bool>().prop_map(|requested| Phase::Exited(Exit {
                code: Some(1),
                reason: "x".into(),
                requested,
                at: at(50)
            })),
        ]
    }

    fn arb_world() -> impl Strategy<Value = (Vec<Desired>, Vec<Instance>)> {
        let desired = prop::collection::vec(
            (any::<bool>(), 0u8..3, 0u32..12, prop::option::of(0i64..200)),
            0..6,
        )
        .prop_map(|ds| {
            ds.into_iter()
                .enumerate()
                .map(|(n, (run, spec, restarts, until))| Desired {
                    tenant: t(u8::try_from(n).unwrap()),
                    run,
                    spec_hash: format!("s{spec}"),
                    restarts,
                    backoff_until: until.map(at),
                })
                .collect::<Vec<_>>()
        });
        let actual = prop::collection::vec((0u8..8, 0u8..3, arb_phase(), 0i64..100), 0..12)
            .prop_map(|is| {
                is.into_iter()
                    .enumerate()
                    .map(|(n, (tenant, spec, phase, started))| {
                        instance(
                            t(tenant),
                            &format!("i{n}"),
                            &format!("s{spec}"),
                            phase,
                            started,
                        )
                    })
                    .collect::<Vec<_>>()
            });
        (desired, actual)
    }

    proptest! {
        #[test]
        fn plans_never_leave_two_workers_and_converge((mut desired, mut actual) in arb_world(), now in 100i64..400) {
            let now = at(now);
            let policy = Backoff::default();
            let actions = plan(&desired, &actual, now, &policy);

            // Never two starts for one tenant, and never a start beside a live worker.
            let mut started = std::collections::HashSet::new();
            for action in &actions {
                if let Action::Start { tenant, .. } = action {
                    prop_assert!(started.insert(*tenant), "two starts for {tenant}");
                    prop_assert!(!actual.iter().any(|i| i.tenant == *tenant && i.phase.is_live()), "start beside a live worker");
                    let d = desired.iter().find(|d| d.tenant == *tenant).unwrap();
                    prop_assert!(d.run, "a start for a tenant that should not run");
                }
            }
            // Tenants that should not run keep no worker that is not being stopped.
            apply(&mut desired, &mut actual, &actions, now);
            for d in desired.iter().filter(|d| !d.run) {
                prop_assert!(actual.iter().filter(|i| i.tenant == d.tenant).all(|i| i.phase == Phase::Stopping));
            }
            // At most one non-stopping worker per tenant after the plan.
            let mut running: HashMap<TenantId, usize> = HashMap::new();
            for i in actual.iter().filter(|i| i.phase != Phase::Stopping) {
                *running.entry(i.tenant).or_default() += 1;
            }
            prop_assert!(running.values().all(|n| *n <= 1));
            // Back-off is capped.
            for d in &desired {
                if let Some(until) = d.backoff_until {
                    prop_assert!(until <= now.max(at(200)) + chrono::Duration::from_std(policy.cap).unwrap());
                }
            }
            // Idempotent: planning again on the result changes nothing.
            let again = plan(&desired, &actual, now, &policy);
            prop_assert!(again.is_empty(), "second plan: {again:?}");
        }

        #[test]
        fn every_active_tenant_without_back_off_gets_a_worker(n in 1u8..20) {
            let desired: Vec<Desired> = (0..n).map(|i| desired(t(i), true, "a")).collect();
            let actions = plan(&desired, &[], at(0), &Backoff::default());
            prop_assert_eq!(actions.len(), usize::from(n));
        }
    }
}
