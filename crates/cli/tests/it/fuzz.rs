//! Fuzzing the API from its own OpenAPI document with schemathesis: a running
//! `polybot control-plane` answers every generated request (valid and
//! invalid) without a 5xx, and is still up afterwards.
//!
//! schemathesis comes from PyPI; `scripts/test` installs it and names its
//! directory in `POLYBOT_SCHEMATHESIS`. The run is bounded (a few examples
//! per operation) so that it takes a minute or two.

use std::path::PathBuf;
use std::process::Command;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::openapi_client::{ControlPlane, OPERATOR, url_for};

/// Examples generated per operation and phase.
const MAX_EXAMPLES: &str = "40";

/// The `st` command; never skipped, so a missing tool fails the run.
fn schemathesis() -> PathBuf {
    let dir = std::env::var_os("POLYBOT_SCHEMATHESIS")
        .map(PathBuf::from)
        .expect(
            "POLYBOT_SCHEMATHESIS is not set: run this test through scripts/test, which installs \
             schemathesis and points the variable at it",
        );
    let st = dir.join("st");
    assert!(
        st.is_file(),
        "{} is missing: run scripts/test, which installs it",
        st.display()
    );
    st
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn fuzzing_the_openapi_document_finds_no_server_error_and_the_server_stays_up(
    _pool: PgPoolOptions,
    options: PgConnectOptions,
) {
    let st = schemathesis();
    let url = url_for(&options);
    let (output, health) = tokio::task::spawn_blocking(move || {
        let dir = tempfile::tempdir().expect("a temp dir");
        let mut cp = ControlPlane::start(&url, &dir.path().join("data"));
        let base = format!("http://{}", cp.addr);
        let output = Command::new(&st)
            .arg("run")
            .arg(format!("{base}/openapi.json"))
            .args(["--url", &base])
            .args(["--header", &format!("Authorization: Bearer {OPERATOR}")])
            .args(["--checks", "not_a_server_error"])
            .args(["--max-examples", MAX_EXAMPLES])
            .args(["--workers", "2"])
            .args(["--request-timeout", "20"])
            .args(["--seed", "16"])
            .env("SCHEMATHESIS_HOOKS", "")
            .current_dir(dir.path())
            .output()
            .expect("schemathesis starts");
        let alive = matches!(cp.child.try_wait(), Ok(None));
        let health = alive.then(|| cp.get("/healthz"));
        cp.stop();
        (output, health)
    })
    .await
    .expect("the test's thread finishes");
    let report = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "schemathesis failed:\n{report}");
    // Every operation of the document was exercised, not just the document read.
    let tested: usize = report
        .lines()
        .find_map(|line| line.trim().strip_prefix("Tested: "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no \"Tested:\" line in the report:\n{report}"));
    assert!(
        tested >= 20,
        "only {tested} operations were tested:\n{report}"
    );
    assert_eq!(
        health.as_deref(),
        Some("ok"),
        "the server is down:\n{report}"
    );
}
