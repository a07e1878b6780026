//! Workers as local processes: `polybot worker` children of the control plane.
//!
//! Each worker gets a clean environment (never the control plane's own
//! database URL): the contract of [`crate::LaunchSpec`] (its plain settings
//! through the allowlist, [`LaunchSpec::plain_env`]), plus `PATH`, the log
//! filter ([`env::LOG`]) and, when it shares this process's uid, `HOME`. Its secrets (database URL, exchange
//! keys) are written to its standard input ([`env::SECRETS_STDIN`]), not put
//! in its environment, and `polybot worker` marks itself non-dumpable, so
//! another worker of the same uid can read neither from `/proc`. Its output is appended to `<dir>/<tenant>.log`, and a
//! `<dir>/<tenant>.pid` file records `pid spec_hash started_at`.
//!
//! **Surviving a control-plane restart:** a new launcher adopts the workers
//! that an earlier control plane left running (pid file present, process
//! alive and still a `polybot worker`), so a restart does not cut trading
//! short. An adopted worker is not its child, so when it ends its exit status
//! is unknown and reported as such. Stale pid files are removed.
//!
//! Workers run in their own process group, so a Ctrl-C in the terminal reaches
//! the control plane, which stops them in order ([`LocalLauncher::shutdown`]).
//!
//! **A uid per tenant, when the control plane runs as root.** Each tenant's
//! worker then runs as uid = gid = [`FIRST_WORKER_UID`] + the tenant's slot,
//! with no supplementary groups; slots are handed out in order and kept in
//! `<dir>/uids` (mode 0600), so a tenant keeps its uid across restarts. No
//! `/etc/passwd` entry is needed. Such a worker can reach nothing of the
//! control plane's (the worker dir is 0700, logs 0600) and no other
//! worker's `/proc` entries, even where its sandbox is not enforced. What
//! it must read is handed over as open file descriptors, so that its path
//! need not be reachable by that uid (a binary or a data dir under `/root`):
//! the `polybot` binary is executed through `/proc/self/fd/N`, and a
//! recording (`POLYBOT_REPLAY`) becomes `/proc/self/fd/M`. Not running as
//! root, or where the kernel refuses the uid (a user namespace that does not
//! map it), every worker runs as the control plane's uid, as logged.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use polybot_core::TenantId;
use polybot_core::worker::env;
use secrecy::{ExposeSecret, SecretString};
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, Command};

use crate::{Exit, Instance, LaunchError, LaunchSpec, Launcher, Phase};

/// How long a worker has to stop after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(35);

/// The first uid (and gid) of local workers when the control plane runs as
/// root: tenant slot `n` runs as `FIRST_WORKER_UID + n`. The range
/// `2000000000..2100000000` is far above the ids distributions hand out to
/// users, system services and container subordinate ranges.
pub const FIRST_WORKER_UID: u32 = 2_000_000_000;
/// How many tenants can have a uid of their own.
pub const WORKER_UID_SLOTS: u32 = 100_000_000;

/// Which uid the workers run as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerIdentity {
    /// One uid per tenant (the control plane is root).
    PerTenant,
    /// The control plane's own uid.
    Shared,
}

struct Worker {
    instance: Instance,
    child: Option<Child>,
    pid: Pid,
    stop: Option<(String, Instant)>,
}

/// Runs each tenant's worker as a child process.
#[derive(Debug)]
pub struct LocalLauncher {
    program: PathBuf,
    dir: PathBuf,
    workers: Mutex<HashMap<TenantId, Vec<Worker>>>,
    identity: Mutex<WorkerIdentity>,
    /// Tenant → uid slot, as kept in `<dir>/uids`.
    slots: Mutex<BTreeMap<TenantId, u32>>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("instance", &self.instance)
            .field("child", &self.child.is_some())
            .finish()
    }
}

fn failed(operation: &'static str, message: impl ToString) -> LaunchError {
    LaunchError::Failed {
        launcher: "local",
        operation,
        message: message.to_string(),
    }
}

impl LocalLauncher {
    /// `program` is the `polybot` binary; `dir` holds the workers' logs and pid files.
    pub fn new(program: PathBuf, dir: PathBuf) -> Result<Self, LaunchError> {
        // The logs, pid files and uid slots are the control plane's: no
        // worker may list or read them.
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .and_then(|()| fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)))
            .map_err(|e| failed("creating the worker dir", format!("{}: {e}", dir.display())))?;
        let identity = if nix::unistd::Uid::effective().is_root() {
            tracing::info!(
                first_uid = FIRST_WORKER_UID,
                "local workers run as a uid of their own per tenant"
            );
            WorkerIdentity::PerTenant
        } else {
            tracing::warn!(
                uid = %nix::unistd::Uid::effective(),
                "not running as root: local workers run as this uid; their isolation from each other is their non-dumpable mark and their Landlock sandbox (docs/security.md)"
            );
            WorkerIdentity::Shared
        };
        let slots = read_slots(&dir.join("uids"));
        let launcher = Self {
            program,
            dir,
            workers: Mutex::new(HashMap::new()),
            identity: Mutex::new(identity),
            slots: Mutex::new(slots),
        };
        launcher.adopt();
        Ok(launcher)
    }

    /// How many tenants have a worker running (adopted or started).
    pub fn running(&self) -> u64 {
        let workers = self.workers.lock().unwrap_or_else(|e| e.into_inner());
        workers.values().filter(|w| !w.is_empty()).count() as u64
    }

    /// Which uid the next workers run as.
    pub fn identity(&self) -> WorkerIdentity {
        *self.identity.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The uid `tenant`'s workers run as under [`WorkerIdentity::PerTenant`],
    /// allotting it a slot (kept in `<dir>/uids`) on first use.
    pub fn worker_uid(&self, tenant: TenantId) -> Result<u32, LaunchError> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = slots.get(&tenant) {
            return Ok(FIRST_WORKER_UID + slot);
        }
        let slot = slots.values().max().map_or(0, |max| max + 1);
        if slot >= WORKER_UID_SLOTS {
            return Err(failed(
                "allotting a worker uid",
                format!("all {WORKER_UID_SLOTS} worker uids are taken"),
            ));
        }
        slots.insert(tenant, slot);
        let path = self.dir.join("uids");
        write_slots(&path, &slots).map_err(|e| {
            failed(
                "recording the worker uids",
                format!("{}: {e}", path.display()),
            )
        })?;
        Ok(FIRST_WORKER_UID + slot)
    }

    /// The log file of `tenant`'s workers.
    pub fn log_path(&self, tenant: TenantId) -> PathBuf {
        self.dir.join(format!("{tenant}.log"))
    }

    fn pid_path(&self, tenant: TenantId) -> PathBuf {
        self.dir.join(format!("{tenant}.pid"))
    }

    /// Starts `polybot worker` for `spec`, as `uid` (and the same gid, no
    /// supplementary groups) when given. Returns the child and its log.
    fn spawn(&self, spec: &LaunchSpec, uid: Option<u32>) -> std::io::Result<(Child, PathBuf)> {
        let log_path = self.log_path(spec.tenant);
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&log_path)
            .map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("opening the worker log {}: {e}", log_path.display()),
                )
            })?;
        // A log created by an earlier release may be world-readable.
        log.set_permissions(fs::Permissions::from_mode(0o600))?;
        let log_err = log.try_clone()?;
        // Held open until the worker has started: what it inherits.
        let mut handed_over: Vec<OwnedFd> = Vec::new();
        let mut cmd = match uid {
            Some(uid) => {
                let binary = inheritable(&self.program)?;
                let mut cmd = Command::new(fd_path(&binary));
                handed_over.push(binary);
                // std drops the supplementary groups when root sets a uid.
                cmd.uid(uid).gid(uid).arg0("polybot");
                cmd
            }
            None => Command::new(&self.program),
        };
        cmd.arg("worker")
            .env_clear()
            .env(env::TENANT_ID, spec.tenant.to_string())
            .env(env::MODE, spec.mode.as_str())
            .env(env::SPEC_HASH, &spec.spec_hash);
        // Root's HOME is not the worker's when it has a uid of its own.
        let inherited: &[&str] = match uid {
            Some(_) => &["PATH", "LANG", "TMPDIR", env::LOG],
            None => &["PATH", "HOME", "LANG", "TMPDIR", env::LOG],
        };
        for key in inherited {
            if let Some(value) = std::env::var_os(key) {
                cmd.env(key, value);
            }
        }
        for (key, value) in spec.plain_env() {
            if uid.is_some() && key == env::REPLAY && !value.is_empty() {
                let recording = inheritable(Path::new(&value)).map_err(|e| {
                    std::io::Error::new(e.kind(), format!("opening the recording {value}: {e}"))
                })?;
                cmd.env(key, fd_path(&recording));
                handed_over.push(recording);
            } else {
                cmd.env(key, value);
            }
        }
        // The secrets go over a pipe, never into the environment: a process's
        // environment outlives its use (in /proc/<pid>/environ, in any child).
        cmd.env(env::SECRETS_STDIN, "1");
        cmd.stdin(Stdio::piped())
            .stdout(log)
            .stderr(log_err)
            .process_group(0)
            .kill_on_drop(false);
        let child = cmd.spawn()?;
        drop(handed_over);
        Ok((child, log_path))
    }

    /// Takes over the workers an earlier control plane left running.
    fn adopt(&self) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        let mut workers = self.workers.lock().unwrap_or_else(|e| e.into_inner());
        for entry in entries.filter_map(Result::ok) {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("pid") {
                continue;
            }
            let Some(tenant) = path
                .file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| s.parse::<TenantId>().ok())
            else {
                continue;
            };
            let parsed = fs::read_to_string(&path).ok().and_then(|text| {
                let mut parts = text.split_whitespace();
                let pid: i32 = parts.next()?.parse().ok()?;
                let spec_hash = parts.next()?.to_owned();
                let started_at = parts.next()?.parse::<DateTime<Utc>>().ok()?;
                Some((Pid::from_raw(pid), spec_hash, started_at))
            });
            match parsed {
                Some((pid, spec_hash, started_at)) if is_our_worker(pid) => {
                    tracing::info!(%tenant, %pid, "adopting a worker left running by an earlier control plane");
                    workers.entry(tenant).or_default().push(Worker {
                        instance: Instance {
                            id: pid.to_string(),
                            tenant,
                            spec_hash,
                            phase: Phase::Running,
                            started_at,
                        },
                        child: None,
                        pid,
                        stop: None,
                    });
                }
                _ => {
                    if let Err(err) = fs::remove_file(&path) {
                        tracing::warn!(path = %path.display(), %err, "could not remove a stale pid file");
                    }
                }
            }
        }
    }

    /// Stops every worker (SIGTERM, then SIGKILL after the grace period) and
    /// waits for them: the end of `polybot up`.
    pub async fn shutdown(&self) {
        let mut children = Vec::new();
        {
            let mut workers = self.workers.lock().unwrap_or_else(|e| e.into_inner());
            for (tenant, list) in workers.drain() {
                for mut worker in list {
                    send(worker.pid, Signal::SIGTERM);
                    if let Err(err) = fs::remove_file(self.pid_path(tenant)) {
                        tracing::debug!(%err, "no pid file to remove");
                    }
                    children.push((worker.pid, worker.child.take()));
                }
            }
        }
        for (pid, child) in children {
            match child {
                Some(mut child) => {
                    if tokio::time::timeout(STOP_GRACE, child.wait())
                        .await
                        .is_err()
                    {
                        send(pid, Signal::SIGKILL);
                        if let Err(err) = child.wait().await {
                            tracing::warn!(%pid, %err, "could not reap a worker");
                        }
                    }
                }
                None => {
                    let deadline = Instant::now() + STOP_GRACE;
                    while alive(pid) && Instant::now() < deadline {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    if alive(pid) {
                        send(pid, Signal::SIGKILL);
                    }
                }
            }
        }
    }
}

/// Reads `tenant slot` lines; an unreadable or missing file is no slots.
fn read_slots(path: &Path) -> BTreeMap<TenantId, u32> {
    let Ok(text) = fs::read_to_string(path) else {
        return BTreeMap::new();
    };
    text.lines()
        .filter_map(|line| {
            let (tenant, slot) = line.split_once(' ')?;
            Some((tenant.parse().ok()?, slot.trim().parse().ok()?))
        })
        .collect()
}

/// Writes the slots to a new file (0600) that then replaces `path`, so that
/// a crash leaves the old list or the new one.
fn write_slots(path: &Path, slots: &BTreeMap<TenantId, u32>) -> std::io::Result<()> {
    let text: String = slots
        .iter()
        .map(|(tenant, slot)| format!("{tenant} {slot}\n"))
        .collect();
    let fresh = path.with_extension("new");
    let mut file = fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&fresh)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    fs::rename(&fresh, path)
}

/// `path` opened for reading, left open across `exec` so that a worker of
/// another uid can use it as `/proc/self/fd/N` without reaching `path`.
/// The caller closes it once the worker is started. A process this one
/// starts meanwhile (another worker) inherits it too: only ever the
/// `polybot` binary or the shared recording, nothing secret.
fn inheritable(path: &Path) -> std::io::Result<OwnedFd> {
    use nix::fcntl::{FcntlArg, FdFlag, fcntl};
    let fd = OwnedFd::from(fs::File::open(path)?);
    fcntl(&fd, FcntlArg::F_SETFD(FdFlag::empty())).map_err(std::io::Error::from)?;
    Ok(fd)
}

/// The path a process reaches an inherited descriptor by.
fn fd_path(fd: &OwnedFd) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

fn alive(pid: Pid) -> bool {
    signal::kill(pid, None).is_ok()
}

fn send(pid: Pid, sig: Signal) {
    if let Err(err) = signal::kill(pid, sig) {
        tracing::debug!(%pid, %err, "signal not delivered");
    }
}

/// Whether `pid` is a live `polybot worker` process.
fn is_our_worker(pid: Pid) -> bool {
    let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    args.iter().any(|a| *a == b"worker") && alive(pid)
}

/// Whether spawning failed because the kernel would not switch to the uid.
fn is_uid_refused(err: &std::io::Error) -> bool {
    matches!(err.raw_os_error(), Some(code) if code == nix::libc::EPERM || code == nix::libc::EINVAL)
}

fn describe(status: std::process::ExitStatus) -> (Option<i32>, String) {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => (Some(code), format!("exit code {code}")),
        (None, Some(sig)) => {
            let name = Signal::try_from(sig)
                .map(|s| s.as_str())
                .unwrap_or("an unknown signal");
            (None, format!("killed by {name}"))
        }
        (None, None) => (None, "ended for an unknown reason".to_owned()),
    }
}

#[async_trait]
impl Launcher for LocalLauncher {
    fn kind(&self) -> &'static str {
        "local"
    }

    async fn ensure_spec(&self, _spec: &LaunchSpec) -> Result<(), LaunchError> {
        // A local process needs nothing prepared: the spec travels with start().
        Ok(())
    }

    async fn list(&self) -> Result<Vec<Instance>, LaunchError> {
        let mut out = Vec::new();
        let mut workers = self.workers.lock().unwrap_or_else(|e| e.into_inner());
        for (tenant, list) in workers.iter_mut() {
            list.retain_mut(|worker| {
                let ended = match worker.child.as_mut() {
                    Some(child) => match child.try_wait() {
                        Ok(Some(status)) => Some(describe(status)),
                        Ok(None) => None,
                        Err(err) => Some((None, format!("lost track of the process: {err}"))),
                    },
                    None if alive(worker.pid) => None,
                    None => Some((
                        None,
                        "exited (adopted from an earlier control plane; exit status unknown)"
                            .to_owned(),
                    )),
                };
                match ended {
                    Some((code, mut reason)) => {
                        if let Some((why, _)) = &worker.stop {
                            reason = format!("{reason} after a stop request ({why})");
                        }
                        let mut instance = worker.instance.clone();
                        instance.phase = Phase::Exited(Exit {
                            code,
                            reason,
                            requested: worker.stop.is_some(),
                            at: Utc::now(),
                        });
                        out.push(instance);
                        let pid_path = self.dir.join(format!("{tenant}.pid"));
                        if fs::read_to_string(&pid_path).is_ok_and(|t| {
                            t.split_whitespace().next() == Some(&worker.pid.to_string())
                        }) && let Err(err) = fs::remove_file(&pid_path)
                        {
                            tracing::debug!(%err, "no pid file to remove");
                        }
                        false
                    }
                    None => {
                        if let Some((_, at)) = &worker.stop
                            && at.elapsed() > STOP_GRACE
                        {
                            send(worker.pid, Signal::SIGKILL);
                        }
                        out.push(worker.instance.clone());
                        true
                    }
                }
            });
        }
        workers.retain(|_, list| !list.is_empty());
        Ok(out)
    }

    async fn start(&self, spec: &LaunchSpec) -> Result<Instance, LaunchError> {
        let uid = match self.identity() {
            WorkerIdentity::PerTenant => Some(self.worker_uid(spec.tenant)?),
            WorkerIdentity::Shared => None,
        };
        let (mut child, log_path) = match self.spawn(spec, uid) {
            // A kernel that will not switch to the uid (a user namespace that
            // does not map it): every worker shares this process's uid.
            Err(err) if uid.is_some() && is_uid_refused(&err) => {
                tracing::warn!(
                    error = %err,
                    "the kernel refused the workers' own uids; local workers run as this process's uid from now on"
                );
                *self.identity.lock().unwrap_or_else(|e| e.into_inner()) = WorkerIdentity::Shared;
                self.spawn(spec, None)
            }
            other => other,
        }
        .map_err(|e| {
            failed(
                "starting a worker",
                format!("{}: {e}", self.program.display()),
            )
        })?;
        let secrets = secrets_json(spec);
        if let Some(mut stdin) = child.stdin.take() {
            // A worker that died before reading is reported by list() with
            // its exit, like any other early failure.
            let written = async {
                stdin.write_all(secrets.expose_secret().as_bytes()).await?;
                stdin.shutdown().await
            }
            .await;
            if let Err(err) = written {
                tracing::warn!(tenant = %spec.tenant, %err, "could not hand the worker its secrets");
            }
        }
        let pid = Pid::from_raw(
            child
                .id()
                .and_then(|id| i32::try_from(id).ok())
                .ok_or_else(|| failed("starting a worker", "the process has no pid"))?,
        );
        let started_at = Utc::now();
        let pid_path = self.pid_path(spec.tenant);
        fs::write(
            &pid_path,
            format!("{pid} {} {}", spec.spec_hash, started_at.to_rfc3339()),
        )
        .map_err(|e| {
            failed(
                "writing the pid file",
                format!("{}: {e}", pid_path.display()),
            )
        })?;
        let instance = Instance {
            id: pid.to_string(),
            tenant: spec.tenant,
            spec_hash: spec.spec_hash.clone(),
            phase: Phase::Running,
            started_at,
        };
        match uid {
            Some(uid) if self.identity() == WorkerIdentity::PerTenant => {
                tracing::info!(tenant = %spec.tenant, %pid, uid, log = %log_path.display(), "worker started");
            }
            _ => {
                tracing::info!(tenant = %spec.tenant, %pid, log = %log_path.display(), "worker started")
            }
        }
        self.workers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(spec.tenant)
            .or_default()
            .push(Worker {
                instance: instance.clone(),
                child: Some(child),
                pid,
                stop: None,
            });
        Ok(instance)
    }

    async fn stop(&self, instance: &Instance, reason: &str) -> Result<(), LaunchError> {
        let mut workers = self.workers.lock().unwrap_or_else(|e| e.into_inner());
        let worker = workers
            .get_mut(&instance.tenant)
            .and_then(|list| list.iter_mut().find(|w| w.instance.id == instance.id))
            .ok_or_else(|| {
                failed(
                    "stopping a worker",
                    format!("no worker {} for tenant {}", instance.id, instance.tenant),
                )
            })?;
        if worker.stop.is_none() {
            tracing::info!(tenant = %instance.tenant, pid = %worker.pid, reason, "stopping a worker");
            send(worker.pid, Signal::SIGTERM);
            worker.stop = Some((reason.to_owned(), Instant::now()));
            worker.instance.phase = Phase::Stopping;
        }
        Ok(())
    }
}

/// The worker's secrets as the JSON object `polybot worker` reads from
/// standard input ([`env::SECRETS_STDIN`]).
fn secrets_json(spec: &LaunchSpec) -> SecretString {
    let object: serde_json::Map<String, serde_json::Value> = spec
        .secret_env
        .iter()
        .map(|(name, value)| {
            (
                name.clone(),
                serde_json::Value::String(value.expose_secret().to_owned()),
            )
        })
        .collect();
    SecretString::from(serde_json::Value::Object(object).to_string())
}

/// The path of the `polybot` binary to launch workers with: this executable.
pub fn current_program() -> Result<PathBuf, LaunchError> {
    std::env::current_exe().map_err(|e| failed("finding the polybot binary", e))
}

/// Where workers' logs and pid files live under a data dir.
pub fn workers_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("workers")
}
