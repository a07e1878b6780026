//! The fleet benchmark on the local launcher: N new tenants onboarded through
//! the API of a real control plane process until every real worker process
//! runs with a fresh heartbeat, then the fleet's cost while it runs.
//!
//! `cargo bench -p polybot-cli --bench fleet_start` (release build) uses
//! DATABASE_URL (a superuser URL) if set, else a private cluster in a
//! temporary directory (`max_connections` 600). Variables:
//!
//! - `POLYBOT_BENCH_TENANTS` (200): how many tenants.
//! - `POLYBOT_BENCH_POOLER=<budget>`: workers behind PgBouncer (the store's
//!   embedded one) with that many server connections, the shared worker
//!   login and a claim each, as `polybot up` does; without it each tenant
//!   logs in as its own role.
//! - `POLYBOT_BENCH_MARKET_DATA=1`: a private `redis-server` and `polybot
//!   market-data`, workers on `POLYBOT_MARKET_DATA_URL`, as `polybot up`
//!   does; without it every worker reads the venues itself.
//! - `POLYBOT_BENCH_MAX_WORKERS=<n>`: the control plane's `--max-workers`
//!   (else it computes the bound from this machine); a refused onboarding
//!   (409) ends the onboarding and is printed.
//! - `POLYBOT_BENCH_SECS` (10): how long the running fleet is sampled.
//! - `POLYBOT_BENCH_HEARTBEAT_SECS` (5, the workers' default): seconds
//!   between two heartbeats of a worker.
//!
//! Nothing reaches the internet: every venue URL (`POLYBOT_*_URL`) points at
//! a stand-in on loopback that answers each HTTP request with an empty JSON
//! list and counts the TCP connections it is opened: the public venue
//! connections of the whole deployment (the workers', or the market-data
//! service's).
//!
//! Printed: onboarding and convergence time, the control plane's CPU time
//! and RSS, the reconcile pass p99 (from its `/metrics` histogram), the
//! workers' RSS, the server connections the workers use, the database's
//! writes per second, the workers' write latency (every heartbeat and flush,
//! from their `polybot_worker::writes` debug events) and the public venue
//! connections.

// Timings for a human to read: floats are fine here, unlike money.
#![allow(clippy::float_arithmetic)]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use polybot_store::embedded::{EmbeddedOptions, EmbeddedPostgres};
use secrecy::ExposeSecret;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const OPERATOR: &str = "pbo_bench-operator-token-0123456789abcdef";
/// Every tenant trades the 15-minute crypto windows on BTC, which needs the
/// venues' public data: Polymarket's and Kalshi's markets, spot prices.
const STRATEGIES: &str = r#"{"crypto_15m":{"enabled":true}}"#;
const METRICS: &str = "bench-metrics-token-0123456789abcdef";

fn request(addr: &str, method: &str, path: &str, token: &str, body: &str) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

fn api(addr: &str, method: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
    let (status, body) = request(addr, method, path, OPERATOR, body);
    (
        status,
        serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body)),
    )
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .map(|s| {
            s.parse()
                .unwrap_or_else(|_| panic!("{name}={s} is not a valid value"))
        })
        .unwrap_or(default)
}

/// Workers running with a fresh heartbeat, over every page of `/fleet`.
fn running_workers(addr: &str) -> usize {
    let mut running = 0;
    let mut cursor = String::new();
    loop {
        let (_, page) = api(
            addr,
            "GET",
            &format!("/fleet?worker=running&limit=500{cursor}"),
            "",
        );
        running += page["items"].as_array().map_or(0, Vec::len);
        match page["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => return running,
        }
    }
}

/// The public venues' stand-in: counts the connections opened to it and the
/// most open at once, holds WebSocket streams open and answers every REST
/// call with `[]`.
#[derive(Default)]
struct VenueCounter {
    opened: AtomicU64,
    open: AtomicU64,
    most_open: AtomicU64,
}

async fn venue_stand_in() -> (String, Arc<VenueCounter>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let counter = Arc::new(VenueCounter::default());
    let count = counter.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            count.opened.fetch_add(1, Ordering::Relaxed);
            let open = count.open.fetch_add(1, Ordering::Relaxed) + 1;
            count.most_open.fetch_max(open, Ordering::Relaxed);
            let count = count.clone();
            tokio::spawn(async move {
                // A WebSocket stream is accepted and held open (its
                // subscriptions go unanswered); a REST call is answered.
                let mut head = vec![0u8; 16 * 1024];
                let mut n = 0;
                for _ in 0..50 {
                    n = socket.peek(&mut head).await.unwrap_or(0);
                    if n == 0 || head[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                let upgrade = String::from_utf8_lossy(&head[..n])
                    .to_ascii_lowercase()
                    .contains("upgrade: websocket");
                if upgrade {
                    if let Ok(mut ws) = tokio_tungstenite::accept_async(socket).await {
                        use futures::StreamExt;
                        while let Some(Ok(_)) = ws.next().await {}
                    }
                } else {
                    let mut buf = vec![0u8; 16 * 1024];
                    let mut seen = Vec::new();
                    loop {
                        match socket.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => seen.extend_from_slice(&buf[..n]),
                        }
                        // One answer per request head (bodies are not read:
                        // the feeds' public calls are GETs).
                        while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                            seen.drain(..end + 4);
                            let answer = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n[]";
                            if socket.write_all(answer.as_bytes()).await.is_err() {
                                break;
                            }
                        }
                    }
                }
                count.open.fetch_sub(1, Ordering::Relaxed);
            });
        }
    });
    (addr, counter)
}

/// A private redis-server on loopback, and `polybot market-data` on it.
struct MarketData {
    dir: PathBuf,
    redis: Child,
    service: Child,
    url: String,
}

impl MarketData {
    fn start(dir: &Path, venue_env: &[(String, String)]) -> Self {
        // Loopback TCP with a password, as `polybot up` runs it: workers run
        // as other uids in a sandbox that reaches no unix socket of ours.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let password = uuid::Uuid::new_v4().simple().to_string();
        let redis = Command::new(
            std::env::var("POLYBOT_REDIS_SERVER").unwrap_or_else(|_| "redis-server".into()),
        )
        .args([
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--maxclients",
            "4000",
        ])
        .args(["--port", &port.to_string(), "--requirepass", &password])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server starts (Debian: apt-get install redis-server)");
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let url = format!("redis://:{password}@127.0.0.1:{port}");
        let service = Command::new(env!("CARGO_BIN_EXE_polybot"))
            .args(["market-data", "--refresh-secs", "2"])
            .env("POLYBOT_MARKET_DATA_URL", &url)
            .env("POLYBOT_LOG", "warn,polybot=info")
            .envs(venue_env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("market-data.log")).unwrap())
            .spawn()
            .unwrap();
        Self {
            dir: dir.to_owned(),
            redis,
            service,
            url,
        }
    }

    fn log(&self) -> PathBuf {
        self.dir.join("market-data.log")
    }

    fn stop(mut self) {
        for child in [&mut self.service, &mut self.redis] {
            let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
            nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
            child.wait().unwrap();
        }
    }
}

/// `utime + stime` of a process, seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces), from field 3.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11..13).map_or(0.0, |f| {
        f.iter().map(|t| t.parse::<f64>().unwrap_or(0.0)).sum()
    });
    // USER_HZ is 100 on Linux.
    ticks / 100.0
}

/// A `/proc/<pid>/status` field in KiB (`VmRSS`, `VmHWM`, `RssAnon`).
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// The pids whose parent is `parent` (the local launcher's workers).
fn children(parent: u32) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, r)| r.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(parent) {
            pids.push(pid);
        }
    }
    pids
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// The reconcile pass duration histogram of `/metrics`: (upper bound in
/// seconds, cumulative count) per bucket.
fn reconcile_histogram(metrics: &str) -> Vec<(f64, u64)> {
    let prefix = "polybot_reconcile_pass_duration_seconds_bucket{le=\"";
    let mut buckets: Vec<(f64, u64)> = metrics
        .lines()
        .filter_map(|l| l.strip_prefix(prefix))
        .filter_map(|rest| {
            let (le, count) = rest.split_once("\"} ")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, count.trim().parse().ok()?))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    buckets
}

/// The p99 of a histogram (linear within the bucket, as Prometheus's
/// `histogram_quantile`), and its count; `since` is subtracted first.
fn histogram_p99(now: &[(f64, u64)], since: &[(f64, u64)]) -> (f64, u64) {
    let buckets: Vec<(f64, u64)> = now
        .iter()
        .map(|&(le, count)| {
            let before = since.iter().find(|b| b.0 == le).map_or(0, |b| b.1);
            (le, count - before.min(count))
        })
        .collect();
    let total = buckets.last().map_or(0, |b| b.1);
    let target = 0.99 * total as f64;
    let mut lower = (0.0, 0u64);
    for &(le, count) in &buckets {
        if total > 0 && count as f64 >= target {
            if le.is_infinite() {
                return (lower.0, total);
            }
            let within = (target - lower.1 as f64) / (count - lower.1).max(1) as f64;
            return (lower.0 + (le - lower.0) * within, total);
        }
        lower = (le, count);
    }
    (0.0, total)
}

/// `line` without its terminal colour codes (`ESC [ … m`).
fn strip_ansi(line: &str) -> String {
    let mut plain = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    plain
}

/// Latencies (µs) of the workers' database writes, from their logs: all,
/// and those logged at or after `since` (RFC 3339, as the logs write it).
fn write_latencies(dir: &Path, since: &str) -> (Vec<u64>, Vec<u64>) {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "log") {
                out.push(path);
            }
        }
    }
    let mut logs = Vec::new();
    walk(dir, &mut logs);
    let mut micros = Vec::new();
    let mut steady = Vec::new();
    for log in &logs {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        for line in text.lines().filter(|l| l.contains("database write")) {
            let plain = strip_ansi(line);
            let Some(value) = plain
                .split("micros=")
                .nth(1)
                .and_then(|v| v.split(|c: char| !c.is_ascii_digit()).next())
                .and_then(|v| v.parse::<u64>().ok())
            else {
                continue;
            };
            micros.push(value);
            if plain.as_str() >= since {
                steady.push(value);
            }
        }
    }
    micros.sort_unstable();
    steady.sort_unstable();
    if (micros.is_empty() || std::env::var("POLYBOT_BENCH_SHOW_LOG").is_ok())
        && let Some(log) = logs.first()
    {
        let text = strip_ansi(&std::fs::read_to_string(log).unwrap_or_default());
        println!(
            "{} worker logs; the start of {}:\n{}",
            logs.len(),
            log.display(),
            text.lines().take(30).collect::<Vec<_>>().join("\n")
        );
    }
    (micros, steady)
}

/// Transactions committed and rows written in `db` so far.
async fn database_writes(conn: &mut PgConnection, db: &str) -> (i64, i64) {
    sqlx::query_as(
        "SELECT xact_commit, tup_inserted + tup_updated + tup_deleted \
         FROM pg_stat_database WHERE datname = $1",
    )
    .bind(db)
    .fetch_one(conn)
    .await
    .unwrap()
}

#[tokio::main]
async fn main() {
    let tenants: usize = env_or("POLYBOT_BENCH_TENANTS", 200);
    let sample_secs: u64 = env_or("POLYBOT_BENCH_SECS", 10);
    let heartbeat_secs: u64 = env_or("POLYBOT_BENCH_HEARTBEAT_SECS", 5);
    let budget: Option<u32> = std::env::var("POLYBOT_BENCH_POOLER")
        .ok()
        .map(|s| s.parse().expect("POLYBOT_BENCH_POOLER is a number"));
    let shared_market_data = std::env::var("POLYBOT_BENCH_MARKET_DATA").is_ok_and(|v| v == "1");
    let max_workers: Option<u64> = std::env::var("POLYBOT_BENCH_MAX_WORKERS")
        .ok()
        .map(|s| s.parse().expect("POLYBOT_BENCH_MAX_WORKERS is a number"));
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    println!(
        "fleet benchmark: {tenants} tenants, {profile} build, heartbeat every {heartbeat_secs} s, {}, {}",
        match budget {
            Some(b) => format!("workers through PgBouncer (budget {b})"),
            None => "one login role per tenant".to_owned(),
        },
        if shared_market_data {
            "shared market data (polybot market-data)"
        } else {
            "every worker reads the venues itself"
        }
    );

    let dir = tempfile::tempdir().unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let (admin_url, server) = match std::env::var("DATABASE_URL") {
        Ok(url) => (url, None),
        Err(_) => {
            let mut options = EmbeddedOptions::new(dir.path().join("pg"));
            options.ephemeral = true;
            options.max_connections = 600;
            let server = EmbeddedPostgres::start(&options).await.unwrap();
            (
                server.url("postgres").expose_secret().to_owned(),
                Some(server),
            )
        }
    };
    let admin: PgConnectOptions = admin_url.parse().unwrap();
    let name = format!("polybot_bench_{}", uuid::Uuid::new_v4().simple());
    let mut conn = admin.connect().await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .unwrap();
    let (server_part, _) = admin_url.rsplit_once('/').unwrap();
    let url = format!("{server_part}/{name}");

    let pooler = match budget {
        Some(budget) => {
            let db = polybot_store::Db::connect(
                admin.clone().database(&name),
                polybot_store::Scope::Control,
                2,
            )
            .await
            .unwrap();
            db.migrate().await.unwrap();
            Some(
                polybot_store::testing::TestPooler::start(
                    &db,
                    &admin.clone().database(&name),
                    budget,
                )
                .await,
            )
        }
        None => None,
    };

    // Every venue on the stand-in: nothing reaches the internet.
    let (venue_addr, venues) = venue_stand_in().await;
    let venue_env: Vec<(String, String)> = polybot_core::worker::env::VENUE_URLS
        .iter()
        .map(|var| {
            let scheme = if var.ends_with("_WS_URL") {
                "ws"
            } else {
                "http"
            };
            ((*var).to_owned(), format!("{scheme}://{venue_addr}"))
        })
        .collect();
    let market_data = shared_market_data.then(|| MarketData::start(dir.path(), &venue_env));

    let mut cp = Command::new(env!("CARGO_BIN_EXE_polybot"));
    if let Some(pooler) = &pooler {
        cp.env(
            "POLYBOT_WORKER_DATABASE_URL",
            format!(
                "postgres://{}:{}@127.0.0.1:{}/{name}?sslmode=disable",
                pooler.login,
                pooler.password().expose_secret(),
                pooler.port()
            ),
        );
    } else {
        cp.env_remove("POLYBOT_WORKER_DATABASE_URL");
    }
    match &market_data {
        Some(md) => cp.env("POLYBOT_MARKET_DATA_URL", &md.url),
        None => cp.env_remove("POLYBOT_MARKET_DATA_URL"),
    };
    cp.args(["control-plane", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("cp"));
    if let Some(max) = max_workers {
        cp.args(["--max-workers", &max.to_string()]);
    }
    let mut cp = cp
        .env("DATABASE_URL", &url)
        .env("POLYBOT_OPERATOR_TOKEN", OPERATOR)
        .env("POLYBOT_METRICS_TOKEN", METRICS)
        .env("POLYBOT_HEARTBEAT_SECS", heartbeat_secs.to_string())
        // The control plane's, and (forwarded) the workers': their write
        // timings are read from their logs.
        .env(
            "POLYBOT_LOG",
            "warn,polybot=info,polybot_worker::writes=debug",
        )
        .envs(venue_env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let cp_pid = cp.id();
    let mut lines = BufReader::new(cp.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("the control plane starts").unwrap();
        if let Some(rest) = line.split("PolyBot is up: http://").nth(1) {
            break rest.split('/').next().unwrap().to_owned();
        }
    };
    // Keep the warnings, to explain a run that does not converge.
    let warnings = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let sink = warnings.clone();
    std::thread::spawn(move || {
        for line in lines.by_ref().map_while(Result::ok) {
            if line.contains("WARN") || line.contains("ERROR") || line.contains("max_workers") {
                sink.lock().unwrap().push(line);
            }
        }
    });

    let cpu_before = cpu_seconds(cp_pid);
    let started = Instant::now();
    let mut admitted = 0;
    for i in 0..tenants {
        let (status, body) = api(
            &addr,
            "POST",
            "/tenants",
            &format!(r#"{{"name":"bench-{i}","strategies":{STRATEGIES}}}"#),
        );
        if status == 409 {
            println!("tenant {} refused with 409: {body}", i + 1);
            break;
        }
        assert_eq!(status, 201, "{body}");
        admitted += 1;
    }
    let onboarded = started.elapsed();
    let mut running = 0;
    while started.elapsed() < Duration::from_secs(900) {
        running = running_workers(&addr);
        if running == admitted {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let all_running = started.elapsed();
    let cpu_converge = cpu_seconds(cp_pid) - cpu_before;
    println!(
        "{admitted} tenants onboarded through the API in {:.2} s; {running} running with a fresh heartbeat after {:.2} s",
        onboarded.as_secs_f64(),
        all_running.as_secs_f64()
    );
    println!(
        "control plane CPU until then: {cpu_converge:.2} s ({:.0} % of one core)",
        100.0 * cpu_converge / all_running.as_secs_f64()
    );

    // The running fleet, sampled for `sample_secs`.
    let worker_login = pooler.as_ref().map(|p| p.login.clone());
    let writes_before = database_writes(&mut conn, &name).await;
    let reconcile_before = reconcile_histogram(&request(&addr, "GET", "/metrics", METRICS, "").1);
    let cpu_steady_before = cpu_seconds(cp_pid);
    let window = Instant::now();
    let window_start = chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string();
    let mut most = 0i64;
    let show_queries = std::env::var("POLYBOT_BENCH_SHOW_QUERIES").is_ok();
    let mut queries = std::collections::BTreeMap::new();
    let mut still_running = running;
    while window.elapsed() < Duration::from_secs(sample_secs) {
        let servers: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 \
             AND (usename = $2 OR usename LIKE 'polybot\\_t\\_%')",
        )
        .bind(&name)
        .bind(worker_login.as_deref().unwrap_or(""))
        .fetch_one(&mut conn)
        .await
        .unwrap();
        most = most.max(servers);
        if show_queries {
            let rows: Vec<(String,)> = sqlx::query_as(
                "SELECT left(query, 120) FROM pg_stat_activity WHERE datname = $1 AND usename = $2",
            )
            .bind(&name)
            .bind(worker_login.as_deref().unwrap_or(""))
            .fetch_all(&mut conn)
            .await
            .unwrap();
            for (q,) in rows {
                *queries.entry(q).or_insert(0u32) += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let elapsed = window.elapsed().as_secs_f64();
    for (q, n) in &queries {
        println!("  {n:>5} × {q}");
    }
    let writes_after = database_writes(&mut conn, &name).await;
    let cpu_steady = cpu_seconds(cp_pid) - cpu_steady_before;
    still_running = still_running.min(running_workers(&addr));
    let all: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE datname = $1")
        .bind(&name)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    println!(
        "control plane while the fleet runs: {:.0} % of one core; RSS {} MiB (peak {} MiB)",
        100.0 * cpu_steady / elapsed,
        status_kib(cp_pid, "VmRSS").unwrap_or(0) / 1024,
        status_kib(cp_pid, "VmHWM").unwrap_or(0) / 1024
    );
    let reconcile_after = reconcile_histogram(&request(&addr, "GET", "/metrics", METRICS, "").1);
    let (p99_all, passes_all) = histogram_p99(&reconcile_after, &[]);
    let (p99_steady, passes_steady) = histogram_p99(&reconcile_after, &reconcile_before);
    // Past the histogram's last bound (10 s) only a lower bound is known.
    let shown = |p99: f64| {
        let top = reconcile_after
            .iter()
            .rev()
            .find(|b| b.0.is_finite())
            .map_or(f64::INFINITY, |b| b.0);
        if p99 >= top {
            format!("> {:.0} ms", top * 1000.0)
        } else {
            format!("{:.1} ms", p99 * 1000.0)
        }
    };
    let action = |name: &str| {
        let metrics = request(&addr, "GET", "/metrics", METRICS, "").1;
        let key = format!("polybot_reconcile_actions_total{{action=\"{name}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&key))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    println!(
        "worker starts: {:.0} for {admitted} tenants; exits {:.0}; reconcile errors {:.0}",
        action("started"),
        action("exits"),
        action("errors")
    );
    println!(
        "reconcile pass p99: {} over the whole run ({passes_all} passes); {} while the fleet runs ({passes_steady} passes)",
        shown(p99_all),
        shown(p99_steady)
    );

    let workers = children(cp_pid);
    let mut rss: Vec<u64> = workers
        .iter()
        .filter_map(|&p| status_kib(p, "VmRSS"))
        .collect();
    let mut anon: Vec<u64> = workers
        .iter()
        .filter_map(|&p| status_kib(p, "RssAnon"))
        .collect();
    rss.sort_unstable();
    anon.sort_unstable();
    println!(
        "worker RSS ({} processes, {profile}): median {} KiB, max {} KiB; private (RssAnon) median {} KiB, max {} KiB, all workers together {} MiB",
        rss.len(),
        percentile(&rss, 0.5),
        rss.last().copied().unwrap_or(0),
        percentile(&anon, 0.5),
        anon.last().copied().unwrap_or(0),
        anon.iter().sum::<u64>() / 1024
    );
    println!(
        "server connections of the {still_running} workers: at most {most} ({}); the database's in all: {all}",
        match budget {
            Some(budget) => format!("through PgBouncer, budget {budget}"),
            None => "one login role per tenant".to_owned(),
        }
    );
    println!(
        "database: {:.0} transactions/s, {:.0} rows written/s over {elapsed:.1} s",
        (writes_after.0 - writes_before.0) as f64 / elapsed,
        (writes_after.1 - writes_before.1) as f64 / elapsed
    );
    let (latencies, steady) = write_latencies(&dir.path().join("cp"), &window_start);
    for (what, latencies) in [("whole run", &latencies), ("while the fleet runs", &steady)] {
        println!(
            "worker writes (heartbeats and flushes), {what}: {}, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            latencies.len(),
            percentile(latencies, 0.5) as f64 / 1000.0,
            percentile(latencies, 0.99) as f64 / 1000.0,
            latencies.last().copied().unwrap_or(0) as f64 / 1000.0
        );
    }
    println!(
        "public venue connections ({}): {} opened, at most {} open at once",
        if shared_market_data {
            "the market-data service's"
        } else {
            "the workers' own"
        },
        venues.opened.load(Ordering::Relaxed),
        venues.most_open.load(Ordering::Relaxed)
    );

    if let Some(md) = &market_data
        && venues.opened.load(Ordering::Relaxed) == 0
    {
        let log = std::fs::read_to_string(md.log()).unwrap_or_default();
        println!("the market-data service opened no venue connection; its log:\n{log}");
    }
    if running < admitted {
        let warnings = warnings.lock().unwrap();
        println!("not all running; the control plane's first warnings:");
        for line in warnings.iter().take(10) {
            println!("  {line}");
        }
        let (_, page) = api(&addr, "GET", "/fleet?limit=500", "");
        for s in page["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|s| s["worker"]["state"] != "running")
            .take(5)
        {
            println!(
                "  {} {} {}",
                s["tenant_id"], s["worker"]["state"], s["last_error"]
            );
        }
    }
    let pid = nix::unistd::Pid::from_raw(i32::try_from(cp_pid).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let stopping = Instant::now();
    let status = cp.wait().unwrap();
    println!(
        "control plane and {admitted} workers stopped in {:.2} s ({status})",
        stopping.elapsed().as_secs_f64()
    );
    if let Some(md) = market_data {
        md.stop();
    }
    sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    drop(pooler);
    if let Some(server) = server {
        server.stop().await.unwrap();
    }
}
