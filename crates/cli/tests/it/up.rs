//! `polybot up` on a machine where it never ran: a private PostgreSQL from
//! nothing to migrated, a clean stop on Ctrl-C with no server left behind, and
//! the same data on the next start.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;

/// The server's pid from its pid file, if it is running.
fn running_postmaster(data_dir: &Path) -> Option<Pid> {
    let text = std::fs::read_to_string(data_dir.join("postgres/data/postmaster.pid")).ok()?;
    let pid = Pid::from_raw(text.lines().next()?.trim().parse().ok()?);
    signal::kill(pid, None).ok().map(|_| pid)
}

/// PgBouncer's pid from its pid file, if it is running.
fn running_pgbouncer(data_dir: &Path) -> Option<Pid> {
    let text = std::fs::read_to_string(data_dir.join("postgres/pgbouncer/pgbouncer.pid")).ok()?;
    let pid = Pid::from_raw(text.trim().parse().ok()?);
    signal::kill(pid, None).ok().map(|_| pid)
}

/// A started `polybot`, interrupted and reaped when dropped: a failing
/// assertion must not leave it (and its PostgreSQL) running.
struct Running(Child);

impl std::ops::Deref for Running {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Running {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if !matches!(self.0.try_wait(), Ok(None)) {
            return;
        }
        if let Err(err) = signal::kill(Pid::from_raw(self.0.id() as i32), Signal::SIGINT) {
            eprintln!("could not interrupt polybot: {err}");
        }
        for _ in 0..600 {
            if !matches!(self.0.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if let Err(err) = self.0.kill() {
            eprintln!("could not kill polybot: {err}");
        }
        if let Err(err) = self.0.wait() {
            eprintln!("could not reap polybot: {err}");
        }
    }
}

/// Starts `command`, returns it once its output shows `ready`, with all output so far.
fn start_until(
    mut command: Command,
    ready: &str,
) -> (Running, Vec<String>, mpsc::Receiver<String>) {
    let mut child = command
        .env_remove("DATABASE_URL")
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
    let mut seen = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => {
                let done = line.contains(ready);
                seen.push(line);
                if done {
                    return (Running(child), seen, rx);
                }
            }
            Err(_) => {
                child.kill().expect("stopping polybot");
                child.wait().expect("reaping polybot");
                panic!("`{ready}` never appeared; output:\n{}", seen.join("\n"));
            }
        }
    }
}

fn interrupt_and_wait(child: &mut Child, signal_to: Signal) -> std::process::ExitStatus {
    signal::kill(Pid::from_raw(child.id() as i32), signal_to).unwrap();
    for _ in 0..600 {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().expect("stopping polybot");
    child.wait().expect("reaping polybot");
    panic!("polybot did not exit within 30 s of {signal_to}");
}

/// GETs `path` from the address the log announced; returns the body.
fn http_get(log: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let addr = log
        .split("PolyBot is up: http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .expect("the log announces the address");
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_owned()
}

fn up(binary: &Path, data_dir: &Path) -> Command {
    let mut cmd = Command::new(binary);
    cmd.arg("up")
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--listen", "127.0.0.1:0"]);
    cmd
}

fn check_cold_start_stop_and_reuse(make: impl Fn() -> Command, data_dir: &Path) {
    let (mut first, output, _rest) = start_until(make(), "PolyBot is up");
    let text = output.join("\n");
    assert!(text.contains("initialising a new cluster"), "{text}");
    let migrations = polybot_store::MIGRATOR.iter().count();
    assert!(
        text.contains(&format!("applied {migrations} migration(s)")),
        "{text}"
    );
    let server = running_postmaster(data_dir).expect("the private PostgreSQL is running");
    let pooler = running_pgbouncer(data_dir).expect("the workers' PgBouncer is running");
    assert!(
        text.contains("PgBouncer is accepting connections"),
        "{text}"
    );
    assert_eq!(http_get(&text, "/healthz"), "ok");
    use std::os::unix::fs::PermissionsExt;
    let token =
        std::fs::metadata(data_dir.join("operator-token")).expect("the operator token file");
    assert_eq!(token.permissions().mode() & 0o777, 0o600);

    let status = interrupt_and_wait(&mut first, Signal::SIGINT);
    assert!(status.success(), "polybot up exited with {status}");
    assert!(
        signal::kill(server, None).is_err(),
        "PostgreSQL (pid {server}) outlived polybot up"
    );
    assert!(
        signal::kill(pooler, None).is_err(),
        "PgBouncer (pid {pooler}) outlived polybot up"
    );
    assert_eq!(running_postmaster(data_dir), None);

    let (mut second, output, _rest) = start_until(make(), "PolyBot is up");
    let text = output.join("\n");
    assert!(text.contains("reusing the cluster"), "{text}");
    assert!(text.contains("database schema is current"), "{text}");
    let status = interrupt_and_wait(&mut second, Signal::SIGTERM);
    assert!(status.success(), "polybot up exited with {status}");
    assert_eq!(running_postmaster(data_dir), None);
}

#[test]
fn up_starts_a_private_database_from_nothing_stops_cleanly_and_reuses_it() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_polybot"));
    check_cold_start_stop_and_reuse(|| up(&binary, &data_dir), &data_dir);
}

/// As root the server runs as the `postgres` user; as that unprivileged user
/// the same command runs everything itself. Both paths are exercised here.
#[test]
fn up_works_for_an_unprivileged_user_too() {
    let dir = tempfile::tempdir().unwrap();
    if !nix::unistd::Uid::effective().is_root() {
        // Already unprivileged: the test above covers this user.
        let data_dir = dir.path().join("data");
        let binary = PathBuf::from(env!("CARGO_BIN_EXE_polybot"));
        check_cold_start_stop_and_reuse(|| up(&binary, &data_dir), &data_dir);
        return;
    }
    let user = nix::unistd::User::from_name("postgres")
        .unwrap()
        .expect("the postgres user exists where the server binaries are installed");
    // The user needs a copy of the binary and a data dir it owns.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let binary = dir.path().join("polybot");
    std::fs::copy(env!("CARGO_BIN_EXE_polybot"), &binary).unwrap();
    let data_dir = dir.path().join("data");
    std::fs::create_dir(&data_dir).unwrap();
    nix::unistd::chown(&data_dir, Some(user.uid), Some(user.gid)).unwrap();
    check_cold_start_stop_and_reuse(
        || {
            let mut cmd = Command::new("setpriv");
            cmd.args([
                "--reuid",
                "postgres",
                "--regid",
                "postgres",
                "--init-groups",
                "--",
            ])
            .arg(&binary)
            .arg("up")
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--listen", "127.0.0.1:0"])
            .env("HOME", &data_dir);
            cmd
        },
        &data_dir,
    );
}

#[test]
fn migrate_without_server_binaries_says_how_to_install_them() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_polybot"))
        .arg("migrate")
        .arg("--data-dir")
        .arg(dir.path())
        .env_remove("DATABASE_URL")
        .env("PATH", dir.path())
        .env("POLYBOT_PG_BINDIR", dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("apt-get install postgresql"), "{stderr}");
    assert!(stderr.contains("DATABASE_URL"), "{stderr}");
}
