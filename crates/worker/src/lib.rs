//! The per-tenant worker: `polybot worker`.
//!
//! Environment contract (the same for local processes and ECS tasks):
//! `TENANT_ID`, `DATABASE_URL` (the tenant's own login role), `EXCHANGE_KEYS`
//! (JSON, optional), `POLYBOT_MODE` (`paper`/`live`), `POLYBOT_SPEC_HASH`,
//! and optionally `POLYBOT_HEARTBEAT_SECS`, `POLYBOT_REPLAY` (a recorded
//! JSONL file to trade on instead of live data), `POLYBOT_REPLAY_SPEED`
//! (`max`, or a factor: 1 is real time), `POLYBOT_REPLAY_EXIT` (`1`: exit 0
//! once the recording is played out), `POLYBOT_PAPER_BALANCES` (starting
//! cash, `polymarket=1000,kalshi=1000` by default), `POLYBOT_FLUSH_MS` and
//! `POLYBOT_FLUSH_ROWS` (batching of writes, 250 ms / 500 rows),
//! `POLYBOT_LIVE_DATA` (`1`: trade on the venues' live public data, see
//! [`live`]; a `POLYBOT_REPLAY` takes precedence) with the venues'
//! `POLYBOT_*_URL` endpoint overrides and `POLYBOT_NEWSAPI_URL`.
//!
//! Life: take the tenant's lease with a new epoch → load the configuration
//! through row level security → run the engine over the event source
//! ([`source`]), turning its decisions into rows ([`persist`]) written in
//! batches → heartbeat with per-strategy health and PnL, renewing the lease,
//! every `POLYBOT_HEARTBEAT_SECS` → on SIGTERM, stop taking events, flush, a
//! final heartbeat and exit 0 well within ECS's 30 s. Every write goes
//! through a fenced transaction: when another worker has taken the lease,
//! the write fails and this worker exits with [`EXIT_FENCED`].

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use polybot_core::TenantId;
use polybot_core::keys::ExchangeKeys;
use polybot_core::risk::{RiskLimits, parse_risk};
use polybot_core::strategy::{StrategiesConfig, Venue, parse_strategies};
use polybot_store::{Db, DbError};
use rust_decimal::Decimal;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use sqlx::postgres::PgConnectOptions;

pub mod demo;
pub mod live;
pub mod persist;
pub mod run;
pub mod source;

pub use live::{LiveSettings, LiveSource};
pub use run::run;
pub use source::{EventSource, Pace, ReplaySettings, ReplaySource, SystemClock, TickSource};

/// The exit code of a worker that lost its lease to another.
pub const EXIT_FENCED: i32 = 3;

/// What the worker is started with.
#[derive(Debug)]
pub struct WorkerConfig {
    pub tenant: TenantId,
    pub database: PgConnectOptions,
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
}

/// Starting paper cash when `POLYBOT_PAPER_BALANCES` is not set.
pub fn default_paper_balances() -> Vec<(Venue, Decimal)> {
    vec![
        (Venue::Polymarket, Decimal::ONE_THOUSAND),
        (Venue::Kalshi, Decimal::ONE_THOUSAND),
    ]
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
    /// Reads the environment contract; each missing or bad variable is named.
    pub fn from_env() -> anyhow::Result<Self> {
        let tenant: TenantId = std::env::var("TENANT_ID")
            .context("TENANT_ID is not set: the launcher passes it to every worker")?
            .parse()
            .context("TENANT_ID")?;
        let url = SecretString::from(
            std::env::var("DATABASE_URL")
                .context("DATABASE_URL is not set: the worker connects as its tenant's role")?,
        );
        let database: PgConnectOptions = url
            .expose_secret()
            .parse()
            .map_err(|_| anyhow::anyhow!("DATABASE_URL is not a valid postgres:// URL"))?;
        let keys = match std::env::var("EXCHANGE_KEYS") {
            Ok(json) if !json.trim().is_empty() => {
                ExchangeKeys::from_secret_json(&SecretString::from(json)).map_err(|errors| {
                    anyhow::anyhow!(
                        "EXCHANGE_KEYS does not validate: {}",
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
        let mode = std::env::var("POLYBOT_MODE")
            .unwrap_or_else(|_| "paper".into())
            .parse()
            .map_err(|e: String| anyhow::anyhow!("POLYBOT_MODE: {e}"))?;
        let heartbeat = std::env::var("POLYBOT_HEARTBEAT_SECS")
            .ok()
            .map(|s| {
                s.parse::<f64>()
                    .context("POLYBOT_HEARTBEAT_SECS must be a number of seconds")
            })
            .transpose()?
            .map(Duration::from_secs_f64)
            .unwrap_or(Duration::from_secs(5));
        let replay = match std::env::var("POLYBOT_REPLAY") {
            Ok(path) if !path.trim().is_empty() => Some(ReplaySettings {
                path: PathBuf::from(path),
                pace: match std::env::var("POLYBOT_REPLAY_SPEED") {
                    Ok(speed) => speed
                        .parse()
                        .map_err(|e: String| anyhow::anyhow!("POLYBOT_REPLAY_SPEED: {e}"))?,
                    Err(_) => Pace::Speed(Decimal::ONE),
                },
                exit_at_end: std::env::var("POLYBOT_REPLAY_EXIT").is_ok_and(|v| v == "1"),
            }),
            _ => None,
        };
        let live = match &replay {
            None if live::live_data_requested(
                std::env::var(live::ENV_LIVE_DATA).ok().as_deref(),
            ) =>
            {
                Some(LiveSettings::from_env()?)
            }
            _ => None,
        };
        let paper_balances = match std::env::var("POLYBOT_PAPER_BALANCES") {
            Ok(text) => {
                parse_balances(&text).map_err(|e| anyhow::anyhow!("POLYBOT_PAPER_BALANCES: {e}"))?
            }
            Err(_) => default_paper_balances(),
        };
        let number = |name: &str, default: u64| -> anyhow::Result<u64> {
            match std::env::var(name) {
                Ok(v) => v
                    .trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|n| *n > 0)
                    .with_context(|| format!("{name} must be a positive whole number, got {v:?}")),
                Err(_) => Ok(default),
            }
        };
        Ok(Self {
            tenant,
            database,
            keys,
            mode,
            spec_hash: std::env::var("POLYBOT_SPEC_HASH").unwrap_or_default(),
            heartbeat,
            replay,
            live,
            paper_balances,
            flush_every: Duration::from_millis(number("POLYBOT_FLUSH_MS", 250)?),
            flush_rows: usize::try_from(number("POLYBOT_FLUSH_ROWS", 500)?).unwrap_or(500),
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
    let epoch: i64 = sqlx::query_scalar(
        "INSERT INTO worker_leases (tenant_id, epoch, holder, expires_at) \
         VALUES ($1, 1, $2, now() + make_interval(secs => $3)) \
         ON CONFLICT (tenant_id) DO UPDATE SET epoch = worker_leases.epoch + 1, holder = EXCLUDED.holder, \
            acquired_at = now(), renewed_at = now(), expires_at = EXCLUDED.expires_at \
         RETURNING epoch",
    )
    .bind(tenant.as_uuid())
    .bind(holder)
    .bind(ttl.as_secs_f64())
    .fetch_one(&mut *tx)
    .await
    .map_err(DbError::query("taking the worker lease"))?;
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
    let row: Option<(String, Value, Value)> = sqlx::query_as(
        "SELECT t.name, c.strategies, c.risk FROM tenants t JOIN tenant_configs c ON c.tenant_id = t.id WHERE t.id = $1",
    )
    .bind(tenant.as_uuid())
    .fetch_optional(&mut *tx)
    .await
    .map_err(DbError::query("loading the tenant's configuration"))?;
    tx.commit().await?;
    let (name, strategies, risk) = row.ok_or_else(|| {
        anyhow::anyhow!("tenant {tenant} has no configuration this role can read")
    })?;
    let strategies = parse_strategies(&strategies).map_err(|errors| {
        anyhow::anyhow!(
            "the stored strategies do not validate: {}",
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        )
    })?;
    let risk = parse_risk(&risk).map_err(|errors| {
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
        name,
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
    health: Value,
) -> Result<(), DbError> {
    let mut tx = db.fenced(tenant, epoch).await?;
    sqlx::query(
        "UPDATE worker_leases SET renewed_at = now(), expires_at = now() + make_interval(secs => $3) \
         WHERE tenant_id = $1 AND epoch = $2",
    )
    .bind(tenant.as_uuid())
    .bind(epoch)
    .bind(ttl.as_secs_f64())
    .execute(&mut *tx)
    .await
    .map_err(DbError::query("renewing the worker lease"))?;
    sqlx::query("INSERT INTO worker_heartbeats (tenant_id, epoch, health) VALUES ($1, $2, $3)")
        .bind(tenant.as_uuid())
        .bind(epoch)
        .bind(health)
        .execute(&mut *tx)
        .await
        .map_err(DbError::query("recording a heartbeat"))?;
    tx.commit().await
}
