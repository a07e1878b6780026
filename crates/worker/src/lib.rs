//! The per-tenant worker: `polybot worker`.
//!
//! Environment contract (the same for local processes and ECS tasks):
//! `TENANT_ID`, `DATABASE_URL` (the tenant's own login role), `EXCHANGE_KEYS`
//! (JSON, optional), `POLYBOT_MODE` (`paper`/`live`), `POLYBOT_SPEC_HASH`.
//!
//! Life: take the tenant's lease with a new epoch → load the configuration
//! through row level security → heartbeat with per-strategy health, renewing
//! the lease, every `POLYBOT_HEARTBEAT_SECS` → on SIGTERM, a final heartbeat
//! and exit 0 well within ECS's 30 s. Every write goes through a fenced
//! transaction: when another worker has taken the lease, the write fails and
//! this worker exits with [`EXIT_FENCED`].

use std::time::Duration;

use anyhow::Context;
use polybot_core::TenantId;
use polybot_core::keys::ExchangeKeys;
use polybot_core::risk::{RiskLimits, parse_risk};
use polybot_core::strategy::{StrategiesConfig, StrategyKind, parse_strategies};
use polybot_store::{Db, DbError, Scope};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use sqlx::postgres::PgConnectOptions;
use tokio_util::sync::CancellationToken;

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
        Ok(Self {
            tenant,
            database,
            keys,
            mode,
            spec_hash: std::env::var("POLYBOT_SPEC_HASH").unwrap_or_default(),
            heartbeat,
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

fn q(context: &'static str) -> impl FnOnce(sqlx::Error) -> DbError {
    move |source| DbError::Query { context, source }
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
    .map_err(q("taking the worker lease"))?;
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
    .map_err(q("loading the tenant's configuration"))?;
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

/// Per-strategy health for the heartbeat.
fn health(config: &TenantConfig, spec_hash: &str, phase: &str) -> Value {
    let mut strategies = serde_json::Map::new();
    for kind in [
        StrategyKind::ComplementArb,
        StrategyKind::CrossVenueArb,
        StrategyKind::Crypto15m,
        StrategyKind::NewsArb,
    ] {
        if config.strategies.is_enabled(kind) {
            strategies.insert(
                kind.as_str().to_owned(),
                json!({"status": "ok", "breaker": "closed"}),
            );
        }
    }
    json!({
        "phase": phase,
        "spec_hash": spec_hash,
        "pid": std::process::id(),
        "kill_switch": config.risk.kill_switch,
        "strategies": strategies,
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
    .map_err(q("renewing the worker lease"))?;
    sqlx::query("INSERT INTO worker_heartbeats (tenant_id, epoch, health) VALUES ($1, $2, $3)")
        .bind(tenant.as_uuid())
        .bind(epoch)
        .bind(health)
        .execute(&mut *tx)
        .await
        .map_err(q("recording a heartbeat"))?;
    tx.commit().await
}

/// Runs the worker until `stop` or until it is fenced.
pub async fn run(config: WorkerConfig, stop: CancellationToken) -> Result<(), WorkerError> {
    let tenant = config.tenant;
    let db = Db::connect(config.database.clone(), Scope::Worker(tenant), 2)
        .await
        .context("connecting to the database as the tenant's role")?;
    let ttl = config.heartbeat * 3;
    let epoch = take_lease(&db, tenant, ttl).await?;
    tracing::info!(%tenant, epoch, mode = %config.mode, venues = ?config.keys.venues().collect::<Vec<_>>(), "worker holds the lease");
    let tenant_config = load_config(&db, tenant).await?;
    tracing::info!(%tenant, name = %tenant_config.name, "configuration loaded");

    let result = loop {
        if let Err(err) = heartbeat(
            &db,
            tenant,
            epoch,
            ttl,
            health(&tenant_config, &config.spec_hash, "running"),
        )
        .await
        {
            break Err(WorkerError::from(err));
        }
        tokio::select! {
            _ = stop.cancelled() => break Ok(()),
            _ = tokio::time::sleep(config.heartbeat) => {}
        }
    };
    if result.is_ok() {
        // The final heartbeat says the worker stopped on purpose.
        heartbeat(
            &db,
            tenant,
            epoch,
            ttl,
            health(&tenant_config, &config.spec_hash, "stopped"),
        )
        .await?;
        tracing::info!(%tenant, "worker stopped");
    }
    db.close().await;
    result
}
