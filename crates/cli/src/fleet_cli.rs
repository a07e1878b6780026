//! `polybot fleet rollout …`: fleet-wide rollouts through the control
//! plane's `/fleet/rollouts` API (operators only); `polybot fleet
//! move-to-shared-login`: the move of older tenants to the shared worker
//! login (`/fleet/shared-login-moves`).
//!
//! Where it connects and with what token: as `polybot tenants` (`--url` /
//! `POLYBOT_URL`, `--token` / `POLYBOT_TOKEN`, else the data dir's
//! `operator-token`). `pause`, `resume`, `abort` and `status` act on the
//! newest rollout unless `--id` names one.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use secrecy::SecretString;
use serde_json::{Map, Value, json};

use crate::tenants_cli::{Api, print_json, table, text};

#[derive(Debug, Args)]
pub struct FleetArgs {
    /// The control plane's base URL (default: http:// and POLYBOT_LISTEN or 127.0.0.1:8080).
    #[arg(long, env = "POLYBOT_URL", global = true)]
    pub url: Option<String>,
    /// An operator bearer token (pbo_…); default: <data-dir>/operator-token.
    #[arg(long, env = "POLYBOT_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<SecretString>,
    /// The local data dir whose operator token to use when no token is given.
    #[arg(
        long,
        env = "POLYBOT_DATA_DIR",
        default_value = ".polybot",
        global = true
    )]
    pub data_dir: PathBuf,
    /// Print the API's JSON instead of a summary.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: FleetCommand,
}

#[derive(Debug, Subcommand)]
pub enum FleetCommand {
    /// Roll a new worker image or worker settings across every tenant.
    #[command(subcommand)]
    Rollout(RolloutCommand),
    /// Move the tenants onboarded before the shared worker login (each
    /// logging in with a database role of its own) to it: each tenant's
    /// secret gets the shared login and its claim, the reconciler replaces
    /// its worker, and its old role is dropped once the old worker has
    /// stopped. Idempotent: run it again to complete a move cut short.
    MoveToSharedLogin {
        /// Show what would be done, change nothing.
        #[arg(long)]
        dry_run: bool,
        /// How long to follow the move until every old role is dropped
        /// (seconds; 0: one pass). The control plane finishes by itself
        /// either way.
        #[arg(long, default_value_t = 120)]
        wait_secs: u64,
    },
}

/// A pass of the move in a few lines.
pub fn move_summary(pass: &Value) -> String {
    let rows: Vec<Vec<String>> = pass["tenants"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|t| vec![text(&t["tenant_id"]), text(&t["step"]), text(&t["detail"])])
                .collect()
        })
        .unwrap_or_default();
    let mut out = if rows.is_empty() {
        "no tenant logs in with a role of its own: nothing to move\n".to_owned()
    } else {
        table(&["TENANT", "STEP", "DETAIL"], &rows)
    };
    let remaining = pass["remaining"].as_u64().unwrap_or(0);
    if pass["dry_run"] == true {
        out.push_str("dry run: nothing was changed\n");
    } else if remaining > 0 {
        out.push_str(&format!(
            "{remaining} old role(s) remain; the control plane drops each once its old worker has stopped\n"
        ));
    }
    out
}

/// Runs passes of the move until none remains or `wait` has passed.
async fn move_to_shared_login(
    api: &Api,
    dry_run: bool,
    wait: std::time::Duration,
) -> anyhow::Result<Value> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let pass = api
            .call(
                reqwest::Method::POST,
                "/fleet/shared-login-moves",
                Some(json!({"dry_run": dry_run})),
                &[],
            )
            .await?
            .1;
        let remaining = pass["remaining"].as_u64().unwrap_or(0);
        if dry_run || remaining == 0 || tokio::time::Instant::now() >= deadline {
            return Ok(pass);
        }
        eprintln!("{remaining} tenant(s) still moving; checking again in 2 s");
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    }
}

#[derive(Debug, Subcommand)]
pub enum RolloutCommand {
    /// Start a rollout (one at a time): each tenant's worker is replaced by
    /// one running the new image/settings, at most --per-minute tenants a
    /// minute.
    Start {
        /// The worker image (ECS only), e.g. 123456789012.dkr.ecr.us-east-1.amazonaws.com/polybot:v2.
        #[arg(long)]
        image: Option<String>,
        /// A worker setting to set, NAME=VALUE (repeatable), e.g. POLYBOT_LOG=debug.
        #[arg(long = "setting", value_name = "NAME=VALUE")]
        settings: Vec<String>,
        /// Tenants begun per minute, 1 to 60.
        #[arg(long, default_value_t = 10)]
        per_minute: u32,
    },
    /// Stop beginning tenants until resumed (tenants already begun finish).
    Pause {
        #[arg(long)]
        id: Option<i64>,
    },
    /// Continue a paused rollout at its rate.
    Resume {
        #[arg(long)]
        id: Option<i64>,
    },
    /// Stop a rollout for good: tenants already begun keep the new release,
    /// the others keep theirs (nothing is rolled back).
    Abort {
        #[arg(long)]
        id: Option<i64>,
    },
    /// A rollout's state and progress.
    Status {
        #[arg(long)]
        id: Option<i64>,
    },
}

/// `NAME=VALUE` pairs as a JSON object.
fn settings(pairs: &[String]) -> anyhow::Result<Map<String, Value>> {
    pairs
        .iter()
        .map(|pair| {
            let (name, value) = pair
                .split_once('=')
                .with_context(|| format!("--setting {pair:?} is not NAME=VALUE"))?;
            Ok((name.trim().to_owned(), Value::String(value.to_owned())))
        })
        .collect()
}

/// A rollout in a few lines: what, state, progress, the latest tenants.
pub fn summary(rollout: &Value) -> String {
    let mut what = Vec::new();
    if let Some(image) = rollout["image"].as_str() {
        what.push(format!("image {image}"));
    }
    if let Some(settings) = rollout["settings"].as_object() {
        for (name, value) in settings {
            what.push(format!("{name}={}", text(value)));
        }
    }
    let progress = &rollout["progress"];
    let mut out = format!(
        "rollout {}: {} ({} a minute): {}\n",
        text(&rollout["id"]),
        text(&rollout["state"]),
        text(&rollout["per_minute"]),
        what.join(", ")
    );
    if let Some(reason) = rollout["reason"].as_str() {
        out.push_str(&format!("  {reason}\n"));
    }
    out.push_str(&format!(
        "  {} of {} tenants done, {} rolling, {} pending\n",
        text(&progress["done"]),
        text(&progress["total"]),
        text(&progress["rolling"]),
        text(&progress["pending"]),
    ));
    if let Some(next) = rollout["next_at"].as_str()
        && rollout["state"] == "running"
    {
        out.push_str(&format!("  next tenant at {next}\n"));
    }
    let recent: Vec<Vec<String>> = rollout["recent"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|t| {
                    vec![
                        text(&t["tenant_id"]),
                        text(&t["name"]),
                        text(&t["state"]),
                        text(&t["began_at"]),
                        text(&t["done_at"]),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    if !recent.is_empty() {
        out.push('\n');
        out.push_str(&table(
            &["TENANT", "NAME", "STATE", "BEGAN", "DONE"],
            &recent,
        ));
    }
    out
}

async fn id_or_current(api: &Api, id: Option<i64>) -> anyhow::Result<i64> {
    match id {
        Some(id) => Ok(id),
        None => api.get("/fleet/rollouts/current").await?["id"]
            .as_i64()
            .context("the control plane's current rollout has no id"),
    }
}

pub async fn run(args: FleetArgs) -> anyhow::Result<()> {
    let api = Api::connect(args.url.as_deref(), args.token.as_ref(), &args.data_dir)?;
    let command = match &args.command {
        FleetCommand::Rollout(command) => command,
        FleetCommand::MoveToSharedLogin { dry_run, wait_secs } => {
            let pass =
                move_to_shared_login(&api, *dry_run, std::time::Duration::from_secs(*wait_secs))
                    .await?;
            if args.json {
                return print_json(&pass);
            }
            print!("{}", move_summary(&pass));
            return Ok(());
        }
    };
    let rollout = match command {
        RolloutCommand::Start {
            image,
            settings: pairs,
            per_minute,
        } => {
            if image.is_none() && pairs.is_empty() {
                bail!("give --image, --setting NAME=VALUE, or both");
            }
            let mut body = json!({"per_minute": per_minute});
            if let Some(image) = image {
                body["image"] = Value::String(image.clone());
            }
            if !pairs.is_empty() {
                body["settings"] = Value::Object(settings(pairs)?);
            }
            api.call(reqwest::Method::POST, "/fleet/rollouts", Some(body), &[])
                .await?
                .1
        }
        RolloutCommand::Pause { id }
        | RolloutCommand::Resume { id }
        | RolloutCommand::Abort { id } => {
            let verb = match command {
                RolloutCommand::Pause { .. } => "pause",
                RolloutCommand::Resume { .. } => "resume",
                _ => "abort",
            };
            let id = id_or_current(&api, *id).await?;
            api.call(
                reqwest::Method::POST,
                &format!("/fleet/rollouts/{id}/{verb}"),
                None,
                &[],
            )
            .await?
            .1
        }
        RolloutCommand::Status { id } => match id {
            Some(id) => api.get(&format!("/fleet/rollouts/{id}")).await?,
            None => api.get("/fleet/rollouts/current").await?,
        },
    };
    if args.json {
        return print_json(&rollout);
    }
    print!("{}", summary(&rollout));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_name_value_pairs() {
        let parsed = settings(&["POLYBOT_LOG=debug".into(), "A=b=c".into()]).unwrap();
        assert_eq!(parsed["POLYBOT_LOG"], "debug");
        assert_eq!(parsed["A"], "b=c");
        let err = settings(&["nonsense".into()]).unwrap_err();
        assert_eq!(err.to_string(), "--setting \"nonsense\" is not NAME=VALUE");
    }

    #[test]
    fn the_summary_says_what_how_far_and_who() {
        let rollout = json!({
            "id": 3, "image": "polybot:v2", "settings": {"POLYBOT_LOG": "debug"},
            "per_minute": 30, "state": "paused", "reason": "paused by the operator",
            "next_at": "2026-01-01T00:00:02Z",
            "progress": {"total": 5, "done": 2, "rolling": 1, "pending": 2},
            "recent": [{"tenant_id": "t1", "name": "alice", "state": "rolling",
                        "began_at": "2026-01-01T00:00:00Z", "done_at": null}]
        });
        let text = summary(&rollout);
        assert!(
            text.starts_with(
                "rollout 3: paused (30 a minute): image polybot:v2, POLYBOT_LOG=debug\n  \
                 paused by the operator\n  2 of 5 tenants done, 1 rolling, 2 pending\n"
            ),
            "{text}"
        );
        assert!(!text.contains("next tenant"), "{text}");
        assert!(
            text.contains("t1      alice  rolling  2026-01-01T00:00:00Z  -"),
            "{text}"
        );
    }
}
