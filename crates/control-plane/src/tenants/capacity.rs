//! Admission of local workers: with the local launcher, a tenant is
//! onboarded (or resumed into a running worker) only while the machine has
//! room for one more worker ([`polybot_launcher::local_capacity`]).
//!
//! The tenants that hold a worker slot are the `provisioning` and `active`
//! ones: the reconciler keeps (or is about to keep) a worker for each.
//! Pausing or offboarding a tenant frees its slot. Admissions are serialized
//! in this process, so two onboardings at once cannot both take the last
//! slot; the local launcher runs one control plane per machine.

use polybot_core::lifecycle::TenantState;
use polybot_launcher::local_capacity::WorkerLimit;
use polybot_store::Db;
use polybot_store::repo::fleet;
use tokio::sync::{Mutex, MutexGuard};

use crate::error::{ApiError, ApiResult};

/// The machine's bound on local workers and the lock admissions take.
#[derive(Debug)]
pub struct LocalWorkers {
    limit: WorkerLimit,
    gate: Mutex<()>,
}

/// Whether a tenant in `state` holds a local worker slot.
pub const fn holds_slot(state: TenantState) -> bool {
    matches!(state, TenantState::Provisioning | TenantState::Active)
}

impl LocalWorkers {
    pub fn new(limit: WorkerLimit) -> Self {
        Self {
            limit,
            gate: Mutex::new(()),
        }
    }

    pub fn limit(&self) -> WorkerLimit {
        self.limit
    }

    /// Admits one more worker, or refuses with a 409 naming the limit. The
    /// guard serializes admissions: keep it until the tenant's change is
    /// committed.
    pub async fn admit(&self, db: &Db) -> ApiResult<MutexGuard<'_, ()>> {
        let guard = self.gate.lock().await;
        let mut op = db.operator().await?;
        let counts = fleet::count_by_state(&mut op).await?;
        op.commit().await?;
        let holding: i64 = counts
            .into_iter()
            .filter(|(state, _)| holds_slot(*state))
            .map(|(_, count)| count)
            .sum();
        if u64::try_from(holding).unwrap_or(0) >= self.limit.max {
            return Err(ApiError::Capacity(self.limit.refusal()));
        }
        Ok(guard)
    }
}
