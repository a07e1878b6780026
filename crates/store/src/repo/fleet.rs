//! The fleet read model: each tenant with its runtime row, its newest
//! heartbeat (decoded into [`WorkerHealth`]) and, for operator views, its
//! figures (opportunities, trades, PnL, errors, availability, firing alerts).
//!
//! Status ([`status`], [`statuses`]), `/metrics` and the dashboard
//! ([`figures`], [`tenant_figures`]), the reconciler ([`desired`]) and the
//! alert evaluator ([`watched`]) read the fleet through this module, so the join of tenant, runtime and newest heartbeat
//! is written once (`tenant_runtime_heartbeat!`). Figures are aggregated
//! set-wise: one `GROUP BY` per table over the whole fleet, joined by tenant,
//! never a subquery per tenant.
//!
//! The newest heartbeat is an index probe per tenant (`LATERAL … LIMIT 1` on
//! `worker_heartbeats (tenant_id, at DESC)`), not `DISTINCT ON`: each tenant
//! keeps a day of heartbeats (17,280 at 5 s), and `DISTINCT ON` would read
//! all of them on every scrape where the probe reads one (see
//! `docs/benchmarks.md`).
//!
//! Writes to the runtime row live in [`super::runtime`]; nothing here writes.

use chrono::{DateTime, Utc};
use polybot_core::TenantId;
use polybot_core::lifecycle::TenantState;
use polybot_core::worker::{BreakerPosition, WorkerHealth};
use rust_decimal::Decimal;
use serde_json::Value;
use uuid::Uuid;

use crate::{DbError, OperatorTx, TenantTx};

/// `FROM` tenants, their runtime rows and their newest heartbeats (aliases
/// `t`, `r`, `h`); the one place this join is written.
macro_rules! tenant_runtime_heartbeat {
    () => {
        "FROM tenants t \
         LEFT JOIN tenant_runtime r ON r.tenant_id = t.id \
         LEFT JOIN LATERAL (SELECT at, epoch, health FROM worker_heartbeats \
                            WHERE tenant_id = t.id ORDER BY at DESC LIMIT 1) h ON true "
    };
}

/// The columns of [`StatusRow`].
macro_rules! status_columns {
    () => {
        "SELECT t.id, t.name, t.state, t.mode, t.provisioning_step, t.last_error AS tenant_error, \
                t.held_by_operator, t.hold_reason, t.updated_at, r.desired, r.actual, r.instance_id, r.spec_hash, r.restarts, \
                r.launch_failures, r.backoff_until, r.last_exit, r.last_error AS runtime_error, r.observed_at, \
                h.at AS heartbeat_at, h.epoch AS heartbeat_epoch, \
                (extract(epoch FROM now() - h.at) * 1000)::bigint AS heartbeat_age_ms, \
                h.health::text AS health "
    };
}

/// Per-tenant aggregates of the whole fleet, one `GROUP BY` each (aliases
/// `o`, `x`, `e`, `a`, `s`). Under a tenant scope row level security narrows
/// each to that tenant.
///
/// Each time bound is a scalar subquery, `(SELECT now() - …)`, so that it is
/// computed once per statement (an init plan) rather than once per row:
/// `now()` is only stable, so the planner does not fold `now() - interval`,
/// and timestamp arithmetic with days or time zones on every availability
/// minute and trade was about a sixth of the statement's time.
macro_rules! figures_ctes {
    () => {
        "WITH o AS (SELECT tenant_id, count(*) AS n, count(executed_at) AS executed \
                    FROM opportunities WHERE details -> 'refused' IS NULL GROUP BY tenant_id), \
              x AS (SELECT tenant_id, count(*) AS n, \
                           coalesce(sum(coalesce(realized_pnl, 0) - fee), 0) AS pnl_total, \
                           coalesce(sum(coalesce(realized_pnl, 0) - fee) FILTER \
                               (WHERE executed_at >= (SELECT date_trunc('day', now(), 'UTC'))), 0) AS pnl_today \
                    FROM trades GROUP BY tenant_id), \
              e AS (SELECT tenant_id, count(*) AS n FROM tenant_runtime_events \
                    WHERE kind IN ('crashed', 'fenced', 'error') GROUP BY tenant_id), \
              a AS (SELECT tenant_id, \
                           sum(up_ms) FILTER (WHERE minute >= (SELECT now() - interval '1 hour'))::float8 \
                             / nullif(sum(desired_ms) FILTER (WHERE minute >= (SELECT now() - interval '1 hour')), 0) \
                             AS availability_1h, \
                           sum(up_ms)::float8 / nullif(sum(desired_ms), 0) AS availability_30d \
                    FROM worker_availability WHERE minute >= (SELECT now() - interval '30 days') \
                    GROUP BY tenant_id), \
              s AS (SELECT tenant_id, array_agg(label ORDER BY label) AS firing \
                    FROM (SELECT tenant_id, alert || CASE WHEN subject = '' THEN '' ELSE ':' || subject END AS label \
                          FROM alert_states WHERE firing) f \
                    GROUP BY tenant_id) "
    };
}

/// The columns of [`FiguresRow`], after [`status_columns!`].
macro_rules! figures_columns {
    () => {
        ", coalesce(o.n, 0) AS opportunities, coalesce(o.executed, 0) AS opportunities_executed, \
           coalesce(x.n, 0) AS trades, coalesce(x.pnl_total, 0) AS pnl_total, \
           coalesce(x.pnl_today, 0) AS pnl_today, coalesce(e.n, 0) AS errors, \
           a.availability_1h, a.availability_30d, coalesce(s.firing, '{}'::text[]) AS firing_alerts "
    };
}

macro_rules! figures_joins {
    () => {
        "LEFT JOIN o ON o.tenant_id = t.id LEFT JOIN x ON x.tenant_id = t.id \
         LEFT JOIN e ON e.tenant_id = t.id LEFT JOIN a ON a.tenant_id = t.id \
         LEFT JOIN s ON s.tenant_id = t.id "
    };
}

/// The newest heartbeat of a tenant.
#[derive(Debug, Clone, PartialEq)]
pub struct Heartbeat {
    pub at: DateTime<Utc>,
    /// The lease epoch of the worker that wrote it.
    pub epoch: i64,
    /// Milliseconds between the heartbeat and the read (database clock).
    pub age_ms: i64,
    /// The heartbeat's content; `None` when it is not a [`WorkerHealth`]
    /// (an incompatible or empty heartbeat still proves the worker lives).
    pub health: Option<WorkerHealth>,
}

impl Heartbeat {
    /// Whole seconds since the heartbeat, never negative.
    pub fn age_seconds(&self) -> i64 {
        (self.age_ms / 1000).max(0)
    }

    /// The age in seconds with millisecond precision (`1.234`).
    pub fn age(&self) -> Decimal {
        Decimal::new(self.age_ms.max(0), 3)
    }
}

/// The `tenant_runtime` row: what the reconciler last observed and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Runtime {
    pub desired: String,
    pub actual: String,
    pub instance_id: Option<String>,
    pub spec_hash: Option<String>,
    pub restarts: i32,
    /// Launches (RunTask) that failed in a row.
    pub launch_failures: i32,
    pub backoff_until: Option<DateTime<Utc>>,
    pub last_exit: Option<String>,
    pub last_error: Option<String>,
    pub observed_at: DateTime<Utc>,
}

/// One tenant's status: lifecycle, runtime and newest heartbeat.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantStatus {
    pub id: Uuid,
    pub name: String,
    pub state: TenantState,
    pub mode: String,
    pub provisioning_step: String,
    /// The tenant's own error (onboarding, offboarding).
    pub tenant_error: Option<String>,
    /// Paused by an operator; only an operator resumes it.
    pub held_by_operator: bool,
    pub hold_reason: Option<String>,
    pub updated_at: DateTime<Utc>,
    /// `None` until the reconciler first looked.
    pub runtime: Option<Runtime>,
    pub heartbeat: Option<Heartbeat>,
}

impl TenantStatus {
    pub fn tenant_id(&self) -> TenantId {
        TenantId::from_uuid(self.id)
    }

    /// Whether the tenant's worker should run: only an active tenant's
    /// does, and not while the reconciler holds it for a lapsed payment.
    pub fn desired_running(&self) -> bool {
        self.state.wants_worker()
            && self
                .runtime
                .as_ref()
                .is_none_or(|r| r.desired != crate::repo::runtime::HELD_FOR_PAYMENT)
    }

    /// `running` or `stopped`, from the lifecycle state and a payment hold.
    pub fn desired(&self) -> &'static str {
        if self.desired_running() {
            "running"
        } else {
            "stopped"
        }
    }

    /// The worker's state as the reconciler last saw it (`pending` before).
    pub fn actual(&self) -> &str {
        self.runtime
            .as_ref()
            .map_or("pending", |r| r.actual.as_str())
    }

    pub fn restarts(&self) -> i32 {
        self.runtime.as_ref().map_or(0, |r| r.restarts)
    }

    /// The newest heartbeat's content, if it has one.
    pub fn health(&self) -> Option<&WorkerHealth> {
        self.heartbeat.as_ref().and_then(|h| h.health.as_ref())
    }

    /// Strategy name → breaker position, from the newest heartbeat.
    pub fn breakers(&self) -> Vec<(&str, BreakerPosition)> {
        self.health()
            .map(|h| {
                h.strategies
                    .iter()
                    .map(|(name, s)| (name.as_str(), s.breaker))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The runtime's error, else the tenant's (what operator views show).
    pub fn runtime_or_tenant_error(&self) -> Option<&str> {
        self.runtime
            .as_ref()
            .and_then(|r| r.last_error.as_deref())
            .or(self.tenant_error.as_deref())
    }
}

/// One tenant's operational figures, for `/metrics` and the dashboard.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantFigures {
    pub status: TenantStatus,
    pub opportunities: i64,
    pub opportunities_executed: i64,
    pub trades: i64,
    /// Realized PnL since onboarding, net of fees.
    pub pnl_total: Decimal,
    /// Realized PnL net of fees since midnight UTC by the wall clock (see
    /// [`TenantFigures::today`] for the figure to show).
    pub pnl_today: Decimal,
    /// Worker crashes, fencings and launcher errors the reconciler recorded.
    pub errors: i64,
    /// The availability SLI over the last hour and the last 30 days (`None`
    /// when the worker was never desired in the window).
    pub availability_1h: Option<f64>,
    pub availability_30d: Option<f64>,
    /// `alert` or `alert:subject`, sorted.
    pub firing_alerts: Vec<String>,
}

impl TenantFigures {
    /// Today's PnL as the engine reports it (marked to market, on the
    /// engine's own clock, so a replay's recorded day counts), else the
    /// realized PnL net of fees since midnight UTC.
    pub fn today(&self) -> Decimal {
        engine_today(&self.status).unwrap_or(self.pnl_today)
    }
}

/// Today's PnL from the tenant's newest heartbeat, on the engine's own clock.
fn engine_today(status: &TenantStatus) -> Option<Decimal> {
    status
        .heartbeat
        .as_ref()
        .and_then(|h| h.health.as_ref())
        .and_then(|h| h.pnl.as_ref())
        .map(|p| p.daily.normalize())
}

#[derive(Debug, sqlx::FromRow)]
struct StatusRow {
    id: Uuid,
    name: String,
    #[sqlx(try_from = "String")]
    state: TenantState,
    mode: String,
    provisioning_step: String,
    tenant_error: Option<String>,
    held_by_operator: bool,
    hold_reason: Option<String>,
    updated_at: DateTime<Utc>,
    desired: Option<String>,
    actual: Option<String>,
    instance_id: Option<String>,
    spec_hash: Option<String>,
    restarts: Option<i32>,
    launch_failures: Option<i32>,
    backoff_until: Option<DateTime<Utc>>,
    last_exit: Option<String>,
    runtime_error: Option<String>,
    observed_at: Option<DateTime<Utc>>,
    heartbeat_at: Option<DateTime<Utc>>,
    heartbeat_epoch: Option<i64>,
    heartbeat_age_ms: Option<i64>,
    /// The heartbeat as JSON text, decoded straight into [`WorkerHealth`].
    health: Option<String>,
}

impl From<StatusRow> for TenantStatus {
    fn from(row: StatusRow) -> Self {
        let runtime = match (row.actual, row.observed_at) {
            (Some(actual), Some(observed_at)) => Some(Runtime {
                desired: row.desired.unwrap_or_else(|| "stopped".to_owned()),
                actual,
                instance_id: row.instance_id,
                spec_hash: row.spec_hash,
                restarts: row.restarts.unwrap_or(0),
                launch_failures: row.launch_failures.unwrap_or(0),
                backoff_until: row.backoff_until,
                last_exit: row.last_exit,
                last_error: row.runtime_error,
                observed_at,
            }),
            _ => None,
        };
        let heartbeat = match (row.heartbeat_at, row.heartbeat_epoch) {
            (Some(at), Some(epoch)) => Some(Heartbeat {
                at,
                epoch,
                age_ms: row.heartbeat_age_ms.unwrap_or(0),
                health: row.health.as_deref().and_then(WorkerHealth::from_json_text),
            }),
            _ => None,
        };
        TenantStatus {
            id: row.id,
            name: row.name,
            state: row.state,
            mode: row.mode,
            provisioning_step: row.provisioning_step,
            tenant_error: row.tenant_error,
            held_by_operator: row.held_by_operator,
            hold_reason: row.hold_reason,
            updated_at: row.updated_at,
            runtime,
            heartbeat,
        }
    }
}

#[derive(Debug, sqlx::FromRow)]
struct FiguresRow {
    #[sqlx(flatten)]
    status: StatusRow,
    opportunities: i64,
    opportunities_executed: i64,
    trades: i64,
    pnl_total: Decimal,
    pnl_today: Decimal,
    errors: i64,
    availability_1h: Option<f64>,
    availability_30d: Option<f64>,
    firing_alerts: Vec<String>,
}

impl From<FiguresRow> for TenantFigures {
    fn from(row: FiguresRow) -> Self {
        TenantFigures {
            status: row.status.into(),
            opportunities: row.opportunities,
            opportunities_executed: row.opportunities_executed,
            trades: row.trades,
            pnl_total: row.pnl_total.normalize(),
            pnl_today: row.pnl_today.normalize(),
            errors: row.errors,
            availability_1h: row.availability_1h,
            availability_30d: row.availability_30d,
            firing_alerts: row.firing_alerts,
        }
    }
}

/// The transaction's tenant's status, if it exists.
pub async fn status(tx: &mut TenantTx) -> Result<Option<TenantStatus>, DbError> {
    let row: Option<StatusRow> = sqlx::query_as(concat!(
        status_columns!(),
        tenant_runtime_heartbeat!(),
        "WHERE t.id = $1"
    ))
    .bind(tx.tenant().as_uuid())
    .fetch_optional(&mut **tx)
    .await
    .map_err(DbError::query("reading a tenant's status"))?;
    Ok(row.map(Into::into))
}

/// Which tenants [`statuses`] returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatusFilter {
    /// Only tenants in this lifecycle state.
    pub state: Option<String>,
    /// Only tenants whose worker is in this state (`pending` before the
    /// reconciler first looked).
    pub worker: Option<String>,
    /// Only tenants whose id sorts after this one (a page's cursor).
    pub after: Option<Uuid>,
    pub limit: i64,
}

/// A page of the fleet's statuses, by tenant id (operator scope).
pub async fn statuses(
    op: &mut OperatorTx,
    filter: &StatusFilter,
) -> Result<Vec<TenantStatus>, DbError> {
    let rows: Vec<StatusRow> = sqlx::query_as(concat!(
        status_columns!(),
        tenant_runtime_heartbeat!(),
        "WHERE ($1::text IS NULL OR t.state = $1) \
           AND ($2::text IS NULL OR coalesce(r.actual, 'pending') = $2) \
           AND ($3::uuid IS NULL OR t.id > $3) ORDER BY t.id LIMIT $4"
    ))
    .bind(&filter.state)
    .bind(&filter.worker)
    .bind(filter.after)
    .bind(filter.limit)
    .fetch_all(&mut **op)
    .await
    .map_err(DbError::query("reading the fleet's status"))?;
    Ok(rows.into_iter().map(Into::into).collect())
}

/// Every tenant's figures but the offboarded ones', by name (operator scope).
pub async fn figures(op: &mut OperatorTx) -> Result<Vec<TenantFigures>, DbError> {
    let rows: Vec<FiguresRow> = sqlx::query_as(concat!(
        figures_ctes!(),
        status_columns!(),
        figures_columns!(),
        tenant_runtime_heartbeat!(),
        figures_joins!(),
        "WHERE t.state <> 'offboarded' ORDER BY t.name, t.id"
    ))
    .fetch_all(&mut **op)
    .await
    .map_err(DbError::query("reading the fleet's figures"))?;
    Ok(rows.into_iter().map(Into::into).collect())
}

/// The transaction's tenant's figures, if it exists (whatever its state).
pub async fn tenant_figures(tx: &mut TenantTx) -> Result<Option<TenantFigures>, DbError> {
    let row: Option<FiguresRow> = sqlx::query_as(concat!(
        figures_ctes!(),
        status_columns!(),
        figures_columns!(),
        tenant_runtime_heartbeat!(),
        figures_joins!(),
        "WHERE t.id = $1"
    ))
    .bind(tx.tenant().as_uuid())
    .fetch_optional(&mut **tx)
    .await
    .map_err(DbError::query("reading a tenant's figures"))?;
    Ok(row.map(Into::into))
}

/// Tenants by lifecycle state (operator scope); states without a tenant are absent.
pub async fn count_by_state(op: &mut OperatorTx) -> Result<Vec<(TenantState, i64)>, DbError> {
    #[derive(sqlx::FromRow)]
    struct Count {
        #[sqlx(try_from = "String")]
        state: TenantState,
        count: i64,
    }
    let rows: Vec<Count> = sqlx::query_as(
        "SELECT state, count(*) AS count FROM tenants GROUP BY state ORDER BY state",
    )
    .fetch_all(&mut **op)
    .await
    .map_err(DbError::query("counting tenants by state"))?;
    Ok(rows.into_iter().map(|r| (r.state, r.count)).collect())
}

/// One tenant as the reconciler reads it: what should run and what was
/// last observed.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredRow {
    pub id: Uuid,
    pub state: TenantState,
    pub mode: String,
    pub spec_version: i64,
    pub strategies: Value,
    pub risk: Value,
    /// The version of the tenant's stored secret (`None` before onboarding stored it).
    pub secret_version: Option<i64>,
    pub runtime: Option<Runtime>,
    pub last_heartbeat: Option<DateTime<Utc>>,
    /// The release a rollout gave the tenant (`tenant_releases`); `None`:
    /// the fleet's ([`super::rollouts::fleet_release`]).
    pub release: Option<super::rollouts::TenantRelease>,
}

#[derive(Debug, sqlx::FromRow)]
struct DesiredSqlRow {
    id: Uuid,
    #[sqlx(try_from = "String")]
    state: TenantState,
    mode: String,
    spec_version: i64,
    strategies: Value,
    risk: Value,
    secret_version: Option<i64>,
    desired: Option<String>,
    actual: Option<String>,
    instance_id: Option<String>,
    spec_hash: Option<String>,
    restarts: Option<i32>,
    launch_failures: Option<i32>,
    backoff_until: Option<DateTime<Utc>>,
    last_exit: Option<String>,
    runtime_error: Option<String>,
    observed_at: Option<DateTime<Utc>>,
    heartbeat_at: Option<DateTime<Utc>>,
    release_rollout: Option<i64>,
    release_image: Option<String>,
    release_settings: Option<Value>,
    release_state: Option<String>,
}

/// Every tenant the reconciler must look at (operator scope): all but the
/// offboarded ones whose worker is known to be stopped.
pub async fn desired(op: &mut OperatorTx) -> Result<Vec<DesiredRow>, DbError> {
    let rows: Vec<DesiredSqlRow> = sqlx::query_as(concat!(
        "SELECT t.id, t.state, t.mode, t.spec_version, c.strategies, c.risk, \
                sec.version AS secret_version, r.desired, r.actual, r.instance_id, r.spec_hash, \
                r.restarts, r.launch_failures, r.backoff_until, r.last_exit, r.last_error AS runtime_error, \
                r.observed_at, h.at AS heartbeat_at, rel.rollout_id AS release_rollout, \
                rel.image AS release_image, rel.settings AS release_settings, \
                rel.state AS release_state ",
        tenant_runtime_heartbeat!(),
        "JOIN tenant_configs c ON c.tenant_id = t.id \
         LEFT JOIN tenant_secrets sec ON sec.tenant_id = t.id \
         LEFT JOIN tenant_releases rel ON rel.tenant_id = t.id \
         WHERE t.state <> 'offboarded' OR r.actual NOT IN ('stopped')"
    ))
    .fetch_all(&mut **op)
    .await
    .map_err(DbError::query("reading the desired state"))?;
    Ok(rows
        .into_iter()
        .map(|row| DesiredRow {
            id: row.id,
            state: row.state,
            mode: row.mode,
            spec_version: row.spec_version,
            strategies: row.strategies,
            risk: row.risk,
            secret_version: row.secret_version,
            runtime: match (row.actual, row.observed_at) {
                (Some(actual), Some(observed_at)) => Some(Runtime {
                    desired: row.desired.unwrap_or_else(|| "stopped".to_owned()),
                    actual,
                    instance_id: row.instance_id,
                    spec_hash: row.spec_hash,
                    restarts: row.restarts.unwrap_or(0),
                    launch_failures: row.launch_failures.unwrap_or(0),
                    backoff_until: row.backoff_until,
                    last_exit: row.last_exit,
                    last_error: row.runtime_error,
                    observed_at,
                }),
                _ => None,
            },
            last_heartbeat: row.heartbeat_at,
            release: super::rollouts::TenantRelease::from_columns(
                row.release_rollout,
                row.release_image,
                row.release_settings,
                row.release_state,
            ),
        })
        .collect())
}

/// What the alert evaluator decides on: every tenant but the offboarded
/// ones, and the database's clock at the read (the rules measure silence and
/// holds against it, not against this replica's clock).
#[derive(Debug, Clone, PartialEq)]
pub struct Watch {
    pub now: DateTime<Utc>,
    pub tenants: Vec<Watched>,
}

/// One tenant as the alert evaluator watches it.
#[derive(Debug, Clone, PartialEq)]
pub struct Watched {
    pub status: TenantStatus,
    /// Realized PnL net of fees since midnight UTC by the wall clock (see
    /// [`Watched::today`] for the figure to judge).
    pub pnl_today: Decimal,
    /// The tenant's daily loss limit (`risk.max_daily_loss`), if set and a number.
    pub max_daily_loss: Option<Decimal>,
    /// The newest `fenced` timeline event within the window, if any.
    pub fenced: Option<String>,
}

impl Watched {
    /// Today's PnL as the engine reports it (so a replay's recorded day
    /// counts, as on the dashboard), else the realized PnL net of fees since
    /// midnight UTC.
    pub fn today(&self) -> Decimal {
        engine_today(&self.status).unwrap_or(self.pnl_today)
    }
}

#[derive(Debug, sqlx::FromRow)]
struct WatchedRow {
    #[sqlx(flatten)]
    status: StatusRow,
    pnl_today: Decimal,
    max_daily_loss: Option<String>,
    fenced: Option<String>,
}

/// Every tenant but the offboarded ones, with what alerts are raised on
/// (operator scope): status, today's PnL, the daily loss limit, and the
/// newest fencing of the last `fenced_within`; with the database's clock.
pub async fn watched(
    op: &mut OperatorTx,
    fenced_within: std::time::Duration,
) -> Result<Watch, DbError> {
    // now() is the transaction's start, so it is the clock of the read below too.
    let now: DateTime<Utc> = sqlx::query_scalar("SELECT now()")
        .fetch_one(&mut **op)
        .await
        .map_err(DbError::query("reading the database clock"))?;
    let rows: Vec<WatchedRow> = sqlx::query_as(concat!(
        "WITH x AS (SELECT tenant_id, sum(coalesce(realized_pnl, 0) - fee) AS pnl_today FROM trades \
                    WHERE executed_at >= date_trunc('day', now(), 'UTC') GROUP BY tenant_id), \
              f AS (SELECT DISTINCT ON (tenant_id) tenant_id, detail FROM tenant_runtime_events \
                    WHERE kind = 'fenced' AND at > now() - make_interval(secs => $1) \
                    ORDER BY tenant_id, at DESC) ",
        status_columns!(),
        ", coalesce(x.pnl_today, 0) AS pnl_today, c.risk->>'max_daily_loss' AS max_daily_loss, \
           f.detail AS fenced ",
        tenant_runtime_heartbeat!(),
        "LEFT JOIN tenant_configs c ON c.tenant_id = t.id \
         LEFT JOIN x ON x.tenant_id = t.id LEFT JOIN f ON f.tenant_id = t.id \
         WHERE t.state <> 'offboarded' ORDER BY t.id"
    ))
    .bind(fenced_within.as_secs_f64())
    .fetch_all(&mut **op)
    .await
    .map_err(DbError::query("reading what alerts watch"))?;
    let tenants = rows
        .into_iter()
        .map(|row| Watched {
            status: row.status.into(),
            pnl_today: row.pnl_today.normalize(),
            max_daily_loss: row.max_daily_loss.and_then(|m| m.trim().parse().ok()),
            fenced: row.fenced,
        })
        .collect();
    Ok(Watch { now, tenants })
}
