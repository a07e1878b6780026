//! Alerting's tables: the channels alerts are sent to (a tenant's and the
//! operator's), the state of each raised alert, the per-minute worker
//! availability.
//!
//! What the evaluator decides on is the fleet read model's
//! ([`super::fleet::watched`]). Deciding which alert fires is not here (the
//! control plane's `alerts::rules` does that, without I/O); neither is
//! delivery.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::{DbError, OperatorTx, TenantTx};

// ---------------------------------------------------------------------------
// Channels
// ---------------------------------------------------------------------------

/// A channel as stored. Its secret (a webhook secret or a bot token) is
/// sealed by the control plane (AES-256-GCM; this crate never sees the key);
/// `secret` holds plaintext only for a row stored before migration 0010,
/// until the control plane seals it at start ([`seal_tenant_channel`]).
#[derive(Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ChannelRow {
    pub id: Uuid,
    /// `webhook` or `telegram`.
    pub kind: String,
    /// The webhook URL, or the Telegram chat id.
    pub target: String,
    /// Legacy plaintext; `None` once sealed.
    pub secret: Option<String>,
    pub secret_ciphertext: Option<Vec<u8>>,
    pub secret_nonce: Option<Vec<u8>>,
    /// Which key sealed it.
    pub secret_key_id: Option<String>,
    /// What the API shows in place of the secret.
    pub secret_fingerprint: String,
}

impl std::fmt::Debug for ChannelRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The target may carry a token in its query; the secret is one.
        f.debug_struct("ChannelRow")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("secret_key_id", &self.secret_key_id)
            .finish_non_exhaustive()
    }
}

/// The transaction's tenant's channels, in the order they were given.
pub async fn tenant_channels(tx: &mut TenantTx) -> Result<Vec<ChannelRow>, DbError> {
    sqlx::query_as(
        "SELECT id, kind, target, secret, secret_ciphertext, secret_nonce, secret_key_id, \
            secret_fingerprint FROM alert_channels WHERE tenant_id = $1 ORDER BY created_at, id",
    )
    .bind(tx.tenant().as_uuid())
    .fetch_all(&mut **tx)
    .await
    .map_err(DbError::query("reading alert channels"))
}

/// Replaces the transaction's tenant's channels with `channels` (kept in
/// this order).
pub async fn replace_tenant_channels(
    tx: &mut TenantTx,
    channels: &[ChannelRow],
) -> Result<(), DbError> {
    let tenant = tx.tenant().as_uuid();
    sqlx::query("DELETE FROM alert_channels WHERE tenant_id = $1")
        .bind(tenant)
        .execute(&mut **tx)
        .await
        .map_err(DbError::query("replacing alert channels"))?;
    for (i, c) in channels.iter().enumerate() {
        // One transaction shares one now(): the offset keeps the given order.
        sqlx::query(
            "INSERT INTO alert_channels (id, tenant_id, kind, target, secret, secret_ciphertext, \
                secret_nonce, secret_key_id, secret_fingerprint, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, now() + $10 * interval '1 microsecond')",
        )
        .bind(c.id)
        .bind(tenant)
        .bind(&c.kind)
        .bind(&c.target)
        .bind(&c.secret)
        .bind(&c.secret_ciphertext)
        .bind(&c.secret_nonce)
        .bind(&c.secret_key_id)
        .bind(&c.secret_fingerprint)
        .bind(i32::try_from(i).unwrap_or(i32::MAX))
        .execute(&mut **tx)
        .await
        .map_err(DbError::query("storing an alert channel"))?;
    }
    Ok(())
}

/// The operator-wide channels (every tenant's alerts), in the order given.
pub async fn operator_channels(op: &mut OperatorTx) -> Result<Vec<ChannelRow>, DbError> {
    sqlx::query_as(
        "SELECT id, kind, target, secret, secret_ciphertext, secret_nonce, secret_key_id, \
            secret_fingerprint FROM operator_alert_channels ORDER BY created_at, id",
    )
    .fetch_all(&mut **op)
    .await
    .map_err(DbError::query("reading operator alert channels"))
}

/// Replaces the operator-wide channels. They are not tenant data, so the
/// operator transaction may write them.
pub async fn replace_operator_channels(
    op: &mut OperatorTx,
    channels: &[ChannelRow],
) -> Result<(), DbError> {
    sqlx::query("DELETE FROM operator_alert_channels")
        .execute(&mut **op)
        .await
        .map_err(DbError::query("replacing operator alert channels"))?;
    for (i, c) in channels.iter().enumerate() {
        sqlx::query(
            "INSERT INTO operator_alert_channels (id, kind, target, secret, secret_ciphertext, \
                secret_nonce, secret_key_id, secret_fingerprint, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now() + $9 * interval '1 microsecond')",
        )
        .bind(c.id)
        .bind(&c.kind)
        .bind(&c.target)
        .bind(&c.secret)
        .bind(&c.secret_ciphertext)
        .bind(&c.secret_nonce)
        .bind(&c.secret_key_id)
        .bind(&c.secret_fingerprint)
        .bind(i32::try_from(i).unwrap_or(i32::MAX))
        .execute(&mut **op)
        .await
        .map_err(DbError::query("storing an operator alert channel"))?;
    }
    Ok(())
}

/// A secret as sealed: ciphertext, nonce and the sealing key's id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedSecret {
    pub ciphertext: Vec<u8>,
    pub nonce: Vec<u8>,
    pub key_id: String,
}

/// The tenants with a channel whose secret is still plaintext.
pub async fn tenants_with_plaintext_secrets(op: &mut OperatorTx) -> Result<Vec<Uuid>, DbError> {
    sqlx::query_scalar(
        "SELECT DISTINCT tenant_id FROM alert_channels WHERE secret IS NOT NULL ORDER BY tenant_id",
    )
    .fetch_all(&mut **op)
    .await
    .map_err(DbError::query("finding plaintext alert channel secrets"))
}

/// Replaces a channel's plaintext secret with `sealed`.
pub async fn seal_tenant_channel(
    tx: &mut TenantTx,
    id: Uuid,
    sealed: &SealedSecret,
) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE alert_channels SET secret = NULL, secret_ciphertext = $3, secret_nonce = $4, \
            secret_key_id = $5 WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tx.tenant().as_uuid())
    .bind(id)
    .bind(&sealed.ciphertext)
    .bind(&sealed.nonce)
    .bind(&sealed.key_id)
    .execute(&mut **tx)
    .await
    .map_err(DbError::query("sealing an alert channel secret"))?;
    Ok(())
}

/// Replaces an operator channel's plaintext secret with `sealed`.
pub async fn seal_operator_channel(
    op: &mut OperatorTx,
    id: Uuid,
    sealed: &SealedSecret,
) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE operator_alert_channels SET secret = NULL, secret_ciphertext = $2, \
            secret_nonce = $3, secret_key_id = $4 WHERE id = $1",
    )
    .bind(id)
    .bind(&sealed.ciphertext)
    .bind(&sealed.nonce)
    .bind(&sealed.key_id)
    .execute(&mut **op)
    .await
    .map_err(DbError::query("sealing an operator alert channel secret"))?;
    Ok(())
}

// ---------------------------------------------------------------------------
// Alert state
// ---------------------------------------------------------------------------

/// A raised alert of one tenant.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AlertStateRow {
    pub tenant_id: Uuid,
    pub alert: String,
    /// The strategy of a breaker alert; empty otherwise.
    pub subject: String,
    pub firing: bool,
    pub summary: String,
    pub fired_at: DateTime<Utc>,
    /// While firing: since when its condition has been clear.
    pub clear_since: Option<DateTime<Utc>>,
}

/// Every firing alert of every tenant, by tenant and key.
pub async fn firing_states(op: &mut OperatorTx) -> Result<Vec<AlertStateRow>, DbError> {
    sqlx::query_as(
        "SELECT tenant_id, alert, subject, firing, summary, fired_at, clear_since \
         FROM alert_states WHERE firing ORDER BY tenant_id, alert, subject",
    )
    .fetch_all(&mut **op)
    .await
    .map_err(DbError::query("reading alert states"))
}

/// Starts an alert firing (again): a new `fired_at`, no longer clearing.
pub async fn raise(
    tx: &mut TenantTx,
    alert: &str,
    subject: &str,
    summary: &str,
    at: DateTime<Utc>,
) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO alert_states (tenant_id, alert, subject, firing, summary, fired_at) \
         VALUES ($1, $2, $3, true, $4, $5) \
         ON CONFLICT (tenant_id, alert, subject) DO UPDATE SET firing = true, \
            summary = EXCLUDED.summary, fired_at = EXCLUDED.fired_at, \
            clear_since = NULL, resolved_at = NULL",
    )
    .bind(tx.tenant().as_uuid())
    .bind(alert)
    .bind(subject)
    .bind(summary)
    .bind(at)
    .execute(&mut **tx)
    .await
    .map_err(DbError::query("raising an alert"))?;
    Ok(())
}

/// Marks a firing alert's condition clear since `since`, or present again
/// (`None`): the resolution hold starts or is called off.
pub async fn set_clear_since(
    tx: &mut TenantTx,
    alert: &str,
    subject: &str,
    since: Option<DateTime<Utc>>,
) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE alert_states SET clear_since = $4 \
         WHERE tenant_id = $1 AND alert = $2 AND subject = $3",
    )
    .bind(tx.tenant().as_uuid())
    .bind(alert)
    .bind(subject)
    .bind(since)
    .execute(&mut **tx)
    .await
    .map_err(DbError::query("holding an alert's resolution"))?;
    Ok(())
}

/// Resolves a firing alert at `at`.
pub async fn resolve(
    tx: &mut TenantTx,
    alert: &str,
    subject: &str,
    at: DateTime<Utc>,
) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE alert_states SET firing = false, resolved_at = $4, clear_since = NULL \
         WHERE tenant_id = $1 AND alert = $2 AND subject = $3",
    )
    .bind(tx.tenant().as_uuid())
    .bind(alert)
    .bind(subject)
    .bind(at)
    .execute(&mut **tx)
    .await
    .map_err(DbError::query("resolving an alert"))?;
    Ok(())
}

/// A firing alert as the dashboard shows it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct FiringAlert {
    pub alert: String,
    pub subject: String,
    pub summary: String,
    pub fired_at: DateTime<Utc>,
}

/// The transaction's tenant's firing alerts, oldest first.
pub async fn firing(tx: &mut TenantTx) -> Result<Vec<FiringAlert>, DbError> {
    sqlx::query_as(
        "SELECT alert, subject, summary, fired_at FROM alert_states \
         WHERE tenant_id = $1 AND firing ORDER BY fired_at, alert, subject",
    )
    .bind(tx.tenant().as_uuid())
    .fetch_all(&mut **tx)
    .await
    .map_err(DbError::query("reading firing alerts"))
}

// ---------------------------------------------------------------------------
// Availability
// ---------------------------------------------------------------------------

/// Adds `desired_ms` and `up_ms` (capped at `desired_ms`) to the
/// transaction's tenant's availability in `minute`. A tenant deleted
/// meanwhile is skipped; returns whether a row was written.
pub async fn add_availability(
    tx: &mut TenantTx,
    minute: DateTime<Utc>,
    desired_ms: i64,
    up_ms: i64,
) -> Result<bool, DbError> {
    let written = sqlx::query(
        "INSERT INTO worker_availability (tenant_id, minute, desired_ms, up_ms) \
         SELECT $1, $2, $3, $4 WHERE EXISTS (SELECT 1 FROM tenants WHERE id = $1) \
         ON CONFLICT (tenant_id, minute) DO UPDATE SET \
            desired_ms = worker_availability.desired_ms + EXCLUDED.desired_ms, \
            up_ms = worker_availability.up_ms + EXCLUDED.up_ms",
    )
    .bind(tx.tenant().as_uuid())
    .bind(minute)
    .bind(desired_ms)
    .bind(up_ms.min(desired_ms))
    .execute(&mut **tx)
    .await
    .map_err(DbError::query("recording worker availability"))?;
    Ok(written.rows_affected() > 0)
}
