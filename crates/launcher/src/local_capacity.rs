//! How many local workers this machine runs: the admission bound of the
//! local launcher (`polybot up`, `polybot serve --launcher local`).
//!
//! Onboarding a tenant (and resuming one, which starts its worker again) is
//! refused once the tenants that keep a worker reach [`WorkerLimit::max`],
//! so a machine never accepts a tenant it cannot run. The bound is the
//! operator's `--max-workers`, or else the smallest of what the machine
//! allows ([`WorkerLimit::computed`]):
//!
//! - **memory**: the memory available when the control plane starts, over
//!   [`PerWorker::memory_mib`] per worker;
//! - **processes**: each worker is a process of [`PerWorker::threads`]
//!   threads; the kernel's `pid_max` bounds every uid's together, and
//!   `RLIMIT_NPROC` bounds the control plane's uid (when workers share it
//!   and it is not root, which the limit does not bind);
//! - **open files**: the control plane holds [`PerWorker::control_plane_fds`]
//!   descriptors per worker (its pidfd and pipe), within its `RLIMIT_NOFILE`
//!   less [`CONTROL_PLANE_FDS`] for its own listener, database pool and
//!   clients.
//!
//! The database does not bound the count: workers share the pooler's
//! connections.

use std::fmt;

/// What one local worker costs the machine, as measured on a 2-core, 24 GiB
/// Linux host (docs/operators.md has the figures).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PerWorker {
    /// Memory budgeted per worker, MiB. A worker's RSS counts the `polybot`
    /// binary's pages, which every worker shares; its private memory is a
    /// few MiB, so the budget is that with room for its order books.
    pub memory_mib: u64,
    /// Threads (kernel tasks) per worker process.
    pub threads: u64,
    /// File descriptors the control plane holds per running worker.
    pub control_plane_fds: u64,
}

/// The measured costs of one worker ([`PerWorker`]).
pub const PER_WORKER: PerWorker = PerWorker {
    memory_mib: 16,
    threads: 4,
    control_plane_fds: 2,
};

/// File descriptors kept for the control plane's own use (listener,
/// database pool, HTTP clients, logs) before any worker's.
pub const CONTROL_PLANE_FDS: u64 = 256;

/// What this machine offers workers, read when the control plane starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MachineFigures {
    /// `MemAvailable` of `/proc/meminfo`, MiB, plus what the workers already
    /// running (adopted from an earlier control plane) are budgeted.
    pub memory_available_mib: u64,
    /// The kernel's `pid_max`: processes and threads of every uid together.
    pub pid_max: Option<u64>,
    /// `RLIMIT_NPROC` (soft) where it binds the workers: they share the
    /// control plane's uid and it is not root. `None`: unlimited or not binding.
    pub max_processes: Option<u64>,
    /// The control plane's `RLIMIT_NOFILE` (soft); `None`: unlimited.
    pub max_open_files: Option<u64>,
}

/// Which figure bounds the number of local workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// The operator's `--max-workers` (`POLYBOT_MAX_WORKERS`).
    Configured,
    /// Memory available over the per-worker budget.
    Memory {
        available_mib: u64,
        per_worker_mib: u64,
    },
    /// The kernel's `pid_max` over threads per worker.
    PidMax { pid_max: u64, per_worker: u64 },
    /// `RLIMIT_NPROC` over threads per worker.
    Processes { limit: u64, per_worker: u64 },
    /// The control plane's `RLIMIT_NOFILE`, less its own, over its
    /// descriptors per worker.
    OpenFiles {
        limit: u64,
        reserved: u64,
        per_worker: u64,
    },
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Limit::Configured => write!(f, "the configured --max-workers (POLYBOT_MAX_WORKERS)"),
            Limit::Memory {
                available_mib,
                per_worker_mib,
            } => write!(
                f,
                "memory ({available_mib} MiB available, ~{per_worker_mib} MiB per worker)"
            ),
            Limit::PidMax {
                pid_max,
                per_worker,
            } => write!(
                f,
                "the kernel's pid_max ({pid_max} processes and threads, {per_worker} per worker)"
            ),
            Limit::Processes { limit, per_worker } => write!(
                f,
                "the process limit RLIMIT_NPROC ({limit} processes and threads, {per_worker} per worker)"
            ),
            Limit::OpenFiles {
                limit,
                reserved,
                per_worker,
            } => write!(
                f,
                "the control plane's open-file limit RLIMIT_NOFILE ({limit} files, {reserved} kept for itself, {per_worker} per worker)"
            ),
        }
    }
}

/// How many local workers this machine runs, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerLimit {
    pub max: u64,
    pub limit: Limit,
}

impl WorkerLimit {
    /// The operator's bound.
    pub fn configured(max: u64) -> Self {
        Self {
            max,
            limit: Limit::Configured,
        }
    }

    /// The smallest bound of `figures` at `per` worker; on a tie the first of
    /// memory, pid_max, processes, open files names it.
    pub fn computed(figures: &MachineFigures, per: &PerWorker) -> Self {
        let mut bounds = vec![WorkerLimit {
            max: figures.memory_available_mib / per.memory_mib.max(1),
            limit: Limit::Memory {
                available_mib: figures.memory_available_mib,
                per_worker_mib: per.memory_mib,
            },
        }];
        let threads = per.threads.max(1);
        if let Some(pid_max) = figures.pid_max {
            bounds.push(WorkerLimit {
                max: pid_max / threads,
                limit: Limit::PidMax {
                    pid_max,
                    per_worker: threads,
                },
            });
        }
        if let Some(limit) = figures.max_processes {
            bounds.push(WorkerLimit {
                max: limit / threads,
                limit: Limit::Processes {
                    limit,
                    per_worker: threads,
                },
            });
        }
        if let Some(limit) = figures.max_open_files {
            let fds = per.control_plane_fds.max(1);
            bounds.push(WorkerLimit {
                max: limit.saturating_sub(CONTROL_PLANE_FDS) / fds,
                limit: Limit::OpenFiles {
                    limit,
                    reserved: CONTROL_PLANE_FDS,
                    per_worker: fds,
                },
            });
        }
        bounds
            .into_iter()
            .reduce(|best, next| if next.max < best.max { next } else { best })
            .unwrap_or(WorkerLimit::configured(0))
    }

    /// Why one more worker does not fit, for the refusal.
    pub fn refusal(&self) -> String {
        let workers = if self.max == 1 { "worker" } else { "workers" };
        format!(
            "this machine runs at most {} local {workers}: {}; offboard or pause a tenant, or raise the limit (docs/operators.md)",
            self.max, self.limit
        )
    }
}

impl MachineFigures {
    /// This machine's figures from `/proc`, with `running` workers (adopted
    /// ones, whose memory is no longer available) counted back in; `shared_uid`:
    /// the workers run as the control plane's uid.
    pub fn read(running: u64, shared_uid: bool) -> std::io::Result<Self> {
        let meminfo = std::fs::read_to_string("/proc/meminfo")?;
        let available_kib = meminfo_kib(&meminfo, "MemAvailable")
            .ok_or_else(|| std::io::Error::other("/proc/meminfo has no MemAvailable"))?;
        let limits = std::fs::read_to_string("/proc/self/limits")?;
        let pid_max = std::fs::read_to_string("/proc/sys/kernel/pid_max")
            .ok()
            .and_then(|s| s.trim().parse().ok());
        // RLIMIT_NPROC binds neither root nor a uid per tenant.
        let root = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("Uid:"))
                    .and_then(|ids| ids.split_whitespace().nth(1).map(|e| e == "0"))
            })
            .unwrap_or(false);
        Ok(Self {
            memory_available_mib: available_kib / 1024 + running * PER_WORKER.memory_mib,
            pid_max,
            max_processes: if shared_uid && !root {
                soft_limit(&limits, "Max processes")
            } else {
                None
            },
            max_open_files: soft_limit(&limits, "Max open files"),
        })
    }
}

/// `key:   1234 kB` of `/proc/meminfo`, in KiB.
fn meminfo_kib(meminfo: &str, key: &str) -> Option<u64> {
    meminfo.lines().find_map(|line| {
        let rest = line.strip_prefix(key)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// The soft limit of `name` in `/proc/self/limits`; `None`: unlimited or absent.
fn soft_limit(limits: &str, name: &str) -> Option<u64> {
    limits.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures() -> MachineFigures {
        MachineFigures {
            memory_available_mib: 21_959,
            pid_max: Some(32_768),
            max_processes: None,
            max_open_files: Some(20_000),
        }
    }

    #[test]
    fn memory_bounds_the_workers_of_this_box() {
        let limit = WorkerLimit::computed(&figures(), &PER_WORKER);
        assert_eq!(limit.max, 1_372);
        assert_eq!(
            limit.limit,
            Limit::Memory {
                available_mib: 21_959,
                per_worker_mib: 16
            }
        );
        assert_eq!(
            limit.refusal(),
            "this machine runs at most 1372 local workers: memory (21959 MiB available, ~16 MiB per worker); \
             offboard or pause a tenant, or raise the limit (docs/operators.md)"
        );
    }

    #[test]
    fn a_configured_limit_is_named_as_such() {
        assert_eq!(
            WorkerLimit::configured(1).refusal(),
            "this machine runs at most 1 local worker: the configured --max-workers (POLYBOT_MAX_WORKERS); \
             offboard or pause a tenant, or raise the limit (docs/operators.md)"
        );
    }

    #[test]
    fn the_smallest_of_the_process_and_file_limits_wins() {
        let nofile = MachineFigures {
            max_open_files: Some(1_024),
            ..figures()
        };
        let limit = WorkerLimit::computed(&nofile, &PER_WORKER);
        assert_eq!(limit.max, 384);
        assert_eq!(
            limit.limit.to_string(),
            "the control plane's open-file limit RLIMIT_NOFILE (1024 files, 256 kept for itself, 2 per worker)"
        );

        let nproc = MachineFigures {
            max_processes: Some(4_000),
            ..figures()
        };
        let limit = WorkerLimit::computed(&nproc, &PER_WORKER);
        assert_eq!(limit.max, 1_000);
        assert_eq!(
            limit.limit,
            Limit::Processes {
                limit: 4_000,
                per_worker: 4
            }
        );

        let pids = MachineFigures {
            pid_max: Some(2_000),
            ..figures()
        };
        assert_eq!(WorkerLimit::computed(&pids, &PER_WORKER).max, 500);

        let no_fds_left = MachineFigures {
            max_open_files: Some(100),
            ..figures()
        };
        assert_eq!(WorkerLimit::computed(&no_fds_left, &PER_WORKER).max, 0);
    }

    #[test]
    fn proc_figures_are_parsed() {
        let meminfo =
            "MemTotal:       24683784 kB\nMemFree:  100 kB\nMemAvailable:   22486768 kB\n";
        assert_eq!(meminfo_kib(meminfo, "MemAvailable"), Some(22_486_768));
        assert_eq!(meminfo_kib(meminfo, "SwapTotal"), None);
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max processes             96367                96367                processes \n\
                      Max open files            unlimited            unlimited            files     \n";
        assert_eq!(soft_limit(limits, "Max processes"), Some(96_367));
        assert_eq!(soft_limit(limits, "Max open files"), None);
    }
}
