//! A tenant's lifecycle as a state machine.
//!
//! ```text
//!             onboarding done                 pause
//! provisioning ───────────────▶ active ◀──────────────▶ paused
//!      │  ▲                       │            resume       │
//!      │  │ resume (retry)        │ delete                  │ delete
//!      ▼  │                       ▼                         ▼
//!    failed ──── delete ────▶ offboarding ──── done ────▶ offboarded
//!                                                           │
//!         provisioning ◀──── resume (restore, in the secret's recovery window)
//! ```
//!
//! [`TenantState::apply`] is the only place the transitions are written down:
//! the API, the onboarding state machine and the dashboard ask it what an
//! action does, and show its refusal as is. [`Standing`] adds who acts: an
//! operator's pause is a hold that only an operator's resume lifts. Nothing
//! here performs I/O.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Where a tenant is in its life. Stored as text in `tenants.state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TenantState {
    /// Onboarding steps are running (role, secret, task definition).
    Provisioning,
    /// The reconciler keeps one worker running.
    Active,
    /// Stopped until resumed; no worker.
    Paused,
    /// An onboarding step failed; `last_error` says which and why.
    Failed,
    /// Deletion is running (worker stopped, role dropped, secret scheduled).
    Offboarding,
    /// Deleted; restorable within the secret's recovery window.
    Offboarded,
}

/// Something done to a tenant that may change its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TenantAction {
    /// Stop the worker until resumed.
    Pause,
    /// Start a paused tenant, retry a failed onboarding, or restore an
    /// offboarded one.
    Resume,
    /// Delete the tenant.
    Offboard,
    /// The last onboarding step succeeded.
    OnboardingDone,
    /// An onboarding step failed.
    OnboardingFailed,
    /// The last offboarding step succeeded.
    OffboardingDone,
}

/// What an allowed action does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub from: TenantState,
    pub to: TenantState,
    /// The onboarding steps run again from the start (a retry or a restore).
    pub restarts_onboarding: bool,
}

impl Transition {
    /// Whether the state changes (pausing a paused tenant does not).
    pub fn changes(&self) -> bool {
        self.from != self.to
    }
}

/// Why an action is refused in the tenant's current state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cannot {} a tenant that is {state}", action.verb())]
pub struct Refused {
    pub action: TenantAction,
    pub state: TenantState,
}

impl TenantAction {
    /// The verb used in messages and audit entries (`tenant.<verb>`).
    pub const fn verb(self) -> &'static str {
        match self {
            TenantAction::Pause => "pause",
            TenantAction::Resume => "resume",
            TenantAction::Offboard => "delete",
            TenantAction::OnboardingDone => "finish onboarding",
            TenantAction::OnboardingFailed => "fail onboarding",
            TenantAction::OffboardingDone => "finish offboarding",
        }
    }
}

impl TenantState {
    pub const ALL: [TenantState; 6] = [
        TenantState::Provisioning,
        TenantState::Active,
        TenantState::Paused,
        TenantState::Failed,
        TenantState::Offboarding,
        TenantState::Offboarded,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            TenantState::Provisioning => "provisioning",
            TenantState::Active => "active",
            TenantState::Paused => "paused",
            TenantState::Failed => "failed",
            TenantState::Offboarding => "offboarding",
            TenantState::Offboarded => "offboarded",
        }
    }

    /// The next state after `action`, or why it is refused.
    pub fn apply(self, action: TenantAction) -> Result<Transition, Refused> {
        use TenantAction as A;
        use TenantState as S;
        let (to, restarts_onboarding) = match (action, self) {
            (A::Pause, S::Active | S::Paused) => (S::Paused, false),
            (A::Resume, S::Paused | S::Active) => (S::Active, false),
            (A::Resume, S::Failed | S::Offboarded) => (S::Provisioning, true),
            (A::Offboard, S::Provisioning | S::Active | S::Paused | S::Failed) => {
                (S::Offboarding, false)
            }
            (A::Offboard, S::Offboarding) => (S::Offboarding, false),
            (A::OnboardingDone, S::Provisioning) => (S::Active, false),
            (A::OnboardingFailed, S::Provisioning) => (S::Failed, false),
            (A::OffboardingDone, S::Offboarding) => (S::Offboarded, false),
            _ => {
                return Err(Refused {
                    action,
                    state: self,
                });
            }
        };
        Ok(Transition {
            from: self,
            to,
            restarts_onboarding,
        })
    }

    /// Whether the tenant's name, configuration, keys or tokens may change.
    pub const fn is_editable(self) -> bool {
        !matches!(self, TenantState::Offboarding | TenantState::Offboarded)
    }

    /// Whether the reconciler should keep a worker running.
    pub const fn wants_worker(self) -> bool {
        matches!(self, TenantState::Active)
    }

    /// Whether the onboarding (or offboarding) state machine has work to do.
    pub const fn has_pending_steps(self) -> bool {
        matches!(self, TenantState::Provisioning | TenantState::Offboarding)
    }
}

/// Who asks for an action: an operator's word outranks a tenant's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    Operator,
    Tenant,
}

/// A tenant's state and whether an operator holds it paused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standing {
    pub state: TenantState,
    pub held_by_operator: bool,
}

/// What an allowed action does to a [`Standing`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub transition: Transition,
    /// The hold after the action.
    pub held_by_operator: bool,
}

impl Step {
    /// Whether the state or the hold changes.
    pub fn changes(&self, before: Standing) -> bool {
        self.transition.changes() || self.held_by_operator != before.held_by_operator
    }
}

/// Why an actor may not do an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The state does not allow the action, whoever asks.
    #[error(transparent)]
    State(#[from] Refused),
    /// A tenant asked to resume while an operator holds it paused.
    #[error("an operator holds this tenant paused; only an operator can resume it")]
    HeldByOperator,
}

impl Standing {
    /// The next state and hold after `actor` does `action`, or why not. An
    /// operator's pause sets the hold and an operator's resume clears it; a
    /// tenant cannot resume while held (pausing again is harmless).
    pub fn apply(self, action: TenantAction, actor: Actor) -> Result<Step, Refusal> {
        if self.held_by_operator && action == TenantAction::Resume && actor == Actor::Tenant {
            return Err(Refusal::HeldByOperator);
        }
        let transition = self.state.apply(action)?;
        let held_by_operator = match (action, actor) {
            (TenantAction::Pause, Actor::Operator) => true,
            (TenantAction::Resume, Actor::Operator) => false,
            _ => self.held_by_operator,
        };
        Ok(Step {
            transition,
            held_by_operator,
        })
    }
}

impl fmt::Display for TenantState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Text that is not a tenant state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a tenant state: expected one of provisioning, active, paused, failed, offboarding, offboarded"
)]
pub struct UnknownState(pub String);

impl FromStr for TenantState {
    type Err = UnknownState;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TenantState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| UnknownState(s.chars().take(32).collect()))
    }
}

/// For decoding `tenants.state` (`#[sqlx(try_from = "String")]` in the store).
impl TryFrom<String> for TenantState {
    type Error = UnknownState;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use TenantAction as A;
    use TenantState as S;

    #[test]
    fn pausing_and_resuming_an_active_tenant_round_trips() {
        let paused = S::Active.apply(A::Pause).expect("allowed");
        assert_eq!(paused.to, S::Paused);
        assert!(paused.changes());
        let active = paused.to.apply(A::Resume).expect("allowed");
        assert_eq!(active.to, S::Active);
        assert!(!active.restarts_onboarding);
    }

    #[test]
    fn pausing_a_paused_tenant_is_allowed_and_changes_nothing() {
        let t = S::Paused.apply(A::Pause).expect("allowed");
        assert!(!t.changes());
    }

    #[test]
    fn resuming_a_failed_or_offboarded_tenant_restarts_onboarding() {
        for state in [S::Failed, S::Offboarded] {
            let t = state.apply(A::Resume).expect("allowed");
            assert_eq!(t.to, S::Provisioning);
            assert!(t.restarts_onboarding);
        }
    }

    #[test]
    fn a_refusal_names_the_action_and_the_state() {
        let err = S::Provisioning.apply(A::Pause).expect_err("refused");
        assert_eq!(
            err.to_string(),
            "cannot pause a tenant that is provisioning"
        );
        let err = S::Offboarding.apply(A::Resume).expect_err("refused");
        assert_eq!(
            err.to_string(),
            "cannot resume a tenant that is offboarding"
        );
    }

    fn standing(state: S, held_by_operator: bool) -> Standing {
        Standing {
            state,
            held_by_operator,
        }
    }

    #[test]
    fn an_operator_pause_holds_the_tenant_until_an_operator_resumes() {
        let paused = standing(S::Active, false)
            .apply(A::Pause, Actor::Operator)
            .expect("allowed");
        assert_eq!(paused.transition.to, S::Paused);
        assert!(paused.held_by_operator);
        let held = standing(S::Paused, true);
        assert_eq!(
            held.apply(A::Resume, Actor::Tenant),
            Err(Refusal::HeldByOperator)
        );
        let resumed = held.apply(A::Resume, Actor::Operator).expect("allowed");
        assert_eq!(resumed.transition.to, S::Active);
        assert!(!resumed.held_by_operator);
    }

    #[test]
    fn a_tenant_pause_is_no_hold_and_cannot_lift_one() {
        let own = standing(S::Active, false)
            .apply(A::Pause, Actor::Tenant)
            .expect("allowed");
        assert!(!own.held_by_operator);
        let again = standing(S::Paused, true)
            .apply(A::Pause, Actor::Tenant)
            .expect("allowed");
        assert!(again.held_by_operator, "a tenant's pause keeps the hold");
        assert!(!again.changes(standing(S::Paused, true)));
    }

    #[test]
    fn an_operator_pausing_a_self_paused_tenant_changes_its_standing() {
        let before = standing(S::Paused, false);
        let step = before.apply(A::Pause, Actor::Operator).expect("allowed");
        assert!(!step.transition.changes());
        assert!(step.changes(before));
    }

    #[test]
    fn the_state_refuses_before_the_hold_matters() {
        assert_eq!(
            standing(S::Offboarding, false).apply(A::Resume, Actor::Operator),
            Err(Refusal::State(Refused {
                action: A::Resume,
                state: S::Offboarding
            }))
        );
    }

    #[test]
    fn every_state_round_trips_through_its_text() {
        for state in S::ALL {
            assert_eq!(state.as_str().parse::<S>(), Ok(state));
        }
        assert!("running".parse::<S>().is_err());
    }

    #[test]
    fn only_an_active_tenant_wants_a_worker() {
        let wanting: Vec<_> = S::ALL.into_iter().filter(|s| s.wants_worker()).collect();
        assert_eq!(wanting, vec![S::Active]);
    }

    #[test]
    fn offboarded_is_terminal_except_for_a_restore() {
        for action in [
            A::Pause,
            A::Offboard,
            A::OnboardingDone,
            A::OnboardingFailed,
            A::OffboardingDone,
        ] {
            assert!(S::Offboarded.apply(action).is_err(), "{action:?}");
        }
    }
}
