//! Test support against the AWS emulator (moto on loopback), behind the
//! `testing` feature: the EventBridge → SQS plumbing that `infra/events.tf`
//! creates, and an ECS task state change of its documented shape published
//! to the bus with `PutEvents` (the emulator runs no tasks that would emit
//! one). The launcher's, the control plane's and the deployment rehearsal's
//! tests share it.
//!
//! EventBridge is called with its JSON protocol over plain HTTP rather than
//! through an SDK crate the product does not otherwise need; the emulator
//! does not check signatures.

use aws_config::SdkConfig;
use polybot_core::TenantId;
use serde_json::{Value, json};

use crate::ecs::events::{DETAIL_TYPE, SOURCE};

/// The documented shape of an "ECS Task State Change" event for a stopped
/// worker, with `{TENANT}`, `{TASK_ARN}` and `{SPEC_HASH}` to fill.
pub const STOPPED_TASK_EVENT: &str = include_str!("../tests/fixtures/ecs-task-state-change.json");

/// The event pattern of `infra/events.tf`'s rule: the cluster's task state changes.
pub fn event_pattern(cluster_arn: &str) -> Value {
    json!({
        "source": [SOURCE],
        "detail-type": [DETAIL_TYPE],
        "detail": { "clusterArn": [cluster_arn] }
    })
}

/// The queues and the rule of one test.
#[derive(Debug, Clone)]
pub struct EventPlumbing {
    pub queue_url: String,
    pub dead_letter_queue_url: String,
    pub rule: String,
}

/// Creates a dead-letter queue, a queue that redrives to it after
/// `max_receive_count` receives, and a rule on the default bus that sends
/// `cluster_arn`'s task state changes to the queue; names start with `name`.
pub async fn event_plumbing(
    aws: &SdkConfig,
    endpoint: &str,
    name: &str,
    cluster_arn: &str,
    max_receive_count: u32,
) -> Result<EventPlumbing, String> {
    let sqs = aws_sdk_sqs::Client::new(aws);
    let dead_letter_queue_url = create_queue(&sqs, &format!("{name}-dlq"), None).await?;
    let dlq_arn = queue_arn(&sqs, &dead_letter_queue_url).await?;
    let redrive = json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive_count});
    let queue_url = create_queue(&sqs, name, Some(redrive.to_string())).await?;
    let arn = queue_arn(&sqs, &queue_url).await?;
    let rule = format!("{name}-task-state");
    events_call(
        endpoint,
        "PutRule",
        json!({"Name": rule, "EventPattern": event_pattern(cluster_arn).to_string(), "State": "ENABLED"}),
    )
    .await?;
    let targets = events_call(
        endpoint,
        "PutTargets",
        json!({"Rule": rule, "Targets": [{"Id": "reconciler-queue", "Arn": arn}]}),
    )
    .await?;
    if targets["FailedEntryCount"].as_u64().unwrap_or(0) != 0 {
        return Err(format!("PutTargets failed: {targets}"));
    }
    Ok(EventPlumbing {
        queue_url,
        dead_letter_queue_url,
        rule,
    })
}

/// The `detail` of a stopped worker's task state change: the documented
/// event's, for `tenant`'s task `task_arn` in `cluster_arn`, started with
/// `spec_hash`, whose worker container exited with `exit_code`.
pub fn stopped_task_detail(
    tenant: TenantId,
    task_arn: &str,
    cluster_arn: &str,
    spec_hash: &str,
    exit_code: i32,
) -> Value {
    let event: Value = serde_json::from_str(
        &STOPPED_TASK_EVENT
            .replace("{TENANT}", &tenant.to_string())
            .replace("{TASK_ARN}", task_arn)
            .replace("{SPEC_HASH}", spec_hash),
    )
    .expect("the fixture is JSON");
    let mut detail = event["detail"].clone();
    detail["clusterArn"] = json!(cluster_arn);
    detail["containers"][0]["exitCode"] = json!(exit_code);
    detail
}

/// Publishes a task state change with `detail` to the default bus, as ECS
/// would; returns the event's id.
pub async fn publish_task_state_change(endpoint: &str, detail: &Value) -> Result<String, String> {
    let task_arn = detail["taskArn"].as_str().unwrap_or_default();
    let out = events_call(
        endpoint,
        "PutEvents",
        json!({"Entries": [{
            "Source": SOURCE,
            "DetailType": DETAIL_TYPE,
            "Detail": detail.to_string(),
            "Resources": [task_arn],
        }]}),
    )
    .await?;
    if out["FailedEntryCount"].as_u64().unwrap_or(0) != 0 {
        return Err(format!("PutEvents failed: {out}"));
    }
    out["Entries"][0]["EventId"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("PutEvents returned no event id: {out}"))
}

async fn create_queue(
    sqs: &aws_sdk_sqs::Client,
    name: &str,
    redrive: Option<String>,
) -> Result<String, String> {
    let mut request = sqs.create_queue().queue_name(name);
    if let Some(redrive) = redrive {
        request = request.attributes(
            aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy,
            redrive,
        );
    }
    let out = request.send().await.map_err(|e| {
        format!(
            "CreateQueue {name}: {}",
            aws_sdk_sqs::error::DisplayErrorContext(&e)
        )
    })?;
    out.queue_url()
        .map(str::to_owned)
        .ok_or_else(|| format!("CreateQueue {name} returned no URL"))
}

async fn queue_arn(sqs: &aws_sdk_sqs::Client, url: &str) -> Result<String, String> {
    let out = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| {
            format!(
                "GetQueueAttributes {url}: {}",
                aws_sdk_sqs::error::DisplayErrorContext(&e)
            )
        })?;
    out.attributes()
        .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn))
        .cloned()
        .ok_or_else(|| format!("{url} has no ARN"))
}

/// One EventBridge call in its JSON protocol.
async fn events_call(endpoint: &str, action: &str, body: Value) -> Result<Value, String> {
    let reply = reqwest::Client::new()
        .post(endpoint)
        .header("X-Amz-Target", format!("AWSEvents.{action}"))
        .header("Content-Type", "application/x-amz-json-1.1")
        .header(
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=testing/20240101/us-east-1/events/aws4_request, \
             SignedHeaders=host, Signature=0",
        )
        .body(body.to_string())
        .send()
        .await
        .map_err(|e| format!("EventBridge {action}: {e}"))?;
    let status = reply.status();
    let text = reply
        .text()
        .await
        .map_err(|e| format!("EventBridge {action}: reading the answer: {e}"))?;
    if !status.is_success() {
        return Err(format!("EventBridge {action}: {status}: {text}"));
    }
    serde_json::from_str(&text).map_err(|e| format!("EventBridge {action}: {e}: {text}"))
}
