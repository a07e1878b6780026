//! What runs on ECS, and how it ended: ListTasks and DescribeTasks of the
//! launcher's tasks, and a task in the launcher's terms (an
//! [`crate::Instance`], its [`phase`], its [`exit`]).
//!
//! What does not live here: remembering which stopped tasks were already
//! reported (the launcher's state), and starting or stopping tasks.

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

/// The instances `tasks` are, each stopped task reported once: `reported`
/// holds the stopped tasks reported before and is replaced by those stopped
/// now (ECS forgets stopped tasks after a while; so does this set).
pub(super) fn instances(tasks: &[Task], reported: &mut HashSet<String>) -> Vec<Instance> {
    let mut stopped_now = HashSet::new();
    let mut instances = Vec::with_capacity(tasks.len());
    for task in tasks {
        let Some(instance) = instance(task, None) else {
            tracing::warn!(task = ?task.task_arn(), group = ?task.group(), "a task started by polybot has no tenant group; ignored");
            continue;
        };
        if let Phase::Exited(_) = instance.phase {
            stopped_now.insert(instance.id.clone());
            if reported.contains(&instance.id) {
                continue;
            }
        }
        instances.push(instance);
    }
    *reported = stopped_now;
    instances
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
    fn a_stopped_task_is_reported_once_and_a_running_one_every_time() {
        let tenant = TenantId::new();
        let group = format!("{GROUP_PREFIX}{tenant}");
        let tasks = [
            task("arn:running", &group, "RUNNING"),
            task("arn:stopped", &group, "STOPPED"),
            task("arn:stranger", "service:web", "RUNNING"),
        ];
        let mut reported = HashSet::new();
        let first: Vec<String> = instances(&tasks, &mut reported)
            .into_iter()
            .map(|i| i.id)
            .collect();
        assert_eq!(first, ["arn:running", "arn:stopped"]);
        let second = instances(&tasks, &mut reported);
        assert_eq!(second.len(), 1);
        assert_eq!(second[0].id, "arn:running");
        assert_eq!(second[0].tenant, tenant);
        assert_eq!(second[0].spec_hash, "h1");
        assert_eq!(second[0].phase, Phase::Running);
        // Once ECS forgets the stopped task, so does the launcher.
        assert_eq!(instances(&tasks[..1], &mut reported).len(), 1);
        assert!(reported.is_empty());
    }
}
