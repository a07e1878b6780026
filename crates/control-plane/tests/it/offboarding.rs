//! Issue 16: a tenant cannot keep itself from being offboarded. Its login's
//! sessions are ended and what it owns dropped, and an offboarding that fails
//! is retried by the reconciler until the tenant is `offboarded`.

use crate::common;

use std::sync::Arc;

use axum::http::{Method, StatusCode};
use common::{Harness, OPERATOR};
use polybot_control_plane::reconcile::Reconciler;
use polybot_core::TenantId;
use polybot_launcher::local::LocalLauncher;
use serde_json::json;
use sqlx::ConnectOptions;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

async fn role_count(h: &Harness, tenant: TenantId) -> i64 {
    h.count(&format!(
        "SELECT count(*) FROM pg_roles WHERE rolname = '{}'",
        tenant.db_role()
    ))
    .await
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_tenant_holding_a_temp_table_open_is_offboarded_and_its_role_dropped(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let h = Harness::new(pool_opts, options).await;
    let id = h.onboard(json!({"name": "stubborn"})).await;
    let tenant = TenantId::from_uuid(id.parse().unwrap());
    let login = polybot_store::testing::tenant_login(&h.state.db, &h.options, tenant)
        .await
        .unwrap();
    let mut held = login.connect().await.unwrap();
    sqlx::query("CREATE TEMP TABLE held (x int)")
        .execute(&mut held)
        .await
        .unwrap();
    sqlx::query("INSERT INTO held VALUES (1)")
        .execute(&mut held)
        .await
        .unwrap();

    let reply = h
        .call(
            Method::DELETE,
            &format!("/tenants/{id}"),
            Some(OPERATOR),
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.text);
    assert_eq!(reply.body["state"], "offboarded");
    assert_eq!(role_count(&h, tenant).await, 0);

    // The session that held the table was ended, and nothing logs in again.
    let ping = sqlx::query("SELECT 1").execute(&mut held).await;
    assert!(ping.is_err(), "the tenant's session survived offboarding");
    let again = login.connect().await;
    assert!(again.is_err(), "the tenant's login still logs in");
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn an_offboarding_that_cannot_finish_is_accepted_and_finished_by_the_reconciler(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let h = Harness::new(pool_opts, options).await;
    let id = h.onboard(json!({"name": "blocked"})).await;
    let tenant = TenantId::from_uuid(id.parse().unwrap());
    // A database the role owns: DROP OWNED leaves databases alone, so DROP
    // ROLE fails until the operator deals with it.
    let blocker = format!("polybot_blocker_{}", tenant.as_uuid().simple());
    sqlx::query(&format!(
        "CREATE DATABASE {blocker} OWNER {}",
        tenant.db_role()
    ))
    .execute(&h.pool)
    .await
    .unwrap();

    let reply = h
        .call(
            Method::DELETE,
            &format!("/tenants/{id}"),
            Some(OPERATOR),
            None,
        )
        .await;
    // Not a 500: offboarding has started, and the tenant says where it stands.
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.text);
    assert_eq!(reply.body["state"], "offboarding");
    assert_eq!(role_count(&h, tenant).await, 1);

    // Purging now would orphan the role: refused until it is offboarded.
    let purge = h
        .call(
            Method::DELETE,
            &format!("/tenants/{id}?purge=true"),
            Some(OPERATOR),
            None,
        )
        .await;
    assert_eq!(purge.status, StatusCode::CONFLICT, "{}", purge.text);
    assert_eq!(
        h.wait_for_state(&id, "offboarding").await["state"],
        "offboarding"
    );

    let dir = tempfile::tempdir().unwrap();
    let launcher =
        Arc::new(LocalLauncher::new("/bin/false".into(), dir.path().to_owned()).unwrap());
    let reconciler = Reconciler::new(
        h.state.db.clone(),
        launcher,
        h.state.secrets.clone(),
        h.state.reconcile.clone(),
    )
    .with_provisioner(h.state.provisioner.clone());

    // Still blocked: the retry fails the same way and leaves it offboarding.
    assert_eq!(reconciler.resume_unfinished().await.unwrap(), 1);
    assert_eq!(
        h.wait_for_state(&id, "offboarding").await["state"],
        "offboarding"
    );

    sqlx::query(&format!("DROP DATABASE {blocker}"))
        .execute(&h.pool)
        .await
        .unwrap();
    assert_eq!(reconciler.resume_unfinished().await.unwrap(), 1);
    assert_eq!(
        h.wait_for_state(&id, "offboarded").await["state"],
        "offboarded"
    );
    assert_eq!(role_count(&h, tenant).await, 0);
    // Nothing is left to take up.
    assert_eq!(reconciler.resume_unfinished().await.unwrap(), 0);
}
