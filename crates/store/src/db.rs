//! The pool and the scoped transactions.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::Duration;

use polybot_core::TenantId;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{PgConnection, Postgres, Transaction};

use crate::claims::WorkerClaim;

/// The migrations of `migrations/`, embedded at compile time.
pub static MIGRATOR: Migrator = sqlx::migrate!("../../migrations");

/// A database failure, with what was being done.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database error while {context}: {source}")]
    Query {
        context: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error("migrating the database failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Another worker took this tenant's lease: this one must stop writing and exit.
    #[error(
        "fenced: tenant {tenant}'s lease is at epoch {current}, this worker holds epoch {mine}"
    )]
    Fenced {
        tenant: TenantId,
        mine: i64,
        current: i64,
    },
    /// The lease row is gone (the tenant was purged, or never leased).
    #[error("fenced: tenant {tenant} has no lease; this worker (epoch {mine}) must stop")]
    LeaseMissing { tenant: TenantId, mine: i64 },
}

impl DbError {
    /// Wraps a sqlx error with what was being done: `.map_err(DbError::query("reading x"))`.
    pub fn query(context: &'static str) -> impl FnOnce(sqlx::Error) -> DbError {
        move |source| DbError::Query { context, source }
    }

    /// The SQLSTATE of the underlying database error, if any.
    pub fn sqlstate(&self) -> Option<String> {
        match self {
            DbError::Query {
                source: sqlx::Error::Database(db),
                ..
            } => db.code().map(|c| c.into_owned()),
            _ => None,
        }
    }

    /// The constraint a database error names, if any.
    pub fn constraint(&self) -> Option<&str> {
        match self {
            DbError::Query {
                source: sqlx::Error::Database(db),
                ..
            } => db.constraint(),
            _ => None,
        }
    }
}

/// Who the pool's sessions act for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The control plane: the pool logs in as an administrator able to become
    /// `polybot_control`; every transaction switches to that role first, so row
    /// level security applies.
    Control,
    /// A worker. Either the pool logs in with the fleet's shared worker login
    /// and every transaction carries the tenant's [`WorkerClaim`], which the
    /// database verifies; or (tenants onboarded before claims) it logs in as
    /// the tenant's own role, which the database binds to that tenant. In both
    /// cases nothing the session sets can name another tenant.
    Worker(TenantId),
}

/// The pool. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Db {
    pool: PgPool,
    scope: Scope,
    /// The claim a worker's transactions carry (shared worker login).
    claim: Option<Arc<WorkerClaim>>,
}

impl Db {
    /// Connects with `options` and at most `max_connections` sessions.
    pub async fn connect(
        options: PgConnectOptions,
        scope: Scope,
        max_connections: u32,
    ) -> Result<Self, DbError> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .min_connections(0)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(DbError::query("connecting"))?;
        Ok(Self {
            pool,
            scope,
            claim: None,
        })
    }

    /// Connects a worker of `tenant`. With a `claim` (the shared worker login,
    /// through a transaction-mode pooler) every transaction sets it first,
    /// and no statement is kept prepared across transactions: the pooler may
    /// give the next transaction another server connection (PgBouncer
    /// before 1.21 does not carry prepared statements over). Without one the
    /// options log in as the tenant's own role.
    pub async fn connect_worker(
        options: PgConnectOptions,
        tenant: TenantId,
        claim: Option<WorkerClaim>,
        max_connections: u32,
    ) -> Result<Self, DbError> {
        let claim = check_claim(tenant, claim)?;
        let options = match &claim {
            Some(_) => options.statement_cache_capacity(0),
            None => options,
        };
        let mut db = Self::connect(options, Scope::Worker(tenant), max_connections).await?;
        db.claim = claim;
        Ok(db)
    }

    /// Wraps an existing pool (tests get one per fresh database).
    pub fn from_pool(pool: PgPool, scope: Scope) -> Self {
        Self {
            pool,
            scope,
            claim: None,
        }
    }

    /// Wraps an existing pool of the shared worker login for `claim`'s tenant
    /// (tests; the pool's connections should not cache statements).
    pub fn worker_from_pool(pool: PgPool, claim: WorkerClaim) -> Self {
        Self {
            pool,
            scope: Scope::Worker(claim.tenant()),
            claim: Some(Arc::new(claim)),
        }
    }

    pub fn scope(&self) -> Scope {
        self.scope
    }

    /// Applies the pending migrations; applying them again is a no-op.
    /// Returns how many were applied now.
    pub async fn migrate(&self) -> Result<usize, DbError> {
        let before = self.applied_migrations().await?;
        MIGRATOR.run(&self.pool).await?;
        Ok(self.applied_migrations().await? - before)
    }

    async fn applied_migrations(&self) -> Result<usize, DbError> {
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(DbError::query("connecting"))?;
        applied_migrations(&mut conn).await
    }

    /// Whether every embedded migration has been applied (for `/readyz`).
    pub async fn migrations_current(&self) -> Result<bool, DbError> {
        Ok(self.applied_migrations().await? >= MIGRATOR.iter().count())
    }

    /// A round trip to the server.
    pub async fn ping(&self) -> Result<(), DbError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(DbError::query("pinging the database"))?;
        Ok(())
    }

    /// Opens the transaction through which all of `tenant`'s data is reached.
    pub async fn tenant(&self, tenant: TenantId) -> Result<TenantTx, DbError> {
        let begin = match self.scope {
            // One round trip: the scoping rides along with BEGIN. The statement
            // is built from a `TenantId`, whose text is always a canonical
            // UUID, never from free input. Generic plans: with row level
            // security the planner otherwise keeps re-planning each prepared
            // statement (custom plans cost ~0.25 ms each), which measured as
            // most of RLS's overhead in the `rls_overhead` benchmark.
            Scope::Control => format!(
                "BEGIN; SELECT set_config('role', 'polybot_control', true), \
                 set_config('polybot.tenant_id', '{}', true), \
                 set_config('plan_cache_mode', 'force_generic_plan', true)",
                tenant.as_uuid().hyphenated()
            ),
            // The claim rides along with BEGIN, local to the transaction, so a
            // pooled server connection never carries it into another
            // worker's transaction. Its text is checked to be plain
            // (`v1.<uuid>.<digits>.<hex>`) when it is parsed.
            Scope::Worker(own) => {
                debug_assert_eq!(own, tenant, "a worker only reaches its own tenant");
                match &self.claim {
                    Some(claim) => format!(
                        "BEGIN; SELECT set_config('polybot.worker_claim', '{}', true)",
                        claim.expose_secret()
                    ),
                    // The login role is the binding; the database ignores the setting.
                    None => "BEGIN".to_owned(),
                }
            }
        };
        let tx = self
            .pool
            .begin_with(begin)
            .await
            .map_err(DbError::query("opening a tenant transaction"))?;
        Ok(TenantTx {
            tx,
            tenant,
            epoch: None,
        })
    }

    /// A transaction that runs as the pool's login user without switching to
    /// `polybot_control`: for a superuser, row level security does not apply.
    /// Only for tests and the RLS-overhead benchmark's baseline.
    #[cfg(feature = "testing")]
    pub async fn unscoped(&self, tenant: TenantId) -> Result<TenantTx, DbError> {
        let tx = self
            .pool
            .begin()
            .await
            .map_err(DbError::query("opening an unscoped transaction"))?;
        Ok(TenantTx {
            tx,
            tenant,
            epoch: None,
        })
    }

    /// A tenant transaction for a worker holding the lease at `epoch`: it locks
    /// the lease row (shared) and fails with [`DbError::Fenced`] if another
    /// worker has taken the lease since, so a stale twin cannot write.
    pub async fn fenced(&self, tenant: TenantId, epoch: i64) -> Result<TenantTx, DbError> {
        let mut tx = self.tenant(tenant).await?;
        match crate::repo::lease::epoch_for_share(&mut tx).await? {
            Some(current) if current == epoch => {
                tx.epoch = Some(epoch);
                Ok(tx)
            }
            Some(current) => Err(DbError::Fenced {
                tenant,
                mine: epoch,
                current,
            }),
            None => Err(DbError::LeaseMissing {
                tenant,
                mine: epoch,
            }),
        }
    }

    /// Opens a read transaction over every tenant, for operator views and the
    /// reconciler. Row level security lets it read (never write) tenant rows.
    pub async fn operator(&self) -> Result<OperatorTx, DbError> {
        let tx = match self.scope {
            Scope::Control => self
                .pool
                .begin_with(
                    "BEGIN; SELECT set_config('role', 'polybot_control', true), \
                     set_config('polybot.operator', 'on', true)",
                )
                .await
                .map_err(DbError::query("opening an operator transaction"))?,
            Scope::Worker(_) => {
                // The database refuses operator scope to tenant roles anyway;
                // refusing here makes the mistake visible at its source.
                return Err(DbError::Query {
                    context: "opening an operator transaction from a worker",
                    source: sqlx::Error::Protocol("workers have no operator scope".into()),
                });
            }
        };
        Ok(OperatorTx { tx })
    }

    /// The administrator's pool, for the store's own maintenance (migrations,
    /// the legacy import, role management). Not exported.
    pub(crate) fn admin_pool(&self) -> &PgPool {
        &self.pool
    }

    /// Closes the pool, waiting for connections to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// A worker's claim must be for the tenant it serves: refusing a mismatch here
/// names the mistake (the database would only show no rows).
fn check_claim(
    tenant: TenantId,
    claim: Option<WorkerClaim>,
) -> Result<Option<Arc<WorkerClaim>>, DbError> {
    match claim {
        Some(claim) if claim.tenant() != tenant => Err(DbError::Query {
            context: "checking the worker's database claim",
            source: sqlx::Error::Protocol(format!(
                "the claim is for tenant {}, this worker serves tenant {tenant}",
                claim.tenant()
            )),
        }),
        claim => Ok(claim.map(Arc::new)),
    }
}

/// A transaction scoped to one tenant: row level security shows it that
/// tenant's rows and no other's, and refuses writes of any other tenant's rows.
#[derive(Debug)]
pub struct TenantTx {
    tx: Transaction<'static, Postgres>,
    tenant: TenantId,
    epoch: Option<i64>,
}

impl TenantTx {
    pub fn tenant(&self) -> TenantId {
        self.tenant
    }

    /// The lease epoch this transaction was fenced with, if any.
    pub fn epoch(&self) -> Option<i64> {
        self.epoch
    }

    pub async fn commit(self) -> Result<(), DbError> {
        self.tx
            .commit()
            .await
            .map_err(DbError::query("committing a tenant transaction"))
    }

    pub async fn rollback(self) -> Result<(), DbError> {
        self.tx
            .rollback()
            .await
            .map_err(DbError::query("rolling back a tenant transaction"))
    }
}

impl Deref for TenantTx {
    type Target = PgConnection;
    fn deref(&self) -> &PgConnection {
        &self.tx
    }
}

impl DerefMut for TenantTx {
    fn deref_mut(&mut self) -> &mut PgConnection {
        &mut self.tx
    }
}

/// A read transaction across tenants for operators (see [`Db::operator`]).
#[derive(Debug)]
pub struct OperatorTx {
    tx: Transaction<'static, Postgres>,
}

impl OperatorTx {
    pub async fn commit(self) -> Result<(), DbError> {
        self.tx
            .commit()
            .await
            .map_err(DbError::query("closing an operator transaction"))
    }
}

impl Deref for OperatorTx {
    type Target = PgConnection;
    fn deref(&self) -> &PgConnection {
        &self.tx
    }
}

impl DerefMut for OperatorTx {
    fn deref_mut(&mut self) -> &mut PgConnection {
        &mut self.tx
    }
}

/// Leadership among control-plane replicas: a session-level advisory lock
/// held on one dedicated connection. It is released when the lock is
/// dropped or the connection dies, so a standby takes over.
#[derive(Debug)]
pub struct LeaderLock {
    conn: Option<sqlx::pool::PoolConnection<Postgres>>,
    key: i64,
}

impl Db {
    /// Tries to become the leader for `key`; `None` if another session is.
    pub async fn try_lead(&self, key: i64) -> Result<Option<LeaderLock>, DbError> {
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(DbError::query("acquiring the leader connection"))?;
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(key)
            .fetch_one(&mut *conn)
            .await
            .map_err(DbError::query("taking the leader lock"))?;
        if got {
            Ok(Some(LeaderLock {
                conn: Some(conn),
                key,
            }))
        } else {
            Ok(None)
        }
    }
}

impl LeaderLock {
    /// Whether this session still holds the lock (its connection is alive).
    pub async fn still_held(&mut self) -> bool {
        let Some(conn) = self.conn.as_mut() else {
            return false;
        };
        sqlx::query_scalar::<_, bool>(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' \
             AND pid = pg_backend_pid() AND objid = ($1::bigint & x'FFFFFFFF'::bigint)::oid AND granted)",
        )
        .bind(self.key)
        .fetch_one(&mut **conn)
        .await
        .unwrap_or(false)
    }

    /// Gives up leadership.
    pub async fn release(mut self) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        if let Err(err) = sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(self.key)
            .execute(&mut *conn)
            .await
        {
            tracing::debug!(%err, "releasing the leader lock; closing its connection instead");
            conn.close_on_drop();
        }
    }
}

impl Drop for LeaderLock {
    fn drop(&mut self) {
        // Closing the session releases the lock.
        if let Some(conn) = self.conn.take() {
            let mut conn = conn;
            conn.close_on_drop();
        }
    }
}

/// How many migrations the database behind `conn` has applied (0 for a
/// database never migrated); `polybot doctor` compares it with [`MIGRATOR`].
pub async fn applied_migrations(conn: &mut sqlx::PgConnection) -> Result<usize, DbError> {
    // Two statements: a subquery naming a missing table fails at parse time,
    // whatever a CASE around it says.
    let exists: bool =
        sqlx::query_scalar("SELECT to_regclass('public._sqlx_migrations') IS NOT NULL")
            .fetch_one(&mut *conn)
            .await
            .map_err(DbError::query("reading the migration history"))?;
    if !exists {
        return Ok(0);
    }
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(&mut *conn)
        .await
        .map_err(DbError::query("reading the migration history"))?;
    Ok(usize::try_from(count).unwrap_or(0))
}
