//! The subcommands.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use polybot_store::embedded::{self, EmbeddedOptions, EmbeddedPostgres};
use polybot_store::pooler::{EmbeddedPooler, PoolerOptions};
use polybot_store::{Db, Scope};
use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::PgConnectOptions;

use std::sync::Arc;

use polybot_control_plane::reconcile::Reconciler;
use polybot_control_plane::{App, AppState, Config, WorkerDatabase};
use polybot_launcher::local::LocalLauncher;
use polybot_launcher::local_capacity::{MachineFigures, WorkerLimit};
use polybot_secrets::SecretStore;
use polybot_secrets::local::{LocalSecretStore, MasterKey};

use crate::shutdown;

/// PolyBot Cloud: a multi-tenant trading-bot platform.
#[derive(Debug, Parser)]
#[command(name = "polybot", version, about)]
pub struct Cli {
    /// More log output (-v debug, -vv trace); POLYBOT_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the whole platform on this machine: a private PostgreSQL (unless
    /// DATABASE_URL is set), migrations, and the control plane.
    Up(Box<UpArgs>),
    /// Apply the database migrations (a no-op when they are current).
    Migrate(MigrateArgs),
    /// Run only the private PostgreSQL cluster of a data dir, until stopped.
    Postgres(PostgresArgs),
    /// Run the control plane against DATABASE_URL (the cloud deployment).
    ControlPlane(Box<ControlPlaneArgs>),
    /// Run one tenant's worker (started by the launcher, which sets
    /// TENANT_ID, DATABASE_URL, EXCHANGE_KEYS, POLYBOT_MODE and the rest).
    Worker(Box<polybot_worker::WorkerArgs>),
    /// Check which venues this host can reach, and the database, secret
    /// store and launcher the control plane would use.
    Doctor(crate::ops::DoctorArgs),
    /// Estimate the monthly AWS cost for N tenants, by component; with
    /// --per-tenant, each tenant's cost and margin from its usage.
    Cost(crate::ops::CostArgs),
    /// Manage tenants through the control plane's API (list, show, create,
    /// pause, resume, delete, token).
    Tenants(crate::tenants_cli::TenantsArgs),
    /// Fleet-wide operations through the control plane's API: roll a new
    /// worker image or worker settings across every tenant.
    Fleet(crate::fleet_cli::FleetArgs),
    /// Record the venues' live public market data into the engine's JSONL
    /// replay format (what POLYBOT_REPLAY, `up --replay` and `up --demo` play).
    Record(crate::record::RecordArgs),
    /// Run the deployment's shared market-data service: one set of public
    /// venue connections for every tenant's worker, published through Redis
    /// (workers read it when POLYBOT_MARKET_DATA_URL is set).
    MarketData(crate::market_data::MarketDataArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address the API listens on.
    #[arg(long, env = "POLYBOT_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: std::net::SocketAddr,
    #[command(flatten)]
    pub settings: polybot_control_plane::settings::SettingsArgs,
    #[command(flatten)]
    pub billing: polybot_control_plane::billing::BillingArgs,
    /// With the local launcher, the most tenants with a worker (provisioning
    /// or active) this machine runs: onboarding or resuming one more is
    /// refused (409, naming the limit). By default the smallest of what
    /// memory, the process limits and the open-file limit allow, as logged at
    /// start (docs/operators.md).
    #[arg(long, env = "POLYBOT_MAX_WORKERS", value_name = "N")]
    pub max_workers: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SecretsKind {
    /// AES-256-GCM ciphertext in Postgres under POLYBOT_MASTER_KEY or <data-dir>/master.key.
    Local,
    /// AWS Secrets Manager, one secret per tenant under polybot/tenants/.
    Aws,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LauncherKind {
    /// `polybot worker` processes on this machine.
    Local,
    /// One ECS Fargate task per tenant.
    Ecs,
}

#[derive(Debug, Args)]
pub struct ControlPlaneArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
    #[command(flatten)]
    pub serve: ServeArgs,
    /// Where tenants' secrets are kept.
    #[arg(long, env = "POLYBOT_SECRETS", value_enum, default_value = "local")]
    pub secrets: SecretsKind,
    /// Where workers run.
    #[arg(long, env = "POLYBOT_LAUNCHER", value_enum, default_value = "local")]
    pub launcher: LauncherKind,
    #[command(flatten)]
    pub ecs: crate::ecs_args::EcsArgs,
    /// The database host as workers reach it, when it differs from the
    /// control plane's (e.g. an RDS endpoint behind a proxy).
    #[arg(long, env = "POLYBOT_WORKER_DATABASE_HOST")]
    pub worker_database_host: Option<String>,
    /// The fleet's shared worker login as workers reach it through the
    /// pooler (PgBouncer in transaction mode):
    /// postgres://<login>:<password>@<pgbouncer>:6432/<db>?sslmode=…
    /// (`polybot migrate --worker-database-url` creates the login). Each
    /// worker gets it with its tenant's claim. Without it, each tenant gets a
    /// database login of its own on DATABASE_URL's server (no pooling).
    #[arg(
        long,
        env = "POLYBOT_WORKER_DATABASE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub worker_database_url: Option<SecretString>,
    /// The operator's bearer token (starts with pbo_); without it one is
    /// created in <data-dir>/operator-token (not with --launcher ecs, which
    /// requires it).
    #[arg(
        long = "operator-token",
        env = "POLYBOT_OPERATOR_TOKEN",
        hide_env_values = true
    )]
    pub operator_token: Option<SecretString>,
}

/// The master key's variable: read from the environment only, never a flag,
/// so that it stays out of process listings.
const MASTER_KEY_VAR: &str = "POLYBOT_MASTER_KEY";

/// What the control plane needs in cloud mode (`--launcher ecs`): every
/// secret from the task definition's `secrets`, none created or read from
/// the data dir (the root filesystem is read-only, and replicas must share
/// them).
#[derive(Debug)]
struct CloudSecrets {
    operator_token: SecretString,
    master_key: SecretString,
}

impl CloudSecrets {
    /// The secrets, or an error naming each missing one with its variable.
    fn require(args: &ControlPlaneArgs) -> anyhow::Result<Self> {
        let present = |value: Option<&SecretString>| {
            value
                .filter(|v| !v.expose_secret().trim().is_empty())
                .cloned()
        };
        let database_url = present(args.db.database_url.as_ref());
        let operator_token = present(args.operator_token.as_ref());
        let metrics_token = present(args.serve.settings.metrics_token.as_ref());
        let master_key = std::env::var(MASTER_KEY_VAR).ok().map(SecretString::from);
        let master_key = present(master_key.as_ref());
        let missing: Vec<&str> = [
            ("DATABASE_URL", database_url.is_some()),
            ("POLYBOT_OPERATOR_TOKEN", operator_token.is_some()),
            ("POLYBOT_METRICS_TOKEN", metrics_token.is_some()),
            (MASTER_KEY_VAR, master_key.is_some()),
        ]
        .into_iter()
        .filter(|(_, given)| !given)
        .map(|(name, _)| name)
        .collect();
        if args.serve.settings.cookie_secure == Some(false) {
            anyhow::bail!(
                "cloud mode (--launcher ecs) serves the dashboard over HTTPS only: \
                 POLYBOT_COOKIE_SECURE=false is refused"
            );
        }
        match (operator_token, master_key) {
            (Some(operator_token), Some(master_key)) if missing.is_empty() => Ok(Self {
                operator_token,
                master_key,
            }),
            _ => anyhow::bail!(
                "cloud mode (--launcher ecs) takes its secrets from the environment and \
                 creates none: {} not set (the task definition's `secrets`, from Secrets \
                 Manager; see docs/operations.md)",
                match missing.as_slice() {
                    [one] => format!("{one} is"),
                    many => format!("{} are", many.join(", ")),
                }
            ),
        }
    }
}

#[derive(Debug, Args)]
pub struct DatabaseArgs {
    /// Where the platform keeps its state (the private database, keys, logs).
    #[arg(long, env = "POLYBOT_DATA_DIR", default_value = ".polybot")]
    pub data_dir: PathBuf,
    /// An existing PostgreSQL server to use instead of the private one. The
    /// user needs to create roles (a superuser, or RDS's master user).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<SecretString>,
    /// The private PostgreSQL's TCP port on 127.0.0.1 (default: the last one
    /// used, or a free one).
    #[arg(long, env = "POLYBOT_PG_PORT")]
    pub pg_port: Option<u16>,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
    #[command(flatten)]
    pub serve: ServeArgs,
    /// Workers trade on the bundled market recording instead of the venues'
    /// live public data (offline), and a demo tenant (paper mode, every
    /// strategy on) is onboarded: opportunities within seconds. Without it,
    /// workers paper-trade on the venues' live public data.
    #[arg(long, conflicts_with = "replay")]
    pub demo: bool,
    /// Workers trade on this recording (the JSONL replay format that
    /// `polybot record` writes) instead of the venues' live public data, at
    /// its recorded pace unless POLYBOT_REPLAY_SPEED says otherwise. Each
    /// tenant's mode applies: paper fills, or, for a tenant switched to
    /// live, real orders to the venue the recording's markets name.
    #[arg(long, env = "POLYBOT_UP_REPLAY", value_name = "FILE")]
    pub replay: Option<PathBuf>,
    /// A file holding the operator's NewsAPI key, for every tenant that has
    /// none of its own: sealed into the local secret store (it stays there
    /// for later starts) and handed to workers with their secrets, never in
    /// their environment.
    #[arg(long, value_name = "FILE")]
    pub newsapi_key_file: Option<PathBuf>,
    /// With the private PostgreSQL: the most server connections its PgBouncer
    /// opens for all workers together (workers share them transaction by
    /// transaction; the private PostgreSQL allows 300 in all, the control
    /// plane keeps 16).
    #[arg(long, env = "POLYBOT_WORKER_CONNECTIONS", default_value_t = 50,
          value_parser = clap::value_parser!(u32).range(1..=250))]
    pub worker_connections: u32,
    /// Workers read the venues themselves instead of through the shared
    /// market-data service (by default started, with a private
    /// redis-server, when the host has redis-server).
    #[arg(long)]
    pub no_shared_market_data: bool,
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
    /// Also copy the single-tenant bot's tables (polybot_opportunities,
    /// polybot_trades, polybot_balances) into the `default` tenant.
    #[arg(long)]
    pub import_legacy: bool,
    /// The control plane's own DATABASE_URL: its user is created (or its
    /// password reset) as a login that is a member of polybot_control with
    /// no superuser, CREATEROLE or BYPASSRLS. DATABASE_URL stays the
    /// administrator's, who runs the migrations.
    #[arg(
        long,
        env = "POLYBOT_CONTROL_PLANE_DATABASE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub control_plane_database_url: Option<SecretString>,
    /// The workers' shared DATABASE_URL (through the pooler): its user is
    /// created (or its password reset) as a login that is a member of
    /// polybot_worker only, bound by the database to the tenant of the claim
    /// each transaction carries.
    #[arg(
        long,
        env = "POLYBOT_WORKER_DATABASE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub worker_database_url: Option<SecretString>,
}

#[derive(Debug, Args)]
pub struct PostgresArgs {
    /// The data dir whose cluster to run.
    #[arg(long, env = "POLYBOT_DATA_DIR", default_value = ".polybot")]
    pub data_dir: PathBuf,
    /// TCP port on 127.0.0.1.
    #[arg(long, env = "POLYBOT_PG_PORT")]
    pub pg_port: Option<u16>,
    /// Durability off (fsync=off): for test clusters only.
    #[arg(long)]
    pub ephemeral: bool,
    /// Write the superuser DATABASE_URL to this file (mode 0600) once ready.
    #[arg(long)]
    pub url_file: Option<PathBuf>,
}

/// What `main` runs once the async runtime is up.
#[derive(Debug)]
pub enum Prepared {
    /// A worker that has read its settings and secrets and sandboxed itself.
    Worker(Box<polybot_worker::WorkerConfig>),
    Other(Box<Command>),
}

/// What must happen before the async runtime starts its threads: a worker
/// reads its secrets and applies its Landlock sandbox, which restricts only
/// the thread that applies it and the threads it starts afterwards.
pub fn prepare(cli: Cli) -> anyhow::Result<Prepared> {
    match cli.command {
        Command::Worker(args) => Ok(Prepared::Worker(Box::new(prepare_worker(*args)?))),
        command => Ok(Prepared::Other(Box::new(command))),
    }
}

pub async fn run(prepared: Prepared) -> anyhow::Result<()> {
    let command = match prepared {
        Prepared::Worker(config) => return worker(*config).await,
        Prepared::Other(command) => *command,
    };
    match command {
        Command::Up(args) => up(*args).await,
        Command::Migrate(args) => migrate(args).await,
        Command::Postgres(args) => postgres(args).await,
        Command::ControlPlane(args) => control_plane(*args).await,
        Command::Worker(args) => worker(prepare_worker(*args)?).await,
        Command::Doctor(args) => crate::ops::doctor(args).await,
        Command::Cost(args) => crate::ops::cost(args).await,
        Command::Tenants(args) => crate::tenants_cli::run(args).await,
        Command::Fleet(args) => crate::fleet_cli::run(args).await,
        Command::Record(args) => crate::record::run(args).await,
        Command::MarketData(args) => crate::market_data::run(args).await,
    }
}

/// A database to use: the one named by DATABASE_URL, or the private cluster,
/// which the caller must stop.
struct Database {
    db: Db,
    options: PgConnectOptions,
    embedded: Option<EmbeddedPostgres>,
    /// The private cluster's PgBouncer, once started.
    pooler: Option<EmbeddedPooler>,
    /// How workers reach the private cluster through it: the shared worker
    /// login's options and password.
    worker: Option<(PgConnectOptions, SecretString)>,
}

/// The shared worker login of the private cluster.
const EMBEDDED_WORKER_LOGIN: &str = "polybot_workers";

impl Database {
    async fn open(args: &DatabaseArgs) -> anyhow::Result<Self> {
        let (options, embedded) = match &args.database_url {
            Some(url) => {
                let options: PgConnectOptions = url
                    .expose_secret()
                    .parse()
                    .context("DATABASE_URL is not a valid postgres:// URL")?;
                (options, None)
            }
            None => {
                let mut options = EmbeddedOptions::new(&args.data_dir);
                options.port = args.pg_port;
                let server = EmbeddedPostgres::start(&options).await?;
                (server.connect_options(embedded::DATABASE), Some(server))
            }
        };
        let db = Db::connect(options.clone(), Scope::Control, 16)
            .await
            .context("connecting to the database")?;
        Ok(Self {
            db,
            options,
            embedded,
            pooler: None,
            worker: None,
        })
    }

    /// With the private cluster: migrates, creates the shared worker login
    /// and starts PgBouncer in front of the cluster with at most
    /// `server_connections` connections to it, through which workers then
    /// connect. Without it (DATABASE_URL), nothing.
    async fn start_pooler(&mut self, server_connections: u32) -> anyhow::Result<()> {
        let Some(server) = &self.embedded else {
            return Ok(());
        };
        migrate_and_report(&self.db).await?;
        let password = server.worker_password()?;
        polybot_store::roles::ensure_worker_login(&self.db, EMBEDDED_WORKER_LOGIN, &password)
            .await
            .context("creating the workers' database login")?;
        let mut options = PoolerOptions::new(
            server.cluster_dir().join("pgbouncer"),
            "127.0.0.1",
            server.port(),
        );
        options.server_connections = server_connections;
        options.logins = vec![(EMBEDDED_WORKER_LOGIN.to_owned(), password.clone())];
        let pooler = EmbeddedPooler::start(&options).await?;
        let worker = PgConnectOptions::new()
            .host("127.0.0.1")
            .port(pooler.port())
            .username(EMBEDDED_WORKER_LOGIN)
            .database(embedded::DATABASE)
            .ssl_mode(sqlx::postgres::PgSslMode::Disable);
        self.worker = Some((worker, password));
        self.pooler = Some(pooler);
        Ok(())
    }

    async fn close(self) -> anyhow::Result<()> {
        self.db.close().await;
        if let Some(pooler) = self.pooler {
            pooler.stop().await?;
        }
        if let Some(server) = self.embedded {
            server.stop().await?;
        }
        Ok(())
    }
}

async fn migrate_and_report(db: &Db) -> anyhow::Result<()> {
    let applied = db.migrate().await?;
    match applied {
        0 => tracing::info!("database schema is current"),
        n => tracing::info!("applied {n} migration(s)"),
    }
    Ok(())
}

/// Cloud mode does not migrate: its login may not change the schema, and
/// the migrate task (`polybot migrate`, as the administrator) runs first.
async fn require_current_schema(db: &Db) -> anyhow::Result<()> {
    let current = db
        .migrations_current()
        .await
        .context("reading which migrations the database has")?;
    if !current {
        anyhow::bail!(
            "the database schema is older than this control plane: run `polybot migrate` \
             with the administrator's DATABASE_URL first (the migrate task; docs/operations.md)"
        );
    }
    Ok(())
}

async fn up(args: UpArgs) -> anyhow::Result<()> {
    let stop = shutdown::on_signal()?;
    let demo = match args.demo {
        true => Some(crate::demo::Demo::prepare(&args.db.data_dir)?),
        false => None,
    };
    let replay = args
        .replay
        .as_deref()
        .map(crate::replay::Replayed::open)
        .transpose()?;
    let mut database = Database::open(&args.db).await?;
    if let Err(err) = database.start_pooler(args.worker_connections).await {
        database.close().await?;
        return Err(err);
    }
    // Live data (not a recording): one set of public venue connections for
    // every tenant, through a private Redis (docs/market-data.md).
    let recorded = demo.is_some() || replay.is_some();
    let shared = match (recorded, args.no_shared_market_data) {
        (false, false) => {
            match crate::market_data::start_local(&args.db.data_dir, stop.clone()).await {
                Ok(shared) => shared,
                Err(e) => {
                    database.close().await?;
                    return Err(e);
                }
            }
        }
        _ => None,
    };
    let result = serve(
        &database,
        &args.db.data_dir,
        &args.serve,
        None,
        Backends {
            demo,
            replay,
            newsapi_key_file: args.newsapi_key_file,
            market_data_url: shared.as_ref().map(|s| s.worker_url()),
            ..Backends::default()
        },
        stop,
    )
    .await;
    if let Some(shared) = shared {
        shared.stop().await;
    }
    database.close().await?;
    result
}

async fn control_plane(mut args: ControlPlaneArgs) -> anyhow::Result<()> {
    let cloud = match args.launcher {
        LauncherKind::Ecs => Some(CloudSecrets::require(&args)?),
        LauncherKind::Local => None,
    };
    if cloud.is_some() {
        args.serve.settings.cookie_secure = Some(true);
    }
    let stop = shutdown::on_signal()?;
    let database = Database::open(&args.db).await?;
    let operator_token = match &cloud {
        Some(cloud) => Some(cloud.operator_token.clone()),
        None => args.operator_token.clone(),
    };
    let backends = Backends {
        secrets: args.secrets,
        launcher: args.launcher,
        ecs: Some(args.ecs),
        worker_database_host: args.worker_database_host,
        worker_database_url: args.worker_database_url,
        demo: None,
        replay: None,
        master_key: cloud.map(|cloud| cloud.master_key),
        newsapi_key_file: None,
        market_data_url: None,
    };
    let result = serve(
        &database,
        &args.db.data_dir,
        &args.serve,
        operator_token.as_ref(),
        backends,
        stop,
    )
    .await;
    database.close().await?;
    result
}

/// Which secret store and launcher the control plane uses.
#[derive(Debug)]
struct Backends {
    secrets: SecretsKind,
    launcher: LauncherKind,
    ecs: Option<crate::ecs_args::EcsArgs>,
    worker_database_host: Option<String>,
    /// The shared worker login through the pooler (`--worker-database-url`).
    worker_database_url: Option<SecretString>,
    /// `polybot up --demo`: the recording the workers play (without it,
    /// workers trade on the venues' live public data).
    demo: Option<crate::demo::Demo>,
    /// `polybot up --replay FILE`: the recording the workers play.
    replay: Option<crate::replay::Replayed>,
    /// Cloud mode: the master key from the environment. The control plane
    /// then writes nothing (no data dir, key or token file) and does not
    /// migrate: its database login may not (`polybot migrate` does, with the
    /// administrator's).
    master_key: Option<SecretString>,
    /// `polybot up --newsapi-key-file`: the operator's NewsAPI key to store.
    newsapi_key_file: Option<PathBuf>,
    /// `polybot up`: the shared market-data service's Redis, for workers.
    market_data_url: Option<SecretString>,
}

impl Default for Backends {
    fn default() -> Self {
        Self {
            secrets: SecretsKind::Local,
            launcher: LauncherKind::Local,
            ecs: None,
            worker_database_host: None,
            worker_database_url: None,
            demo: None,
            replay: None,
            master_key: None,
            newsapi_key_file: None,
            market_data_url: None,
        }
    }
}

/// Migrates, then runs the control plane until `stop`.
async fn serve(
    database: &Database,
    data_dir: &std::path::Path,
    serve: &ServeArgs,
    operator_token: Option<&SecretString>,
    backends: Backends,
    stop: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    let cloud = backends.master_key.is_some();
    if cloud {
        require_current_schema(&database.db).await?;
    } else {
        migrate_and_report(&database.db).await?;
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("creating the data dir {}", data_dir.display()))?;
    }
    let aws = match (backends.secrets, backends.launcher) {
        (SecretsKind::Aws, _) | (_, LauncherKind::Ecs) => {
            Some(polybot_launcher::load_aws_config().await)
        }
        _ => None,
    };
    // The master key seals exchange keys in the local store and, with
    // either store, alert channel secrets (Secrets Manager holds no key of
    // ours): with `--secrets aws` it is still POLYBOT_MASTER_KEY or the key file.
    let master = match &backends.master_key {
        Some(key) => MasterKey::parse(key).context(MASTER_KEY_VAR)?,
        None => MasterKey::from_env_or_file(&data_dir.join("master.key"))?,
    };
    let channel_key = Arc::new(polybot_control_plane::alerts::ChannelKey::from_master(
        &master,
    ));
    if let Some(path) = &backends.newsapi_key_file {
        let key = std::fs::read_to_string(path)
            .with_context(|| format!("reading the NewsAPI key from {}", path.display()))?;
        let key = key.trim();
        anyhow::ensure!(
            !key.is_empty(),
            "{} is empty: it should hold the NewsAPI key",
            path.display()
        );
        polybot_control_plane::worker_settings::store(
            &database.db,
            &master,
            polybot_core::worker::env::NEWSAPI_KEY,
            &SecretString::from(key.to_owned()),
        )
        .await?;
        tracing::info!("stored the operator's NewsAPI key in the local secret store");
    }
    // Only local workers are handed these: ECS injects its own settings secret.
    let worker_secrets = match backends.launcher {
        LauncherKind::Local => {
            polybot_control_plane::worker_settings::load(&database.db, &master).await?
        }
        LauncherKind::Ecs => Default::default(),
    };
    let secrets: Arc<dyn SecretStore> = match (&backends.secrets, &aws) {
        (SecretsKind::Aws, Some(aws)) => Arc::new(polybot_secrets::aws::AwsSecretStore::new(
            aws,
            master.fingerprint_key(),
        )),
        _ => Arc::new(LocalSecretStore::new(master)),
    };
    let mut worker_db = match (&database.worker, &backends.worker_database_url) {
        (Some((options, password)), _) => WorkerDatabase::shared(options, password.clone()),
        (None, Some(url)) => {
            let (options, password) =
                login_url(url, "POLYBOT_WORKER_DATABASE_URL").context("--worker-database-url")?;
            WorkerDatabase::shared(&options, password)
        }
        (None, None) => WorkerDatabase::from_options(&database.options),
    };
    if let Some(host) = backends.worker_database_host {
        worker_db.host = host;
    }
    let mut state = AppState::new(database.db.clone(), secrets, worker_db);
    let mut settings: polybot_control_plane::settings::Settings = serve.settings.clone().into();
    settings.billing = serve.billing.clone().into();
    if backends.demo.is_some() {
        // Every local worker plays the bundled recording: refuse settings
        // naming what it lacks instead of a tenant that waits in silence.
        settings.recording = Some(
            polybot_control_plane::tenants::recording::Recording::from_jsonl(
                polybot_worker::demo::DEMO_REPLAY,
            ),
        );
    }
    if let Some(replay) = &backends.replay {
        // The same for a recording of the operator's.
        settings.recording = Some(replay.recording.clone());
    }
    state.settings = Arc::new(settings);
    state.channel_key = channel_key;
    // Image rollouts need a launcher that runs images (ECS).
    state.worker_images = backends.launcher == LauncherKind::Ecs;
    let sealed = polybot_control_plane::alerts::seal_plaintext_secrets(&state)
        .await
        .context("sealing alert channel secrets stored in plaintext")?;
    if sealed > 0 {
        tracing::info!(
            sealed,
            "sealed alert channel secrets stored before encryption at rest"
        );
    }
    let token_file = data_dir.join("operator-token");
    let config = Config {
        listen: serve.listen,
        operator_token: operator_token.cloned(),
        operator_token_file: (!cloud).then(|| token_file.clone()),
    };
    let mut local: Option<Arc<LocalLauncher>> = None;
    let mut task_events: Option<(Arc<dyn polybot_launcher::TaskEvents>, u64)> = None;
    let (launcher, spec_salt): (Arc<dyn polybot_launcher::Launcher>, String) =
        match (backends.launcher, backends.ecs, &aws) {
            (LauncherKind::Ecs, Some(args), Some(aws)) => {
                if serve.max_workers.is_some() {
                    anyhow::bail!(
                        "--max-workers (POLYBOT_MAX_WORKERS) bounds local workers; \
                         with --launcher ecs the account's Fargate quotas do"
                    );
                }
                let quotas = args.fargate_quotas();
                let queue = args.events_queue_url();
                let backstop = args.ecs_backstop_secs;
                let config = args.into_config(aws.region().map(ToString::to_string))?;
                if let Some(queue) = queue {
                    task_events = Some((
                        Arc::new(polybot_launcher::ecs::SqsTaskEvents::new(
                            aws,
                            queue,
                            config.cluster.clone(),
                        )),
                        backstop,
                    ));
                }
                // A new worker image replaces every worker.
                let image = config.worker_image.clone();
                (
                    Arc::new(
                        polybot_launcher::EcsLauncher::new(config, aws)?.with_fargate_quota(quotas),
                    ),
                    image,
                )
            }
            (LauncherKind::Ecs, _, _) => anyhow::bail!("--launcher ecs needs the ECS settings"),
            (LauncherKind::Local, _, _) => {
                let launcher = Arc::new(LocalLauncher::new(
                    polybot_launcher::local::current_program()?,
                    polybot_launcher::local::workers_dir(data_dir),
                )?);
                let limit = match serve.max_workers {
                    Some(max) => WorkerLimit::configured(max),
                    None => WorkerLimit::computed(
                        &MachineFigures::read(
                            launcher.running(),
                            launcher.identity() == polybot_launcher::local::WorkerIdentity::Shared,
                        )
                        .context("reading this machine's memory and limits for --max-workers")?,
                        &polybot_launcher::local_capacity::PER_WORKER,
                    ),
                };
                tracing::info!(
                    max_workers = limit.max,
                    limit = %limit.limit,
                    "local workers: tenants beyond this are refused at onboarding"
                );
                state.local_workers = Some(Arc::new(
                    polybot_control_plane::tenants::capacity::LocalWorkers::new(limit),
                ));
                local = Some(launcher.clone());
                (launcher, String::new())
            }
        };
    let mut reconciler = Reconciler::new(
        database.db.clone(),
        launcher,
        state.secrets.clone(),
        state.reconcile.clone(),
    );
    reconciler.worker_env = worker_env();
    reconciler.worker_secrets = worker_secrets;
    if let Some(demo) = &backends.demo {
        reconciler.worker_env.extend(demo.worker_env());
    }
    // The private Redis's worker password goes with each worker's secrets
    // (its standard input), never into its environment.
    if let Some(url) = &backends.market_data_url {
        reconciler.worker_secrets.insert(
            polybot_core::worker::env::MARKET_DATA_URL.to_owned(),
            url.clone(),
        );
    }
    if let Some(replay) = &backends.replay {
        reconciler.worker_env.extend(replay.worker_env());
        tracing::info!(recording = %replay.path.display(), "workers play the recording");
    }
    reconciler.spec_salt = spec_salt;
    if let Some((events, backstop)) = task_events {
        reconciler.backstop_interval = std::time::Duration::from_secs(backstop);
        reconciler = reconciler.with_events(events);
    }
    reconciler.payment_grace = state.settings.billing.grace;
    // Operator views: reconciler metrics, and the alert evaluator. The leader
    // also retries unfinished onboardings and offboardings.
    let reconciler = reconciler
        .with_metrics(state.metrics.clone())
        .with_provisioner(state.provisioner.clone());
    let alerting = polybot_control_plane::alerts::Evaluator::new(state.clone());
    // Metered usage goes to Stripe only where Stripe is configured.
    let reporter =
        polybot_control_plane::billing::stripe::Stripe::from_settings(&state.settings.billing)
            .ok()
            .map(|stripe| {
                polybot_control_plane::billing::meter::Reporter::new(database.db.clone(), stripe)
            });
    let app = App::build(&config, state).await?;
    let addr = app.local_addr()?;
    let reconciling = tokio::spawn(reconciler.run(stop.clone()));
    let alerting = tokio::spawn(alerting.run(stop.clone()));
    let reporting = reporter.map(|reporter| tokio::spawn(reporter.run(stop.clone())));
    if backends.demo.is_some() {
        let token_file = token_file.clone();
        tokio::spawn(async move {
            match crate::demo::onboard(addr, &token_file).await {
                Ok(id) => tracing::info!(
                    "demo tenant {id}: opportunities at http://{addr}/tenants/{id}/opportunities"
                ),
                Err(err) => tracing::error!(
                    error = format!("{err:#}"),
                    "the demo tenant was not onboarded"
                ),
            }
        });
    }
    let token_source = match cloud {
        true => "POLYBOT_OPERATOR_TOKEN".to_owned(),
        false => token_file.display().to_string(),
    };
    tracing::info!(
        "PolyBot is up: http://{addr}/ (operator token in {token_source}); press Ctrl-C to stop"
    );
    let served = app.run_until_stopped(stop).await;
    if let Err(err) = reconciling.await {
        tracing::warn!(%err, "the reconciler ended abnormally");
    }
    if let Err(err) = alerting.await {
        tracing::warn!(%err, "the alert evaluator ended abnormally");
    }
    if let Some(Err(err)) = match reporting {
        Some(reporting) => Some(reporting.await),
        None => None,
    } {
        tracing::warn!(%err, "the usage reporter ended abnormally");
    }
    // Local workers stop with `polybot up`; ECS tasks keep trading, and the
    // next leader finds them.
    if let Some(local) = local {
        local.shutdown().await;
    }
    served
}

/// Plain settings every worker inherits from the control plane's
/// environment: the worker-settings allowlist
/// ([`polybot_core::worker::env::FORWARDED`] and the venues' endpoint
/// overrides), so that none of the control plane's own secrets (metrics and
/// operator tokens, master key, its database URL) reaches a worker.
fn worker_env() -> std::collections::BTreeMap<String, String> {
    worker_env_from(std::env::vars())
}

fn worker_env_from(
    vars: impl IntoIterator<Item = (String, String)>,
) -> std::collections::BTreeMap<String, String> {
    vars.into_iter()
        .filter(|(name, _)| polybot_core::worker::env::is_forwarded(name))
        .collect()
}

/// Reads the worker's settings and secrets, then locks it in: what runs
/// before any thread is started or any network input is read.
fn prepare_worker(
    args: polybot_worker::WorkerArgs,
) -> anyhow::Result<polybot_worker::WorkerConfig> {
    // Non-dumpable: other processes of the same uid (the other tenants'
    // workers, locally) can no longer read this one's /proc/<pid>/environ or
    // memory, where its exchange keys and database password live, nor
    // ptrace it; and it writes no core dump.
    nix::sys::prctl::set_dumpable(false)
        .context("marking the worker non-dumpable (prctl PR_SET_DUMPABLE)")?;
    let config = polybot_worker::WorkerConfig::from_args(args)?;
    let sandbox = polybot_worker::sandbox::apply(&config.sandbox_files)?;
    let uid = nix::unistd::Uid::current();
    tracing::info!(
        tenant = %config.tenant,
        %uid,
        sandbox = sandbox.describe(),
        "worker sandbox"
    );
    Ok(config)
}

async fn worker(config: polybot_worker::WorkerConfig) -> anyhow::Result<()> {
    let stop = shutdown::on_signal()?;
    match polybot_worker::run(config, stop).await {
        Ok(()) => Ok(()),
        Err(polybot_worker::WorkerError::Fenced(err)) => {
            eprintln!("error: {err}; exiting so that only the newer worker runs");
            std::process::exit(polybot_core::worker::exit::FENCED);
        }
        Err(polybot_worker::WorkerError::Other(err)) => Err(err),
    }
}

async fn migrate(args: MigrateArgs) -> anyhow::Result<()> {
    let database = Database::open(&args.db).await?;
    let result = async {
        migrate_and_report(&database.db).await?;
        if let Some(url) = &args.control_plane_database_url {
            let (options, password) = login_url(url, "POLYBOT_CONTROL_PLANE_DATABASE_URL")?;
            let login = options.get_username().to_owned();
            polybot_store::roles::ensure_control_plane_login(&database.db, &login, &password)
                .await?;
            tracing::info!(%login, "the control plane's database login is ready");
        }
        if let Some(url) = &args.worker_database_url {
            let (options, password) = login_url(url, "POLYBOT_WORKER_DATABASE_URL")?;
            let login = options.get_username().to_owned();
            polybot_store::roles::ensure_worker_login(&database.db, &login, &password).await?;
            tracing::info!(%login, "the workers' shared database login is ready");
        }
        if args.import_legacy {
            let report = polybot_store::legacy::import(&database.db).await?;
            println!("{report}");
        }
        anyhow::Ok(())
    }
    .await;
    database.close().await?;
    result
}

/// A login's URL (`variable` names it in errors): its options and its
/// password. Percent-decoding is not done: a password that needs it is
/// refused (the generated ones are letters and digits), and so it goes into
/// workers' URLs and PgBouncer's files as it is.
fn login_url(
    url: &SecretString,
    variable: &str,
) -> anyhow::Result<(PgConnectOptions, SecretString)> {
    let options: PgConnectOptions = url
        .expose_secret()
        .parse()
        .map_err(|_| anyhow::anyhow!("{variable} is not a valid postgres:// URL"))?;
    let password = url::Url::parse(url.expose_secret())
        .ok()
        .and_then(|url| url.password().map(str::to_owned))
        .filter(|password| {
            !password.is_empty()
                && password
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-._~".contains(c))
        })
        .with_context(|| {
            format!(
                "{variable} needs a password of letters, digits and unreserved characters \
                 (no percent-encoding)"
            )
        })?;
    Ok((options, SecretString::from(password)))
}

async fn postgres(args: PostgresArgs) -> anyhow::Result<()> {
    let stop = shutdown::on_signal()?;
    let mut options = EmbeddedOptions::new(&args.data_dir);
    options.port = args.pg_port;
    options.ephemeral = args.ephemeral;
    let server = EmbeddedPostgres::start(&options).await?;
    if let Some(path) = &args.url_file {
        write_private(path, server.url(embedded::DATABASE).expose_secret())?;
    }
    println!(
        "postgres://{}@127.0.0.1:{}/{} is ready",
        embedded::SUPERUSER,
        server.port(),
        embedded::DATABASE
    );
    stop.cancelled().await;
    server.stop().await?;
    Ok(())
}

fn write_private(path: &std::path::Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(contents.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_gets_its_settings_and_none_of_the_control_planes_secrets() {
        let control_plane = [
            ("POLYBOT_METRICS_TOKEN", "metrics-secret"),
            ("POLYBOT_OPERATOR_TOKEN", "operator-secret"),
            ("POLYBOT_MASTER_KEY", "master-secret"),
            ("POLYBOT_DATA_DIR", "/var/lib/polybot"),
            ("POLYBOT_LISTEN", "0.0.0.0:8080"),
            ("POLYBOT_SESSION_HOURS", "12"),
            ("POLYBOT_TELEGRAM_API_BASE", "https://api.telegram.org"),
            ("POLYBOT_MODE", "live"),
            ("DATABASE_URL", "postgres://polybot:superuser@db/polybot"),
            ("AWS_SECRET_ACCESS_KEY", "aws-secret"),
            ("POLYBOT_HEARTBEAT_SECS", "2"),
            (
                "POLYBOT_KALSHI_URL",
                "https://demo-api.kalshi.co/trade-api/v2",
            ),
            ("POLYBOT_LOG", "debug"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));

        let env = worker_env_from(control_plane);
        assert_eq!(
            env.keys().map(String::as_str).collect::<Vec<_>>(),
            [
                "POLYBOT_HEARTBEAT_SECS",
                "POLYBOT_KALSHI_URL",
                "POLYBOT_LOG"
            ]
        );
    }
}
