//! A tenant's runtime row (`tenant_runtime`): what the reconciler should run
//! and what it last observed: the launch spec onboarding records (and
//! removes when onboarding fails), the reconciler's observations, and the
//! timeline events.

use chrono::{DateTime, Utc};

use crate::{DbError, TenantTx};

/// Records the launch spec (its hash) the reconciler will start the worker
/// with; an existing row keeps its observations and takes the new hash.
pub async fn prepare_launch(tx: &mut TenantTx, spec_hash: &str) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO tenant_runtime (tenant_id, desired, actual, spec_hash) VALUES ($1, 'running', 'pending', $2) \
         ON CONFLICT (tenant_id) DO UPDATE SET spec_hash = EXCLUDED.spec_hash, observed_at = now()",
    )
    .bind(tx.tenant().as_uuid())
    .bind(spec_hash)
    .execute(&mut **tx)
    .await
    .map_err(DbError::query("preparing the launch spec"))?;
    Ok(())
}

/// The stored launch spec hash, if any.
pub async fn spec_hash(tx: &mut TenantTx) -> Result<Option<String>, DbError> {
    let hash: Option<Option<String>> =
        sqlx::query_scalar("SELECT spec_hash FROM tenant_runtime WHERE tenant_id = $1")
            .bind(tx.tenant().as_uuid())
            .fetch_optional(&mut **tx)
            .await
            .map_err(DbError::query("reading the launch spec"))?;
    Ok(hash.flatten())
}

/// Removes the runtime row (onboarding failed: nothing is to run).
pub async fn remove(tx: &mut TenantTx) -> Result<(), DbError> {
    sqlx::query("DELETE FROM tenant_runtime WHERE tenant_id = $1")
        .bind(tx.tenant().as_uuid())
        .execute(&mut **tx)
        .await
        .map_err(DbError::query("removing the launch spec"))?;
    Ok(())
}

/// `tenant_runtime.desired` of an active tenant whose worker the
/// reconciler keeps stopped because its payment lapsed.
pub const HELD_FOR_PAYMENT: &str = "held_for_payment";

/// What one reconcile pass observed and did for the transaction's tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    /// `running`, `stopped` or [`HELD_FOR_PAYMENT`].
    pub desired: &'static str,
    /// `running`, `starting`, `pending`, `crash_loop`, `launch_backoff`,
    /// `capacity`, `stopping`, `stopped` or `failed`.
    pub actual: &'static str,
    pub instance_id: Option<String>,
    pub spec_hash: String,
    pub restarts: i32,
    /// Launches (RunTask) that failed in a row.
    pub launch_failures: i32,
    /// While crash-looping or after a failed launch: no new start before this time.
    pub backoff_until: Option<DateTime<Utc>>,
    /// How a worker ended in this pass; `None` keeps the previous one.
    pub last_exit: Option<String>,
    /// An error of this pass; `None` keeps the previous one unless the
    /// worker runs, which clears it.
    pub last_error: Option<String>,
    /// What the pass did; `None` keeps the previous action and its time.
    pub last_action: Option<String>,
}

/// Writes the transaction's tenant's runtime row (creating it the first time).
pub async fn record(tx: &mut TenantTx, o: &Observation) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO tenant_runtime (tenant_id, desired, actual, instance_id, spec_hash, restarts, backoff_until, \
            last_exit, last_error, last_action, last_action_at, observed_at, launch_failures) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, CASE WHEN $10 IS NULL THEN NULL ELSE now() END, now(), $11) \
         ON CONFLICT (tenant_id) DO UPDATE SET desired = EXCLUDED.desired, actual = EXCLUDED.actual, \
            instance_id = EXCLUDED.instance_id, spec_hash = EXCLUDED.spec_hash, restarts = EXCLUDED.restarts, \
            backoff_until = EXCLUDED.backoff_until, launch_failures = EXCLUDED.launch_failures, \
            last_exit = coalesce(EXCLUDED.last_exit, tenant_runtime.last_exit), \
            last_error = CASE WHEN EXCLUDED.actual = 'running' THEN NULL \
                              ELSE coalesce(EXCLUDED.last_error, tenant_runtime.last_error) END, \
            last_action = coalesce(EXCLUDED.last_action, tenant_runtime.last_action), \
            last_action_at = coalesce(EXCLUDED.last_action_at, tenant_runtime.last_action_at), \
            observed_at = now()",
    )
    .bind(tx.tenant().as_uuid())
    .bind(o.desired)
    .bind(o.actual)
    .bind(&o.instance_id)
    .bind(&o.spec_hash)
    .bind(o.restarts)
    .bind(o.backoff_until)
    .bind(&o.last_exit)
    .bind(&o.last_error)
    .bind(&o.last_action)
    .bind(o.launch_failures)
    .execute(&mut **tx)
    .await
    .map_err(DbError::query("recording what the reconciler observed"))?;
    Ok(())
}

/// The transaction's tenant's runtime row as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct RuntimeRow {
    pub desired: String,
    pub actual: String,
    pub instance_id: Option<String>,
    pub spec_hash: Option<String>,
    pub restarts: i32,
    pub launch_failures: i32,
    pub backoff_until: Option<DateTime<Utc>>,
    pub last_exit: Option<String>,
    pub last_error: Option<String>,
    pub last_action: Option<String>,
    pub last_action_at: Option<DateTime<Utc>>,
    pub observed_at: DateTime<Utc>,
}

/// The transaction's tenant's runtime row, if the reconciler wrote one.
pub async fn get(tx: &mut TenantTx) -> Result<Option<RuntimeRow>, DbError> {
    sqlx::query_as(
        "SELECT desired, actual, instance_id, spec_hash, restarts, launch_failures, backoff_until, last_exit, \
                last_error, last_action, last_action_at, observed_at \
         FROM tenant_runtime WHERE tenant_id = $1",
    )
    .bind(tx.tenant().as_uuid())
    .fetch_optional(&mut **tx)
    .await
    .map_err(DbError::query("reading a tenant's runtime"))
}

/// Appends an event to the transaction's tenant's timeline.
pub async fn add_event(tx: &mut TenantTx, kind: &str, detail: &str) -> Result<(), DbError> {
    sqlx::query("INSERT INTO tenant_runtime_events (tenant_id, kind, detail) VALUES ($1, $2, $3)")
        .bind(tx.tenant().as_uuid())
        .bind(kind)
        .bind(detail)
        .execute(&mut **tx)
        .await
        .map_err(DbError::query("recording a reconciler event"))?;
    Ok(())
}

/// A timeline event.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Event {
    pub at: DateTime<Utc>,
    pub kind: String,
    pub detail: String,
}

/// The transaction's tenant's newest `limit` timeline events, newest first.
pub async fn recent_events(tx: &mut TenantTx, limit: i64) -> Result<Vec<Event>, DbError> {
    sqlx::query_as(
        "SELECT at, kind, detail FROM tenant_runtime_events WHERE tenant_id = $1 \
         ORDER BY at DESC, id DESC LIMIT $2",
    )
    .bind(tx.tenant().as_uuid())
    .bind(limit)
    .fetch_all(&mut **tx)
    .await
    .map_err(DbError::query("reading the tenant's timeline"))
}
