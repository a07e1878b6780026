//! PolyBot's Postgres layer.
//!
//! - [`Db`]: the connection pool and the one door to tenant data, the
//!   tenant-scoped transaction [`TenantTx`] (and [`OperatorTx`] for the
//!   operator-wide reads that row level security allows the control plane).
//! - [`MIGRATOR`]: the SQL migrations of `migrations/`, embedded in the binary.
//! - [`legacy`]: the import of the single-tenant bot's tables.
//! - [`repo`]: repositories; every function takes a transaction.
//! - [`embedded`]: a private PostgreSQL cluster for `polybot up` and the tests.
//! - [`claims`]: the per-tenant claims workers carry through the pooler.
//! - [`pooler`]: the private PgBouncer in front of it, the workers' connection budget.
//! - [`wakeups`]: `NOTIFY`/`LISTEN` that wakes the reconciler on whichever
//!   replica leads.
//!
//! Nothing outside this crate touches the pool: a query on a tenant table that
//! does not go through a [`TenantTx`] is a bug.

pub mod claims;
pub mod db;
pub mod embedded;
pub mod legacy;
pub mod pooler;
pub mod repo;
pub mod roles;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod wakeups;

pub use claims::WorkerClaim;
pub use db::{Db, DbError, LeaderLock, MIGRATOR, OperatorTx, Scope, TenantTx, applied_migrations};
