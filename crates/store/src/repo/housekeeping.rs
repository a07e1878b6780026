//! Pruning of old rows across the fleet, in bounded batches, through the
//! `SECURITY DEFINER` functions of migrations 0005 and 0006 (the operator
//! scope reads tenant rows but may not delete them).

use crate::{DbError, OperatorTx};

/// What one round of housekeeping deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub heartbeats: u64,
    pub idempotency_keys: u64,
    pub availability_minutes: u64,
    pub timeline_events: u64,
    pub worker_exits: u64,
}

/// Deletes heartbeats older than a day (each tenant keeps its newest),
/// idempotency records older than a day, availability minutes older than 35
/// days (the SLO looks back 30), timeline events older than 90 days and
/// worker exits older than 7 days, at most `batch` rows of each.
pub async fn prune(op: &mut OperatorTx, batch: i32) -> Result<Pruned, DbError> {
    let (heartbeats, idempotency_keys): (i64, i64) = sqlx::query_as(
        "SELECT heartbeats, idempotency_keys FROM \
         polybot.prune_history(interval '1 day', interval '1 day', $1)",
    )
    .bind(batch)
    .fetch_one(&mut **op)
    .await
    .map_err(DbError::query("pruning old heartbeats"))?;
    let (availability, events): (i64, i64) = sqlx::query_as(
        "SELECT availability, events FROM \
         polybot.prune_timeline(interval '35 days', interval '90 days', $1)",
    )
    .bind(batch)
    .fetch_one(&mut **op)
    .await
    .map_err(DbError::query("pruning old availability and timeline rows"))?;
    let worker_exits = crate::repo::exits::prune(op, 7, batch).await?;
    let n = |x: i64| u64::try_from(x).unwrap_or(0);
    Ok(Pruned {
        heartbeats: n(heartbeats),
        idempotency_keys: n(idempotency_keys),
        availability_minutes: n(availability),
        timeline_events: n(events),
        worker_exits,
    })
}
