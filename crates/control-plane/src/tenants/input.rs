//! Reading `/tenants` request bodies: every bad field is reported, nothing
//! is stored. Also the canonical request hash that idempotency keys compare
//! and the `Idempotency-Key` header.

use axum::body::Bytes;
use axum::http::HeaderMap;
use polybot_core::Mode;
use polybot_core::keys::{ExchangeKeys, parse_exchange_keys};
use polybot_core::risk::{RiskLimits, parse_risk};
use polybot_core::strategy::{StrategiesConfig, parse_strategies};
use polybot_core::validation::{FieldError, check_json_text, name_problem, unknown_field};
use serde::Serialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::error::{ApiError, ApiResult};

/// The body as a JSON object, refused (422, naming each field) when any of its
/// text holds a control character: PostgreSQL cannot store NUL, and nothing a
/// tenant types needs the others.
pub(super) fn parse_body(body: &Bytes) -> ApiResult<Map<String, Value>> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::BadRequest(format!(
            "the body is not valid JSON (line {}, column {})",
            e.line(),
            e.column()
        ))
    })?;
    let mut errors = Vec::new();
    check_json_text(&value, "", &mut errors);
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(ApiError::BadRequest(
            "the body must be a JSON object".into(),
        )),
    }
}

/// What an onboarding request or a PATCH carries, validated.
#[derive(Debug, Default)]
pub(super) struct TenantInput {
    pub(super) name: Option<String>,
    pub(super) mode: Option<Mode>,
    pub(super) keys: Option<ExchangeKeys>,
    pub(super) strategies: Option<StrategiesConfig>,
    pub(super) risk: Option<RiskLimits>,
}

pub(super) fn parse_input(
    body: &Map<String, Value>,
    allowed: &[&str],
) -> Result<TenantInput, Vec<FieldError>> {
    let mut input = TenantInput::default();
    let mut errors = Vec::new();
    for (field, value) in body {
        if !allowed.contains(&field.as_str()) {
            errors.push(unknown_field(field, field, allowed));
            continue;
        }
        match field.as_str() {
            "name" => match value.as_str().map(str::trim) {
                Some(name) if name_problem(name).is_some() => {
                    errors.extend(name_problem(name).map(|m| FieldError::new("name", m)));
                }
                Some(name) if !name.is_empty() && name.chars().count() <= 100 => {
                    input.name = Some(name.to_owned());
                }
                Some(_) => errors.push(FieldError::new("name", "must have 1 to 100 characters")),
                None => errors.push(FieldError::new("name", "expected a string")),
            },
            "mode" => match value.as_str().map(str::parse::<Mode>) {
                Some(Ok(mode)) => input.mode = Some(mode),
                Some(Err(message)) => errors.push(FieldError::new("mode", message)),
                None => errors.push(FieldError::new("mode", "expected \"paper\" or \"live\"")),
            },
            "exchange_keys" => match parse_exchange_keys(value) {
                Ok(keys) => input.keys = Some(keys),
                Err(e) => errors.extend(e),
            },
            "strategies" => match parse_strategies(value) {
                Ok(s) => input.strategies = Some(s),
                Err(e) => errors.extend(e),
            },
            "risk" => match parse_risk(value) {
                Ok(r) => input.risk = Some(r),
                Err(e) => errors.extend(e),
            },
            _ => {}
        }
    }
    if errors.is_empty() {
        Ok(input)
    } else {
        Err(errors)
    }
}

pub(super) fn to_json<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or_else(|_| json!({}))
}

pub(super) fn request_hash(body: &Map<String, Value>) -> Vec<u8> {
    let mut text = String::new();
    canonical(&Value::Object(body.clone()), &mut text);
    Sha256::digest(text.as_bytes()).to_vec()
}

/// JSON text with object keys sorted at every level, so that the same body
/// hashes the same whatever its key order (and whether or not serde_json
/// preserves insertion order).
fn canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                canonical(&map[key], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

pub(super) fn idempotency_key(headers: &HeaderMap) -> ApiResult<Option<String>> {
    match headers.get("idempotency-key") {
        None => Ok(None),
        Some(v) => {
            let key = v.to_str().map_err(|_| {
                ApiError::Validation(vec![FieldError::new(
                    "Idempotency-Key",
                    "must be visible ASCII",
                )])
            })?;
            if key.is_empty() || key.len() > 200 {
                return Err(ApiError::Validation(vec![FieldError::new(
                    "Idempotency-Key",
                    "must have 1 to 200 characters",
                )]));
            }
            Ok(Some(key.to_owned()))
        }
    }
}
