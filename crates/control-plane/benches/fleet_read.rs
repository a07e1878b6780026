//! The fleet read model under a fleet of 1,000 tenants: `GET /metrics` (an
//! operator scrape) and the dashboard's fleet page (`GET /ui/fleet`), each
//! timed through the real router against a seeded database.
//!
//! Every tenant is active, has a runtime row, `POLYBOT_BENCH_HEARTBEATS`
//! heartbeats (default 120: ten minutes at 5 s), 20 opportunities, 10 trades,
//! an hour of availability minutes, a few timeline events, and one in ten a
//! firing alert. Goal: ≤ 100 ms per request. Also times the newest-heartbeat
//! join alone in its two forms (an index probe per tenant, `DISTINCT ON`),
//! the choice `polybot_store::repo::fleet` documents.
//!
//! `cargo bench -p polybot-control-plane --bench fleet_read` uses
//! DATABASE_URL (a superuser URL) if set, else a private cluster in a
//! temporary directory. `POLYBOT_BENCH_TENANTS` (default 1000) and
//! `POLYBOT_BENCH_ROUNDS` (default 30) change the size and the sample.

// Durations for a human to read: floats are fine here, unlike money.
#![allow(clippy::float_arithmetic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use polybot_control_plane::{AppState, WorkerDatabase, auth, router};
use polybot_core::worker::{
    BreakerPosition, FeedState, FeedStatus, PnlSummary, StrategyHealth, StrategyStatus,
    WorkerHealth, WorkerPhase,
};
use polybot_secrets::local::{LocalSecretStore, MasterKey};
use polybot_store::embedded::{EmbeddedOptions, EmbeddedPostgres};
use polybot_store::{Db, Scope};
use secrecy::SecretString;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};
use tower::ServiceExt;

const OPERATOR: &str = "pbo_bench-operator-token-0123456789abcdef";

fn env_or(name: &str, default: i64) -> i64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A heartbeat as a busy worker writes it: three strategies, two feeds.
fn heartbeat() -> serde_json::Value {
    let strategy = |breaker| StrategyHealth {
        status: StrategyStatus::Ok,
        breaker,
        ..StrategyHealth::default()
    };
    let feed = |status| FeedStatus {
        status,
        requests_ok: 1200,
        ..FeedStatus::default()
    };
    WorkerHealth {
        version: WorkerHealth::VERSION,
        phase: WorkerPhase::Running,
        spec_hash: "0123456789abcdef".into(),
        pid: 4242,
        strategies: [
            (
                "complement_arb".to_owned(),
                strategy(BreakerPosition::Closed),
            ),
            ("crypto_15m".to_owned(), strategy(BreakerPosition::Closed)),
            ("news_arb".to_owned(), strategy(BreakerPosition::Open)),
        ]
        .into(),
        pnl: Some(PnlSummary::default()),
        venues: [
            ("polymarket".to_owned(), feed(FeedState::Ok)),
            ("kalshi".to_owned(), feed(FeedState::GeoBlocked)),
        ]
        .into(),
        ..WorkerHealth::default()
    }
    .to_json()
}

/// Seeds the fleet as the database's superuser (row level security does
/// not apply to it), in set-wise statements.
async fn seed(conn: &mut PgConnection, tenants: i64, heartbeats: i64) {
    let started = Instant::now();
    sqlx::query(
        "INSERT INTO tenants (id, name, state, provisioning_step) \
         SELECT gen_random_uuid(), 'bench-' || lpad(n::text, 5, '0'), 'active', 'done' \
         FROM generate_series(1, $1) n",
    )
    .bind(tenants)
    .execute(&mut *conn)
    .await
    .unwrap();
    for sql in [
        "INSERT INTO tenant_configs (tenant_id, strategies) \
         SELECT id, '{\"complement_arb\": {}}' FROM tenants",
        "INSERT INTO tenant_runtime (tenant_id, desired, actual, instance_id, spec_hash, restarts) \
         SELECT id, 'running', 'running', 'pid-' || left(id::text, 8), 'abc', 0 FROM tenants",
        "INSERT INTO opportunities (id, tenant_id, strategy, venue, market, detected_at, executed_at) \
         SELECT gen_random_uuid(), t.id, 'complement_arb', 'polymarket', 'm' || n, \
                now() - n * interval '1 minute', CASE WHEN n % 2 = 0 THEN now() END \
         FROM tenants t, generate_series(1, 20) n",
        "INSERT INTO trades (id, tenant_id, strategy, venue, market, side, price, size, realized_pnl, executed_at) \
         SELECT gen_random_uuid(), t.id, 'complement_arb', 'polymarket', 'm' || n, 'buy', 0.45, 10, \
                (n % 7 - 3) * 0.25, now() - n * interval '3 hours' \
         FROM tenants t, generate_series(1, 10) n",
        "INSERT INTO worker_availability (tenant_id, minute, desired_ms, up_ms) \
         SELECT t.id, date_trunc('minute', now()) - n * interval '1 minute', 60000, 59000 \
         FROM tenants t, generate_series(0, 59) n",
        "INSERT INTO tenant_runtime_events (tenant_id, kind, detail, at) \
         SELECT t.id, (ARRAY['started', 'crashed', 'error', 'steady', 'stopping'])[n], 'bench', \
                now() - n * interval '1 hour' \
         FROM tenants t, generate_series(1, 5) n",
        "INSERT INTO alert_states (tenant_id, alert, subject, firing, summary, fired_at) \
         SELECT id, 'breaker_open', 'news_arb', true, 'bench', now() FROM tenants \
         WHERE get_byte(uuid_send(id), 0) < 26",
    ] {
        sqlx::query(sql).execute(&mut *conn).await.unwrap();
    }
    sqlx::query(
        "INSERT INTO worker_heartbeats (tenant_id, epoch, at, health) \
         SELECT t.id, 1, now() - n * interval '5 seconds', $1 \
         FROM tenants t, generate_series(0, $2 - 1) n",
    )
    .bind(heartbeat())
    .bind(heartbeats)
    .execute(&mut *conn)
    .await
    .unwrap();
    sqlx::query("ANALYZE").execute(&mut *conn).await.unwrap();
    println!(
        "  seeded {tenants} tenants, {} heartbeats in {:.1} s",
        tenants * heartbeats,
        started.elapsed().as_secs_f64()
    );
}

struct Sample(Vec<Duration>);

impl Sample {
    fn print(mut self, what: &str, bytes: usize) {
        self.0.sort();
        let at = |p: f64| {
            let i = ((self.0.len() as f64 - 1.0) * p).round() as usize;
            self.0[i].as_secs_f64() * 1e3
        };
        let mean = self.0.iter().sum::<Duration>().as_secs_f64() * 1e3 / self.0.len() as f64;
        println!(
            "  {what:<34} {:>3} runs: mean {mean:>7.1} ms, p50 {:>7.1} ms, p99 {:>7.1} ms ({} kB)",
            self.0.len(),
            at(0.5),
            at(0.99),
            bytes / 1024,
        );
    }
}

/// Times `rounds` requests (after two unmeasured ones) and returns the
/// sample and the body size.
async fn time(
    app: &axum::Router,
    rounds: i64,
    request: impl Fn() -> Request<Body>,
) -> (Sample, usize) {
    let mut sample = Vec::new();
    let mut bytes = 0;
    for round in 0..rounds + 2 {
        let started = Instant::now();
        let response = app.clone().oneshot(request()).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        if round >= 2 {
            sample.push(started.elapsed());
        }
        bytes = body.len();
    }
    (Sample(sample), bytes)
}

async fn time_sql(conn: &mut PgConnection, rounds: i64, sql: &str) -> Sample {
    let mut sample = Vec::new();
    for round in 0..rounds + 2 {
        let started = Instant::now();
        let rows = sqlx::query(sql).fetch_all(&mut *conn).await.unwrap();
        assert!(!rows.is_empty());
        if round >= 2 {
            sample.push(started.elapsed());
        }
    }
    Sample(sample)
}

/// Signs in to the dashboard and returns the session cookie.
async fn sign_in(app: &axum::Router) -> String {
    let page = app
        .clone()
        .oneshot(Request::get("/ui/login").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let cookie = |headers: &axum::http::HeaderMap, name: &str| {
        headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|v| v.strip_prefix(&format!("{name}=")))
            .map(|v| v.split(';').next().unwrap_or("").to_owned())
            .unwrap_or_else(|| panic!("no {name} cookie"))
    };
    let login = cookie(page.headers(), "pb_login");
    let html = String::from_utf8(
        page.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    let marker = "name=\"csrf\" value=\"";
    let rest = &html[html.find(marker).expect("a CSRF field") + marker.len()..];
    let csrf = &rest[..rest.find('"').unwrap()];
    let reply = app
        .clone()
        .oneshot(
            Request::post("/ui/login")
                .header("content-type", "application/x-www-form-urlencoded")
                .header("cookie", format!("pb_login={login}"))
                .body(Body::from(format!("csrf={csrf}&token={OPERATOR}")))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::SEE_OTHER);
    format!("pb_session={}", cookie(reply.headers(), "pb_session"))
}

#[tokio::main]
async fn main() {
    let tenants = env_or("POLYBOT_BENCH_TENANTS", 1000);
    let heartbeats = env_or("POLYBOT_BENCH_HEARTBEATS", 120);
    let rounds = env_or("POLYBOT_BENCH_ROUNDS", 30);
    let (admin, server, _dir) = match std::env::var("DATABASE_URL") {
        Ok(url) => (url.parse::<PgConnectOptions>().unwrap(), None, None),
        Err(_) => {
            let dir = tempfile::tempdir().unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
            let mut options = EmbeddedOptions::new(dir.path());
            options.ephemeral = true;
            let server = EmbeddedPostgres::start(&options).await.unwrap();
            (server.connect_options("postgres"), Some(server), Some(dir))
        }
    };
    let name = format!("polybot_bench_{}", uuid::Uuid::new_v4().simple());
    let mut conn = admin.connect().await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .unwrap();
    let options = admin.clone().database(&name);
    let db = Db::connect(options.clone(), Scope::Control, 8)
        .await
        .unwrap();
    db.migrate().await.unwrap();
    auth::ensure_operator_token(&db, Some(&SecretString::from(OPERATOR.to_owned())), None)
        .await
        .unwrap();

    println!("fleet read model: {tenants} tenants, {rounds} timed runs each");
    let mut bench = options.connect().await.unwrap();
    seed(&mut bench, tenants, heartbeats).await;

    let store = Arc::new(LocalSecretStore::new(MasterKey::from_bytes([9u8; 32])));
    let state = AppState::new(db.clone(), store, WorkerDatabase::from_options(&options));
    let app = router(state);

    let (sample, bytes) = time(&app, rounds, || {
        Request::get("/metrics")
            .header("authorization", format!("Bearer {OPERATOR}"))
            .body(Body::empty())
            .unwrap()
    })
    .await;
    sample.print("GET /metrics (operator)", bytes);

    let session = sign_in(&app).await;
    let (sample, bytes) = time(&app, rounds, || {
        Request::get("/ui/fleet")
            .header("cookie", &session)
            .body(Body::empty())
            .unwrap()
    })
    .await;
    sample.print("GET /ui/fleet (operator)", bytes);
    println!("  goal: <= 100 ms each");

    // The store's read alone (query and decoding), without encoding or rendering.
    let mut sample = Vec::new();
    for round in 0..rounds + 2 {
        let started = Instant::now();
        let mut op = db.operator().await.unwrap();
        let figures = polybot_store::repo::fleet::figures(&mut op).await.unwrap();
        op.commit().await.unwrap();
        assert_eq!(figures.len(), usize::try_from(tenants).unwrap());
        if round >= 2 {
            sample.push(started.elapsed());
        }
    }
    Sample(sample).print("fleet::figures (store read)", 0);

    // The newest heartbeat per tenant alone, in its two forms.
    time_sql(
        &mut bench,
        rounds,
        "SELECT t.id, h.at FROM tenants t LEFT JOIN LATERAL (SELECT at FROM worker_heartbeats \
         WHERE tenant_id = t.id ORDER BY at DESC LIMIT 1) h ON true",
    )
    .await
    .print("newest heartbeat: index probe", 0);
    time_sql(
        &mut bench,
        rounds,
        "SELECT DISTINCT ON (tenant_id) tenant_id, at FROM worker_heartbeats \
         ORDER BY tenant_id, at DESC",
    )
    .await
    .print("newest heartbeat: DISTINCT ON", 0);

    bench.close().await.unwrap();
    db.close().await;
    if std::env::var_os("POLYBOT_BENCH_KEEP").is_some() {
        println!("  kept database {name}");
        return;
    }
    sqlx::query(&format!("DROP DATABASE {name}"))
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    if let Some(server) = server {
        server.stop().await.unwrap();
    }
}
