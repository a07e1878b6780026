//! `/metrics` on the real router and database, after a scripted scenario:
//! two tenants, a reconciler on a fake launcher that throttles once, worker
//! data written as a worker would, and an alert evaluation.

use crate::common;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use chrono::Utc;
use common::{Harness, OPERATOR};
use polybot_control_plane::alerts::Evaluator;
use polybot_control_plane::reconcile::Reconciler;
use polybot_control_plane::settings::Settings;
use polybot_core::TenantId;
use polybot_launcher::{Instance, LaunchError, LaunchSpec, Launcher, Phase};
use serde_json::json;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Runs whatever it is asked to; its first `start` is throttled.
#[derive(Debug, Default)]
struct FakeLauncher {
    running: Mutex<HashMap<TenantId, Instance>>,
    starts: Mutex<u32>,
}

#[async_trait]
impl Launcher for FakeLauncher {
    fn kind(&self) -> &'static str {
        "fake"
    }

    async fn ensure_spec(&self, _spec: &LaunchSpec) -> Result<(), LaunchError> {
        Ok(())
    }

    async fn list(&self) -> Result<Vec<Instance>, LaunchError> {
        Ok(self.running.lock().unwrap().values().cloned().collect())
    }

    async fn start(&self, spec: &LaunchSpec) -> Result<Instance, LaunchError> {
        let first = {
            let mut starts = self.starts.lock().unwrap();
            *starts += 1;
            *starts == 1
        };
        if first {
            return Err(LaunchError::Throttled {
                launcher: "fake",
                operation: "start",
                message: "Rate exceeded".into(),
            });
        }
        let instance = Instance {
            id: format!("fake-{}", spec.tenant),
            tenant: spec.tenant,
            spec_hash: spec.spec_hash.clone(),
            phase: Phase::Running,
            started_at: Utc::now() - chrono::Duration::seconds(5),
        };
        self.running
            .lock()
            .unwrap()
            .insert(spec.tenant, instance.clone());
        Ok(instance)
    }

    async fn stop(&self, instance: &Instance, _reason: &str) -> Result<(), LaunchError> {
        self.running.lock().unwrap().remove(&instance.tenant);
        Ok(())
    }
}

/// `name{labels}` → value, from a Prometheus text exposition.
fn parse(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.rsplit_once(' '))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn value(series: &BTreeMap<String, String>, key: &str) -> String {
    series.get(key).cloned().unwrap_or_else(|| {
        panic!(
            "no series {key} in:\n{}",
            series.keys().cloned().collect::<Vec<_>>().join("\n")
        )
    })
}

async fn scrape(h: &Harness, token: Option<&str>) -> (StatusCode, String) {
    let reply = h.call(Method::GET, "/metrics", token, None).await;
    (reply.status, reply.text)
}

async fn write_worker_data(h: &Harness, tenant: &str) {
    let id: Uuid = tenant.parse().unwrap();
    let mut tx = h.state.db.tenant(TenantId::from_uuid(id)).await.unwrap();
    sqlx::query("INSERT INTO worker_heartbeats (tenant_id, epoch, health) VALUES ($1, 1, $2)")
        .bind(id)
        .bind(json!({"phase": "running", "strategies": {
            "complement_arb": {"status": "degraded", "breaker": "open", "last_error": "polymarket clob: HTTP 503"},
            "crypto_15m": {"status": "ok", "breaker": "closed"}}}))
        .execute(&mut *tx)
        .await
        .unwrap();
    for (executed, n) in [(true, 1), (false, 2)] {
        sqlx::query(
            "INSERT INTO opportunities (id, tenant_id, strategy, venue, market, executed_at) \
             VALUES ($1, $2, 'complement_arb', 'polymarket', $3, CASE WHEN $4 THEN now() END)",
        )
        .bind(Uuid::new_v4())
        .bind(id)
        .bind(format!("m{n}"))
        .bind(executed)
        .execute(&mut *tx)
        .await
        .unwrap();
    }
    for pnl in ["1.5", "-0.25", "0.75"] {
        sqlx::query(
            "INSERT INTO trades (id, tenant_id, strategy, venue, market, side, price, size, realized_pnl) \
             VALUES ($1, $2, 'complement_arb', 'polymarket', 'm1', 'buy', 0.4, 10, $3::numeric)",
        )
        .bind(Uuid::new_v4())
        .bind(id)
        .bind(pnl)
        .execute(&mut *tx)
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn metrics_show_fleet_tenant_reconciler_launcher_and_http_series_with_their_values(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let h = Harness::new(pool_opts, options).await;
    let alpha = h
        .onboard(json!({"name": "alpha", "strategies": {"complement_arb": {}}}))
        .await;
    let beta = h.onboard(json!({"name": "beta"})).await;

    // A reconciler on the fake launcher, counted in the app's registry.
    let launcher = Arc::new(FakeLauncher::default());
    let mut reconciler = Reconciler::new(
        h.state.db.clone(),
        launcher.clone(),
        h.state.secrets.clone(),
        h.state.reconcile.clone(),
    )
    .with_metrics(h.state.metrics.clone());
    reconciler.interval = Duration::from_millis(50);
    reconciler.backoff.launch_base = Duration::from_millis(50);
    let stop = CancellationToken::new();
    let running = tokio::spawn(reconciler.run(stop.clone()));
    write_worker_data(&h, &alpha).await;
    // Alpha is running once its (fresh) heartbeat follows the start, and
    // both tenants are started once the throttled start was retried (three
    // calls to the launcher, whichever tenant came first).
    for _ in 0..200 {
        let actual: Option<String> =
            sqlx::query_scalar("SELECT actual FROM tenant_runtime WHERE tenant_id = $1")
                .bind(alpha.parse::<Uuid>().unwrap())
                .fetch_optional(&h.pool)
                .await
                .unwrap();
        if actual.as_deref() == Some("running") && *launcher.starts.lock().unwrap() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    stop.cancel();
    running.await.unwrap();
    assert_eq!(
        *launcher.starts.lock().unwrap(),
        3,
        "one throttled start, two that ran"
    );

    // Two evaluations: the breaker alert fires, availability is accounted.
    let mut evaluator = Evaluator::new(h.state.clone());
    evaluator.evaluate().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let report = evaluator.evaluate().await.unwrap();
    assert_eq!(
        report.fired, 0,
        "the breaker alert fired once, in the first round"
    );
    evaluator.flush_availability().await.unwrap();

    let (status, text) = scrape(&h, Some(OPERATOR)).await;
    assert_eq!(status, StatusCode::OK);
    let s = parse(&text);
    let a = |name: &str| format!("{name}{{tenant_id=\"{alpha}\"}}");
    assert_eq!(value(&s, "polybot_tenants{state=\"active\"}"), "2");
    assert_eq!(value(&s, "polybot_tenants{state=\"paused\"}"), "0");
    assert_eq!(value(&s, "polybot_workers_desired"), "2");
    assert_eq!(value(&s, "polybot_workers_running"), "1");
    assert_eq!(value(&s, &a("polybot_tenant_worker_up")), "1");
    assert_eq!(value(&s, &a("polybot_tenant_worker_desired")), "1");
    assert_eq!(value(&s, &a("polybot_tenant_opportunities_total")), "2");
    assert_eq!(
        value(&s, &a("polybot_tenant_opportunities_executed_total")),
        "1"
    );
    assert_eq!(value(&s, &a("polybot_tenant_trades_total")), "3");
    assert_eq!(value(&s, &a("polybot_tenant_pnl")), "2");
    assert_eq!(value(&s, &a("polybot_tenant_pnl_today")), "2");
    // The throttled start is one launcher error, recorded for whichever
    // tenant the reconciler tried first.
    let errors: u64 = [&alpha, &beta]
        .iter()
        .map(|t| {
            value(
                &s,
                &format!("polybot_tenant_errors_total{{tenant_id=\"{t}\"}}"),
            )
            .parse::<u64>()
            .unwrap()
        })
        .sum();
    assert_eq!(errors, 1);
    let age: f64 = value(&s, &a("polybot_tenant_heartbeat_age_seconds"))
        .parse()
        .unwrap();
    assert!(age < 30.0, "heartbeat age {age}");
    assert_eq!(
        value(
            &s,
            &format!(
                "polybot_tenant_breaker_state{{tenant_id=\"{alpha}\",strategy=\"complement_arb\"}}"
            )
        ),
        "2"
    );
    assert_eq!(
        value(
            &s,
            &format!(
                "polybot_tenant_breaker_state{{tenant_id=\"{alpha}\",strategy=\"crypto_15m\"}}"
            )
        ),
        "0"
    );
    assert_eq!(
        value(
            &s,
            &format!(
                "polybot_tenant_alert_firing{{tenant_id=\"{alpha}\",alert=\"breaker_open\",subject=\"complement_arb\"}}"
            )
        ),
        "1"
    );
    let availability: f64 = value(
        &s,
        &format!("polybot_tenant_availability_ratio{{tenant_id=\"{alpha}\",window=\"1h\"}}"),
    )
    .parse()
    .unwrap();
    assert!(
        (0.99..=1.0).contains(&availability),
        "alpha ran: {availability}"
    );
    let beta_availability: f64 = value(
        &s,
        &format!("polybot_tenant_availability_ratio{{tenant_id=\"{beta}\",window=\"1h\"}}"),
    )
    .parse()
    .unwrap();
    assert!(
        beta_availability <= 0.01,
        "beta never heartbeated: {beta_availability}"
    );
    assert_eq!(
        value(
            &s,
            &format!("polybot_tenant_info{{tenant_id=\"{beta}\",name=\"beta\",state=\"active\"}}")
        ),
        "1"
    );

    // The reconciler's and the launcher's series.
    let passes: u64 = value(&s, "polybot_reconcile_passes_total").parse().unwrap();
    assert!(passes >= 2, "{passes} passes");
    assert_eq!(
        value(&s, "polybot_reconcile_actions_total{action=\"started\"}"),
        "2"
    );
    assert_eq!(
        value(&s, "polybot_reconcile_actions_total{action=\"errors\"}"),
        "1"
    );
    assert_eq!(
        value(
            &s,
            "polybot_launcher_api_calls_total{launcher=\"fake\",operation=\"start\",outcome=\"throttled\"}"
        ),
        "1"
    );
    assert_eq!(
        value(
            &s,
            "polybot_launcher_api_calls_total{launcher=\"fake\",operation=\"start\",outcome=\"ok\"}"
        ),
        "2"
    );
    assert_eq!(
        value(
            &s,
            "polybot_launcher_api_throttles_total{launcher=\"fake\",operation=\"start\"}"
        ),
        "1"
    );
    let count: u64 = value(&s, "polybot_reconcile_pass_duration_seconds_count")
        .parse()
        .unwrap();
    assert_eq!(count, passes);
    assert_eq!(
        value(
            &s,
            "polybot_reconcile_pass_duration_seconds_bucket{le=\"+Inf\"}"
        ),
        count.to_string()
    );
    // HTTP: labelled by route template, never by tenant id.
    assert_eq!(
        value(
            &s,
            "polybot_http_request_duration_seconds_count{method=\"POST\",route=\"/tenants\",status=\"201\"}"
        ),
        "2"
    );
    assert!(
        s.keys().any(|k| k.starts_with("polybot_http_request_duration_seconds_count{method=\"GET\",route=\"/tenants/{id}\",status=\"200\"}")),
        "{text}"
    );
    assert!(
        !s.keys()
            .any(|k| k.starts_with("polybot_http") && k.contains(&alpha))
    );
    assert_eq!(value(&s, "polybot_slo_availability_objective"), "0.995");
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_tenant_token_scrapes_only_its_own_series_and_a_metrics_token_scrapes_all(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let h = Harness::new(pool_opts, options).await;
    let alpha = h.onboard(json!({"name": "alpha"})).await;
    let beta = h.onboard(json!({"name": "beta"})).await;
    write_worker_data(&h, &alpha).await;
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

    let (status, text) = scrape(&h, Some(&token)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        text.contains(&format!(
            "polybot_tenant_trades_total{{tenant_id=\"{beta}\"}} 0"
        )),
        "{text}"
    );
    assert!(!text.contains(&alpha), "beta's scrape shows alpha:\n{text}");
    assert!(
        !text.contains("polybot_tenants{"),
        "fleet series are for operators"
    );
    assert!(
        !text.contains("polybot_http_request"),
        "process series are for operators"
    );

    let (status, _) = scrape(&h, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = scrape(&h, Some("pbo_not-a-real-token-0123456789abcdef")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // A separate metrics token: every series, and nothing else.
    let mut state = h.state.clone();
    state.settings = Arc::new(Settings::default().with_metrics_token("scrape-me-0123456789"));
    let app = polybot_control_plane::router(state);
    let response = tower::ServiceExt::oneshot(
        app.clone(),
        Request::get("/metrics")
            .header("authorization", "Bearer scrape-me-0123456789")
            .body(Body::empty())
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    let text = String::from_utf8(body.to_vec()).unwrap();
    assert!(text.contains(&format!(
        "polybot_tenant_trades_total{{tenant_id=\"{alpha}\"}} 3"
    )));
    assert!(text.contains(&format!(
        "polybot_tenant_trades_total{{tenant_id=\"{beta}\"}} 0"
    )));
    let response = tower::ServiceExt::oneshot(
        app,
        Request::get("/tenants")
            .header("authorization", "Bearer scrape-me-0123456789")
            .body(Body::empty())
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::UNAUTHORIZED,
        "the metrics token opens nothing else"
    );
}

/// Each alerting and recording rule in deploy/prometheus/rules.yml parses
/// and uses only series this code exports.
#[test]
fn the_prometheus_rules_reference_only_exported_metrics() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/prometheus/rules.yml"
    );
    let text = std::fs::read_to_string(path).unwrap();
    let doc: serde_norway::Value = serde_norway::from_str(&text).unwrap();
    let groups = doc["groups"].as_sequence().expect("groups: a list");
    assert!(!groups.is_empty());
    let exported = polybot_control_plane::metrics::EXPORTED;
    let mut recorded: Vec<String> = Vec::new();
    let mut alerts = Vec::new();
    for group in groups {
        assert!(group["name"].as_str().is_some(), "every group has a name");
        for rule in group["rules"].as_sequence().expect("rules: a list") {
            let expr = rule["expr"].as_str().expect("every rule has an expr");
            let names: Vec<&str> = expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                .filter(|w| w.starts_with("polybot"))
                .collect();
            assert!(!names.is_empty(), "{expr} uses no polybot series");
            for name in names {
                let base = name
                    .trim_end_matches("_bucket")
                    .trim_end_matches("_count")
                    .trim_end_matches("_sum");
                assert!(
                    exported.contains(&name)
                        || exported.contains(&base)
                        || recorded.iter().any(|r| r == name),
                    "rule expression `{expr}` uses `{name}`, which the control plane does not export"
                );
            }
            if let Some(record) = rule["record"].as_str() {
                recorded.push(record.to_owned());
            }
            if let Some(alert) = rule["alert"].as_str() {
                assert!(
                    rule["labels"]["severity"].as_str().is_some(),
                    "{alert} has a severity"
                );
                assert!(
                    rule["annotations"]["summary"].as_str().is_some(),
                    "{alert} has a summary"
                );
                alerts.push(alert.to_owned());
            }
        }
    }
    for expected in [
        "PolybotWorkerAvailabilityBudgetBurn",
        "PolybotHeartbeatStale",
        "PolybotCircuitBreakerOpen",
    ] {
        assert!(alerts.iter().any(|a| a == expected), "no {expected} alert");
    }
}
