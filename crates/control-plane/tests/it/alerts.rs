//! Alerts against local mock receivers (a webhook and a Telegram Bot API):
//! channel configuration, signatures, deduplication, resolution, rate limits,
//! and a real worker killed under a real reconciler.

use crate::common;

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use common::{Harness, OPERATOR};
use polybot_control_plane::alerts::{
    Evaluator, Notifier, Resolve, SIGNATURE_HEADER, Targets, verify,
};
use polybot_control_plane::reconcile::Reconciler;
use polybot_control_plane::settings::{AlertSettings, Settings};
use polybot_core::TenantId;
use polybot_core::worker::{
    BreakerPosition, StrategyHealth, StrategyStatus, WorkerHealth, WorkerPhase,
};
use polybot_launcher::local::LocalLauncher;
use serde_json::{Value, json};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const HOOK_SECRET: &str = "whsec-tenant-0123456789abcdef";
const OPERATOR_SECRET: &str = "whsec-operator-0123456789abcdef";
const BOT_TOKEN: &str = "123456:AAbbCCddEEffGGhhIIjjKKllMMnn";

/// One request a mock received.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// A resolver with one fixed answer for every name: what DNS would say.
#[derive(Debug)]
struct FixedResolver(IpAddr);

impl Resolve for FixedResolver {
    fn resolve<'a>(
        &'a self,
        _host: &'a str,
        port: u16,
    ) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<SocketAddr>>> + Send + 'a>> {
        let addr = SocketAddr::new(self.0, port);
        Box::pin(async move { Ok(vec![addr]) })
    }
}

/// The public-looking name webhooks are configured with; the tests' resolver
/// answers 127.0.0.1 for it, so a delivery reaches the mock only through the
/// address the notifier checked and pinned (the real DNS is never asked).
const HOOK_HOST: &str = "hooks.example.com";

/// A local HTTP server that records every request and answers 200.
struct Mock {
    /// `http://127.0.0.1:<port>` (the Telegram API base).
    base: String,
    /// `http://hooks.example.com:<port>` (webhook URLs).
    hook_base: String,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Mock {
    async fn start() -> Self {
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let log = received.clone();
        let app = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap, body: Bytes| {
            let log = log.clone();
            async move {
                log.lock().unwrap().push(Received {
                    path: uri.path().to_owned(),
                    headers,
                    body,
                });
                (StatusCode::OK, "{\"ok\":true}")
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let base = format!("http://{addr}");
        let hook_base = format!("http://{HOOK_HOST}:{}", addr.port());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            base,
            hook_base,
            received,
        }
    }

    /// A notifier whose resolver sends `HOOK_HOST` to this mock (on
    /// loopback, so every address is allowed).
    fn notifier(state: &polybot_control_plane::AppState) -> Notifier {
        Notifier::with_resolver(
            state,
            Arc::new(FixedResolver(IpAddr::V4(Ipv4Addr::LOCALHOST))),
            Targets::AnyAddress,
        )
    }

    fn evaluator(state: polybot_control_plane::AppState) -> Evaluator {
        let notifier = Self::notifier(&state);
        Evaluator::with_notifier(state, notifier)
    }

    fn all(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    fn at(&self, path: &str) -> Vec<Received> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }
}

fn with_alerts(h: &Harness, alerts: AlertSettings) -> polybot_control_plane::AppState {
    let mut state = h.state.clone();
    state.settings = Arc::new(Settings {
        alerts,
        ..Settings::default()
    });
    state
}

/// A running worker's heartbeat with these strategies.
fn health(strategies: &[(&str, StrategyHealth)]) -> WorkerHealth {
    WorkerHealth {
        version: WorkerHealth::VERSION,
        phase: WorkerPhase::Running,
        strategies: strategies
            .iter()
            .map(|(name, s)| ((*name).to_owned(), s.clone()))
            .collect(),
        ..WorkerHealth::default()
    }
}

fn breaker(position: BreakerPosition, reason: Option<&str>) -> StrategyHealth {
    StrategyHealth {
        status: if position == BreakerPosition::Open {
            StrategyStatus::BreakerOpen
        } else {
            StrategyStatus::Ok
        },
        breaker: position,
        reason: reason.map(str::to_owned),
        ..StrategyHealth::default()
    }
}

/// Writes `health` as the tenant's newest heartbeat, as the worker does.
async fn heartbeat(h: &Harness, tenant: &str, health: &WorkerHealth) {
    let health = health.to_json();
    let id: Uuid = tenant.parse().unwrap();
    let mut tx = h.state.db.tenant(TenantId::from_uuid(id)).await.unwrap();
    sqlx::query("INSERT INTO worker_heartbeats (tenant_id, epoch, health) VALUES ($1, 1, $2)")
        .bind(id)
        .bind(health)
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

async fn configure_channels(h: &Harness, tenant: &str, mock: &Mock) {
    let reply = h
        .call(
            Method::PUT,
            &format!("/tenants/{tenant}/alert-channels"),
            Some(OPERATOR),
            Some(json!({"channels": [
                {"kind": "webhook", "url": format!("{}/tenant-hook", mock.hook_base), "secret": HOOK_SECRET},
                {"kind": "telegram", "chat_id": "-1001234", "bot_token": BOT_TOKEN},
            ]})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert!(!reply.text.contains(HOOK_SECRET) && !reply.text.contains(BOT_TOKEN));
    let reply = h
        .call(
            Method::PUT,
            "/alert-channels",
            Some(OPERATOR),
            Some(json!({"channels": [
                {"kind": "webhook", "url": format!("{}/operator-hook", mock.hook_base), "secret": OPERATOR_SECRET},
            ]})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn channels_are_validated_and_their_secrets_are_write_only(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let h = Harness::new(pool_opts, options).await;
    let alpha = h.onboard(json!({"name": "alpha"})).await;
    let beta = h.onboard(json!({"name": "beta"})).await;
    let reply = h
        .call(
            Method::PUT,
            &format!("/tenants/{alpha}/alert-channels"),
            Some(OPERATOR),
            Some(json!({"channels": [
                {"kind": "webhook", "url": "ftp://x", "secret": "short"},
                {"kind": "telegram", "chat_id": "abc", "bot_token": "nope", "extra": 1},
                {"kind": "pager"},
            ]})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    let fields: Vec<&str> = reply.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    for f in [
        "channels[0].url",
        "channels[0].secret",
        "channels[1].chat_id",
        "channels[1].bot_token",
        "channels[1].extra",
        "channels[2].kind",
    ] {
        assert!(fields.contains(&f), "no error for {f}: {fields:?}");
    }
    let mock = Mock::start().await;
    configure_channels(&h, &alpha, &mock).await;
    let reply = h
        .call(
            Method::GET,
            &format!("/tenants/{alpha}/alert-channels"),
            Some(OPERATOR),
            None,
        )
        .await;
    let channels = reply.body["channels"].as_array().unwrap();
    assert_eq!(channels.len(), 2);
    assert_eq!(channels[0]["kind"], "webhook");
    assert!(
        channels[0]["secret_fingerprint"]
            .as_str()
            .unwrap()
            .starts_with("hmac-sha256:")
    );
    assert_eq!(channels[1]["target"], "-1001234");
    assert!(!reply.text.contains(HOOK_SECRET) && !reply.text.contains(BOT_TOKEN));
    // The audit log records the change, not the secrets.
    let leaked = h
        .count(&format!(
            "SELECT count(*) FROM audit_log WHERE details::text LIKE '%{HOOK_SECRET}%' OR details::text LIKE '%{BOT_TOKEN}%'"
        ))
        .await;
    assert_eq!(leaked, 0);
    // A tenant token manages its own channels only; operator channels are operators'.
    let token = h
        .call(
            Method::POST,
            &format!("/tenants/{beta}/tokens"),
            Some(OPERATOR),
            None,
        )
        .await
        .body["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let reply = h
        .call(
            Method::GET,
            &format!("/tenants/{alpha}/alert-channels"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    let reply = h
        .call(
            Method::PUT,
            &format!("/tenants/{beta}/alert-channels"),
            Some(&token),
            Some(json!({"channels": []})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    // A tenant cannot aim the control plane at the platform's own network.
    let reply = h
        .call(
            Method::PUT,
            &format!("/tenants/{beta}/alert-channels"),
            Some(&token),
            Some(json!({"channels": [
                {"kind": "webhook", "url": "https://hooks.example.com/polybot", "secret": HOOK_SECRET},
                {"kind": "webhook", "url": "http://169.254.169.254/latest/meta-data/", "secret": HOOK_SECRET},
            ]})),
        )
        .await;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.text
    );
    let fields: Vec<&str> = reply.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, vec!["channels[1].url"]);
    let reply = h
        .call(Method::GET, "/alert-channels", Some(&token), None)
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    let reply = h
        .call(Method::GET, "/alert-channels", Some(OPERATOR), None)
        .await;
    assert_eq!(reply.body["channels"].as_array().unwrap().len(), 1);
    assert!(!reply.text.contains(OPERATOR_SECRET));
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn no_caller_saves_a_webhook_into_the_platforms_network_or_an_unbounded_url(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let h = Harness::new(pool_opts, options).await;
    let alpha = h.onboard(json!({"name": "alpha"})).await;
    let long = format!("https://hooks.example.com/{}", "a".repeat(2048));
    for path in [
        format!("/tenants/{alpha}/alert-channels"),
        "/alert-channels".to_owned(),
    ] {
        let reply = h
            .call(
                Method::PUT,
                &path,
                Some(OPERATOR),
                Some(json!({"channels": [
                    {"kind": "webhook", "url": "http://127.0.0.1:8080/hook", "secret": HOOK_SECRET},
                    {"kind": "webhook", "url": "http://[::ffff:169.254.169.254]/", "secret": HOOK_SECRET},
                    {"kind": "webhook", "url": long, "secret": HOOK_SECRET},
                    {"kind": "webhook", "url": "https://hooks.example.com/ok", "secret": HOOK_SECRET},
                ]})),
            )
            .await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{path}: {}",
            reply.text
        );
        let errors: Vec<(&str, &str)> = reply.body["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["field"].as_str().unwrap(), e["message"].as_str().unwrap()))
            .collect();
        let fields: Vec<&str> = errors.iter().map(|(f, _)| *f).collect();
        assert_eq!(
            fields,
            vec!["channels[0].url", "channels[1].url", "channels[2].url"],
            "{path}"
        );
        assert_eq!(errors[2].1, "must be at most 2048 characters");
    }
    assert_eq!(h.count("SELECT count(*) FROM alert_channels").await, 0);
    assert_eq!(
        h.count("SELECT count(*) FROM operator_alert_channels")
            .await,
        0
    );
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_webhook_name_that_resolves_inside_is_refused_at_delivery_and_nothing_is_sent(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let h = Harness::new(pool_opts, options).await;
    let alpha = h.onboard(json!({"name": "alpha"})).await;
    let mock = Mock::start().await;
    // Saved while the name looked public; DNS now answers 127.0.0.1 (the
    // mock stands in for the platform's own service).
    configure_channels(&h, &alpha, &mock).await;
    let state = with_alerts(
        &h,
        AlertSettings {
            heartbeat_stale: Duration::from_millis(300),
            telegram_api_base: mock.base.clone(),
            ..AlertSettings::default()
        },
    );
    let notifier = Notifier::with_resolver(
        &state,
        Arc::new(FixedResolver(IpAddr::V4(Ipv4Addr::LOCALHOST))),
        Targets::Global,
    );
    let mut evaluator = Evaluator::with_notifier(state, notifier);
    heartbeat(&h, &alpha, &health(&[])).await;
    assert_eq!(evaluator.evaluate().await.unwrap().fired, 0);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let report = evaluator.evaluate().await.unwrap();
    // Only Telegram (the operator's configured API base) was sent; both
    // webhooks were refused before any connection.
    assert_eq!((report.fired, report.notifications), (1, 1), "{report:?}");
    let paths: Vec<String> = mock.all().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, vec![format!("/bot{BOT_TOKEN}/sendMessage")]);
}

/// Rows holding a known channel secret in plaintext (a column, or bytes of
/// a ciphertext), counted as the superuser.
async fn no_plaintext_secrets(h: &Harness) -> i64 {
    let mut found = 0;
    for secret in [HOOK_SECRET, OPERATOR_SECRET, BOT_TOKEN] {
        for table in ["alert_channels", "operator_alert_channels"] {
            found += h
                .count(&format!(
                    "SELECT count(*) FROM {table} WHERE secret IS NOT NULL \
                     OR position(convert_to('{secret}', 'UTF8') in secret_ciphertext) > 0 \
                     OR secret_ciphertext IS NULL"
                ))
                .await;
        }
    }
    found
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn channel_secrets_stored_in_plaintext_are_sealed_at_start_and_still_sign(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let h = Harness::new(pool_opts, options).await;
    let alpha = h.onboard(json!({"name": "alpha"})).await;
    let mock = Mock::start().await;
    // Rows as an earlier version stored them (the migration kept the
    // plaintext and computed the fingerprint).
    sqlx::query(
        "INSERT INTO alert_channels (id, tenant_id, kind, target, secret, secret_fingerprint) \
         VALUES (gen_random_uuid(), $1, 'webhook', $2, $3, 'sha256:legacy')",
    )
    .bind(alpha.parse::<Uuid>().unwrap())
    .bind(format!("{}/tenant-hook", mock.hook_base))
    .bind(HOOK_SECRET)
    .execute(&h.pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO operator_alert_channels (id, kind, target, secret, secret_fingerprint) \
         VALUES (gen_random_uuid(), 'webhook', $1, $2, 'sha256:legacy')",
    )
    .bind(format!("{}/operator-hook", mock.hook_base))
    .bind(OPERATOR_SECRET)
    .execute(&h.pool)
    .await
    .unwrap();
    assert_eq!(no_plaintext_secrets(&h).await, 6);
    let sealed = polybot_control_plane::alerts::seal_plaintext_secrets(&h.state)
        .await
        .unwrap();
    assert_eq!(sealed, 2);
    assert_eq!(no_plaintext_secrets(&h).await, 0);
    // Sealing again finds nothing.
    assert_eq!(
        polybot_control_plane::alerts::seal_plaintext_secrets(&h.state)
            .await
            .unwrap(),
        0
    );
    let state = with_alerts(
        &h,
        AlertSettings {
            heartbeat_stale: Duration::from_millis(300),
            ..AlertSettings::default()
        },
    );
    let mut evaluator = Mock::evaluator(state);
    heartbeat(&h, &alpha, &health(&[])).await;
    assert_eq!(evaluator.evaluate().await.unwrap().fired, 0);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let report = evaluator.evaluate().await.unwrap();
    assert_eq!((report.fired, report.notifications), (1, 2), "{report:?}");
    let now = chrono::Utc::now().timestamp();
    for (path, secret) in [
        ("/tenant-hook", HOOK_SECRET),
        ("/operator-hook", OPERATOR_SECRET),
    ] {
        let got = mock.at(path);
        assert_eq!(got.len(), 1, "{path}");
        let header = got[0].headers[SIGNATURE_HEADER].to_str().unwrap();
        assert!(
            verify(secret, header, &got[0].body, now),
            "{path}: {header}"
        );
    }
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_silent_worker_alerts_once_per_channel_and_resolves_once_with_signed_webhooks(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let h = Harness::new(pool_opts, options).await;
    let alpha = h.onboard(json!({"name": "alpha"})).await;
    let mock = Mock::start().await;
    configure_channels(&h, &alpha, &mock).await;
    let state = with_alerts(
        &h,
        AlertSettings {
            heartbeat_stale: Duration::from_millis(800),
            resolve_hold: Duration::ZERO,
            telegram_api_base: mock.base.clone(),
            ..AlertSettings::default()
        },
    );
    // At rest, no secret is in the clear: not in a column, not in a ciphertext.
    assert_eq!(no_plaintext_secrets(&h).await, 0);
    let mut evaluator = Mock::evaluator(state);
    heartbeat(&h, &alpha, &health(&[])).await;
    assert_eq!(evaluator.evaluate().await.unwrap().fired, 0);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let report = evaluator.evaluate().await.unwrap();
    assert_eq!((report.fired, report.notifications), (1, 3), "{report:?}");
    // Still silent: no repeat.
    for _ in 0..3 {
        let report = evaluator.evaluate().await.unwrap();
        assert_eq!(
            (report.fired, report.resolved, report.notifications),
            (0, 0, 0)
        );
    }
    heartbeat(&h, &alpha, &health(&[])).await;
    let report = evaluator.evaluate().await.unwrap();
    assert_eq!(
        (report.resolved, report.notifications),
        (1, 3),
        "{report:?}"
    );
    assert_eq!(evaluator.evaluate().await.unwrap().notifications, 0);

    let tenant_hook = mock.at("/tenant-hook");
    let operator_hook = mock.at("/operator-hook");
    let telegram = mock.at(&format!("/bot{BOT_TOKEN}/sendMessage"));
    assert_eq!(tenant_hook.len(), 2);
    assert_eq!(operator_hook.len(), 2);
    assert_eq!(telegram.len(), 2);
    let statuses: Vec<Value> = tenant_hook
        .iter()
        .map(|r| r.json()["status"].clone())
        .collect();
    assert_eq!(statuses, vec![json!("firing"), json!("resolved")]);
    let first = tenant_hook[0].json();
    assert_eq!(first["alert"], "heartbeat_stale");
    assert_eq!(first["tenant_id"], alpha.as_str());
    assert_eq!(first["tenant_name"], "alpha");
    assert!(
        first["summary"]
            .as_str()
            .unwrap()
            .starts_with("no heartbeat for"),
        "{first}"
    );
    // The signature is HMAC-SHA256 of "t.body" under the channel's secret,
    // with a current timestamp; the connection went to the pinned address
    // under the webhook's own host name.
    let now = chrono::Utc::now().timestamp();
    for (received, secret) in tenant_hook
        .iter()
        .map(|r| (r, HOOK_SECRET))
        .chain(operator_hook.iter().map(|r| (r, OPERATOR_SECRET)))
    {
        let header = received.headers[SIGNATURE_HEADER].to_str().unwrap();
        assert!(header.starts_with("t="), "{header}");
        assert!(verify(secret, header, &received.body, now), "{header}");
        assert!(!verify(
            "some-other-secret-0123",
            header,
            &received.body,
            now
        ));
        assert!(
            received.headers["host"]
                .to_str()
                .unwrap()
                .starts_with(HOOK_HOST)
        );
    }
    let message = telegram[0].json();
    assert_eq!(message["chat_id"], "-1001234");
    assert!(
        message["text"]
            .as_str()
            .unwrap()
            .starts_with("FIRING heartbeat_stale: tenant alpha")
    );
    assert!(
        telegram[1].json()["text"]
            .as_str()
            .unwrap()
            .starts_with("RESOLVED heartbeat_stale")
    );
    // The alert's state is in the database (a new evaluator would not repeat it).
    let states = h
        .count("SELECT count(*) FROM alert_states WHERE alert = 'heartbeat_stale' AND NOT firing AND resolved_at IS NOT NULL")
        .await;
    assert_eq!(states, 1);
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn breakers_daily_loss_and_fencing_alert_and_a_flapping_condition_does_not_storm(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let h = Harness::new(pool_opts, options).await;
    let alpha = h
        .onboard(json!({"name": "alpha", "risk": {"max_daily_loss": "10"}}))
        .await;
    let mock = Mock::start().await;
    configure_channels(&h, &alpha, &mock).await;
    let state = with_alerts(
        &h,
        AlertSettings {
            resolve_hold: Duration::from_secs(3600),
            rate_per_minute: 3,
            telegram_api_base: mock.base.clone(),
            ..AlertSettings::default()
        },
    );
    let id: Uuid = alpha.parse().unwrap();
    let open = health(&[(
        "news_arb",
        breaker(BreakerPosition::Open, Some("NewsAPI 500 on /v2/everything")),
    )]);
    heartbeat(&h, &alpha, &open).await;
    let mut tx = h.state.db.tenant(TenantId::from_uuid(id)).await.unwrap();
    for sql in [
        "INSERT INTO trades (id, tenant_id, strategy, venue, market, side, price, size, realized_pnl) \
         VALUES (gen_random_uuid(), $1, 'news_arb', 'kalshi', 'm', 'buy', 0.5, 30, -12.5)",
        "INSERT INTO tenant_runtime_events (tenant_id, kind, detail) VALUES ($1, 'fenced', 'worker 77: exit code 3')",
    ] {
        sqlx::query(sql).bind(id).execute(&mut *tx).await.unwrap();
    }
    tx.commit().await.unwrap();
    let mut evaluator = Mock::evaluator(state);
    let report = evaluator.evaluate().await.unwrap();
    assert_eq!(report.fired, 3, "{report:?}");
    let alerts: Vec<(String, String)> =
        sqlx::query_as("SELECT alert, subject FROM alert_states WHERE firing ORDER BY alert")
            .fetch_all(&h.pool)
            .await
            .unwrap();
    assert_eq!(
        alerts,
        vec![
            ("breaker_open".into(), "news_arb".into()),
            ("daily_loss".into(), String::new()),
            ("fenced".into(), String::new()),
        ]
    );
    // The breaker alert says why the breaker opened, in the state and the message.
    let summary: String = sqlx::query_scalar(
        "SELECT summary FROM alert_states WHERE alert = 'breaker_open' AND subject = 'news_arb'",
    )
    .fetch_one(&h.pool)
    .await
    .unwrap();
    assert_eq!(
        summary,
        "strategy news_arb's circuit breaker is open: NewsAPI 500 on /v2/everything"
    );
    let sent: Vec<Value> = mock.at("/tenant-hook").iter().map(Received::json).collect();
    let breaker_message = sent
        .iter()
        .find(|n| n["alert"] == "breaker_open")
        .expect("a breaker notification");
    assert_eq!(breaker_message["subject"], "news_arb");
    assert_eq!(breaker_message["summary"], summary.as_str());
    // Three alerts × two tenant channels and one operator channel: the per
    // channel limit of 3 a minute lets every channel's three through.
    assert_eq!(mock.at("/tenant-hook").len(), 3);
    assert_eq!(mock.at("/operator-hook").len(), 3);
    // The breaker closes and reopens: with the resolution hold, still one alert.
    heartbeat(
        &h,
        &alpha,
        &health(&[("news_arb", breaker(BreakerPosition::Closed, None))]),
    )
    .await;
    assert_eq!(evaluator.evaluate().await.unwrap().resolved, 0);
    heartbeat(&h, &alpha, &open).await;
    let report = evaluator.evaluate().await.unwrap();
    assert_eq!(
        (report.fired, report.resolved, report.notifications),
        (0, 0, 0)
    );
    assert_eq!(mock.at("/tenant-hook").len(), 3);
    // A paused tenant's alerts stop firing (and resolve after the hold).
    let reply = h
        .call(
            Method::POST,
            &format!("/tenants/{alpha}/pause"),
            Some(OPERATOR),
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let report = evaluator.evaluate().await.unwrap();
    assert_eq!(report.fired, 0);
    let clearing = h
        .count("SELECT count(*) FROM alert_states WHERE firing AND clear_since IS NOT NULL")
        .await;
    assert_eq!(clearing, 3);
}

/// Waits until `tenant`'s worker runs with a fresh heartbeat; its pid.
async fn wait_running(h: &Harness, tenant: &str, what: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = h
            .call(
                Method::GET,
                &format!("/tenants/{tenant}/status"),
                Some(OPERATOR),
                None,
            )
            .await
            .body;
        if s["worker"]["state"] == "running"
            && s["last_heartbeat"]["age_seconds"]
                .as_i64()
                .is_some_and(|a| a < 1)
        {
            return s["worker"]["instance_id"].as_str().unwrap().to_owned();
        }
        assert!(Instant::now() < deadline, "never {what}: {s}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The polybot binary the workers run: `POLYBOT_BIN` (scripts/test sets it),
/// else the workspace's debug build.
fn polybot_bin() -> PathBuf {
    if let Ok(bin) = std::env::var("POLYBOT_BIN") {
        return PathBuf::from(bin);
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../../target").to_owned());
    let bin = PathBuf::from(target).join("debug/polybot");
    assert!(
        bin.exists(),
        "{} is missing: build it (cargo build -p polybot-cli) or set POLYBOT_BIN",
        bin.display()
    );
    bin
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_killed_worker_produces_one_alert_and_one_recovery(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let h = Harness::new(pool_opts, options).await;
    let mock = Mock::start().await;
    let alpha = h
        .onboard(json!({"name": "alpha", "strategies": {"complement_arb": {}}}))
        .await;
    configure_channels(&h, &alpha, &mock).await;
    let dir = tempfile::tempdir().unwrap();
    let launcher = Arc::new(LocalLauncher::new(polybot_bin(), dir.path().join("workers")).unwrap());
    let state = with_alerts(
        &h,
        AlertSettings {
            interval: Duration::from_millis(200),
            heartbeat_stale: Duration::from_secs(1),
            resolve_hold: Duration::from_millis(500),
            telegram_api_base: mock.base.clone(),
            ..AlertSettings::default()
        },
    );
    let mut reconciler = Reconciler::new(
        h.state.db.clone(),
        launcher.clone(),
        h.state.secrets.clone(),
        h.state.reconcile.clone(),
    )
    .with_metrics(h.state.metrics.clone());
    reconciler.interval = Duration::from_millis(200);
    reconciler
        .worker_env
        .insert("POLYBOT_HEARTBEAT_SECS".into(), "0.2".into());
    // No market data: the alert is about a silent worker, not its feeds.
    reconciler
        .worker_env
        .insert("POLYBOT_LIVE_DATA".into(), "0".into());
    let stop = CancellationToken::new();
    let reconciling = tokio::spawn(reconciler.run(stop.clone()));
    // The evaluator starts once the worker runs: how long a worker takes to
    // start on a loaded machine is not what this test is about.
    let pid = wait_running(&h, &alpha, "running").await;
    let evaluating = tokio::spawn(Mock::evaluator(state).run(stop.clone()));
    // Longer than the staleness bound: a heartbeating worker stays quiet.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        mock.at("/tenant-hook").is_empty(),
        "a healthy worker raises nothing"
    );

    let killed = std::process::Command::new("kill")
        .args(["-9", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    // Wait for the alert and its recovery.
    let deadline = Instant::now() + Duration::from_secs(60);
    while mock.at("/tenant-hook").len() < 2 {
        assert!(
            Instant::now() < deadline,
            "no alert and recovery: {:?}",
            mock.at("/tenant-hook")
                .iter()
                .map(Received::json)
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let new_pid = wait_running(&h, &alpha, "restarted").await;
    assert_ne!(new_pid, pid);
    // Give a storm the chance to happen.
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.cancel();
    reconciling.await.unwrap();
    evaluating.await.unwrap();
    launcher.shutdown().await;

    for path in ["/tenant-hook", "/operator-hook"] {
        let got: Vec<Value> = mock.at(path).iter().map(Received::json).collect();
        let seen: Vec<(String, String)> = got
            .iter()
            .map(|n| {
                (
                    n["alert"].as_str().unwrap().to_owned(),
                    n["status"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            vec![
                ("heartbeat_stale".to_owned(), "firing".to_owned()),
                ("heartbeat_stale".to_owned(), "resolved".to_owned()),
            ],
            "{path}: {got:?}"
        );
    }
    assert_eq!(mock.at(&format!("/bot{BOT_TOKEN}/sendMessage")).len(), 2);
    let now = chrono::Utc::now().timestamp();
    for r in mock.at("/tenant-hook") {
        let header = r.headers[SIGNATURE_HEADER].to_str().unwrap();
        assert!(verify(HOOK_SECRET, header, &r.body, now), "{header}");
    }
    // The SLO saw the outage: availability is below 1.
    let ratio: Option<f64> = sqlx::query_scalar(
        "SELECT sum(up_ms)::float8 / nullif(sum(desired_ms), 0) FROM worker_availability",
    )
    .fetch_one(&h.pool)
    .await
    .unwrap();
    let ratio = ratio.expect("availability was recorded");
    assert!(ratio < 1.0 && ratio > 0.0, "availability {ratio}");
}
