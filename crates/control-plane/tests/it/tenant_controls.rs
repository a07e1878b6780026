//! What a tenant's token may and may not do to itself: no live mode before a
//! venue has live execution, no lifting an operator's hold, no unbounded or
//! everlasting tokens (issue 16, items 5, 6 and 11). Each test performs the
//! attack and checks what was stored.

use crate::common;

use axum::http::{Method, StatusCode};
use common::{Harness, OPERATOR, TEST_PEM};
use serde_json::{Value, json};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

/// Creates a token for `tenant` with `caller`'s token and returns the reply.
async fn mint(h: &Harness, tenant: &str, caller: &str, body: Option<Value>) -> common::Reply {
    h.call(
        Method::POST,
        &format!("/tenants/{tenant}/tokens"),
        Some(caller),
        body,
    )
    .await
}

/// A new token of `tenant`, minted by the operator.
async fn tenant_token(h: &Harness, tenant: &str) -> String {
    let reply = mint(h, tenant, OPERATOR, None).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    reply.body["token"].as_str().unwrap().to_owned()
}

fn the_live_refusal(reply: &common::Reply) {
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.text
    );
    assert_eq!(reply.headers["content-type"], "application/problem+json");
    let errors = reply.body["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{}", reply.text);
    assert_eq!(errors[0]["field"], "mode");
    assert_eq!(
        errors[0]["message"],
        "live execution is not available for the tenant's venues yet; use paper (the default)"
    );
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn onboarding_in_live_mode_is_refused_and_stores_nothing(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let h = Harness::new(pool_opts, options).await;
    let reply = h
        .call(
            Method::POST,
            "/tenants",
            Some(OPERATOR),
            Some(json!({
                "name": "acme", "mode": "live",
                "exchange_keys": {"kalshi": {"key_id": "a952bcbe-ec3b-4b5b-b8f9-11dae589608c", "private_key_pem": TEST_PEM}},
            })),
        )
        .await;
    the_live_refusal(&reply);
    assert_eq!(h.count("SELECT count(*) FROM tenants").await, 0);
    assert_eq!(h.count("SELECT count(*) FROM tenant_secrets").await, 0);
    assert_eq!(h.count("SELECT count(*) FROM audit_log").await, 0);
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn switching_a_tenant_to_live_is_refused_and_changes_nothing(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let h = Harness::new(pool_opts, options).await;
    let id = h
        .onboard(json!({
            "name": "acme",
            "exchange_keys": {"kalshi": {"key_id": "a952bcbe-ec3b-4b5b-b8f9-11dae589608c", "private_key_pem": TEST_PEM}},
        }))
        .await;
    let token = tenant_token(&h, &id).await;
    for caller in [OPERATOR, token.as_str()] {
        let reply = h
            .call(
                Method::PATCH,
                &format!("/tenants/{id}"),
                Some(caller),
                Some(json!({"mode": "live", "name": "renamed"})),
            )
            .await;
        the_live_refusal(&reply);
    }
    assert_eq!(
        h.count(&format!(
            "SELECT count(*) FROM tenants WHERE id = '{id}' AND mode = 'paper' AND name = 'acme' AND spec_version = 1"
        ))
        .await,
        1
    );
    assert_eq!(
        h.count("SELECT count(*) FROM audit_log WHERE action = 'tenant.update'")
            .await,
        0
    );
}
