//! A private PostgreSQL cluster started from the machine's own server binaries.
//!
//! `polybot up`, the test command and developers use it when no `DATABASE_URL`
//! is given. The cluster lives in `<data-dir>/postgres/`:
//!
//! ```text
//! <data-dir>/postgres/
//!   data/                  PGDATA (owned by the server's user)
//!   run/                   the Unix socket
//!   postgres.log           the server's output
//!   port                   the TCP port of the last start, reused when free
//!   superuser-password     0600, the `postgres` superuser's password
//!   worker-password        0600, the shared worker login's password
//!   pgbouncer/             the PgBouncer in front of it (`polybot up`; see `crate::pooler`)
//! ```
//!
//! `initdb` and `postgres` refuse to run as root. When this process is root the
//! server runs as the unprivileged `postgres` system user (or `nobody`) through
//! `runuser`, and that user must be able to reach the data dir: when a parent
//! directory is closed to it (for example a checkout under `/root`), the
//! cluster is placed under `/var/lib/polybot/clusters/<hash>/` and
//! `<data-dir>/postgres` becomes a symlink to it.
//!
//! The server runs in its own process group, so a Ctrl-C in the terminal
//! reaches `polybot` first, which then stops the server with a fast shutdown.

use std::fs;
use std::io::{self, Write};
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{self, Signal};
use nix::unistd::{Pid, Uid, User};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};
use tokio::process::{Child, Command};

/// The superuser that `initdb` creates.
pub const SUPERUSER: &str = "postgres";
/// The database PolyBot uses inside the embedded cluster.
pub const DATABASE: &str = "polybot";

const INSTALL_HINT: &str = "PostgreSQL server binaries (initdb, postgres) were not found on PATH, \
     via `pg_config --bindir`, under /usr/lib/postgresql/*/bin, or in POLYBOT_PG_BINDIR. Install them \
     (Debian/Ubuntu: `apt-get install postgresql`), or set DATABASE_URL to use an existing server.";

/// What went wrong while starting or stopping the embedded cluster.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    /// No server binaries on this machine.
    #[error("{INSTALL_HINT}")]
    BinariesMissing,
    #[error(
        "running as root, but neither the `postgres` nor the `nobody` user exists to run the server; create one (`useradd --system postgres`) or set DATABASE_URL"
    )]
    NoUnprivilegedUser,
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("`{command}` failed ({status}); its output:\n{output}")]
    Command {
        command: String,
        status: String,
        output: String,
    },
    #[error("the PostgreSQL server exited during start-up ({status}); the end of {log}:\n{tail}")]
    ServerExited {
        status: String,
        log: PathBuf,
        tail: String,
    },
    #[error("the PostgreSQL server did not accept connections within {0:?}; see {1}")]
    StartTimeout(Duration, PathBuf),
    #[error("database error while preparing the embedded cluster: {0}")]
    Database(#[from] sqlx::Error),
}

pub(crate) fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> EmbeddedError {
    let path = path.to_path_buf();
    move |source| EmbeddedError::Io {
        action,
        path,
        source,
    }
}

/// How to start the cluster.
#[derive(Debug, Clone)]
pub struct EmbeddedOptions {
    /// The platform's data dir; the cluster lives in `<data_dir>/postgres`.
    pub data_dir: PathBuf,
    /// The TCP port on 127.0.0.1; `None` reuses the last one if free, else picks a free one.
    pub port: Option<u16>,
    /// Trade durability for speed (`fsync=off` and friends): for tests only.
    pub ephemeral: bool,
    /// `max_connections` of the server.
    pub max_connections: u32,
}

impl EmbeddedOptions {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            port: None,
            ephemeral: false,
            max_connections: 300,
        }
    }
}

/// The server binaries this machine has.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub initdb: PathBuf,
    pub postgres: PathBuf,
}

impl Binaries {
    /// Finds `initdb` and `postgres` on PATH, via `pg_config --bindir`, or under
    /// `/usr/lib/postgresql/<version>/bin` (the newest version wins).
    /// `POLYBOT_PG_BINDIR`, when set, is the only place looked at.
    pub fn locate() -> Result<Self, EmbeddedError> {
        let mut candidates: Vec<PathBuf> = Vec::new();
        if let Some(dir) = std::env::var_os("POLYBOT_PG_BINDIR") {
            candidates.push(PathBuf::from(dir));
            return Self::first_complete(candidates);
        }
        if let Some(path) = std::env::var_os("PATH") {
            candidates.extend(std::env::split_paths(&path));
        }
        if let Ok(out) = std::process::Command::new("pg_config")
            .arg("--bindir")
            .stderr(Stdio::null())
            .output()
            && out.status.success()
        {
            let dir = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            if !dir.is_empty() {
                candidates.push(PathBuf::from(dir));
            }
        }
        if let Ok(entries) = fs::read_dir("/usr/lib/postgresql") {
            let mut versions: Vec<(u32, PathBuf)> = entries
                .filter_map(Result::ok)
                .filter_map(|e| {
                    let version = e.file_name().to_str()?.parse::<u32>().ok()?;
                    Some((version, e.path().join("bin")))
                })
                .collect();
            versions.sort_by_key(|v| std::cmp::Reverse(v.0));
            candidates.extend(versions.into_iter().map(|(_, dir)| dir));
        }
        Self::first_complete(candidates)
    }

    fn first_complete(candidates: Vec<PathBuf>) -> Result<Self, EmbeddedError> {
        candidates
            .into_iter()
            .find(|dir| dir.join("initdb").is_file() && dir.join("postgres").is_file())
            .map(|dir| Self {
                initdb: dir.join("initdb"),
                postgres: dir.join("postgres"),
            })
            .ok_or(EmbeddedError::BinariesMissing)
    }
}

/// The OS user the server runs as, when this process is root.
#[derive(Debug, Clone)]
pub(crate) struct ServerUser {
    name: String,
    uid: nix::unistd::Uid,
    gid: nix::unistd::Gid,
}

impl ServerUser {
    pub(crate) fn for_this_process() -> Result<Option<Self>, EmbeddedError> {
        if !Uid::effective().is_root() {
            return Ok(None);
        }
        for name in ["postgres", "nobody"] {
            if let Ok(Some(user)) = User::from_name(name) {
                return Ok(Some(Self {
                    name: user.name,
                    uid: user.uid,
                    gid: user.gid,
                }));
            }
        }
        Err(EmbeddedError::NoUnprivilegedUser)
    }

    pub(crate) fn chown(&self, path: &Path) -> Result<(), EmbeddedError> {
        nix::unistd::chown(path, Some(self.uid), Some(self.gid))
            .map_err(|e| io::Error::from_raw_os_error(e as i32))
            .map_err(io_err("changing the owner of", path))
    }

    /// Can this user traverse every directory down to `dir`?
    fn can_reach(&self, dir: &Path) -> bool {
        std::process::Command::new("runuser")
            .args(["-u", &self.name, "--", "test", "-x"])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    pub(crate) fn command(&self, program: &Path) -> Command {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", &self.name, "--"]).arg(program);
        cmd
    }
}

/// A running private cluster. Stop it with [`EmbeddedPostgres::stop`]; dropping
/// it without stopping sends the server a fast-shutdown signal.
#[derive(Debug)]
pub struct EmbeddedPostgres {
    cluster_dir: PathBuf,
    socket_dir: PathBuf,
    port: u16,
    password: SecretString,
    child: Option<Child>,
}

/// Paths of one cluster.
struct Layout {
    cluster: PathBuf,
    pgdata: PathBuf,
    socket: PathBuf,
    log: PathBuf,
    port_file: PathBuf,
    password_file: PathBuf,
}

impl Layout {
    fn new(cluster: PathBuf) -> Self {
        let socket = short_socket_dir(&cluster);
        Self {
            pgdata: cluster.join("data"),
            log: cluster.join("postgres.log"),
            port_file: cluster.join("port"),
            password_file: cluster.join("superuser-password"),
            socket,
            cluster,
        }
    }
}

/// The socket path `<dir>/.s.PGSQL.<port>` must fit in 107 bytes; a deep data
/// dir gets its socket under /tmp instead.
fn short_socket_dir(cluster: &Path) -> PathBuf {
    let natural = cluster.join("run");
    if natural.as_os_str().len() + ".s.PGSQL.65535".len() + 1 < 100 {
        natural
    } else {
        std::env::temp_dir().join(format!("polybot-pg-{}", &path_hash(cluster)[..12]))
    }
}

fn path_hash(path: &Path) -> String {
    hex::encode(Sha256::digest(path.as_os_str().as_encoded_bytes()))
}

pub(crate) fn progress(message: &str) {
    tracing::info!(target: "polybot::postgres", "{message}");
}

impl EmbeddedPostgres {
    /// Initialises the cluster if needed, starts the server, waits until it
    /// accepts connections and makes sure the `polybot` database exists.
    pub async fn start(options: &EmbeddedOptions) -> Result<Self, EmbeddedError> {
        let started = Instant::now();
        let binaries = Binaries::locate()?;
        let user = ServerUser::for_this_process()?;

        fs::create_dir_all(&options.data_dir).map_err(io_err("creating", &options.data_dir))?;
        let data_dir = options
            .data_dir
            .canonicalize()
            .map_err(io_err("resolving", &options.data_dir))?;
        let layout = Layout::new(Self::locate_cluster(&data_dir, user.as_ref())?);

        for dir in [&layout.cluster, &layout.socket] {
            fs::create_dir_all(dir).map_err(io_err("creating", dir))?;
        }
        if let Some(user) = &user {
            // The server's user must reach the cluster and own its socket dir.
            fs::set_permissions(&layout.cluster, fs::Permissions::from_mode(0o711))
                .map_err(io_err("setting permissions on", &layout.cluster))?;
            user.chown(&layout.socket)?;
        }
        fs::set_permissions(&layout.socket, fs::Permissions::from_mode(0o700))
            .map_err(io_err("setting permissions on", &layout.socket))?;

        stop_leftover_server(&layout.pgdata).await;

        if !layout.pgdata.join("PG_VERSION").is_file() {
            progress(&format!(
                "initialising a new cluster in {}",
                layout.pgdata.display()
            ));
            init_cluster(&binaries, user.as_ref(), &layout, options.ephemeral).await?;
        } else {
            progress(&format!(
                "reusing the cluster in {}",
                layout.pgdata.display()
            ));
        }
        let password = read_secret_file(&layout.password_file)?;

        let port = match options.port {
            Some(port) => port,
            None => reusable_port(&layout.port_file).unwrap_or(free_port(&layout.cluster)?),
        };
        write_private_file(&layout.port_file, port.to_string().as_bytes())?;

        let mut cmd = match &user {
            Some(user) => user.command(&binaries.postgres),
            None => Command::new(&binaries.postgres),
        };
        cmd.arg("-D")
            .arg(&layout.pgdata)
            .arg("-k")
            .arg(&layout.socket)
            .args(["-p", &port.to_string(), "-h", "127.0.0.1"])
            .args([
                "-c",
                &format!("max_connections={}", options.max_connections),
            ])
            .args(["-c", "shared_buffers=64MB"]);
        if options.ephemeral {
            for setting in [
                "fsync=off",
                "synchronous_commit=off",
                "full_page_writes=off",
            ] {
                cmd.args(["-c", setting]);
            }
        }
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&layout.log)
            .map_err(io_err("opening", &layout.log))?;
        let log_err = log.try_clone().map_err(io_err("opening", &layout.log))?;
        cmd.stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .process_group(0)
            .kill_on_drop(false);
        progress(&format!("starting PostgreSQL on 127.0.0.1:{port}"));
        let child = cmd
            .spawn()
            .map_err(io_err("starting", &binaries.postgres))?;

        let mut server = Self {
            cluster_dir: layout.cluster.clone(),
            socket_dir: layout.socket.clone(),
            port,
            password,
            child: Some(child),
        };
        server.wait_until_ready(&layout.log).await?;
        server.ensure_database().await?;
        progress(&format!(
            "PostgreSQL is accepting connections on 127.0.0.1:{port} ({:.1} s)",
            started.elapsed().as_secs_f32()
        ));
        Ok(server)
    }

    /// Where the cluster of `data_dir` lives (see the module docs).
    fn locate_cluster(
        data_dir: &Path,
        user: Option<&ServerUser>,
    ) -> Result<PathBuf, EmbeddedError> {
        let natural = data_dir.join("postgres");
        let Some(user) = user else {
            return Ok(natural);
        };
        if let Ok(target) = fs::read_link(&natural) {
            return Ok(target);
        }
        if natural.is_dir() {
            return Ok(natural);
        }
        // The data dir itself must be traversable (not listable) by the server.
        let mode = fs::metadata(data_dir)
            .map_err(io_err("reading", data_dir))?
            .permissions()
            .mode();
        if mode & 0o001 == 0 {
            fs::set_permissions(data_dir, fs::Permissions::from_mode(mode | 0o001))
                .map_err(io_err("setting permissions on", data_dir))?;
        }
        if user.can_reach(data_dir) {
            return Ok(natural);
        }
        let elsewhere = Path::new("/var/lib/polybot/clusters").join(&path_hash(data_dir)[..16]);
        fs::create_dir_all(&elsewhere).map_err(io_err("creating", &elsewhere))?;
        for dir in ["/var/lib/polybot", "/var/lib/polybot/clusters"] {
            fs::set_permissions(dir, fs::Permissions::from_mode(0o711))
                .map_err(io_err("setting permissions on", Path::new(dir)))?;
        }
        progress(&format!(
            "{} is not reachable by the `{}` user; the cluster lives in {} instead",
            data_dir.display(),
            user.name,
            elsewhere.display()
        ));
        std::os::unix::fs::symlink(&elsewhere, &natural).map_err(io_err("linking", &natural))?;
        Ok(elsewhere)
    }

    async fn wait_until_ready(&mut self, log: &Path) -> Result<(), EmbeddedError> {
        const LIMIT: Duration = Duration::from_secs(60);
        let deadline = Instant::now() + LIMIT;
        let options = self.connect_options("postgres");
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                return Err(EmbeddedError::ServerExited {
                    status: status.to_string(),
                    log: log.to_path_buf(),
                    tail: tail_of(log, 20),
                });
            }
            match options.connect().await {
                Ok(conn) => {
                    conn.close().await?;
                    return Ok(());
                }
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(_) => return Err(EmbeddedError::StartTimeout(LIMIT, log.to_path_buf())),
            }
        }
    }

    async fn ensure_database(&self) -> Result<(), EmbeddedError> {
        let mut conn = self.connect_options("postgres").connect().await?;
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                .bind(DATABASE)
                .fetch_one(&mut conn)
                .await?;
        if !exists {
            // The name is a constant of ours: identifiers cannot be bound.
            sqlx::query(&format!("CREATE DATABASE {DATABASE}"))
                .execute(&mut conn)
                .await?;
        }
        conn.close().await?;
        Ok(())
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory holding the server's Unix socket.
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// Where the cluster lives.
    pub fn cluster_dir(&self) -> &Path {
        &self.cluster_dir
    }

    /// The password of the cluster's shared worker login (which workers use
    /// through its PgBouncer): `<cluster>/worker-password`, created (0600) on
    /// first use and kept, so that workers' secrets stay valid across starts.
    pub fn worker_password(&self) -> Result<SecretString, EmbeddedError> {
        let path = self.cluster_dir.join("worker-password");
        if let Ok(password) = read_secret_file(&path)
            && !password.expose_secret().is_empty()
        {
            return Ok(password);
        }
        let password = random_password();
        write_private_file(&path, password.as_bytes())?;
        Ok(SecretString::from(password))
    }

    /// Superuser connection options for `database`, over TCP.
    pub fn connect_options(&self, database: &str) -> PgConnectOptions {
        PgConnectOptions::new()
            .host("127.0.0.1")
            .port(self.port)
            .username(SUPERUSER)
            .password(self.password.expose_secret())
            .database(database)
    }

    /// A superuser URL for `database`, for tools and child processes that take
    /// `DATABASE_URL`. It holds the password: never log it.
    pub fn url(&self, database: &str) -> SecretString {
        SecretString::from(format!(
            "postgres://{SUPERUSER}:{}@127.0.0.1:{}/{database}",
            self.password.expose_secret(),
            self.port
        ))
    }

    /// Fast shutdown: ends client sessions, writes a checkpoint, exits.
    pub async fn stop(mut self) -> Result<(), EmbeddedError> {
        let pgdata = self.cluster_dir.join("data");
        signal_postmaster(&pgdata, Signal::SIGINT);
        if let Some(mut child) = self.child.take() {
            match tokio::time::timeout(Duration::from_secs(30), child.wait()).await {
                Ok(_) => {}
                Err(_) => {
                    signal_postmaster(&pgdata, Signal::SIGQUIT);
                    child
                        .wait()
                        .await
                        .map_err(io_err("waiting for", &self.cluster_dir))?;
                }
            }
        }
        wait_for_pid_file_removal(&pgdata, Duration::from_secs(10)).await;
        progress("PostgreSQL stopped");
        Ok(())
    }
}

impl Drop for EmbeddedPostgres {
    fn drop(&mut self) {
        if self.child.is_some() {
            signal_postmaster(&self.cluster_dir.join("data"), Signal::SIGINT);
        }
    }
}

async fn init_cluster(
    binaries: &Binaries,
    user: Option<&ServerUser>,
    layout: &Layout,
    ephemeral: bool,
) -> Result<(), EmbeddedError> {
    // A half-initialised data dir (an interrupted initdb) is started over.
    if layout.pgdata.exists() {
        fs::remove_dir_all(&layout.pgdata).map_err(io_err("removing", &layout.pgdata))?;
    }
    fs::create_dir_all(&layout.pgdata).map_err(io_err("creating", &layout.pgdata))?;
    fs::set_permissions(&layout.pgdata, fs::Permissions::from_mode(0o700))
        .map_err(io_err("setting permissions on", &layout.pgdata))?;

    let password = random_password();
    write_private_file(&layout.password_file, password.as_bytes())?;
    // initdb reads the password from a file its user can read; removed right after.
    let pwfile = layout.cluster.join(".initdb-pw");
    write_private_file(&pwfile, password.as_bytes())?;
    if let Some(user) = user {
        user.chown(&layout.pgdata)?;
        user.chown(&pwfile)?;
    }
    let mut cmd = match user {
        Some(user) => user.command(&binaries.initdb),
        None => Command::new(&binaries.initdb),
    };
    cmd.arg("-D")
        .arg(&layout.pgdata)
        .args([
            "-U",
            SUPERUSER,
            "--auth=scram-sha-256",
            "-E",
            "UTF8",
            "--locale=C",
        ])
        .arg(format!("--pwfile={}", pwfile.display()));
    if ephemeral {
        cmd.arg("--no-sync");
    }
    let output = cmd
        .output()
        .await
        .map_err(io_err("running", &binaries.initdb));
    fs::remove_file(&pwfile).map_err(io_err("removing", &pwfile))?;
    let output = output?;
    if !output.status.success() {
        return Err(EmbeddedError::Command {
            command: format!(
                "{} -D {}",
                binaries.initdb.display(),
                layout.pgdata.display()
            ),
            status: output.status.to_string(),
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        });
    }
    Ok(())
}

/// A server left running by a previous `polybot` that was killed is stopped,
/// so that this process owns the one it starts.
async fn stop_leftover_server(pgdata: &Path) {
    if let Some(pid) = postmaster_pid(pgdata)
        && signal::kill(pid, None).is_ok()
    {
        progress(&format!(
            "stopping a PostgreSQL server left running (pid {pid})"
        ));
        signal_postmaster(pgdata, Signal::SIGINT);
        wait_for_pid_file_removal(pgdata, Duration::from_secs(30)).await;
    }
}

fn postmaster_pid(pgdata: &Path) -> Option<Pid> {
    let contents = fs::read_to_string(pgdata.join("postmaster.pid")).ok()?;
    let pid: i32 = contents.lines().next()?.trim().parse().ok()?;
    Some(Pid::from_raw(pid))
}

fn signal_postmaster(pgdata: &Path, signal: Signal) {
    if let Some(pid) = postmaster_pid(pgdata)
        && let Err(err) = signal::kill(pid, signal)
    {
        tracing::debug!(%pid, %err, "could not signal the PostgreSQL server");
    }
}

async fn wait_for_pid_file_removal(pgdata: &Path, limit: Duration) {
    let deadline = Instant::now() + limit;
    while let Some(pid) = postmaster_pid(pgdata) {
        if signal::kill(pid, None).is_err() || Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

pub(crate) fn reusable_port(port_file: &Path) -> Option<u16> {
    let port: u16 = fs::read_to_string(port_file).ok()?.trim().parse().ok()?;
    TcpListener::bind((Ipv4Addr::LOCALHOST, port))
        .ok()
        .map(|_| port)
}

pub(crate) fn free_port(cluster: &Path) -> Result<u16, EmbeddedError> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(io_err("finding a free port for", cluster))?;
    let port = listener
        .local_addr()
        .map_err(io_err("finding a free port for", cluster))?
        .port();
    Ok(port)
}

pub(crate) fn random_password() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 24];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

pub(crate) fn write_private_file(path: &Path, contents: &[u8]) -> Result<(), EmbeddedError> {
    let mut file = fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io_err("writing", path))?;
    file.write_all(contents).map_err(io_err("writing", path))?;
    Ok(())
}

pub(crate) fn read_secret_file(path: &Path) -> Result<SecretString, EmbeddedError> {
    let text = fs::read_to_string(path).map_err(io_err("reading", path))?;
    Ok(SecretString::from(text.trim().to_owned()))
}

pub(crate) fn tail_of(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deep_data_dir_gets_its_socket_under_the_temp_dir() {
        let deep = PathBuf::from(format!("/{}", "d".repeat(120)));
        let dir = short_socket_dir(&deep);
        assert!(dir.starts_with(std::env::temp_dir()));
        assert!(dir.as_os_str().len() < 80);
        let shallow = PathBuf::from("/srv/polybot/postgres");
        assert_eq!(short_socket_dir(&shallow), shallow.join("run"));
    }

    #[test]
    fn the_missing_binaries_message_says_how_to_install_them() {
        let message = EmbeddedError::BinariesMissing.to_string();
        assert!(message.contains("apt-get install postgresql"), "{message}");
        assert!(message.contains("DATABASE_URL"), "{message}");
    }
}
