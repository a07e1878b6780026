//! The worker's own sandbox: Landlock, which `polybot worker` applies to
//! itself at startup, after reading its settings and secrets and before its
//! runtime starts a thread or reads anything from the network.
//!
//! The ruleset handles every filesystem access right the kernel knows and
//! allows only reading the system's directories ([`SYSTEM_READ`]: shared
//! libraries, certificates, resolver configuration, `/proc`, `/sys`, `/dev`)
//! and the files named in the worker's settings (its recording, the
//! database's root certificate). Nothing else is reachable: not the data
//! dir (master key, operator token, the private PostgreSQL's superuser
//! password), not the other workers' logs, nothing to write. It also scopes
//! signals and abstract Unix sockets to the worker itself, and — being a
//! Landlock domain — keeps the worker from ptracing or opening the memory of
//! any process outside it. (Another process's `/proc/<pid>/environ` is left
//! to the non-dumpable mark and the per-tenant uid: Landlock lets a process
//! read that of a dumpable process of its own uid.)
//!
//! Best effort: on a kernel without Landlock (or with an older ABI) the
//! worker runs with what the kernel enforces and says so in its log
//! ([`SandboxStatus`]). What does not live here: the per-tenant uid, which
//! the local launcher sets when it runs as root (`polybot_launcher::local`).

use std::path::{Path, PathBuf};

use landlock::{
    ABI, Access, AccessFs, CompatLevel, Compatible, LandlockStatus, Ruleset, RulesetAttr,
    RulesetCreatedAttr, RulesetError, RulesetStatus, Scope, path_beneath_rules,
};

/// The newest Landlock ABI this ruleset was written for (Linux 6.12: signal
/// and abstract-socket scoping).
const ABI_TARGET: ABI = ABI::V6;

/// Directories every worker reads: its libraries and the name service's
/// (`/usr`, `/lib*`), certificates and resolver files (`/etc`, and the
/// resolver stub `/etc/resolv.conf` often points at), its own `/proc` and
/// `/sys` entries (thread counts, cgroup limits) and `/dev` (`urandom`).
pub const SYSTEM_READ: &[&str] = &[
    "/usr",
    "/lib",
    "/lib32",
    "/lib64",
    "/bin",
    "/etc",
    "/run/systemd/resolve",
    "/proc",
    "/sys",
    "/dev",
];

/// What the kernel enforces of the sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SandboxStatus {
    /// Every rule is enforced.
    Full,
    /// Landlock is on, but the kernel lacks some of the rules' features
    /// (older ABI): the filesystem rules hold, some scopes may not.
    Partial,
    /// The kernel has no Landlock (or it is disabled): no sandbox.
    Unsupported,
}

impl SandboxStatus {
    /// For the log line the worker writes at startup.
    pub fn describe(self) -> &'static str {
        match self {
            SandboxStatus::Full => "landlock: fully enforced",
            SandboxStatus::Partial => "landlock: partially enforced (an older kernel ABI)",
            SandboxStatus::Unsupported => {
                "landlock: not supported by this kernel; the worker runs unsandboxed"
            }
        }
    }
}

/// Applying the ruleset failed for a reason other than the kernel's
/// support (which is best effort): a bug in the ruleset.
#[derive(Debug, thiserror::Error)]
#[error("applying the worker's Landlock sandbox: {0}")]
pub struct SandboxError(#[from] RulesetError);

/// The files a worker reads besides [`SYSTEM_READ`]: its recording and the
/// root certificate named in its database URL (`sslrootcert=`).
pub fn worker_files(replay: Option<&Path>, database_url: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = replay.map(Path::to_path_buf).into_iter().collect();
    files.extend(ssl_root_cert(database_url));
    files
}

/// The `sslrootcert` file of a `postgres://` URL, if it names one.
fn ssl_root_cert(database_url: &str) -> Option<PathBuf> {
    let url = url::Url::parse(database_url).ok()?;
    url.query_pairs()
        .find(|(key, _)| key == "sslrootcert")
        .map(|(_, value)| PathBuf::from(value.into_owned()))
}

/// Restricts this thread — and every thread and process it starts from now
/// on — to reading [`SYSTEM_READ`] and `files`. Call it before starting
/// other threads: the threads that exist already are not restricted.
pub fn apply(files: &[PathBuf]) -> Result<SandboxStatus, SandboxError> {
    let status = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(AccessFs::from_all(ABI_TARGET))?
        .scope(Scope::Signal | Scope::AbstractUnixSocket)?
        .create()?
        .add_rules(path_beneath_rules(
            SYSTEM_READ,
            AccessFs::from_read(ABI_TARGET),
        ))?
        .add_rules(path_beneath_rules(files, AccessFs::from_read(ABI_TARGET)))?
        .restrict_self()?;
    Ok(match (status.landlock, status.ruleset) {
        (LandlockStatus::Available { .. }, RulesetStatus::FullyEnforced) => SandboxStatus::Full,
        (_, RulesetStatus::NotEnforced)
        | (LandlockStatus::NotEnabled, _)
        | (LandlockStatus::NotImplemented, _) => SandboxStatus::Unsupported,
        _ => SandboxStatus::Partial,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_certificate_of_a_database_url_is_a_file_the_worker_reads() {
        let files = worker_files(
            Some(Path::new("/srv/replay.jsonl")),
            "postgres://u:p@db:5432/polybot?sslmode=verify-full&sslrootcert=%2Fetc%2Fpolybot%2Fca.pem",
        );
        assert_eq!(
            files,
            vec![
                PathBuf::from("/srv/replay.jsonl"),
                PathBuf::from("/etc/polybot/ca.pem")
            ]
        );
        assert!(worker_files(None, "postgres://u:p@db/polybot").is_empty());
        assert!(worker_files(None, "not a url").is_empty());
    }
}
