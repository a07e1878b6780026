//! Load on the control plane's API over real HTTP on loopback.
//!
//! Onboards tenants with `POST /tenants`, then hammers `GET /tenants/{id}/status`
//! from many keep-alive connections, and prints requests/s with p50 and p99
//! latency for each. Goal: ≥ 5,000 status reads/s on the 2-core machine.
//!
//! `cargo bench -p polybot-control-plane --bench api_load` uses DATABASE_URL
//! (a superuser URL) if set, else a private cluster in a temporary directory.
//! `POLYBOT_BENCH_SECONDS` (default 10) sets the length of the status run.

// Rates and percentiles for a human to read: floats are fine here, unlike money.
#![allow(clippy::float_arithmetic)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use polybot_control_plane::{App, AppState, Config, WorkerDatabase};
use polybot_secrets::local::{LocalSecretStore, MasterKey};
use polybot_store::embedded::{EmbeddedOptions, EmbeddedPostgres};
use polybot_store::{Db, Scope};
use secrecy::SecretString;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

const OPERATOR: &str = "pbo_bench-operator-token-0123456789abcdef";
const TENANTS: usize = 200;
const CONNECTIONS: usize = 64;

/// A minimal HTTP/1.1 keep-alive client: one request at a time per connection.
struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        Self {
            stream,
            buf: Vec::with_capacity(4096),
        }
    }

    /// Sends a request and returns (status, body).
    async fn send(&mut self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        let body = body.unwrap_or("");
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {OPERATOR}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.stream.write_all(request.as_bytes()).await.unwrap();
        self.buf.clear();
        let header_end = loop {
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "the server closed the connection");
            self.buf.extend_from_slice(&chunk[..n]);
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
        };
        let head = String::from_utf8_lossy(&self.buf[..header_end]).into_owned();
        let status: u16 = head[9..12].parse().unwrap();
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        while self.buf.len() < header_end + length {
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "the server closed the connection");
            self.buf.extend_from_slice(&chunk[..n]);
        }
        let body = String::from_utf8_lossy(&self.buf[header_end..header_end + length]).into_owned();
        (status, body)
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn report(what: &str, mut latencies: Vec<Duration>, elapsed: Duration) {
    latencies.sort();
    println!(
        "  {what:<32} {:>6} requests in {:>5.2} s: {:>7.0} req/s, p50 {:>6.2} ms, p99 {:>6.2} ms",
        latencies.len(),
        elapsed.as_secs_f64(),
        latencies.len() as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
    );
}

#[tokio::main]
async fn main() {
    let seconds: u64 = std::env::var("POLYBOT_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
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
    let db = Db::connect(options.clone(), Scope::Control, 16)
        .await
        .unwrap();
    db.migrate().await.unwrap();

    let store = Arc::new(LocalSecretStore::new(MasterKey::from_bytes([9u8; 32])));
    let state = AppState::new(db.clone(), store, WorkerDatabase::from_options(&options));
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        operator_token: Some(SecretString::from(OPERATOR.to_owned())),
        operator_token_file: None,
    };
    let app = App::build(&config, state).await.unwrap();
    let addr = app.local_addr().unwrap();
    let stop = CancellationToken::new();
    let server_task = tokio::spawn(app.run_until_stopped(stop.clone()));

    println!("control-plane API load on {addr} ({CONNECTIONS} keep-alive connections)");

    // Onboarding: POST /tenants from 16 connections.
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..16 {
        tasks.push(tokio::spawn(async move {
            let mut client = Client::connect(addr).await;
            let mut out = Vec::new();
            for i in (worker..TENANTS).step_by(16) {
                let body = format!(
                    r#"{{"name":"bench-{i}","exchange_keys":{{"binance_us":{{"api_key":"KEY{i}","secret_key":"SECRET{i}"}}}},"strategies":{{"complement_arb":{{"min_edge":"0.01"}}}}}}"#
                );
                let t = Instant::now();
                let (status, body) = client.send("POST", "/tenants", Some(&body)).await;
                assert_eq!(status, 201, "{body}");
                out.push((t.elapsed(), body));
            }
            out
        }));
    }
    let mut latencies = Vec::new();
    let mut ids = Vec::new();
    for task in tasks {
        for (latency, body) in task.await.unwrap() {
            latencies.push(latency);
            let value: serde_json::Value = serde_json::from_str(&body).unwrap();
            ids.push(value["id"].as_str().unwrap().to_owned());
        }
    }
    report("POST /tenants", latencies, started.elapsed());
    // Let background onboarding finish so it does not compete with the reads.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let ids = Arc::new(ids);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..CONNECTIONS {
        let ids = ids.clone();
        tasks.push(tokio::spawn(async move {
            let mut client = Client::connect(addr).await;
            let mut out = Vec::new();
            let mut i = worker;
            while Instant::now() < deadline {
                let path = format!("/tenants/{}/status", ids[i % ids.len()]);
                let t = Instant::now();
                let (status, body) = client.send("GET", &path, None).await;
                assert_eq!(status, 200, "{body}");
                out.push(t.elapsed());
                i += CONNECTIONS;
            }
            out
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    report("GET /tenants/{id}/status", latencies, started.elapsed());
    println!("  goal: >= 5,000 status reads/s");

    stop.cancel();
    server_task.await.unwrap().unwrap();
    db.close().await;
    sqlx::query(&format!("DROP DATABASE {name}"))
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    if let Some(server) = server {
        server.stop().await.unwrap();
    }
}
