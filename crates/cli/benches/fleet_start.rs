//! How long 200 new tenants take to reach `running` on the local launcher:
//! a real control plane process, real worker processes, one database.
//!
//! `cargo bench -p polybot-cli --bench fleet_start` uses DATABASE_URL (a
//! superuser URL) if set, else a private cluster in a temporary directory.
//! `POLYBOT_BENCH_TENANTS` changes the count. `POLYBOT_BENCH_POOLER=<budget>`
//! puts workers behind PgBouncer (the store's embedded one) with that many
//! server connections, with the shared worker login and a claim each, as
//! `polybot up` does; without it each tenant logs in as its own role. Either
//! way it prints the server connections the workers use once all run.

// Timings for a human to read: floats are fine here, unlike money.
#![allow(clippy::float_arithmetic)]

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use polybot_store::embedded::{EmbeddedOptions, EmbeddedPostgres};
use secrecy::ExposeSecret;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};

const OPERATOR: &str = "pbo_bench-operator-token-0123456789abcdef";

fn request(addr: &str, method: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {OPERATOR}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
    (
        status,
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    )
}

#[tokio::main]
async fn main() {
    let tenants: usize = std::env::var("POLYBOT_BENCH_TENANTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
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

    let budget: Option<u32> = std::env::var("POLYBOT_BENCH_POOLER")
        .ok()
        .and_then(|s| s.parse().ok());
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
    let mut cp = cp
        .args(["control-plane", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("cp"))
        .env("DATABASE_URL", &url)
        .env("POLYBOT_OPERATOR_TOKEN", OPERATOR)
        .env("POLYBOT_HEARTBEAT_SECS", "1")
        .env("POLYBOT_LOG", "warn,polybot=info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(cp.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("the control plane starts").unwrap();
        if let Some(rest) = line.split("PolyBot is up: http://").nth(1) {
            break rest.split('/').next().unwrap().to_owned();
        }
    };
    // Keep the warnings, to explain a run that does not converge.
    let warnings = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let sink = warnings.clone();
    std::thread::spawn(move || {
        for line in lines.by_ref().map_while(Result::ok) {
            if line.contains("WARN") || line.contains("ERROR") {
                sink.lock().unwrap().push(line);
            }
        }
    });

    let started = Instant::now();
    for i in 0..tenants {
        let (status, body) = request(
            &addr,
            "POST",
            "/tenants",
            &format!(r#"{{"name":"bench-{i}"}}"#),
        );
        assert_eq!(status, 201, "{body}");
    }
    let onboarded = started.elapsed();
    let mut running = 0;
    while started.elapsed() < Duration::from_secs(600) {
        let (_, page) = request(&addr, "GET", "/fleet?worker=running&limit=500", "");
        running = page["items"].as_array().map_or(0, Vec::len);
        if running == tenants {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let all_running = started.elapsed();
    println!(
        "{tenants} new tenants: onboarded through the API in {:.2} s; {running} running with a fresh heartbeat after {:.2} s",
        onboarded.as_secs_f64(),
        all_running.as_secs_f64()
    );
    // The workers' server connections, sampled for 10 s while they run.
    let worker_login = pooler.as_ref().map(|p| p.login.clone());
    let mut most = 0i64;
    for _ in 0..50 {
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
        std::thread::sleep(Duration::from_millis(200));
    }
    let all: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE datname = $1")
        .bind(&name)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    println!(
        "server connections of the {running} workers: at most {most} ({}); the database's in all: {all}",
        match budget {
            Some(budget) => format!("through PgBouncer, budget {budget}"),
            None => "one login role per tenant".to_owned(),
        }
    );

    if running < tenants {
        let warnings = warnings.lock().unwrap();
        println!("not all running; the control plane's first warnings:");
        for line in warnings.iter().take(10) {
            println!("  {line}");
        }
        let (_, page) = request(&addr, "GET", "/fleet?limit=500", "");
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
    let pid = nix::unistd::Pid::from_raw(i32::try_from(cp.id()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let stopping = Instant::now();
    let status = cp.wait().unwrap();
    println!(
        "control plane and {tenants} workers stopped in {:.2} s ({status})",
        stopping.elapsed().as_secs_f64()
    );
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
