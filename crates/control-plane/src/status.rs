//! `GET /tenants/{id}/status`: desired vs actual, heartbeat, strategy health, errors.

use axum::Json;
use axum::extract::{Path, State};
use chrono::{DateTime, Utc};
use polybot_store::{DbError, TenantTx};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::tenants::ProvisioningView;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WorkerView {
    /// pending, starting, running, stopping, stopped, crash_loop or failed.
    pub state: String,
    /// The launcher's id of the running worker (pid, task ARN).
    pub instance_id: Option<String>,
    /// Restarts since the worker last ran steadily.
    pub restarts: i32,
    /// While crash-looping: no new start before this time.
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
    /// running or stopped: what the reconciler aims for.
    pub desired: String,
    /// What the reconciler last observed.
    pub worker: WorkerView,
    pub last_heartbeat: Option<HeartbeatView>,
    /// Strategy name → health, from the newest heartbeat.
    #[schema(value_type = Object)]
    pub strategies: Value,
    /// The newest error with its context (onboarding, launcher, or worker).
    pub last_error: Option<String>,
}

type StatusRow = (
    Uuid,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i32>,
    Option<DateTime<Utc>>,
    Option<String>,
    Option<String>,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
    Option<i64>,
    Option<Value>,
);

const STATUS_SELECT: &str = "SELECT t.id, t.state, t.provisioning_step, t.last_error, \
        r.actual, r.instance_id, r.restarts, r.backoff_until, r.last_exit, r.last_error, r.observed_at, \
        h.at, h.epoch, h.health \
     FROM tenants t \
     LEFT JOIN tenant_runtime r ON r.tenant_id = t.id \
     LEFT JOIN LATERAL (SELECT at, epoch, health FROM worker_heartbeats \
                        WHERE tenant_id = t.id ORDER BY at DESC LIMIT 1) h ON true";

/// Reads one tenant's status in one statement.
pub async fn load(tx: &mut TenantTx) -> Result<Option<StatusView>, DbError> {
    Ok(load_row(tx).await?.map(view_from))
}

fn view_from(row: StatusRow) -> StatusView {
    let (
        id,
        state,
        step,
        tenant_error,
        actual,
        instance_id,
        restarts,
        backoff_until,
        last_exit,
        runtime_error,
        observed_at,
        hb_at,
        hb_epoch,
        health,
    ) = row;
    let desired = if state == "active" {
        "running"
    } else {
        "stopped"
    };
    let last_heartbeat = hb_at.zip(hb_epoch).map(|(at, epoch)| HeartbeatView {
        at,
        age_seconds: (Utc::now() - at).num_seconds().max(0),
        epoch,
    });
    let strategies = health
        .as_ref()
        .and_then(|h| h.get("strategies").cloned())
        .unwrap_or_else(|| Value::Object(Default::default()));
    let worker_error = health
        .as_ref()
        .and_then(|h| h.get("last_error"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    StatusView {
        tenant_id: id,
        provisioning: ProvisioningView {
            step,
            last_error: tenant_error.clone(),
        },
        desired: desired.to_owned(),
        worker: WorkerView {
            state: actual.unwrap_or_else(|| "pending".to_owned()),
            instance_id,
            restarts: restarts.unwrap_or(0),
            backoff_until,
            last_exit,
            observed_at,
        },
        last_heartbeat,
        strategies,
        last_error: runtime_error.or(worker_error).or(tenant_error),
        state,
    }
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
    caller: Caller,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<StatusView>> {
    let tenant = polybot_core::TenantId::from_uuid(id);
    if !caller.may_see(tenant) {
        return Err(ApiError::NotFound("tenant"));
    }
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
    let rows: Vec<StatusRow> = match caller {
        Caller::Tenant(own) => {
            let mut tx = state.db.tenant(own).await?;
            let row = load_row(&mut tx).await?;
            tx.commit().await?;
            row.into_iter().collect()
        }
        Caller::Operator => {
            let mut op = state.db.operator().await?;
            let rows = sqlx::query_as(&format!(
                "{STATUS_SELECT} WHERE ($1::text IS NULL OR t.state = $1) \
                   AND ($2::text IS NULL OR coalesce(r.actual, 'pending') = $2) \
                   AND ($3::uuid IS NULL OR t.id > $3) ORDER BY t.id LIMIT $4"
            ))
            .bind(&query.state)
            .bind(&query.worker)
            .bind(query.cursor)
            .bind(limit + 1)
            .fetch_all(&mut *op)
            .await
            .map_err(|source| DbError::Query {
                context: "reading the fleet's status",
                source,
            })?;
            op.commit().await?;
            rows
        }
    };
    let mut items: Vec<StatusView> = rows.into_iter().map(view_from).collect();
    let next_cursor = if items.len() as i64 > limit {
        items.truncate(usize::try_from(limit).unwrap_or(0));
        items.last().map(|s| s.tenant_id)
    } else {
        None
    };
    Ok(Json(FleetPage { items, next_cursor }))
}

async fn load_row(tx: &mut TenantTx) -> Result<Option<StatusRow>, DbError> {
    sqlx::query_as(&format!("{STATUS_SELECT} WHERE t.id = $1"))
        .bind(tx.tenant().as_uuid())
        .fetch_optional(&mut **tx)
        .await
        .map_err(|source| DbError::Query {
            context: "reading a tenant's status",
            source,
        })
}
