//! Issue 22: tenants onboarded with a database login of their own move to
//! the fleet's shared worker login (`POST /fleet/shared-login-moves`,
//! `polybot fleet move-to-shared-login`): their secrets get the shared
//! login with a claim, their old roles stop logging in and are dropped once
//! no session uses them, and isolation holds through the shared login.

use crate::common;

use axum::http::{Method, StatusCode};
use common::{Harness, OPERATOR};
use polybot_control_plane::{AppState, WorkerDatabase, router};
use polybot_core::TenantId;
use polybot_store::testing::TestPooler;
use polybot_store::{Db, Scope, WorkerClaim};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPoolOptions};
use tower::ServiceExt;

/// The tenant's `DATABASE_URL` as its secret holds it.
async fn database_url(h: &Harness, tenant: TenantId) -> String {
    let mut tx = h.state.db.tenant(tenant).await.unwrap();
    let secret = h.state.secrets.get(&mut tx).await.unwrap().unwrap();
    tx.commit().await.unwrap();
    secret.database_url.unwrap().expose_secret().to_owned()
}

/// A pass of the move through `state`'s API.
async fn pass(state: &AppState, body: Value) -> (StatusCode, Value) {
    let request = axum::http::Request::builder()
        .method(Method::POST)
        .uri("/fleet/shared-login-moves")
        .header("authorization", format!("Bearer {OPERATOR}"))
        .header("content-type", "application/json")
        .body(axum::body::Body::from(body.to_string()))
        .unwrap();
    let response = router(state.clone()).oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap())
}

/// Each tenant's step in a pass, in the order of `tenants`.
fn steps(pass: &Value, tenants: &[TenantId]) -> Vec<String> {
    tenants
        .iter()
        .map(|t| {
            pass["tenants"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["tenant_id"] == t.to_string())
                .map_or("absent".to_owned(), |e| {
                    e["step"].as_str().unwrap().to_owned()
                })
        })
        .collect()
}

/// (exists, may log in) of the tenant's own role.
async fn own_role(h: &Harness, tenant: TenantId) -> (bool, bool) {
    let can: Option<bool> =
        sqlx::query_scalar("SELECT rolcanlogin FROM pg_roles WHERE rolname = $1")
            .bind(tenant.db_role())
            .fetch_optional(&h.pool)
            .await
            .unwrap();
    (can.is_some(), can.unwrap_or(false))
}

/// The worker's database as the worker opens it from its `DATABASE_URL`.
async fn worker_db(url: &str, tenant: TenantId) -> Db {
    let (rest, claim): (String, Option<WorkerClaim>) =
        polybot_store::claims::split_claim_from_url(url).unwrap();
    let claim = claim.expect("the URL carries a claim");
    assert_eq!(claim.tenant(), tenant);
    Db::connect_worker(rest.parse().unwrap(), tenant, Some(claim), 1)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn tenants_on_their_own_logins_move_to_the_shared_login_and_stay_isolated(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    // Onboarded without a pooler: each tenant gets a login role of its own.
    let h = Harness::new(pool_opts, options.clone()).await;
    let a = TenantId::from_uuid(h.onboard(json!({"name": "alpha"})).await.parse().unwrap());
    let b = TenantId::from_uuid(h.onboard(json!({"name": "beta"})).await.parse().unwrap());
    let (url_a, url_b) = (database_url(&h, a).await, database_url(&h, b).await);
    assert!(url_a.contains(&a.db_role()), "A logs in with its own role");
    assert_eq!(own_role(&h, a).await, (true, true));
    assert_eq!(own_role(&h, b).await, (true, true));

    // Without a shared login, there is nothing to move to: a 409 that says why.
    let (status, body) = pass(&h.state, json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("POLYBOT_WORKER_DATABASE_URL"),
        "{body}"
    );

    // A's old worker is still connected with its own role.
    let mut old_worker = PgConnection::connect(&url_a).await.unwrap();

    // The control plane restarted with the pooler's shared login.
    let db = Db::from_pool(h.pool.clone(), Scope::Control);
    let pooler = TestPooler::start(&db, &options, 2).await;
    let shared = AppState::new(
        db,
        h.state.secrets.clone(),
        WorkerDatabase::shared(
            &pooler.connect_options(options.get_database().unwrap()),
            pooler.password().clone(),
        ),
    );
    let version = |t: TenantId| {
        let h = &h;
        async move {
            h.count(&format!(
                "SELECT version FROM tenant_secrets WHERE tenant_id = '{t}'"
            ))
            .await
        }
    };
    let (version_a, version_b) = (version(a).await, version(b).await);

    // A dry run says what would happen and changes nothing.
    let (status, dry) = pass(&shared, json!({"dry_run": true})).await;
    assert_eq!(status, StatusCode::OK, "{dry}");
    assert_eq!(steps(&dry, &[a, b]), ["moved", "moved"]);
    assert_eq!(dry["dry_run"], true);
    assert_eq!((version(a).await, version(b).await), (version_a, version_b));
    assert_eq!(own_role(&h, a).await, (true, true));
    assert_eq!(database_url(&h, a).await, url_a);

    // The move: new secrets (the reconciler replaces both workers), the old
    // roles can no longer log in, A's old session is left alone.
    let (status, moved) = pass(&shared, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{moved}");
    assert_eq!(steps(&moved, &[a, b]), ["moved", "moved"]);
    assert_eq!(moved["remaining"], 2);
    assert!(version(a).await > version_a && version(b).await > version_b);
    assert_eq!(own_role(&h, a).await, (true, false));
    assert_eq!(own_role(&h, b).await, (true, false));
    let refused = PgConnection::connect(&url_b).await.unwrap_err().to_string();
    assert!(refused.contains("not permitted to log in"), "{refused}");
    let alive: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&mut old_worker)
        .await
        .unwrap();
    assert_eq!(alive, 1);

    // Run again (as after a crash, or to follow it): B's role, unused, is
    // dropped; A's waits for its old worker.
    let (_, again) = pass(&shared, json!({})).await;
    assert_eq!(steps(&again, &[a, b]), ["waiting", "dropped"]);
    assert_eq!(again["remaining"], 1);
    assert_eq!(own_role(&h, b).await, (false, false));

    // A's old worker stops; the leader's periodic pass drops A's role.
    old_worker.close().await.unwrap();
    let dropped = shared.provisioner.drop_unused_logins().await.unwrap();
    assert_eq!(dropped, 1);
    assert_eq!(own_role(&h, a).await, (false, false));
    let (_, done) = pass(&shared, json!({})).await;
    assert_eq!(done["tenants"], json!([]));
    assert_eq!(done["remaining"], 0);

    // Through the shared login, each worker sees and writes only its own rows.
    let (new_a, new_b) = (database_url(&h, a).await, database_url(&h, b).await);
    assert!(new_a.contains(&pooler.login) && !new_a.contains(&a.db_role()));
    for (me, url, other) in [(a, &new_a, b), (b, &new_b, a)] {
        let worker = worker_db(url, me).await;
        let mut tx = worker.tenant(me).await.unwrap();
        let seen: Vec<uuid::Uuid> = sqlx::query_scalar("SELECT id FROM tenants ORDER BY id")
            .fetch_all(&mut *tx)
            .await
            .unwrap();
        assert_eq!(seen, vec![me.as_uuid()]);
        sqlx::query("INSERT INTO worker_heartbeats (tenant_id, epoch) VALUES ($1, 1)")
            .bind(me.as_uuid())
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let mut tx = worker.tenant(me).await.unwrap();
        let err = sqlx::query("INSERT INTO worker_heartbeats (tenant_id, epoch) VALUES ($1, 1)")
            .bind(other.as_uuid())
            .execute(&mut *tx)
            .await
            .unwrap_err();
        assert_eq!(
            err.as_database_error().and_then(|e| e.code()).as_deref(),
            Some("42501"),
            "writing the other tenant's row is refused by row level security: {err}"
        );
        tx.rollback().await.unwrap();
        worker.close().await;
    }
    let heartbeats = h
        .count(&format!(
            "SELECT count(*) FROM worker_heartbeats WHERE tenant_id IN ('{a}', '{b}')"
        ))
        .await;
    assert_eq!(heartbeats, 2);
    // The audit log says what happened to each.
    let audited = h
        .count(
            "SELECT count(*) FROM audit_log WHERE action IN \
             ('tenant.moved_to_shared_login', 'tenant.own_login_dropped')",
        )
        .await;
    assert_eq!(audited, 4);
    drop(pooler);
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_move_request_with_an_unknown_field_is_a_422_naming_it(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let h = Harness::new(pool_opts, options).await;
    let reply = h
        .call(
            Method::POST,
            "/fleet/shared-login-moves",
            Some(OPERATOR),
            Some(json!({"dryrun": true})),
        )
        .await;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.text
    );
    assert!(reply.text.contains("dryrun"), "{}", reply.text);
}
