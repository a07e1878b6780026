//! Issue 22: with a pooler (`--worker-database-url`), onboarding gives the
//! worker the fleet's shared login at PgBouncer and its tenant's claim, not a
//! login role of its own; the leader renews the claim before it expires,
//! and offboarding revokes it.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use axum::http::{Method, StatusCode};
use common::{Harness, OPERATOR};
use polybot_control_plane::{AppState, WorkerDatabase, auth};
use polybot_core::TenantId;
use polybot_secrets::local::{LocalSecretStore, MasterKey};
use polybot_store::testing::TestPooler;
use polybot_store::{Db, Scope, WorkerClaim};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

/// A control plane whose workers go through `pooler`.
async fn pooled_harness(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) -> (Harness, TestPooler) {
    let pool = pool_opts.connect_with(options.clone()).await.unwrap();
    let db = Db::from_pool(pool.clone(), Scope::Control);
    let pooler = TestPooler::start(&db, &options, 2).await;
    let worker = pooler.connect_options(options.get_database().unwrap());
    let store = Arc::new(LocalSecretStore::new(MasterKey::from_bytes([7u8; 32])));
    let state = AppState::new(
        db.clone(),
        store,
        WorkerDatabase::shared(&worker, pooler.password().clone()),
    );
    auth::ensure_operator_token(&db, Some(&SecretString::from(OPERATOR.to_owned())), None)
        .await
        .unwrap();
    (
        Harness {
            state,
            pool,
            options,
        },
        pooler,
    )
}

/// The worker's `DATABASE_URL` from the tenant's secret, split as the worker does.
async fn worker_url(h: &Harness, tenant: TenantId) -> (PgConnectOptions, WorkerClaim) {
    let mut tx = h.state.db.tenant(tenant).await.unwrap();
    let secret = h.state.secrets.get(&mut tx).await.unwrap().unwrap();
    tx.commit().await.unwrap();
    let url = secret.database_url.unwrap();
    let (rest, claim) = polybot_store::claims::split_claim_from_url(url.expose_secret()).unwrap();
    (
        rest.parse().unwrap(),
        claim.expect("the URL carries a claim"),
    )
}

/// The tenant ids a worker with `claim` sees in `tenants`.
async fn seen_by(
    options: &PgConnectOptions,
    tenant: TenantId,
    claim: WorkerClaim,
) -> Vec<uuid::Uuid> {
    let db = Db::connect_worker(options.clone(), tenant, Some(claim), 1)
        .await
        .unwrap();
    let mut tx = db.tenant(tenant).await.unwrap();
    let ids = sqlx::query_scalar("SELECT id FROM tenants")
        .fetch_all(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    db.close().await;
    ids
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn with_a_pooler_a_worker_gets_the_shared_login_and_a_claim_renewed_and_then_revoked(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let (h, pooler) = pooled_harness(pool_opts, options).await;
    let reply = h
        .call(
            Method::POST,
            "/tenants",
            Some(OPERATOR),
            Some(json!({"name": "acme"})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    let id = reply.body["id"].as_str().unwrap().to_owned();
    h.wait_for_state(&id, "active").await;
    let tenant = TenantId::from_uuid(id.parse().unwrap());

    // No login role of its own; the URL names the pooler and the shared login.
    assert_eq!(
        h.count(&format!(
            "SELECT count(*) FROM pg_roles WHERE rolname = '{}'",
            tenant.db_role()
        ))
        .await,
        0
    );
    let (worker, claim) = worker_url(&h, tenant).await;
    assert_eq!(worker.get_username(), pooler.login);
    assert_eq!(worker.get_port(), pooler.port());
    assert_eq!(claim.tenant(), tenant);
    let year_from_now = chrono::Utc::now() + chrono::Duration::days(364);
    assert!(
        claim.expires_at() > year_from_now,
        "{:?}",
        claim.expires_at()
    );
    assert_eq!(
        seen_by(&worker, tenant, claim.clone()).await,
        vec![tenant.as_uuid()]
    );

    // Nothing is due within a day; everything within two years. The renewal
    // rewrites the secret (a new version: the worker is replaced).
    let version = || async {
        h.count(&format!(
            "SELECT version FROM tenant_secrets WHERE tenant_id = '{tenant}'"
        ))
        .await
    };
    let before = version().await;
    let provisioner = h.state.provisioner.clone();
    assert_eq!(
        provisioner
            .renew_claims(Duration::from_secs(24 * 3600))
            .await
            .unwrap(),
        0
    );
    assert_eq!(version().await, before);
    assert_eq!(
        provisioner
            .renew_claims(Duration::from_secs(2 * 365 * 24 * 3600))
            .await
            .unwrap(),
        1
    );
    assert!(version().await > before);
    // A claim minted now (within the second of the first, here: the same).
    let (_, renewed) = worker_url(&h, tenant).await;
    assert!(renewed.expires_at() >= claim.expires_at());
    assert_eq!(
        seen_by(&worker, tenant, renewed.clone()).await,
        vec![tenant.as_uuid()]
    );

    // Offboarding revokes every claim of the tenant.
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
    assert_eq!(
        seen_by(&worker, tenant, renewed).await,
        Vec::<uuid::Uuid>::new()
    );
    assert_eq!(
        seen_by(&worker, tenant, claim).await,
        Vec::<uuid::Uuid>::new()
    );
}
