//! Row level security keeps tenants apart: with two tenants A and B, A's own
//! login role and the control plane scoped to A can neither read nor write
//! B's rows, whatever they try.

use polybot_core::TenantId;
use polybot_store::testing::{create_tenant, tenant_login};
use polybot_store::{Db, Scope};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection};

/// One row per tenant table, for the tenant in $1. A table missing here fails
/// `every_tenant_table_is_seeded_by_the_isolation_suite`, so a new table cannot
/// skip these tests.
pub(crate) const SEED: &[(&str, &str)] = &[
    (
        "tenant_configs",
        "INSERT INTO tenant_configs (tenant_id) VALUES ($1)",
    ),
    (
        "tenant_billing",
        "INSERT INTO tenant_billing (tenant_id, plan_id) VALUES ($1, 'pro')",
    ),
    (
        "tenant_usage",
        "INSERT INTO tenant_usage (tenant_id, day, api_calls) VALUES ($1, current_date, 1)",
    ),
    (
        "usage_reports",
        "INSERT INTO usage_reports (tenant_id, day, metric, value, identifier) \
         VALUES ($1, current_date, 'orders', 1, 'seed-' || $1::text)",
    ),
    (
        "tenant_secrets",
        "INSERT INTO tenant_secrets (tenant_id, store, ciphertext) VALUES ($1, 'local', '\\x00')",
    ),
    (
        "tenant_runtime",
        "INSERT INTO tenant_runtime (tenant_id) VALUES ($1)",
    ),
    (
        "tenant_releases",
        "WITH r AS (INSERT INTO fleet_rollouts (settings, per_minute, state, finished_at) \
                    VALUES ('{\"POLYBOT_LOG\": \"debug\"}', 1, 'done', now()) RETURNING id) \
         INSERT INTO tenant_releases (tenant_id, rollout_id, state, began_at, done_at) \
         SELECT $1, id, 'done', now(), now() FROM r",
    ),
    (
        "tenant_runtime_events",
        "INSERT INTO tenant_runtime_events (tenant_id, kind, detail) VALUES ($1, 'observed', 'seed')",
    ),
    (
        "worker_leases",
        "INSERT INTO worker_leases (tenant_id, epoch, holder, expires_at) VALUES ($1, 1, 'seed', now())",
    ),
    (
        "worker_heartbeats",
        "INSERT INTO worker_heartbeats (tenant_id, epoch) VALUES ($1, 1)",
    ),
    (
        "opportunities",
        "INSERT INTO opportunities (id, tenant_id, strategy, venue, market) \
         VALUES (gen_random_uuid(), $1, 'complement_arb', 'polymarket', 'm')",
    ),
    (
        "trades",
        "INSERT INTO trades (id, tenant_id, strategy, venue, market, side, price, size) \
         VALUES (gen_random_uuid(), $1, 'complement_arb', 'polymarket', 'm', 'buy', 0.5, 10)",
    ),
    (
        "balances",
        "INSERT INTO balances (tenant_id, venue, asset, amount) VALUES ($1, 'polymarket', 'USDC', 100)",
    ),
    (
        "api_tokens",
        "INSERT INTO api_tokens (id, tenant_id, token_hash) VALUES (gen_random_uuid(), $1, gen_random_uuid()::text::bytea)",
    ),
    (
        "audit_log",
        "INSERT INTO audit_log (tenant_id, actor, action) VALUES ($1, 'seed', 'seed')",
    ),
    // Operator views (issue 9).
    (
        "alert_channels",
        "INSERT INTO alert_channels (id, tenant_id, kind, target, secret_ciphertext, secret_nonce, \
            secret_key_id, secret_fingerprint) \
         VALUES (gen_random_uuid(), $1, 'webhook', 'https://hooks.example.com/hook', 'seed', 'nonce', 'k', 'sha256:0')",
    ),
    (
        "alert_states",
        "INSERT INTO alert_states (tenant_id, alert, firing, summary, fired_at) \
         VALUES ($1, 'heartbeat_stale', true, 'seed', now())",
    ),
    (
        "worker_availability",
        "INSERT INTO worker_availability (tenant_id, minute, desired_ms, up_ms) \
         VALUES ($1, date_trunc('minute', now()), 1000, 500)",
    ),
    // Issue 17: exits recorded by task ARN.
    (
        "worker_exits",
        "INSERT INTO worker_exits (tenant_id, instance_id, reason, requested, crashed, exited_at) \
         VALUES ($1, 'arn:aws:ecs:us-east-1:123456789012:task/polybot/seed', 'seed', false, true, now())",
    ),
    // Issue 19: the paired-position ledger.
    (
        "paired_positions",
        "INSERT INTO paired_positions (id, tenant_id, epoch, strategy, opportunity, status, legs) \
         VALUES (gen_random_uuid(), $1, 1, 'cross_venue_arb', 1, 'open', '[]')",
    ),
];

/// Every table whose rows belong to a tenant, from the catalog: `tenants`
/// (keyed by `id`) and every table with a `tenant_id` column.
pub(crate) async fn tenant_tables(pool: &PgPool) -> Vec<(String, String)> {
    let mut tables: Vec<(String, String)> = sqlx::query_as(
        "SELECT c.table_name::text, 'tenant_id' FROM information_schema.columns c \
         JOIN information_schema.tables t USING (table_schema, table_name) \
         WHERE c.table_schema = 'public' AND c.column_name = 'tenant_id' AND t.table_type = 'BASE TABLE' \
         ORDER BY 1",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    tables.push(("tenants".into(), "id".into()));
    tables
}

pub(crate) struct Fixture {
    pub db: Db,
    pub a: TenantId,
    pub b: TenantId,
    pub a_login: PgConnectOptions,
}

pub(crate) async fn two_seeded_tenants(pool: PgPool, base: PgConnectOptions) -> Fixture {
    let db = Db::from_pool(pool, Scope::Control);
    let a = create_tenant(&db, "tenant-a").await.unwrap();
    let b = create_tenant(&db, "tenant-b").await.unwrap();
    for tenant in [a, b] {
        let mut tx = db.tenant(tenant).await.unwrap();
        for (table, sql) in SEED {
            let written = sqlx::query(sql)
                .bind(tenant.as_uuid())
                .execute(&mut *tx)
                .await
                .unwrap_or_else(|e| panic!("seeding {table}: {e}"))
                .rows_affected();
            assert_eq!(written, 1, "seeding {table}");
        }
        tx.commit().await.unwrap();
    }
    let a_login = tenant_login(&db, &base, a).await.unwrap();
    Fixture { db, a, b, a_login }
}

/// Rows of `tenant` in `table` that `conn` can see, or None if it may not read
/// the table at all (permission denied is also "reads none").
pub(crate) async fn visible(
    conn: &mut PgConnection,
    table: &str,
    column: &str,
    tenant: TenantId,
) -> Option<i64> {
    // Table and column names come from the catalog, not from input.
    let sql = format!("SELECT count(*) FROM {table} WHERE {column} = $1");
    match sqlx::query_scalar::<_, i64>(&sql)
        .bind(tenant.as_uuid())
        .fetch_one(&mut *conn)
        .await
    {
        Ok(n) => Some(n),
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42501") => None,
        Err(e) => panic!("reading {table}: {e}"),
    }
}

/// How the suite runs a statement as tenant A: on A's own login's
/// connection, or (through the pooler) in a transaction of its own that
/// carries A's claim.
pub(crate) trait Session {
    async fn count(&mut self, sql: &str, tenant: uuid::Uuid) -> Result<i64, sqlx::Error>;
    async fn execute(&mut self, sql: &str, binds: &[uuid::Uuid]) -> Result<u64, sqlx::Error>;
}

impl Session for PgConnection {
    async fn count(&mut self, sql: &str, tenant: uuid::Uuid) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar(sql).bind(tenant).fetch_one(self).await
    }

    async fn execute(&mut self, sql: &str, binds: &[uuid::Uuid]) -> Result<u64, sqlx::Error> {
        let mut query = sqlx::query(sql);
        for bind in binds {
            query = query.bind(*bind);
        }
        Ok(query.execute(self).await?.rows_affected())
    }
}

/// A worker login's connection through the pooler: every statement runs in
/// a transaction of its own that first sets `claim` (if any), as
/// [`polybot_store::Db`] does for a worker.
pub(crate) struct Claimed {
    pub conn: PgConnection,
    pub claim: Option<String>,
    /// Statements the worker runs first in each transaction (an attack's setup).
    pub setup: Vec<String>,
}

impl Claimed {
    async fn begin(&mut self) -> Result<sqlx::Transaction<'_, sqlx::Postgres>, sqlx::Error> {
        let mut tx = self.conn.begin().await?;
        if let Some(claim) = &self.claim {
            sqlx::query("SELECT set_config('polybot.worker_claim', $1, true)")
                .bind(claim)
                .execute(&mut *tx)
                .await?;
        }
        for sql in &self.setup {
            sqlx::raw_sql(sql).execute(&mut *tx).await?;
        }
        Ok(tx)
    }
}

impl Session for Claimed {
    async fn count(&mut self, sql: &str, tenant: uuid::Uuid) -> Result<i64, sqlx::Error> {
        let mut tx = self.begin().await?;
        let n = sqlx::query_scalar(sql)
            .bind(tenant)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(n)
    }

    async fn execute(&mut self, sql: &str, binds: &[uuid::Uuid]) -> Result<u64, sqlx::Error> {
        let mut tx = self.begin().await?;
        let mut query = sqlx::query(sql);
        for bind in binds {
            query = query.bind(*bind);
        }
        let done = query.execute(&mut *tx).await?.rows_affected();
        tx.commit().await?;
        Ok(done)
    }
}

/// [`visible`] for any [`Session`].
pub(crate) async fn visible_to(
    session: &mut impl Session,
    table: &str,
    column: &str,
    tenant: TenantId,
) -> Option<i64> {
    // Table and column names come from the catalog, not from input.
    let sql = format!("SELECT count(*) FROM {table} WHERE {column} = $1");
    match session.count(&sql, tenant.as_uuid()).await {
        Ok(n) => Some(n),
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42501") => None,
        Err(e) => panic!("reading {table}: {e}"),
    }
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_tenant_role_reads_none_of_another_tenants_rows(
    pool_opts: PgPoolOptions,
    base: PgConnectOptions,
) {
    let pool = pool_opts.connect_with(base.clone()).await.unwrap();
    let f = two_seeded_tenants(pool.clone(), base).await;
    let mut a = f.a_login.connect().await.unwrap();
    assert_a_reads_none_of_bs_rows(&pool, &f, &mut a).await;
}

/// As `a` (tenant A's own login, however it has set up its session), no row
/// of B is visible in any tenant table, and A's own are.
pub(crate) async fn assert_a_reads_none_of_bs_rows(
    pool: &PgPool,
    f: &Fixture,
    a: &mut impl Session,
) {
    let mut readable = 0;
    for (table, column) in tenant_tables(pool).await {
        let others = visible_to(a, &table, &column, f.b).await;
        assert!(
            matches!(others, None | Some(0)),
            "A sees {others:?} of B's rows in {table}"
        );
        if let Some(own) = visible_to(a, &table, &column, f.a).await {
            assert_eq!(own, 1, "A sees its own row in {table}");
            readable += 1;
        }
    }
    // The worker's own tables are readable, so the zeros above mean something.
    assert!(readable >= 8, "A could read only {readable} tables");
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_tenant_role_cannot_write_another_tenants_rows(
    pool_opts: PgPoolOptions,
    base: PgConnectOptions,
) {
    let pool = pool_opts.connect_with(base.clone()).await.unwrap();
    let f = two_seeded_tenants(pool.clone(), base).await;
    let mut a = f.a_login.connect().await.unwrap();
    assert_a_writes_none_of_bs_rows(&pool, &f, &mut a).await;
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn setting_the_tenant_as_a_tenant_role_changes_nothing(
    pool_opts: PgPoolOptions,
    base: PgConnectOptions,
) {
    let pool = pool_opts.connect_with(base.clone()).await.unwrap();
    let f = two_seeded_tenants(pool.clone(), base).await;
    let mut a = f.a_login.connect().await.unwrap();

    sqlx::query(&format!("SET polybot.tenant_id = '{}'", f.b))
        .execute(&mut a)
        .await
        .unwrap();
    assert_eq!(
        visible(&mut a, "opportunities", "tenant_id", f.b).await,
        Some(0)
    );
    assert_eq!(
        visible(&mut a, "opportunities", "tenant_id", f.a).await,
        Some(1)
    );

    let mut tx = a.begin().await.unwrap();
    sqlx::query("SELECT set_config('polybot.tenant_id', $1, true), set_config('polybot.operator', 'on', true)")
        .bind(f.b.to_string())
        .execute(&mut *tx)
        .await
        .unwrap();
    let current: Option<uuid::Uuid> = sqlx::query_scalar("SELECT polybot.current_tenant()")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(current, Some(f.a.as_uuid()));
    assert_eq!(visible(&mut tx, "trades", "tenant_id", f.b).await, Some(0));
    tx.rollback().await.unwrap();

    // Nor can it become the control plane.
    let err = sqlx::query("SET ROLE polybot_control")
        .execute(&mut a)
        .await
        .unwrap_err();
    assert_eq!(
        err.as_database_error().and_then(|e| e.code()).as_deref(),
        Some("42501")
    );
}

/// As `a` (tenant A's own login, however it has set up its session), no
/// insert, update or delete reaches B's rows, and A cannot move its own row
/// to B; B's rows are all still there afterwards.
pub(crate) async fn assert_a_writes_none_of_bs_rows(
    pool: &PgPool,
    f: &Fixture,
    a: &mut impl Session,
) {
    for (table, insert) in SEED {
        let result = a.execute(insert, &[f.b.as_uuid()]).await;
        let code = result.expect_err(&format!("A inserted a row of B into {table}"));
        let code = code
            .as_database_error()
            .and_then(|e| e.code())
            .map(|c| c.into_owned());
        // 42501: permission denied, or "new row violates row-level security policy".
        assert_eq!(code.as_deref(), Some("42501"), "inserting into {table}");
    }

    for (table, column) in tenant_tables(pool).await {
        let update = format!("UPDATE {table} SET {column} = {column} WHERE {column} = $1");
        match a.execute(&update, &[f.b.as_uuid()]).await {
            Ok(done) => assert_eq!(done, 0, "A updated B's rows in {table}"),
            Err(e) => assert_eq!(
                e.as_database_error().and_then(|e| e.code()).as_deref(),
                Some("42501")
            ),
        }
        let delete = format!("DELETE FROM {table} WHERE {column} = $1");
        match a.execute(&delete, &[f.b.as_uuid()]).await {
            Ok(done) => assert_eq!(done, 0, "A deleted B's rows in {table}"),
            Err(e) => assert_eq!(
                e.as_database_error().and_then(|e| e.code()).as_deref(),
                Some("42501")
            ),
        }
    }

    // Moving its own row over to B fails the WITH CHECK clause.
    let moved = a
        .execute(
            "UPDATE opportunities SET tenant_id = $1 WHERE tenant_id = $2",
            &[f.b.as_uuid(), f.a.as_uuid()],
        )
        .await
        .expect_err("A moved a row to B");
    assert_eq!(
        moved.as_database_error().and_then(|e| e.code()).as_deref(),
        Some("42501")
    );

    // B's rows are all still there.
    let mut tx = f.db.tenant(f.b).await.unwrap();
    for (table, column) in tenant_tables(pool).await {
        assert_eq!(
            visible(&mut tx, &table, &column, f.b).await,
            Some(1),
            "B's row in {table}"
        );
    }
    tx.commit().await.unwrap();
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn the_control_role_sees_no_tenant_rows_without_a_tenant_bound(
    pool_opts: PgPoolOptions,
    base: PgConnectOptions,
) {
    let pool = pool_opts.connect_with(base.clone()).await.unwrap();
    let f = two_seeded_tenants(pool.clone(), base).await;
    let tables = tenant_tables(&pool).await;

    let mut conn = pool.acquire().await.unwrap();
    let mut tx = conn.begin().await.unwrap();
    sqlx::query("SET LOCAL ROLE polybot_control")
        .execute(&mut *tx)
        .await
        .unwrap();
    for (table, _) in &tables {
        let n: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&mut *tx)
            .await
            .unwrap();
        assert_eq!(
            n, 0,
            "the control role sees {n} rows of {table} with no tenant bound"
        );
    }
    tx.rollback().await.unwrap();

    // Bound to A, it sees exactly A's rows.
    let mut tx = f.db.tenant(f.a).await.unwrap();
    for (table, _) in &tables {
        let n: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&mut *tx)
            .await
            .unwrap();
        assert_eq!(n, 1, "the control role bound to A sees {n} rows of {table}");
    }
    tx.commit().await.unwrap();

    // The operator scope reads both tenants, and writes nothing.
    let mut op = f.db.operator().await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM opportunities")
        .fetch_one(&mut *op)
        .await
        .unwrap();
    assert_eq!(n, 2);
    let deleted = sqlx::query("DELETE FROM opportunities")
        .execute(&mut *op)
        .await
        .unwrap();
    assert_eq!(deleted.rows_affected(), 0);
    op.commit().await.unwrap();
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn every_tenant_table_forces_row_level_security_with_both_clauses(pool: PgPool) {
    for (table, column) in tenant_tables(&pool).await {
        let (enabled, forced): (bool, bool) = sqlx::query_as(
            "SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE oid = $1::regclass",
        )
        .bind(&table)
        .fetch_one(&pool)
        .await
        .unwrap();
        assert!(
            enabled && forced,
            "{table}: ENABLE {enabled}, FORCE {forced}"
        );

        let (using, check): (Option<String>, Option<String>) = sqlx::query_as(
            "SELECT pg_get_expr(polqual, polrelid), pg_get_expr(polwithcheck, polrelid) \
             FROM pg_policy WHERE polrelid = $1::regclass AND polcmd = '*' AND polname = 'tenant_isolation'",
        )
        .bind(&table)
        .fetch_optional(&pool)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{table} has no tenant_isolation policy for all commands"));
        for clause in [using, check] {
            let clause = clause.unwrap_or_else(|| panic!("{table}: a clause is missing"));
            assert!(
                clause.contains(&column) && clause.contains("current_tenant()"),
                "{table}: {clause}"
            );
        }

        // An index leading with the tenant column.
        let indexed: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_index i JOIN pg_attribute a \
                ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] \
             WHERE i.indrelid = $1::regclass AND a.attname = $2)",
        )
        .bind(&table)
        .bind(&column)
        .fetch_one(&pool)
        .await
        .unwrap();
        assert!(indexed, "{table} has no index leading with {column}");

        if column == "tenant_id" {
            let (not_null, references_tenants): (bool, bool) = sqlx::query_as(
                "SELECT a.attnotnull, EXISTS (SELECT 1 FROM pg_constraint c \
                    WHERE c.conrelid = a.attrelid AND c.contype = 'f' AND c.conkey[1] = a.attnum \
                      AND c.confrelid = 'tenants'::regclass) \
                 FROM pg_attribute a WHERE a.attrelid = $1::regclass AND a.attname = 'tenant_id'",
            )
            .bind(&table)
            .fetch_one(&pool)
            .await
            .unwrap();
            assert!(
                not_null && references_tenants,
                "{table}: NOT NULL {not_null}, FK {references_tenants}"
            );
        }
    }
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn every_tenant_table_is_seeded_by_the_isolation_suite(pool: PgPool) {
    let mut expected: Vec<String> = tenant_tables(&pool)
        .await
        .into_iter()
        .map(|(t, _)| t)
        .collect();
    expected.retain(|t| t != "tenants");
    expected.sort();
    let mut seeded: Vec<String> = SEED.iter().map(|(t, _)| (*t).to_owned()).collect();
    seeded.sort();
    assert_eq!(seeded, expected);
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn migrating_twice_applies_nothing_the_second_time(pool: PgPool) {
    let db = Db::from_pool(pool, Scope::Control);
    assert_eq!(db.migrate().await.unwrap(), 0);
    assert!(db.migrations_current().await.unwrap());
}
