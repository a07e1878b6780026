//! What a tenant's token may and may not do to itself: no shadow or live mode
//! on a venue without live execution, no lifting an operator's hold, no unbounded or
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

fn the_live_refusal(reply: &common::Reply, message: &str) {
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
    assert_eq!(errors[0]["message"], message);
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
    the_live_refusal(
        &reply,
        "a tenant starts in paper; once onboarded, switch it to shadow or live with \
         PATCH /tenants/{id} (see docs/live-trading.md)",
    );
    assert_eq!(h.count("SELECT count(*) FROM tenants").await, 0);
    assert_eq!(h.count("SELECT count(*) FROM tenant_secrets").await, 0);
    assert_eq!(h.count("SELECT count(*) FROM audit_log").await, 0);
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn switching_a_binance_us_tenant_to_shadow_is_refused_and_changes_nothing(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let h = Harness::new(pool_opts, options).await;
    let id = h
        .onboard(json!({
            "name": "acme",
            "exchange_keys": {"binance_us": {"api_key": "OLDKEY", "secret_key": "OLDSECRET"}},
        }))
        .await;
    let token = tenant_token(&h, &id).await;
    for caller in [OPERATOR, token.as_str()] {
        let reply = h
            .call(
                Method::PATCH,
                &format!("/tenants/{id}"),
                Some(caller),
                Some(json!({"mode": "shadow", "name": "renamed"})),
            )
            .await;
        the_live_refusal(
            &reply,
            "shadow needs live execution on every venue the tenant trades or holds keys for; \
             binance_us has none yet (only polymarket and kalshi do): remove its strategies and keys, or stay in paper",
        );
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

async fn act(
    h: &Harness,
    id: &str,
    verb: &str,
    caller: &str,
    body: Option<Value>,
) -> common::Reply {
    h.call(
        Method::POST,
        &format!("/tenants/{id}/{verb}"),
        Some(caller),
        body,
    )
    .await
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_tenant_cannot_resume_itself_while_an_operator_holds_it(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let h = Harness::new(pool_opts, options).await;
    let id = h.onboard(json!({"name": "acme"})).await;
    let token = tenant_token(&h, &id).await;

    let paused = act(
        &h,
        &id,
        "pause",
        OPERATOR,
        Some(json!({"reason": "unpaid invoice"})),
    )
    .await;
    assert_eq!(paused.status, StatusCode::OK, "{}", paused.text);
    assert_eq!(paused.body["state"], "paused");
    assert_eq!(paused.body["held_by_operator"], true);
    assert_eq!(paused.body["hold_reason"], "unpaid invoice");

    // The attack: the tenant's own token resumes right after the pause.
    let resumed = act(&h, &id, "resume", &token, None).await;
    assert_eq!(resumed.status, StatusCode::CONFLICT, "{}", resumed.text);
    assert_eq!(
        resumed.body["detail"],
        "an operator holds this tenant paused; only an operator can resume it"
    );
    // Pausing again does not lift the hold either.
    let again = act(&h, &id, "pause", &token, None).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text);
    assert_eq!(again.body["held_by_operator"], true);
    // Nor may a tenant set its own hold reason.
    let reason = act(&h, &id, "pause", &token, Some(json!({"reason": "mine"}))).await;
    assert_eq!(reason.status, StatusCode::FORBIDDEN, "{}", reason.text);

    let own = h
        .call(Method::GET, &format!("/tenants/{id}"), Some(&token), None)
        .await;
    assert_eq!(own.body["state"], "paused");
    assert_eq!(own.body["held_by_operator"], true);
    assert_eq!(own.body["hold_reason"], "unpaid invoice");
    let status = h
        .call(
            Method::GET,
            &format!("/tenants/{id}/status"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status.body["state"], "paused");
    assert_eq!(status.body["desired"], "stopped");
    assert_eq!(status.body["held_by_operator"], true);
    assert_eq!(status.body["hold_reason"], "unpaid invoice");
    assert_eq!(
        h.count(&format!(
            "SELECT count(*) FROM tenants WHERE id = '{id}' AND state = 'paused' AND held_by_operator"
        ))
        .await,
        1
    );

    let lifted = act(&h, &id, "resume", OPERATOR, None).await;
    assert_eq!(lifted.status, StatusCode::OK, "{}", lifted.text);
    assert_eq!(lifted.body["state"], "active");
    assert_eq!(lifted.body["held_by_operator"], false);
    assert_eq!(lifted.body["hold_reason"], Value::Null);

    // Without a hold, a tenant pauses and resumes itself as before.
    let own_pause = act(&h, &id, "pause", &token, None).await;
    assert_eq!(own_pause.body["held_by_operator"], false);
    let own_resume = act(&h, &id, "resume", &token, None).await;
    assert_eq!(own_resume.status, StatusCode::OK, "{}", own_resume.text);
    assert_eq!(own_resume.body["state"], "active");
    assert_eq!(
        h.count(&format!(
            "SELECT count(*) FROM audit_log WHERE tenant_id = '{id}' AND action = 'tenant.pause' \
             AND actor = 'operator' AND details->>'reason' = 'unpaid invoice'"
        ))
        .await,
        1
    );
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_revoked_token_is_refused_at_once_and_listing_never_shows_a_secret(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let h = Harness::new(pool_opts, options).await;
    let id = h.onboard(json!({"name": "acme"})).await;
    let created = mint(&h, &id, OPERATOR, Some(json!({"label": "ci"}))).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let token = created.body["token"].as_str().unwrap().to_owned();
    let token_id = created.body["id"].as_str().unwrap().to_owned();

    // A use puts the token in the auth cache (15 s); the revocation below
    // follows within milliseconds, so a 401 shows the cache was dropped.
    let before = h
        .call(Method::GET, &format!("/tenants/{id}"), Some(&token), None)
        .await;
    assert_eq!(before.status, StatusCode::OK);

    let listed = h
        .call(
            Method::GET,
            &format!("/tenants/{id}/tokens"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.text);
    let items = listed.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["id"], token_id.as_str());
    assert_eq!(items[0]["label"], "ci");
    assert_eq!(items[0]["expired"], false);
    assert!(items[0]["last_used_at"].is_string(), "{}", listed.text);
    assert!(items[0]["created_at"].is_string());
    assert_eq!(items[0]["expires_at"], created.body["expires_at"]);
    assert!(!listed.text.contains(&token[4..]));

    let revoked = h
        .call(
            Method::DELETE,
            &format!("/tenants/{id}/tokens/{token_id}"),
            Some(OPERATOR),
            None,
        )
        .await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT, "{}", revoked.text);
    let after = h
        .call(Method::GET, &format!("/tenants/{id}"), Some(&token), None)
        .await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED);
    let again = h
        .call(
            Method::DELETE,
            &format!("/tenants/{id}/tokens/{token_id}"),
            Some(OPERATOR),
            None,
        )
        .await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    let listed = h
        .call(
            Method::GET,
            &format!("/tenants/{id}/tokens"),
            Some(OPERATOR),
            None,
        )
        .await;
    assert_eq!(listed.body["items"], json!([]));
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_tenant_cannot_revoke_or_list_another_tenants_tokens(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let h = Harness::new(pool_opts, options).await;
    let a = h.onboard(json!({"name": "a"})).await;
    let b = h.onboard(json!({"name": "b"})).await;
    let a_token = tenant_token(&h, &a).await;
    let b_created = mint(&h, &b, OPERATOR, None).await;
    let b_token = b_created.body["token"].as_str().unwrap().to_owned();
    let b_token_id = b_created.body["id"].as_str().unwrap().to_owned();
    for uri in [
        format!("/tenants/{b}/tokens/{b_token_id}"),
        format!("/tenants/{a}/tokens/{b_token_id}"),
    ] {
        let reply = h.call(Method::DELETE, &uri, Some(&a_token), None).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{uri}");
    }
    let listed = h
        .call(
            Method::GET,
            &format!("/tenants/{b}/tokens"),
            Some(&a_token),
            None,
        )
        .await;
    assert_eq!(listed.status, StatusCode::NOT_FOUND);
    let still = h
        .call(Method::GET, &format!("/tenants/{b}"), Some(&b_token), None)
        .await;
    assert_eq!(still.status, StatusCode::OK);
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn an_expired_token_is_refused(pool_opts: PgPoolOptions, options: PgConnectOptions) {
    let h = Harness::new(pool_opts, options).await;
    let id = h.onboard(json!({"name": "acme"})).await;
    let created = mint(&h, &id, OPERATOR, None).await;
    let token = created.body["token"].as_str().unwrap().to_owned();
    sqlx::query(
        "UPDATE api_tokens SET expires_at = now() - interval '1 second' WHERE id = $1::uuid",
    )
    .bind(created.body["id"].as_str().unwrap())
    .execute(&h.pool)
    .await
    .unwrap();
    let reply = h
        .call(Method::GET, &format!("/tenants/{id}"), Some(&token), None)
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.text);
    let listed = h
        .call(
            Method::GET,
            &format!("/tenants/{id}/tokens"),
            Some(OPERATOR),
            None,
        )
        .await;
    assert_eq!(listed.body["items"][0]["expired"], true);
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_token_lives_ninety_days_by_default_and_at_most_a_year(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let h = Harness::new(pool_opts, options).await;
    let id = h.onboard(json!({"name": "acme"})).await;
    let days_left = |reply: &common::Reply| {
        let at: chrono::DateTime<chrono::Utc> =
            reply.body["expires_at"].as_str().unwrap().parse().unwrap();
        (at - chrono::Utc::now()).num_hours().div_euclid(24) + 1
    };
    let default = mint(&h, &id, OPERATOR, None).await;
    assert_eq!(days_left(&default), 90);
    let year = mint(&h, &id, OPERATOR, Some(json!({"expires_in_days": 365}))).await;
    assert_eq!(year.status, StatusCode::CREATED, "{}", year.text);
    assert_eq!(days_left(&year), 365);
    for bad in [json!(366), json!(0), json!("30"), json!(1.5)] {
        let reply = mint(&h, &id, OPERATOR, Some(json!({"expires_in_days": bad}))).await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{bad}: {}",
            reply.text
        );
        assert_eq!(reply.body["errors"][0]["field"], "expires_in_days");
    }
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_token_label_too_long_is_refused_naming_the_field_not_truncated(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let h = Harness::new(pool_opts, options).await;
    let id = h.onboard(json!({"name": "acme"})).await;
    let longest = "é".repeat(100);
    let fits = mint(&h, &id, OPERATOR, Some(json!({"label": longest}))).await;
    assert_eq!(fits.status, StatusCode::CREATED, "{}", fits.text);
    for bad in [json!("x".repeat(101)), json!(7)] {
        let reply = mint(&h, &id, OPERATOR, Some(json!({"label": bad}))).await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{bad}: {}",
            reply.text
        );
        assert_eq!(reply.body["errors"][0]["field"], "label");
    }
    let listed = h
        .call(
            Method::GET,
            &format!("/tenants/{id}/tokens"),
            Some(OPERATOR),
            None,
        )
        .await;
    let labels: Vec<&str> = listed.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["label"].as_str().unwrap())
        .collect();
    assert_eq!(labels, vec![longest.as_str()]);
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_tenant_token_cannot_mint_a_token_that_outlives_itself(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let h = Harness::new(pool_opts, options).await;
    let id = h.onboard(json!({"name": "acme"})).await;
    let short = mint(&h, &id, OPERATOR, Some(json!({"expires_in_days": 2}))).await;
    let short_token = short.body["token"].as_str().unwrap().to_owned();

    let longer = mint(&h, &id, &short_token, Some(json!({"expires_in_days": 30}))).await;
    assert_eq!(longer.status, StatusCode::FORBIDDEN, "{}", longer.text);
    assert_eq!(
        longer.body["detail"],
        "a tenant token cannot create a token that outlives itself"
    );
    // Without a lifetime, the new token ends when its creator does.
    let child = mint(&h, &id, &short_token, None).await;
    assert_eq!(child.status, StatusCode::CREATED, "{}", child.text);
    let child_at: chrono::DateTime<chrono::Utc> =
        child.body["expires_at"].as_str().unwrap().parse().unwrap();
    let own_at: chrono::DateTime<chrono::Utc> =
        short.body["expires_at"].as_str().unwrap().parse().unwrap();
    assert!(
        (child_at - own_at).num_milliseconds().abs() < 1,
        "{child_at} {own_at}"
    );
    assert_eq!(
        h.count(&format!(
            "SELECT count(*) FROM api_tokens WHERE tenant_id = '{id}'"
        ))
        .await,
        2
    );
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_tenant_cannot_hold_more_than_twenty_live_tokens(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let h = Harness::new(pool_opts, options).await;
    let id = h.onboard(json!({"name": "acme"})).await;
    let token = tenant_token(&h, &id).await;
    for n in 1..20 {
        let reply = mint(&h, &id, &token, None).await;
        assert_eq!(
            reply.status,
            StatusCode::CREATED,
            "token {n}: {}",
            reply.text
        );
    }
    let over = mint(&h, &id, &token, None).await;
    assert_eq!(over.status, StatusCode::CONFLICT, "{}", over.text);
    assert_eq!(
        over.body["detail"],
        "the tenant already has 20 live tokens, the maximum; revoke one first"
    );
    let over = mint(&h, &id, OPERATOR, None).await;
    assert_eq!(
        over.status,
        StatusCode::CONFLICT,
        "the cap binds the operator too"
    );
    assert_eq!(
        h.count(&format!(
            "SELECT count(*) FROM api_tokens WHERE tenant_id = '{id}'"
        ))
        .await,
        20
    );
    // Revoking one makes room again.
    let listed = h
        .call(
            Method::GET,
            &format!("/tenants/{id}/tokens"),
            Some(OPERATOR),
            None,
        )
        .await;
    let last = listed.body["items"][19]["id"].as_str().unwrap().to_owned();
    let revoked = h
        .call(
            Method::DELETE,
            &format!("/tenants/{id}/tokens/{last}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT);
    assert_eq!(
        mint(&h, &id, &token, None).await.status,
        StatusCode::CREATED
    );
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn configuring_a_new_operator_token_and_restarting_revokes_the_old_one(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let h = Harness::new(pool_opts, options).await;
    let rotated = "pbo_rotated-operator-token-0123456789abcdef";
    // What a restart with the new token configured does.
    polybot_control_plane::auth::ensure_operator_token(
        &h.state.db,
        Some(&secrecy::SecretString::from(rotated.to_owned())),
        None,
    )
    .await
    .unwrap();
    h.state.tokens.clear();
    let old = h.call(Method::GET, "/tenants", Some(OPERATOR), None).await;
    assert_eq!(old.status, StatusCode::UNAUTHORIZED, "{}", old.text);
    let new = h.call(Method::GET, "/tenants", Some(rotated), None).await;
    assert_eq!(new.status, StatusCode::OK, "{}", new.text);
}
