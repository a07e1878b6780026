//! Bearer tokens, stored only as hashes: operator tokens (`operator_tokens`,
//! not tenant data) and tenant tokens (`api_tokens`, which expire and can be
//! revoked). Generating and hashing tokens, their lifetimes and the
//! per-tenant cap are the control plane's (`auth.rs`); this module only
//! stores, lists, revokes and resolves hashes.

use chrono::{DateTime, Utc};
use polybot_core::TenantId;
use uuid::Uuid;

use crate::{DbError, OperatorTx, TenantTx};

/// Whether `hash` is a live (unrevoked) operator token.
pub async fn is_operator(op: &mut OperatorTx, hash: &[u8]) -> Result<bool, DbError> {
    let found: Option<Uuid> = sqlx::query_scalar(
        "SELECT id FROM operator_tokens WHERE token_hash = $1 AND revoked_at IS NULL",
    )
    .bind(hash)
    .fetch_optional(&mut **op)
    .await
    .map_err(DbError::query("looking up an operator token"))?;
    Ok(found.is_some())
}

/// The tenant whose live token hashes to `hash`, if any (a security-definer
/// function: the operator scope cannot read `api_tokens` itself).
pub async fn tenant_for(op: &mut OperatorTx, hash: &[u8]) -> Result<Option<TenantId>, DbError> {
    let found: Option<Uuid> = sqlx::query_scalar("SELECT polybot.tenant_for_token($1)")
        .bind(hash)
        .fetch_one(&mut **op)
        .await
        .map_err(DbError::query("looking up a tenant token"))?;
    Ok(found.map(TenantId::from_uuid))
}

/// Registers an operator token; a hash already registered is left as is.
/// Returns whether it was new.
pub async fn register_operator(
    op: &mut OperatorTx,
    id: Uuid,
    hash: &[u8],
    label: &str,
) -> Result<bool, DbError> {
    let result = sqlx::query(
        "INSERT INTO operator_tokens (id, token_hash, label) VALUES ($1, $2, $3) \
         ON CONFLICT (token_hash) DO NOTHING",
    )
    .bind(id)
    .bind(hash)
    .bind(label)
    .execute(&mut **op)
    .await
    .map_err(DbError::query("registering the operator token"))?;
    Ok(result.rows_affected() == 1)
}

/// Makes the token hashing to `hash` the one live operator token: registers
/// it (or lifts its revocation) and revokes every other. Returns how many
/// were revoked. This is how the operator token is rotated: configure a new
/// one and restart.
pub async fn install_sole_operator(
    op: &mut OperatorTx,
    id: Uuid,
    hash: &[u8],
    label: &str,
) -> Result<u64, DbError> {
    sqlx::query(
        "INSERT INTO operator_tokens (id, token_hash, label) VALUES ($1, $2, $3) \
         ON CONFLICT (token_hash) DO UPDATE SET revoked_at = NULL",
    )
    .bind(id)
    .bind(hash)
    .bind(label)
    .execute(&mut **op)
    .await
    .map_err(DbError::query("registering the operator token"))?;
    let revoked = sqlx::query(
        "UPDATE operator_tokens SET revoked_at = now() \
         WHERE token_hash <> $1 AND revoked_at IS NULL",
    )
    .bind(hash)
    .execute(&mut **op)
    .await
    .map_err(DbError::query("revoking earlier operator tokens"))?;
    Ok(revoked.rows_affected())
}

/// A live tenant token, as resolved by [`use_tenant_token`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TenantToken {
    pub tenant: TenantId,
    pub token_id: Uuid,
    pub expires_at: DateTime<Utc>,
}

/// The tenant token hashing to `hash` if it is live (unrevoked, unexpired,
/// its tenant not offboarding), recording that it was used. A
/// security-definer function: the operator scope cannot touch `api_tokens`.
pub async fn use_tenant_token(
    op: &mut OperatorTx,
    hash: &[u8],
) -> Result<Option<TenantToken>, DbError> {
    let found: Option<(Uuid, Uuid, DateTime<Utc>)> =
        sqlx::query_as("SELECT tenant_id, token_id, expires_at FROM polybot.use_tenant_token($1)")
            .bind(hash)
            .fetch_optional(&mut **op)
            .await
            .map_err(DbError::query("looking up a tenant token"))?;
    Ok(found.map(|(tenant, token_id, expires_at)| TenantToken {
        tenant: TenantId::from_uuid(tenant),
        token_id,
        expires_at,
    }))
}

/// A tenant token as listed: never its hash.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct TokenRow {
    pub id: Uuid,
    pub label: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
}

/// Stores a token of the transaction's tenant.
pub async fn insert_tenant_token(
    tx: &mut TenantTx,
    id: Uuid,
    hash: &[u8],
    label: &str,
    expires_at: DateTime<Utc>,
) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO api_tokens (id, tenant_id, token_hash, label, expires_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id)
    .bind(tx.tenant().as_uuid())
    .bind(hash)
    .bind(label)
    .bind(expires_at)
    .execute(&mut **tx)
    .await
    .map_err(DbError::query("creating a tenant token"))?;
    Ok(())
}

/// The tenant's unrevoked tokens, expired ones included, oldest first.
pub async fn list(tx: &mut TenantTx) -> Result<Vec<TokenRow>, DbError> {
    sqlx::query_as::<_, TokenRow>(
        "SELECT id, label, created_at, expires_at, last_used_at FROM api_tokens \
         WHERE tenant_id = $1 AND revoked_at IS NULL ORDER BY created_at, id",
    )
    .bind(tx.tenant().as_uuid())
    .fetch_all(&mut **tx)
    .await
    .map_err(DbError::query("listing tenant tokens"))
}

/// How many of the tenant's tokens still work (unrevoked and unexpired).
pub async fn count_live(tx: &mut TenantTx) -> Result<i64, DbError> {
    sqlx::query_scalar(
        "SELECT count(*) FROM api_tokens \
         WHERE tenant_id = $1 AND revoked_at IS NULL AND expires_at > now()",
    )
    .bind(tx.tenant().as_uuid())
    .fetch_one(&mut **tx)
    .await
    .map_err(DbError::query("counting tenant tokens"))
}

/// When the tenant's live token hashing to `hash` expires, if it is one.
pub async fn expiry_of(tx: &mut TenantTx, hash: &[u8]) -> Result<Option<DateTime<Utc>>, DbError> {
    sqlx::query_scalar(
        "SELECT expires_at FROM api_tokens \
         WHERE tenant_id = $1 AND token_hash = $2 AND revoked_at IS NULL",
    )
    .bind(tx.tenant().as_uuid())
    .bind(hash)
    .fetch_optional(&mut **tx)
    .await
    .map_err(DbError::query("reading a tenant token's expiry"))
}

/// Revokes the tenant's token `id`; false if it has no such unrevoked token.
pub async fn revoke(tx: &mut TenantTx, id: Uuid) -> Result<bool, DbError> {
    let result = sqlx::query(
        "UPDATE api_tokens SET revoked_at = now() \
         WHERE tenant_id = $1 AND id = $2 AND revoked_at IS NULL",
    )
    .bind(tx.tenant().as_uuid())
    .bind(id)
    .execute(&mut **tx)
    .await
    .map_err(DbError::query("revoking a tenant token"))?;
    Ok(result.rows_affected() == 1)
}
