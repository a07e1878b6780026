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

/// Roles a login (the control plane's, the workers') must never be: the groups of
/// `0001_roles.sql`, whose attributes and grants migrations rely on.
const GROUP_ROLES: [&str; 3] = ["polybot_owner", "polybot_control", "polybot_worker"];

/// Creates the control plane's own login role `login`, or resets it: LOGIN
/// with `password`, member of `polybot_control`, and no superuser, CREATEDB,
/// CREATEROLE, REPLICATION or BYPASSRLS, so that row level security rests on
/// the credential. What it needs beyond `polybot_control`'s grants it has
/// none of: tenant roles are created by `polybot_owner`'s SECURITY DEFINER
/// functions. Runs as the administrator (`polybot migrate`), who must be
/// able to create roles and grant `polybot_control` (RDS's master user can).
/// Idempotent.
pub async fn ensure_control_plane_login(
    db: &Db,
    login: &str,
    password: &SecretString,
) -> Result<(), DbError> {
    ensure_login(db, Login::ControlPlane, login, password).await
}

/// Creates the fleet's shared worker login `login`, or resets it: LOGIN with
/// `password`, a direct member of `polybot_worker` (which makes the database
/// bind each of its transactions to the tenant of the claim it carries, see
/// [`crate::claims`]) and of nothing else, with no superuser, CREATEDB,
/// CREATEROLE, REPLICATION or BYPASSRLS. Runs as the administrator.
/// Idempotent.
pub async fn ensure_worker_login(
    db: &Db,
    login: &str,
    password: &SecretString,
) -> Result<(), DbError> {
    ensure_login(db, Login::Worker, login, password).await
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Login {
    ControlPlane,
    Worker,
}

impl Login {
    fn context(self) -> &'static str {
        match self {
            Login::ControlPlane => "creating the control plane's database login",
            Login::Worker => "creating the workers' database login",
        }
    }

    fn who(self) -> &'static str {
        match self {
            Login::ControlPlane => "the control plane",
            Login::Worker => "the workers",
        }
    }

    /// The group it joins, and the one it must never be in.
    fn groups(self) -> (&'static str, &'static str) {
        match self {
            Login::ControlPlane => ("polybot_control", "polybot_worker"),
            Login::Worker => ("polybot_worker", "polybot_control"),
        }
    }
}

async fn ensure_login(
    db: &Db,
    kind: Login,
    login: &str,
    password: &SecretString,
) -> Result<(), DbError> {
    let context = kind.context();
    let refuse = |why: String| DbError::Query {
        context,
        source: sqlx::Error::Protocol(why),
    };
    let plain = login.len() <= 63
        && login.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && login
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !plain || login.starts_with("polybot_t_") || GROUP_ROLES.contains(&login) {
        return Err(refuse(format!(
            "{login:?} cannot be {}'s login: use lowercase letters, digits \
             and _, not a tenant's role (polybot_t_…) nor one of {GROUP_ROLES:?}",
            kind.who()
        )));
    }
    let mut tx = db
        .admin_pool()
        .begin()
        .await
        .map_err(DbError::query("opening the role transaction"))?;
    let administrator: String = sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(&mut *tx)
        .await
        .map_err(DbError::query("reading the administrator's name"))?;
    if administrator == login {
        return Err(refuse(format!(
            "{login:?} is the administrator running the migrations; {} needs \
             a login of its own",
            kind.who()
        )));
    }
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)")
            .bind(login)
            .fetch_one(&mut *tx)
            .await
            .map_err(DbError::query("looking up a database login"))?;
    let (group, never) = kind.groups();
    let in_never: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_auth_members m \
         WHERE m.member = (SELECT oid FROM pg_roles WHERE rolname = $1) \
           AND m.roleid = (SELECT oid FROM pg_roles WHERE rolname = $2))",
    )
    .bind(login)
    .bind(never)
    .fetch_one(&mut *tx)
    .await
    .map_err(DbError::query("looking up a database login's groups"))?;
    // Role statements take no parameters: the server quotes the name and
    // the password itself (%I, %L).
    let statements: Vec<String> = sqlx::query_scalar(
        "SELECT format(s, $1, $2, $4, $5) FROM unnest(ARRAY[
             CASE WHEN $3 THEN 'ALTER ROLE %1$I WITH LOGIN PASSWORD %2$L'
                  ELSE 'CREATE ROLE %1$I WITH LOGIN PASSWORD %2$L' END
                 || ' NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT',
             'GRANT %3$I TO %1$I',
             CASE WHEN $6 THEN 'REVOKE %4$I FROM %1$I' END
         ]) WITH ORDINALITY AS t(s, n) WHERE s IS NOT NULL ORDER BY n",
    )
    .bind(login)
    .bind(password.expose_secret())
    .bind(exists)
    .bind(group)
    .bind(never)
    .bind(in_never)
    .fetch_all(&mut *tx)
    .await
    .map_err(DbError::query("preparing a database login"))?;
    for statement in statements {
        sqlx::raw_sql(&statement)
            .execute(&mut *tx)
            .await
            .map_err(DbError::query(context))?;
    }
    tx.commit()
        .await
        .map_err(DbError::query("committing a database login"))
}

/// A tenant's own login role as the catalog shows it (tenants onboarded
/// before the shared worker login, see `0026_move_to_shared_login.sql`).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct TenantLogin {
    #[sqlx(try_from = "uuid::Uuid")]
    pub tenant: TenantId,
    /// False once the move to the shared login has blocked it.
    pub can_login: bool,
    /// Sessions logged in with it now.
    pub sessions: i32,
}

/// Every tenant login role that exists, by tenant. Control plane only.
pub async fn tenant_logins(op: &mut crate::OperatorTx) -> Result<Vec<TenantLogin>, DbError> {
    sqlx::query_as("SELECT tenant_id AS tenant, can_login, sessions FROM polybot.tenant_logins()")
        .fetch_all(&mut **op)
        .await
        .map_err(DbError::query("listing the tenants' own database logins"))
}

/// Stops the transaction's tenant's own role from logging in, leaving its
/// sessions alone; false if it has none. Role changes are transactional:
/// it takes effect with the commit.
pub async fn block_tenant_login_in(tx: &mut crate::TenantTx) -> Result<bool, DbError> {
    let tenant = tx.tenant();
    sqlx::query_scalar("SELECT polybot.block_tenant_login($1)")
        .bind(tenant.as_uuid())
        .fetch_one(&mut **tx)
        .await
        .map_err(DbError::query("blocking the tenant's own database login"))
}
