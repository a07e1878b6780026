//! `GET /tenants/{id}/status` and `GET /fleet`: desired vs actual, heartbeat,
//! strategy health, errors. The reads are the store's fleet read model
//! (`polybot_store::repo::fleet`); this module only shapes them for the API.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use polybot_store::repo::fleet::{self, StatusFilter, TenantStatus};
use polybot_store::{DbError, TenantTx};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::AppState;
use crate::auth::{Caller, TenantAccess};
use crate::error::{ApiError, ApiResult};
use crate::tenants::ProvisioningView;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WorkerView {
    /// pending, starting, running, stopping, stopped, crash_loop,
    /// launch_backoff (the launch failed; see `last_error`), capacity
    /// (waiting for the account's Fargate capacity) or failed.
    pub state: String,
    /// The launcher's id of the running worker (pid, task ARN).
    pub instance_id: Option<String>,
    /// Restarts since the worker last ran steadily.
    pub restarts: i32,
    /// Launches that failed in a row (reset by a successful one).
    pub launch_failures: i32,
    /// While crash-looping or after a failed launch: no new start before this time.
    pub backoff_until: Option<DateTime<Utc>>,
    /// How the last worker ended (exit code, signal, stop reason).
    pub last_exit: Option<String>,
    /// When the reconciler last looked.
    pub observed_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HeartbeatView {
    pub at: DateTime<Utc>,
    pub age_seconds: i64,
    /// The lease epoch of the worker that sent it.
    pub epoch: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StatusView {
    pub tenant_id: Uuid,
    /// The tenant's lifecycle state.
    pub state: String,
    pub provisioning: ProvisioningView,
    /// Paused by an operator: only an operator can resume it.
    pub held_by_operator: bool,
    /// Why the operator holds it, if they said.
    pub hold_reason: Option<String>,
    /// running or stopped: what the reconciler aims for.
    pub desired: String,
    /// What the reconciler last observed.
    pub worker: WorkerView,
    pub last_heartbeat: Option<HeartbeatView>,
    /// Strategy name → health, from the newest heartbeat.
    #[schema(value_type = Object)]
    pub strategies: Value,
    /// Venue feed → its state (`ok`, `unreachable`, `geo_blocked`, …), the
    /// last error with its context and what to do about it, from the newest
    /// heartbeat; empty without live data.
    #[schema(value_type = Object)]
    pub venues: Value,
    /// The newest error with its context (onboarding, launcher, or worker).
    pub last_error: Option<String>,
}

impl StatusView {
    /// The API's view of the store's status read.
    pub fn from_status(status: TenantStatus) -> Self {
        let runtime = status.runtime.as_ref();
        let last_heartbeat = status.heartbeat.as_ref().map(|h| HeartbeatView {
            at: h.at,
            age_seconds: h.age_seconds(),
            epoch: h.epoch,
        });
        let health = status.health();
        let strategies = health
            .and_then(|h| serde_json::to_value(&h.strategies).ok())
            .unwrap_or_else(|| Value::Object(Default::default()));
        let venues = health
            .and_then(|h| serde_json::to_value(&h.venues).ok())
            .unwrap_or_else(|| Value::Object(Default::default()));
        let worker_error = health.and_then(|h| h.last_error.clone());
        let last_error = runtime
            .and_then(|r| r.last_error.clone())
            .or(worker_error)
            .or_else(|| status.tenant_error.clone());
        StatusView {
            tenant_id: status.id,
            desired: status.desired().to_owned(),
            worker: WorkerView {
                state: status.actual().to_owned(),
                instance_id: runtime.and_then(|r| r.instance_id.clone()),
                restarts: status.restarts(),
                launch_failures: runtime.map_or(0, |r| r.launch_failures),
                backoff_until: runtime.and_then(|r| r.backoff_until),
                last_exit: runtime.and_then(|r| r.last_exit.clone()),
                observed_at: runtime.map(|r| r.observed_at),
            },
            last_heartbeat,
            strategies,
            venues,
            last_error,
            provisioning: ProvisioningView {
                step: status.provisioning_step,
                last_error: status.tenant_error,
            },
            state: status.state.as_str().to_owned(),
            held_by_operator: status.held_by_operator,
            hold_reason: status.hold_reason,
        }
    }
}

/// Reads the transaction's tenant's status.
pub async fn load(tx: &mut TenantTx) -> Result<Option<StatusView>, DbError> {
    Ok(fleet::status(tx).await?.map(StatusView::from_status))
}

/// A tenant's status: desired vs actual worker, heartbeat, strategy health, last error.
#[utoipa::path(get, path = "/tenants/{id}/status", operation_id = "get_tenant_status", tag = "status",
    params(("id" = Uuid, Path, description = "the tenant's id")),
    responses(
        (status = 200, description = "the tenant's desired and actual worker state and its last heartbeat", body = StatusView),
        (status = 401, description = "no bearer token, or not a valid one", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such tenant, or not one this token may see", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get(
    State(state): State<AppState>,
    TenantAccess { tenant, .. }: TenantAccess,
) -> ApiResult<Json<StatusView>> {
    let mut tx = state.db.tenant(tenant).await?;
    let view = load(&mut tx).await?.ok_or(ApiError::NotFound("tenant"))?;
    tx.commit().await?;
    Ok(Json(view))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FleetQuery {
    /// Only tenants in this lifecycle state.
    state: Option<String>,
    /// Only tenants whose worker is in this state (running, crash_loop, …).
    worker: Option<String>,
    /// At most this many (1 to 500, default 100).
    limit: Option<i64>,
    /// The `next_cursor` of the previous page (a tenant id).
    cursor: Option<Uuid>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FleetPage {
    pub items: Vec<StatusView>,
    pub next_cursor: Option<Uuid>,
}

/// Every tenant's status at once (an operator sees the fleet; a tenant token, itself).
#[utoipa::path(get, path = "/fleet", operation_id = "list_fleet", tag = "status",
    params(FleetQuery),
    responses(
        (status = 200, description = "a page of every visible tenant's worker state", body = FleetPage),
        (status = 401, description = "no bearer token, or not a valid one", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "a field of the request is invalid", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn fleet(
    State(state): State<AppState>,
    caller: Caller,
    axum::extract::Query(query): axum::extract::Query<FleetQuery>,
) -> ApiResult<Json<FleetPage>> {
    let limit = query.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::Validation(vec![
            polybot_core::validation::FieldError::new("limit", "must be between 1 and 500"),
        ]));
    }
    let rows: Vec<TenantStatus> = match caller {
        Caller::Tenant(own) => {
            let mut tx = state.db.tenant(own).await?;
            let row = fleet::status(&mut tx).await?;
            tx.commit().await?;
            row.into_iter().collect()
        }
        Caller::Operator => {
            let mut op = state.db.operator().await?;
            let filter = StatusFilter {
                state: query.state,
                worker: query.worker,
                after: query.cursor,
                limit: limit + 1,
            };
            let rows = fleet::statuses(&mut op, &filter).await?;
            op.commit().await?;
            rows
        }
    };
    let mut items: Vec<StatusView> = rows.into_iter().map(StatusView::from_status).collect();
    let next_cursor = if items.len() as i64 > limit {
        items.truncate(usize::try_from(limit).unwrap_or(0));
        items.last().map(|s| s.tenant_id)
    } else {
        None
    };
    Ok(Json(FleetPage { items, next_cursor }))
}
