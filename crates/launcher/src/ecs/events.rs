//! ECS task state-change events, as EventBridge delivers them to an SQS
//! queue: [`parse`] reads one message body (the event's documented shape,
//! `detail-type` "ECS Task State Change" from `aws.ecs`) into the launcher's
//! terms, and [`SqsTaskEvents`] long-polls the queue and deletes what was
//! handled.
//!
//! An event carries what DescribeTasks would say of the task (its status, stop
//! code, stopped reason, containers' exit codes, group and overrides), so it
//! is turned into an `aws_sdk_ecs` [`Task`] and read by the same
//! [`observe::instance`] as a listed task: an exit reads the same from an
//! event and from the backstop.
//!
//! What does not live here: when a message is deleted (the reconciler, once
//! the exit is recorded), and the queue's redrive policy (Terraform's
//! `infra/events.tf`: a message received `maxReceiveCount` times without
//! being deleted moves to the dead-letter queue).

use std::time::Duration;

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_ecs::primitives::DateTime as AwsDateTime;
use aws_sdk_ecs::types::{Container, ContainerOverride, KeyValuePair, Task, TaskOverride};
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::DeleteMessageBatchRequestEntry;
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::{STARTED_BY, failed, observe};
use crate::{EventContent, LaunchError, TaskEvent, TaskEvents};

/// The `detail-type` of a task state change.
pub const DETAIL_TYPE: &str = "ECS Task State Change";
/// The `source` of ECS's events.
pub const SOURCE: &str = "aws.ecs";
/// ReceiveMessage's longest wait.
pub const LONG_POLL: Duration = Duration::from_secs(20);
/// ReceiveMessage and DeleteMessageBatch take at most this many messages.
const BATCH: usize = 10;

/// The EventBridge envelope, with only the fields read here.
#[derive(Debug, Deserialize)]
struct Envelope {
    #[serde(rename = "detail-type")]
    detail_type: String,
    source: String,
    detail: Detail,
}

/// The task in an "ECS Task State Change" event (a subset of the fields
/// ECS documents; the rest are ignored).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Detail {
    task_arn: String,
    cluster_arn: String,
    last_status: String,
    desired_status: Option<String>,
    group: Option<String>,
    started_by: Option<String>,
    stop_code: Option<String>,
    stopped_reason: Option<String>,
    cpu: Option<String>,
    capacity_provider_name: Option<String>,
    created_at: Option<DateTime<Utc>>,
    started_at: Option<DateTime<Utc>>,
    stopped_at: Option<DateTime<Utc>>,
    #[serde(default)]
    containers: Vec<EventContainer>,
    overrides: Option<Overrides>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EventContainer {
    name: Option<String>,
    exit_code: Option<i32>,
    reason: Option<String>,
    last_status: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Overrides {
    #[serde(default)]
    container_overrides: Vec<EventContainerOverride>,
}

#[derive(Debug, Deserialize)]
struct EventContainerOverride {
    name: Option<String>,
    #[serde(default)]
    environment: Vec<NameValue>,
}

#[derive(Debug, Deserialize)]
struct NameValue {
    name: String,
    value: String,
}

fn aws_time(t: Option<DateTime<Utc>>) -> Option<AwsDateTime> {
    t.map(|t| AwsDateTime::from_secs_and_nanos(t.timestamp(), t.timestamp_subsec_nanos()))
}

impl Detail {
    fn into_task(self) -> Task {
        let containers = self
            .containers
            .into_iter()
            .map(|c| {
                Container::builder()
                    .set_name(c.name)
                    .set_exit_code(c.exit_code)
                    .set_reason(c.reason)
                    .set_last_status(c.last_status)
                    .build()
            })
            .collect();
        let overrides = self.overrides.map(|o| {
            TaskOverride::builder()
                .set_container_overrides(Some(
                    o.container_overrides
                        .into_iter()
                        .map(|c| {
                            ContainerOverride::builder()
                                .set_name(c.name)
                                .set_environment(Some(
                                    c.environment
                                        .into_iter()
                                        .map(|e| {
                                            KeyValuePair::builder()
                                                .name(e.name)
                                                .value(e.value)
                                                .build()
                                        })
                                        .collect(),
                                ))
                                .build()
                        })
                        .collect(),
                ))
                .build()
        });
        Task::builder()
            .task_arn(self.task_arn)
            .cluster_arn(self.cluster_arn)
            .last_status(self.last_status)
            .set_desired_status(self.desired_status)
            .set_group(self.group)
            .set_started_by(self.started_by)
            .set_stop_code(self.stop_code.map(|c| c.as_str().into()))
            .set_stopped_reason(self.stopped_reason)
            .set_cpu(self.cpu)
            .set_capacity_provider_name(self.capacity_provider_name)
            .set_created_at(aws_time(self.created_at))
            .set_started_at(aws_time(self.started_at))
            .set_stopped_at(aws_time(self.stopped_at))
            .set_containers(Some(containers))
            .set_overrides(overrides)
            .build()
    }
}

/// Whether `arn` is the ARN of `cluster` (a name or an ARN).
fn is_cluster(arn: &str, cluster: &str) -> bool {
    arn == cluster
        || arn
            .rsplit_once('/')
            .is_some_and(|(_, name)| name == cluster)
}

/// What one message body says, for the launcher's tasks in `cluster`.
pub fn parse(body: &str, cluster: &str) -> EventContent {
    let envelope: Envelope = match serde_json::from_str(body) {
        Ok(envelope) => envelope,
        Err(e) => {
            let excerpt: String = body.chars().take(200).collect();
            return EventContent::Malformed(format!(
                "not an ECS task state-change event ({e}): {excerpt}"
            ));
        }
    };
    if envelope.source != SOURCE || envelope.detail_type != DETAIL_TYPE {
        return EventContent::Malformed(format!(
            "an event of {} / {:?}, not {SOURCE} / {DETAIL_TYPE:?}",
            envelope.source, envelope.detail_type
        ));
    }
    let detail = envelope.detail;
    if !is_cluster(&detail.cluster_arn, cluster) {
        return EventContent::Ignored(format!(
            "task {} is in cluster {}, not {cluster}",
            detail.task_arn, detail.cluster_arn
        ));
    }
    if detail.started_by.as_deref() != Some(STARTED_BY) {
        return EventContent::Ignored(format!(
            "task {} was not started by {STARTED_BY}",
            detail.task_arn
        ));
    }
    let arn = detail.task_arn.clone();
    match observe::instance(&detail.into_task(), None) {
        Some(instance) => EventContent::Instance(instance),
        None => EventContent::Ignored(format!("task {arn} has no tenant group")),
    }
}

/// The [`TaskEvents`] of an SQS queue fed by an EventBridge rule on the
/// cluster's task state changes.
#[derive(Clone)]
pub struct SqsTaskEvents {
    client: Client,
    queue_url: String,
    cluster: String,
    wait: Duration,
    visibility_timeout: Option<Duration>,
}

impl SqsTaskEvents {
    /// The events of `cluster`'s tasks from the queue at `queue_url`, with a
    /// client built from `aws`.
    pub fn new(aws: &SdkConfig, queue_url: String, cluster: String) -> Self {
        Self::from_client(Client::new(aws), queue_url, cluster)
    }

    pub fn from_client(client: Client, queue_url: String, cluster: String) -> Self {
        Self {
            client,
            queue_url,
            cluster,
            wait: LONG_POLL,
            visibility_timeout: None,
        }
    }

    /// How long a receive waits for a message (at most 20 s).
    pub fn with_wait(mut self, wait: Duration) -> Self {
        self.wait = wait.min(LONG_POLL);
        self
    }

    /// How long a received message stays hidden before it is delivered
    /// again; the queue's own setting if not given.
    pub fn with_visibility_timeout(mut self, timeout: Duration) -> Self {
        self.visibility_timeout = Some(timeout);
        self
    }

    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }
}

impl std::fmt::Debug for SqsTaskEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The client's own Debug is pages of SDK configuration.
        f.debug_struct("SqsTaskEvents")
            .field("queue_url", &self.queue_url)
            .field("cluster", &self.cluster)
            .field("wait", &self.wait)
            .finish_non_exhaustive()
    }
}

fn seconds(d: Duration) -> i32 {
    i32::try_from(d.as_secs()).unwrap_or(i32::MAX)
}

#[async_trait]
impl TaskEvents for SqsTaskEvents {
    async fn receive(&self) -> Result<Vec<TaskEvent>, LaunchError> {
        let out = self
            .client
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(BATCH as i32)
            .wait_time_seconds(seconds(self.wait))
            .set_visibility_timeout(self.visibility_timeout.map(seconds))
            .send()
            .await
            .map_err(|e| {
                failed(
                    "ReceiveMessage",
                    format!(
                        "{}: {}",
                        self.queue_url,
                        aws_sdk_sqs::error::DisplayErrorContext(&e)
                    ),
                )
            })?;
        Ok(out
            .messages()
            .iter()
            .filter_map(|message| {
                let receipt = message.receipt_handle()?.to_owned();
                let message_id = message.message_id().unwrap_or("?").to_owned();
                let content = match message.body() {
                    Some(body) => parse(body, &self.cluster),
                    None => EventContent::Malformed("a message without a body".into()),
                };
                Some(TaskEvent {
                    receipt,
                    message_id,
                    content,
                })
            })
            .collect())
    }

    async fn delete(&self, receipts: &[String]) -> Result<(), LaunchError> {
        for chunk in receipts.chunks(BATCH) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, receipt)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(receipt)
                        .build()
                        .map_err(|e| failed("DeleteMessageBatch", e.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let out = self
                .client
                .delete_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| {
                    failed(
                        "DeleteMessageBatch",
                        format!(
                            "{}: {}",
                            self.queue_url,
                            aws_sdk_sqs::error::DisplayErrorContext(&e)
                        ),
                    )
                })?;
            if let Some(failure) = out.failed().first() {
                // The message comes back after its visibility timeout and is
                // recorded again, which changes nothing.
                return Err(failed(
                    "DeleteMessageBatch",
                    format!(
                        "{}: {} of {} not deleted; first: {} {}",
                        self.queue_url,
                        out.failed().len(),
                        chunk.len(),
                        failure.code(),
                        failure.message().unwrap_or("")
                    ),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use polybot_core::TenantId;

    use super::*;
    use crate::Phase;

    const CLUSTER: &str = "arn:aws:ecs:us-east-1:123456789012:cluster/polybot";

    /// A task state-change event of ECS's documented shape ("Amazon ECS task
    /// state change events" in the ECS developer guide), for a worker that
    /// exited with code 1.
    fn stopped_event(tenant: TenantId, task_arn: &str, spec_hash: &str) -> String {
        include_str!("../../tests/fixtures/ecs-task-state-change.json")
            .replace("{TENANT}", &tenant.to_string())
            .replace("{TASK_ARN}", task_arn)
            .replace("{SPEC_HASH}", spec_hash)
    }

    #[test]
    fn a_stopped_worker_event_reads_as_its_exit() {
        let tenant = TenantId::new();
        let arn = "arn:aws:ecs:us-east-1:123456789012:task/polybot/0123456789abcdef0";
        let EventContent::Instance(instance) = parse(&stopped_event(tenant, arn, "h1"), CLUSTER)
        else {
            panic!("the documented event is an instance of ours");
        };
        assert_eq!(instance.id, arn);
        assert_eq!(instance.tenant, tenant);
        assert_eq!(instance.spec_hash, "h1");
        let Phase::Exited(exit) = instance.phase else {
            panic!("a STOPPED task is an exit: {:?}", instance.phase);
        };
        assert_eq!(exit.code, Some(1));
        assert!(!exit.requested);
        assert_eq!(
            exit.reason,
            "EssentialContainerExited: Essential container in task exited; container worker \
             exited with exit code 1"
        );
        assert_eq!(exit.at.to_rfc3339(), "2026-12-06T16:41:08.110+00:00");
    }

    #[test]
    fn the_cluster_may_be_named_by_its_name() {
        let tenant = TenantId::new();
        let event = stopped_event(tenant, "arn:task", "h1");
        assert!(matches!(
            parse(&event, "polybot"),
            EventContent::Instance(_)
        ));
        assert!(matches!(parse(&event, "other"), EventContent::Ignored(_)));
    }

    #[test]
    fn a_task_not_started_by_polybot_is_ignored() {
        let event = stopped_event(TenantId::new(), "arn:task", "h1").replace(
            "\"startedBy\": \"polybot\"",
            "\"startedBy\": \"ecs-svc/123\"",
        );
        let EventContent::Ignored(why) = parse(&event, CLUSTER) else {
            panic!("not ours");
        };
        assert_eq!(why, "task arn:task was not started by polybot");
    }

    #[test]
    fn what_is_not_a_task_state_change_is_malformed() {
        for body in [
            "not json",
            "{}",
            r#"{"detail-type":"ECS Container Instance State Change","source":"aws.ecs","detail":{"taskArn":"a","clusterArn":"c","lastStatus":"x"}}"#,
            r#"{"detail-type":"ECS Task State Change","source":"aws.ecs","detail":{"clusterArn":"c"}}"#,
        ] {
            assert!(
                matches!(parse(body, CLUSTER), EventContent::Malformed(ref m) if !m.is_empty()),
                "{body}"
            );
        }
    }
}
