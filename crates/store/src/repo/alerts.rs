//! Alerting's tables: the channels alerts are sent to (a tenant's and the
//! operator's), the state of each raised alert, the per-minute worker
//! availability, and the one fleet-wide read the alert evaluator decides on.
//!
//! Deciding which alert fires is not here (the control plane's
//! `alerts::rules` does that, without I/O); neither is delivery.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde_json::Value;
use uuid::Uuid;

use crate::{DbError, OperatorTx, TenantTx};

// ---------------------------------------------------------------------------
// Channels
// ---------------------------------------------------------------------------

/// A channel as stored, secret included (a webhook secret or a bot token).
#[derive(Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ChannelRow {
    pub id: Uuid,
    /// `webhook` or `telegram`.
    pub kind: String,
    /// The webhook URL, or the Telegram chat id.
    pub target: String,
    pub secret: String,
}

impl std::fmt::Debug for ChannelRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The target may carry a token in its query; the secret is one.
        f.debug_struct("ChannelRow")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// The transaction's tenant's channels, in the order they were given.
pub async fn tenant_channels(tx: &mut TenantTx) -> Result<Vec<ChannelRow>, DbError> {
    sqlx::query_as(
        "SELECT id, kind, target, secret FROM alert_channels WHERE tenant_id = $1 \
         ORDER BY created_at, id",
    )
    .bind(tx.tenant().as_uuid())
    .fetch_all(&mut **tx)
    .await
    .map_err(DbError::query("reading alert channels"))
}

/// Replaces the transaction's tenant's channels with `channels` (kept in
/// this order).
pub async fn replace_tenant_channels(
    tx: &mut TenantTx,
    channels: &[ChannelRow],
) -> Result<(), DbError> {
    let tenant = tx.tenant().as_uuid();
    sqlx::query("DELETE FROM alert_channels WHERE tenant_id = $1")
        .bind(tenant)
        .execute(&mut **tx)
        .await
        .map_err(DbError::query("replacing alert channels"))?;
    for (i, c) in channels.iter().enumerate() {
        // One transaction shares one now(): the offset keeps the given order.
        sqlx::query(
            "INSERT INTO alert_channels (id, tenant_id, kind, target, secret, created_at) \
             VALUES ($1, $2, $3, $4, $5, now() + $6 * interval '1 microsecond')",
        )
        .bind(c.id)
        .bind(tenant)
        .bind(&c.kind)
        .bind(&c.target)
        .bind(&c.secret)
        .bind(i32::try_from(i).unwrap_or(i32::MAX))
        .execute(&mut **tx)
        .await
        .map_err(DbError::query("storing an alert channel"))?;
    }
    Ok(())
}

/// The operator-wide channels (every tenant's alerts), in the order given.
pub async fn operator_channels(op: &mut OperatorTx) -> Result<Vec<ChannelRow>, DbError> {
    sqlx::query_as(
        "SELECT id, kind, target, secret FROM operator_alert_channels ORDER BY created_at, id",
    )
    .fetch_all(&mut **op)
    .await
    .map_err(DbError::query("reading operator alert channels"))
}

/// Replaces the operator-wide channels. They are not tenant data, so the
/// operator transaction may write them.
pub async fn replace_operator_channels(
    op: &mut OperatorTx,
    channels: &[ChannelRow],
) -> Result<(), DbError> {
    sqlx::query("DELETE FROM operator_alert_channels")
        .execute(&mut **op)
        .await
        .map_err(DbError::query("replacing operator alert channels"))?;
    for (i, c) in channels.iter().enumerate() {
        sqlx::query(
            "INSERT INTO operator_alert_channels (id, kind, target, secret, created_at) \
             VALUES ($1, $2, $3, $4, now() + $5 * interval '1 microsecond')",
        )
        .bind(c.id)
        .bind(&c.kind)
        .bind(&c.target)
        .bind(&c.secret)
        .bind(i32::try_from(i).unwrap_or(i32::MAX))
        .execute(&mut **op)
        .await
        .map_err(DbError::query("storing an operator alert channel"))?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// What the evaluator watches
// ---------------------------------------------------------------------------

/// One tenant as the alert evaluator sees it: its state, its runtime, its
/// newest heartbeat, today's PnL and its newest recent fencing.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct WatchRow {
    pub tenant_id: Uuid,
    pub name: String,
    pub state: String,
    /// Since when the tenant is in `state` (its last update).
    pub updated_at: DateTime<Utc>,
    /// The reconciler's view of the worker; `None` before its first pass.
    pub actual: Option<String>,
    pub restarts: Option<i32>,
    pub last_exit: Option<String>,
    pub heartbeat_at: Option<DateTime<Utc>>,
    /// The newest heartbeat's JSON (a `WorkerHealth`).
    pub health: Option<Value>,
    /// Realized PnL of trades executed since midnight UTC.
    pub pnl_today: Decimal,
    /// `risk.max_daily_loss` of the tenant's config, as written.
    pub max_daily_loss: Option<String>,
    /// The detail of the newest `fenced` runtime event inside the window.
    pub fenced: Option<String>,
}

/// What the evaluator decides on: every tenant not offboarded, and the
/// database's clock at the time of the read.
#[derive(Debug, Clone, PartialEq)]
pub struct Watch {
    pub now: DateTime<Utc>,
    pub tenants: Vec<WatchRow>,
}

/// Reads every tenant not offboarded in one statement, with fencing events
/// no older than `fenced_window_secs`.
///
/// The newest heartbeat, today's trades and the newest fencing are joined
/// as `LATERAL` probes of the `(tenant_id, at DESC)`-style indexes, not as
/// set-wise `DISTINCT ON`/`GROUP BY`: heartbeats are kept a day (17 million
/// rows at 1,000 tenants), and over 1,000 tenants × 1,000 heartbeats the
/// set-wise newest-per-tenant took 10 s where the probes took 50 ms.
pub async fn watch(op: &mut OperatorTx, fenced_window_secs: f64) -> Result<Watch, DbError> {
    let now: DateTime<Utc> = sqlx::query_scalar("SELECT now()")
        .fetch_one(&mut **op)
        .await
        .map_err(DbError::query("reading the database clock"))?;
    let tenants = sqlx::query_as(
        "SELECT t.id AS tenant_id, t.name, t.state, t.updated_at, \
                r.actual, r.restarts, r.last_exit, \
                h.at AS heartbeat_at, h.health, \
                coalesce(d.pnl, 0) AS pnl_today, \
                c.risk->>'max_daily_loss' AS max_daily_loss, \
                f.detail AS fenced \
         FROM tenants t \
         LEFT JOIN tenant_configs c ON c.tenant_id = t.id \
         LEFT JOIN tenant_runtime r ON r.tenant_id = t.id \
         LEFT JOIN LATERAL ( \
             SELECT w.at, w.health FROM worker_heartbeats w \
             WHERE w.tenant_id = t.id ORDER BY w.at DESC LIMIT 1) h ON true \
         LEFT JOIN LATERAL ( \
             SELECT sum(x.realized_pnl) AS pnl FROM trades x \
             WHERE x.tenant_id = t.id AND x.executed_at >= date_trunc('day', now(), 'UTC')) d ON true \
         LEFT JOIN LATERAL ( \
             SELECT e.detail FROM tenant_runtime_events e \
             WHERE e.tenant_id = t.id AND e.kind = 'fenced' \
               AND e.at > now() - make_interval(secs => $1) \
             ORDER BY e.at DESC LIMIT 1) f ON true \
         WHERE t.state <> 'offboarded' \
         ORDER BY t.id",
    )
    .bind(fenced_window_secs)
    .fetch_all(&mut **op)
    .await
    .map_err(DbError::query("reading what alerts watch"))?;
    Ok(Watch { now, tenants })
}

// ---------------------------------------------------------------------------
// Alert state
// ---------------------------------------------------------------------------

/// A raised alert of one tenant.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AlertStateRow {
    pub tenant_id: Uuid,
    pub alert: String,
    /// The strategy of a breaker alert; empty otherwise.
    pub subject: String,
    pub firing: bool,
    pub summary: String,
    pub fired_at: DateTime<Utc>,
    /// While firing: since when its condition has been clear.
    pub clear_since: Option<DateTime<Utc>>,
}

/// Every firing alert of every tenant, by tenant and key.
pub async fn firing_states(op: &mut OperatorTx) -> Result<Vec<AlertStateRow>, DbError> {
    sqlx::query_as(
        "SELECT tenant_id, alert, subject, firing, summary, fired_at, clear_since \
         FROM alert_states WHERE firing ORDER BY tenant_id, alert, subject",
    )
    .fetch_all(&mut **op)
    .await
    .map_err(DbError::query("reading alert states"))
}

/// Starts an alert firing (again): a new `fired_at`, no longer clearing.
pub async fn raise(
    tx: &mut TenantTx,
    alert: &str,
    subject: &str,
    summary: &str,
    at: DateTime<Utc>,
) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO alert_states (tenant_id, alert, subject, firing, summary, fired_at) \
         VALUES ($1, $2, $3, true, $4, $5) \
         ON CONFLICT (tenant_id, alert, subject) DO UPDATE SET firing = true, \
            summary = EXCLUDED.summary, fired_at = EXCLUDED.fired_at, \
            clear_since = NULL, resolved_at = NULL",
    )
    .bind(tx.tenant().as_uuid())
    .bind(alert)
    .bind(subject)
    .bind(summary)
    .bind(at)
    .execute(&mut **tx)
    .await
    .map_err(DbError::query("raising an alert"))?;
    Ok(())
}

/// Marks a firing alert's condition clear since `since`, or present again
/// (`None`): the resolution hold starts or is called off.
pub async fn set_clear_since(
    tx: &mut TenantTx,
    alert: &str,
    subject: &str,
    since: Option<DateTime<Utc>>,
) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE alert_states SET clear_since = $4 \
         WHERE tenant_id = $1 AND alert = $2 AND subject = $3",
    )
    .bind(tx.tenant().as_uuid())
    .bind(alert)
    .bind(subject)
    .bind(since)
    .execute(&mut **tx)
    .await
    .map_err(DbError::query("holding an alert's resolution"))?;
    Ok(())
}

/// Resolves a firing alert at `at`.
pub async fn resolve(
    tx: &mut TenantTx,
    alert: &str,
    subject: &str,
    at: DateTime<Utc>,
) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE alert_states SET firing = false, resolved_at = $4, clear_since = NULL \
         WHERE tenant_id = $1 AND alert = $2 AND subject = $3",
    )
    .bind(tx.tenant().as_uuid())
    .bind(alert)
    .bind(subject)
    .bind(at)
    .execute(&mut **tx)
    .await
    .map_err(DbError::query("resolving an alert"))?;
    Ok(())
}

/// A firing alert as the dashboard shows it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct FiringAlert {
    pub alert: String,
    pub subject: String,
    pub summary: String,
    pub fired_at: DateTime<Utc>,
}

/// The transaction's tenant's firing alerts, oldest first.
pub async fn firing(tx: &mut TenantTx) -> Result<Vec<FiringAlert>, DbError> {
    sqlx::query_as(
        "SELECT alert, subject, summary, fired_at FROM alert_states \
         WHERE tenant_id = $1 AND firing ORDER BY fired_at, alert, subject",
    )
    .bind(tx.tenant().as_uuid())
    .fetch_all(&mut **tx)
    .await
    .map_err(DbError::query("reading firing alerts"))
}

// ---------------------------------------------------------------------------
// Availability
// ---------------------------------------------------------------------------

/// Adds `desired_ms` and `up_ms` (capped at `desired_ms`) to the
/// transaction's tenant's availability in `minute`. A tenant deleted
/// meanwhile is skipped; returns whether a row was written.
pub async fn add_availability(
    tx: &mut TenantTx,
    minute: DateTime<Utc>,
    desired_ms: i64,
    up_ms: i64,
) -> Result<bool, DbError> {
    let written = sqlx::query(
        "INSERT INTO worker_availability (tenant_id, minute, desired_ms, up_ms) \
         SELECT $1, $2, $3, $4 WHERE EXISTS (SELECT 1 FROM tenants WHERE id = $1) \
         ON CONFLICT (tenant_id, minute) DO UPDATE SET \
            desired_ms = worker_availability.desired_ms + EXCLUDED.desired_ms, \
            up_ms = worker_availability.up_ms + EXCLUDED.up_ms",
    )
    .bind(tx.tenant().as_uuid())
    .bind(minute)
    .bind(desired_ms)
    .bind(up_ms.min(desired_ms))
    .execute(&mut **tx)
    .await
    .map_err(DbError::query("recording worker availability"))?;
    Ok(written.rows_affected() > 0)
}
