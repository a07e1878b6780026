//! Refuses a request whose query string carries control characters, once
//! for every route: a filter such as `GET /fleet?state=%00` would otherwise
//! reach PostgreSQL, which cannot store NUL in text, and come back a 500.
//!
//! Request bodies are checked where they are parsed (`tenants::input`,
//! `alerts::channels`), since that is where their JSON paths are known.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use polybot_core::validation::{FieldError, name_problem};

use crate::error::ApiError;

/// The query's parameters that are not printable text, each named.
pub fn query_problems(query: &str) -> Vec<FieldError> {
    url::form_urlencoded::parse(query.as_bytes())
        .filter_map(|(key, value)| {
            name_problem(&key)
                .map(|m| format!("(the parameter name) {m}"))
                .or_else(|| name_problem(&value))
                .map(|message| FieldError::new(key.into_owned(), message))
        })
        .collect()
}

/// Middleware: a 422 naming each bad query parameter.
pub async fn refuse_control_text(request: Request, next: Next) -> Response {
    if let Some(query) = request.uri().query() {
        let errors = query_problems(query);
        if !errors.is_empty() {
            return ApiError::Validation(errors).into_response();
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nul_in_a_filter_is_named() {
        let errors = query_problems("limit=5&state=%00running");
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].field, "state");
        assert_eq!(
            errors[0].message,
            "must be printable text (found U+0000, a control or formatting character)"
        );
    }

    #[test]
    fn printable_queries_pass() {
        assert!(query_problems("state=active&notice=Paused+%28state+paused%29.").is_empty());
    }
}
