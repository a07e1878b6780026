//! N workers through PgBouncer: the server connections they use.
//!
//! Starts the private PgBouncer (the same code as `polybot up`) with a budget
//! of server connections in front of a fresh database, onboards N tenants
//! with a claim each, and runs N worker database clients at once, each as a
//! worker does it: its own pool of at most two connections to PgBouncer with
//! the shared worker login, the lease taken, then every period a fenced
//! transaction that writes a batch of opportunities and renews the lease.
//! Meanwhile it samples `pg_stat_activity` for the worker login's server
//! connections. Prints workers, budget, the most server connections seen,
//! transactions per second and the transaction latency percentiles.
//!
//! `DATABASE_URL=<superuser url> cargo bench -p polybot-store --bench pooled_workers`
//! (without DATABASE_URL: a private cluster in a temporary directory).
//! `POLYBOT_BENCH_WORKERS` (1000), `POLYBOT_BENCH_BUDGET` (100),
//! `POLYBOT_BENCH_PERIOD_MS` (1000), `POLYBOT_BENCH_SECS` (20).

// Figures for a human to read: floats are fine here, unlike money.
#![allow(clippy::float_arithmetic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use polybot_store::embedded::{EmbeddedOptions, EmbeddedPostgres};
use polybot_store::repo::{lease, opportunities};
use polybot_store::testing::{TestPooler, create_tenant, mint_claim};
use polybot_store::{Db, Scope};
use rust_decimal::Decimal;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};
use uuid::Uuid;

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rows(n: usize) -> Vec<opportunities::NewOpportunity> {
    (0..n)
        .map(|i| opportunities::NewOpportunity {
            id: Uuid::new_v4(),
            strategy: "complement_arb".into(),
            venue: "polymarket".into(),
            market: format!("market-{i}"),
            description: "YES + NO below 1".into(),
            edge: Some(Decimal::new(123, 4)),
            expected_profit: Some(Decimal::new(45, 2)),
            size: Some(Decimal::from(100)),
            details: serde_json::json!({"yes_ask": "0.48", "no_ask": "0.50"}),
            detected_at: Utc::now(),
            executed_at: None,
        })
        .collect()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[index]
}

#[tokio::main]
async fn main() {
    let workers = setting("POLYBOT_BENCH_WORKERS", 1000) as usize;
    let budget = setting("POLYBOT_BENCH_BUDGET", 100) as u32;
    let period = Duration::from_millis(setting("POLYBOT_BENCH_PERIOD_MS", 1000));
    let run_for = Duration::from_secs(setting("POLYBOT_BENCH_SECS", 20));

    let (admin, _server, _dir) = match std::env::var("DATABASE_URL") {
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
    let name = format!("polybot_bench_{}", Uuid::new_v4().simple());
    let mut conn = admin.connect().await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .unwrap();
    let options = admin.clone().database(&name);
    let db = Db::connect(options.clone(), Scope::Control, 4)
        .await
        .unwrap();
    db.migrate().await.unwrap();
    let pooler = TestPooler::start(&db, &options, budget).await;

    let mut fleet = Vec::with_capacity(workers);
    for i in 0..workers {
        let tenant = create_tenant(&db, &format!("bench-{i}")).await.unwrap();
        let claim = mint_claim(&db, tenant, Duration::from_secs(3600))
            .await
            .unwrap();
        fleet.push((tenant, claim));
    }
    eprintln!("{workers} tenants onboarded; starting their workers");

    // Connect every worker first (each logs in to PgBouncer with SCRAM, a
    // few at a time, as workers that start over a minute would) and take
    // its lease; then run them all at once.
    let connecting = Instant::now();
    let gate = Arc::new(tokio::sync::Semaphore::new(8));
    let mut joining = tokio::task::JoinSet::new();
    for (tenant, claim) in fleet {
        let options = pooler.connect_options(&name);
        let gate = gate.clone();
        joining.spawn(async move {
            let _permit = gate.acquire_owned().await.unwrap();
            let db = Db::connect_worker(options, tenant, Some(claim), 2)
                .await
                .unwrap();
            let mut tx = db.tenant(tenant).await.unwrap();
            let epoch = lease::take(&mut tx, "bench", Duration::from_secs(60))
                .await
                .unwrap();
            tx.commit().await.unwrap();
            (tenant, db, epoch)
        });
    }
    let mut connected = Vec::with_capacity(workers);
    while let Some(done) = joining.join_next().await {
        connected.push(done.unwrap());
    }
    eprintln!(
        "{workers} workers connected through PgBouncer in {:.1} s; running them",
        connecting.elapsed().as_secs_f64()
    );

    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, (tenant, db, epoch)) in connected.into_iter().enumerate() {
        let stop = stop.clone();
        tasks.spawn(async move {
            // Spread the workers' periods as independent workers would be.
            tokio::time::sleep(period.mul_f64(i as f64 / workers as f64)).await;
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            let mut ticker = tokio::time::interval(period);
            while !stop.load(Ordering::Relaxed) {
                ticker.tick().await;
                let began = Instant::now();
                let written = async {
                    let mut tx = db.fenced(tenant, epoch).await?;
                    opportunities::insert_batch(&mut tx, &rows(5)).await?;
                    lease::renew(&mut tx, Duration::from_secs(60)).await?;
                    tx.commit().await
                }
                .await;
                match written {
                    Ok(()) => latencies.push(began.elapsed()),
                    Err(err) => {
                        errors += 1;
                        if errors == 1 {
                            eprintln!("worker {tenant}: {err}");
                        }
                    }
                }
            }
            db.close().await;
            (latencies, errors)
        });
    }

    let mut most = 0i64;
    let mut samples = Vec::new();
    while started.elapsed() < run_for {
        let servers: i64 =
            sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE usename = $1")
                .bind(&pooler.login)
                .fetch_one(&mut conn)
                .await
                .unwrap();
        most = most.max(servers);
        samples.push(servers);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    let mut errors = 0;
    while let Some(done) = tasks.join_next().await {
        let (mine, failed) = done.unwrap();
        latencies.extend(mine);
        errors += failed;
    }
    let elapsed = started.elapsed();
    latencies.sort();
    samples.sort();
    let total_backends: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    println!(
        "workers {workers}, budget {budget}, period {period:?}, {:.0} s: \
         server connections of the worker login max {most}, median {} (all backends now {total_backends}); \
         {} transactions ({:.0}/s), {errors} failed; latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        elapsed.as_secs_f64(),
        samples.get(samples.len() / 2).copied().unwrap_or(0),
        latencies.len(),
        latencies.len() as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
    drop(pooler);
    db.close().await;
    sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
}
