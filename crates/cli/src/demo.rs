//! `polybot up --demo`: the bundled recording written to the data dir, the
//! workers pointed at it, and a demo tenant onboarded through the API.
//!
//! With no live feed wired into the workers yet, every local worker started
//! by a demo `polybot up` plays the recording (in paper mode). Onboarding is
//! idempotent across restarts: an existing tenant named `demo` is reused,
//! and the request carries an Idempotency-Key so that a crash between the
//! request and its answer cannot create a second one.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use polybot_worker::demo::{
    DEMO_PAPER_BALANCES, DEMO_REPLAY, DEMO_TENANT_NAME, demo_tenant_request,
};
use serde_json::Value;

/// The Idempotency-Key of the demo tenant's onboarding request.
const IDEMPOTENCY_KEY: &str = "polybot-up-demo-tenant";

/// The recording on disk, for the workers.
#[derive(Debug, Clone)]
pub struct Demo {
    pub replay: PathBuf,
}

impl Demo {
    /// Writes the bundled recording to `<data-dir>/demo.jsonl` (an absolute
    /// path, so that workers find it whatever their working directory).
    pub fn prepare(data_dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("creating the data dir {}", data_dir.display()))?;
        let dir = data_dir
            .canonicalize()
            .with_context(|| format!("resolving the data dir {}", data_dir.display()))?;
        let replay = dir.join("demo.jsonl");
        let current = std::fs::read(&replay).ok();
        if current.as_deref() != Some(DEMO_REPLAY.as_bytes()) {
            std::fs::write(&replay, DEMO_REPLAY)
                .with_context(|| format!("writing the demo recording to {}", replay.display()))?;
        }
        Ok(Self { replay })
    }

    /// What every worker gets on top of the inherited `POLYBOT_*` settings;
    /// a speed or balances already set in the environment win.
    pub fn worker_env(&self) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        env.insert(
            "POLYBOT_REPLAY".to_owned(),
            self.replay.display().to_string(),
        );
        if std::env::var_os("POLYBOT_REPLAY_SPEED").is_none() {
            env.insert("POLYBOT_REPLAY_SPEED".to_owned(), "1".to_owned());
        }
        if std::env::var_os("POLYBOT_PAPER_BALANCES").is_none() {
            env.insert(
                "POLYBOT_PAPER_BALANCES".to_owned(),
                DEMO_PAPER_BALANCES.to_owned(),
            );
        }
        env
    }
}

/// Onboards the demo tenant through the API at `addr` unless it exists;
/// returns its id.
pub async fn onboard(addr: SocketAddr, token_file: &Path) -> anyhow::Result<String> {
    let token = std::fs::read_to_string(token_file)
        .with_context(|| format!("reading the operator token {}", token_file.display()))?;
    let token = token.trim();
    let base = format!("http://{addr}");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .context("building the HTTP client for the demo onboarding")?;
    if let Some(id) = find(&client, &base, token).await? {
        tracing::info!(tenant = %id, "the demo tenant exists; reusing it");
        return Ok(id);
    }
    let response = client
        .post(format!("{base}/tenants"))
        .bearer_auth(token)
        .header("Idempotency-Key", IDEMPOTENCY_KEY)
        .json(&demo_tenant_request())
        .send()
        .await
        .with_context(|| format!("POST {base}/tenants for the demo tenant"))?;
    let status = response.status();
    let body: Value = response
        .json()
        .await
        .with_context(|| format!("reading the answer to POST {base}/tenants ({status})"))?;
    if !status.is_success() {
        anyhow::bail!("onboarding the demo tenant failed with {status}: {body}");
    }
    let id = body["id"]
        .as_str()
        .with_context(|| format!("POST /tenants answered {status} without an id: {body}"))?
        .to_owned();
    tracing::info!(tenant = %id, "onboarded the demo tenant");
    Ok(id)
}

/// The live tenant named `demo`, if any.
async fn find(client: &reqwest::Client, base: &str, token: &str) -> anyhow::Result<Option<String>> {
    let mut cursor: Option<String> = None;
    loop {
        let mut request = client
            .get(format!("{base}/tenants"))
            .bearer_auth(token)
            .query(&[("limit", "200")]);
        if let Some(c) = &cursor {
            request = request.query(&[("cursor", c.as_str())]);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("GET {base}/tenants to find the demo tenant"))?;
        let status = response.status();
        let page: Value = response
            .json()
            .await
            .with_context(|| format!("reading the answer to GET {base}/tenants ({status})"))?;
        if !status.is_success() {
            anyhow::bail!("listing tenants to find the demo tenant failed with {status}: {page}");
        }
        let found = page["items"].as_array().and_then(|items| {
            items.iter().find(|t| {
                t["name"] == DEMO_TENANT_NAME
                    && !matches!(t["state"].as_str(), Some("offboarding" | "offboarded"))
            })
        });
        if let Some(tenant) = found {
            return Ok(tenant["id"].as_str().map(str::to_owned));
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use polybot_control_plane::tenants::recording::Recording;
    use polybot_core::strategy::StrategiesConfig;

    #[test]
    fn the_demo_tenants_strategies_name_only_what_the_recording_holds() {
        let request = polybot_worker::demo::demo_tenant_request();
        let strategies: StrategiesConfig =
            serde_json::from_value(request["strategies"].clone()).unwrap();
        let refusals =
            Recording::from_jsonl(polybot_worker::demo::DEMO_REPLAY).refusals(&strategies);
        assert!(refusals.is_empty(), "{refusals:?}");
    }
}
