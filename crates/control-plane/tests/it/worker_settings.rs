//! The operator's worker secrets in the local secret store: sealed under the
//! master key, opened only with it.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use polybot_control_plane::reconcile::Reconciler;
use polybot_control_plane::worker_settings;
use polybot_launcher::local::LocalLauncher;
use polybot_secrets::local::MasterKey;
use polybot_store::{Db, Scope};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::common::Harness;

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn the_operators_newsapi_key_is_stored_sealed_and_opens_only_with_the_master_key(
    pool: PgPool,
) {
    let db = Db::from_pool(pool.clone(), Scope::Control);
    let master = MasterKey::from_bytes([7; 32]);
    assert!(
        worker_settings::load(&db, &master)
            .await
            .unwrap()
            .is_empty()
    );

    let key = SecretString::from("0123456789abcdef0123456789abcdef".to_owned());
    worker_settings::store(&db, &master, "POLYBOT_NEWSAPI_KEY", &key)
        .await
        .unwrap();
    let loaded = worker_settings::load(&db, &master).await.unwrap();
    assert_eq!(
        loaded
            .iter()
            .map(|(k, v)| (k.as_str(), v.expose_secret()))
            .collect::<Vec<_>>(),
        [("POLYBOT_NEWSAPI_KEY", "0123456789abcdef0123456789abcdef")]
    );
    // The database holds ciphertext only.
    let stored: Vec<u8> = sqlx::query_scalar("SELECT ciphertext FROM operator_secrets")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(
        !stored
            .windows(key.expose_secret().len())
            .any(|w| w == key.expose_secret().as_bytes())
    );

    let other = MasterKey::from_bytes([8; 32]);
    let err = worker_settings::load(&db, &other).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("POLYBOT_NEWSAPI_KEY does not open with this master key"),
        "{err}"
    );
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn only_the_listed_worker_settings_are_stored(pool: PgPool) {
    let db = Db::from_pool(pool, Scope::Control);
    let master = MasterKey::from_bytes([7; 32]);
    let err = worker_settings::store(
        &db,
        &master,
        "DATABASE_URL",
        &SecretString::from("postgres://x".to_owned()),
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("DATABASE_URL is not an operator-level worker secret"),
        "{err}"
    );
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_local_worker_gets_the_operators_newsapi_key_with_its_own_secrets(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let h = Harness::new(pool_opts, options).await;
    let tenant = h.onboard(json!({"name": "acme"})).await;
    // A stand-in worker that echoes what it reads on standard input into
    // its log (run as root, the launcher starts it under a uid of its own
    // and by descriptor, so it can write nothing beside its program).
    let dir = tempfile::tempdir().unwrap();
    let program = dir.path().join("fake-polybot");
    std::fs::write(&program, "#!/bin/sh\ncat\necho\nexec sleep 30\n").unwrap();
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
    let launcher =
        Arc::new(LocalLauncher::new(program.clone(), dir.path().join("workers")).unwrap());
    let mut reconciler = Reconciler::new(
        h.state.db.clone(),
        launcher.clone(),
        h.state.secrets.clone(),
        h.state.reconcile.clone(),
    );
    reconciler.worker_secrets.insert(
        "POLYBOT_NEWSAPI_KEY".into(),
        SecretString::from("the-operators-newsapi-key".to_owned()),
    );
    let report = reconciler.pass().await.unwrap();
    assert_eq!(report.started, 1, "{report:?}");

    let log = launcher.log_path(tenant.parse().unwrap());
    let deadline = Instant::now() + Duration::from_secs(30);
    let secrets: Value = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let echoed = text.lines().find_map(|line| {
            serde_json::from_str::<Value>(line)
                .ok()
                .filter(|v| v.get("DATABASE_URL").is_some())
        });
        if let Some(secrets) = echoed {
            break secrets;
        }
        assert!(
            Instant::now() < deadline,
            "the worker got no secrets: {text:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(secrets["POLYBOT_NEWSAPI_KEY"], "the-operators-newsapi-key");
    assert!(
        secrets["DATABASE_URL"]
            .as_str()
            .unwrap()
            .contains(&tenant.replace('-', ""))
    );
    launcher.shutdown().await;
}
