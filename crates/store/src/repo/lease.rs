//! The worker lease: which worker may write a tenant's data.
//!
//! A worker takes the lease with the next epoch ([`take`]), which fences
//! every earlier holder: each of their writes runs in a transaction opened by
//! [`Db::fenced`](crate::Db::fenced), which locks the lease row ([`epoch_for_share`])
//! and refuses to go on when the epoch moved. While it runs, the worker
//! renews the lease with every heartbeat ([`renew`]); on a clean stop it lets
//! it expire ([`release`]). Nothing here decides when a worker runs: that is
//! the reconciler's.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::{DbError, TenantTx};

/// A tenant's lease as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Lease {
    pub epoch: i64,
    /// Who holds it (`pid 42 on host`), for operators.
    pub holder: String,
    pub acquired_at: DateTime<Utc>,
    pub renewed_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// Takes the transaction's tenant's lease with the next epoch (1 for the
/// first worker) and returns it; whoever held it before is fenced from the
/// moment the transaction commits.
pub async fn take(tx: &mut TenantTx, holder: &str, ttl: Duration) -> Result<i64, DbError> {
    sqlx::query_scalar(
        "INSERT INTO worker_leases (tenant_id, epoch, holder, expires_at) \
         VALUES ($1, 1, $2, now() + make_interval(secs => $3)) \
         ON CONFLICT (tenant_id) DO UPDATE SET epoch = worker_leases.epoch + 1, holder = EXCLUDED.holder, \
            acquired_at = now(), renewed_at = now(), expires_at = EXCLUDED.expires_at \
         RETURNING epoch",
    )
    .bind(tx.tenant().as_uuid())
    .bind(holder)
    .bind(ttl.as_secs_f64())
    .fetch_one(&mut **tx)
    .await
    .map_err(DbError::query("taking the worker lease"))
}

/// The lease's epoch, locked (shared) until the transaction ends so that no
/// twin can take the lease while this transaction writes; `None` when the
/// tenant has no lease. [`Db::fenced`](crate::Db::fenced) is built on it.
pub async fn epoch_for_share(tx: &mut TenantTx) -> Result<Option<i64>, DbError> {
    sqlx::query_scalar("SELECT epoch FROM worker_leases WHERE tenant_id = $1 FOR SHARE")
        .bind(tx.tenant().as_uuid())
        .fetch_optional(&mut **tx)
        .await
        .map_err(DbError::query("checking the worker lease"))
}

/// Extends the lease held at the fenced transaction's epoch by `ttl` from now.
/// Returns whether it was renewed (never when the transaction is not fenced).
pub async fn renew(tx: &mut TenantTx, ttl: Duration) -> Result<bool, DbError> {
    let result = sqlx::query(
        "UPDATE worker_leases SET renewed_at = now(), expires_at = now() + make_interval(secs => $3) \
         WHERE tenant_id = $1 AND epoch = $2",
    )
    .bind(tx.tenant().as_uuid())
    .bind(tx.epoch())
    .bind(ttl.as_secs_f64())
    .execute(&mut **tx)
    .await
    .map_err(DbError::query("renewing the worker lease"))?;
    Ok(result.rows_affected() == 1)
}

/// Lets the lease held at the fenced transaction's epoch expire now; the epoch
/// stays, so the next worker still takes a higher one. Returns whether it was
/// released (never when the transaction is not fenced).
pub async fn release(tx: &mut TenantTx) -> Result<bool, DbError> {
    let result = sqlx::query(
        "UPDATE worker_leases SET expires_at = now() WHERE tenant_id = $1 AND epoch = $2",
    )
    .bind(tx.tenant().as_uuid())
    .bind(tx.epoch())
    .execute(&mut **tx)
    .await
    .map_err(DbError::query("releasing the worker lease"))?;
    Ok(result.rows_affected() == 1)
}

/// The transaction's tenant's lease, if it has one.
pub async fn get(tx: &mut TenantTx) -> Result<Option<Lease>, DbError> {
    sqlx::query_as::<_, Lease>(
        "SELECT epoch, holder, acquired_at, renewed_at, expires_at \
         FROM worker_leases WHERE tenant_id = $1",
    )
    .bind(tx.tenant().as_uuid())
    .fetch_optional(&mut **tx)
    .await
    .map_err(DbError::query("reading the worker lease"))
}
