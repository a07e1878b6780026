//! What one local worker can read of another (issue 16 #3): `polybot worker`
//! started by the local launcher holds no secret in its environment (they
//! come over standard input) and is non-dumpable, so another process of the
//! same uid, without privileges, can read neither its `/proc/<pid>/environ`
//! nor its memory.
//!
//! As root, "another worker" is played by processes running as root with
//! every capability dropped (`setpriv`): what an ordinary user's processes
//! are to each other. The worker runs the same way, so that the only thing
//! that can keep the reader out is the worker's non-dumpable mark.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use polybot_core::{Mode, TenantId};
use polybot_launcher::local::LocalLauncher;
use polybot_launcher::{LaunchSpec, Launcher};
use secrecy::SecretString;

const PASSWORD: &str = "tenant-pw-hunter2";

/// Drops every capability of what runs, when the test runs as root.
const UNPRIVILEGED: &[&str] = &["setpriv", "--bounding-set=-all", "--inh-caps=-all"];

fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

/// `program args…` as an unprivileged process of this uid.
fn unprivileged(program: &str, args: &[&str]) -> Command {
    if is_root() {
        let mut cmd = Command::new(UNPRIVILEGED[0]);
        cmd.args(&UNPRIVILEGED[1..]).arg(program).args(args);
        cmd
    } else {
        let mut cmd = Command::new(program);
        cmd.args(args);
        cmd
    }
}

/// Another worker's attempt to read `pid`'s environment.
fn read_environ(pid: &str) -> Output {
    unprivileged("cat", &[&format!("/proc/{pid}/environ")])
        .output()
        .unwrap()
}

/// The program the launcher starts: `polybot` itself, or as root a wrapper
/// that runs it without capabilities.
fn worker_program(dir: &std::path::Path) -> PathBuf {
    let polybot = env!("CARGO_BIN_EXE_polybot");
    if !is_root() {
        return polybot.into();
    }
    let wrapper = dir.join("polybot-unprivileged");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec {} '{polybot}' \"$@\"\n",
            UNPRIVILEGED.join(" ")
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    wrapper
}

#[tokio::test]
async fn another_process_of_the_same_uid_cannot_read_a_local_workers_environment() {
    // A database that accepts and never answers: the worker reaching it
    // proves it read its database URL from standard input and is running.
    let database = TcpListener::bind("127.0.0.1:0").unwrap();
    database.set_nonblocking(true).unwrap();
    let port = database.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let launcher =
        LocalLauncher::new(worker_program(dir.path()), dir.path().join("workers")).unwrap();
    let spec = LaunchSpec {
        tenant: TenantId::new(),
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
    };

    let instance = launcher.start(&spec).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let connection = loop {
        match database.accept() {
            Ok((stream, _)) => break stream,
            Err(err) if err.kind() == ErrorKind::WouldBlock => {
                let log =
                    std::fs::read_to_string(launcher.log_path(spec.tenant)).unwrap_or_default();
                assert!(
                    Instant::now() < deadline,
                    "the worker never connected: {log}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(err) => panic!("accepting the worker's connection: {err}"),
        }
    };

    // The same reader gets a dumpable neighbour's environment…
    let mut neighbour = unprivileged("sleep", &["30"]).spawn().unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let control = read_environ(&neighbour.id().to_string());
    neighbour.kill().unwrap();
    neighbour.wait().unwrap();
    assert!(
        control.status.success(),
        "the reader cannot read even a dumpable process: {}",
        String::from_utf8_lossy(&control.stderr)
    );
    // …and not the worker's.
    let attack = read_environ(&instance.id);
    assert!(
        !attack.status.success(),
        "read the worker's environment: {}",
        String::from_utf8_lossy(&attack.stdout)
    );
    assert!(
        String::from_utf8_lossy(&attack.stderr).contains("Permission denied"),
        "{}",
        String::from_utf8_lossy(&attack.stderr)
    );
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
