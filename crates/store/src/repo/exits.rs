//! Worker exits (`worker_exits`), one row per launcher instance (an ECS task
//! ARN): the reconciler counts an exit only when its row is new, so the same
//! stopped task seen twice — from an event and from the ListTasks backstop,
//! or by a new leader after a failover — is counted once.
//!
//! What does not live here: what an exit does to the restart count and the
//! back-off (the reconciler's plan), and the runtime row (`repo::runtime`).

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use crate::{DbError, OperatorTx, TenantTx};

/// One exit as the reconciler records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewExit<'a> {
    pub instance_id: &'a str,
    pub exit_code: Option<i32>,
    pub reason: &'a str,
    /// The launcher was asked to stop it.
    pub requested: bool,
    /// Counted as a crash.
    pub crashed: bool,
    pub exited_at: DateTime<Utc>,
}

/// What [`record`] did with an exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// The first record of this instance's exit: it counts.
    New,
    /// Recorded before without an exit code (a stop seen part-way, before
    /// the container's code was known), now completed with this one's code
    /// and reason; it does not count again.
    Completed,
    /// Recorded before; nothing changed.
    Known,
}

/// Records an exit of the transaction's tenant: [`Recorded::New`] the first
/// time; a later sighting that knows the exit code an earlier one lacked
/// completes the row ([`Recorded::Completed`]); anything else changes
/// nothing ([`Recorded::Known`]).
pub async fn record(tx: &mut TenantTx, exit: &NewExit<'_>) -> Result<Recorded, DbError> {
    // `xmax = 0` holds for a row this statement inserted, not for one it
    // updated; no row comes back when the conflict's update did not apply.
    let inserted: Option<bool> = sqlx::query_scalar(
        "INSERT INTO worker_exits (tenant_id, instance_id, exit_code, reason, requested, crashed, exited_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (tenant_id, instance_id) DO UPDATE \
             SET exit_code = EXCLUDED.exit_code, reason = EXCLUDED.reason \
             WHERE worker_exits.exit_code IS NULL AND EXCLUDED.exit_code IS NOT NULL \
         RETURNING (xmax = 0)",
    )
    .bind(tx.tenant().as_uuid())
    .bind(exit.instance_id)
    .bind(exit.exit_code)
    .bind(exit.reason)
    .bind(exit.requested)
    .bind(exit.crashed)
    .bind(exit.exited_at)
    .fetch_optional(&mut **tx)
    .await
    .map_err(DbError::query("recording a worker exit"))?;
    Ok(match inserted {
        Some(true) => Recorded::New,
        Some(false) => Recorded::Completed,
        None => Recorded::Known,
    })
}

/// Which of `instance_ids` have a recorded exit, across the fleet (operator
/// scope), each with its recorded exit code: the reconciler leaves those out
/// of its plan, unless it now knows the code a row lacks.
pub async fn recorded(
    op: &mut OperatorTx,
    instance_ids: &[String],
) -> Result<HashMap<String, Option<i32>>, DbError> {
    if instance_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<(String, Option<i32>)> = sqlx::query_as(
        "SELECT instance_id, exit_code FROM worker_exits WHERE instance_id = ANY($1)",
    )
    .bind(instance_ids)
    .fetch_all(&mut **op)
    .await
    .map_err(DbError::query("reading which worker exits are recorded"))?;
    Ok(rows.into_iter().collect())
}

/// A recorded exit.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ExitRow {
    pub instance_id: String,
    pub exit_code: Option<i32>,
    pub reason: String,
    pub requested: bool,
    pub crashed: bool,
    pub exited_at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
}

/// The transaction's tenant's newest `limit` exits, newest first.
pub async fn recent(tx: &mut TenantTx, limit: i64) -> Result<Vec<ExitRow>, DbError> {
    sqlx::query_as(
        "SELECT instance_id, exit_code, reason, requested, crashed, exited_at, recorded_at \
         FROM worker_exits WHERE tenant_id = $1 ORDER BY exited_at DESC, recorded_at DESC LIMIT $2",
    )
    .bind(tx.tenant().as_uuid())
    .bind(limit)
    .fetch_all(&mut **tx)
    .await
    .map_err(DbError::query("reading the tenant's worker exits"))
}

/// Deletes exits recorded more than `keep_days` days ago, at most `batch` of
/// them (migration 0012's `SECURITY DEFINER` function: the operator scope
/// reads tenant rows but may not delete them).
pub async fn prune(op: &mut OperatorTx, keep_days: i32, batch: i32) -> Result<u64, DbError> {
    let n: i64 = sqlx::query_scalar("SELECT polybot.prune_exits(make_interval(days => $1), $2)")
        .bind(keep_days)
        .bind(batch)
        .fetch_one(&mut **op)
        .await
        .map_err(DbError::query("pruning old worker exits"))?;
    Ok(u64::try_from(n).unwrap_or(0))
}
