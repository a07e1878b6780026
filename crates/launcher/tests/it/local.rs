//! The local launcher against a stand-in worker program (a shell script that
//! saves its standard input and sleeps), so that what reaches the process can
//! be read from `/proc` and from the saved input.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use polybot_core::{Mode, TenantId};
use polybot_launcher::local::{FIRST_WORKER_UID, LocalLauncher, WorkerIdentity};
use polybot_launcher::{LaunchSpec, Launcher};
use secrecy::SecretString;

/// The environment of `pid`, as `NAME=value` strings.
fn environ(pid: &str) -> Vec<String> {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    raw.split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

#[tokio::test]
async fn a_local_worker_gets_no_control_plane_secret_and_its_own_secrets_only_on_stdin() {
    let dir = tempfile::tempdir().unwrap();
    // The worker may run as a uid of its own: it saves its input where any
    // uid may write.
    let out = tempfile::tempdir().unwrap();
    std::fs::set_permissions(out.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let saved_stdin = out.path().join("stdin");
    let program = dir.path().join("fake-polybot");
    std::fs::write(
        &program,
        format!(
            "#!/bin/sh\ncat > '{}'\nexec sleep 30\n",
            saved_stdin.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
    let launcher = LocalLauncher::new(program, dir.path().join("workers")).unwrap();
    let tenant = TenantId::new();
    let spec = LaunchSpec {
        tenant,
        spec_hash: "h1".into(),
        mode: Mode::Paper,
        secret_env: BTreeMap::from([(
            "DATABASE_URL".to_owned(),
            SecretString::from("postgres://polybot_t_x:tenant-pw@127.0.0.1/polybot"),
        )]),
        secret_reference: None,
        env: BTreeMap::from(
            [
                ("POLYBOT_METRICS_TOKEN", "metrics-secret"),
                ("POLYBOT_OPERATOR_TOKEN", "operator-secret"),
                ("POLYBOT_MASTER_KEY", "master-secret"),
                ("POLYBOT_DATA_DIR", "/var/lib/polybot"),
                ("PGPASSWORD", "superuser-pw"),
                ("POLYBOT_HEARTBEAT_SECS", "2"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned())),
        ),
        ibkr: false,
    };

    let instance = launcher.start(&spec).await.unwrap();
    let mut env = environ(&instance.id);
    env.retain(|var| {
        !["PATH=", "HOME=", "LANG=", "TMPDIR=", "POLYBOT_LOG="]
            .iter()
            .any(|kept| var.starts_with(kept))
    });
    env.sort();
    let tenant_text = tenant.to_string();
    assert_eq!(
        env,
        [
            "POLYBOT_HEARTBEAT_SECS=2".to_owned(),
            "POLYBOT_MODE=paper".to_owned(),
            "POLYBOT_SECRETS_STDIN=1".to_owned(),
            "POLYBOT_SPEC_HASH=h1".to_owned(),
            format!("TENANT_ID={tenant_text}"),
        ]
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let stdin = loop {
        // `cat` has written everything once the `sleep` replaced the shell.
        let cmdline = std::fs::read(format!("/proc/{}/cmdline", instance.id)).unwrap_or_default();
        if cmdline.starts_with(b"sleep") {
            break std::fs::read_to_string(&saved_stdin).unwrap();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the worker never read its input"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&stdin).unwrap(),
        serde_json::json!({
            "DATABASE_URL": "postgres://polybot_t_x:tenant-pw@127.0.0.1/polybot"
        })
    );
    launcher.stop(&instance, "test over").await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), launcher.shutdown())
        .await
        .unwrap();
}

/// The `Uid:` or `Gid:` line of `/proc/<pid>/status`: real, effective, saved, fs.
fn status_ids(pid: &str, field: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{field}:")))
        .unwrap()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn sleeper_spec(tenant: TenantId) -> LaunchSpec {
    LaunchSpec {
        tenant,
        spec_hash: "h1".into(),
        mode: Mode::Paper,
        secret_env: BTreeMap::new(),
        secret_reference: None,
        env: BTreeMap::new(),
        ibkr: false,
    }
}

#[tokio::test]
async fn as_root_each_tenants_worker_runs_as_a_uid_of_its_own_that_it_keeps() {
    let dir = tempfile::tempdir().unwrap();
    // Under a 0700 directory: the worker's uid could not reach the program
    // by its path, and runs it all the same.
    let program = dir.path().join("fake-polybot");
    std::fs::write(&program, "#!/bin/sh\nexec sleep 30\n").unwrap();
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
    let workers = dir.path().join("workers");
    let launcher = LocalLauncher::new(program.clone(), workers.clone()).unwrap();
    let (a, b) = (TenantId::new(), TenantId::new());
    let first = launcher.start(&sleeper_spec(a)).await.unwrap();
    let second = launcher.start(&sleeper_spec(b)).await.unwrap();
    let (uid_a, uid_b) = (status_ids(&first.id, "Uid"), status_ids(&second.id, "Uid"));

    if nix::unistd::Uid::effective().is_root() {
        assert_eq!(launcher.identity(), WorkerIdentity::PerTenant);
        let (ua, ub) = (
            launcher.worker_uid(a).unwrap(),
            launcher.worker_uid(b).unwrap(),
        );
        assert_ne!(ua, ub);
        assert!(
            ua >= FIRST_WORKER_UID && ub >= FIRST_WORKER_UID,
            "{ua} {ub}"
        );
        // Real, effective, saved and filesystem ids alike, and no groups.
        let four = |id: u32| vec![id.to_string(); 4].join(" ");
        assert_eq!(uid_a, four(ua));
        assert_eq!(uid_b, four(ub));
        assert_eq!(status_ids(&first.id, "Gid"), four(ua));
        assert_eq!(status_ids(&first.id, "Groups"), "");
    } else {
        assert_eq!(launcher.identity(), WorkerIdentity::Shared);
        let me = nix::unistd::Uid::effective().to_string();
        assert_eq!(uid_a, [me.as_str(); 4].join(" "));
        assert_eq!(uid_b, uid_a);
    }

    // The control plane's files are its own.
    let mode =
        |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&workers), 0o700);
    assert_eq!(mode(&launcher.log_path(a)), 0o600);

    launcher.stop(&first, "test over").await.unwrap();
    launcher.stop(&second, "test over").await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), launcher.shutdown())
        .await
        .unwrap();

    // A restarted control plane gives each tenant the same uid again.
    if nix::unistd::Uid::effective().is_root() {
        let again = LocalLauncher::new(program, workers).unwrap();
        assert_eq!(
            again.worker_uid(b).unwrap(),
            launcher.worker_uid(b).unwrap()
        );
        assert_eq!(
            again.worker_uid(a).unwrap(),
            launcher.worker_uid(a).unwrap()
        );
    }
}
