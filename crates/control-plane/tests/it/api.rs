//! The `/tenants` API on the real router and a fresh database.

use crate::common;

use axum::http::{Method, StatusCode};
use common::{Harness, OPERATOR, TEST_PEM};
use serde_json::{Value, json};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

fn fields(reply: &common::Reply) -> Vec<String> {
    reply.body["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| e["field"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn onboarding_creates_an_active_tenant_with_masked_keys(
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
                "name": "acme",
                "exchange_keys": {"kalshi": {"key_id": "a952bcbe-ec3b-4b5b-b8f9-11dae589608c", "private_key_pem": TEST_PEM}},
                "strategies": {"complement_arb": {"min_edge": "0.02"}},
                "risk": {"max_daily_loss": "50"}
            })),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    let id = reply.body["id"].as_str().unwrap().to_owned();
    assert_eq!(reply.headers["location"], format!("/tenants/{id}").as_str());
    assert_eq!(reply.body["name"], "acme");
    assert_eq!(reply.body["mode"], "paper");
    assert_eq!(reply.body["state"], "provisioning");
    let fingerprint = reply.body["exchange_keys"]["kalshi"].as_str().unwrap();
    assert!(
        fingerprint.starts_with("hmac-sha256:") && fingerprint.len() == 44,
        "{fingerprint}"
    );
    assert!(!reply.text.contains("a952bcbe") && !reply.text.contains("PRIVATE KEY"));
    assert_eq!(
        reply.body["strategies"]["complement_arb"]["min_edge"],
        "0.02"
    );
    assert_eq!(reply.body["risk"]["max_daily_loss"], "50");

    let active = h.wait_for_state(&id, "active").await;
    assert_eq!(active["provisioning"]["step"], "done");
    let status = h
        .call(
            Method::GET,
            &format!("/tenants/{id}/status"),
            Some(OPERATOR),
            None,
        )
        .await;
    assert_eq!(status.status, StatusCode::OK);
    assert_eq!(status.body["desired"], "running");
    assert_eq!(status.body["worker"]["state"], "pending");
    assert_eq!(
        h.count(&format!(
            "SELECT count(*) FROM pg_roles WHERE rolname = 'polybot_t_{}'",
            id.replace('-', "")
        ))
        .await,
        1
    );
    let audit = h
        .count(&format!(
            "SELECT count(*) FROM audit_log WHERE tenant_id = '{id}' AND action = 'tenant.create'"
        ))
        .await;
    assert_eq!(audit, 1);
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_name_a_live_tenant_holds_is_a_409_that_says_so(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let h = Harness::new(pool_opts, options).await;
    let acme = h.onboard(json!({"name": "acme"})).await;
    let again = h
        .call(
            Method::POST,
            "/tenants",
            Some(OPERATOR),
            Some(json!({"name": "acme"})),
        )
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.text);
    assert_eq!(again.headers["content-type"], "application/problem+json");
    assert_eq!(
        again.body["detail"],
        "name: a tenant named \"acme\" already exists; choose another name \
         (a name is freed once its tenant is offboarded)"
    );
    assert_eq!(h.count("SELECT count(*) FROM tenants").await, 1);
    let other = h.onboard(json!({"name": "other"})).await;
    let rename = h
        .call(
            Method::PATCH,
            &format!("/tenants/{other}"),
            Some(OPERATOR),
            Some(json!({"name": "acme"})),
        )
        .await;
    assert_eq!(rename.status, StatusCode::CONFLICT, "{}", rename.text);
    assert_ne!(acme, other);
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn with_a_replayed_recording_strategies_naming_what_it_lacks_are_a_422_listing_what_it_has(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    use polybot_control_plane::settings::Settings;
    use polybot_control_plane::tenants::recording::Recording;
    let mut h = Harness::new(pool_opts, options).await;
    h.state.settings = std::sync::Arc::new(Settings {
        recording: Some(Recording::from_jsonl(include_str!(
            "../../../../data/replay/demo.jsonl"
        ))),
        ..Settings::default()
    });
    let reply = h
        .call(
            Method::POST,
            "/tenants",
            Some(OPERATOR),
            Some(json!({"name": "eth", "strategies": {
                "crypto_15m": {"assets": ["BTC", "ETH"]},
                "news_arb": {"rules": [{"market": "no-such-market", "outcome": "Yes", "keywords": ["fed"]}]}
            }})),
        )
        .await;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.text
    );
    assert_eq!(reply.headers["content-type"], "application/problem+json");
    assert_eq!(
        fields(&reply),
        [
            "strategies.crypto_15m.assets[1]",
            "strategies.news_arb.rules[0].market"
        ]
    );
    assert_eq!(
        reply.body["errors"][0]["message"],
        "the replayed recording has no ETH markets; it has BTC"
    );
    let market = reply.body["errors"][1]["message"].as_str().unwrap();
    assert!(
        market.starts_with("the replayed recording has no market \"no-such-market\"; it has ")
            && market.contains("fed-decision-in-june-cut-25bps"),
        "{market}"
    );
    let listed = h.call(Method::GET, "/tenants", Some(OPERATOR), None).await;
    assert_eq!(listed.body["items"], json!([]));
    // What the recording has is accepted; an edit is held to it as well.
    let id = h.onboard(json!({"name": "btc", "strategies": {
        "crypto_15m": {"assets": ["BTC"]},
        "news_arb": {"rules": [{"market": "fed-decision-in-june-cut-25bps", "outcome": "Yes", "keywords": ["fed"]}]}
    }}))
    .await;
    let edit = h
        .call(
            Method::PATCH,
            &format!("/tenants/{id}"),
            Some(OPERATOR),
            Some(json!({"strategies": {"cross_venue_arb": {"assets": ["SOL"]}}})),
        )
        .await;
    assert_eq!(
        edit.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        edit.text
    );
    assert_eq!(fields(&edit), ["strategies.cross_venue_arb.assets[0]"]);
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_name_alone_is_a_valid_onboarding(pool_opts: PgPoolOptions, options: PgConnectOptions) {
    let h = Harness::new(pool_opts, options).await;
    let id = h.onboard(json!({"name": "acme"})).await;
    let reply = h
        .call(Method::GET, &format!("/tenants/{id}"), Some(OPERATOR), None)
        .await;
    assert_eq!(reply.body["exchange_keys"], json!({}));
    assert_eq!(reply.body["strategies"], json!({}));
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn each_kind_of_bad_input_is_a_422_naming_the_field_and_stores_nothing(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let h = Harness::new(pool_opts, options).await;
    let cases: Vec<(Value, Vec<&str>)> = vec![
        (json!({}), vec!["name"]),
        (json!({"name": "a", "colour": "red"}), vec!["colour"]),
        (json!({"name": "a", "mode": "yolo"}), vec!["mode"]),
        (
            json!({"name": "a", "strategies": {"moon_shot": {}}}),
            vec!["strategies.moon_shot"],
        ),
        (
            json!({"name": "a", "strategies": {"complement_arb": {"scan_interval_sec": 60}}}),
            vec!["strategies.complement_arb.scan_interval_sec"],
        ),
        (
            json!({"name": "a", "risk": {"max_position_per_market": "-5"}}),
            vec!["risk.max_position_per_market"],
        ),
        (
            json!({"name": "a", "exchange_keys": {"kalshi": {"key_id": "k", "private_key_pem": "-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----"}}}),
            vec!["exchange_keys.kalshi.private_key_pem"],
        ),
        (json!({"name": "a", "mode": "live"}), vec!["mode"]),
        (
            json!({"name": "", "exchange_keys": {"bitmex": {}}, "strategies": {"complement_arb": {"min_edge": "2"}}}),
            vec![
                "name",
                "exchange_keys.bitmex",
                "strategies.complement_arb.min_edge",
            ],
        ),
    ];
    for (body, expected) in cases {
        let reply = h
            .call(Method::POST, "/tenants", Some(OPERATOR), Some(body.clone()))
            .await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {}",
            reply.text
        );
        assert_eq!(reply.headers["content-type"], "application/problem+json");
        let mut got = fields(&reply);
        got.sort();
        let mut want: Vec<String> = expected.iter().map(|s| (*s).to_owned()).collect();
        want.sort();
        assert_eq!(got, want, "{body}: {}", reply.text);
        assert!(reply.body["detail"].as_str().is_some_and(|d| !d.is_empty()));
    }
    let misnamed = h
        .call(
            Method::POST,
            "/tenants",
            Some(OPERATOR),
            Some(json!({"name": "a", "strategies": {"complement_arb": {"scan_interval_sec": 60}}})),
        )
        .await;
    assert!(
        misnamed.text.contains("did you mean `scan_interval_secs`"),
        "{}",
        misnamed.text
    );

    let not_json = h
        .raw(
            axum::http::Request::post("/tenants")
                .header("authorization", format!("Bearer {OPERATOR}"))
                .body(axum::body::Body::from("{name: acme"))
                .unwrap(),
        )
        .await;
    assert_eq!(not_json.status, StatusCode::BAD_REQUEST);
    assert_eq!(not_json.body["type"], "/problems/bad-request");

    assert_eq!(h.count("SELECT count(*) FROM tenants").await, 0);
    assert_eq!(h.count("SELECT count(*) FROM tenant_secrets").await, 0);
    assert_eq!(h.count("SELECT count(*) FROM audit_log").await, 0);
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_retry_with_the_same_idempotency_key_returns_the_same_tenant(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let h = Harness::new(pool_opts, options).await;
    let body = json!({"name": "acme", "mode": "paper"});
    let key = [("idempotency-key", "onboard-acme-1")];
    let first = h
        .call_with(
            Method::POST,
            "/tenants",
            Some(OPERATOR),
            Some(body.clone()),
            &key,
        )
        .await;
    let second = h
        // The same body with its keys in another order is the same request.
        .call_with(
            Method::POST,
            "/tenants",
            Some(OPERATOR),
            Some(json!({"mode": "paper", "name": "acme"})),
            &key,
        )
        .await;
    assert_eq!(first.status, StatusCode::CREATED);
    assert_eq!(second.status, StatusCode::CREATED);
    assert_eq!(first.body, second.body);
    assert_eq!(second.headers["location"], first.headers["location"]);
    assert_eq!(h.count("SELECT count(*) FROM tenants").await, 1);

    let other = h
        .call_with(
            Method::POST,
            "/tenants",
            Some(OPERATOR),
            Some(json!({"name": "other"})),
            &key,
        )
        .await;
    assert_eq!(other.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(other.body["type"], "/problems/idempotency-key-reused");
    assert_eq!(h.count("SELECT count(*) FROM tenants").await, 1);
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn requests_without_a_valid_token_are_401(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let h = Harness::new(pool_opts, options).await;
    for token in [
        None,
        Some("pbo_not-a-real-token-at-all-000000"),
        Some("pbt_unknown"),
        Some("garbage"),
    ] {
        let reply = h.call(Method::GET, "/tenants", token, None).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{token:?}");
        assert_eq!(reply.headers["www-authenticate"], "Bearer");
        assert_eq!(reply.body["status"], 401);
    }
    let health = h.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(health.status, StatusCode::OK);
    let ready = h.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(ready.status, StatusCode::OK);
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_tenant_token_sees_and_changes_only_its_own_tenant(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let h = Harness::new(pool_opts, options).await;
    let a = h.onboard(json!({"name": "a"})).await;
    let b = h.onboard(json!({"name": "b"})).await;
    let token = h
        .call(
            Method::POST,
            &format!("/tenants/{a}/tokens"),
            Some(OPERATOR),
            None,
        )
        .await;
    assert_eq!(token.status, StatusCode::CREATED, "{}", token.text);
    let token = token.body["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("pbt_"));
    let stored = format!(
        "SELECT count(*) FROM api_tokens WHERE token_hash = sha256(convert_to('{token}', 'UTF8'))"
    );
    assert_eq!(h.count(&stored).await, 1, "the token is stored as its hash");
    assert_eq!(
        h.count(&format!(
            "SELECT count(*) FROM api_tokens WHERE encode(token_hash, 'escape') LIKE '%{}%'",
            &token[4..]
        ))
        .await,
        0
    );

    let own = h
        .call(Method::GET, &format!("/tenants/{a}"), Some(&token), None)
        .await;
    assert_eq!(own.status, StatusCode::OK);
    let list = h.call(Method::GET, "/tenants", Some(&token), None).await;
    let ids: Vec<&str> = list.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![a.as_str()]);

    for (method, uri, body) in [
        (Method::GET, format!("/tenants/{b}"), None),
        (Method::GET, format!("/tenants/{b}/status"), None),
        (
            Method::PATCH,
            format!("/tenants/{b}"),
            Some(json!({"name": "pwned"})),
        ),
        (Method::POST, format!("/tenants/{b}/pause"), None),
        (
            Method::PUT,
            format!("/tenants/{b}/exchange-keys"),
            Some(json!({})),
        ),
        (Method::POST, format!("/tenants/{b}/tokens"), None),
    ] {
        let reply = h.call(method.clone(), &uri, Some(&token), body).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{method} {uri}");
    }
    let create = h
        .call(
            Method::POST,
            "/tenants",
            Some(&token),
            Some(json!({"name": "c"})),
        )
        .await;
    assert_eq!(create.status, StatusCode::FORBIDDEN);
    // Offboarding is the operator's, even of the token's own tenant; the
    // operator check comes first, so another tenant's id is a 403 too.
    for id in [&a, &b] {
        let delete = h
            .call(
                Method::DELETE,
                &format!("/tenants/{id}"),
                Some(&token),
                None,
            )
            .await;
        assert_eq!(delete.status, StatusCode::FORBIDDEN, "DELETE /tenants/{id}");
        assert_eq!(
            delete.body["detail"].as_str(),
            Some("only an operator token may do this")
        );
    }
    let b_now = h
        .call(Method::GET, &format!("/tenants/{b}"), Some(OPERATOR), None)
        .await;
    assert_eq!(
        (b_now.body["name"].as_str(), b_now.body["state"].as_str()),
        (Some("b"), Some("active"))
    );
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn pause_resume_offboard_restore_and_purge(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let h = Harness::new(pool_opts, options).await;
    let id = h.onboard(json!({"name": "acme"})).await;
    let role = format!("polybot_t_{}", id.replace('-', ""));

    let paused = h
        .call(
            Method::POST,
            &format!("/tenants/{id}/pause"),
            Some(OPERATOR),
            None,
        )
        .await;
    assert_eq!(paused.body["state"], "paused");
    let status = h
        .call(
            Method::GET,
            &format!("/tenants/{id}/status"),
            Some(OPERATOR),
            None,
        )
        .await;
    assert_eq!(status.body["desired"], "stopped");
    let again = h
        .call(
            Method::POST,
            &format!("/tenants/{id}/pause"),
            Some(OPERATOR),
            None,
        )
        .await;
    assert_eq!(again.status, StatusCode::OK);
    let resumed = h
        .call(
            Method::POST,
            &format!("/tenants/{id}/resume"),
            Some(OPERATOR),
            None,
        )
        .await;
    assert_eq!(resumed.body["state"], "active");

    let gone = h
        .call(
            Method::DELETE,
            &format!("/tenants/{id}"),
            Some(OPERATOR),
            None,
        )
        .await;
    assert_eq!(gone.status, StatusCode::ACCEPTED, "{}", gone.text);
    assert_eq!(gone.body["state"], "offboarded");
    assert_eq!(
        h.count(&format!(
            "SELECT count(*) FROM pg_roles WHERE rolname = '{role}'"
        ))
        .await,
        0
    );
    assert_eq!(
        h.count(&format!("SELECT count(*) FROM tenant_secrets WHERE tenant_id = '{id}' AND deletion_scheduled_at > now() + interval '29 days'")).await,
        1
    );
    let pause_gone = h
        .call(
            Method::POST,
            &format!("/tenants/{id}/pause"),
            Some(OPERATOR),
            None,
        )
        .await;
    assert_eq!(pause_gone.status, StatusCode::CONFLICT);

    // Within the recovery window, resume restores the tenant.
    let restored = h
        .call(
            Method::POST,
            &format!("/tenants/{id}/resume"),
            Some(OPERATOR),
            None,
        )
        .await;
    assert_eq!(restored.status, StatusCode::OK, "{}", restored.text);
    h.wait_for_state(&id, "active").await;
    assert_eq!(
        h.count(&format!(
            "SELECT count(*) FROM pg_roles WHERE rolname = '{role}'"
        ))
        .await,
        1
    );
    assert_eq!(h.count(&format!("SELECT count(*) FROM tenant_secrets WHERE tenant_id = '{id}' AND deletion_scheduled_at IS NULL")).await, 1);

    let purged = h
        .call(
            Method::DELETE,
            &format!("/tenants/{id}?purge=true"),
            Some(OPERATOR),
            None,
        )
        .await;
    assert_eq!(purged.status, StatusCode::NO_CONTENT);
    assert_eq!(
        h.call(Method::GET, &format!("/tenants/{id}"), Some(OPERATOR), None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    for table in [
        "tenants",
        "tenant_configs",
        "tenant_secrets",
        "audit_log",
        "tenant_runtime",
    ] {
        let column = if table == "tenants" {
            "id"
        } else {
            "tenant_id"
        };
        assert_eq!(
            h.count(&format!(
                "SELECT count(*) FROM {table} WHERE {column} = '{id}'"
            ))
            .await,
            0,
            "{table}"
        );
    }
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn rotating_keys_replaces_them_and_keeps_the_database_credentials(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let h = Harness::new(pool_opts, options).await;
    let id = h
        .onboard(json!({"name": "acme", "exchange_keys": {"binance_us": {"api_key": "OLDKEY", "secret_key": "OLDSECRET"}}}))
        .await;
    let before = h
        .call(Method::GET, &format!("/tenants/{id}"), Some(OPERATOR), None)
        .await;
    let rotated = h
        .call(
            Method::PUT,
            &format!("/tenants/{id}/exchange-keys"),
            Some(OPERATOR),
            Some(json!({"binance_us": {"api_key": "NEWKEY", "secret_key": "NEWSECRET"}, "newsapi": {"api_key": "0123456789abcdef"}})),
        )
        .await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.text);
    assert_ne!(
        rotated.body["exchange_keys"]["binance_us"],
        before.body["exchange_keys"]["binance_us"]
    );
    assert!(
        rotated.body["exchange_keys"]["newsapi"]
            .as_str()
            .unwrap()
            .starts_with("hmac-sha256:")
    );
    assert!(!rotated.text.contains("NEWSECRET"));

    let tenant = polybot_core::TenantId::from_uuid(id.parse().unwrap());
    let mut tx = h.state.db.tenant(tenant).await.unwrap();
    let secret = h.state.secrets.get(&mut tx).await.unwrap().unwrap();
    tx.commit().await.unwrap();
    use secrecy::ExposeSecret;
    assert_eq!(
        secret
            .exchange_keys
            .get("binance_us", "api_key")
            .unwrap()
            .expose_secret(),
        "NEWKEY"
    );
    let url = secret
        .database_url
        .expect("the role's credentials survive a rotation");
    assert!(
        url.expose_secret()
            .starts_with(&format!("postgres://polybot_t_{}:", id.replace('-', "")))
    );
    assert_eq!(spec_version(&h, &id).await, 2);

    let bad = h
        .call(
            Method::PUT,
            &format!("/tenants/{id}/exchange-keys"),
            Some(OPERATOR),
            Some(json!({"kraken": {"api_key": "k", "private_key": "%%%"}})),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        fields(&bad),
        vec!["exchange_keys.kraken.private_key".to_owned()]
    );
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn listing_pages_through_tenants_and_filters_by_state(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let h = Harness::new(pool_opts, options).await;
    let mut ids = Vec::new();
    for name in ["a", "b", "c"] {
        ids.push(h.onboard(json!({"name": name})).await);
    }
    h.call(
        Method::POST,
        &format!("/tenants/{}/pause", ids[1]),
        Some(OPERATOR),
        None,
    )
    .await;
    let page1 = h
        .call(Method::GET, "/tenants?limit=2", Some(OPERATOR), None)
        .await;
    let names: Vec<&str> = page1.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["a", "b"]);
    let cursor = page1.body["next_cursor"].as_str().unwrap();
    let page2 = h
        .call(
            Method::GET,
            &format!("/tenants?limit=2&cursor={cursor}"),
            Some(OPERATOR),
            None,
        )
        .await;
    let names: Vec<&str> = page2.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["c"]);
    assert!(page2.body["next_cursor"].is_null());
    let paused = h
        .call(Method::GET, "/tenants?state=paused", Some(OPERATOR), None)
        .await;
    assert_eq!(paused.body["items"].as_array().unwrap().len(), 1);
    let bad = h
        .call(
            Method::GET,
            "/tenants?state=sleeping&limit=0",
            Some(OPERATOR),
            None,
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    let mut got = fields(&bad);
    got.sort();
    assert_eq!(got, vec!["limit".to_owned(), "state".to_owned()]);
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn patch_validates_like_onboarding_and_bumps_the_spec(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let h = Harness::new(pool_opts, options).await;
    let id = h.onboard(json!({"name": "acme"})).await;
    let bad = h
        .call(
            Method::PATCH,
            &format!("/tenants/{id}"),
            Some(OPERATOR),
            Some(json!({"strategies": {"crypto_15m": {"min_edge": "-1"}}, "exchange_keys": {}})),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    let mut got = fields(&bad);
    got.sort();
    assert_eq!(
        got,
        vec![
            "exchange_keys".to_owned(),
            "strategies.crypto_15m.min_edge".to_owned()
        ]
    );
    let ok = h
        .call(
            Method::PATCH,
            &format!("/tenants/{id}"),
            Some(OPERATOR),
            Some(json!({"risk": {"kill_switch": true}, "name": "acme two"})),
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    assert_eq!(ok.body["risk"]["kill_switch"], true);
    assert_eq!(ok.body["name"], "acme two");
    // The kill switch alone is no new spec: the running worker acts on it.
    assert_eq!(spec_version(&h, &id).await, 1);
    let ok = h
        .call(
            Method::PATCH,
            &format!("/tenants/{id}"),
            Some(OPERATOR),
            Some(json!({"risk": {"kill_switch": true, "max_order_notional": "50"}})),
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    assert_eq!(spec_version(&h, &id).await, 2);
}

/// The tenant's stored spec version, read as the superuser with the id bound.
async fn spec_version(h: &Harness, id: &str) -> i64 {
    let id: uuid::Uuid = id.parse().unwrap();
    sqlx::query_scalar("SELECT spec_version FROM tenants WHERE id = $1")
        .bind(id)
        .fetch_one(&h.pool)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn the_openapi_document_lists_every_route(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let h = Harness::new(pool_opts, options).await;
    let doc = h.call(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(doc.status, StatusCode::OK);
    let paths: Vec<&String> = doc.body["paths"].as_object().unwrap().keys().collect();
    for path in [
        "/tenants",
        "/tenants/{id}",
        "/tenants/{id}/status",
        "/tenants/{id}/exchange-keys",
        "/tenants/{id}/pause",
        "/tenants/{id}/resume",
        "/tenants/{id}/tokens",
        "/healthz",
        "/readyz",
    ] {
        assert!(
            paths.iter().any(|p| p.as_str() == path),
            "{path} missing from {paths:?}"
        );
    }
    assert!(doc.body["paths"]["/tenants"]["post"].is_object());
}
