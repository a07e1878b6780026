//! Which alerts fire and resolve: a pure function of one tenant's observed
//! facts, its alerts' previous state and the time.
//!
//! [`evaluate`] turns a [`TenantInput`] into [`Transition`]s; the executor
//! (`alerts::executor`) loads the input, persists the transitions and hands
//! the notifying ones to delivery. Nothing here performs I/O or reads a
//! clock, so a round can be replayed and the rules are property-tested.
//!
//! An alert fires once when its condition appears. When the condition
//! clears, the alert starts a resolution hold; it resolves once the
//! condition has stayed clear for the hold, and the hold is called off if
//! the condition returns: a flapping condition is one alert, not a storm.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Duration, Utc};
use polybot_core::worker::WorkerHealth;
use polybot_core::{TenantId, TenantState};
use rust_decimal::Decimal;

use crate::settings::AlertSettings;

/// The alerts there are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AlertKind {
    /// An active tenant's worker has been silent too long.
    HeartbeatStale,
    /// The worker keeps crashing and the reconciler backs off.
    CrashLoop,
    /// A strategy's circuit breaker is open (one alert per strategy).
    BreakerOpen,
    /// The daily loss limit is reached.
    DailyLoss,
    /// A worker exited because a newer twin took its lease.
    Fenced,
}

impl AlertKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            AlertKind::HeartbeatStale => "heartbeat_stale",
            AlertKind::CrashLoop => "crash_loop",
            AlertKind::BreakerOpen => "breaker_open",
            AlertKind::DailyLoss => "daily_loss",
            AlertKind::Fenced => "fenced",
        }
    }

    fn key(self, subject: &str) -> AlertKey {
        AlertKey {
            alert: self.as_str().to_owned(),
            subject: subject.to_owned(),
        }
    }
}

impl fmt::Display for AlertKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One alert of a tenant: its kind and subject (the strategy of a breaker
/// alert, empty otherwise). Text, not [`AlertKind`], because stored states
/// may name an alert this build no longer raises; such a one resolves.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AlertKey {
    pub alert: String,
    pub subject: String,
}

/// A firing alert as it was left by the previous round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertState {
    pub key: AlertKey,
    pub summary: String,
    pub fired_at: DateTime<Utc>,
    /// Since when its condition has been clear; `None` while it holds.
    pub clear_since: Option<DateTime<Utc>>,
}

/// The thresholds the rules apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// A worker of an active tenant silent longer than this alerts.
    pub heartbeat_stale: Duration,
    /// Restarts in a row before a crash loop alerts.
    pub crash_loop_restarts: i32,
    /// How long a condition stays clear before its alert resolves.
    pub resolve_hold: Duration,
}

impl From<&AlertSettings> for Limits {
    fn from(s: &AlertSettings) -> Self {
        Self {
            heartbeat_stale: Duration::from_std(s.heartbeat_stale).unwrap_or(Duration::MAX),
            crash_loop_restarts: s.crash_loop_restarts,
            resolve_hold: Duration::from_std(s.resolve_hold).unwrap_or(Duration::MAX),
        }
    }
}

/// Everything the rules know about one tenant.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantInput {
    pub tenant: TenantId,
    pub state: TenantState,
    /// Since when the tenant is in `state`: a resumed tenant's worker is not
    /// silent before it had the time to start.
    pub state_since: DateTime<Utc>,
    /// The reconciler's view of the worker (`running`, `crash_loop`, …).
    pub worker: String,
    /// Restarts in a row.
    pub restarts: i32,
    pub last_exit: Option<String>,
    /// When the newest heartbeat was written, and what it said (`None` when
    /// it is not a heartbeat this build can read).
    pub heartbeat_at: Option<DateTime<Utc>>,
    pub health: Option<WorkerHealth>,
    /// Realized PnL of today's trades (UTC).
    pub pnl_today: Decimal,
    pub max_daily_loss: Option<Decimal>,
    /// The detail of a recent fencing of this tenant's worker.
    pub fenced: Option<String>,
    /// The tenant's firing alerts.
    pub alerts: Vec<AlertState>,
}

/// What a round does to one alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// The condition appeared: record and notify.
    Fire { key: AlertKey, summary: String },
    /// The condition came back during the hold: the hold is called off,
    /// silently.
    Hold { key: AlertKey },
    /// The condition cleared: the hold starts, silently.
    Clear { key: AlertKey },
    /// The condition has been clear for the hold: record and notify.
    Resolve { key: AlertKey, summary: String },
}

impl Transition {
    pub fn key(&self) -> &AlertKey {
        match self {
            Transition::Fire { key, .. }
            | Transition::Hold { key }
            | Transition::Clear { key }
            | Transition::Resolve { key, .. } => key,
        }
    }
}

/// The conditions that hold for `input` at `now`: alert → its summary.
/// Only an active tenant has any.
pub fn conditions(
    input: &TenantInput,
    limits: &Limits,
    now: DateTime<Utc>,
) -> BTreeMap<AlertKey, String> {
    let mut out = BTreeMap::new();
    if input.state != TenantState::Active {
        return out;
    }
    let silent_since = input
        .heartbeat_at
        .map_or(input.state_since, |at| at.max(input.state_since));
    if now - silent_since > limits.heartbeat_stale {
        let last = match input.heartbeat_at {
            Some(at) => format!("no heartbeat for {} s", (now - at).num_seconds()),
            None => "no heartbeat since the tenant became active".to_owned(),
        };
        let exit = input
            .last_exit
            .as_deref()
            .map(|e| format!("; last exit: {e}"))
            .unwrap_or_default();
        out.insert(
            AlertKind::HeartbeatStale.key(""),
            format!("{last} (worker {}{exit})", input.worker),
        );
    }
    if input.worker == "crash_loop" && input.restarts >= limits.crash_loop_restarts {
        out.insert(
            AlertKind::CrashLoop.key(""),
            format!(
                "the worker crashed {} times in a row; last exit: {}",
                input.restarts,
                input.last_exit.as_deref().unwrap_or("unknown")
            ),
        );
    }
    if let Some(health) = &input.health {
        for (strategy, reason) in health.open_breakers() {
            let why = reason.map(|r| format!(": {r}")).unwrap_or_default();
            out.insert(
                AlertKind::BreakerOpen.key(strategy),
                format!("strategy {strategy}'s circuit breaker is open{why}"),
            );
        }
    }
    let reported = input
        .health
        .as_ref()
        .is_some_and(WorkerHealth::daily_loss_limit_hit);
    let computed = input
        .max_daily_loss
        .is_some_and(|max| max > Decimal::ZERO && input.pnl_today <= -max);
    if reported || computed {
        out.insert(
            AlertKind::DailyLoss.key(""),
            format!(
                "today's realized PnL is {} (limit −{}); new orders are blocked until midnight UTC",
                input.pnl_today.normalize(),
                input.max_daily_loss.unwrap_or_default().normalize()
            ),
        );
    }
    if let Some(detail) = &input.fenced {
        out.insert(
            AlertKind::Fenced.key(""),
            format!("a worker was fenced off by a newer twin and exited ({detail})"),
        );
    }
    out
}

/// One round for one tenant: fires new conditions (in key order), then
/// holds, clears and resolves its firing alerts (in the order given).
pub fn evaluate(input: &TenantInput, limits: &Limits, now: DateTime<Utc>) -> Vec<Transition> {
    let conditions = conditions(input, limits, now);
    let previous = |key: &AlertKey| input.alerts.iter().find(|a| &a.key == key);
    let mut out = Vec::new();
    for (key, summary) in &conditions {
        match previous(key) {
            None => out.push(Transition::Fire {
                key: key.clone(),
                summary: summary.clone(),
            }),
            Some(a) if a.clear_since.is_some() => out.push(Transition::Hold { key: key.clone() }),
            Some(_) => {}
        }
    }
    let mut clear = Vec::new();
    let mut resolve = Vec::new();
    for a in input
        .alerts
        .iter()
        .filter(|a| !conditions.contains_key(&a.key))
    {
        let since = a.clear_since.unwrap_or(now);
        if now - since >= limits.resolve_hold {
            resolve.push(Transition::Resolve {
                key: a.key.clone(),
                summary: resolved_summary(a, now),
            });
        } else if a.clear_since.is_none() {
            clear.push(Transition::Clear { key: a.key.clone() });
        }
    }
    out.extend(clear);
    out.extend(resolve);
    out
}

/// The message of a resolution: how long the alert fired and what it said.
fn resolved_summary(alert: &AlertState, now: DateTime<Utc>) -> String {
    let micros = (now - alert.fired_at)
        .num_microseconds()
        .unwrap_or(i64::MAX);
    // Rounded half away from zero, to whole seconds.
    let secs = (micros.saturating_add(micros.signum() * 500_000)) / 1_000_000;
    format!("resolved after {secs} s; was: {}", alert.summary)
}

/// Every tenant's round; each tenant's transitions depend on its own input
/// only.
pub fn evaluate_fleet(
    inputs: &[TenantInput],
    limits: &Limits,
    now: DateTime<Utc>,
) -> Vec<(TenantId, Vec<Transition>)> {
    inputs
        .iter()
        .map(|input| (input.tenant, evaluate(input, limits, now)))
        .filter(|(_, transitions)| !transitions.is_empty())
        .collect()
}

/// Applies `transitions` to a tenant's firing alerts as the executor
/// records them: what the next round reads as the previous state.
pub fn apply(
    alerts: &[AlertState],
    transitions: &[Transition],
    now: DateTime<Utc>,
) -> Vec<AlertState> {
    let mut next: BTreeMap<AlertKey, AlertState> =
        alerts.iter().map(|a| (a.key.clone(), a.clone())).collect();
    for t in transitions {
        match t {
            Transition::Fire { key, summary } => {
                next.insert(
                    key.clone(),
                    AlertState {
                        key: key.clone(),
                        summary: summary.clone(),
                        fired_at: now,
                        clear_since: None,
                    },
                );
            }
            Transition::Hold { key } => {
                if let Some(a) = next.get_mut(key) {
                    a.clear_since = None;
                }
            }
            Transition::Clear { key } => {
                if let Some(a) = next.get_mut(key) {
                    a.clear_since = Some(now);
                }
            }
            Transition::Resolve { key, .. } => {
                next.remove(key);
            }
        }
    }
    next.into_values().collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use polybot_core::worker::{BreakerPosition, PnlSummary, StrategyHealth, StrategyStatus};
    use proptest::prelude::*;
    use uuid::Uuid;

    use super::*;

    fn t(n: u8) -> TenantId {
        TenantId::from_uuid(Uuid::from_u128(u128::from(n) + 1))
    }

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap()
    }

    fn limits(hold: i64) -> Limits {
        Limits {
            heartbeat_stale: Duration::seconds(60),
            crash_loop_restarts: 3,
            resolve_hold: Duration::seconds(hold),
        }
    }

    /// An active tenant whose worker just sent a healthy heartbeat.
    fn healthy(tenant: TenantId, now: DateTime<Utc>) -> TenantInput {
        TenantInput {
            tenant,
            state: TenantState::Active,
            state_since: at(0),
            worker: "running".into(),
            restarts: 0,
            last_exit: None,
            heartbeat_at: Some(now),
            health: Some(WorkerHealth::default()),
            pnl_today: Decimal::ZERO,
            max_daily_loss: Some(Decimal::new(10, 0)),
            fenced: None,
            alerts: Vec::new(),
        }
    }

    fn open_breaker(reason: Option<&str>) -> StrategyHealth {
        StrategyHealth {
            status: StrategyStatus::BreakerOpen,
            breaker: BreakerPosition::Open,
            reason: reason.map(str::to_owned),
            ..StrategyHealth::default()
        }
    }

    fn fired(transitions: &[Transition]) -> Vec<(&str, &str)> {
        transitions
            .iter()
            .filter_map(|t| match t {
                Transition::Fire { key, summary } => Some((key.alert.as_str(), summary.as_str())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_healthy_tenant_raises_nothing() {
        let now = at(1000);
        assert_eq!(evaluate(&healthy(t(1), now), &limits(30), now), vec![]);
    }

    #[test]
    fn a_breaker_alert_names_the_breakers_reason() {
        let now = at(1000);
        let mut input = healthy(t(1), now);
        input.health = Some(WorkerHealth {
            strategies: BTreeMap::from([
                (
                    "news_arb".to_owned(),
                    open_breaker(Some("NewsAPI 500 on /v2/everything")),
                ),
                ("complement_arb".to_owned(), StrategyHealth::default()),
            ]),
            ..WorkerHealth::default()
        });
        let transitions = evaluate(&input, &limits(30), now);
        assert_eq!(
            transitions,
            vec![Transition::Fire {
                key: AlertKind::BreakerOpen.key("news_arb"),
                summary:
                    "strategy news_arb's circuit breaker is open: NewsAPI 500 on /v2/everything"
                        .into(),
            }]
        );
    }

    #[test]
    fn the_daily_loss_alert_fires_when_the_worker_reports_the_limit_hit() {
        let now = at(1000);
        let mut input = healthy(t(1), now);
        input.health = Some(WorkerHealth {
            pnl: Some(PnlSummary {
                daily_loss_limit_hit: true,
                ..PnlSummary::default()
            }),
            ..WorkerHealth::default()
        });
        assert_eq!(
            fired(&evaluate(&input, &limits(30), now)),
            vec![(
                "daily_loss",
                "today's realized PnL is 0 (limit −10); new orders are blocked until midnight UTC"
            )]
        );
    }

    #[test]
    fn the_daily_loss_alert_fires_on_todays_trades_at_the_limit() {
        let now = at(1000);
        let mut input = healthy(t(1), now);
        input.pnl_today = Decimal::new(-1250, 2);
        assert_eq!(
            fired(&evaluate(&input, &limits(30), now)),
            vec![(
                "daily_loss",
                "today's realized PnL is -12.5 (limit −10); new orders are blocked until midnight UTC"
            )]
        );
        input.pnl_today = Decimal::new(-999, 2);
        assert_eq!(evaluate(&input, &limits(30), now), vec![]);
    }

    #[test]
    fn a_silent_worker_alerts_with_its_last_exit() {
        let now = at(1000);
        let mut input = healthy(t(1), now);
        input.heartbeat_at = Some(at(900));
        input.worker = "backoff".into();
        input.last_exit = Some("exit code 1".into());
        assert_eq!(
            fired(&evaluate(&input, &limits(30), now)),
            vec![(
                "heartbeat_stale",
                "no heartbeat for 100 s (worker backoff; last exit: exit code 1)"
            )]
        );
        // Resumed 10 s ago: not silent yet, however old the heartbeat.
        input.state_since = at(990);
        assert_eq!(evaluate(&input, &limits(30), now), vec![]);
    }

    #[test]
    fn a_crash_loop_alerts_after_enough_restarts() {
        let now = at(1000);
        let mut input = healthy(t(1), now);
        input.worker = "crash_loop".into();
        input.restarts = 2;
        assert_eq!(evaluate(&input, &limits(30), now), vec![]);
        input.restarts = 3;
        assert_eq!(
            fired(&evaluate(&input, &limits(30), now)),
            vec![(
                "crash_loop",
                "the worker crashed 3 times in a row; last exit: unknown"
            )]
        );
    }

    #[test]
    fn a_paused_tenant_raises_nothing_and_its_alerts_clear() {
        let now = at(1000);
        let mut input = healthy(t(1), now);
        input.fenced = Some("worker 7: exit code 3".into());
        input.state = TenantState::Paused;
        input.alerts = vec![AlertState {
            key: AlertKind::Fenced.key(""),
            summary: "fenced".into(),
            fired_at: at(900),
            clear_since: None,
        }];
        assert_eq!(
            evaluate(&input, &limits(30), now),
            vec![Transition::Clear {
                key: AlertKind::Fenced.key("")
            }]
        );
    }

    #[test]
    fn a_resolution_says_how_long_the_alert_fired() {
        let now = at(1000);
        let mut input = healthy(t(1), now);
        input.alerts = vec![AlertState {
            key: AlertKind::HeartbeatStale.key(""),
            summary: "no heartbeat for 61 s (worker running)".into(),
            fired_at: at(880),
            clear_since: Some(at(960)),
        }];
        assert_eq!(
            evaluate(&input, &limits(30), now),
            vec![Transition::Resolve {
                key: AlertKind::HeartbeatStale.key(""),
                summary: "resolved after 120 s; was: no heartbeat for 61 s (worker running)".into(),
            }]
        );
    }

    #[test]
    fn without_a_hold_a_cleared_alert_resolves_at_once() {
        let now = at(1000);
        let mut input = healthy(t(1), now);
        input.alerts = vec![AlertState {
            key: AlertKind::Fenced.key(""),
            summary: "x".into(),
            fired_at: at(999),
            clear_since: None,
        }];
        let transitions = evaluate(&input, &limits(0), now);
        assert!(
            matches!(&transitions[..], [Transition::Resolve { summary, .. }] if summary == "resolved after 1 s; was: x"),
            "{transitions:?}"
        );
    }

    fn arb_health() -> impl Strategy<Value = Option<WorkerHealth>> {
        let strategies = prop::collection::btree_map(
            prop_oneof![Just("news_arb"), Just("complement_arb"), Just("mm")]
                .prop_map(str::to_owned),
            (
                any::<bool>(),
                prop::option::of(Just("venue 500".to_owned())),
            ),
            0..3,
        );
        prop::option::of((strategies, any::<bool>()).prop_map(|(strategies, hit)| {
            WorkerHealth {
                strategies: strategies
                    .into_iter()
                    .map(|(name, (open, reason))| {
                        let health = if open {
                            open_breaker(reason.as_deref())
                        } else {
                            StrategyHealth::default()
                        };
                        (name, health)
                    })
                    .collect(),
                pnl: Some(PnlSummary {
                    daily_loss_limit_hit: hit,
                    ..PnlSummary::default()
                }),
                ..WorkerHealth::default()
            }
        }))
    }

    fn arb_state() -> impl Strategy<Value = TenantState> {
        prop_oneof![
            4 => Just(TenantState::Active),
            1 => Just(TenantState::Paused),
            1 => Just(TenantState::Provisioning),
            1 => Just(TenantState::Failed),
        ]
    }

    /// Alerts a previous round may have left: any kind (one this build no
    /// longer raises too), holding or clearing.
    fn arb_previous() -> impl Strategy<Value = Vec<AlertState>> {
        let key = prop_oneof![
            Just(AlertKind::HeartbeatStale.key("")),
            Just(AlertKind::CrashLoop.key("")),
            Just(AlertKind::BreakerOpen.key("news_arb")),
            Just(AlertKind::BreakerOpen.key("mm")),
            Just(AlertKind::DailyLoss.key("")),
            Just(AlertKind::Fenced.key("")),
            Just(AlertKey {
                alert: "retired_alert".into(),
                subject: String::new(),
            }),
        ];
        prop::collection::btree_map(key, (0i64..900, prop::option::of(900i64..1000)), 0..4)
            .prop_map(|alerts| {
                alerts
                    .into_iter()
                    .map(|(key, (fired, clear))| AlertState {
                        key,
                        summary: "before".into(),
                        fired_at: at(fired),
                        clear_since: clear.map(at),
                    })
                    .collect()
            })
    }

    /// One tenant's observed facts at `now` = at(1000), and its alerts.
    fn arb_input(tenant: TenantId) -> impl Strategy<Value = TenantInput> {
        (
            (
                arb_state(),
                0i64..1000,
                prop::option::of(800i64..1000),
                prop_oneof![Just("running"), Just("crash_loop"), Just("backoff")],
                0i32..6,
            ),
            arb_health(),
            -20i64..5,
            prop::option::of(Just("worker 1: exit code 3".to_owned())),
            arb_previous(),
        )
            .prop_map(
                move |(
                    (state, since, heartbeat, worker, restarts),
                    health,
                    pnl,
                    fenced,
                    alerts,
                )| {
                    TenantInput {
                        tenant,
                        state,
                        state_since: at(since),
                        worker: worker.to_owned(),
                        restarts,
                        last_exit: Some("exit code 1".into()),
                        heartbeat_at: heartbeat.map(at),
                        health,
                        pnl_today: Decimal::new(pnl, 0),
                        max_daily_loss: Some(Decimal::new(10, 0)),
                        fenced,
                        alerts,
                    }
                },
            )
    }

    fn arb_fleet() -> impl Strategy<Value = Vec<TenantInput>> {
        (0u8..5).prop_flat_map(|n| (0..n).map(|i| arb_input(t(i))).collect::<Vec<_>>())
    }

    fn resolved(transitions: &[Transition]) -> Vec<AlertKey> {
        transitions
            .iter()
            .filter_map(|t| match t {
                Transition::Resolve { key, .. } => Some(key.clone()),
                _ => None,
            })
            .collect()
    }

    proptest! {
        #[test]
        fn firing_is_idempotent(input in arb_input(t(0)), hold in 0i64..120) {
            let limits = limits(hold);
            let now = at(1000);
            let first = evaluate(&input, &limits, now);
            let mut again = input.clone();
            again.alerts = apply(&input.alerts, &first, now);
            let second = evaluate(&again, &limits, now);
            prop_assert!(second.is_empty(), "after {first:?} the second round did {second:?}");
        }

        #[test]
        fn each_condition_fires_at_most_once_and_only_for_an_active_tenant(input in arb_input(t(0))) {
            let transitions = evaluate(&input, &limits(30), at(1000));
            let fires = fired(&transitions);
            if input.state != TenantState::Active {
                prop_assert!(fires.is_empty());
            }
            let keys: std::collections::BTreeSet<&AlertKey> = transitions.iter().map(Transition::key).collect();
            prop_assert_eq!(keys.len(), transitions.len(), "one transition per alert");
            for t in &transitions {
                if let Transition::Fire { key, .. } = t {
                    prop_assert!(input.alerts.iter().all(|a| &a.key != key), "{key:?} fired while firing");
                }
            }
        }

        #[test]
        fn every_fired_alert_resolves_once_its_condition_clears(input in arb_input(t(0)), hold in 0i64..120) {
            let limits = limits(hold);
            let now = at(1000);
            let first = evaluate(&input, &limits, now);
            let after_first = apply(&input.alerts, &first, now);
            let mut expected: Vec<AlertKey> = after_first.iter().map(|a| a.key.clone()).collect();
            for t in &first {
                if let Transition::Fire { key, .. } = t {
                    prop_assert!(expected.contains(key));
                }
            }
            // Every condition clears: a healthy worker from now on.
            let mut cleared = healthy(t(0), now);
            cleared.alerts = after_first;
            let mut seen = Vec::new();
            for round in 0..=(hold + 1) {
                let now = at(1001 + round);
                cleared.heartbeat_at = Some(now);
                let transitions = evaluate(&cleared, &limits, now);
                prop_assert!(fired(&transitions).is_empty(), "a healthy tenant fired {transitions:?}");
                seen.extend(resolved(&transitions));
                cleared.alerts = apply(&cleared.alerts, &transitions, now);
            }
            prop_assert!(cleared.alerts.is_empty(), "still firing: {:?}", cleared.alerts);
            expected.sort();
            seen.sort();
            prop_assert_eq!(seen, expected, "each firing alert resolves exactly once");
        }

        #[test]
        fn a_flapping_condition_neither_fires_again_nor_resolves_within_the_hold(input in arb_input(t(0)), flaps in 1i64..6) {
            let limits = limits(3600);
            let first = evaluate(&input, &limits, at(1000));
            let mut alerts = apply(&input.alerts, &first, at(1000));
            for flap in 0..flaps {
                // Clear for a second…
                let now = at(1001 + flap * 2);
                let mut clear = healthy(t(0), now);
                clear.alerts = alerts.clone();
                let transitions = evaluate(&clear, &limits, now);
                prop_assert!(resolved(&transitions).is_empty(), "flap {flap} resolved {transitions:?}");
                alerts = apply(&alerts, &transitions, now);
                // …and back: the same facts, as old relative to now as at first.
                let now = now + Duration::seconds(1);
                let shift = now - at(1000);
                let mut back = input.clone();
                back.alerts = alerts.clone();
                back.heartbeat_at = input.heartbeat_at.map(|h| h + shift);
                back.state_since = input.state_since + shift;
                let transitions = evaluate(&back, &limits, now);
                prop_assert!(fired(&transitions).is_empty(), "flap {flap} fired {transitions:?}");
                prop_assert!(resolved(&transitions).is_empty(), "flap {flap} resolved {transitions:?}");
                alerts = apply(&alerts, &transitions, now);
            }
        }

        #[test]
        fn no_alert_of_a_tenant_comes_from_another_tenants_input(fleet in arb_fleet(), other in arb_input(t(9))) {
            let limits = limits(30);
            let now = at(1000);
            let alone: Vec<(TenantId, Vec<Transition>)> = fleet
                .iter()
                .map(|input| (input.tenant, evaluate(input, &limits, now)))
                .filter(|(_, ts)| !ts.is_empty())
                .collect();
            let mut with_other = fleet.clone();
            with_other.insert(0, other.clone());
            let (theirs, mine): (Vec<_>, Vec<_>) = evaluate_fleet(&with_other, &limits, now)
                .into_iter()
                .partition(|(tenant, _)| *tenant == other.tenant);
            prop_assert_eq!(mine, alone);
            prop_assert!(theirs.len() <= 1);
        }
    }
}
