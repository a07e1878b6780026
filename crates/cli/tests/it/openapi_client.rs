//! The API's OpenAPI document works with the tools its users feed it to: the
//! document a running control plane serves passes `openapi-spec-validator`,
//! and a Python client that `openapi-python-client` generates from it
//! onboards a tenant and reads its status.
//!
//! The tools come from PyPI; `scripts/test` installs them and names their
//! directory in `POLYBOT_OPENAPI_TOOLS`.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

pub(crate) const OPERATOR: &str = "pbo_openapi-client-operator-0123456789abcdef";

/// Where `openapi-spec-validator`, `openapi-python-client` and the Python
/// they run with are; never skipped, so a missing tool fails the run.
fn tools() -> PathBuf {
    let dir = std::env::var_os("POLYBOT_OPENAPI_TOOLS")
        .map(PathBuf::from)
        .expect(
            "POLYBOT_OPENAPI_TOOLS is not set: run this test through scripts/test, which installs \
         openapi-spec-validator and openapi-python-client and points the variable at them",
        );
    for tool in ["openapi-spec-validator", "openapi-python-client", "python"] {
        assert!(
            dir.join(tool).is_file(),
            "{} is missing: run scripts/test, which installs it",
            dir.join(tool).display()
        );
    }
    dir
}

/// Runs `program`, failing the test with its output unless it succeeds.
pub(crate) fn run(what: &str, command: &mut Command) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|err| panic!("{what} did not start: {err}"));
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// A control plane process, stopped when dropped.
pub(crate) struct ControlPlane {
    pub(crate) child: Child,
    pub(crate) addr: String,
}

impl ControlPlane {
    pub(crate) fn start(database_url: &str, data_dir: &Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_polybot"))
            .args(["control-plane", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .env("DATABASE_URL", database_url)
            .env("POLYBOT_OPERATOR_TOKEN", OPERATOR)
            .env("POLYBOT_MASTER_KEY", "6f".repeat(32))
            // Workers without market data: tests never reach the venues.
            .env("POLYBOT_LIVE_DATA", "0")
            // Billing configured, so that its endpoints answer by their input
            // rather than 503; no seeded plan has a Stripe price, so nothing
            // calls this (unreachable) Stripe.
            .env("POLYBOT_STRIPE_API_KEY", "sk_test_unused")
            .env("POLYBOT_STRIPE_WEBHOOK_SECRET", "whsec_test_unused")
            .env("POLYBOT_STRIPE_API_BASE", "http://127.0.0.1:9")
            .env("POLYBOT_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the control plane starts");
        let (tx, lines) = mpsc::channel();
        let stderr = child.stderr.take().expect("stderr is piped");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Owned before it is up, so that a failed start still stops it (Drop).
        let mut cp = Self {
            child,
            addr: String::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut log = Vec::new();
        while Instant::now() < deadline {
            if let Ok(line) = lines.recv_timeout(Duration::from_millis(100)) {
                if let Some(rest) = line.split("PolyBot is up: http://").nth(1) {
                    cp.addr = rest.split('/').next().unwrap_or_default().to_owned();
                    // Keep reading, so that a full pipe never blocks the process.
                    std::thread::spawn(move || while lines.recv().is_ok() {});
                    return cp;
                }
                log.push(line);
            }
        }
        panic!("the control plane did not come up:\n{}", log.join("\n"));
    }

    /// `GET path` without credentials; the body.
    pub(crate) fn get(&self, path: &str) -> String {
        let mut stream = std::net::TcpStream::connect(&self.addr).expect("the API accepts");
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .expect("the request is sent");
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .expect("the response is read");
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        let (_, body) = response
            .split_once("\r\n\r\n")
            .expect("the response has a body");
        body.to_owned()
    }

    pub(crate) fn stop(mut self) {
        signal::kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM)
            .expect("SIGTERM is delivered");
        let status = self.child.wait().expect("the control plane exits");
        assert!(status.success(), "the control plane exited with {status}");
    }
}

impl Drop for ControlPlane {
    /// A failing test still stops its control plane (which stops its workers).
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            if let Err(err) = signal::kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM) {
                eprintln!("could not stop the control plane: {err}");
            }
            let deadline = Instant::now() + Duration::from_secs(40);
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// The superuser URL of the test's own database.
pub(crate) fn url_for(options: &PgConnectOptions) -> String {
    let base = std::env::var("DATABASE_URL").expect("DATABASE_URL (scripts/test sets it)");
    let (server, _) = base
        .rsplit_once('/')
        .expect("DATABASE_URL names a database");
    format!(
        "{server}/{}",
        options
            .get_database()
            .expect("the test database has a name")
    )
}

/// What the generated client does: onboard a tenant, then read its status
/// until onboarding has finished. Prints what it saw as one JSON object.
const CLIENT_SCRIPT: &str = r#"
import json, sys, time
from polybot_client import AuthenticatedClient
from polybot_client.api.tenants import create_tenant
from polybot_client.api.status import get_tenant_status
from polybot_client.models import CreateTenantRequest, CreateTenantRequestStrategiesType0

base_url, token = sys.argv[1], sys.argv[2]
client = AuthenticatedClient(base_url=base_url, token=token, raise_on_unexpected_status=True)
request = CreateTenantRequest(
    name="generated-client",
    mode="paper",
    strategies=CreateTenantRequestStrategiesType0.from_dict({"complement_arb": {}}),
)
created = create_tenant.sync_detailed(client=client, body=request)
assert created.status_code == 201, (created.status_code, created.content)
tenant = created.parsed
deadline = time.monotonic() + 60
while True:
    status = get_tenant_status.sync(client=client, id=tenant.id)
    if status.state != "provisioning" or time.monotonic() > deadline:
        break
    time.sleep(0.2)
print(json.dumps({
    "created_type": type(tenant).__name__,
    "id": str(tenant.id),
    "name": tenant.name,
    "mode": tenant.mode,
    "status_type": type(status).__name__,
    "status_tenant_id": str(status.tenant_id),
    "state": status.state,
    "provisioning_step": status.provisioning.step,
    "desired": status.desired,
}))
"#;

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn a_client_generated_from_the_served_document_onboards_a_tenant_and_reads_its_status(
    _pool: PgPoolOptions,
    options: PgConnectOptions,
) {
    let tools = tools();
    let url = url_for(&options);
    let report = tokio::task::spawn_blocking(move || {
        let dir = tempfile::tempdir().expect("a temp dir");
        let cp = ControlPlane::start(&url, &dir.path().join("data"));
        let spec = dir.path().join("openapi.json");
        std::fs::write(&spec, cp.get("/openapi.json")).expect("the document is written");

        run(
            "openapi-spec-validator",
            Command::new(tools.join("openapi-spec-validator")).arg(&spec),
        );

        let config = dir.path().join("client.yaml");
        // No post hooks: the default ones run a formatter (ruff) the test
        // does not need, and warn when it is missing.
        std::fs::write(
            &config,
            "package_name_override: polybot_client\npost_hooks: []\n",
        )
        .expect("the generator's config is written");
        let client = dir.path().join("client");
        run(
            "openapi-python-client",
            Command::new(tools.join("openapi-python-client"))
                .args(["generate", "--meta", "none", "--path"])
                .arg(&spec)
                .arg("--config")
                .arg(&config)
                .arg("--output-path")
                .arg(client.join("polybot_client")),
        );

        let output = run(
            "the generated client",
            Command::new(tools.join("python"))
                .args(["-c", CLIENT_SCRIPT])
                .arg(format!("http://{}", cp.addr))
                .arg(OPERATOR)
                .env("PYTHONPATH", &client)
                .env("PYTHONDONTWRITEBYTECODE", "1"),
        );
        cp.stop();
        let stdout = String::from_utf8(output.stdout).expect("the client prints UTF-8");
        serde_json::from_str::<Value>(stdout.trim())
            .unwrap_or_else(|err| panic!("the client printed {stdout:?}: {err}"))
    })
    .await
    .expect("the test's thread finishes");

    assert_eq!(report["created_type"], "TenantView", "{report}");
    assert_eq!(report["status_type"], "StatusView", "{report}");
    assert_eq!(report["name"], "generated-client", "{report}");
    assert_eq!(report["mode"], "paper", "{report}");
    assert_eq!(report["status_tenant_id"], report["id"], "{report}");
    assert_eq!(report["state"], "active", "{report}");
    assert_eq!(report["provisioning_step"], "done", "{report}");
    assert_eq!(report["desired"], "running", "{report}");
}
