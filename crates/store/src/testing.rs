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

/// Creates a worker login of this test's own (a random name: roles are
/// shared by every database of the cluster) with a random password.
pub async fn worker_login(db: &Db) -> Result<(String, SecretString), DbError> {
    let login = format!("polybot_w_{}", random_hex(8));
    let password = SecretString::from(random_hex(24));
    crate::roles::ensure_worker_login(db, &login, &password).await?;
    Ok((login, password))
}

/// Mints a claim for `tenant`, valid for `valid_for`, as the control plane does.
pub async fn mint_claim(
    db: &Db,
    tenant: TenantId,
    valid_for: std::time::Duration,
) -> Result<crate::WorkerClaim, DbError> {
    let mut tx = db.tenant(tenant).await?;
    let claim = crate::claims::mint_in(&mut tx, valid_for).await?;
    tx.commit().await?;
    Ok(claim)
}

/// A PgBouncer (the same code as `polybot up`'s) in front of the server of
/// `base`, accepting one worker login of its own. Stopped when dropped.
#[derive(Debug)]
pub struct TestPooler {
    pooler: crate::pooler::EmbeddedPooler,
    _dir: tempfile::TempDir,
    pub login: String,
    password: SecretString,
}

impl TestPooler {
    /// Starts it with at most `server_connections` connections to the server.
    pub async fn start(db: &Db, base: &PgConnectOptions, server_connections: u32) -> Self {
        let (login, password) = worker_login(db).await.expect("creating a worker login");
        let dir = tempfile::Builder::new()
            .prefix("polybot-pgbouncer-")
            .tempdir()
            .expect("a temporary directory for PgBouncer");
        let mut options =
            crate::pooler::PoolerOptions::new(dir.path(), base.get_host(), base.get_port());
        options.server_connections = server_connections;
        options.max_clients = 2_000;
        options.logins = vec![(login.clone(), password.clone())];
        let pooler = crate::pooler::EmbeddedPooler::start(&options)
            .await
            .unwrap_or_else(|e| panic!("starting PgBouncer: {e}"));
        Self {
            pooler,
            _dir: dir,
            login,
            password,
        }
    }

    pub fn port(&self) -> u16 {
        self.pooler.port()
    }

    /// Options that log in to `database` through the pooler as the worker
    /// login, with no statement kept prepared (as a worker connects).
    pub fn connect_options(&self, database: &str) -> PgConnectOptions {
        PgConnectOptions::new()
            .host("127.0.0.1")
            .port(self.port())
            .username(&self.login)
            .password(self.password.expose_secret())
            .database(database)
            .statement_cache_capacity(0)
    }

    /// The worker login's password.
    pub fn password(&self) -> &SecretString {
        &self.password
    }
}
