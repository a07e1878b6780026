//! Helpers for tests (feature `testing`): tenants with their own login roles.

use polybot_core::{Mode, TenantId};
use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::PgConnectOptions;

use crate::repo::tenants;
use crate::{Db, DbError};

/// Creates a tenant row (state `provisioning`) named `name`.
pub async fn create_tenant(db: &Db, name: &str) -> Result<TenantId, DbError> {
    let id = TenantId::new();
    let mut tx = db.tenant(id).await?;
    tenants::insert(&mut tx, name, Mode::Paper).await?;
    tx.commit().await?;
    Ok(id)
}

/// Creates (or resets) `tenant`'s login role with a random password and
/// returns options that log in as it to the database of `base`.
pub async fn tenant_login(
    db: &Db,
    base: &PgConnectOptions,
    tenant: TenantId,
) -> Result<PgConnectOptions, DbError> {
    let password = SecretString::from(random_hex(24));
    crate::roles::ensure_tenant_role(db, tenant, &password).await?;
    Ok(base
        .clone()
        .username(&tenant.db_role())
        .password(password.expose_secret()))
}

fn random_hex(bytes: usize) -> String {
    use rand::RngCore;
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    hex::encode(buf)
}
