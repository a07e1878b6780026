//! `plan` over a large fleet: 10,000 tenants, a realistic mix of states.
//! Goal: < 50 ms per plan. `cargo bench -p polybot-control-plane --bench plan`.

// Timings for a human to read: floats are fine here, unlike money.
#![allow(clippy::float_arithmetic)]

use std::time::{Duration, Instant};

use chrono::Utc;
use polybot_control_plane::reconcile::plan::{Backoff, Desired, plan};
use polybot_core::TenantId;
use polybot_launcher::{Exit, Instance, Phase};
use uuid::Uuid;

const TENANTS: u128 = 10_000;

fn main() {
    let now = Utc::now();
    let mut desired = Vec::new();
    let mut actual = Vec::new();
    for n in 0..TENANTS {
        let tenant = TenantId::from_uuid(Uuid::from_u128(n + 1));
        let run = n % 10 != 0;
        desired.push(Desired {
            tenant,
            run,
            spec_hash: format!("spec-{}", n % 3),
            restarts: (n % 7) as u32,
            backoff_until: None,
        });
        let phase = match n % 50 {
            0 => Phase::Exited(Exit {
                code: Some(1),
                reason: "exit code 1".into(),
                requested: false,
                at: now,
            }),
            1 => Phase::Stopping,
            2 => continue,
            _ => Phase::Running,
        };
        let spec = if n % 20 == 3 {
            "old".to_owned()
        } else {
            format!("spec-{}", n % 3)
        };
        actual.push(Instance {
            id: format!("i-{n}"),
            tenant,
            spec_hash: spec,
            phase,
            started_at: now - chrono::Duration::seconds(600),
        });
    }
    let backoff = Backoff::default();
    let mut times: Vec<Duration> = Vec::new();
    let mut actions = 0;
    for _ in 0..30 {
        let started = Instant::now();
        actions = plan(&desired, &actual, now, &backoff).len();
        times.push(started.elapsed());
    }
    times.sort();
    println!(
        "plan over {TENANTS} tenants / {} instances: {actions} actions, median {:.2} ms, max {:.2} ms (goal < 50 ms)",
        actual.len(),
        times[times.len() / 2].as_secs_f64() * 1e3,
        times[times.len() - 1].as_secs_f64() * 1e3,
    );
}
