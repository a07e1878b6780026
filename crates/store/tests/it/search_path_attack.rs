//! Issue 16's attacks from a tenant's own database login against what the
//! policies call: shadowing `left`/`length`/`substr` in `public` to be taken
//! for another tenant, and listing the cluster's sessions. The row-level
//! isolation suite itself is `isolation.rs`; its fixture is reused here.

use polybot_core::TenantId;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, PgConnection};

use crate::isolation::{
    Claimed, assert_a_reads_none_of_bs_rows, assert_a_writes_none_of_bs_rows, two_seeded_tenants,
    visible_to,
};

fn code(err: &sqlx::Error) -> Option<String> {
    err.as_database_error()
        .and_then(|e| e.code())
        .map(|c| c.into_owned())
}

/// As tenant A's login, defines `public.left`, `public.length` and
/// `public.substr` so that an unpinned `current_tenant()` would compute `b`,
/// and puts `public` ahead of `pg_catalog`.
async fn shadow_the_tenant_functions(conn: &mut PgConnection, b: TenantId) {
    let b_hex = b.as_uuid().simple().to_string();
    for sql in [
        "CREATE FUNCTION public.left(text, integer) RETURNS text LANGUAGE sql \
         AS $$ SELECT 'polybot_t_'::text $$"
            .to_owned(),
        "CREATE FUNCTION public.length(text) RETURNS integer LANGUAGE sql AS $$ SELECT 42 $$"
            .to_owned(),
        format!(
            "CREATE FUNCTION public.substr(text, integer) RETURNS text LANGUAGE sql \
             AS $$ SELECT '{b_hex}'::text $$"
        ),
        "SET search_path = public, pg_catalog".to_owned(),
    ] {
        sqlx::query(&sql)
            .execute(&mut *conn)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    // The shadows are live for this session: an unqualified call gets them.
    let shadowed: String = sqlx::query_scalar("SELECT substr('anything'::text, 11)")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(shadowed, b_hex);
}

/// `public` open to everyone, as before PostgreSQL 15 or after pg_upgrade.
async fn open_public_to_everyone(pool: &PgPool) {
    sqlx::query("GRANT CREATE ON SCHEMA public TO PUBLIC")
        .execute(pool)
        .await
        .unwrap();
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_tenant_login_that_shadows_substr_reads_none_of_another_tenants_rows(
    pool_opts: PgPoolOptions,
    base: PgConnectOptions,
) {
    let pool = pool_opts.connect_with(base.clone()).await.unwrap();
    let f = two_seeded_tenants(pool.clone(), base).await;
    open_public_to_everyone(&pool).await;
    let mut a = f.a_login.connect().await.unwrap();
    shadow_the_tenant_functions(&mut a, f.b).await;

    let current: Option<uuid::Uuid> = sqlx::query_scalar("SELECT polybot.current_tenant()")
        .fetch_one(&mut a)
        .await
        .unwrap();
    assert_eq!(current, Some(f.a.as_uuid()));

    assert_a_reads_none_of_bs_rows(&pool, &f, &mut a).await;
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_tenant_login_that_shadows_substr_writes_none_of_another_tenants_rows(
    pool_opts: PgPoolOptions,
    base: PgConnectOptions,
) {
    let pool = pool_opts.connect_with(base.clone()).await.unwrap();
    let f = two_seeded_tenants(pool.clone(), base).await;
    open_public_to_everyone(&pool).await;
    let mut a = f.a_login.connect().await.unwrap();
    shadow_the_tenant_functions(&mut a, f.b).await;

    assert_a_writes_none_of_bs_rows(&pool, &f, &mut a).await;
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_tenant_login_cannot_create_anything_in_public(
    pool_opts: PgPoolOptions,
    base: PgConnectOptions,
) {
    let pool = pool_opts.connect_with(base.clone()).await.unwrap();
    let f = two_seeded_tenants(pool.clone(), base).await;
    let mut a = f.a_login.connect().await.unwrap();
    let err = sqlx::query(
        "CREATE FUNCTION public.substr(text, integer) RETURNS text LANGUAGE sql AS $$ SELECT '' $$",
    )
    .execute(&mut a)
    .await
    .expect_err("a tenant login created a function in public");
    assert_eq!(code(&err).as_deref(), Some("42501"));
    let public_create: bool =
        sqlx::query_scalar("SELECT has_schema_privilege('polybot_worker', 'public', 'CREATE')")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(!public_create);
}

/// Every function in the `polybot` schema (what policies and the control plane
/// call, SECURITY DEFINER or not) resolves names only in `pg_catalog`.
#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn every_polybot_function_pins_its_search_path(pool: PgPool) {
    let functions: Vec<(String, Option<Vec<String>>)> = sqlx::query_as(
        "SELECT p.oid::regprocedure::text, p.proconfig FROM pg_proc p \
         WHERE p.pronamespace = 'polybot'::regnamespace ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(functions.len() >= 10, "{functions:?}");
    for (function, config) in functions {
        assert_eq!(
            config,
            Some(vec!["search_path=pg_catalog, pg_temp".to_owned()]),
            "{function}"
        );
    }
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_tenant_login_cannot_list_the_clusters_sessions(
    pool_opts: PgPoolOptions,
    base: PgConnectOptions,
) {
    let pool = pool_opts.connect_with(base.clone()).await.unwrap();
    let f = two_seeded_tenants(pool.clone(), base).await;
    // B is connected while A looks.
    let b_login = polybot_store::testing::tenant_login(&f.db, &f.a_login, f.b)
        .await
        .unwrap();
    let mut b = b_login.connect().await.unwrap();
    sqlx::query("SELECT 1").execute(&mut b).await.unwrap();

    let mut a = f.a_login.connect().await.unwrap();
    for sql in [
        "SELECT count(*) FROM pg_stat_activity",
        "SELECT count(*) FROM pg_stat_get_activity(NULL)",
        "SELECT count(pg_stat_get_backend_userid(s)) FROM pg_stat_get_backend_idset() s",
    ] {
        let err = sqlx::query_scalar::<_, i64>(sql)
            .fetch_one(&mut a)
            .await
            .expect_err(sql);
        assert_eq!(code(&err).as_deref(), Some("42501"), "{sql}");
    }

    // The control plane still sees B's session (offboarding ends it).
    let mut tx = f.db.tenant(f.b).await.unwrap();
    let sessions: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE usename = $1")
            .bind(f.b.db_role())
            .fetch_one(&mut *tx)
            .await
            .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(sessions, 1);
}

/// Issue 22: the same attack by the shared worker login through PgBouncer,
/// against what verifying a claim calls: `sha256`, `decode` and `date_part`
/// shadowed in `public` (so that an unpinned verification would take an
/// all-zero MAC for any tenant and never see an expiry), `public` put first
/// in every transaction (session settings do not survive the pooler).
async fn shadowing_worker(
    pool: &PgPool,
    f: &crate::isolation::Fixture,
    base: &PgConnectOptions,
    pooler: &polybot_store::testing::TestPooler,
    claim: Option<String>,
) -> Claimed {
    open_public_to_everyone(pool).await;
    let database = base.get_database().unwrap();
    let mut conn = pooler.connect_options(database).connect().await.unwrap();
    let zeros = "0".repeat(64);
    let b_hex = f.b.as_uuid().simple().to_string();
    for sql in [
        format!(
            "CREATE FUNCTION public.sha256(bytea) RETURNS bytea LANGUAGE sql \
             AS $$ SELECT '\\x{zeros}'::bytea $$"
        ),
        format!(
            "CREATE FUNCTION public.decode(text, text) RETURNS bytea LANGUAGE sql \
             AS $$ SELECT '\\x{zeros}'::bytea $$"
        ),
        "CREATE FUNCTION public.date_part(text, timestamptz) RETURNS double precision \
         LANGUAGE sql AS $$ SELECT 0::double precision $$"
            .to_owned(),
        format!(
            "CREATE FUNCTION public.substr(text, integer) RETURNS text LANGUAGE sql \
             AS $$ SELECT '{b_hex}'::text $$"
        ),
    ] {
        sqlx::raw_sql(&sql)
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    Claimed {
        conn,
        claim,
        setup: vec!["SET LOCAL search_path = public, pg_catalog".to_owned()],
    }
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_worker_login_that_shadows_sha256_through_the_pooler_reads_and_writes_none_of_another_tenants_rows(
    pool_opts: PgPoolOptions,
    base: PgConnectOptions,
) {
    let pool = pool_opts.connect_with(base.clone()).await.unwrap();
    let f = two_seeded_tenants(pool.clone(), base.clone()).await;
    let pooler = polybot_store::testing::TestPooler::start(&f.db, &base, 2).await;
    let claim =
        polybot_store::testing::mint_claim(&f.db, f.a, std::time::Duration::from_secs(3600))
            .await
            .unwrap();
    // B has a key too, so only the pinned names stand between A and B.
    polybot_store::testing::mint_claim(&f.db, f.b, std::time::Duration::from_secs(3600))
        .await
        .unwrap();

    // With its own claim: A's rows, none of B's.
    let mut a = shadowing_worker(
        &pool,
        &f,
        &base,
        &pooler,
        Some(claim.expose_secret().to_owned()),
    )
    .await;
    // The shadows are live in its transactions: an unqualified call gets them.
    let mut tx = sqlx::Connection::begin(&mut a.conn).await.unwrap();
    sqlx::raw_sql("SET LOCAL search_path = public, pg_catalog")
        .execute(&mut *tx)
        .await
        .unwrap();
    let shadowed: String = sqlx::query_scalar("SELECT encode(sha256('x'::bytea), 'hex')")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(shadowed, "0".repeat(64));
    tx.rollback().await.unwrap();

    assert_a_reads_none_of_bs_rows(&pool, &f, &mut a).await;
    assert_a_writes_none_of_bs_rows(&pool, &f, &mut a).await;

    // A claim for B with an all-zero MAC, long expired: nothing.
    a.claim = Some(format!("v1.{}.1.{}", f.b, "0".repeat(64)));
    for tenant in [f.a, f.b] {
        assert_eq!(
            visible_to(&mut a, "opportunities", "tenant_id", tenant).await,
            Some(0)
        );
    }
}
