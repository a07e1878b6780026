# ECS task state changes for the reconciler: an EventBridge rule on the
# cluster's "ECS Task State Change" events sends them to an SQS queue, which
# the leading control plane long-polls (POLYBOT_ECS_EVENTS_QUEUE_URL). A
# message is deleted once the exit it reports is recorded; one that cannot be
# read is received `events_max_receive_count` times, then moves to the
# dead-letter queue. ListTasks/DescribeTasks remain as a backstop
# (POLYBOT_ECS_BACKSTOP_SECS), so a lost event delays an exit, never loses it
# while ECS still knows the task. docs/orchestration.md has the whole story.

locals {
  # The emulator-backed tests publish events against the same pattern
  # (polybot_launcher::testing::event_pattern).
  ecs_task_state_change_pattern = {
    source      = ["aws.ecs"]
    detail-type = ["ECS Task State Change"]
    detail = {
      clusterArn = [aws_ecs_cluster.main.arn]
    }
  }
}

resource "aws_sqs_queue" "ecs_events_dead_letter" {
  name                      = "${var.name}-ecs-events-dlq"
  sqs_managed_sse_enabled   = true
  message_retention_seconds = 1209600 # 14 days, SQS's longest: time to look
}

resource "aws_sqs_queue" "ecs_events" {
  name                    = "${var.name}-ecs-events"
  sqs_managed_sse_enabled = true
  # A control plane that dies mid-pass: its messages come back after a minute.
  visibility_timeout_seconds = 60
  # Long polling is the consumer's (20 s); the queue default matches it.
  receive_wait_time_seconds = 20
  # ECS forgets a stopped task within hours; an event older than 4 days
  # could only repeat what the database already holds.
  message_retention_seconds = 345600

  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.ecs_events_dead_letter.arn
    maxReceiveCount     = var.events_max_receive_count
  })
}

# Only the events queue may send to the dead-letter queue.
resource "aws_sqs_queue_redrive_allow_policy" "ecs_events_dead_letter" {
  queue_url = aws_sqs_queue.ecs_events_dead_letter.id
  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.ecs_events.arn]
  })
}

resource "aws_cloudwatch_event_rule" "ecs_task_state_change" {
  name          = "${var.name}-ecs-task-state-change"
  description   = "Task state changes of the PolyBot cluster, for the reconciler"
  event_pattern = jsonencode(local.ecs_task_state_change_pattern)
}

resource "aws_cloudwatch_event_target" "ecs_task_state_change" {
  rule      = aws_cloudwatch_event_rule.ecs_task_state_change.name
  target_id = "reconciler-queue"
  arn       = aws_sqs_queue.ecs_events.arn

  # EventBridge retries a failed delivery for a day, then gives up on it; the
  # backstop listing sees the task meanwhile.
  retry_policy {
    maximum_event_age_in_seconds = 86400
    maximum_retry_attempts       = 185
  }
}

# EventBridge may send to the queue, and only for this rule.
data "aws_iam_policy_document" "ecs_events_queue" {
  statement {
    sid       = "EventBridgeRuleSends"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.ecs_events.arn]

    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com"]
    }

    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values   = [aws_cloudwatch_event_rule.ecs_task_state_change.arn]
    }
  }
}

resource "aws_sqs_queue_policy" "ecs_events" {
  queue_url = aws_sqs_queue.ecs_events.id
  policy    = data.aws_iam_policy_document.ecs_events_queue.json
}

# The control plane consumes the queue, and reads the account's Fargate vCPU
# quotas (so that a tenant beyond them waits in `capacity` instead of failing
# RunTask in a loop).
data "aws_iam_policy_document" "control_plane_events" {
  statement {
    sid = "ConsumeTaskStateChanges"
    actions = [
      "sqs:ReceiveMessage",
      "sqs:DeleteMessage",
      "sqs:ChangeMessageVisibility",
      "sqs:GetQueueAttributes",
    ]
    resources = [aws_sqs_queue.ecs_events.arn]
  }

  statement {
    sid     = "ReadFargateVcpuQuotas"
    actions = ["servicequotas:GetServiceQuota"]
    resources = [
      "arn:${local.partition}:servicequotas:${local.region}:${local.account_id}:fargate/L-3032A538",
      "arn:${local.partition}:servicequotas:${local.region}:${local.account_id}:fargate/L-36FBB829",
    ]
  }
}

resource "aws_iam_role_policy" "control_plane_events" {
  name   = "control-plane-events"
  role   = aws_iam_role.control_plane_task.id
  policy = data.aws_iam_policy_document.control_plane_events.json
}
