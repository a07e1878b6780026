//! Going live is deliberate (issue 18, item 6; issue 19 for Kalshi): a
//! switch to shadow or live passes a signed, read-only preflight against the
//! CLOB stand-in and the Kalshi stand-in, live needs the acknowledgement
//! and, when the platform says so, an operator; venues without execution
//! keep the refusal; the audit log says who switched.

use std::sync::Arc;

use axum::http::{Method, StatusCode};
use polybot_control_plane::settings::Settings;
use polybot_control_plane::tenants::live::{ACKNOWLEDGEMENT, LiveSettings};
use polybot_venues::execution::kalshi::KalshiSettings;
use polybot_venues::execution::polymarket::{POLYGON, PolymarketSettings};
use polybot_venues::testing::{ClobStandIn, KalshiStandIn};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::common::{self, Harness, OPERATOR, TEST_PEM};
use crate::dashboard::Agent;

const KEY: &str = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
const ADDRESS: &str = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266";

/// A harness whose preflight asks `clob`.
async fn harness(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
    clob: &ClobStandIn,
    requires_operator: bool,
) -> Harness {
    let mut h = Harness::new(pool_opts, options).await;
    h.state.settings = Arc::new(Settings {
        live: LiveSettings {
            requires_operator,
            polymarket: PolymarketSettings {
                host: clob.url(),
                chain_id: POLYGON,
                ..PolymarketSettings::default()
            },
            ..LiveSettings::default()
        },
        ..Settings::default()
    });
    h
}

/// A harness whose preflight asks the Kalshi stand-in.
async fn kalshi_harness(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
    kalshi: &KalshiStandIn,
) -> Harness {
    let mut h = Harness::new(pool_opts, options).await;
    h.state.settings = Arc::new(Settings {
        live: LiveSettings {
            requires_operator: true,
            kalshi: KalshiSettings {
                base: kalshi.url(),
                ..KalshiSettings::default()
            },
            ..LiveSettings::default()
        },
        ..Settings::default()
    });
    h
}

const KALSHI_KEY_ID: &str = "a952bcbe-ec3b-4b5b-b8f9-11dae589608c";

/// A Polymarket-only tenant whose keys open an account at `clob` (or do not).
async fn polymarket_tenant(h: &Harness, clob: &ClobStandIn, account: bool) -> String {
    let (api_key, secret, passphrase) = if account {
        clob.open_account(ADDRESS, Decimal::from(1000))
    } else {
        (
            "a952bcbe-ec3b-4b5b-b8f9-11dae589608c".to_owned(),
            "c2VjcmV0LXRoYXQtaXMtd3Jvbmc=".to_owned(),
            "not-the-passphrase".to_owned(),
        )
    };
    h.onboard(json!({
        "name": "acme",
        "strategies": {"complement_arb": {"venues": ["polymarket"]}},
        "exchange_keys": {"polymarket": {
            "private_key": KEY, "api_key": api_key, "secret": secret, "passphrase": passphrase,
        }},
    }))
    .await
}

async fn tenant_token(h: &Harness, tenant: &str) -> String {
    let reply = h
        .call(
            Method::POST,
            &format!("/tenants/{tenant}/tokens"),
            Some(OPERATOR),
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    reply.body["token"].as_str().unwrap().to_owned()
}

async fn switch(h: &Harness, id: &str, caller: &str, body: Value) -> common::Reply {
    h.call(
        Method::PATCH,
        &format!("/tenants/{id}"),
        Some(caller),
        Some(body),
    )
    .await
}

/// The `(field, message)` pairs of a 422.
fn errors(reply: &common::Reply) -> Vec<(String, String)> {
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.text
    );
    assert_eq!(reply.headers["content-type"], "application/problem+json");
    reply.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["field"].as_str().unwrap().to_owned(),
                e["message"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

async fn mode_changes(h: &Harness, id: &str) -> Vec<(String, Value)> {
    sqlx::query_as(&format!(
        "SELECT actor, details FROM audit_log WHERE tenant_id = '{id}' AND action = 'tenant.mode' ORDER BY id"
    ))
    .fetch_all(&h.pool)
    .await
    .unwrap()
}

async fn stored_mode(h: &Harness, id: &str) -> String {
    sqlx::query_scalar("SELECT mode FROM tenants WHERE id = $1::uuid")
        .bind(id)
        .fetch_one(&h.pool)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_tenant_whose_keys_pass_the_preflight_goes_to_shadow_then_live(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let clob = ClobStandIn::start(POLYGON).await;
    let h = harness(pool_opts, options, &clob, true).await;
    let id = polymarket_tenant(&h, &clob, true).await;
    let token = tenant_token(&h, &id).await;

    let agent = Agent::sign_in(&h, OPERATOR).await;
    let shadow =
        "<span class=\"badge mode-shadow\" title=\"orders are signed, none is sent\">SHADOW</span>";
    let live = "<span class=\"badge mode-live\" title=\"real orders are sent\">LIVE</span>";
    let fleet = agent.get("/ui/fleet").await;
    assert!(
        !fleet.text.contains("class=\"badge mode-"),
        "a paper tenant has no badge"
    );

    let reply = switch(&h, &id, &token, json!({"mode": "shadow"})).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.body["mode"], "shadow");
    assert!(agent.get("/ui/fleet").await.text.contains(shadow));

    let reply = switch(&h, &id, OPERATOR, json!({"mode": "live"})).await;
    assert_eq!(
        errors(&reply),
        vec![(
            "live_acknowledgement".to_owned(),
            format!("is required to switch to live, and must be exactly {ACKNOWLEDGEMENT:?}")
        )]
    );
    let reply = switch(
        &h,
        &id,
        OPERATOR,
        json!({"mode": "live", "live_acknowledgement": "sure"}),
    )
    .await;
    assert_eq!(errors(&reply)[0].0, "live_acknowledgement");
    assert_eq!(stored_mode(&h, &id).await, "shadow");

    let acknowledged = json!({"mode": "live", "live_acknowledgement": ACKNOWLEDGEMENT});
    let reply = switch(&h, &id, &token, acknowledged.clone()).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.text);
    assert_eq!(reply.headers["content-type"], "application/problem+json");
    assert_eq!(
        reply.body["detail"],
        "this platform lets only an operator switch a tenant to live \
         (POLYBOT_LIVE_REQUIRES_OPERATOR); ask your operator"
    );
    assert_eq!(stored_mode(&h, &id).await, "shadow");

    let reply = switch(&h, &id, OPERATOR, acknowledged).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.body["mode"], "live");
    assert_eq!(stored_mode(&h, &id).await, "live");
    assert!(agent.get("/ui/fleet").await.text.contains(live));
    let page = agent.get(&format!("/ui/tenants/{id}")).await;
    assert!(
        page.text
            .contains(&format!("<h1 id=\"tenant-name\">acme {live}</h1>")),
        "{}",
        page.text
    );

    assert_eq!(
        mode_changes(&h, &id).await,
        vec![
            (
                format!("tenant:{id}"),
                json!({"from": "paper", "to": "shadow"})
            ),
            (
                "operator".to_owned(),
                json!({"from": "shadow", "to": "live"})
            ),
        ]
    );
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_tenant_token_goes_live_when_the_platform_allows_it(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let clob = ClobStandIn::start(POLYGON).await;
    let h = harness(pool_opts, options, &clob, false).await;
    let id = polymarket_tenant(&h, &clob, true).await;
    let token = tenant_token(&h, &id).await;
    let reply = switch(
        &h,
        &id,
        &token,
        json!({"mode": "live", "live_acknowledgement": ACKNOWLEDGEMENT}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(
        mode_changes(&h, &id).await,
        vec![(
            format!("tenant:{id}"),
            json!({"from": "paper", "to": "live"})
        )]
    );
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn keys_the_venue_refuses_fail_the_preflight_without_showing_them(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let clob = ClobStandIn::start(POLYGON).await;
    let h = harness(pool_opts, options, &clob, true).await;
    let id = polymarket_tenant(&h, &clob, false).await;
    let reply = switch(&h, &id, OPERATOR, json!({"mode": "shadow"})).await;
    let errors = errors(&reply);
    assert_eq!(errors.len(), 1, "{}", reply.text);
    assert_eq!(errors[0].0, "exchange_keys.polymarket");
    assert_eq!(
        errors[0].1,
        "the preflight against the Polymarket CLOB failed: Polymarket CLOB GET /balance-allowance: \
         unauthorised: this endpoint needs valid API keys (or a WAF refused the request) (HTTP 401); \
         body: {\"error\":\"unknown API key\"}"
    );
    for secret in [
        KEY,
        "a952bcbe-ec3b-4b5b-b8f9-11dae589608c",
        "c2VjcmV0LXRoYXQtaXMtd3Jvbmc=",
        "not-the-passphrase",
    ] {
        assert!(!reply.text.contains(secret), "{}", reply.text);
    }
    assert_eq!(stored_mode(&h, &id).await, "paper");
    assert_eq!(mode_changes(&h, &id).await, vec![]);
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_kalshi_tenant_goes_live_after_a_signed_balance_read_at_kalshi(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let kalshi = KalshiStandIn::start().await;
    kalshi.open_account_for_private_key(KALSHI_KEY_ID, TEST_PEM, Decimal::from(500));
    let h = kalshi_harness(pool_opts, options, &kalshi).await;
    let id = h
        .onboard(json!({
            "name": "acme",
            "strategies": {"complement_arb": {"venues": ["kalshi"]}},
            "exchange_keys": {"kalshi": {"key_id": KALSHI_KEY_ID, "private_key_pem": TEST_PEM}},
        }))
        .await;
    let reply = switch(
        &h,
        &id,
        OPERATOR,
        json!({"mode": "live", "live_acknowledgement": ACKNOWLEDGEMENT}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(stored_mode(&h, &id).await, "live");
    assert_eq!(
        mode_changes(&h, &id).await,
        vec![(
            "operator".to_owned(),
            json!({"from": "paper", "to": "live"})
        )]
    );
    // The preflight was one signed, verified, read-only call.
    assert_eq!(
        kalshi.signed_requests(),
        vec!["GET /portfolio/balance".to_owned()]
    );
    assert!(kalshi.rejections().is_empty(), "{:?}", kalshi.rejections());
    assert_eq!(kalshi.order_creates(), 0);
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn kalshi_keys_the_exchange_refuses_fail_the_preflight_without_showing_them(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let kalshi = KalshiStandIn::start().await;
    let h = kalshi_harness(pool_opts, options, &kalshi).await;
    let id = h
        .onboard(json!({
            "name": "acme",
            "exchange_keys": {"kalshi": {"key_id": KALSHI_KEY_ID, "private_key_pem": TEST_PEM}},
        }))
        .await;
    let reply = switch(&h, &id, OPERATOR, json!({"mode": "shadow"})).await;
    let errors = errors(&reply);
    assert_eq!(errors.len(), 1, "{}", reply.text);
    assert_eq!(errors[0].0, "exchange_keys.kalshi");
    assert!(
        errors[0].1.starts_with(
            "the preflight against Kalshi failed: Kalshi GET /portfolio/balance: unauthorised"
        ),
        "{}",
        errors[0].1
    );
    assert!(errors[0].1.contains("(HTTP 401)"), "{}", errors[0].1);
    assert!(!reply.text.contains("PRIVATE KEY"), "{}", reply.text);
    assert!(
        !reply.text.contains("MIIEvgIBADANBgkqhkiG9w0BAQEFAASC"),
        "{}",
        reply.text
    );
    assert_eq!(stored_mode(&h, &id).await, "paper");
    assert_eq!(mode_changes(&h, &id).await, vec![]);
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_tenant_trading_kalshi_without_its_keys_stays_in_paper(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let clob = ClobStandIn::start(POLYGON).await;
    let h = harness(pool_opts, options, &clob, true).await;
    let (api_key, secret, passphrase) = clob.open_account(ADDRESS, Decimal::from(1000));
    let id = h
        .onboard(json!({
            "name": "acme",
            "strategies": {"complement_arb": {"venues": ["polymarket", "kalshi"]}},
            "exchange_keys": {"polymarket": {
                "private_key": KEY, "api_key": api_key, "secret": secret, "passphrase": passphrase,
            }},
        }))
        .await;
    let reply = switch(&h, &id, OPERATOR, json!({"mode": "shadow"})).await;
    let errors = errors(&reply);
    assert_eq!(
        errors,
        vec![(
            "exchange_keys.kalshi".to_owned(),
            "the tenant's strategies trade on kalshi, so shadow and live need its keys; \
             set them with PUT /tenants/{id}/exchange-keys first"
                .to_owned()
        )]
    );
    assert_eq!(stored_mode(&h, &id).await, "paper");
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_tenant_switched_to_live_gets_a_live_worker(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    use std::os::unix::fs::PermissionsExt;
    use std::time::{Duration, Instant};

    use polybot_control_plane::reconcile::Reconciler;
    use polybot_launcher::local::LocalLauncher;

    let clob = ClobStandIn::start(POLYGON).await;
    let h = harness(pool_opts, options, &clob, true).await;
    let id = polymarket_tenant(&h, &clob, true).await;
    let reply = switch(
        &h,
        &id,
        OPERATOR,
        json!({"mode": "live", "live_acknowledgement": ACKNOWLEDGEMENT}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);

    // A stand-in worker that prints the environment it was started with
    // (its output goes to the tenant's log).
    let dir = tempfile::tempdir().unwrap();
    let program = dir.path().join("fake-polybot");
    std::fs::write(&program, "#!/bin/sh\nenv\nexec sleep 30\n").unwrap();
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
    let launcher =
        Arc::new(LocalLauncher::new(program.clone(), dir.path().join("workers")).unwrap());
    let reconciler = Reconciler::new(
        h.state.db.clone(),
        launcher.clone(),
        h.state.secrets.clone(),
        h.state.reconcile.clone(),
    );
    let report = reconciler.pass().await.unwrap();
    assert_eq!(report.started, 1, "{report:?}");

    let written = dir.path().join("workers").join(format!("{id}.log"));
    let deadline = Instant::now() + Duration::from_secs(30);
    let env = loop {
        let text = std::fs::read_to_string(&written).unwrap_or_default();
        if text.contains("POLYBOT_MODE=") {
            break text;
        }
        assert!(Instant::now() < deadline, "the worker never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mode: Vec<&str> = env
        .lines()
        .filter(|l| l.starts_with("POLYBOT_MODE="))
        .collect();
    assert_eq!(mode, ["POLYBOT_MODE=live"]);
    launcher.shutdown().await;
}
