//! Dashboard sessions (`dashboard_sessions`, not tenant data): the hash of
//! the cookie's id, the hash of the bearer token the session was opened with,
//! and the session's CSRF token. Cookies, hashing and the CSRF comparison are
//! the dashboard's; this module stores and resolves.

use std::time::Duration;

use polybot_core::TenantId;
use uuid::Uuid;

use crate::{DbError, OperatorTx};

/// A live session, with who its token resolves to now.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SessionRow {
    pub csrf_token: String,
    /// Set when the session's token is a live operator token.
    pub operator_token: Option<Uuid>,
    /// Set when the session's token is a live tenant token.
    pub tenant: Option<Uuid>,
    /// The hash of the token the session was opened with (what bounds a
    /// token the session creates).
    pub token_hash: Vec<u8>,
}

impl SessionRow {
    pub fn tenant_id(&self) -> Option<TenantId> {
        self.tenant.map(TenantId::from_uuid)
    }
}

/// The unexpired session whose id hashes to `id_hash`, resolving its token
/// again (so a revoked token or an offboarded tenant reads as neither).
pub async fn find(op: &mut OperatorTx, id_hash: &[u8]) -> Result<Option<SessionRow>, DbError> {
    sqlx::query_as::<_, SessionRow>(
        "SELECT s.csrf_token, \
            (SELECT o.id FROM operator_tokens o WHERE o.token_hash = s.token_hash AND o.revoked_at IS NULL) \
              AS operator_token, \
            polybot.tenant_for_token(s.token_hash) AS tenant, s.token_hash \
         FROM dashboard_sessions s WHERE s.id_hash = $1 AND s.expires_at > now()",
    )
    .bind(id_hash)
    .fetch_optional(&mut **op)
    .await
    .map_err(DbError::query("reading a dashboard session"))
}

/// Deletes expired sessions; returns how many.
pub async fn delete_expired(op: &mut OperatorTx) -> Result<u64, DbError> {
    let result = sqlx::query("DELETE FROM dashboard_sessions WHERE expires_at < now()")
        .execute(&mut **op)
        .await
        .map_err(DbError::query("expiring dashboard sessions"))?;
    Ok(result.rows_affected())
}

/// Opens a session that lasts `ttl` (whole seconds, at most `i32::MAX`).
pub async fn open(
    op: &mut OperatorTx,
    id_hash: &[u8],
    token_hash: &[u8],
    csrf_token: &str,
    ttl: Duration,
) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO dashboard_sessions (id_hash, token_hash, csrf_token, expires_at) \
         VALUES ($1, $2, $3, now() + $4 * interval '1 second')",
    )
    .bind(id_hash)
    .bind(token_hash)
    .bind(csrf_token)
    .bind(i32::try_from(ttl.as_secs()).unwrap_or(i32::MAX))
    .execute(&mut **op)
    .await
    .map_err(DbError::query("opening a dashboard session"))?;
    Ok(())
}

/// Ends a session; returns whether it existed.
pub async fn close(op: &mut OperatorTx, id_hash: &[u8]) -> Result<bool, DbError> {
    let result = sqlx::query("DELETE FROM dashboard_sessions WHERE id_hash = $1")
        .bind(id_hash)
        .execute(&mut **op)
        .await
        .map_err(DbError::query("closing a dashboard session"))?;
    Ok(result.rows_affected() == 1)
}
