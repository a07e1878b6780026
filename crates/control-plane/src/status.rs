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

/// Reads one tenant's status in one statement.
pub async fn load(tx: &mut TenantTx) -> Result<Option<StatusView>, DbError> {
    let row: Option<StatusRow> = sqlx::query_as(
        "SELECT t.id, t.state, t.provisioning_step, t.last_error, \
                r.actual, r.instance_id, r.restarts, r.backoff_until, r.last_exit, r.last_error, r.observed_at, \
                h.at, h.epoch, h.health \
         FROM tenants t \
         LEFT JOIN tenant_runtime r ON r.tenant_id = t.id \
         LEFT JOIN LATERAL (SELECT at, epoch, health FROM worker_heartbeats \
                            WHERE tenant_id = t.id ORDER BY at DESC LIMIT 1) h ON true \
         WHERE t.id = $1",
    )
    .bind(tx.tenant().as_uuid())
    .fetch_optional(&mut **tx)
    .await
    .map_err(|source| DbError::Query {
        context: "reading a tenant's status",
        source,
    })?;
    Ok(row.map(view_from))
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
#[utoipa::path(get, path = "/tenants/{id}/status", responses((status = 200, body = StatusView), (status = 404, body = crate::error::Problem)))]
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
