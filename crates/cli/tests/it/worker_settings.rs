//! `polybot worker` as a launcher starts it: a malformed environment variable
//! stops it at startup with an error that names the variable, before it
//! connects anywhere, and no secret is echoed.

use std::process::{Command, Output};

use polybot_core::worker::{env, exit};

const TENANT: &str = "6f1c0c9e-3b7a-4a55-9d0e-2f4f7f6f1a2b";
const PASSWORD: &str = "hunter2-hunter2-hunter2";

/// Runs `polybot worker` with only the given environment (plus a valid
/// tenant and database URL unless overridden).
fn worker(vars: &[(&str, &str)]) -> Output {
    let url = format!("postgres://polybot_t_x:{PASSWORD}@127.0.0.1:9/polybot");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_polybot"));
    cmd.arg("worker")
        .env_clear()
        .env(env::TENANT_ID, TENANT)
        .env(env::DATABASE_URL, url);
    for (name, value) in vars {
        cmd.env(name, value);
    }
    cmd.output().expect("polybot worker runs")
}

fn refused(vars: &[(&str, &str)]) -> (Option<i32>, String) {
    let output = worker(vars);
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn a_malformed_heartbeat_mode_or_flush_size_stops_the_worker_naming_the_variable() {
    for (name, value) in [
        (env::HEARTBEAT_SECS, "soon"),
        (env::HEARTBEAT_SECS, "-1"),
        (env::MODE, "yolo"),
        (env::FLUSH_ROWS, "0"),
        (env::FLUSH_MS, "fast"),
        (env::REPLAY_EXIT, "maybe"),
        (env::LIVE_DATA, "sometimes"),
        (env::PAPER_BALANCES, "polymarket=lots"),
    ] {
        let (code, stderr) = refused(&[(name, value)]);
        assert_eq!(code, Some(exit::BAD_SETTINGS), "{name}={value}: {stderr}");
        assert!(stderr.contains(name), "{name}={value}: {stderr}");
        assert!(!stderr.contains(PASSWORD), "{stderr}");
    }
}

#[test]
fn a_market_data_url_that_is_not_redis_stops_the_worker_naming_the_variable_not_the_url() {
    let url = format!("http://market:{PASSWORD}@cache.internal:6379");
    let (code, stderr) = refused(&[(env::MARKET_DATA_URL, &url)]);
    assert_ne!(code, Some(exit::OK), "{stderr}");
    assert!(stderr.contains(env::MARKET_DATA_URL), "{stderr}");
    assert!(!stderr.contains(PASSWORD), "{stderr}");
}

#[test]
fn a_malformed_secret_is_refused_naming_its_variable_without_echoing_it() {
    let (code, stderr) = refused(&[(
        env::DATABASE_URL,
        "postgres://u:hunter2-hunter2-hunter2@h:port/db",
    )]);
    assert_eq!(code, Some(exit::FAILED), "{stderr}");
    assert!(stderr.contains(env::DATABASE_URL), "{stderr}");
    assert!(!stderr.contains(PASSWORD), "{stderr}");

    let keys = format!(r#"{{"kalshi": {{"key_id": "{PASSWORD}"}}}}"#);
    let (code, stderr) = refused(&[(env::EXCHANGE_KEYS, keys.as_str())]);
    assert_eq!(code, Some(exit::FAILED), "{stderr}");
    assert!(stderr.contains(env::EXCHANGE_KEYS), "{stderr}");
    assert!(!stderr.contains(PASSWORD), "{stderr}");
}

#[test]
fn the_help_shows_every_variable_but_not_the_secrets_values() {
    let output = Command::new(env!("CARGO_BIN_EXE_polybot"))
        .args(["worker", "--help"])
        .env(env::DATABASE_URL, format!("postgres://u:{PASSWORD}@h/db"))
        .env(
            env::EXCHANGE_KEYS,
            format!(r#"{{"newsapi": {{"api_key": "{PASSWORD}"}}}}"#),
        )
        .output()
        .expect("polybot worker --help runs");
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{help}");
    for name in [
        env::TENANT_ID,
        env::DATABASE_URL,
        env::EXCHANGE_KEYS,
        env::MODE,
        env::FLUSH_ROWS,
    ] {
        assert!(help.contains(&format!("[env: {name}")), "{name}: {help}");
    }
    assert!(!help.contains(PASSWORD), "{help}");
}
