//! A private PgBouncer in transaction mode, in front of PostgreSQL: the
//! workers' connection budget.
//!
//! `polybot up` starts it beside its private PostgreSQL, and the tests start
//! one in front of theirs. Workers log in to it with the fleet's shared
//! worker login; however many workers there are, PgBouncer opens at most
//! [`PoolerOptions::server_connections`] connections to PostgreSQL, and
//! lends one to a worker for the length of a transaction. Each transaction
//! carries the worker's claim (see [`crate::claims`]), so isolation does not
//! depend on which server connection a transaction gets.
//!
//! Its files live in one directory:
//!
//! ```text
//! <dir>/
//!   pgbouncer.ini    the configuration (written at every start)
//!   userlist.txt     0600, the logins it accepts, with their passwords
//!   pgbouncer.log    its output
//!   port             the TCP port of the last start, reused when free
//! ```
//!
//! Like PostgreSQL, PgBouncer refuses to run as root: when this process is
//! root it runs as the `postgres` (or `nobody`) system user through
//! `runuser`, which must be able to reach `<dir>`.
//!
//! Two settings matter for the workers' driver (sqlx): every server
//! connection is reset with `DISCARD ALL` when a transaction ends
//! (`server_reset_query_always`), so that no prepared statement, session
//! setting or temporary table of one worker survives into another's
//! transaction; and workers keep no prepared statement across transactions
//! ([`crate::Db::connect_worker`]). PgBouncer 1.21+ could carry prepared
//! statements itself (`max_prepared_statements`), but Debian 12 ships 1.18.

use std::fs;
use std::net::{Ipv4Addr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use secrecy::{ExposeSecret, SecretString};
use tokio::process::{Child, Command};

use crate::embedded::{
    EmbeddedError, ServerUser, free_port, io_err, progress, reusable_port, tail_of,
    write_private_file,
};

const INSTALL_HINT: &str = "PgBouncer (pgbouncer) was not found on PATH, in /usr/sbin or in \
     POLYBOT_PGBOUNCER. Install it (Debian/Ubuntu: `apt-get install pgbouncer`).";

/// What went wrong while starting the pooler.
#[derive(Debug, thiserror::Error)]
pub enum PoolerError {
    #[error("{INSTALL_HINT}")]
    BinaryMissing,
    #[error(transparent)]
    Embedded(#[from] EmbeddedError),
    #[error("PgBouncer exited during start-up ({status}); the end of {log}:\n{tail}")]
    Exited {
        status: String,
        log: PathBuf,
        tail: String,
    },
    #[error("PgBouncer did not accept connections within {0:?}; see {1}")]
    StartTimeout(Duration, PathBuf),
    #[error(
        "{0} cannot be a pooler login: use letters, digits and _, and a password of letters and digits"
    )]
    BadLogin(String),
}

/// How to start the pooler.
#[derive(Debug, Clone)]
pub struct PoolerOptions {
    /// Where its files live (see the module docs).
    pub dir: PathBuf,
    /// Its TCP port on 127.0.0.1; `None` reuses the last one if free, else a free one.
    pub port: Option<u16>,
    /// The PostgreSQL server it forwards to.
    pub upstream_host: String,
    pub upstream_port: u16,
    /// The most connections it opens to PostgreSQL, for all logins together
    /// (per database; PolyBot uses one).
    pub server_connections: u32,
    /// The most client connections it accepts (two per worker at most).
    pub max_clients: u32,
    /// The logins it accepts, with their passwords (it logs in to
    /// PostgreSQL with the same ones).
    pub logins: Vec<(String, SecretString)>,
}

impl PoolerOptions {
    /// Defaults for `dir` in front of `upstream_host:upstream_port`: 50
    /// server connections, 5,000 clients.
    pub fn new(dir: impl Into<PathBuf>, upstream_host: &str, upstream_port: u16) -> Self {
        Self {
            dir: dir.into(),
            port: None,
            upstream_host: upstream_host.to_owned(),
            upstream_port,
            server_connections: 50,
            max_clients: 5_000,
            logins: Vec::new(),
        }
    }
}

/// A running PgBouncer. Stop it with [`EmbeddedPooler::stop`]; dropping it
/// without stopping shuts it down too.
#[derive(Debug)]
pub struct EmbeddedPooler {
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
}

/// Finds `pgbouncer`: `POLYBOT_PGBOUNCER`, then PATH, then /usr/sbin (where
/// Debian puts it, often off a user's PATH).
pub fn locate_binary() -> Result<PathBuf, PoolerError> {
    if let Some(path) = std::env::var_os("POLYBOT_PGBOUNCER") {
        let path = PathBuf::from(path);
        return path
            .is_file()
            .then_some(path)
            .ok_or(PoolerError::BinaryMissing);
    }
    let on_path = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/sbin")])
        .map(|dir| dir.join("pgbouncer"))
        .find(|path| path.is_file())
        .ok_or(PoolerError::BinaryMissing)
}

/// A name or password PgBouncer's files can hold without quoting rules.
fn plain(text: &str) -> bool {
    !text.is_empty() && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl EmbeddedPooler {
    /// Writes the configuration, starts PgBouncer and waits until it accepts
    /// connections.
    pub async fn start(options: &PoolerOptions) -> Result<Self, PoolerError> {
        let started = Instant::now();
        let binary = locate_binary()?;
        let user = ServerUser::for_this_process()?;
        for (login, password) in &options.logins {
            if !plain(login) || !plain(password.expose_secret()) {
                return Err(PoolerError::BadLogin(login.clone()));
            }
        }
        let dir = &options.dir;
        fs::create_dir_all(dir).map_err(io_err("creating", dir))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .map_err(io_err("setting permissions on", dir))?;
        let port_file = dir.join("port");
        let port = match options.port {
            Some(port) => port,
            None => reusable_port(&port_file).unwrap_or(free_port(dir)?),
        };
        write_private_file(&port_file, port.to_string().as_bytes())?;

        let userlist = dir.join("userlist.txt");
        let users: String = options
            .logins
            .iter()
            .map(|(login, password)| format!("\"{login}\" \"{}\"\n", password.expose_secret()))
            .collect();
        write_private_file(&userlist, users.as_bytes())?;
        let ini = dir.join("pgbouncer.ini");
        let pidfile = dir.join("pgbouncer.pid");
        let config = format!(
            "[databases]\n\
             * = host={host} port={upstream_port}\n\
             \n\
             [pgbouncer]\n\
             listen_addr = 127.0.0.1\n\
             listen_port = {port}\n\
             unix_socket_dir =\n\
             pidfile = {pidfile}\n\
             auth_type = scram-sha-256\n\
             auth_file = {userlist}\n\
             pool_mode = transaction\n\
             max_client_conn = {max_clients}\n\
             default_pool_size = {budget}\n\
             max_db_connections = {budget}\n\
             min_pool_size = 0\n\
             reserve_pool_size = 0\n\
             server_reset_query = DISCARD ALL\n\
             server_reset_query_always = 1\n\
             ignore_startup_parameters = extra_float_digits\n\
             server_tls_sslmode = disable\n\
             client_tls_sslmode = disable\n\
             log_connections = 0\n\
             log_disconnections = 0\n",
            host = options.upstream_host,
            upstream_port = options.upstream_port,
            pidfile = pidfile.display(),
            userlist = userlist.display(),
            max_clients = options.max_clients,
            budget = options.server_connections,
        );
        fs::write(&ini, config).map_err(io_err("writing", &ini))?;
        if let Some(user) = &user {
            for path in [dir, &userlist, &ini, &port_file] {
                user.chown(path)?;
            }
        }
        stop_leftover(&pidfile).await;

        let log = dir.join("pgbouncer.log");
        let out = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(io_err("opening", &log))?;
        let err = out.try_clone().map_err(io_err("opening", &log))?;
        // One descriptor per client and server connection: raise the soft
        // limit (often 1,024) up to the hard one, with util-linux's prlimit.
        let descriptors =
            u64::from(options.max_clients) + u64::from(options.server_connections) + 64;
        let prlimit = Path::new("/usr/bin/prlimit");
        let mut cmd = match (&user, prlimit.is_file()) {
            (Some(user), true) => user.command(prlimit),
            (None, true) => Command::new(prlimit),
            (Some(user), false) => user.command(&binary),
            (None, false) => Command::new(&binary),
        };
        if prlimit.is_file() {
            let limit = descriptors.min(hard_descriptor_limit().unwrap_or(descriptors));
            cmd.arg(format!("--nofile={limit}:")).arg(&binary);
        }
        cmd.arg(&ini)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .kill_on_drop(false);
        progress(&format!(
            "starting PgBouncer on 127.0.0.1:{port} (at most {} server connections)",
            options.server_connections
        ));
        let child = cmd.spawn().map_err(io_err("starting", &binary))?;
        let mut pooler = Self {
            dir: dir.clone(),
            port,
            child: Some(child),
        };
        pooler.wait_until_ready(&log).await?;
        progress(&format!(
            "PgBouncer is accepting connections on 127.0.0.1:{port} ({:.1} s)",
            started.elapsed().as_secs_f32()
        ));
        Ok(pooler)
    }

    async fn wait_until_ready(&mut self, log: &Path) -> Result<(), PoolerError> {
        const LIMIT: Duration = Duration::from_secs(20);
        let deadline = Instant::now() + LIMIT;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                return Err(PoolerError::Exited {
                    status: status.to_string(),
                    log: log.to_path_buf(),
                    tail: tail_of(log, 20),
                });
            }
            // PgBouncer listens once its configuration is loaded; the pid
            // file says the listener is its own, not a leftover's.
            if pid_of(&self.dir.join("pgbouncer.pid")).is_some()
                && TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)).is_ok()
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(PoolerError::StartTimeout(LIMIT, log.to_path_buf()));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Its TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Immediate shutdown: client connections are closed.
    pub async fn stop(mut self) -> Result<(), PoolerError> {
        signal_pooler(&self.dir.join("pgbouncer.pid"), Signal::SIGTERM);
        if let Some(mut child) = self.child.take()
            && tokio::time::timeout(Duration::from_secs(10), child.wait())
                .await
                .is_err()
        {
            signal_pooler(&self.dir.join("pgbouncer.pid"), Signal::SIGKILL);
            child
                .wait()
                .await
                .map_err(io_err("waiting for", &self.dir))?;
        }
        progress("PgBouncer stopped");
        Ok(())
    }
}

impl Drop for EmbeddedPooler {
    fn drop(&mut self) {
        if self.child.is_some() {
            signal_pooler(&self.dir.join("pgbouncer.pid"), Signal::SIGTERM);
        }
    }
}

/// This process's hard limit on open files (inherited by PgBouncer).
fn hard_descriptor_limit() -> Option<u64> {
    let limits = fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(4)?.parse().ok()
}

fn pid_of(pidfile: &Path) -> Option<Pid> {
    let pid: i32 = fs::read_to_string(pidfile).ok()?.trim().parse().ok()?;
    Some(Pid::from_raw(pid))
}

/// Signals PgBouncer by its pid file: under `runuser` the child we hold is
/// `runuser`, not PgBouncer.
fn signal_pooler(pidfile: &Path, signal: Signal) {
    if let Some(pid) = pid_of(pidfile)
        && let Err(err) = signal::kill(pid, signal)
    {
        tracing::debug!(%pid, %err, "could not signal PgBouncer");
    }
}

/// A PgBouncer left running by a `polybot` that was killed is stopped, so
/// that the port and pid file are this start's.
async fn stop_leftover(pidfile: &Path) {
    let Some(pid) = pid_of(pidfile) else {
        return;
    };
    if signal::kill(pid, None).is_ok() {
        progress(&format!("stopping a PgBouncer left running (pid {pid})"));
        signal_pooler(pidfile, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while signal::kill(pid, None).is_ok() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
    if let Err(err) = fs::remove_file(pidfile) {
        tracing::debug!(%err, "removing PgBouncer's old pid file");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_missing_binary_message_says_how_to_install_it() {
        let message = PoolerError::BinaryMissing.to_string();
        assert!(message.contains("apt-get install pgbouncer"), "{message}");
    }

    #[test]
    fn only_plain_names_and_passwords_go_into_its_files() {
        assert!(plain("polybot_workers"));
        assert!(plain("a1b2c3"));
        assert!(!plain(""));
        assert!(!plain("a\"b"));
        assert!(!plain("a b"));
    }
}
