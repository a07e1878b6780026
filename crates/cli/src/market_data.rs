//! `polybot market-data`: the deployment's shared market-data service (see
//! `polybot_worker::live::market_data`). One per deployment: it holds the
//! venues' public connections for every tenant and publishes through Redis.

use std::time::Duration;

use clap::Args;
use polybot_core::strategy::Venue;
use polybot_worker::LiveSettings;
use polybot_worker::live::market_data::{CaBundle, MarketDataSettings, run_market_data};
use secrecy::SecretString;

#[derive(Debug, Args)]
pub struct MarketDataArgs {
    /// The Redis to publish to and read the workers' registrations from
    /// (`redis://user:password@127.0.0.1:6379`, `rediss://…` over TLS); the
    /// workers' own setting.
    #[arg(
        long,
        env = "POLYBOT_MARKET_DATA_URL",
        hide_env_values = true,
        required_unless_present = "redis_url_file",
        conflicts_with = "redis_url_file"
    )]
    pub redis_url: Option<SecretString>,
    /// A file holding that URL (its first line), instead of the variable: a
    /// mounted secret, so that the password is in no process's environment.
    #[arg(long, env = "POLYBOT_MARKET_DATA_URL_FILE", value_name = "FILE")]
    pub redis_url_file: Option<std::path::PathBuf>,
    /// A PEM file of the CA certificates a rediss:// server's certificate
    /// must chain to (a private CA); without it, the web PKI roots built
    /// into the binary, which ElastiCache's certificates chain to.
    #[arg(long, env = "POLYBOT_MARKET_DATA_CA_FILE", value_name = "FILE")]
    pub redis_ca_file: Option<std::path::PathBuf>,
    /// The venues this service reads and publishes, comma-separated
    /// (polymarket, kalshi, binance_us, coinbase, kraken): one service per
    /// venue group against the same Redis shards the venue connections over
    /// several processes. Default: every venue. No two services may share a
    /// venue.
    #[arg(long, env = "POLYBOT_MARKET_DATA_VENUES", value_delimiter = ',', value_parser = parse_venue)]
    pub venues: Vec<Venue>,
    /// How often the workers' registrations are read again (seconds).
    #[arg(long, default_value_t = 5)]
    pub refresh_secs: u64,
}

/// The Redis URL in `path` (its first line, trimmed). The error names the
/// file, never its contents.
fn read_url_file(path: &std::path::Path) -> anyhow::Result<SecretString> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("--redis-url-file {}: {e}", path.display()))?;
    let url = text.lines().next().unwrap_or_default().trim();
    if url.is_empty() {
        anyhow::bail!("--redis-url-file {} is empty", path.display());
    }
    Ok(SecretString::from(url.to_owned()))
}

/// A venue by its name in tenants' configs.
fn parse_venue(name: &str) -> Result<Venue, String> {
    let name = name.trim();
    Venue::ALL
        .into_iter()
        .find(|v| v.as_str() == name)
        .ok_or_else(|| {
            let known: Vec<&str> = Venue::ALL.iter().map(Venue::as_str).collect();
            format!("{name:?} is not a venue (one of {})", known.join(", "))
        })
}

pub async fn run(args: MarketDataArgs) -> anyhow::Result<()> {
    let stop = crate::shutdown::on_signal()?;
    let mut live = LiveSettings::from_env()?;
    // The service is what reads the venues.
    live.market_data = None;
    let redis_ca = args
        .redis_ca_file
        .filter(|path| !path.as_os_str().is_empty())
        .map(|path| CaBundle::read(&path))
        .transpose()
        .map_err(|e| anyhow::anyhow!("--redis-ca-file: {e}"))?;
    let redis_url = match (args.redis_url, &args.redis_url_file) {
        (Some(url), _) => url,
        (None, Some(path)) => read_url_file(path)?,
        (None, None) => {
            anyhow::bail!("give --redis-url (POLYBOT_MARKET_DATA_URL) or --redis-url-file")
        }
    };
    let mut venues = args.venues;
    venues.sort_by_key(Venue::index);
    venues.dedup();
    run_market_data(
        MarketDataSettings {
            redis_url,
            redis_ca,
            venues: (!venues.is_empty()).then_some(venues),
            live,
            refresh_every: Duration::from_secs(args.refresh_secs.max(1)),
        },
        stop,
    )
    .await
}

/// What `polybot up` runs for shared market data: a private redis-server and
/// the service, as a task of this process that restarts after a failure.
pub struct LocalMarketData {
    redis: crate::redis_server::PrivateRedis,
    service: tokio::task::JoinHandle<()>,
    cancel: tokio_util::sync::CancellationToken,
}

impl LocalMarketData {
    /// The URL workers get (the `worker` Redis user).
    pub fn worker_url(&self) -> SecretString {
        self.redis.worker_url.clone()
    }

    pub async fn stop(self) {
        self.cancel.cancel();
        if let Err(e) = self.service.await {
            tracing::error!(error = %e, "the market-data service task failed");
        }
        self.redis.stop().await;
    }
}

/// Starts the private Redis and the service when the host has redis-server;
/// `None` (with how to install it) when it has not: workers then read the
/// venues themselves.
pub async fn start_local(
    data_dir: &std::path::Path,
    stop: tokio_util::sync::CancellationToken,
) -> anyhow::Result<Option<LocalMarketData>> {
    let Some(binary) = crate::redis_server::find_redis_server() else {
        tracing::warn!(
            "no redis-server on this host: every worker opens its own venue connections. \
             For one shared set, install it (Debian: apt-get install redis-server) or name it \
             in POLYBOT_REDIS_SERVER; --no-shared-market-data silences this"
        );
        return Ok(None);
    };
    let redis = crate::redis_server::PrivateRedis::start(&binary, data_dir).await?;
    let mut live = LiveSettings::from_env()?;
    live.market_data = None;
    let settings = MarketDataSettings {
        redis_url: redis.service_url.clone(),
        redis_ca: None,
        venues: None,
        live,
        refresh_every: Duration::from_secs(2),
    };
    let cancel = stop.child_token();
    let token = cancel.clone();
    let service = tokio::spawn(async move {
        let mut backoff = Duration::from_secs(1);
        while !token.is_cancelled() {
            match run_market_data(settings.clone(), token.clone()).await {
                Ok(()) => break,
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "the market-data service stopped; restarting");
                    tokio::select! {
                        () = token.cancelled() => break,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    });
    tracing::info!("shared market data: a private redis-server and the market-data service");
    Ok(Some(LocalMarketData {
        redis,
        service,
        cancel,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_file_gives_its_first_line_and_an_empty_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("url");
        std::fs::write(&path, "rediss://marketdata:pw@redis:6379\n").unwrap();
        assert_eq!(
            secrecy::ExposeSecret::expose_secret(&read_url_file(&path).unwrap()),
            "rediss://marketdata:pw@redis:6379"
        );
        std::fs::write(&path, "\n").unwrap();
        let err = read_url_file(&path).unwrap_err().to_string();
        assert!(err.contains("is empty") && err.contains("url"), "{err}");
    }

    #[test]
    fn venues_are_named_as_in_tenants_configs() {
        assert_eq!(parse_venue(" binance_us "), Ok(Venue::BinanceUs));
        let err = parse_venue("binance").unwrap_err();
        assert!(
            err.contains("polymarket, kalshi, binance_us, coinbase, kraken"),
            "{err}"
        );
    }
}
