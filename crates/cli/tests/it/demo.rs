//! `polybot up --demo` from nothing, offline: a demo tenant is onboarded, its
//! worker plays the bundled recording, and the API shows every strategy's
//! opportunities within seconds; a restart reuses the same demo tenant.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use serde_json::Value;

pub(crate) struct Up {
    child: Child,
    pub addr: String,
    pub token: String,
}

fn start(data_dir: &Path) -> Up {
    start_at(data_dir, None)
}

/// `polybot up --demo` on `data_dir`, its recording played at `speed`
/// (`POLYBOT_REPLAY_SPEED`; the demo's own 1 when none).
pub(crate) fn start_at(data_dir: &Path, speed: Option<&str>) -> Up {
    let mut command = Command::new(env!("CARGO_BIN_EXE_polybot"));
    command.env_remove("POLYBOT_REPLAY_SPEED");
    if let Some(speed) = speed {
        command.env("POLYBOT_REPLAY_SPEED", speed);
    }
    let mut child = command
        .args(["up", "--demo", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .env_remove("DATABASE_URL")
        .env_remove("POLYBOT_PAPER_BALANCES")
        .env("POLYBOT_HEARTBEAT_SECS", "0.5")
        .env("POLYBOT_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("polybot starts");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut log = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
            log.push(line.clone());
            if let Some(rest) = line.split("PolyBot is up: http://").nth(1) {
                let addr = rest.split('/').next().unwrap().to_owned();
                let token = std::fs::read_to_string(data_dir.join("operator-token"))
                    .unwrap()
                    .trim()
                    .to_owned();
                // Keep draining the log so that the child never blocks on stderr.
                std::thread::spawn(move || while rx.recv().is_ok() {});
                return Up { child, addr, token };
            }
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    panic!("polybot up --demo never came up:\n{}", log.join("\n"));
}

impl Up {
    pub(crate) fn get(&self, path: &str) -> (u16, Value) {
        let mut stream = std::net::TcpStream::connect(&self.addr).unwrap();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
            self.token
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let status: u16 = response[9..12].parse().unwrap();
        let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
        (status, serde_json::from_str(body).unwrap_or(Value::Null))
    }

    pub(crate) fn demo_tenants(&self) -> Vec<String> {
        let (status, page) = self.get("/tenants?limit=200");
        assert_eq!(status, 200, "{page}");
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["name"] == "demo")
            .map(|t| t["id"].as_str().unwrap().to_owned())
            .collect()
    }

    pub(crate) fn stop(mut self) {
        signal::kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM).unwrap();
        for _ in 0..600 {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "polybot up exited with {status}");
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        panic!("polybot up did not stop within 30 s");
    }
}

#[test]
fn up_demo_shows_every_strategys_opportunities_within_seconds_and_restarts_idempotently() {
    let dir = tempfile::tempdir().unwrap();
    // Reachable by every uid, like a data dir under /var/lib: then only the
    // data dir's own modes keep the workers out of it.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let data_dir = dir.path().join("data");
    let up = start(&data_dir);
    let started = Instant::now();

    let mut tenant = None;
    while tenant.is_none() && started.elapsed() < Duration::from_secs(30) {
        tenant = up.demo_tenants().into_iter().next();
        std::thread::sleep(Duration::from_millis(100));
    }
    let tenant = tenant.expect("the demo tenant is onboarded");
    assert!(data_dir.join("demo.jsonl").exists());

    // All four strategies act within the recording's first 6 seconds; allow
    // for onboarding and the worker's start on a busy machine.
    let mut strategies = BTreeSet::new();
    let mut executed = 0;
    while strategies.len() < 4 && started.elapsed() < Duration::from_secs(45) {
        let (status, page) = up.get(&format!("/tenants/{tenant}/opportunities?limit=200"));
        assert_eq!(status, 200, "{page}");
        let items = page["items"].as_array().unwrap();
        strategies = items
            .iter()
            .map(|o| o["strategy"].as_str().unwrap().to_owned())
            .collect();
        executed = items
            .iter()
            .filter(|o| o["executed_at"].is_string())
            .count();
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(
        strategies.into_iter().collect::<Vec<_>>(),
        [
            "complement_arb",
            "cross_venue_arb",
            "crypto_15m",
            "news_arb"
        ],
        "after {:?}",
        started.elapsed()
    );
    assert!(executed >= 4, "{executed} executed");
    let (status, trades) = up.get(&format!("/tenants/{tenant}/trades"));
    assert_eq!(status, 200);
    assert!(trades["items"].as_array().unwrap().len() >= 7, "{trades}");
    assert_eq!(trades["items"][0]["mode"], "paper");
    let (status, pnl) = up.get(&format!("/tenants/{tenant}/pnl"));
    assert_eq!(status, 200, "{pnl}");
    assert!(pnl["fees"].as_str().is_some_and(|f| f != "0"), "{pnl}");
    let (_, status_view) = up.get(&format!("/tenants/{tenant}/status"));
    assert_eq!(
        status_view["strategies"].as_object().map(|s| s.len()),
        Some(4),
        "{status_view}"
    );
    worker_reaches_nothing_of_the_data_dir(&data_dir, &tenant);
    the_worker_went_through_pgbouncer(&data_dir, &tenant);
    up.stop();
    let pgbouncer = std::fs::read_to_string(data_dir.join("postgres/pgbouncer/pgbouncer.pid"))
        .ok()
        .and_then(|pid| pid.trim().parse::<i32>().ok());
    if let Some(pid) = pgbouncer {
        assert!(
            signal::kill(Pid::from_raw(pid), None).is_err(),
            "PgBouncer (pid {pid}) outlived polybot up"
        );
    }

    // Restarted on the same data dir: still one demo tenant.
    let again = start(&data_dir);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut tenants = again.demo_tenants();
    while Instant::now() < deadline {
        tenants = again.demo_tenants();
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(tenants, [tenant]);
    again.stop();
}

/// Issue 22, on a real `polybot up`: the worker's secret names the shared
/// worker login at the private PgBouncer with the tenant's claim, no login
/// role of the tenant's own exists, and the worker login's server
/// connections stay within the pooler's budget (50 by default).
fn the_worker_went_through_pgbouncer(data_dir: &Path, tenant: &str) {
    let cluster = data_dir.join("postgres");
    let password = std::fs::read_to_string(cluster.join("superuser-password")).unwrap();
    let port: u16 = std::fs::read_to_string(cluster.join("port"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let pooler_port: u16 = std::fs::read_to_string(cluster.join("pgbouncer/port"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_ne!(pooler_port, port);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        use sqlx::ConnectOptions;
        let mut admin = sqlx::postgres::PgConnectOptions::new()
            .host("127.0.0.1")
            .port(port)
            .username("postgres")
            .password(password.trim())
            .database("polybot")
            .connect()
            .await
            .unwrap();
        let tenant = uuid::Uuid::parse_str(tenant).unwrap();
        let (own_role, has_key): (bool, bool) = sqlx::query_as(
            "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'polybot_t_' || replace($1::text, '-', '')), \
                    EXISTS (SELECT 1 FROM polybot.worker_claim_keys WHERE tenant_id = $1)",
        )
        .bind(tenant)
        .fetch_one(&mut admin)
        .await
        .unwrap();
        assert_eq!((own_role, has_key), (false, true));
        let (servers, through_pooler): (i64, i64) = sqlx::query_as(
            "SELECT count(*), count(*) FILTER (WHERE client_addr IS NOT NULL) \
             FROM pg_stat_activity WHERE usename = 'polybot_workers'",
        )
        .fetch_one(&mut admin)
        .await
        .unwrap();
        assert!(servers <= 50, "{servers} server connections of the worker login");
        assert_eq!(servers, through_pooler);
    });
}

/// Issue 16 #3, on a real `polybot up`: as root the demo tenant's worker
/// runs as a uid of its own, and that uid can read no file of the data dir
/// but the recording (which it does not even need: it was handed over).
fn worker_reaches_nothing_of_the_data_dir(data_dir: &Path, tenant: &str) {
    let pid_file = std::fs::read_to_string(data_dir.join(format!("workers/{tenant}.pid"))).unwrap();
    let pid = pid_file.split_whitespace().next().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid: u32 = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap();
    if !nix::unistd::Uid::effective().is_root() {
        assert_eq!(uid, nix::unistd::Uid::effective().as_raw());
        return;
    }
    assert!(uid >= polybot_launcher::local::FIRST_WORKER_UID, "{status}");
    let found = Command::new("setpriv")
        .args([
            format!("--reuid={uid}"),
            format!("--regid={uid}"),
            "--clear-groups".to_owned(),
            "--".to_owned(),
            "find".to_owned(),
        ])
        .arg(data_dir)
        .args(["-readable", "-type", "f"])
        .output()
        .unwrap();
    let readable: Vec<String> = String::from_utf8_lossy(&found.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        readable,
        [data_dir.join("demo.jsonl").display().to_string()],
        "files of the data dir the worker's uid can read"
    );
}
