//! Counting each tenant's API calls: a request authenticated by a tenant's
//! token adds one to an in-memory counter (no database write per request),
//! and one task per control plane flushes the counters into `tenant_usage`
//! every [`FLUSH_EVERY`] and once more at shutdown.
//!
//! The flush adds to the stored count (`repo::billing::add_api_calls`), so
//! several replicas each flushing their own counts sum rather than
//! overwrite. A flush that fails puts its counts back for the next one.
//! Operator requests are not a tenant's usage and are not counted. What is
//! done with the counts (the billing view, Stripe meter events) lives in
//! [`super::api`] and [`super::meter`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{NaiveDate, Utc};
use polybot_core::TenantId;
use polybot_store::{Db, DbError};
use tokio_util::sync::CancellationToken;

/// How often a control plane writes its counts.
pub const FLUSH_EVERY: Duration = Duration::from_secs(15);

const FOREIGN_KEY_VIOLATION: &str = "23503";

/// API calls counted in this process and not yet written, by tenant and UTC day.
#[derive(Debug, Clone, Default)]
pub struct ApiCalls {
    pending: Arc<Mutex<HashMap<(TenantId, NaiveDate), i64>>>,
}

impl ApiCalls {
    /// Counts one call by `tenant` now.
    pub fn record(&self, tenant: TenantId) {
        self.record_on(tenant, Utc::now().date_naive());
    }

    fn record_on(&self, tenant: TenantId, day: NaiveDate) {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        *pending.entry((tenant, day)).or_insert(0) += 1;
    }

    /// Calls counted and not yet written (for tests and metrics).
    pub fn pending(&self, tenant: TenantId) -> i64 {
        let pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        pending
            .iter()
            .filter(|((t, _), _)| *t == tenant)
            .map(|(_, n)| n)
            .sum()
    }

    /// Adds every pending count to `tenant_usage`, one tenant transaction
    /// each; returns how many calls were written. Counts whose write failed
    /// are kept for the next flush.
    pub async fn flush(&self, db: &Db) -> Result<i64, DbError> {
        let taken =
            std::mem::take(&mut *self.pending.lock().unwrap_or_else(PoisonError::into_inner));
        let mut written = 0;
        let mut failed: Option<DbError> = None;
        let mut unwritten = Vec::new();
        for ((tenant, day), calls) in taken {
            match add(db, tenant, day, calls).await {
                Ok(()) => written += calls,
                // The tenant was offboarded since: its calls have nowhere to go.
                Err(err) if err.sqlstate().as_deref() == Some(FOREIGN_KEY_VIOLATION) => {
                    tracing::debug!(%tenant, calls, "dropping the API calls of a deleted tenant");
                }
                Err(err) => {
                    unwritten.push(((tenant, day), calls));
                    failed = Some(err);
                }
            }
        }
        if !unwritten.is_empty() {
            let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            for (key, calls) in unwritten {
                *pending.entry(key).or_insert(0) += calls;
            }
        }
        match failed {
            Some(err) => Err(err),
            None => Ok(written),
        }
    }

    /// Flushes every `every` until `stop`, then once more.
    pub async fn run(self, db: Db, every: Duration, stop: CancellationToken) {
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep(every) => {}
            }
            if let Err(err) = self.flush(&db).await {
                tracing::warn!(error = %err, "could not write API call counts; keeping them for the next flush");
            }
        }
        if let Err(err) = self.flush(&db).await {
            tracing::warn!(error = %err, "could not write API call counts at shutdown");
        }
    }
}

async fn add(db: &Db, tenant: TenantId, day: NaiveDate, calls: i64) -> Result<(), DbError> {
    let mut tx = db.tenant(tenant).await?;
    polybot_store::repo::billing::add_api_calls(&mut tx, day, calls).await?;
    tx.commit().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_are_counted_per_tenant() {
        let calls = ApiCalls::default();
        let (a, b) = (TenantId::new(), TenantId::new());
        let day = NaiveDate::from_ymd_opt(2026, 12, 7).unwrap_or_default();
        calls.record_on(a, day);
        calls.record_on(a, day);
        calls.record_on(a, day.succ_opt().unwrap_or(day));
        calls.record_on(b, day);
        assert_eq!((calls.pending(a), calls.pending(b)), (3, 1));
    }
}
