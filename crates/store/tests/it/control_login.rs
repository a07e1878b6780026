//! The control plane's own database login (`polybot migrate` creates it):
//! what it may do, and what it may not.

use polybot_store::{Db, Scope, roles};
use secrecy::SecretString;
use sqlx::PgPool;
use sqlx::postgres::PgConnectOptions;

/// A login name no other test of the shared cluster uses.
fn unique_login() -> String {
    format!("polybot_cp_{}", uuid::Uuid::new_v4().simple())
}

async fn attributes(pool: &PgPool, login: &str) -> (bool, bool, bool, bool, bool) {
    sqlx::query_as(
        "SELECT rolsuper, rolbypassrls, rolcreaterole, rolcreatedb, rolcanlogin \
         FROM pg_roles WHERE rolname = $1",
    )
    .bind(login)
    .fetch_one(pool)
    .await
    .unwrap()
}

async fn drop_login(pool: &PgPool, login: &str) {
    sqlx::raw_sql(&format!("DROP OWNED BY {login}; DROP ROLE {login}"))
        .execute(pool)
        .await
        .unwrap();
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn the_control_plane_login_is_no_superuser_and_cannot_bypass_row_level_security(
    pool_opts: sqlx::postgres::PgPoolOptions,
    options: PgConnectOptions,
) {
    let admin_pool = pool_opts.connect_with(options.clone()).await.unwrap();
    let admin = Db::from_pool(admin_pool.clone(), Scope::Control);
    let login = unique_login();
    let password = SecretString::from("a-password-of-the-control-plane".to_owned());

    roles::ensure_control_plane_login(&admin, &login, &password)
        .await
        .unwrap();
    // Again, as every `polybot migrate` does: nothing changes.
    roles::ensure_control_plane_login(&admin, &login, &password)
        .await
        .unwrap();
    assert_eq!(
        attributes(&admin_pool, &login).await,
        (false, false, false, false, true),
        "(superuser, bypassrls, createrole, createdb, login)"
    );

    let login_options = options
        .clone()
        .username(&login)
        .password("a-password-of-the-control-plane");
    let control = Db::connect(login_options.clone(), Scope::Control, 2)
        .await
        .unwrap();
    let raw = PgPool::connect_with(login_options).await.unwrap();
    assert!(control.migrations_current().await.unwrap());
    // Onboarding and offboarding a tenant's role work through polybot_owner's
    // functions, without CREATEROLE on the login.
    let tenant = polybot_store::testing::create_tenant(&control, "acme")
        .await
        .unwrap();
    let tenant_password = SecretString::from("a-password-of-the-tenant".to_owned());
    let role = roles::ensure_tenant_role(&control, tenant, &tenant_password)
        .await
        .unwrap();
    assert_eq!(role, tenant.db_role());
    assert!(roles::drop_tenant_role(&control, tenant).await.unwrap());
    // Without the tenant scope row level security shows it nothing…
    let unscoped: i64 = sqlx::query_scalar("SELECT count(*) FROM tenants")
        .fetch_one(&raw)
        .await
        .unwrap();
    assert_eq!(unscoped, 0);
    // …and it cannot change the schema.
    let ddl = sqlx::query("CREATE TABLE intruder (id int)")
        .execute(&raw)
        .await
        .unwrap_err();
    assert_eq!(
        ddl.as_database_error().and_then(|e| e.code()).as_deref(),
        Some("42501"),
        "{ddl}"
    );
    raw.close().await;
    control.close().await;
    drop_login(&admin_pool, &login).await;
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_new_password_replaces_the_old_one(
    pool_opts: sqlx::postgres::PgPoolOptions,
    options: PgConnectOptions,
) {
    let admin_pool = pool_opts.connect_with(options.clone()).await.unwrap();
    let admin = Db::from_pool(admin_pool.clone(), Scope::Control);
    let login = unique_login();
    for password in ["the-first-password", "the-rotated-password"] {
        roles::ensure_control_plane_login(&admin, &login, &SecretString::from(password))
            .await
            .unwrap();
    }
    let old = Db::connect(
        options
            .clone()
            .username(&login)
            .password("the-first-password"),
        Scope::Control,
        1,
    )
    .await
    .unwrap_err();
    assert!(old.to_string().contains("password"), "{old}");
    let new = Db::connect(
        options.username(&login).password("the-rotated-password"),
        Scope::Control,
        1,
    )
    .await
    .unwrap();
    new.close().await;
    drop_login(&admin_pool, &login).await;
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_group_a_tenant_or_the_administrator_is_refused_as_the_login(pool: PgPool) {
    let admin = Db::from_pool(pool.clone(), Scope::Control);
    let administrator: String = sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(&pool)
        .await
        .unwrap();
    let password = SecretString::from("whatever-it-is");
    for login in [
        "polybot_control",
        "polybot_t_0123456789abcdef0123456789abcdef",
        "Robert'); DROP TABLE students;--",
        administrator.as_str(),
    ] {
        let err = roles::ensure_control_plane_login(&admin, login, &password)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("control plane"), "{login}: {err}");
    }
}
