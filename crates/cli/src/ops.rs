//! Operator commands that inspect rather than run: `polybot doctor` and `polybot cost`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};
use polybot_deploy_spec::cost::{Architecture, Assumptions, Estimate, PriceTable, estimate};
use polybot_venues::doctor::{DoctorOptions, probe_all};
use polybot_venues::endpoints::Endpoints;
use rust_decimal::Decimal;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Seconds each probe may take.
    #[arg(long, default_value_t = 3)]
    pub timeout: u64,
    /// The data dir whose local secret store and workers to check.
    #[arg(long, env = "POLYBOT_DATA_DIR", default_value = ".polybot")]
    pub data_dir: PathBuf,
    /// The database the control plane would use (default: the data dir's private one).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<SecretString>,
    /// A running control plane to check too (`http://127.0.0.1:8080`): its
    /// readiness and, with a token, its workers and heartbeats.
    #[arg(long, env = "POLYBOT_URL")]
    pub url: Option<String>,
    /// The bearer token for `--url` (default: <data-dir>/operator-token).
    #[arg(long, env = "POLYBOT_TOKEN", hide_env_values = true)]
    pub token: Option<SecretString>,
}

/// The width doctor's text fits in.
const COLUMNS: usize = 100;

/// `text` in lines of at most `COLUMNS` characters, each starting with
/// `indent` (words longer than a line are cut).
fn wrap(text: &str, indent: &str) -> String {
    let room = COLUMNS.saturating_sub(indent.chars().count()).max(20);
    let mut out = String::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        let word: String = word.chars().take(room).collect();
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > room {
            out.push_str(indent);
            out.push_str(&line);
            out.push('\n');
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(&word);
    }
    if !line.is_empty() {
        out.push_str(indent);
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// One checked thing: a heading line, then its details wrapped and indented.
fn block(name: &str, status: &str, extra: &str, details: &[(&str, &str)]) -> String {
    let mut head = format!("{name:<24} {status:<12} {extra}");
    head = head.trim_end().chars().take(COLUMNS).collect();
    let mut out = head;
    out.push('\n');
    for (label, text) in details {
        if text.is_empty() || *text == "-" {
            continue;
        }
        out.push_str(&wrap(&format!("{label}: {text}"), "    "));
    }
    out
}

/// What a running control plane says: readiness and, with a token, its fleet.
async fn instance_checks(args: &DoctorArgs, url: &str) -> Vec<Check> {
    let base = url.trim_end_matches('/');
    let mut checks = Vec::new();
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(args.timeout))
        .build()
    {
        Ok(c) => c,
        Err(err) => {
            checks.push(check(
                "instance",
                false,
                err.to_string(),
                "check the TLS setup",
            ));
            return checks;
        }
    };
    match client.get(format!("{base}/readyz")).send().await {
        Ok(r) if r.status().is_success() => {
            checks.push(check(
                "instance",
                true,
                format!("{base}/readyz answers {}", r.status()),
                "",
            ));
        }
        Ok(r) => {
            let status = r.status();
            let body: String = r
                .text()
                .await
                .unwrap_or_default()
                .chars()
                .take(200)
                .collect();
            checks.push(check(
                "instance",
                false,
                format!("{base}/readyz answers {status}: {body}"),
                "see the control plane's log; `polybot doctor` without --url checks its database",
            ));
            return checks;
        }
        Err(err) => {
            checks.push(check(
                "instance",
                false,
                format!("{base}/readyz: {err}"),
                "start it (`polybot up`) or pass the --url it listens on",
            ));
            return checks;
        }
    }
    let token = match &args.token {
        Some(t) => Some(t.expose_secret().to_owned()),
        None => std::fs::read_to_string(args.data_dir.join("operator-token"))
            .ok()
            .map(|t| t.trim().to_owned()),
    };
    let Some(token) = token else {
        checks.push(check(
            "workers",
            false,
            "no token to read the fleet with".to_owned(),
            "pass --token or POLYBOT_TOKEN, or --data-dir where operator-token is",
        ));
        return checks;
    };
    let fleet = client
        .get(format!("{base}/fleet?limit=500"))
        .bearer_auth(&token)
        .send()
        .await;
    let fleet: serde_json::Value = match fleet {
        Ok(r) if r.status().is_success() => r.json().await.unwrap_or_default(),
        Ok(r) => {
            checks.push(check(
                "workers",
                false,
                format!("{base}/fleet answers {}", r.status()),
                "use a valid operator token",
            ));
            return checks;
        }
        Err(err) => {
            checks.push(check(
                "workers",
                false,
                format!("{base}/fleet: {err}"),
                "retry",
            ));
            return checks;
        }
    };
    let items = fleet["items"].as_array().cloned().unwrap_or_default();
    let desired: Vec<&serde_json::Value> =
        items.iter().filter(|t| t["desired"] == "running").collect();
    let running = desired
        .iter()
        .filter(|t| t["worker"]["state"] == "running")
        .count();
    let stale: Vec<String> = desired
        .iter()
        .filter(|t| {
            t["last_heartbeat"]["age_seconds"]
                .as_i64()
                .is_none_or(|s| s > 30)
        })
        .map(|t| t["name"].as_str().unwrap_or("?").to_owned())
        .collect();
    checks.push(check(
        "workers",
        running == desired.len(),
        format!(
            "{} tenants; {running} of {} workers that should run are running",
            items.len(),
            desired.len()
        ),
        "see `polybot tenants list` and each tenant's last error (`polybot tenants show NAME`)",
    ));
    checks.push(check(
        "heartbeats",
        stale.is_empty(),
        if stale.is_empty() {
            "every running worker reported within 30 s".to_owned()
        } else {
            format!("no heartbeat within 30 s from: {}", stale.join(", "))
        },
        "a silent worker is restarted by the reconciler; see its timeline on the dashboard",
    ));
    checks
}

/// One platform check beside the venue rows.
#[derive(Debug, Serialize)]
struct Check {
    component: &'static str,
    status: &'static str,
    notes: String,
    fix: String,
}

fn check(component: &'static str, ok: bool, notes: String, fix: &str) -> Check {
    Check {
        component,
        status: if ok { "ok" } else { "problem" },
        notes,
        fix: if ok { String::new() } else { fix.to_owned() },
    }
}

async fn platform_checks(args: &DoctorArgs) -> Vec<Check> {
    let mut checks = Vec::new();
    // Database.
    match &args.database_url {
        Some(url) => {
            let result = async {
                let options: PgConnectOptions = url
                    .expose_secret()
                    .parse()
                    .context("DATABASE_URL is not a postgres:// URL")?;
                let mut conn =
                    tokio::time::timeout(Duration::from_secs(args.timeout), options.connect())
                        .await
                        .context("no answer within the timeout")??;
                let applied = polybot_store::applied_migrations(&mut conn).await?;
                conn.close().await?;
                anyhow::Ok(applied)
            }
            .await;
            let expected = polybot_store::MIGRATOR.iter().count();
            checks.push(match result {
                Ok(n) if n >= expected => check(
                    "database",
                    true,
                    format!("reachable; {n} migrations applied"),
                    "",
                ),
                Ok(n) => check(
                    "database",
                    false,
                    format!("reachable; {n} of {expected} migrations applied"),
                    "run `polybot migrate`",
                ),
                Err(err) => check(
                    "database",
                    false,
                    format!("{err:#}"),
                    "check DATABASE_URL and that the server accepts connections",
                ),
            });
        }
        None => {
            let found = polybot_store::embedded::Binaries::locate();
            checks.push(match found {
                Ok(b) => check(
                    "database",
                    true,
                    format!("private PostgreSQL from {}", b.postgres.display()),
                    "",
                ),
                Err(err) => check(
                    "database",
                    false,
                    err.to_string(),
                    "apt-get install postgresql, or set DATABASE_URL",
                ),
            });
        }
    }
    // Secret store (local): the master key.
    let key_file = args.data_dir.join("master.key");
    checks.push(if std::env::var_os("POLYBOT_MASTER_KEY").is_some() {
        match polybot_secrets::local::MasterKey::parse(&SecretString::from(
            std::env::var("POLYBOT_MASTER_KEY").unwrap_or_default(),
        )) {
            Ok(key) => check(
                "secret store",
                true,
                format!("local, master key {} from POLYBOT_MASTER_KEY", key.id()),
                "",
            ),
            Err(err) => check(
                "secret store",
                false,
                err.to_string(),
                "set POLYBOT_MASTER_KEY to 32 bytes in hex or base64",
            ),
        }
    } else if key_file.exists() {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file)
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or(0);
        check(
            "secret store",
            mode & 0o077 == 0,
            format!(
                "local, master key in {} (mode {mode:o})",
                key_file.display()
            ),
            "chmod 600 the key file",
        )
    } else {
        check(
            "secret store",
            true,
            format!(
                "local; a master key will be created in {}",
                key_file.display()
            ),
            "",
        )
    });
    // Launcher (local): the binary that workers run.
    checks.push(match std::env::current_exe() {
        Ok(path) => check(
            "launcher",
            true,
            format!("local processes running {} worker", path.display()),
            "",
        ),
        Err(err) => check(
            "launcher",
            false,
            err.to_string(),
            "run polybot from a readable path",
        ),
    });
    checks
}

pub async fn doctor(args: DoctorArgs) -> anyhow::Result<()> {
    let mut options = DoctorOptions::from_env();
    options.timeout = Duration::from_secs(args.timeout);
    let endpoints = Endpoints::from_env().context("a venue endpoint variable is invalid")?;
    let instance = async {
        match &args.url {
            Some(url) => instance_checks(&args, url).await,
            None => Vec::new(),
        }
    };
    let (venues, mut platform, instance) = tokio::join!(
        probe_all(&endpoints, options),
        platform_checks(&args),
        instance
    );
    platform.extend(instance);
    if args.json {
        let doc = serde_json::json!({"venues": venues, "platform": platform});
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    let mut out = String::from("VENUES\n");
    for r in &venues.rows {
        let latency = format!("{} ms", r.latency_ms);
        out.push_str(&block(
            &r.venue_name,
            r.status.label(),
            &latency,
            &[
                ("endpoint", r.endpoint.as_str()),
                ("notes", r.notes.as_str()),
                ("fix", r.fix.as_deref().unwrap_or("")),
            ],
        ));
    }
    out.push_str("\nPLATFORM\n");
    for c in &platform {
        out.push_str(&block(
            c.component,
            c.status,
            "",
            &[("notes", c.notes.as_str()), ("fix", c.fix.as_str())],
        ));
    }
    print!("{out}");
    Ok(())
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Arch {
    Arm64,
    #[value(name = "x86-64")]
    X86_64,
}

#[derive(Debug, Args)]
pub struct CostArgs {
    /// Tenant counts to estimate (repeatable).
    #[arg(long = "tenants", default_values_t = vec![25u32, 50, 100, 1000])]
    pub tenants: Vec<u32>,
    /// CPU units per worker (1024 = 1 vCPU).
    #[arg(long)]
    pub worker_cpu: Option<u32>,
    /// MiB per worker.
    #[arg(long)]
    pub worker_memory: Option<u32>,
    /// Worker architecture.
    #[arg(long, value_enum)]
    pub arch: Option<Arch>,
    /// Share of workers on Fargate Spot, 0 to 1.
    #[arg(long)]
    pub spot_share: Option<Decimal>,
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Each tenant's cost and margin in a month, from the control plane's
    /// usage, instead of the fleet estimate.
    #[arg(long)]
    pub per_tenant: bool,
    /// With --per-tenant: the month, YYYY-MM (default: this month so far).
    #[arg(long, requires = "per_tenant")]
    pub month: Option<String>,
    /// With --per-tenant: the control plane's base URL (default: http:// and
    /// POLYBOT_LISTEN or 127.0.0.1:8080).
    #[arg(long, env = "POLYBOT_URL", requires = "per_tenant")]
    pub url: Option<String>,
    /// With --per-tenant: an operator token; default: <data-dir>/operator-token.
    #[arg(long, env = "POLYBOT_TOKEN", hide_env_values = true)]
    pub token: Option<SecretString>,
    /// The local data dir whose operator token to use when no token is given.
    #[arg(long, env = "POLYBOT_DATA_DIR", default_value = ".polybot")]
    pub data_dir: PathBuf,
}

fn architecture(arch: Option<Arch>) -> Architecture {
    match arch {
        Some(Arch::X86_64) => Architecture::X86_64,
        Some(Arch::Arm64) | None => Architecture::Arm64,
    }
}

/// `polybot cost --per-tenant`: prices `GET /billing/usage`.
async fn per_tenant(args: &CostArgs) -> anyhow::Result<()> {
    let prices = PriceTable::us_east_1()?;
    let defaults = Assumptions::default();
    let default_size = polybot_deploy_spec::FargateSize::new(
        args.worker_cpu.unwrap_or(defaults.worker_cpu),
        args.worker_memory.unwrap_or(defaults.worker_memory),
    )
    .context("--worker-cpu/--worker-memory: the size of workers whose plan names none")?;
    let api =
        crate::tenants_cli::Api::connect(args.url.as_deref(), args.token.as_ref(), &args.data_dir)?;
    let path = match &args.month {
        Some(month) => format!("/billing/usage?month={month}"),
        None => "/billing/usage".to_owned(),
    };
    let usage: polybot_control_plane::billing::api::UsageList =
        serde_json::from_value(api.get(&path).await?)
            .context("the control plane's usage is not in the expected shape")?;
    let rows = crate::tenant_cost::margins(&prices, architecture(args.arch), default_size, &usage)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print!("{}", crate::tenant_cost::render(&usage, &rows));
    }
    Ok(())
}

pub async fn cost(args: CostArgs) -> anyhow::Result<()> {
    if args.per_tenant {
        return per_tenant(&args).await;
    }
    let prices = PriceTable::us_east_1()?;
    let mut estimates: Vec<Estimate> = Vec::new();
    for tenants in &args.tenants {
        let mut a = Assumptions::for_tenants(*tenants);
        if let Some(cpu) = args.worker_cpu {
            a.worker_cpu = cpu;
        }
        if let Some(memory) = args.worker_memory {
            a.worker_memory = memory;
        }
        if args.arch.is_some() {
            a.architecture = architecture(args.arch);
        }
        if let Some(share) = args.spot_share {
            a.spot_share = share;
        }
        estimates.push(estimate(&prices, &a)?);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&estimates)?);
    } else {
        for e in &estimates {
            println!("{}", e.render_table());
        }
    }
    Ok(())
}
