//! Issue 22: with the local launcher, a machine that runs no more workers
//! refuses the next tenant before accepting it, naming the limit reached.

use crate::common;

use std::sync::Arc;

use axum::http::{Method, StatusCode};
use common::{Harness, OPERATOR};
use polybot_control_plane::tenants::capacity::LocalWorkers;
use polybot_launcher::local_capacity::WorkerLimit;
use serde_json::json;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

const FULL: &str = "this machine runs at most 2 local workers: the configured --max-workers \
                    (POLYBOT_MAX_WORKERS); offboard or pause a tenant, or raise the limit \
                    (docs/operators.md)";

async fn harness(pool_opts: PgPoolOptions, options: PgConnectOptions) -> Harness {
    let mut h = Harness::new(pool_opts, options).await;
    h.state.local_workers = Some(Arc::new(LocalWorkers::new(WorkerLimit::configured(2))));
    h
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn the_third_tenant_on_a_two_worker_machine_is_refused_and_nothing_is_created(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let h = harness(pool_opts, options).await;
    let first = h.onboard(json!({"name": "first"})).await;
    h.onboard(json!({"name": "second"})).await;

    let key = [("idempotency-key", "onboard-third-1")];
    let refused = h
        .call_with(
            Method::POST,
            "/tenants",
            Some(OPERATOR),
            Some(json!({"name": "third"})),
            &key,
        )
        .await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.text);
    assert_eq!(
        refused.headers["content-type"].to_str().unwrap(),
        "application/problem+json"
    );
    assert_eq!(refused.body["type"], "/problems/capacity");
    assert_eq!(refused.body["status"], 409);
    assert_eq!(refused.body["detail"], FULL);
    assert_eq!(h.count("SELECT count(*) FROM tenants").await, 2);
    assert_eq!(h.count("SELECT count(*) FROM tenant_secrets").await, 2);
    assert_eq!(
        h.count("SELECT count(*) FROM tenants WHERE name = 'third'")
            .await,
        0
    );

    // Offboarding one frees its slot; the refused request's key was not spent.
    let gone = h
        .call(
            Method::DELETE,
            &format!("/tenants/{first}"),
            Some(OPERATOR),
            None,
        )
        .await;
    assert_eq!(gone.status, StatusCode::ACCEPTED, "{}", gone.text);
    let admitted = h
        .call_with(
            Method::POST,
            "/tenants",
            Some(OPERATOR),
            Some(json!({"name": "third"})),
            &key,
        )
        .await;
    assert_eq!(admitted.status, StatusCode::CREATED, "{}", admitted.text);
    assert_eq!(admitted.body["name"], "third");
    assert_eq!(
        h.count("SELECT count(*) FROM tenants WHERE state IN ('provisioning', 'active')")
            .await,
        2
    );
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_paused_tenant_frees_its_slot_and_is_refused_resuming_into_a_full_machine(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let h = harness(pool_opts, options).await;
    h.onboard(json!({"name": "first"})).await;
    let second = h.onboard(json!({"name": "second"})).await;

    let paused = h
        .call(
            Method::POST,
            &format!("/tenants/{second}/pause"),
            Some(OPERATOR),
            None,
        )
        .await;
    assert_eq!(paused.status, StatusCode::OK, "{}", paused.text);
    assert_eq!(paused.body["state"], "paused");
    h.onboard(json!({"name": "third"})).await;

    let resumed = h
        .call(
            Method::POST,
            &format!("/tenants/{second}/resume"),
            Some(OPERATOR),
            None,
        )
        .await;
    assert_eq!(resumed.status, StatusCode::CONFLICT, "{}", resumed.text);
    assert_eq!(resumed.body["type"], "/problems/capacity");
    assert_eq!(resumed.body["detail"], FULL);
    let still = h
        .call(
            Method::GET,
            &format!("/tenants/{second}"),
            Some(OPERATOR),
            None,
        )
        .await;
    assert_eq!(still.body["state"], "paused");

    // Pausing an active tenant needs no room, and frees one to resume into.
    let first = h
        .call(Method::GET, "/tenants", Some(OPERATOR), None)
        .await
        .body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "first")
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .unwrap();
    let paused = h
        .call(
            Method::POST,
            &format!("/tenants/{first}/pause"),
            Some(OPERATOR),
            None,
        )
        .await;
    assert_eq!(paused.body["state"], "paused", "{}", paused.text);
    let resumed = h
        .call(
            Method::POST,
            &format!("/tenants/{second}/resume"),
            Some(OPERATOR),
            None,
        )
        .await;
    assert_eq!(resumed.status, StatusCode::OK, "{}", resumed.text);
    assert_eq!(resumed.body["state"], "active");
}
