# IAM, least privilege. Seven roles:
#
#   control_plane_execution  ECS pulls the image, writes logs, injects the
#                            control plane's DATABASE_URL and its tokens
#   control_plane_task       the control plane itself: runs/stops/observes worker
#                            tasks in this cluster, registers their task
#                            definitions, passes the two worker roles, manages
#                            secrets under polybot/tenants/*
#   worker_execution         ECS pulls the image, writes logs, injects the
#                            tenant's secret (polybot/tenants/*) and the
#                            operator's worker settings (polybot/workers/settings)
#   migrate_execution        ECS pulls the image, writes logs, injects the
#                            administrator's and the control plane's DATABASE_URL
#                            into the one-shot migrate task (no task role)
#   worker_task              the worker itself: no permissions at all; it never
#                            calls Secrets Manager or any other AWS API
#   pgbouncer_execution      ECS writes PgBouncer's logs and injects the shared
#                            worker login (its image is public: no ECR rights)
#   market_data_execution    ECS pulls the image, writes logs, injects the
#                            market-data service's Redis URL (no task role)
#
# crates/deploy-spec/tests/iam.rs parses this file and asserts these boundaries.

data "aws_iam_policy_document" "ecs_tasks_assume" {
  statement {
    sid     = "EcsTasksOfThisAccount"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }

    # Confused-deputy protection: only tasks of this account and region.
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }

    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = ["arn:${local.partition}:ecs:${local.region}:${local.account_id}:*"]
    }
  }
}

# --- control plane: execution role ---

resource "aws_iam_role" "control_plane_execution" {
  name               = "${var.name}-control-plane-execution"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

data "aws_iam_policy_document" "control_plane_execution" {
  statement {
    sid       = "PullAuth"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"] # GetAuthorizationToken has no resource-level permissions
  }

  statement {
    sid = "PullImage"
    actions = [
      "ecr:BatchCheckLayerAvailability",
      "ecr:BatchGetImage",
      "ecr:GetDownloadUrlForLayer",
    ]
    resources = [aws_ecr_repository.polybot.arn]
  }

  statement {
    sid       = "WriteLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.control_plane.arn}:*"]
  }

  statement {
    sid       = "InjectDatabaseUrlsAndTokens"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [local.database_secret_arn, aws_secretsmanager_secret.worker_database.arn, aws_secretsmanager_secret.control_plane_tokens.arn]
  }
}

resource "aws_iam_role_policy" "control_plane_execution" {
  name   = "execution"
  role   = aws_iam_role.control_plane_execution.id
  policy = data.aws_iam_policy_document.control_plane_execution.json
}

# --- control plane: task role ---

resource "aws_iam_role" "control_plane_task" {
  name               = "${var.name}-control-plane-task"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

data "aws_iam_policy_document" "control_plane_task" {
  statement {
    sid       = "RunWorkerTasksInThisCluster"
    actions   = ["ecs:RunTask"]
    resources = [local.worker_task_definition_arn_pattern]

    condition {
      test     = "ArnEquals"
      variable = "ecs:cluster"
      values   = [aws_ecs_cluster.main.arn]
    }
  }

  statement {
    sid       = "StopAndDescribeTasksInThisCluster"
    actions   = ["ecs:StopTask", "ecs:DescribeTasks"]
    resources = [local.cluster_task_arn_pattern]

    condition {
      test     = "ArnEquals"
      variable = "ecs:cluster"
      values   = [aws_ecs_cluster.main.arn]
    }
  }

  # ListTasks is authorized on the cluster through the ecs:cluster condition.
  statement {
    sid       = "ListTasksInThisCluster"
    actions   = ["ecs:ListTasks"]
    resources = ["*"]

    condition {
      test     = "ArnEquals"
      variable = "ecs:cluster"
      values   = [aws_ecs_cluster.main.arn]
    }
  }

  # RunTask and RegisterTaskDefinition with tags (tenant_id) also need
  # TagResource, allowed only as part of those two calls.
  statement {
    sid       = "TagWorkersOnCreate"
    actions   = ["ecs:TagResource"]
    resources = [local.worker_task_definition_arn_pattern, local.cluster_task_arn_pattern]

    condition {
      test     = "StringEquals"
      variable = "ecs:CreateAction"
      values   = ["RunTask", "RegisterTaskDefinition"]
    }
  }

  # AWS offers no resource-level permissions for these actions: they cannot be
  # scoped to the worker families. What a registered task definition may do is
  # bounded instead by iam:PassRole below (only the two worker roles), and the
  # tasks it runs by the cluster-scoped RunTask above.
  statement {
    sid = "WorkerTaskDefinitions"
    actions = [
      "ecs:RegisterTaskDefinition",
      "ecs:DeregisterTaskDefinition",
      "ecs:DescribeTaskDefinition",
      "ecs:ListTaskDefinitions",
    ]
    resources = ["*"]
  }

  statement {
    sid       = "PassOnlyTheWorkerRoles"
    actions   = ["iam:PassRole"]
    resources = [aws_iam_role.worker_execution.arn, aws_iam_role.worker_task.arn]

    condition {
      test     = "StringEquals"
      variable = "iam:PassedToService"
      values   = ["ecs-tasks.amazonaws.com"]
    }
  }

  # A tenant's secret must carry its tenant_id tag from the start.
  statement {
    sid       = "CreateTaggedTenantSecrets"
    actions   = ["secretsmanager:CreateSecret", "secretsmanager:TagResource"]
    resources = [local.tenant_secret_arn_pattern]

    condition {
      test     = "Null"
      variable = "aws:RequestTag/tenant_id"
      values   = ["false"]
    }
  }

  # Read-modify-write on key rotation, and offboarding (scheduled deletion
  # with a recovery window, or restore within it).
  statement {
    sid = "ManageTenantSecrets"
    actions = [
      "secretsmanager:DescribeSecret",
      "secretsmanager:GetSecretValue",
      "secretsmanager:PutSecretValue",
      "secretsmanager:UpdateSecret",
      "secretsmanager:DeleteSecret",
      "secretsmanager:RestoreSecret",
    ]
    resources = [local.tenant_secret_arn_pattern]
  }
}

resource "aws_iam_role_policy" "control_plane_task" {
  name   = "control-plane"
  role   = aws_iam_role.control_plane_task.id
  policy = data.aws_iam_policy_document.control_plane_task.json
}

# --- workers: execution role (shared by every tenant; see docs/security.md) ---

resource "aws_iam_role" "worker_execution" {
  name               = "${var.name}-worker-execution"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

data "aws_iam_policy_document" "worker_execution" {
  statement {
    sid       = "PullAuth"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"] # GetAuthorizationToken has no resource-level permissions
  }

  statement {
    sid = "PullImage"
    actions = [
      "ecr:BatchCheckLayerAvailability",
      "ecr:BatchGetImage",
      "ecr:GetDownloadUrlForLayer",
    ]
    resources = [aws_ecr_repository.polybot.arn]
  }

  statement {
    sid       = "WriteLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.workers.arn}:*"]
  }

  statement {
    sid       = "InjectTenantSecrets"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [local.tenant_secret_arn_pattern]
  }
}

resource "aws_iam_role_policy" "worker_execution" {
  name   = "execution"
  role   = aws_iam_role.worker_execution.id
  policy = data.aws_iam_policy_document.worker_execution.json
}

# --- workers: task role, deliberately without any policy ---

resource "aws_iam_role" "worker_task" {
  name               = "${var.name}-worker-task"
  description        = "PolyBot worker tasks: no permissions; the worker calls no AWS API"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

# The operator's settings for every worker (secrets.tf).
data "aws_iam_policy_document" "worker_settings" {
  statement {
    sid       = "InjectWorkerSettings"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [aws_secretsmanager_secret.worker_settings.arn]
  }
}

resource "aws_iam_role_policy" "worker_settings" {
  name   = "worker-settings"
  role   = aws_iam_role.worker_execution.id
  policy = data.aws_iam_policy_document.worker_settings.json
}

# --- the migrate task: execution role only (it calls no AWS API) ---

resource "aws_iam_role" "migrate_execution" {
  name               = "${var.name}-migrate-execution"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

data "aws_iam_policy_document" "migrate_execution" {
  statement {
    sid       = "PullAuth"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"] # GetAuthorizationToken has no resource-level permissions
  }

  statement {
    sid = "PullImage"
    actions = [
      "ecr:BatchCheckLayerAvailability",
      "ecr:BatchGetImage",
      "ecr:GetDownloadUrlForLayer",
    ]
    resources = [aws_ecr_repository.polybot.arn]
  }

  statement {
    sid       = "WriteLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.control_plane.arn}:*"]
  }

  statement {
    sid       = "InjectDatabaseUrls"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [local.admin_database_secret_arn, local.database_secret_arn, aws_secretsmanager_secret.worker_database.arn]
  }
}

resource "aws_iam_role_policy" "migrate_execution" {
  name   = "execution"
  role   = aws_iam_role.migrate_execution.id
  policy = data.aws_iam_policy_document.migrate_execution.json
}

# --- PgBouncer: execution role only (pgbouncer.tf) ---

resource "aws_iam_role" "pgbouncer_execution" {
  name               = "${var.name}-pgbouncer-execution"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

data "aws_iam_policy_document" "pgbouncer_execution" {
  statement {
    sid       = "WriteLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.pgbouncer.arn}:*"]
  }

  statement {
    sid       = "InjectWorkerLogin"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [aws_secretsmanager_secret.worker_database.arn]
  }
}

resource "aws_iam_role_policy" "pgbouncer_execution" {
  name   = "execution"
  role   = aws_iam_role.pgbouncer_execution.id
  policy = data.aws_iam_policy_document.pgbouncer_execution.json
}

# --- the market-data service: execution role only (market_data.tf) ---

resource "aws_iam_role" "market_data_execution" {
  name               = "${var.name}-market-data-execution"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

data "aws_iam_policy_document" "market_data_execution" {
  statement {
    sid       = "PullAuth"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"] # GetAuthorizationToken has no resource-level permissions
  }

  statement {
    sid = "PullImage"
    actions = [
      "ecr:BatchCheckLayerAvailability",
      "ecr:BatchGetImage",
      "ecr:GetDownloadUrlForLayer",
    ]
    resources = [aws_ecr_repository.polybot.arn]
  }

  statement {
    sid       = "WriteLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.market_data.arn}:*"]
  }

  statement {
    sid       = "InjectRedisUrl"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [aws_secretsmanager_secret.market_data.arn]
  }
}

resource "aws_iam_role_policy" "market_data_execution" {
  name   = "execution"
  role   = aws_iam_role.market_data_execution.id
  policy = data.aws_iam_policy_document.market_data_execution.json
}
