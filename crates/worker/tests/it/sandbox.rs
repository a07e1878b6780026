//! Issue 16 #3: what a worker that has been taken over can still reach once
//! its Landlock sandbox is on. Each test sandboxes its own thread (Landlock
//! restricts the calling thread and what it starts later, so the other
//! tests are untouched) and then attacks like a compromised worker would.
//! The files it goes after are world-readable here, so that the sandbox is
//! the only thing keeping it out.

use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use nix::sys::signal;
use nix::unistd::Pid;
use polybot_worker::sandbox::{self, SandboxStatus};

fn world_readable(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
}

fn denied<T>(result: std::io::Result<T>, what: &str) {
    match result {
        Err(err) => assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{what}: {err}"),
        Ok(_) => panic!("{what}: the sandbox let it through"),
    }
}

#[test]
fn a_sandboxed_worker_reads_its_recording_and_nothing_of_the_data_dir_or_other_processes() {
    let data_dir = tempfile::tempdir().unwrap();
    let master_key = data_dir.path().join("master.key");
    let pg_password = data_dir.path().join("postgres/superuser-password");
    let other_log = data_dir.path().join("workers/other-tenant.log");
    world_readable(&master_key, "00112233445566778899aabbccddeeff");
    world_readable(&pg_password, "hunter2");
    world_readable(&other_log, "EXCHANGE_KEYS of another tenant");
    let recordings = tempfile::tempdir().unwrap();
    let recording = recordings.path().join("demo.jsonl");
    world_readable(&recording, "{}\n");
    // A process outside the sandbox, of the same uid and dumpable: another
    // worker, or the control plane.
    let mut neighbour = Command::new("sleep").arg("30").spawn().unwrap();
    let neighbour_pid = neighbour.id();
    std::fs::File::open(format!("/proc/{neighbour_pid}/mem")).expect("open before the sandbox");

    // The attack runs on a thread of its own, which the sandbox confines;
    // this thread stays outside, to clean up.
    let dir = data_dir.path().to_owned();
    let attacker = std::thread::spawn(move || {
        let files = sandbox::worker_files(Some(&recording), "postgres://u:p@127.0.0.1/polybot");
        let status = sandbox::apply(&files).unwrap();

        assert_eq!(status, SandboxStatus::Full, "{}", status.describe());
        assert_eq!(std::fs::read_to_string(&recording).unwrap(), "{}\n");
        assert!(
            std::fs::read_to_string("/etc/passwd")
                .unwrap()
                .contains("root")
        );
        denied(std::fs::read(&master_key), "reading the master key");
        denied(
            std::fs::read(&pg_password),
            "reading the database superuser's password",
        );
        denied(std::fs::read(&other_log), "reading another worker's log");
        denied(std::fs::read_dir(&dir), "listing the data dir");
        denied(
            std::fs::write(dir.join("planted"), "x"),
            "writing into the data dir",
        );
        // Its environment stays readable to a process of its uid under
        // Landlock: that is what the worker's non-dumpable mark and, as root, its
        // uid of its own are for (crates/cli/tests/it/worker_isolation.rs).
        denied(
            std::fs::File::open(format!("/proc/{neighbour_pid}/mem")),
            "reading another process's memory",
        );
        let signalled = signal::kill(Pid::from_raw(neighbour_pid as i32), signal::Signal::SIGTERM);
        assert_eq!(
            signalled,
            Err(nix::errno::Errno::EPERM),
            "signalling a process outside"
        );
    });
    let outcome = attacker.join();
    neighbour.kill().unwrap();
    neighbour.wait().unwrap();
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}
