//! The API's one error type, mapped to `application/problem+json` in one place.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use polybot_core::validation::FieldError;
use serde::Serialize;
use utoipa::ToSchema;

/// An RFC 9457 problem document.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// A URI reference naming the kind of problem.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Each bad field of a request, by JSON path.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<Object>)]
    pub errors: Vec<FieldError>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 422: the request is well-formed JSON but some fields are wrong.
    #[error("{} field(s) are invalid", .0.len())]
    Validation(Vec<FieldError>),
    /// 402: the tenant's plan does not include what the request asks for;
    /// each error names the field and the entitlement.
    #[error("the tenant's plan does not allow this")]
    PlanLimit(Vec<FieldError>),
    /// 400: the body is not JSON, or not an object.
    #[error("{0}")]
    BadRequest(String),
    /// 401: no token, or not a valid one.
    #[error("a valid bearer token is required")]
    Unauthorized,
    /// 403: the token is valid but may not do this.
    #[error("{0}")]
    Forbidden(&'static str),
    /// 404: no such tenant (or not one this token may see).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// 409: the tenant is in a state that does not allow this.
    #[error("{0}")]
    Conflict(String),
    /// 409: the machine runs no more local workers; the message names the
    /// limit reached and its figures. Not a 503: waiting does not help, an
    /// operator's change (offboarding, pausing, a higher limit) does.
    #[error("{0}")]
    Capacity(String),
    /// 422: the same Idempotency-Key was used with another body.
    #[error("this Idempotency-Key was used with a different request body")]
    IdempotencyMismatch,
    /// 429: too many failed authentications from this client or for this
    /// token prefix; retry after the given number of seconds.
    #[error("too many failed authentications; retry in {retry_after_secs} s")]
    TooManyRequests { retry_after_secs: u64 },
    /// 408: the request (headers or body) was not received in time.
    #[error("the request was not received in time")]
    RequestTimeout,
    /// 503: the database is unreachable.
    #[error("{0}")]
    Unavailable(String),
    /// 500: anything else; the cause is logged, never sent.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<polybot_store::DbError> for ApiError {
    fn from(err: polybot_store::DbError) -> Self {
        ApiError::Internal(err.into())
    }
}

impl From<polybot_secrets::SecretError> for ApiError {
    fn from(err: polybot_secrets::SecretError) -> Self {
        ApiError::Internal(err.into())
    }
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Validation(_) | ApiError::IdempotencyMismatch => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ApiError::PlanLimit(_) => StatusCode::PAYMENT_REQUIRED,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) | ApiError::Capacity(_) => StatusCode::CONFLICT,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            ApiError::Validation(_) => "/problems/validation",
            ApiError::PlanLimit(_) => "/problems/plan-entitlement",
            ApiError::BadRequest(_) => "/problems/bad-request",
            ApiError::Unauthorized => "/problems/unauthorized",
            ApiError::Forbidden(_) => "/problems/forbidden",
            ApiError::NotFound(_) => "/problems/not-found",
            ApiError::Conflict(_) => "/problems/conflict",
            ApiError::Capacity(_) => "/problems/capacity",
            ApiError::IdempotencyMismatch => "/problems/idempotency-key-reused",
            ApiError::TooManyRequests { .. } => "/problems/too-many-requests",
            ApiError::RequestTimeout => "/problems/request-timeout",
            ApiError::Unavailable(_) => "/problems/unavailable",
            ApiError::Internal(_) => "/problems/internal",
        }
    }

    pub fn problem(&self) -> Problem {
        let status = self.status();
        let detail = match self {
            ApiError::Validation(errors) | ApiError::PlanLimit(errors) => errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
            ApiError::Internal(_) => {
                "the server failed; the error is in its log with this request's time".to_owned()
            }
            other => other.to_string(),
        };
        Problem {
            kind: self.kind().to_owned(),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail,
            errors: match self {
                ApiError::Validation(errors) | ApiError::PlanLimit(errors) => errors.clone(),
                _ => Vec::new(),
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(err) = &self {
            tracing::error!(error = format!("{err:#}"), "request failed");
        }
        let status = self.status();
        let mut response = (status, axum::Json(self.problem())).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let ApiError::TooManyRequests { retry_after_secs } = &self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
        }
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
