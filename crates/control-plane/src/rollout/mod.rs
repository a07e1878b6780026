//! Fleet-wide rollouts: a new worker image and/or new worker settings
//! carried to every tenant at a configured rate, with pause, resume and
//! abort (`/fleet/rollouts…`, operators only; `polybot fleet rollout`; the
//! dashboard's fleet page).
//!
//! - [`plan`]: the pace, as pure functions (one tenant at most every
//!   `60 / per_minute` seconds, at most one a second: RegisterTaskDefinition
//!   refills at 1/s and each tenant of an image rollout registers one
//!   revision; each tenant costs one StopTask and one RunTask, far inside
//!   their shared 40/s);
//! - [`drive`]: the reconciler leader's step after each pass;
//! - here: the API and its views.
//!
//! What a rollout means per launcher: on ECS an image is the worker
//! container's image (a new revision of the tenant's task-definition family)
//! and settings are plain environment of the worker container (RunTask
//! overrides, no registration). The local launcher runs this machine's
//! `polybot` program and has no image: a rollout naming one is refused with
//! a 422 on `image`; settings roll out to local workers the same way.
//!
//! Abort stops beginning tenants: those already begun keep the new release
//! (their replacement completes), the others keep theirs. Nothing is rolled
//! back; to go back, start a rollout of the previous image.

pub mod drive;
pub mod plan;

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use polybot_core::validation::{FieldError, unknown_field};
use polybot_core::worker::env;
use polybot_store::repo::rollouts::{self, Release, Rollout};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::AppState;
use crate::auth::Operator;
use crate::error::{ApiError, ApiResult};

/// How many of the tenants a rollout reached its view lists.
const RECENT: i64 = 20;

/// The body of `POST /fleet/rollouts`.
#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct StartRolloutRequest {
    /// The worker image every tenant's task definition moves to (ECS only;
    /// the local launcher runs this machine's program and refuses one).
    image: Option<String>,
    /// Worker settings to set, by name: plain environment a worker reads
    /// (`POLYBOT_LOG`, `POLYBOT_HEARTBEAT_SECS`, the venue URLs, …).
    settings: Option<BTreeMap<String, String>>,
    /// Tenants begun per minute, 1 to 60.
    per_minute: i32,
}

/// A rollout's progress among the tenants it covers (all but those
/// offboarding or offboarded).
#[derive(Debug, Serialize, ToSchema)]
pub struct ProgressView {
    pub total: i64,
    /// Tenants whose workers run the rollout's release.
    pub done: i64,
    /// Tenants given the release whose workers are being replaced.
    pub rolling: i64,
    /// Tenants not begun yet.
    pub pending: i64,
}

/// A tenant a rollout reached.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReachedView {
    pub tenant_id: Uuid,
    pub name: String,
    /// `rolling` or `done`.
    pub state: String,
    pub began_at: DateTime<Utc>,
    pub done_at: Option<DateTime<Utc>>,
}

/// One rollout.
#[derive(Debug, Serialize, ToSchema)]
pub struct RolloutView {
    pub id: i64,
    /// The image it rolls out, if any.
    pub image: Option<String>,
    /// The worker settings it sets.
    pub settings: BTreeMap<String, String>,
    pub per_minute: i32,
    /// `running`, `paused`, `aborted` or `done`.
    pub state: String,
    /// Why it is paused, aborted or done.
    pub reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// The earliest time its next tenant begins.
    pub next_at: Option<DateTime<Utc>>,
    pub progress: ProgressView,
    /// The tenants it reached, the most recently begun first (at most 20).
    pub recent: Vec<ReachedView>,
}

/// A rollout with its progress, read in `op`.
pub async fn view(
    op: &mut polybot_store::OperatorTx,
    rollout: Rollout,
) -> Result<RolloutView, polybot_store::DbError> {
    let progress = rollouts::progress(op, rollout.id).await?;
    let recent = rollouts::reached(op, rollout.id, RECENT).await?;
    Ok(RolloutView {
        id: rollout.id,
        image: rollout.change.image,
        settings: rollout.change.settings,
        per_minute: rollout.per_minute,
        state: rollout.state,
        reason: rollout.reason,
        created_at: rollout.created_at,
        updated_at: rollout.updated_at,
        finished_at: rollout.finished_at,
        next_at: rollout.next_at,
        progress: ProgressView {
            total: progress.total,
            done: progress.done,
            rolling: progress.rolling,
            pending: progress.pending(),
        },
        recent: recent
            .into_iter()
            .map(|r| ReachedView {
                tenant_id: r.tenant_id,
                name: r.name,
                state: r.state,
                began_at: r.began_at,
                done_at: r.done_at,
            })
            .collect(),
    })
}

/// The newest rollout with its progress, if there is one (the dashboard's).
pub async fn latest(state: &AppState) -> Result<Option<RolloutView>, polybot_store::DbError> {
    let mut op = state.db.operator().await?;
    let found = match rollouts::latest(&mut op).await? {
        Some(rollout) => Some(view(&mut op, rollout).await?),
        None => None,
    };
    op.commit().await?;
    Ok(found)
}

const FIELDS: &[&str] = &["image", "settings", "per_minute"];

/// A printable image reference: `registry/repository:tag` or `…@sha256:…`.
fn valid_image(image: &str) -> bool {
    (1..=255).contains(&image.len())
        && image
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && image
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-/:@".contains(c))
}

/// The change a start request asks for, validated; every bad field named.
pub fn parse_start(body: &Bytes, runs_images: bool) -> ApiResult<(Release, i32)> {
    let body = crate::tenants::parse_object(body)?;
    let mut errors = Vec::new();
    for key in body.keys().filter(|k| !FIELDS.contains(&k.as_str())) {
        errors.push(unknown_field(key, key, FIELDS));
    }
    let image = match body.get("image") {
        None | Some(Value::Null) => None,
        Some(Value::String(image)) if valid_image(image) => {
            if !runs_images {
                errors.push(FieldError::new(
                    "image",
                    "the local launcher runs this machine's polybot program, not an image: \
                     replace the program and restart, or roll out settings only; image \
                     rollouts need --launcher ecs",
                ));
            }
            Some(image.clone())
        }
        Some(_) => {
            errors.push(FieldError::new(
                "image",
                "must be an image reference of 1 to 255 characters (letters, digits and \
                 ._-/:@), such as 123456789012.dkr.ecr.us-east-1.amazonaws.com/polybot:v2",
            ));
            None
        }
    };
    let mut settings = BTreeMap::new();
    match body.get("settings") {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            for (name, value) in map {
                let field = format!("settings.{name}");
                if !env::is_forwarded(name) {
                    errors.push(FieldError::new(
                        field,
                        format!(
                            "not a worker setting; one of {}",
                            env::FORWARDED
                                .iter()
                                .chain(env::VENUE_URLS)
                                .copied()
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ));
                    continue;
                }
                match value {
                    Value::String(v)
                        if v.chars().count() <= 1000 && !v.chars().any(char::is_control) =>
                    {
                        settings.insert(name.clone(), v.clone());
                    }
                    _ => errors.push(FieldError::new(
                        field,
                        "must be text of at most 1000 printable characters",
                    )),
                }
            }
        }
        Some(_) => errors.push(FieldError::new(
            "settings",
            "must be an object of worker settings, name to text",
        )),
    }
    let per_minute = match body.get("per_minute") {
        None | Some(Value::Null) => {
            errors.push(FieldError::new(
                "per_minute",
                "is required: tenants begun per minute, 1 to 60",
            ));
            0
        }
        Some(Value::Number(n)) => match n.as_i64() {
            Some(n @ 1..=60) => i32::try_from(n).unwrap_or(1),
            _ => {
                errors.push(FieldError::new(
                    "per_minute",
                    "must be a whole number from 1 to 60 (RegisterTaskDefinition allows \
                     one registration a second)",
                ));
                0
            }
        },
        Some(_) => {
            errors.push(FieldError::new(
                "per_minute",
                "must be a whole number from 1 to 60",
            ));
            0
        }
    };
    if image.is_none()
        && settings.is_empty()
        && !errors
            .iter()
            .any(|e| e.field == "image" || e.field.starts_with("settings"))
    {
        errors.push(FieldError::new(
            "image",
            "a rollout needs an image, settings, or both",
        ));
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    Ok((Release { image, settings }, per_minute))
}

/// Start a fleet-wide rollout. One rollout at a time: while one is running
/// or paused, starting another is a 409.
#[utoipa::path(post, path = "/fleet/rollouts", operation_id = "start_rollout", tag = "fleet",
    request_body = StartRolloutRequest,
    responses(
        (status = 201, description = "the rollout, running", body = RolloutView),
        (status = 400, description = "the body is not a JSON object", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "no bearer token, or not a valid one", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "the token is a tenant's; only an operator token may do this", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "another rollout is running or paused", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "a field of the request is invalid (each named)", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn start(
    State(state): State<AppState>,
    _: Operator,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<RolloutView>)> {
    let (change, per_minute) = parse_start(&body, state.worker_images)?;
    let mut op = state.db.operator().await?;
    let started = match rollouts::start(&mut op, &change, per_minute).await {
        Ok(rollout) => rollout,
        Err(err) if rollouts::is_one_unfinished(&err) => {
            drop(op);
            op = state.db.operator().await?;
            match rollouts::lock_unfinished(&mut op).await? {
                Some(other) => {
                    op.commit().await?;
                    return Err(ApiError::Conflict(format!(
                        "rollout {} is {}: resume or abort it before starting another",
                        other.id, other.state
                    )));
                }
                // The unfinished one finished in between: this one starts.
                None => match rollouts::start(&mut op, &change, per_minute).await {
                    Ok(rollout) => rollout,
                    Err(err) if rollouts::is_one_unfinished(&err) => {
                        return Err(ApiError::Conflict(
                            "another rollout was started at the same time".to_owned(),
                        ));
                    }
                    Err(err) => return Err(err.into()),
                },
            }
        }
        Err(err) => return Err(err.into()),
    };
    let view = view(&mut op, started).await?;
    op.commit().await?;
    tracing::info!(rollout = view.id, image = ?view.image, settings = ?view.settings.keys().collect::<Vec<_>>(), per_minute, "rollout started");
    state.wake();
    Ok((StatusCode::CREATED, Json(view)))
}

fn rollout_id(id: &str) -> ApiResult<i64> {
    id.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or(ApiError::NotFound("rollout"))
}

/// The newest rollout (running, paused or finished) with its progress.
#[utoipa::path(get, path = "/fleet/rollouts/current", operation_id = "get_current_rollout", tag = "fleet",
    responses(
        (status = 200, description = "the newest rollout", body = RolloutView),
        (status = 401, description = "no bearer token, or not a valid one", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "the token is a tenant's; only an operator token may do this", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "no rollout was ever started", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn current(State(state): State<AppState>, _: Operator) -> ApiResult<Json<RolloutView>> {
    latest(&state)
        .await?
        .map(Json)
        .ok_or(ApiError::NotFound("rollout"))
}

/// One rollout with its progress.
#[utoipa::path(get, path = "/fleet/rollouts/{id}", operation_id = "get_rollout", tag = "fleet",
    params(("id" = i64, Path, description = "the rollout's id")),
    responses(
        (status = 200, description = "the rollout", body = RolloutView),
        (status = 401, description = "no bearer token, or not a valid one", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "the token is a tenant's; only an operator token may do this", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such rollout", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get(
    State(state): State<AppState>,
    _: Operator,
    Path(id): Path<String>,
) -> ApiResult<Json<RolloutView>> {
    let id = rollout_id(&id)?;
    let mut op = state.db.operator().await?;
    let rollout = rollouts::get(&mut op, id)
        .await?
        .ok_or(ApiError::NotFound("rollout"))?;
    let view = view(&mut op, rollout).await?;
    op.commit().await?;
    Ok(Json(view))
}

/// What an operator asks of a rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Pause,
    Resume,
    Abort,
}

/// The state `control` takes a rollout in `from` to, and its reason;
/// `None`: not allowed. Pausing a paused rollout and resuming a running one
/// change nothing.
pub fn transition(from: &str, control: Control) -> Option<(&'static str, Option<&'static str>)> {
    match (from, control) {
        ("running" | "paused", Control::Pause) => Some(("paused", Some("paused by the operator"))),
        ("running" | "paused", Control::Resume) => Some(("running", None)),
        ("running" | "paused", Control::Abort) => Some((
            "aborted",
            Some(
                "aborted by the operator: tenants already begun keep the new release, \
                 the others keep theirs",
            ),
        )),
        _ => None,
    }
}

/// Applies `control` to rollout `id`; the dashboard's forms call it too.
pub async fn control(state: &AppState, id: i64, control: Control) -> ApiResult<RolloutView> {
    let mut op = state.db.operator().await?;
    let rollout = rollouts::lock(&mut op, id)
        .await?
        .ok_or(ApiError::NotFound("rollout"))?;
    let Some((to, reason)) = transition(&rollout.state, control) else {
        return Err(ApiError::Conflict(format!(
            "rollout {id} is {}: only a running or paused rollout can be paused, resumed or aborted",
            rollout.state
        )));
    };
    let rollout = if to == rollout.state {
        rollout
    } else {
        rollouts::set_state(&mut op, id, to, reason, None).await?
    };
    let view = view(&mut op, rollout).await?;
    op.commit().await?;
    tracing::info!(rollout = id, state = %view.state, "rollout {control:?}");
    state.wake();
    Ok(view)
}

/// Stop beginning tenants until resumed. Tenants already begun finish.
#[utoipa::path(post, path = "/fleet/rollouts/{id}/pause", operation_id = "pause_rollout", tag = "fleet",
    params(("id" = i64, Path, description = "the rollout's id")),
    responses(
        (status = 200, description = "the paused rollout", body = RolloutView),
        (status = 401, description = "no bearer token, or not a valid one", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "the token is a tenant's; only an operator token may do this", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such rollout", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "the rollout is aborted or done", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn pause(
    State(state): State<AppState>,
    _: Operator,
    Path(id): Path<String>,
) -> ApiResult<Json<RolloutView>> {
    control(&state, rollout_id(&id)?, Control::Pause)
        .await
        .map(Json)
}

/// Continue a paused rollout at its rate (the next tenant begins a full
/// interval after the last one, never in a burst).
#[utoipa::path(post, path = "/fleet/rollouts/{id}/resume", operation_id = "resume_rollout", tag = "fleet",
    params(("id" = i64, Path, description = "the rollout's id")),
    responses(
        (status = 200, description = "the running rollout", body = RolloutView),
        (status = 401, description = "no bearer token, or not a valid one", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "the token is a tenant's; only an operator token may do this", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such rollout", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "the rollout is aborted or done", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn resume(
    State(state): State<AppState>,
    _: Operator,
    Path(id): Path<String>,
) -> ApiResult<Json<RolloutView>> {
    control(&state, rollout_id(&id)?, Control::Resume)
        .await
        .map(Json)
}

/// Stop the rollout for good: tenants already begun keep the new release
/// (their replacement completes), the others keep theirs. Nothing is rolled
/// back; start a rollout of the previous image to go back.
#[utoipa::path(post, path = "/fleet/rollouts/{id}/abort", operation_id = "abort_rollout", tag = "fleet",
    params(("id" = i64, Path, description = "the rollout's id")),
    responses(
        (status = 200, description = "the aborted rollout", body = RolloutView),
        (status = 401, description = "no bearer token, or not a valid one", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "the token is a tenant's; only an operator token may do this", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such rollout", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "the rollout is aborted or done already", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn abort(
    State(state): State<AppState>,
    _: Operator,
    Path(id): Path<String>,
) -> ApiResult<Json<RolloutView>> {
    control(&state, rollout_id(&id)?, Control::Abort)
        .await
        .map(Json)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(result: ApiResult<(Release, i32)>) -> Vec<String> {
        match result {
            Err(ApiError::Validation(errors)) => errors.into_iter().map(|e| e.field).collect(),
            other => panic!("expected field errors, got {other:?}"),
        }
    }

    #[test]
    fn a_valid_request_parses_into_its_change_and_rate() {
        let body = Bytes::from_static(
            br#"{"image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/polybot:v2",
                 "settings": {"POLYBOT_LOG": "debug"}, "per_minute": 30}"#,
        );
        let (change, rate) = parse_start(&body, true).unwrap();
        assert_eq!(
            change.image.as_deref(),
            Some("123456789012.dkr.ecr.us-east-1.amazonaws.com/polybot:v2")
        );
        assert_eq!(change.settings["POLYBOT_LOG"], "debug");
        assert_eq!(rate, 30);
    }

    #[test]
    fn every_bad_field_is_named() {
        let body = Bytes::from_static(
            br#"{"image": "not an image", "settings": {"DATABASE_URL": "x"}, "per_minute": 61, "rate": 1}"#,
        );
        assert_eq!(
            fields(parse_start(&body, true)),
            ["rate", "image", "settings.DATABASE_URL", "per_minute"]
        );
        let body = Bytes::from_static(br#"{"per_minute": 5}"#);
        assert_eq!(fields(parse_start(&body, true)), ["image"]);
        let body = Bytes::from_static(br#"{"image": "polybot:v2"}"#);
        assert_eq!(fields(parse_start(&body, true)), ["per_minute"]);
    }

    #[test]
    fn the_local_launcher_refuses_an_image_but_takes_settings() {
        let body = Bytes::from_static(br#"{"image": "polybot:v2", "per_minute": 5}"#);
        assert_eq!(fields(parse_start(&body, false)), ["image"]);
        let body = Bytes::from_static(
            br#"{"settings": {"POLYBOT_HEARTBEAT_SECS": "2"}, "per_minute": 5}"#,
        );
        let (change, _) = parse_start(&body, false).unwrap();
        assert_eq!(change.image, None);
        assert_eq!(change.settings["POLYBOT_HEARTBEAT_SECS"], "2");
    }

    #[test]
    fn only_unfinished_rollouts_take_controls() {
        assert_eq!(transition("running", Control::Pause).unwrap().0, "paused");
        assert_eq!(transition("paused", Control::Pause).unwrap().0, "paused");
        assert_eq!(
            transition("paused", Control::Resume),
            Some(("running", None))
        );
        assert_eq!(transition("paused", Control::Abort).unwrap().0, "aborted");
        assert_eq!(transition("aborted", Control::Resume), None);
        assert_eq!(transition("done", Control::Abort), None);
    }
}
