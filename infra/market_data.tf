# Shared public market data (docs/market-data.md): one `polybot market-data`
# task per venue group (var.market_data_shards; one for every venue by
# default) holds the venues' public connections and publishes
# through Redis (ElastiCache here); every worker reads and subscribes.
#
# Redis access is by ElastiCache RBAC, the same two users `polybot up`'s
# private redis-server has (crates/cli/src/redis_server.rs):
#
#   marketdata  the service: every key and channel under polybot:md:
#   worker      every worker: reads snapshots and health, writes only its
#               registration in polybot:md:plans, subscribes to events; it
#               cannot publish, so a compromised worker cannot feed other
#               tenants false prices
#   default     required by ElastiCache in every user group; switched off
#
#   polybot/market-data/redis  POLYBOT_MARKET_DATA_URL of the service
#   polybot/workers/settings   POLYBOT_MARKET_DATA_URL of the workers (secrets.tf)
#
# The task definition is deploy/ecs/market-data.task-definition.json.

locals {
  redis_address = aws_elasticache_replication_group.market_data.primary_endpoint_address

  market_data_service_url = "rediss://marketdata:${random_password.redis_market_data.result}@${local.redis_address}:6379"
  market_data_worker_url  = "rediss://worker:${random_password.redis_worker.result}@${local.redis_address}:6379"

  market_data_task_template = replace(
    file("${path.module}/../deploy/ecs/market-data.task-definition.json"),
    "/\\{\\{([a-z_]+)\\}\\}/",
    "$${$1}",
  )

  market_data_task = jsondecode(templatestring(local.market_data_task_template, {
    image                  = "${aws_ecr_repository.polybot.repository_url}:${var.image_tag}"
    execution_role_arn     = aws_iam_role.market_data_execution.arn
    region                 = local.region
    log_group              = aws_cloudwatch_log_group.market_data.name
    market_data_secret_arn = aws_secretsmanager_secret.market_data.arn
  }))
}

# --- encryption at rest: a key of its own ---

resource "aws_kms_key" "redis" {
  description             = "PolyBot market-data Redis (ElastiCache) at rest"
  enable_key_rotation     = true
  deletion_window_in_days = 30

  # The account administers the key through IAM; ElastiCache uses it on
  # behalf of the account's principals (in a key policy, "*" is this key).
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "AccountAdministersTheKey"
        Effect    = "Allow"
        Principal = { AWS = "arn:${local.partition}:iam::${local.account_id}:root" }
        Action    = "kms:*"
        Resource  = "*"
      },
      {
        Sid       = "ElastiCacheUsesTheKey"
        Effect    = "Allow"
        Principal = { AWS = "arn:${local.partition}:iam::${local.account_id}:root" }
        Action = [
          "kms:Encrypt",
          "kms:Decrypt",
          "kms:ReEncrypt*",
          "kms:GenerateDataKey*",
          "kms:DescribeKey",
          "kms:CreateGrant",
        ]
        Resource  = "*"
        Condition = { StringEquals = { "kms:ViaService" = "elasticache.${local.region}.amazonaws.com" } }
      },
    ]
  })
}

resource "aws_kms_alias" "redis" {
  name          = "alias/${var.name}-redis"
  target_key_id = aws_kms_key.redis.key_id
}

# --- users (RBAC) ---

# Letters and digits only, so they need no escaping in a URL.
resource "random_password" "redis_market_data" {
  length  = 40
  special = false
}

resource "random_password" "redis_worker" {
  length  = 40
  special = false
}

resource "aws_elasticache_user" "default" {
  user_id       = "${var.name}-default"
  user_name     = "default"
  engine        = "REDIS"
  access_string = "off -@all"

  authentication_mode {
    type = "no-password-required"
  }
}

resource "aws_elasticache_user" "market_data" {
  user_id       = "${var.name}-marketdata"
  user_name     = "marketdata"
  engine        = "REDIS"
  access_string = "on ~polybot:md:* &polybot:md:* +@all"

  authentication_mode {
    type      = "password"
    passwords = [random_password.redis_market_data.result]
  }
}

resource "aws_elasticache_user" "worker" {
  user_id       = "${var.name}-worker"
  user_name     = "worker"
  engine        = "REDIS"
  access_string = "on %R~polybot:md:snap:* %R~polybot:md:health %RW~polybot:md:plans &polybot:md:ev:* +ping +get +subscribe +unsubscribe +hgetall +hset"

  authentication_mode {
    type      = "password"
    passwords = [random_password.redis_worker.result]
  }
}

resource "aws_elasticache_user_group" "market_data" {
  user_group_id = "${var.name}-market-data"
  engine        = "REDIS"
  user_ids = [
    aws_elasticache_user.default.user_id,
    aws_elasticache_user.market_data.user_id,
    aws_elasticache_user.worker.user_id,
  ]
}

# --- the Redis ---

resource "aws_elasticache_subnet_group" "market_data" {
  name       = "${var.name}-market-data"
  subnet_ids = local.private_subnet_ids
}

resource "aws_cloudwatch_log_group" "redis" {
  #checkov:skip=CKV_AWS_158: encrypted with CloudWatch's service-managed keys; the slow log holds command names and key names, no secrets
  #checkov:skip=CKV_AWS_338: operational logs are kept for var.log_retention_days (30 by default) to bound cost
  name              = "/${var.name}/market-data-redis"
  retention_in_days = var.log_retention_days
}

resource "aws_elasticache_replication_group" "market_data" {
  #checkov:skip=CKV_AWS_31: access is by RBAC users (user_group_ids, passwords in Secrets Manager), which ElastiCache does not combine with a single AUTH token; in-transit encryption is on and required
  replication_group_id       = "${var.name}-market-data"
  description                = "PolyBot shared public market data"
  engine                     = "redis"
  engine_version             = var.redis_engine_version
  node_type                  = var.redis_node_type
  port                       = 6379
  num_cache_clusters         = 1 + var.redis_replicas
  automatic_failover_enabled = true
  multi_az_enabled           = true
  subnet_group_name          = aws_elasticache_subnet_group.market_data.name
  security_group_ids         = [aws_security_group.redis.id]
  at_rest_encryption_enabled = true
  kms_key_id                 = aws_kms_key.redis.arn
  transit_encryption_enabled = true
  transit_encryption_mode    = "required"
  user_group_ids             = [aws_elasticache_user_group.market_data.user_group_id]
  auto_minor_version_upgrade = true
  snapshot_retention_limit   = 1
  apply_immediately          = false

  log_delivery_configuration {
    destination      = aws_cloudwatch_log_group.redis.name
    destination_type = "cloudwatch-logs"
    log_format       = "json"
    log_type         = "slow-log"
  }
}

# --- the service's URL ---

resource "aws_secretsmanager_secret" "market_data" {
  #checkov:skip=CKV_AWS_149: encrypted with the AWS-managed Secrets Manager key; only the market-data service's execution role can read it (iam.tf)
  #checkov:skip=CKV2_AWS_57: the password is an ElastiCache user's, set by Terraform; rotating it is a new apply (docs/operations.md)
  name                    = "polybot/market-data/redis"
  description             = "POLYBOT_MARKET_DATA_URL of the PolyBot market-data service (Redis user marketdata)"
  recovery_window_in_days = 7
}

resource "aws_secretsmanager_secret_version" "market_data" {
  secret_id     = aws_secretsmanager_secret.market_data.id
  secret_string = jsonencode({ POLYBOT_MARKET_DATA_URL = local.market_data_service_url })
}

# --- the service: one task per venue group (shard) ---

resource "aws_cloudwatch_log_group" "market_data" {
  #checkov:skip=CKV_AWS_158: encrypted with CloudWatch's service-managed keys; no secrets are logged (secrecy types)
  #checkov:skip=CKV_AWS_338: operational logs are kept for var.log_retention_days (30 by default) to bound cost
  name              = "/${var.name}/market-data"
  retention_in_days = var.log_retention_days
}

# One service per venue group of var.market_data_shards (each task runs
# `polybot market-data` with POLYBOT_MARKET_DATA_VENUES set to its group), or
# one serving every venue ("all") when none is given. The groups are
# disjoint (the variable's validation; a shard started on a venue another
# serves refuses to start).
locals {
  market_data_shards = length(var.market_data_shards) == 0 ? { all = "" } : {
    for venues in var.market_data_shards : replace(replace(venues, " ", ""), ",", "-") => replace(venues, " ", "")
  }
}

moved {
  from = aws_ecs_task_definition.market_data
  to   = aws_ecs_task_definition.market_data["all"]
}

moved {
  from = aws_ecs_service.market_data
  to   = aws_ecs_service.market_data["all"]
}

resource "aws_ecs_task_definition" "market_data" {
  for_each = local.market_data_shards

  family                   = each.key == "all" ? local.market_data_task.family : "${local.market_data_task.family}-${each.key}"
  requires_compatibilities = local.market_data_task.requiresCompatibilities
  network_mode             = local.market_data_task.networkMode
  cpu                      = local.market_data_task.cpu
  memory                   = local.market_data_task.memory
  execution_role_arn       = aws_iam_role.market_data_execution.arn
  container_definitions = jsonencode([
    for container in local.market_data_task.containerDefinitions : merge(container, {
      environment = each.value == "" ? [] : [{ name = "POLYBOT_MARKET_DATA_VENUES", value = each.value }]
      logConfiguration = merge(container.logConfiguration, {
        options = merge(container.logConfiguration.options, { "awslogs-stream-prefix" = "market-data-${each.key}" })
      })
    })
  ])

  runtime_platform {
    cpu_architecture        = local.market_data_task.runtimePlatform.cpuArchitecture
    operating_system_family = local.market_data_task.runtimePlatform.operatingSystemFamily
  }

  volume {
    name = "tmp"
  }

  tags = merge({ for t in local.market_data_task.tags : t.key => t.value }, { "polybot:market-data-shard" = each.key })
}

resource "aws_ecs_service" "market_data" {
  for_each = local.market_data_shards

  name            = each.key == "all" ? "${var.name}-market-data" : "${var.name}-market-data-${each.key}"
  cluster         = aws_ecs_cluster.main.id
  task_definition = aws_ecs_task_definition.market_data[each.key].arn
  # One publisher per venue: a new revision stops the old task before it
  # starts the new one (workers resync from the snapshots meanwhile; the new
  # task waits for the old one's claim on its venues to lapse if it was
  # killed before giving them back).
  desired_count                      = var.shared_market_data ? 1 : 0
  launch_type                        = "FARGATE"
  platform_version                   = "LATEST"
  deployment_minimum_healthy_percent = 0
  deployment_maximum_percent         = 100
  enable_execute_command             = false
  enable_ecs_managed_tags            = true
  propagate_tags                     = "SERVICE"

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  network_configuration {
    subnets          = local.private_subnet_ids
    security_groups  = [aws_security_group.market_data.id]
    assign_public_ip = false
  }

  tags = { "polybot:component" = "market-data", "polybot:market-data-shard" = each.key }

  depends_on = [aws_iam_role_policy.market_data_execution, aws_secretsmanager_secret_version.market_data]
}
