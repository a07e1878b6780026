//! The local launcher against a stand-in worker program (a shell script that
//! saves its standard input and sleeps), so that what reaches the process can
//! be read from `/proc` and from the saved input.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use polybot_core::{Mode, TenantId};
use polybot_launcher::local::LocalLauncher;
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
    let program = dir.path().join("fake-polybot");
    std::fs::write(&program, "#!/bin/sh\ncat > \"$0.stdin\"\nexec sleep 30\n").unwrap();
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
    let saved_stdin = dir.path().join("fake-polybot.stdin");
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
