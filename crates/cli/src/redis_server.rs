//! The private `redis-server` `polybot up` runs for the shared market-data
//! service (docs/market-data.md), like its private PostgreSQL: bound to
//! loopback, its own directory under the data dir, nothing persisted.
//!
//! Two Redis users with random passwords, written only to the 0600 config
//! file: `marketdata` (the service: publishes and writes snapshots) and
//! `worker` (what every worker gets: it may read snapshots, subscribe to the
//! topics and register its plan, and nothing else), so that a compromised
//! worker cannot feed other tenants false prices. The default user is off.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use secrecy::{ExposeSecret, SecretString};

/// The binary: `POLYBOT_REDIS_SERVER`, else `redis-server` on the PATH.
pub fn find_redis_server() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("POLYBOT_REDIS_SERVER") {
        return Some(PathBuf::from(path));
    }
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|p| p.join("redis-server"))
        .find(|p| p.is_file())
}

/// A running private redis-server; stopped on [`PrivateRedis::stop`] (or
/// killed when dropped).
pub struct PrivateRedis {
    child: tokio::process::Child,
    /// For the market-data service.
    pub service_url: SecretString,
    /// For the workers.
    pub worker_url: SecretString,
}

fn password() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

impl PrivateRedis {
    /// Starts `binary` with its directory `<data_dir>/redis` and waits until
    /// it answers.
    pub async fn start(binary: &Path, data_dir: &Path) -> anyhow::Result<Self> {
        let dir = data_dir.join("redis");
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("creating the Redis directory {}", dir.display()))?;
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0")
                .context("finding a free loopback port for Redis")?;
            listener.local_addr()?.port()
        };
        let (service_pw, worker_pw) = (password(), password());
        let config = format!(
            "bind 127.0.0.1\n\
             port {port}\n\
             protected-mode yes\n\
             daemonize no\n\
             save \"\"\n\
             appendonly no\n\
             dir {dir}\n\
             user default off\n\
             user marketdata on >{service_pw} ~polybot:md:* &polybot:md:* +@all\n\
             user worker on >{worker_pw} %R~polybot:md:snap:* %R~polybot:md:health %RW~polybot:md:plans &polybot:md:ev:* +ping +get +subscribe +unsubscribe +hgetall +hset\n",
            dir = dir.display(),
        );
        let config_path = dir.join("redis.conf");
        write_private(&config_path, &config)?;
        let log_path = dir.join("redis.log");
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        let child = tokio::process::Command::new(binary)
            .arg(&config_path)
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let redis = Self {
            child,
            service_url: SecretString::from(format!(
                "redis://marketdata:{service_pw}@127.0.0.1:{port}"
            )),
            worker_url: SecretString::from(format!("redis://worker:{worker_pw}@127.0.0.1:{port}")),
        };
        let mut redis = redis;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let exited = redis.child.try_wait().context("watching redis-server")?;
            match ping(redis.service_url.expose_secret()).await {
                Ok(()) => break,
                Err(e) if exited.is_some() || tokio::time::Instant::now() >= deadline => {
                    let tail = std::fs::read_to_string(&log_path).unwrap_or_default();
                    let tail: String = tail.lines().rev().take(5).collect::<Vec<_>>().join(" | ");
                    if let Some(status) = exited {
                        anyhow::bail!(
                            "the private redis-server exited ({status}); its log ({}): {tail}",
                            log_path.display()
                        );
                    }
                    anyhow::bail!(
                        "the private redis-server on 127.0.0.1:{port} did not answer within 15 s ({e}); its log ({}): {tail}",
                        log_path.display()
                    );
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        Ok(redis)
    }

    pub async fn stop(mut self) {
        if let Err(e) = self.child.kill().await {
            tracing::warn!(error = %e, "stopping the private redis-server");
        }
    }
}

async fn ping(url: &str) -> Result<(), redis::RedisError> {
    let mut conn = redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await?;
    redis::cmd("PING").query_async::<String>(&mut conn).await?;
    Ok(())
}

/// Writes `text` to a new file readable by this user only.
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    // An older file keeps its mode on open: narrow it.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("restricting {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn conn(url: &SecretString) -> redis::aio::MultiplexedConnection {
        redis::Client::open(url.expose_secret())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn workers_may_register_and_read_but_only_the_service_may_publish() {
        let binary = find_redis_server().expect(
            "redis-server is installed (Debian: apt-get install redis-server; scripts/test installs it)",
        );
        let dir = tempfile::tempdir().unwrap();
        let redis = PrivateRedis::start(&binary, dir.path()).await.unwrap();
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(dir.path().join("redis/redis.conf"))
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);

        let mut service = conn(&redis.service_url).await;
        let mut worker = conn(&redis.worker_url).await;
        let published: i64 = redis::cmd("PUBLISH")
            .arg("polybot:md:ev:spot:coinbase:BTC")
            .arg("1 {}")
            .query_async(&mut service)
            .await
            .unwrap();
        assert_eq!(published, 0);
        redis::cmd("HSET")
            .arg("polybot:md:snap:spot:coinbase:BTC")
            .arg("_seq")
            .arg(1)
            .query_async::<i64>(&mut service)
            .await
            .unwrap();

        // What a worker does.
        let added: i64 = redis::cmd("HSET")
            .arg("polybot:md:plans")
            .arg("w1")
            .arg("{}")
            .query_async(&mut worker)
            .await
            .unwrap();
        assert_eq!(added, 1);
        let snapshot: Vec<String> = redis::cmd("HGETALL")
            .arg("polybot:md:snap:spot:coinbase:BTC")
            .query_async(&mut worker)
            .await
            .unwrap();
        assert_eq!(snapshot, vec!["_seq", "1"]);
        let health: Option<String> = redis::cmd("GET")
            .arg("polybot:md:health")
            .query_async(&mut worker)
            .await
            .unwrap();
        assert_eq!(health, None);

        // What it may not: publish, write a snapshot, touch other keys.
        for cmd in [
            redis::cmd("PUBLISH")
                .arg("polybot:md:ev:spot:coinbase:BTC")
                .arg("2 {}")
                .clone(),
            redis::cmd("HSET")
                .arg("polybot:md:snap:spot:coinbase:BTC")
                .arg("1s:BTC")
                .arg("{}")
                .clone(),
            redis::cmd("SET").arg("polybot:md:health").arg("{}").clone(),
            redis::cmd("GET").arg("other").clone(),
        ] {
            let err = cmd
                .query_async::<redis::Value>(&mut worker)
                .await
                .unwrap_err();
            assert!(err.to_string().contains("NOPERM"), "{err}");
        }
        redis.stop().await;
    }
}
