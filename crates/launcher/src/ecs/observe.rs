//! What runs on ECS, and how it ended: ListTasks and DescribeTasks of the
//! launcher's tasks, and a task in the launcher's terms (an
//! [`crate::Instance`], its [`phase`], its [`exit`]).
//!
//! Every stopped task ECS still knows of is reported on every listing: which
//! exits were already counted is the database's record (`worker_exits`), so
//! that a new leader does not count them again.
//!
//! What does not live here: starting or stopping tasks, and task state-change
//! events (`events`).

use std::collections::HashSet;

use aws_sdk_ecs::Client;
use aws_sdk_ecs::types::{DesiredStatus, Task, TaskField, TaskStopCode};
use chrono::{DateTime, Utc};
use polybot_core::TenantId;
use polybot_core::worker::env;
use polybot_deploy_spec::worker::WORKER_CONTAINER;

use super::throttle::{Api, Throttle};
use super::{DESCRIBE_TASKS_MAX, GROUP_PREFIX, SPEC_HASH_TAG, STARTED_BY};
use crate::{Exit, Instance, LaunchError, Phase};

/// Every task of `cluster` the launcher started that ECS still knows of,
/// running or stopped, described with its tags.
pub(super) async fn tasks(
    client: &Client,
    throttle: &Throttle,
    cluster: &str,
) -> Result<Vec<Task>, LaunchError> {
    let mut arns: Vec<String> = Vec::new();
    for status in [DesiredStatus::Running, DesiredStatus::Stopped] {
        let mut next: Option<String> = None;
        loop {
            let out = throttle
                .call(Api::Describe, "ListTasks", || {
                    client
                        .list_tasks()
                        .cluster(cluster)
                        .started_by(STARTED_BY)
                        .desired_status(status.clone())
                        .max_results(100)
                        .set_next_token(next.clone())
                        .send()
                })
                .await?;
            arns.extend(out.task_arns().iter().cloned());
            next = out.next_token().map(str::to_owned);
            if next.is_none() {
                break;
            }
        }
    }
    // A task that was asked to stop between the two listings is in both.
    let mut seen = HashSet::new();
    arns.retain(|arn| seen.insert(arn.clone()));

    let mut tasks = Vec::with_capacity(arns.len());
    for batch in arns.chunks(DESCRIBE_TASKS_MAX) {
        let out = throttle
            .call(Api::Describe, "DescribeTasks", || {
                client
                    .describe_tasks()
                    .cluster(cluster)
                    .set_tasks(Some(batch.to_vec()))
                    .include(TaskField::Tags)
                    .send()
            })
            .await?;
        tasks.extend(out.tasks().iter().cloned());
    }
    Ok(tasks)
}

/// The instances `tasks` are, running and stopped (tasks that are not ours
/// are left out).
pub(super) fn instances(tasks: &[Task]) -> Vec<Instance> {
    tasks
        .iter()
        .filter_map(|task| {
            let instance = instance(task, None);
            if instance.is_none() {
                tracing::warn!(task = ?task.task_arn(), group = ?task.group(), "a task started by polybot has no tenant group; ignored");
            }
            instance
        })
        .collect()
}

/// CPU units (1024 = 1 vCPU) the live tasks among `tasks` hold, On-Demand
/// and Spot apart: what counts against the account's Fargate quotas.
pub(super) fn cpu_in_use(tasks: &[Task]) -> super::capacity::InUse {
    let mut in_use = super::capacity::InUse::default();
    for task in tasks.iter().filter(|t| phase(t).is_live()) {
        let units: u32 = task.cpu().and_then(|c| c.parse().ok()).unwrap_or(0);
        if task.capacity_provider_name() == Some("FARGATE_SPOT") {
            in_use.spot = in_use.spot.saturating_add(units);
        } else {
            in_use.on_demand = in_use.on_demand.saturating_add(units);
        }
    }
    in_use
}

fn chrono_time(t: Option<&aws_sdk_ecs::primitives::DateTime>) -> Option<DateTime<Utc>> {
    t.and_then(|t| DateTime::from_timestamp(t.secs(), t.subsec_nanos()))
}

/// The instance a task is, if it is one of ours (`group` `tenant:<id>`).
/// `tenant` overrides the group (RunTask's own answer).
pub(super) fn instance(task: &Task, tenant: Option<TenantId>) -> Option<Instance> {
    let id = task.task_arn()?.to_owned();
    let tenant = match tenant {
        Some(tenant) => tenant,
        None => task
            .group()
            .and_then(|g| g.strip_prefix(GROUP_PREFIX))
            .and_then(|t| t.parse().ok())?,
    };
    let spec_hash = task
        .tags()
        .iter()
        .find(|t| t.key() == Some(SPEC_HASH_TAG))
        .and_then(|t| t.value())
        .or_else(|| {
            task.overrides()?
                .container_overrides()
                .iter()
                .flat_map(|c| c.environment())
                .find(|e| e.name() == Some(env::SPEC_HASH))
                .and_then(|e| e.value())
        })
        .unwrap_or_default()
        .to_owned();
    let started_at = chrono_time(task.started_at())
        .or_else(|| chrono_time(task.created_at()))
        .unwrap_or_else(Utc::now);
    Some(Instance {
        id,
        tenant,
        spec_hash,
        phase: phase(task),
        started_at,
    })
}

/// ECS's task lifecycle in the launcher's terms.
pub fn phase(task: &Task) -> Phase {
    let stopping = task.desired_status() == Some("STOPPED");
    match task.last_status().unwrap_or("PROVISIONING") {
        "STOPPED" => Phase::Exited(exit(task)),
        "DEACTIVATING" | "STOPPING" | "DEPROVISIONING" => Phase::Stopping,
        _ if stopping => Phase::Stopping,
        "RUNNING" => Phase::Running,
        _ => Phase::Starting,
    }
}

/// Why a STOPPED task stopped, from its stop code, its stopped reason and
/// its containers' exit codes and reasons, e.g.
/// `EssentialContainerExited: Essential container in task exited; container
/// worker exited with code 137 (killed by SIGKILL)`, `TaskFailedToStart:
/// ResourceInitializationError: unable to pull secrets …`, `SpotInterruption:
/// Your Spot Task was interrupted.`
pub fn exit(task: &Task) -> Exit {
    let code = task.stop_code();
    let requested = matches!(code, Some(TaskStopCode::UserInitiated));
    let stopped_reason = task.stopped_reason().filter(|r| !r.trim().is_empty());
    let mut parts = Vec::new();
    match (code, stopped_reason) {
        // StopTask's reason is the reconciler's own words.
        (Some(TaskStopCode::UserInitiated), Some(reason)) => parts.push(reason.to_owned()),
        (Some(code), Some(reason)) => parts.push(format!("{}: {reason}", code.as_str())),
        (Some(code), None) => parts.push(code.as_str().to_owned()),
        (None, Some(reason)) => parts.push(reason.to_owned()),
        (None, None) => {}
    }
    let worker = task
        .containers()
        .iter()
        .find(|c| c.name() == Some(WORKER_CONTAINER));
    let mut exit_code = worker.and_then(|c| c.exit_code());
    for container in task.containers() {
        let name = container.name().unwrap_or("?");
        if let Some(reason) = container.reason().filter(|r| !r.trim().is_empty()) {
            parts.push(format!("container {name}: {reason}"));
        }
        if let Some(code) = container.exit_code() {
            exit_code = exit_code.or(Some(code));
            let signal = match code {
                137 => " (killed by SIGKILL: out of memory, or still running at the stop timeout)",
                143 => " (killed by SIGTERM)",
                _ => "",
            };
            if !(requested && code == 0) {
                parts.push(format!(
                    "container {name} exited with exit code {code}{signal}"
                ));
            }
        }
    }
    let reason = if parts.is_empty() {
        "the task stopped; ECS gave no reason".to_owned()
    } else {
        parts.join("; ")
    };
    Exit {
        code: exit_code,
        reason,
        requested,
        at: chrono_time(task.stopped_at()).unwrap_or_else(Utc::now),
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_ecs::types::Tag;

    use super::*;

    fn task(arn: &str, group: &str, last_status: &str) -> Task {
        Task::builder()
            .task_arn(arn)
            .group(group)
            .last_status(last_status)
            .tags(Tag::builder().key(SPEC_HASH_TAG).value("h1").build())
            .build()
    }

    #[test]
    fn every_listing_reports_stopped_tasks_again_and_leaves_strangers_out() {
        let tenant = TenantId::new();
        let group = format!("{GROUP_PREFIX}{tenant}");
        let tasks = [
            task("arn:running", &group, "RUNNING"),
            task("arn:stopped", &group, "STOPPED"),
            task("arn:stranger", "service:web", "RUNNING"),
        ];
        for _ in 0..2 {
            let listed = instances(&tasks);
            let ids: Vec<&str> = listed.iter().map(|i| i.id.as_str()).collect();
            assert_eq!(ids, ["arn:running", "arn:stopped"]);
            assert_eq!(listed[0].tenant, tenant);
            assert_eq!(listed[0].spec_hash, "h1");
            assert_eq!(listed[0].phase, Phase::Running);
            assert!(matches!(listed[1].phase, Phase::Exited(_)));
        }
    }

    #[test]
    fn live_tasks_count_their_cpu_against_on_demand_or_spot() {
        let group = format!("{GROUP_PREFIX}{}", TenantId::new());
        let sized = |arn: &str, status: &str, cpu: &str, provider: &str| {
            Task::builder()
                .task_arn(arn)
                .group(&group)
                .last_status(status)
                .cpu(cpu)
                .capacity_provider_name(provider)
                .build()
        };
        let tasks = [
            sized("a", "RUNNING", "256", "FARGATE"),
            sized("b", "PENDING", "1024", "FARGATE"),
            sized("c", "RUNNING", "512", "FARGATE_SPOT"),
            sized("d", "STOPPED", "4096", "FARGATE"),
        ];
        let in_use = cpu_in_use(&tasks);
        assert_eq!((in_use.on_demand, in_use.spot), (1280, 512));
    }
}
