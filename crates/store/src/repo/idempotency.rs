//! Replays of mutating requests (`idempotency_keys`): a key per caller scope
//! (`operator` or `tenant:<id>`), the hash of the first request's body, and
//! its response once it is known. Hashing the body and deciding what a replay
//! answers are the API's.
//!
//! The table has no `tenant_id` (`POST /tenants` runs before its tenant
//! exists); the functions take the transaction the request writes in, so the
//! key and the request's effects commit together.

use serde_json::Value;

use crate::{DbError, TenantTx};

/// A key as stored.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct IdempotencyRecord {
    pub request_hash: Vec<u8>,
    /// `None` while the first request is in progress.
    pub response_status: Option<i16>,
    pub response_body: Option<Value>,
}

/// Claims `key` in `scope` for a request hashing to `request_hash`; `false`
/// if the key was already used (read it with [`get`]).
pub async fn claim(
    tx: &mut TenantTx,
    scope: &str,
    key: &str,
    request_hash: &[u8],
) -> Result<bool, DbError> {
    let result = sqlx::query(
        "INSERT INTO idempotency_keys (scope, key, request_hash) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
    )
    .bind(scope)
    .bind(key)
    .bind(request_hash)
    .execute(&mut **tx)
    .await
    .map_err(DbError::query("recording the idempotency key"))?;
    Ok(result.rows_affected() == 1)
}

/// The record of `key` in `scope`, if any.
pub async fn get(
    tx: &mut TenantTx,
    scope: &str,
    key: &str,
) -> Result<Option<IdempotencyRecord>, DbError> {
    sqlx::query_as::<_, IdempotencyRecord>(
        "SELECT request_hash, response_status, response_body FROM idempotency_keys \
         WHERE scope = $1 AND key = $2",
    )
    .bind(scope)
    .bind(key)
    .fetch_optional(&mut **tx)
    .await
    .map_err(DbError::query("reading the idempotency key"))
}

/// Records the response a replay of `key` answers with.
pub async fn record_response(
    tx: &mut TenantTx,
    scope: &str,
    key: &str,
    status: i16,
    body: &Value,
) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE idempotency_keys SET response_status = $3, response_body = $4 \
         WHERE scope = $1 AND key = $2",
    )
    .bind(scope)
    .bind(key)
    .bind(status)
    .bind(body)
    .execute(&mut **tx)
    .await
    .map_err(DbError::query("recording the idempotent response"))?;
    Ok(())
}
