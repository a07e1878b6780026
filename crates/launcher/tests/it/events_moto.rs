//! ECS task state changes through EventBridge and SQS, against the AWS
//! emulator: the rule of `infra/events.tf` delivers a published event of the
//! documented shape to the queue, the consumer reads it as the worker's
//! exit, and a malformed message ends in the dead-letter queue without
//! stopping the consumer.

use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_ecs::config::Credentials;
use polybot_core::TenantId;
use polybot_launcher::ecs::{SqsTaskEvents, https_client};
use polybot_launcher::testing::{event_plumbing, publish_task_state_change, stopped_task_detail};
use polybot_launcher::{EventContent, Phase, TaskEvents};

fn endpoint() -> String {
    std::env::var("POLYBOT_TEST_AWS_ENDPOINT").unwrap_or_else(|_| {
        panic!(
            "POLYBOT_TEST_AWS_ENDPOINT is not set: these tests need the AWS emulator (moto on \
             loopback) that scripts/test starts. Run them with `scripts/test -- -p polybot-launcher`."
        )
    })
}

async fn aws() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "tests"))
        .http_client(https_client())
        .load()
        .await
}

/// Receives until a batch is not empty (delivery is asynchronous), at most `rounds` times.
async fn receive_some(events: &SqsTaskEvents, rounds: usize) -> Vec<polybot_launcher::TaskEvent> {
    for _ in 0..rounds {
        let got = events.receive().await.unwrap();
        if !got.is_empty() {
            return got;
        }
    }
    Vec::new()
}

#[tokio::test]
async fn a_published_task_state_change_reaches_the_consumer_as_the_workers_exit() {
    let aws = aws().await;
    let id = TenantId::new();
    let cluster_arn = format!("arn:aws:ecs:us-east-1:123456789012:cluster/polybot-{id}");
    let plumbing = event_plumbing(
        &aws,
        &endpoint(),
        &format!("ecs-events-{id}"),
        &cluster_arn,
        5,
    )
    .await
    .unwrap();
    let events = SqsTaskEvents::new(&aws, plumbing.queue_url.clone(), cluster_arn.clone())
        .with_wait(Duration::from_secs(1));

    let tenant = TenantId::new();
    let task = format!("arn:aws:ecs:us-east-1:123456789012:task/polybot-{id}/0123456789abcdef");
    // Another cluster's task: the rule does not deliver it.
    let elsewhere = stopped_task_detail(
        tenant,
        &task,
        "arn:aws:ecs:us-east-1:123456789012:cluster/other",
        "h1",
        1,
    );
    publish_task_state_change(&endpoint(), &elsewhere)
        .await
        .unwrap();
    let ours = stopped_task_detail(tenant, &task, &cluster_arn, "h1", 137);
    publish_task_state_change(&endpoint(), &ours).await.unwrap();

    let received = receive_some(&events, 5).await;
    assert_eq!(received.len(), 1, "{received:?}");
    let EventContent::Instance(instance) = &received[0].content else {
        panic!("the event is one of our workers: {:?}", received[0].content);
    };
    assert_eq!(instance.id, task);
    assert_eq!(instance.tenant, tenant);
    assert_eq!(instance.spec_hash, "h1");
    let Phase::Exited(exit) = &instance.phase else {
        panic!("a stopped task is an exit: {:?}", instance.phase);
    };
    assert_eq!(exit.code, Some(137));
    assert!(
        exit.reason.starts_with(
            "EssentialContainerExited: Essential container in task exited; container worker \
             exited with exit code 137"
        ),
        "{}",
        exit.reason
    );

    // Deleted, it does not come back.
    events.delete(&[received[0].receipt.clone()]).await.unwrap();
    let again = SqsTaskEvents::new(&aws, plumbing.queue_url.clone(), cluster_arn)
        .with_wait(Duration::from_secs(1))
        .with_visibility_timeout(Duration::ZERO);
    assert_eq!(again.receive().await.unwrap(), []);
}

#[tokio::test]
async fn a_malformed_message_ends_in_the_dead_letter_queue_and_the_consumer_goes_on() {
    let aws = aws().await;
    let id = TenantId::new();
    let cluster_arn = format!("arn:aws:ecs:us-east-1:123456789012:cluster/polybot-{id}");
    let plumbing = event_plumbing(&aws, &endpoint(), &format!("ecs-bad-{id}"), &cluster_arn, 2)
        .await
        .unwrap();
    let sqs = aws_sdk_sqs::Client::new(&aws);
    sqs.send_message()
        .queue_url(&plumbing.queue_url)
        .message_body("{\"detail-type\": \"ECS Task State Change\", \"source\": \"aws.ecs\"}")
        .send()
        .await
        .unwrap();
    // Visible again at once, so that the redrive happens within the test.
    let events = SqsTaskEvents::new(&aws, plumbing.queue_url.clone(), cluster_arn.clone())
        .with_wait(Duration::ZERO)
        .with_visibility_timeout(Duration::ZERO);
    let mut malformed = 0;
    for _ in 0..4 {
        for event in events.receive().await.unwrap() {
            match event.content {
                EventContent::Malformed(why) => {
                    assert!(why.contains("not an ECS task state-change event"), "{why}");
                    malformed += 1;
                }
                other => panic!("expected a malformed event, got {other:?}"),
            }
        }
    }
    assert_eq!(
        malformed, 2,
        "received maxReceiveCount times, then redriven"
    );
    let dead = sqs
        .receive_message()
        .queue_url(&plumbing.dead_letter_queue_url)
        .send()
        .await
        .unwrap();
    let bodies: Vec<&str> = dead.messages().iter().filter_map(|m| m.body()).collect();
    assert_eq!(
        bodies,
        ["{\"detail-type\": \"ECS Task State Change\", \"source\": \"aws.ecs\"}"]
    );
}
