//! Onboarding survives a crash after any step, and a failed step compensates.

use crate::common;

use std::sync::Arc;

use axum::http::{Method, StatusCode};
use common::{Harness, OPERATOR};
use polybot_control_plane::WorkerDatabase;
use polybot_control_plane::provision::{Fault, Provisioner, Step};
use polybot_core::TenantId;
use secrecy::ExposeSecret;
use serde_json::json;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection};

/// Creates the tenant through the API without running its onboarding.
async fn created_tenant(h: &Harness) -> TenantId {
    let reply = h
        .call(Method::POST, "/tenants", Some(OPERATOR), Some(json!({"name": "acme", "exchange_keys": {"newsapi": {"api_key": "0123456789abcdef0123456789abcdef"}}})))
        .await;
    assert_eq!(reply.status, StatusCode::CREATED);
    // The API started onboarding in the background; wait for it, then rewind
    // the tenant to "just created" so each case starts from the same point.
    let id = reply.body["id"].as_str().unwrap().to_owned();
    h.wait_for_state(&id, "active").await;
    let tenant = TenantId::from_uuid(id.parse().unwrap());
    sqlx::query("SELECT polybot.drop_tenant_role($1)")
        .bind(tenant.as_uuid())
        .execute(&h.pool)
        .await
        .unwrap();
    sqlx::query(
        "UPDATE tenants SET state = 'provisioning', provisioning_step = 'created' WHERE id = $1",
    )
    .bind(tenant.as_uuid())
    .execute(&h.pool)
    .await
    .unwrap();
    sqlx::query("DELETE FROM tenant_runtime")
        .execute(&h.pool)
        .await
        .unwrap();
    tenant
}

fn provisioner(h: &Harness) -> Provisioner {
    Provisioner::new(
        h.state.db.clone(),
        h.state.secrets.clone(),
        WorkerDatabase::from_options(&h.options),
        h.state.reconcile.clone(),
    )
}

/// Exactly one of each, the tenant active, and the stored credentials log in.
async fn assert_onboarded_once(h: &Harness, tenant: TenantId) {
    assert_eq!(h.count("SELECT count(*) FROM tenants").await, 1);
    assert_eq!(
        h.count(&format!(
            "SELECT count(*) FROM pg_roles WHERE rolname = '{}'",
            tenant.db_role()
        ))
        .await,
        1
    );
    assert_eq!(h.count("SELECT count(*) FROM tenant_secrets").await, 1);
    assert_eq!(h.count("SELECT count(*) FROM tenant_runtime").await, 1);
    let (state, step): (String, String) =
        sqlx::query_as("SELECT state, provisioning_step FROM tenants")
            .fetch_one(&h.pool)
            .await
            .unwrap();
    assert_eq!((state.as_str(), step.as_str()), ("active", "done"));

    let mut tx = h.state.db.tenant(tenant).await.unwrap();
    let secret = h.state.secrets.get(&mut tx).await.unwrap().unwrap();
    tx.commit().await.unwrap();
    assert!(secret.exchange_keys.get("newsapi", "api_key").is_some());
    let url = secret.database_url.unwrap();
    let options: PgConnectOptions = url.expose_secret().parse().unwrap();
    let mut conn = options
        .database(h.options.get_database().unwrap())
        .connect()
        .await
        .unwrap();
    let me: String = sqlx::query_scalar("SELECT session_user::text")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(me, tenant.db_role());
    conn.close().await.unwrap();
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_crash_after_any_step_is_completed_by_the_next_start(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let h = Harness::new(pool_opts, options).await;
    let tenant = created_tenant(&h).await;
    for crash_after in [Step::Created, Step::Role, Step::Secret, Step::Spec] {
        // Rewind to the step, then "crash" right after committing the next one.
        sqlx::query(
            "UPDATE tenants SET state = 'provisioning', provisioning_step = $2 WHERE id = $1",
        )
        .bind(tenant.as_uuid())
        .bind(crash_after.as_str())
        .execute(&h.pool)
        .await
        .unwrap();
        let dying = provisioner(&h).with_fault(Arc::new(move |step| {
            (step != crash_after).then_some(Fault::Crash)
        }));
        let result = dying.run(tenant).await;
        if crash_after != Step::Spec {
            assert!(
                matches!(
                    result,
                    Err(polybot_control_plane::provision::ProvisionError::Crashed(_))
                ),
                "{crash_after:?}: {result:?}"
            );
            let state: String = sqlx::query_scalar("SELECT state FROM tenants")
                .fetch_one(&h.pool)
                .await
                .unwrap();
            assert_eq!(state, "provisioning", "a crash leaves the tenant mid-way");
        }
        // The next process resumes whatever is unfinished.
        provisioner(&h).resume_all().await.unwrap();
        assert_onboarded_once(&h, tenant).await;
    }
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_failed_step_marks_the_tenant_failed_compensates_and_can_be_retried(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let h = Harness::new(pool_opts, options).await;
    let tenant = created_tenant(&h).await;
    let failing =
        provisioner(&h).with_fault(Arc::new(|step| (step == Step::Role).then_some(Fault::Fail)));
    let err = failing.run(tenant).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "onboarding step `secret` failed: injected failure"
    );
    let (state, error): (String, Option<String>) =
        sqlx::query_as("SELECT state, last_error FROM tenants")
            .fetch_one(&h.pool)
            .await
            .unwrap();
    assert_eq!(state, "failed");
    assert_eq!(
        error.as_deref(),
        Some("onboarding step `secret` failed: injected failure")
    );
    // The role it had created is gone; the sealed keys stay for the retry.
    assert_eq!(
        h.count(&format!(
            "SELECT count(*) FROM pg_roles WHERE rolname = '{}'",
            tenant.db_role()
        ))
        .await,
        0
    );
    assert_eq!(h.count("SELECT count(*) FROM tenant_secrets").await, 1);
    let status = h
        .call(
            Method::GET,
            &format!("/tenants/{tenant}/status"),
            Some(OPERATOR),
            None,
        )
        .await;
    assert_eq!(
        status.body["last_error"],
        "onboarding step `secret` failed: injected failure"
    );

    let retry = h
        .call(
            Method::POST,
            &format!("/tenants/{tenant}/resume"),
            Some(OPERATOR),
            None,
        )
        .await;
    assert_eq!(retry.status, StatusCode::OK);
    h.wait_for_state(&tenant.to_string(), "active").await;
    assert_onboarded_once(&h, tenant).await;
}
