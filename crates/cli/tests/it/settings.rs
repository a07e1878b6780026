//! A setting with a bad value stops `polybot up` and `polybot control-plane`
//! before they start anything, with an error that names the variable; no
//! setting falls back to its default silently.

use std::process::{Command, Output};

fn polybot(args: &[&str], var: &str, value: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_polybot"))
        .args(args)
        .env(var, value)
        // Nothing is started: the data dir must stay untouched.
        .env("POLYBOT_DATA_DIR", "/nonexistent/polybot-settings-test")
        .output()
        .expect("polybot runs")
}

fn refused(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(2), "a usage error: {stderr}");
    stderr
}

#[test]
fn a_bad_alert_interval_stops_the_control_plane_and_names_its_variable() {
    let output = polybot(
        &["control-plane", "--listen", "127.0.0.1:0"],
        "POLYBOT_ALERT_INTERVAL_SECS",
        "ten",
    );
    let stderr = refused(&output);
    assert!(
        stderr.contains(
            "POLYBOT_ALERT_INTERVAL_SECS (or --alert-interval-secs) is \"ten\": \
             expected a number of seconds"
        ),
        "{stderr}"
    );
}

#[test]
fn a_bad_cookie_switch_stops_polybot_up_and_names_its_variable() {
    let output = polybot(
        &["up", "--listen", "127.0.0.1:0"],
        "POLYBOT_COOKIE_SECURE",
        "maybe",
    );
    let stderr = refused(&output);
    assert!(
        stderr.contains(
            "POLYBOT_COOKIE_SECURE (or --cookie-secure) is \"maybe\": expected true or false"
        ),
        "{stderr}"
    );
}

#[test]
fn the_settings_are_in_the_help_without_the_secret_values() {
    let output = Command::new(env!("CARGO_BIN_EXE_polybot"))
        .args(["control-plane", "--help"])
        .env("POLYBOT_METRICS_TOKEN", "do-not-print-this-token")
        .env("POLYBOT_SESSION_HOURS", "6")
        .output()
        .expect("polybot runs");
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(help.contains("--session-hours <HOURS>"), "{help}");
    assert!(help.contains("[env: POLYBOT_SESSION_HOURS=6]"), "{help}");
    assert!(help.contains("[env: POLYBOT_METRICS_TOKEN]"), "{help}");
    assert!(!help.contains("do-not-print-this-token"), "{help}");
}
