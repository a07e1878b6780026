//! The leader's part of a rollout: after each reconcile pass, mark the
//! tenants whose workers now run their new release, and begin the next
//! tenant when the rate allows.
//!
//! It runs inside [`Reconciler::pass`](crate::reconcile::Reconciler::pass),
//! so only the replica holding the reconciler's advisory lock drives a
//! rollout, and a restarted control plane continues from what the database
//! holds: the rollout's state, and each tenant's release with when it began.
//!
//! Beginning a tenant only writes its release (`tenant_releases`); the
//! reconciler sees a changed spec hash and replaces the worker with its own
//! rule — stop the old worker, start the new one once the old is gone — so a
//! tenant never has two live workers (and the lease fences any stale twin).
//! The rollout's row stays locked while a tenant begins, so a pause or abort
//! answered by the API is never followed by another tenant beginning.
//!
//! A running rollout pauses itself when a worker of the new release fails in
//! a tenant it reached (a crash of a worker with the new spec, or a launch
//! that failed): a bad image stops at the first tenant instead of crossing
//! the fleet. Resuming goes on past it; a later failure pauses again.

use chrono::{DateTime, Utc};
use polybot_core::TenantId;
use polybot_store::repo::rollouts::{self, Release};
use polybot_store::{Db, DbError};

use super::plan;

/// One tenant as the rollout step sees it after a reconcile pass.
#[derive(Debug, Clone)]
pub struct Observed {
    pub tenant: TenantId,
    /// Covered by rollouts: not offboarding or offboarded.
    pub covered: bool,
    /// What it runs now: its own release, or the fleet's.
    pub release: Release,
    /// The rollout that gave it its own release, and whether that is still
    /// rolling (its worker not yet replaced).
    pub rolled_by: Option<(i64, bool)>,
    /// Its worker runs its current release, or it should run none.
    pub settled: bool,
    /// How the worker of its current release failed in this pass (crashed,
    /// or could not be launched), if it did.
    pub failure: Option<String>,
}

/// What one step did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StepReport {
    /// Tenants given the rollout's release.
    pub begun: usize,
    /// Tenants whose workers now run their release.
    pub finished: usize,
    /// Tenants still being replaced.
    pub rolling: usize,
    /// When the next tenant may begin, if a running rollout has more.
    pub next_due: Option<DateTime<Utc>>,
    /// The rollout completed in this step.
    pub completed: Option<i64>,
    /// The rollout paused itself: a worker of the new release failed.
    pub paused: bool,
}

/// One step at `now`; see the module docs.
pub async fn step(
    db: &Db,
    tenants: &[Observed],
    now: DateTime<Utc>,
) -> Result<StepReport, DbError> {
    let mut report = StepReport::default();
    // Releases whose workers now run them, whatever rollout gave them (an
    // aborted rollout's tenants finish too).
    let mut finished: Vec<TenantId> = Vec::new();
    for t in tenants {
        if let Some((rollout, true)) = t.rolled_by
            && t.settled
        {
            let mut tx = db.tenant(t.tenant).await?;
            if rollouts::finish_tenant(&mut tx, rollout, now).await? {
                report.finished += 1;
            }
            tx.commit().await?;
            finished.push(t.tenant);
        }
    }
    let mut op = db.operator().await?;
    let Some(rollout) = rollouts::lock_unfinished(&mut op).await? else {
        op.commit().await?;
        report.rolling = tenants
            .iter()
            .filter(|t| matches!(t.rolled_by, Some((_, true))) && !finished.contains(&t.tenant))
            .count();
        return Ok(report);
    };
    let mine = |t: &&Observed| t.covered && t.rolled_by.is_some_and(|(id, _)| id == rollout.id);
    report.rolling = tenants
        .iter()
        .filter(mine)
        .filter(|t| {
            t.rolled_by.is_some_and(|(_, rolling)| rolling) && !finished.contains(&t.tenant)
        })
        .count();
    let mut pending: Vec<&Observed> = tenants.iter().filter(|t| t.covered && !mine(t)).collect();
    pending.sort_by_key(|t| t.tenant);
    if rollout.state != "running" {
        op.commit().await?;
        return Ok(report);
    }
    // A worker of the new release failed: stop here until the operator
    // resumes (past this tenant) or aborts.
    if let Some((tenant, failure)) = tenants
        .iter()
        .filter(mine)
        .find_map(|t| t.failure.as_ref().map(|f| (t.tenant, f)))
    {
        let reason: String = format!(
            "paused: tenant {tenant}'s worker of the new release failed ({failure}); \
             resume to go on, abort to stop"
        )
        .chars()
        .take(500)
        .collect();
        rollouts::set_state(&mut op, rollout.id, "paused", Some(&reason), None).await?;
        op.commit().await?;
        tracing::warn!(rollout = rollout.id, %tenant, failure, "rollout paused: a worker of the new release failed");
        report.paused = true;
        return Ok(report);
    }
    if pending.is_empty() {
        if report.rolling == 0 {
            rollouts::set_state(
                &mut op,
                rollout.id,
                "done",
                Some("every tenant's worker runs the release"),
                None,
            )
            .await?;
            tracing::info!(rollout = rollout.id, "rollout done");
            report.completed = Some(rollout.id);
        }
        op.commit().await?;
        return Ok(report);
    }
    let last = rollouts::last_began(&mut op, rollout.id).await?;
    let due = plan::next_due(rollout.per_minute, last, rollout.next_at);
    if !plan::may_begin(due, now) {
        op.commit().await?;
        report.next_due = due;
        return Ok(report);
    }
    let next = pending[0];
    let release = next.release.apply(&rollout.change);
    let mut tx = db.tenant(next.tenant).await?;
    rollouts::begin(&mut tx, rollout.id, &release, now).await?;
    tx.commit().await?;
    let following = plan::next_due(rollout.per_minute, Some(now), None).unwrap_or(now);
    rollouts::set_next_at(&mut op, rollout.id, following).await?;
    op.commit().await?;
    tracing::info!(rollout = rollout.id, tenant = %next.tenant, "rollout began a tenant");
    report.begun = 1;
    report.rolling += 1;
    report.next_due = (pending.len() > 1).then_some(following);
    Ok(report)
}
