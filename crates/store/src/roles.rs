//! The per-tenant database login roles.

use polybot_core::TenantId;
use secrecy::{ExposeSecret, SecretString};

use crate::{Db, DbError};

/// Creates `tenant`'s login role (`polybot_t_<hex>`, member of
/// `polybot_worker`), or sets its password if it exists. Idempotent.
pub async fn ensure_tenant_role(
    db: &Db,
    tenant: TenantId,
    password: &SecretString,
) -> Result<String, DbError> {
    let mut tx = db.tenant(tenant).await?;
    let role: String = sqlx::query_scalar("SELECT polybot.ensure_tenant_role($1, $2)")
        .bind(tenant.as_uuid())
        .bind(password.expose_secret())
        .fetch_one(&mut *tx)
        .await
        .map_err(DbError::query("creating the tenant's database role"))?;
    tx.commit().await?;
    Ok(role)
}

/// Whether `tenant`'s login role exists.
pub async fn tenant_role_exists(db: &Db, tenant: TenantId) -> Result<bool, DbError> {
    let mut tx = db.tenant(tenant).await?;
    let exists: bool = sqlx::query_scalar("SELECT polybot.tenant_role_exists($1)")
        .bind(tenant.as_uuid())
        .fetch_one(&mut *tx)
        .await
        .map_err(DbError::query("looking up the tenant's database role"))?;
    tx.commit().await?;
    Ok(exists)
}

/// Drops `tenant`'s login role, ending its sessions and dropping what it owns
/// in this database first; false if there was none.
pub async fn drop_tenant_role(db: &Db, tenant: TenantId) -> Result<bool, DbError> {
    let mut tx = db.tenant(tenant).await?;
    let dropped: bool = sqlx::query_scalar("SELECT polybot.drop_tenant_role($1)")
        .bind(tenant.as_uuid())
        .fetch_one(&mut *tx)
        .await
        .map_err(DbError::query("dropping the tenant's database role"))?;
    tx.commit().await?;
    Ok(dropped)
}

/// [`ensure_tenant_role`] inside the caller's transaction (role changes are
/// transactional: they commit or roll back with it).
pub async fn ensure_tenant_role_in(
    tx: &mut crate::TenantTx,
    password: &SecretString,
) -> Result<String, DbError> {
    let tenant = tx.tenant();
    sqlx::query_scalar("SELECT polybot.ensure_tenant_role($1, $2)")
        .bind(tenant.as_uuid())
        .bind(password.expose_secret())
        .fetch_one(&mut **tx)
        .await
        .map_err(DbError::query("creating the tenant's database role"))
}

/// [`drop_tenant_role`] inside the caller's transaction (call
/// [`end_tenant_sessions_in`] before it, so that no session logs in again).
pub async fn drop_tenant_role_in(tx: &mut crate::TenantTx) -> Result<bool, DbError> {
    let tenant = tx.tenant();
    sqlx::query_scalar("SELECT polybot.drop_tenant_role($1)")
        .bind(tenant.as_uuid())
        .fetch_one(&mut **tx)
        .await
        .map_err(DbError::query("dropping the tenant's database role"))
}

/// Stops the transaction's tenant's login role from logging in and terminates
/// its sessions (their TEMP objects go with them); returns how many it ended.
/// Commit before [`drop_tenant_role_in`]: a NOLOGIN is seen by new
/// connections only once committed.
pub async fn end_tenant_sessions_in(tx: &mut crate::TenantTx) -> Result<i32, DbError> {
    let tenant = tx.tenant();
    sqlx::query_scalar("SELECT polybot.end_tenant_sessions($1)")
        .bind(tenant.as_uuid())
        .fetch_one(&mut **tx)
        .await
        .map_err(DbError::query("ending the tenant's database sessions"))
}
