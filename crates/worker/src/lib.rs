//! The per-tenant worker: `polybot worker`.
//!
//! Settings ([`WorkerArgs`], the same for local processes and ECS tasks):
//! each has a flag and the environment variable a launcher sets, named in
//! [`polybot_core::worker::env`]; the venues' endpoints (the `POLYBOT_*_URL`
//! overrides, `POLYBOT_NEWSAPI_URL`, `POLYBOT_MARKET_DATA_URL`) are read by [`LiveSettings::from_env`]
//! when live data is on. A malformed value stops the worker at startup,
//! naming the variable.
//!
//! Life: take the tenant's lease with a new epoch → load the configuration
//! through row level security → run the engine over the event source
//! ([`source`]), turning its decisions into rows ([`persist`]) written in
//! batches → heartbeat ([`WorkerHealth`])
//! with per-strategy health and PnL, renewing the lease, every
//! `POLYBOT_HEARTBEAT_SECS` → on SIGTERM, stop taking events, flush, a final
//! heartbeat that releases the lease, and exit 0 well within ECS's 30 s.
//! Every write goes through a fenced transaction: when another worker has
//! taken the lease, the write fails and this worker exits with
//! [`exit::FENCED`](polybot_core::worker::exit::FENCED).
//!
//! The SQL is the store's ([`polybot_store::repo`]); this crate decides what
//! to write and when.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::builder::{OsStringValueParser, RangedU64ValueParser, TypedValueParser};
use polybot_core::TenantId;
use polybot_core::keys::ExchangeKeys;
use polybot_core::risk::{RiskLimits, parse_risk};
use polybot_core::strategy::{StrategiesConfig, Venue, parse_strategies};
use polybot_core::worker::{WorkerHealth, env};
use polybot_store::repo::{configs, heartbeats, lease};
use polybot_store::{Db, DbError};
use rust_decimal::Decimal;
use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::PgConnectOptions;

pub mod demo;
pub mod execution;
pub mod live;
pub mod persist;
pub mod run;
pub mod sandbox;
pub mod source;

pub use live::{LiveSettings, LiveSource};
pub use run::run;
pub use source::{EventSource, Pace, ReplaySettings, ReplaySource, SystemClock, TickSource};

/// Runs one tenant's trading engine. A launcher starts it with the
/// environment; every setting can also be given as a flag.
//
// Each value name is its environment variable's, so that clap's errors name
// the variable a launcher set. The secrets are parsed after clap, never by a
// value parser: clap repeats a value it cannot parse in its error.
#[derive(Debug, clap::Parser)]
#[command(name = "polybot worker")]
pub struct WorkerArgs {
    /// The tenant this worker serves (a UUID).
    #[arg(long, env = env::TENANT_ID, value_name = env::TENANT_ID)]
    pub tenant_id: TenantId,
    /// The worker's database login: the fleet's shared worker login through
    /// the pooler, with the tenant's claim in its `polybot_claim` parameter
    /// (postgres://polybot_workers:…@pooler:6432/db?polybot_claim=v1.…), or a
    /// tenant's own login (postgres://polybot_t_…@host/db) from before claims.
    #[arg(long, env = env::DATABASE_URL, value_name = env::DATABASE_URL, hide_env_values = true, required_unless_present = "secrets_stdin")]
    pub database_url: Option<SecretString>,
    /// Read DATABASE_URL and EXCHANGE_KEYS from standard input, a JSON object
    /// of those names, instead of the environment (what the local launcher
    /// does, so that the secrets are not in the worker's environment).
    #[arg(long, env = env::SECRETS_STDIN, value_name = env::SECRETS_STDIN, value_parser = parse_secrets_stdin)]
    pub secrets_stdin: bool,
    /// The tenant's exchange keys, the JSON object onboarding accepted;
    /// without them the worker paper-trades on public data.
    #[arg(long, env = env::EXCHANGE_KEYS, value_name = env::EXCHANGE_KEYS, hide_env_values = true)]
    pub exchange_keys: Option<SecretString>,
    /// `paper`, `shadow` (orders signed with the tenant's Polymarket or
    /// Kalshi keys and recorded, never sent) or `live` (sent to Polymarket's
    /// CLOB, `POLYBOT_POLYMARKET_CLOB_URL`, or Kalshi, `POLYBOT_KALSHI_URL`).
    #[arg(long, env = env::MODE, value_name = env::MODE, default_value = "paper")]
    pub mode: polybot_core::Mode,
    /// The hash of the spec the worker was started from; echoed in heartbeats.
    #[arg(long, env = env::SPEC_HASH, value_name = env::SPEC_HASH, default_value = "")]
    pub spec_hash: String,
    /// Seconds between heartbeats (fractions allowed); the lease lasts three.
    #[arg(long, env = env::HEARTBEAT_SECS, value_name = env::HEARTBEAT_SECS, default_value = "5", value_parser = parse_seconds)]
    pub heartbeat_secs: Duration,
    /// A JSONL market recording to trade on instead of live data (empty: none).
    #[arg(long, env = env::REPLAY, value_name = env::REPLAY, value_parser = OsStringValueParser::new().map(PathBuf::from))]
    pub replay: Option<PathBuf>,
    /// How fast to replay: `max`, or a multiple of recorded time (1 is real time).
    #[arg(long, env = env::REPLAY_SPEED, value_name = env::REPLAY_SPEED, default_value = "1")]
    pub replay_speed: Pace,
    /// Exit 0 once the recording is played out, instead of idling until stopped.
    #[arg(long, env = env::REPLAY_EXIT, value_name = env::REPLAY_EXIT, value_parser = parse_replay_exit)]
    pub replay_exit: bool,
    /// Trade on the venues' live public market data when no recording is
    /// given (the default); `0` runs without any market data (lifecycle
    /// tests). Endpoints from the `POLYBOT_*_URL` variables, NewsAPI from
    /// `POLYBOT_NEWSAPI_URL`.
    #[arg(long, env = env::LIVE_DATA, value_name = env::LIVE_DATA, default_value = "1", value_parser = parse_live_data)]
    pub live_data: bool,
    /// The operator's NewsAPI key, used when the tenant's keys have none.
    #[arg(long, env = env::NEWSAPI_KEY, value_name = env::NEWSAPI_KEY, hide_env_values = true)]
    pub newsapi_key: Option<SecretString>,
    /// Starting paper cash per venue, `venue=amount,…`.
    #[arg(long, env = env::PAPER_BALANCES, value_name = env::PAPER_BALANCES, default_value = DEFAULT_PAPER_BALANCES)]
    pub paper_balances: PaperBalances,
    /// Longest time decisions wait before they are written, in milliseconds.
    #[arg(long, env = env::FLUSH_MS, value_name = env::FLUSH_MS, default_value = "250", value_parser = RangedU64ValueParser::<u64>::new().range(1..))]
    pub flush_ms: u64,
    /// Most decisions buffered before they are written.
    #[arg(long, env = env::FLUSH_ROWS, value_name = env::FLUSH_ROWS, default_value = "500", value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    pub flush_rows: usize,
}

/// `1`/`0` and the other usual spellings of a switch. Clap's own parser
/// would not name the variable: a flag shows no value name.
fn parse_switch(variable: &str, text: &str) -> Result<bool, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        _ => Err(format!("{variable} must be 1 or 0, got {text:?}")),
    }
}

fn parse_replay_exit(text: &str) -> Result<bool, String> {
    parse_switch(env::REPLAY_EXIT, text)
}

fn parse_live_data(text: &str) -> Result<bool, String> {
    parse_switch(env::LIVE_DATA, text)
}

fn parse_secrets_stdin(text: &str) -> Result<bool, String> {
    parse_switch(env::SECRETS_STDIN, text)
}

/// The secrets a launcher writes to the worker's standard input.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct StdinSecrets {
    #[serde(rename = "DATABASE_URL")]
    database_url: SecretString,
    #[serde(rename = "EXCHANGE_KEYS", default)]
    exchange_keys: Option<SecretString>,
    /// The operator's NewsAPI key, from the local secret store.
    #[serde(rename = "POLYBOT_NEWSAPI_KEY", default)]
    newsapi_key: Option<SecretString>,
    /// The shared market-data service's Redis, with the `worker` user's
    /// password (`polybot up`'s private redis-server).
    #[serde(rename = "POLYBOT_MARKET_DATA_URL", default)]
    market_data_url: Option<SecretString>,
}

/// Parses what a launcher wrote to standard input. The error says where the
/// text is malformed, never what it holds (serde's own messages may quote it).
fn parse_stdin_secrets(text: &str) -> anyhow::Result<StdinSecrets> {
    serde_json::from_str(text).map_err(|e| {
        anyhow::anyhow!(
            "{}: standard input is not a JSON object of {} and {} ({:?} error at line {}, column {})",
            env::SECRETS_STDIN,
            env::DATABASE_URL,
            env::EXCHANGE_KEYS,
            e.classify(),
            e.line(),
            e.column()
        )
    })
}

/// A positive, finite number of seconds.
fn parse_seconds(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if !(secs.is_finite() && secs > 0.0) {
        return Err(format!(
            "must be a positive number of seconds, got {text:?}"
        ));
    }
    Duration::try_from_secs_f64(secs).map_err(|e| format!("{text:?} seconds: {e}"))
}

/// What the worker is started with.
pub struct WorkerConfig {
    pub tenant: TenantId,
    pub database: PgConnectOptions,
    /// The claim each transaction carries (the shared worker login), taken
    /// out of `DATABASE_URL`; `None` for a tenant's own login.
    pub claim: Option<polybot_store::WorkerClaim>,
    pub keys: ExchangeKeys,
    pub mode: polybot_core::Mode,
    pub spec_hash: String,
    pub heartbeat: Duration,
    /// `POLYBOT_REPLAY`: trade on a recording instead of live data.
    pub replay: Option<ReplaySettings>,
    /// `POLYBOT_LIVE_DATA`: trade on the venues' live public data (when no
    /// replay is given).
    pub live: Option<LiveSettings>,
    /// Starting paper cash per venue.
    pub paper_balances: Vec<(Venue, Decimal)>,
    /// Write the batch at least this often while decisions are waiting.
    pub flush_every: Duration,
    /// Write the batch as soon as this many rows are waiting.
    pub flush_rows: usize,
    /// The files besides the system's that the worker reads (its recording,
    /// its database's root certificate): all its [`sandbox`] lets it read.
    pub sandbox_files: Vec<PathBuf>,
    /// Where shadow and live orders go (`POLYBOT_POLYMARKET_CLOB_URL`,
    /// `POLYBOT_KALSHI_URL`).
    pub execution: execution::ExecutionSettings,
}

/// Without the database password (`PgConnectOptions`' own Debug prints it)
/// and the exchange keys' values.
impl fmt::Debug for WorkerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let database = format!(
            "postgres://{}:<redacted>@{}:{}/{}",
            self.database.get_username(),
            self.database.get_host(),
            self.database.get_port(),
            self.database.get_database().unwrap_or("")
        );
        f.debug_struct("WorkerConfig")
            .field("tenant", &self.tenant)
            .field("database", &database)
            .field("claim", &self.claim)
            .field("keys", &self.keys)
            .field("mode", &self.mode)
            .field("spec_hash", &self.spec_hash)
            .field("heartbeat", &self.heartbeat)
            .field("replay", &self.replay)
            .field("live", &self.live)
            .field("paper_balances", &self.paper_balances)
            .field("flush_every", &self.flush_every)
            .field("flush_rows", &self.flush_rows)
            .field("sandbox_files", &self.sandbox_files)
            .finish()
    }
}

/// Starting paper cash when `POLYBOT_PAPER_BALANCES` is not set.
const DEFAULT_PAPER_BALANCES: &str = "polymarket=1000,kalshi=1000";

/// Starting paper cash when `POLYBOT_PAPER_BALANCES` is not set.
pub fn default_paper_balances() -> Vec<(Venue, Decimal)> {
    vec![
        (Venue::Polymarket, Decimal::ONE_THOUSAND),
        (Venue::Kalshi, Decimal::ONE_THOUSAND),
    ]
}

/// Starting paper cash per venue, parsed from `polymarket=1000,kalshi=500`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaperBalances(pub Vec<(Venue, Decimal)>);

impl FromStr for PaperBalances {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        parse_balances(text).map(PaperBalances)
    }
}

/// Parses `polymarket=1000,kalshi=500`.
pub fn parse_balances(text: &str) -> Result<Vec<(Venue, Decimal)>, String> {
    let mut out: Vec<(Venue, Decimal)> = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (venue, amount) = part
            .split_once('=')
            .ok_or_else(|| format!("{part:?} is not venue=amount"))?;
        let venue: Venue = venue.trim().parse()?;
        let amount: Decimal = amount.trim().parse().map_err(|_| {
            format!(
                "{venue} balance {:?} is not a decimal number",
                amount.trim()
            )
        })?;
        if amount.is_sign_negative() {
            return Err(format!(
                "{venue} balance must not be negative, got {amount}"
            ));
        }
        if out.iter().any(|(v, _)| *v == venue) {
            return Err(format!("{venue} is listed twice"));
        }
        out.push((venue, amount));
    }
    Ok(out)
}

impl WorkerConfig {
    /// Reads the settings from the environment alone (no flags): what a
    /// launched worker does.
    pub fn from_env() -> anyhow::Result<Self> {
        use clap::Parser;
        let args = WorkerArgs::try_parse_from(["polybot worker"])
            .map_err(|e| anyhow::anyhow!("{}", e.render().to_string().trim_end()))?;
        Self::from_args(args)
    }

    /// Checks what clap cannot (the secrets, which clap must never echo) and
    /// adds the live-data settings; each error names its variable.
    pub fn from_args(mut args: WorkerArgs) -> anyhow::Result<Self> {
        let mut market_data_url = None;
        if args.secrets_stdin {
            use std::io::Read;
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text).map_err(|e| {
                anyhow::anyhow!("{}: reading standard input: {e}", env::SECRETS_STDIN)
            })?;
            let secrets = parse_stdin_secrets(&text)?;
            args.database_url = Some(secrets.database_url);
            args.exchange_keys = secrets.exchange_keys;
            if secrets.newsapi_key.is_some() {
                args.newsapi_key = secrets.newsapi_key;
            }
            market_data_url = secrets
                .market_data_url
                .filter(|url| !url.expose_secret().trim().is_empty());
        }
        let database_url = args.database_url.as_ref().ok_or_else(|| {
            anyhow::anyhow!(
                "{} is not set (nor {})",
                env::DATABASE_URL,
                env::SECRETS_STDIN
            )
        })?;
        let (database_url, claim) =
            polybot_store::claims::split_claim_from_url(database_url.expose_secret())
                .map_err(|e| anyhow::anyhow!("{}: {e}", env::DATABASE_URL))?;
        let database_url = SecretString::from(database_url);
        let database: PgConnectOptions = database_url
            .expose_secret()
            .parse()
            .map_err(|_| anyhow::anyhow!("{} is not a valid postgres:// URL", env::DATABASE_URL))?;
        if let Some(claim) = &claim {
            if claim.tenant() != args.tenant_id {
                anyhow::bail!(
                    "{}: the database claim is for tenant {}, not {} ({})",
                    env::DATABASE_URL,
                    claim.tenant(),
                    args.tenant_id,
                    env::TENANT_ID
                );
            }
            if claim.expires_at() <= chrono::Utc::now() {
                anyhow::bail!(
                    "{}: the database claim expired at {}; the control plane issues a new one \
                     when it rewrites the tenant's secret (docs/security.md, worker claims)",
                    env::DATABASE_URL,
                    claim.expires_at().to_rfc3339()
                );
            }
        }
        let keys = match &args.exchange_keys {
            Some(json) if !json.expose_secret().trim().is_empty() => {
                ExchangeKeys::from_secret_json(json).map_err(|errors| {
                    anyhow::anyhow!(
                        "{} does not validate: {}",
                        env::EXCHANGE_KEYS,
                        errors
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join("; ")
                    )
                })?
            }
            _ => ExchangeKeys::default(),
        };
        let replay = args
            .replay
            .filter(|path| !path.as_os_str().is_empty())
            .map(|path| ReplaySettings {
                path,
                pace: args.replay_speed,
                exit_at_end: args.replay_exit,
            });
        let live = match &replay {
            None if args.live_data => {
                let mut settings = LiveSettings::from_env()?;
                if let Some(url) = &market_data_url {
                    settings.set_market_data_url(url.expose_secret())?;
                }
                settings.newsapi_key = args
                    .newsapi_key
                    .filter(|key| !key.expose_secret().trim().is_empty());
                Some(settings)
            }
            _ => None,
        };
        let sandbox_files = sandbox::worker_files(
            replay.as_ref().map(|r| r.path.as_path()),
            database_url.expose_secret(),
        );
        Ok(Self {
            tenant: args.tenant_id,
            database,
            claim,
            keys,
            mode: args.mode,
            spec_hash: args.spec_hash,
            heartbeat: args.heartbeat_secs,
            replay,
            live,
            paper_balances: args.paper_balances.0,
            flush_every: Duration::from_millis(args.flush_ms),
            flush_rows: args.flush_rows,
            sandbox_files,
            execution: execution::ExecutionSettings::from_env()?,
        })
    }
}

/// Why a worker stopped.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("{0}")]
    Fenced(DbError),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl From<DbError> for WorkerError {
    fn from(err: DbError) -> Self {
        match err {
            DbError::Fenced { .. } | DbError::LeaseMissing { .. } => WorkerError::Fenced(err),
            other => WorkerError::Other(other.into()),
        }
    }
}

/// The tenant's configuration, read through row level security.
#[derive(Debug)]
pub struct TenantConfig {
    pub name: String,
    pub strategies: StrategiesConfig,
    pub risk: RiskLimits,
}

/// Takes the lease for the tenant with a new epoch; any earlier holder is fenced.
pub async fn take_lease(db: &Db, tenant: TenantId, ttl: Duration) -> Result<i64, DbError> {
    let holder = format!("pid {} on {}", std::process::id(), hostname());
    let mut tx = db.tenant(tenant).await?;
    let epoch = lease::take(&mut tx, &holder, ttl).await?;
    tx.commit().await?;
    Ok(epoch)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown-host".into())
}

/// Loads and validates the tenant's configuration.
pub async fn load_config(db: &Db, tenant: TenantId) -> Result<TenantConfig, WorkerError> {
    let mut tx = db.tenant(tenant).await?;
    let row = configs::for_worker(&mut tx).await?;
    tx.commit().await?;
    let row = row.ok_or_else(|| {
        anyhow::anyhow!("tenant {tenant} has no configuration this role can read")
    })?;
    let strategies = parse_strategies(&row.strategies).map_err(|errors| {
        anyhow::anyhow!(
            "the stored strategies do not validate: {}",
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        )
    })?;
    let risk = parse_risk(&row.risk).map_err(|errors| {
        anyhow::anyhow!(
            "the stored risk limits do not validate: {}",
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        )
    })?;
    Ok(TenantConfig {
        name: row.name,
        strategies,
        risk,
    })
}

/// Renews the lease and records a heartbeat, fenced by `epoch`.
pub async fn heartbeat(
    db: &Db,
    tenant: TenantId,
    epoch: i64,
    ttl: Duration,
    health: &WorkerHealth,
) -> Result<(), DbError> {
    let mut tx = db.fenced(tenant, epoch).await?;
    lease::renew(&mut tx, ttl).await?;
    heartbeats::insert(&mut tx, health).await?;
    tx.commit().await
}

/// Records a stopping worker's last heartbeat and lets its lease expire,
/// fenced by `epoch`.
pub async fn final_heartbeat(
    db: &Db,
    tenant: TenantId,
    epoch: i64,
    health: &WorkerHealth,
) -> Result<(), DbError> {
    let mut tx = db.fenced(tenant, epoch).await?;
    heartbeats::insert(&mut tx, health).await?;
    lease::release(&mut tx).await?;
    tx.commit().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// The settings a launcher gives, as flags (clap reads the environment
    /// the same way, and the tests must not change the process's).
    fn parse(extra: &[&str]) -> Result<WorkerArgs, String> {
        let mut argv = vec![
            "polybot worker",
            "--tenant-id",
            "6f1c0c9e-3b7a-4a55-9d0e-2f4f7f6f1a2b",
            "--database-url",
            "postgres://polybot_t_x:s3cret-password@db.example:5433/polybot",
        ];
        argv.extend_from_slice(extra);
        WorkerArgs::try_parse_from(argv).map_err(|e| e.render().to_string())
    }

    #[test]
    fn unset_settings_take_their_documented_defaults() {
        let config = WorkerConfig::from_args(parse(&[]).unwrap()).unwrap();
        assert_eq!(config.mode, polybot_core::Mode::Paper);
        assert_eq!(config.heartbeat, Duration::from_secs(5));
        assert_eq!(config.replay, None);
        let live = config.live.expect("live data is on by default");
        assert!(live.newsapi_key.is_none());
        assert_eq!(config.paper_balances, default_paper_balances());
        assert_eq!(config.flush_every, Duration::from_millis(250));
        assert_eq!(config.flush_rows, 500);
        assert_eq!(config.spec_hash, "");
        assert!(config.keys.is_empty());
    }

    #[test]
    fn a_bad_heartbeat_interval_is_refused_naming_its_variable() {
        for bad in ["soon", "0", "-1", "NaN"] {
            let err = parse(&[&format!("--heartbeat-secs={bad}")]).unwrap_err();
            assert!(err.contains(env::HEARTBEAT_SECS), "{bad}: {err}");
        }
        let args = parse(&["--heartbeat-secs", "0.2"]).unwrap();
        assert_eq!(args.heartbeat_secs, Duration::from_millis(200));
    }

    #[test]
    fn a_bad_mode_is_refused_naming_its_variable() {
        let err = parse(&["--mode", "yolo"]).unwrap_err();
        assert!(err.contains(env::MODE), "{err}");
        assert_eq!(
            parse(&["--mode", "live"]).unwrap().mode,
            polybot_core::Mode::Live
        );
    }

    #[test]
    fn a_bad_flush_size_is_refused_naming_its_variable() {
        for bad in ["0", "-5", "many"] {
            let err = parse(&[&format!("--flush-rows={bad}")]).unwrap_err();
            assert!(err.contains(env::FLUSH_ROWS), "{bad}: {err}");
        }
        let err = parse(&["--flush-ms", "0"]).unwrap_err();
        assert!(err.contains(env::FLUSH_MS), "{err}");
    }

    #[test]
    fn a_replay_takes_its_speed_and_exit_settings() {
        let args = parse(&[
            "--replay",
            "/tmp/r.jsonl",
            "--replay-speed",
            "max",
            "--replay-exit",
        ])
        .unwrap();
        let config = WorkerConfig::from_args(args).unwrap();
        assert_eq!(
            config.replay,
            Some(ReplaySettings {
                path: PathBuf::from("/tmp/r.jsonl"),
                pace: Pace::AsFastAsPossible,
                exit_at_end: true,
            })
        );
        let err = parse(&["--replay-speed", "fast"]).unwrap_err();
        assert!(err.contains(env::REPLAY_SPEED), "{err}");
        let empty = WorkerConfig::from_args(parse(&["--replay", ""]).unwrap()).unwrap();
        assert_eq!(empty.replay, None, "an empty POLYBOT_REPLAY means none");
    }

    #[test]
    fn the_replay_exit_switch_reads_the_usual_spellings_and_refuses_others() {
        for on in ["1", "true", "YES", "on"] {
            assert_eq!(parse_replay_exit(on), Ok(true), "{on}");
        }
        for off in ["0", "false", "no", "off", ""] {
            assert_eq!(parse_replay_exit(off), Ok(false), "{off}");
        }
        let err = parse_replay_exit("maybe").unwrap_err();
        assert!(err.contains(env::REPLAY_EXIT), "{err}");
    }

    #[test]
    fn the_operators_newsapi_key_reaches_the_live_source_and_an_empty_one_is_none() {
        let config =
            WorkerConfig::from_args(parse(&["--newsapi-key", "operator-key"]).unwrap()).unwrap();
        let live = config.live.expect("live data");
        assert_eq!(
            live.newsapi_key.as_ref().map(ExposeSecret::expose_secret),
            Some("operator-key")
        );
        let config = WorkerConfig::from_args(parse(&["--newsapi-key", " "]).unwrap()).unwrap();
        assert!(config.live.expect("live data").newsapi_key.is_none());
    }

    #[test]
    fn live_data_is_a_switch_and_a_bad_value_names_its_variable() {
        assert!(parse(&["--live-data"]).unwrap().live_data);
        // Live data is the default: a worker trades unless told otherwise.
        assert!(parse(&[]).unwrap().live_data);
        // The variable's value goes through the same parser as the flag's.
        assert_eq!(parse_live_data(" yes "), Ok(true));
        assert_eq!(parse_live_data("0"), Ok(false));
        let err = parse_live_data("sometimes").unwrap_err();
        assert!(err.contains(env::LIVE_DATA), "{err}");
    }

    #[test]
    fn bad_paper_balances_are_refused_naming_their_variable() {
        let err = parse(&["--paper-balances", "polymarket=lots"]).unwrap_err();
        assert!(err.contains(env::PAPER_BALANCES), "{err}");
        let args = parse(&["--paper-balances", "kalshi=5"]).unwrap();
        assert_eq!(
            args.paper_balances.0,
            vec![(Venue::Kalshi, Decimal::from(5))]
        );
    }

    #[test]
    fn a_bad_database_url_or_tenant_is_refused_without_echoing_the_url() {
        let argv = [
            "polybot worker",
            "--tenant-id",
            "6f1c0c9e-3b7a-4a55-9d0e-2f4f7f6f1a2b",
            "--database-url",
            "postgres://root:hunter2-hunter2@x:port/db",
        ];
        let err = WorkerConfig::from_args(WorkerArgs::try_parse_from(argv).unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains(env::DATABASE_URL), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        let err = WorkerArgs::try_parse_from(["polybot worker", "--tenant-id", "t1"])
            .unwrap_err()
            .render()
            .to_string();
        assert!(err.contains(env::TENANT_ID), "{err}");
    }

    #[test]
    fn secrets_on_stdin_are_a_json_object_of_the_database_url_and_the_keys() {
        // Without DATABASE_URL set, this parse proves the flag stands in for
        // it (clap reads the test's own environment, which may set it; the
        // CLI's worker_isolation test runs the worker with none).
        let args = WorkerArgs::try_parse_from([
            "polybot worker",
            "--tenant-id",
            "6f1c0c9e-3b7a-4a55-9d0e-2f4f7f6f1a2b",
            "--secrets-stdin",
        ])
        .unwrap();
        assert!(args.secrets_stdin);
        let secrets = parse_stdin_secrets(
            r#"{"DATABASE_URL": "postgres://polybot_t_x:pw@db/polybot", "EXCHANGE_KEYS": "{}"}"#,
        )
        .unwrap();
        assert_eq!(
            secrets.database_url.expose_secret(),
            "postgres://polybot_t_x:pw@db/polybot"
        );
        assert_eq!(
            secrets.exchange_keys.as_ref().map(|k| k.expose_secret()),
            Some("{}")
        );
        assert!(secrets.newsapi_key.is_none());
        // The operator's NewsAPI key rides along from the local secret store.
        let secrets = parse_stdin_secrets(
            r#"{"DATABASE_URL": "postgres://x", "POLYBOT_NEWSAPI_KEY": "operator-key"}"#,
        )
        .unwrap();
        assert_eq!(
            secrets.newsapi_key.as_ref().map(|k| k.expose_secret()),
            Some("operator-key")
        );
        // So does the private Redis's worker password (`polybot up`).
        let secrets = parse_stdin_secrets(
            r#"{"DATABASE_URL": "postgres://x", "POLYBOT_MARKET_DATA_URL": "redis://worker:pw@127.0.0.1:6379"}"#,
        )
        .unwrap();
        assert_eq!(
            secrets.market_data_url.as_ref().map(|k| k.expose_secret()),
            Some("redis://worker:pw@127.0.0.1:6379")
        );
    }

    #[test]
    fn malformed_secrets_on_stdin_are_refused_without_echoing_them() {
        for text in [
            r#"{"DATABASE_URL": 42, "EXCHANGE_KEYS": "hunter2-hunter2"}"#,
            r#"{"DATABASE_URL": "postgres://u:hunter2-hunter2@h/db", "PASSWORD": "hunter2-hunter2"}"#,
            r#"{"EXCHANGE_KEYS": "hunter2-hunter2"}"#,
            "hunter2-hunter2",
        ] {
            let err = parse_stdin_secrets(text).err().map(|e| e.to_string());
            let err = err.unwrap_or_else(|| panic!("{text} was accepted"));
            assert!(err.contains(env::SECRETS_STDIN), "{err}");
            assert!(!err.contains("hunter2"), "{err}");
        }
    }

    #[test]
    fn bad_exchange_keys_are_refused_without_echoing_them() {
        let args = parse(&["--exchange-keys", "{\"kalshi\": \"hunter2-hunter2\"}"]).unwrap();
        let err = WorkerConfig::from_args(args).unwrap_err().to_string();
        assert!(err.contains(env::EXCHANGE_KEYS), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn debug_output_hides_the_database_password_and_the_keys() {
        let args = parse(&[
            "--exchange-keys",
            r#"{"newsapi": {"api_key": "hunter2-hunter2"}}"#,
        ]);
        let text = format!("{args:?}");
        assert!(!text.contains("s3cret-password"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
        let config = WorkerConfig::from_args(args.unwrap());
        let text = format!("{config:?}");
        assert!(!text.contains("s3cret-password"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("db.example:5433/polybot"), "{text}");
    }

    #[test]
    fn the_help_names_every_variable_and_shows_no_secret() {
        use clap::CommandFactory;
        let help = WorkerArgs::command().render_long_help().to_string();
        for name in [
            env::TENANT_ID,
            env::DATABASE_URL,
            env::EXCHANGE_KEYS,
            env::MODE,
            env::SPEC_HASH,
            env::HEARTBEAT_SECS,
            env::REPLAY,
            env::REPLAY_SPEED,
            env::REPLAY_EXIT,
            env::PAPER_BALANCES,
            env::FLUSH_MS,
            env::FLUSH_ROWS,
        ] {
            assert!(help.contains(&format!("[env: {name}")), "{name} in\n{help}");
        }
        assert_eq!(
            PaperBalances::from_str(DEFAULT_PAPER_BALANCES).unwrap().0,
            default_paper_balances()
        );
    }
}
