//! What one local worker can read of another and of the control plane
//! (issue 16 #3). `polybot worker` started by the local launcher holds no
//! secret in its environment (they come over standard input), is
//! non-dumpable, sandboxes itself with Landlock, and — when the control plane
//! is root, as here in the test command — runs as a uid of its own per
//! tenant.
//!
//! The attacker is "another worker": a process with a worker's identity.
//! As root that is another tenant's worker uid (and gid, no groups), which is
//! exactly what a taken-over worker is; as an ordinary user it is a process of
//! the same uid, which only the non-dumpable mark keeps out.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use polybot_core::{Mode, TenantId};
use polybot_launcher::local::{LocalLauncher, WorkerIdentity};
use polybot_launcher::{Instance, LaunchSpec, Launcher};
use secrecy::SecretString;

const PASSWORD: &str = "tenant-pw-hunter2";

fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

/// `program args…` run as `uid` (and the same gid, no supplementary
/// groups), as root; as an ordinary user, as this uid.
fn as_worker(uid: Option<u32>, program: &str, args: &[&str]) -> Command {
    match uid {
        Some(uid) => {
            let mut cmd = Command::new("setpriv");
            cmd.args([
                format!("--reuid={uid}"),
                format!("--regid={uid}"),
                "--clear-groups".to_owned(),
                "--".to_owned(),
            ])
            .arg(program)
            .args(args);
            cmd
        }
        None => {
            let mut cmd = Command::new(program);
            cmd.args(args);
            cmd
        }
    }
}

fn refused(output: &Output, what: &str) {
    assert!(
        !output.status.success(),
        "{what}: got {}",
        String::from_utf8_lossy(&output.stdout)
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("Permission denied") || stderr.contains("Operation not permitted"),
        "{what}: {stderr}"
    );
}

/// A database that accepts and never answers: a worker connecting proves it
/// read its database URL from standard input and is running.
struct FakeDatabase(TcpListener);

impl FakeDatabase {
    fn new() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        Self(listener)
    }

    fn spec(&self, tenant: TenantId) -> LaunchSpec {
        let port = self.0.local_addr().unwrap().port();
        LaunchSpec {
            tenant,
            spec_hash: "h1".into(),
            mode: Mode::Paper,
            secret_env: BTreeMap::from([(
                "DATABASE_URL".to_owned(),
                SecretString::from(format!(
                    "postgres://polybot_t_x:{PASSWORD}@127.0.0.1:{port}/polybot?sslmode=disable"
                )),
            )]),
            secret_reference: None,
            env: BTreeMap::from([("POLYBOT_LIVE_DATA".to_owned(), "0".to_owned())]),
            ibkr: false,
        }
    }

    /// Waits for a worker to connect; the connection is kept open.
    async fn accept(&self, launcher: &LocalLauncher, tenant: TenantId) -> std::net::TcpStream {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match self.0.accept() {
                Ok((stream, _)) => return stream,
                Err(err) if err.kind() == ErrorKind::WouldBlock => {
                    let log =
                        std::fs::read_to_string(launcher.log_path(tenant)).unwrap_or_default();
                    assert!(
                        Instant::now() < deadline,
                        "the worker never connected: {log}"
                    );
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(err) => panic!("accepting the worker's connection: {err}"),
            }
        }
    }
}

/// The uid an attacker from `tenant`'s worker runs as (`None`: this uid).
fn attacker_uid(launcher: &LocalLauncher, tenant: TenantId) -> Option<u32> {
    match launcher.identity() {
        WorkerIdentity::PerTenant => Some(launcher.worker_uid(tenant).unwrap()),
        WorkerIdentity::Shared => None,
    }
}

fn real_uid(instance: &Instance) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", instance.id)).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn another_worker_cannot_read_a_local_workers_environment() {
    let database = FakeDatabase::new();
    let dir = tempfile::tempdir().unwrap();
    let launcher = LocalLauncher::new(
        env!("CARGO_BIN_EXE_polybot").into(),
        dir.path().join("workers"),
    )
    .unwrap();
    let (victim, intruder) = (TenantId::new(), TenantId::new());
    let instance = launcher.start(&database.spec(victim)).await.unwrap();
    let connection = database.accept(&launcher, victim).await;
    let reader = attacker_uid(&launcher, intruder);

    // The same reader gets a dumpable neighbour's environment of its own
    // identity…
    let mut neighbour = as_worker(reader, "sleep", &["30"]).spawn().unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let neighbour_pid = neighbour.id().to_string();
    let control = as_worker(reader, "cat", &[&format!("/proc/{neighbour_pid}/environ")])
        .output()
        .unwrap();
    neighbour.kill().unwrap();
    neighbour.wait().unwrap();
    assert!(
        control.status.success(),
        "the reader cannot read even a dumpable process: {}",
        String::from_utf8_lossy(&control.stderr)
    );
    // …and not the worker's.
    let attack = as_worker(reader, "cat", &[&format!("/proc/{}/environ", instance.id)])
        .output()
        .unwrap();
    refused(&attack, "reading the worker's environment");
    // Root still reads it: then it must hold nothing secret.
    if is_root() {
        let environ = std::fs::read(format!("/proc/{}/environ", instance.id)).unwrap();
        let environ = String::from_utf8_lossy(&environ);
        assert!(!environ.contains(PASSWORD), "{environ}");
        assert!(!environ.contains("DATABASE_URL"), "{environ}");
        assert!(environ.contains("POLYBOT_SECRETS_STDIN=1"), "{environ}");
    }

    let killed = Command::new("kill")
        .args(["-9", &instance.id])
        .status()
        .unwrap();
    assert!(killed.success());
    drop(connection);
    launcher.shutdown().await;
}

#[tokio::test]
async fn as_root_a_worker_cannot_reach_the_master_key_the_database_password_or_another_worker() {
    // A data dir like `polybot up`'s, world-traversable, so that only the
    // files' own modes and the workers' uids keep a worker out.
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let data_dir = dir.path();
    let master_key = data_dir.join("master.key");
    polybot_secrets::local::MasterKey::from_env_or_file(&master_key).unwrap();
    let pg_password = data_dir.join("postgres/superuser-password");
    std::fs::create_dir_all(pg_password.parent().unwrap()).unwrap();
    std::fs::set_permissions(
        pg_password.parent().unwrap(),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    // As `polybot up` writes it (the real data dir's modes are checked in
    // demo.rs).
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut file = std::fs::OpenOptions::new()
            .create_new(true)
            .write(true)
            .mode(0o600)
            .open(&pg_password)
            .unwrap();
        file.write_all(b"superuser-pw").unwrap();
    }

    let database = FakeDatabase::new();
    let launcher = LocalLauncher::new(
        env!("CARGO_BIN_EXE_polybot").into(),
        data_dir.join("workers"),
    )
    .unwrap();
    let (a, b) = (TenantId::new(), TenantId::new());
    let worker_a = launcher.start(&database.spec(a)).await.unwrap();
    let _conn_a = database.accept(&launcher, a).await;
    let worker_b = launcher.start(&database.spec(b)).await.unwrap();
    let _conn_b = database.accept(&launcher, b).await;

    if !is_root() {
        // Not root: no uid to give away. The workers share this uid, and
        // what keeps them apart is their non-dumpable mark and Landlock
        // (the test above and crates/worker/tests/it/sandbox.rs).
        assert_eq!(launcher.identity(), WorkerIdentity::Shared);
        assert_eq!(real_uid(&worker_a), nix::unistd::Uid::effective().as_raw());
        assert_eq!(real_uid(&worker_b), real_uid(&worker_a));
        launcher.shutdown().await;
        return;
    }

    let uid_a = launcher.worker_uid(a).unwrap();
    assert_eq!(real_uid(&worker_a), uid_a);
    assert_eq!(real_uid(&worker_b), launcher.worker_uid(b).unwrap());
    assert_ne!(uid_a, real_uid(&worker_b));
    let log = std::fs::read_to_string(launcher.log_path(a)).unwrap();
    assert!(log.contains("landlock: fully enforced"), "{log}");
    assert!(log.contains(&uid_a.to_string()), "{log}");

    let attacker = Some(uid_a);
    let read = |path: &Path| {
        as_worker(attacker, "cat", &[path.to_str().unwrap()])
            .output()
            .unwrap()
    };
    refused(&read(&master_key), "reading the master key");
    refused(
        &read(&pg_password),
        "reading the database superuser's password",
    );
    refused(&read(&launcher.log_path(b)), "reading another worker's log");
    refused(
        &read(Path::new(&format!("/proc/{}/environ", worker_b.id))),
        "reading another worker's environment",
    );
    refused(
        &as_worker(attacker, "kill", &["-0", &worker_b.id])
            .output()
            .unwrap(),
        "signalling another worker",
    );
    refused(
        &as_worker(attacker, "kill", &["-0", &std::process::id().to_string()])
            .output()
            .unwrap(),
        "signalling the control plane",
    );
    launcher.shutdown().await;
}
