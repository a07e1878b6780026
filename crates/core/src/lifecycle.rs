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
//! action does, and show its refusal as is. Nothing here performs I/O.

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
