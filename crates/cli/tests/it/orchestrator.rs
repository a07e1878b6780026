//! End to end with real processes and a real database: the control plane
//! keeps exactly one worker per active tenant, and the lease fences twins.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use serde_json::{Value, json};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

const OPERATOR: &str = "pbo_e2e-operator-token-0123456789abcdef";

/// A control plane process and its output.
struct ControlPlane {
    child: Child,
    addr: String,
    lines: mpsc::Receiver<String>,
    log: Vec<String>,
}

impl ControlPlane {
    fn start(database_url: &str, data_dir: &std::path::Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_polybot"))
            .args(["control-plane", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .env("DATABASE_URL", database_url)
            .env("POLYBOT_OPERATOR_TOKEN", OPERATOR)
            // Replicas share the master key of the local secret store.
            .env("POLYBOT_MASTER_KEY", "5e".repeat(32))
            .env("POLYBOT_HEARTBEAT_SECS", "0.3")
            // Workers without market data: this test is about their lifecycle,
            // and tests never reach the venues.
            .env("POLYBOT_LIVE_DATA", "0")
            .env("POLYBOT_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut cp = Self {
            child,
            addr: String::new(),
            lines,
            log: Vec::new(),
        };
        let line = cp.wait_for_line("PolyBot is up: http://", Duration::from_secs(60));
        cp.addr = line
            .split("http://")
            .nth(1)
            .unwrap()
            .split('/')
            .next()
            .unwrap()
            .to_owned();
        cp
    }

    fn drain(&mut self) {
        while let Ok(line) = self.lines.try_recv() {
            self.log.push(line);
        }
    }

    fn has_logged(&mut self, needle: &str) -> bool {
        self.drain();
        self.log.iter().any(|l| l.contains(needle))
    }

    fn wait_for_line(&mut self, needle: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        if let Some(line) = self.log.iter().find(|l| l.contains(needle)) {
            return line.clone();
        }
        while Instant::now() < deadline {
            if let Ok(line) = self.lines.recv_timeout(Duration::from_millis(100)) {
                self.log.push(line.clone());
                if line.contains(needle) {
                    return line;
                }
            }
        }
        panic!("`{needle}` never appeared:\n{}", self.log.join("\n"));
    }

    fn request(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut stream = std::net::TcpStream::connect(&self.addr).unwrap();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {OPERATOR}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let status: u16 = response[9..12].parse().unwrap();
        let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
        (status, serde_json::from_str(body).unwrap_or(Value::Null))
    }

    fn status(&self, tenant: &str) -> Value {
        self.request("GET", &format!("/tenants/{tenant}/status"), None)
            .1
    }

    fn onboard(&self, name: &str) -> String {
        let (status, body) = self.request(
            "POST",
            "/tenants",
            Some(json!({"name": name, "strategies": {"complement_arb": {}}})),
        );
        assert_eq!(status, 201, "{body}");
        body["id"].as_str().unwrap().to_owned()
    }

    fn stop(mut self) {
        signal::kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM).unwrap();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "the control plane exited with {status}");
    }
}

impl Drop for ControlPlane {
    /// A failing test still stops its control plane (which stops its workers).
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            if let Err(err) = signal::kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM) {
                eprintln!("could not stop the control plane: {err}");
            }
            let deadline = Instant::now() + Duration::from_secs(40);
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// Waits until `check` holds, or fails with `what`.
fn eventually(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting until {what}");
}

fn running(status: &Value) -> Option<i32> {
    (status["worker"]["state"] == "running"
        && status["last_heartbeat"]["age_seconds"]
            .as_i64()
            .is_some_and(|a| a <= 2))
    .then(|| {
        status["worker"]["instance_id"]
            .as_str()
            .and_then(|p| p.parse().ok())
    })
    .flatten()
}

fn alive(pid: i32) -> bool {
    signal::kill(Pid::from_raw(pid), None).is_ok()
        && std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
}

/// The superuser URL of the test's own database.
fn url_for(options: &PgConnectOptions) -> String {
    let base = std::env::var("DATABASE_URL").expect("DATABASE_URL (scripts/test sets it)");
    let (server, _) = base.rsplit_once('/').unwrap();
    format!("{server}/{}", options.get_database().unwrap())
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn every_active_tenant_has_exactly_one_worker_through_pause_crash_and_twins(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let pool = pool_opts.connect_with(options.clone()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = url_for(&options);
    let cp = tokio::task::spawn_blocking({
        let url = url.clone();
        let path = dir.path().to_owned();
        move || ControlPlane::start(&url, &path)
    })
    .await
    .unwrap();
    let (cp, tenants) = tokio::task::spawn_blocking(move || {
        let tenants: Vec<String> = ["a", "b", "c"].iter().map(|n| cp.onboard(n)).collect();
        let mut pids = Vec::new();
        for t in &tenants {
            eventually(
                &format!("{t} runs with a fresh heartbeat"),
                Duration::from_secs(30),
                || running(&cp.status(t)).is_some(),
            );
            pids.push(running(&cp.status(t)).unwrap());
        }
        assert!(pids.iter().all(|p| alive(*p)));

        // Pause one: its process goes away.
        let (code, _) = cp.request("POST", &format!("/tenants/{}/pause", tenants[0]), None);
        assert_eq!(code, 200);
        eventually(
            "the paused tenant's worker is gone",
            Duration::from_secs(30),
            || !alive(pids[0]) && cp.status(&tenants[0])["worker"]["state"] == "stopped",
        );

        // kill -9 another: it is replaced, and the crash is recorded.
        signal::kill(Pid::from_raw(pids[1]), Signal::SIGKILL).unwrap();
        eventually(
            "the killed worker is replaced",
            Duration::from_secs(30),
            || running(&cp.status(&tenants[1])).is_some_and(|p| p != pids[1]),
        );
        let status = cp.status(&tenants[1]);
        assert!(
            status["worker"]["last_exit"]
                .as_str()
                .unwrap()
                .contains("killed by SIGKILL"),
            "{status}"
        );
        assert_eq!(status["worker"]["restarts"], 1);

        // A changed configuration replaces the worker: stop, then start.
        let replaced = running(&status).unwrap();
        let (code, body) = cp.request(
            "PATCH",
            &format!("/tenants/{}", tenants[1]),
            Some(json!({"risk": {"max_daily_loss": "75"}})),
        );
        assert_eq!(code, 200, "{body}");
        eventually(
            "the reconfigured tenant runs a new worker",
            Duration::from_secs(30),
            || running(&cp.status(&tenants[1])).is_some_and(|p| p != replaced),
        );
        assert!(
            !alive(replaced),
            "the worker with the old configuration is gone"
        );
        (cp, tenants)
    })
    .await
    .unwrap();

    // A worker started by hand for the third tenant, with its database login.
    // The running worker's environment no longer holds it (its secrets came
    // over stdin, and it is non-dumpable), so the twin gets it where an
    // operator would: from the secret store, with the control plane's key.
    let tenant: polybot_core::TenantId = tenants[2].parse().unwrap();
    let db = polybot_store::Db::connect(options.clone(), polybot_store::Scope::Control, 2)
        .await
        .unwrap();
    let store = polybot_secrets::local::LocalSecretStore::new(
        polybot_secrets::local::MasterKey::parse(&secrecy::SecretString::from("5e".repeat(32)))
            .unwrap(),
    );
    let mut tx = db.tenant(tenant).await.unwrap();
    let secret = polybot_secrets::SecretStore::get(&store, &mut tx)
        .await
        .unwrap()
        .unwrap();
    tx.commit().await.unwrap();
    db.close().await;
    let database_url = secret.database_url.unwrap();
    let env = [
        ("TENANT_ID", tenants[2].clone()),
        (
            "DATABASE_URL",
            secrecy::ExposeSecret::expose_secret(&database_url).to_owned(),
        ),
        ("POLYBOT_HEARTBEAT_SECS", "0.3".to_owned()),
        ("POLYBOT_LIVE_DATA", "0".to_owned()),
    ];
    let mut twin = Command::new(env!("CARGO_BIN_EXE_polybot"))
        .arg("worker")
        .env_clear()
        .envs(env)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let twin_status = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = twin.try_wait().unwrap() {
                let mut err = String::new();
                twin.stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut err)
                    .unwrap();
                return (status, err);
            }
            assert!(
                Instant::now() < deadline,
                "the hand-started twin never exited"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    })
    .await
    .unwrap();
    assert_eq!(twin_status.0.code(), Some(3), "{}", twin_status.1);
    assert!(twin_status.1.contains("fenced"), "{}", twin_status.1);

    // No double writes: heartbeats' epochs never go back in time.
    let epochs: Vec<i64> = sqlx::query_scalar(
        "SELECT epoch FROM worker_heartbeats WHERE tenant_id = $1::uuid ORDER BY at, id",
    )
    .bind(&tenants[2])
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(
        epochs.windows(2).all(|w| w[0] <= w[1]),
        "interleaved epochs: {epochs:?}"
    );
    assert!(epochs.last().unwrap() > &1);
    // The managed worker the twin displaced was recorded as fenced, not as a crash.
    let fenced: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM tenant_runtime_events WHERE tenant_id = $1::uuid AND kind = 'fenced'",
    )
    .bind(&tenants[2])
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(fenced >= 1, "no fenced event for the displaced worker");

    tokio::task::spawn_blocking(move || {
        eventually(
            "the third tenant runs one worker again",
            Duration::from_secs(30),
            || running(&cp.status(&tenants[2])).is_some(),
        );
        // The fleet view shows desired against actual for every tenant.
        let (code, fleet) = cp.request("GET", "/fleet", None);
        assert_eq!(code, 200);
        let mut seen: Vec<(String, String, String)> = fleet["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["tenant_id"].as_str().unwrap().to_owned(),
                    s["desired"].as_str().unwrap().to_owned(),
                    s["worker"]["state"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        seen.sort();
        let mut expected = vec![
            (
                tenants[0].clone(),
                "stopped".to_owned(),
                "stopped".to_owned(),
            ),
            (
                tenants[1].clone(),
                "running".to_owned(),
                "running".to_owned(),
            ),
            (
                tenants[2].clone(),
                "running".to_owned(),
                "running".to_owned(),
            ),
        ];
        expected.sort();
        assert_eq!(seen, expected);
        let (_, page) = cp.request("GET", "/fleet?worker=running&limit=1", None);
        assert_eq!(page["items"].as_array().unwrap().len(), 1);
        assert!(page["next_cursor"].is_string());
        cp.stop();
    })
    .await
    .unwrap();
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_standby_control_plane_takes_over_when_the_leader_dies(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let pool = pool_opts.connect_with(options.clone()).await.unwrap();
    let url = url_for(&options);
    let dir_a = tempfile::tempdir().unwrap();
    let dir_b = tempfile::tempdir().unwrap();
    let (pa, pb) = (dir_a.path().to_owned(), dir_b.path().to_owned());
    tokio::task::spawn_blocking(move || {
        let mut a = ControlPlane::start(&url, &pa);
        a.wait_for_line("reconciler leader", Duration::from_secs(20));
        let mut b = ControlPlane::start(&url, &pb);
        let tenant = b.onboard("acme");
        eventually("the tenant runs", Duration::from_secs(30), || {
            running(&a.status(&tenant)).is_some()
        });
        assert!(!b.has_logged("reconciler leader"), "two leaders at once");

        // The leader dies without a word; the standby takes over within seconds.
        let old_worker = running(&a.status(&tenant)).unwrap();
        a.child.kill().unwrap();
        a.child.wait().unwrap();
        b.wait_for_line("reconciler leader", Duration::from_secs(15));
        eventually(
            "the standby runs the tenant's worker",
            Duration::from_secs(30),
            || running(&b.status(&tenant)).is_some_and(|p| p != old_worker),
        );
        // The dead leader's orphaned worker is fenced by the new one and leaves.
        eventually("the orphaned worker exits", Duration::from_secs(30), || {
            !alive(old_worker)
        });
        b.stop();
    })
    .await
    .unwrap();
    let workers_alive: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE usename LIKE 'polybot_t_%' AND datname = current_database()")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(workers_alive, 0, "every worker closed its database session");
}
