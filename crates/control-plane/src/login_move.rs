//! `POST /fleet/shared-login-moves` (operators only; `polybot fleet
//! move-to-shared-login`): moves the tenants onboarded before the shared
//! worker login, each still logging in with a role of its own, to the
//! shared login with a claim ([`Provisioner::move_to_shared_login`]).
//! Every call is one idempotent pass; the control plane's leader finishes
//! the last step (dropping the old roles once their workers have stopped)
//! by itself, and another call shows where each tenant stands.
//!
//! [`Provisioner::move_to_shared_login`]: crate::Provisioner::move_to_shared_login

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use polybot_core::validation::{FieldError, unknown_field};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::AppState;
use crate::auth::Operator;
use crate::error::{ApiError, ApiResult};
use crate::provision::{MoveStep, ProvisionError};

/// The body of `POST /fleet/shared-login-moves` (it may be empty).
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct MoveRequest {
    /// Report what a pass would do and change nothing (default false).
    dry_run: Option<bool>,
}

/// One tenant with a login role of its own.
#[derive(Debug, Serialize, ToSchema)]
pub struct MovedTenantView {
    pub tenant_id: Uuid,
    /// `moved` (the worker is being replaced by one on the shared login; the
    /// old role can no longer log in), `waiting` (the old worker still has
    /// sessions), `dropped` (the old role is gone: done) or `skipped` (the
    /// tenant is onboarding, failed or being deleted).
    pub step: String,
    pub detail: String,
}

/// What one pass did.
#[derive(Debug, Serialize, ToSchema)]
pub struct MoveView {
    pub dry_run: bool,
    /// Tenants whose old role still exists after this pass (`moved` and
    /// `waiting`): 0 once the move is complete.
    pub remaining: usize,
    pub tenants: Vec<MovedTenantView>,
}

fn parse(body: &Bytes) -> ApiResult<bool> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(false);
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("the body is not JSON: {e}")))?;
    let Value::Object(fields) = value else {
        return Err(ApiError::BadRequest("the body is not a JSON object".into()));
    };
    let mut errors = Vec::new();
    let mut dry_run = false;
    for (name, value) in &fields {
        match (name.as_str(), value) {
            ("dry_run", Value::Bool(b)) => dry_run = *b,
            ("dry_run", Value::Null) => {}
            ("dry_run", _) => errors.push(FieldError::new("dry_run", "must be true or false")),
            (other, _) => errors.push(unknown_field(other, other, &["dry_run"])),
        }
    }
    if errors.is_empty() {
        Ok(dry_run)
    } else {
        Err(ApiError::Validation(errors))
    }
}

/// Move the tenants that still log in with a database role of their own to
/// the fleet's shared worker login (one idempotent pass; repeat to follow
/// it to the end).
#[utoipa::path(post, path = "/fleet/shared-login-moves", operation_id = "move_to_shared_login", tag = "fleet",
    request_body = MoveRequest,
    responses(
        (status = 200, description = "what the pass did (or, in a dry run, would do) per tenant", body = MoveView),
        (status = 400, description = "the body is not a JSON object", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "no bearer token, or not a valid one", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "the token is a tenant's; only an operator token may do this", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "this control plane has no shared worker login to move tenants to", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "a field of the request is invalid (each named)", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn move_to_shared_login(
    State(state): State<AppState>,
    _: Operator,
    body: Bytes,
) -> ApiResult<Json<MoveView>> {
    let dry_run = parse(&body)?;
    let moves = match state.provisioner.move_to_shared_login(dry_run).await {
        Ok(moves) => moves,
        Err(err @ ProvisionError::NoSharedLogin) => {
            return Err(ApiError::Conflict(err.to_string()));
        }
        Err(err) => return Err(ApiError::Internal(err.into())),
    };
    let remaining = moves
        .iter()
        .filter(|m| matches!(m.step, MoveStep::Moved | MoveStep::Waiting))
        .count();
    let tenants = moves
        .into_iter()
        .map(|m| MovedTenantView {
            tenant_id: m.tenant.as_uuid(),
            step: match m.step {
                MoveStep::Moved => "moved",
                MoveStep::Waiting => "waiting",
                MoveStep::Dropped => "dropped",
                MoveStep::Skipped => "skipped",
            }
            .to_owned(),
            detail: m.detail,
        })
        .collect();
    tracing::info!(
        dry_run,
        remaining,
        "moving tenants to the shared worker login"
    );
    Ok(Json(MoveView {
        dry_run,
        remaining,
        tenants,
    }))
}
