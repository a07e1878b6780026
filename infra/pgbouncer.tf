# The workers' connection budget: PgBouncer in transaction mode in front of
# PostgreSQL (docs/scale.md, "Workers through PgBouncer"), as a Fargate
# service in the private subnets. Every worker logs in to it with the fleet's
# shared worker login, whose transactions carry their tenant's claim, checked
# by the database (docs/security.md, "Worker claims"); however many workers
# there are, the tasks together open at most var.pgbouncer_server_connections
# connections to PostgreSQL.
#
#   polybot/control-plane/worker-database  the shared worker login:
#       POLYBOT_WORKER_DATABASE_URL (through PgBouncer) for the control plane,
#       which hands it to each worker with its claim, and for the migrate task,
#       which creates the login (`polybot migrate --worker-database-url`);
#       DB_USER and DB_PASSWORD for PgBouncer's auth_file
#
# The settings are those crates/store/src/pooler.rs writes for `polybot up`'s
# PgBouncer; the task definition is deploy/ecs/pgbouncer.task-definition.json.
# Workers find the tasks by the private DNS name pgbouncer.<name>.internal
# (Cloud Map, one A record per running task).

locals {
  pgbouncer_database_host = local.create_database ? aws_db_instance.main[0].address : var.external_database_host

  # The shared worker login's name, as `polybot migrate` creates it.
  worker_database_user = "polybot_workers"

  # Each task's share of the budget: one database and one login, so
  # max_db_connections and default_pool_size are both the task's total.
  pgbouncer_task_server_connections = floor(var.pgbouncer_server_connections / var.pgbouncer_tasks)

  pgbouncer_host = "pgbouncer.${aws_service_discovery_private_dns_namespace.internal.name}"

  pgbouncer_task_template = replace(
    file("${path.module}/../deploy/ecs/pgbouncer.task-definition.json"),
    "/\\{\\{([a-z_]+)\\}\\}/",
    "$${$1}",
  )

  pgbouncer_task = jsondecode(templatestring(local.pgbouncer_task_template, {
    image                      = var.pgbouncer_image
    execution_role_arn         = aws_iam_role.pgbouncer_execution.arn
    region                     = local.region
    log_group                  = aws_cloudwatch_log_group.pgbouncer.name
    database_host              = local.pgbouncer_database_host == null ? "" : local.pgbouncer_database_host
    worker_database_secret_arn = aws_secretsmanager_secret.worker_database.arn
    server_connections         = local.pgbouncer_task_server_connections
    max_client_connections     = var.pgbouncer_max_client_connections
  }))
}

# Letters and digits only, so it needs no escaping in a URL or auth_file.
resource "random_password" "worker_database" {
  length  = 40
  special = false
}

resource "aws_secretsmanager_secret" "worker_database" {
  #checkov:skip=CKV_AWS_149: encrypted with the AWS-managed Secrets Manager key; only the execution roles of the control plane, the migrate task and PgBouncer can read it (iam.tf)
  #checkov:skip=CKV2_AWS_57: rotating the shared worker password means the migrate task (which sets it), PgBouncer's restart and new worker secrets; the runbook does it (docs/operations.md) instead of a rotation Lambda
  name                    = "polybot/control-plane/worker-database"
  description             = "The PolyBot workers' shared database login, through PgBouncer"
  recovery_window_in_days = 30
}

# Workers reach PgBouncer inside the VPC without TLS (client_tls_sslmode =
# disable: it has no certificate yet, infra/README.md); `prefer` upgrades by
# itself once it has one. PgBouncer reaches RDS over TLS (rds.force_ssl).
resource "aws_secretsmanager_secret_version" "worker_database" {
  secret_id = aws_secretsmanager_secret.worker_database.id
  secret_string = jsonencode({
    POLYBOT_WORKER_DATABASE_URL = "postgres://${local.worker_database_user}:${random_password.worker_database.result}@${local.pgbouncer_host}:6432/polybot?sslmode=prefer"
    DB_USER                     = local.worker_database_user
    DB_PASSWORD                 = random_password.worker_database.result
  })
}

resource "aws_cloudwatch_log_group" "pgbouncer" {
  #checkov:skip=CKV_AWS_158: encrypted with CloudWatch's service-managed keys; PgBouncer logs connection errors and pool statistics, no passwords or rows
  #checkov:skip=CKV_AWS_338: operational logs are kept for var.log_retention_days (30 by default) to bound cost
  name              = "/${var.name}/pgbouncer"
  retention_in_days = var.log_retention_days
}

resource "aws_service_discovery_private_dns_namespace" "internal" {
  name        = "${var.name}.internal"
  description = "Private names of PolyBot's internal services (PgBouncer)"
  vpc         = local.vpc_id
}

resource "aws_service_discovery_service" "pgbouncer" {
  name = "pgbouncer"

  dns_config {
    namespace_id   = aws_service_discovery_private_dns_namespace.internal.id
    routing_policy = "MULTIVALUE"

    dns_records {
      type = "A"
      ttl  = 10
    }
  }

  # ECS registers a task when it runs and removes it when it stops.
  health_check_custom_config {
    failure_threshold = 1
  }
}

resource "aws_ecs_task_definition" "pgbouncer" {
  family                   = local.pgbouncer_task.family
  requires_compatibilities = local.pgbouncer_task.requiresCompatibilities
  network_mode             = local.pgbouncer_task.networkMode
  cpu                      = local.pgbouncer_task.cpu
  memory                   = local.pgbouncer_task.memory
  execution_role_arn       = aws_iam_role.pgbouncer_execution.arn
  container_definitions    = jsonencode(local.pgbouncer_task.containerDefinitions)

  runtime_platform {
    cpu_architecture        = local.pgbouncer_task.runtimePlatform.cpuArchitecture
    operating_system_family = local.pgbouncer_task.runtimePlatform.operatingSystemFamily
  }

  volume {
    name = "config"
  }

  volume {
    name = "tmp"
  }

  tags = { for t in local.pgbouncer_task.tags : t.key => t.value }

  lifecycle {
    precondition {
      condition     = local.pgbouncer_database_host != null
      error_message = "external_database_secret_arn needs external_database_host: PgBouncer connects to it."
    }
  }
}

resource "aws_ecs_service" "pgbouncer" {
  name             = "${var.name}-pgbouncer"
  cluster          = aws_ecs_cluster.main.id
  task_definition  = aws_ecs_task_definition.pgbouncer.arn
  desired_count    = var.pgbouncer_tasks
  launch_type      = "FARGATE"
  platform_version = "LATEST"
  # Replaced in place, never with extra tasks beside the old ones: more
  # tasks than var.pgbouncer_tasks would open more than the budget. With one
  # task, a deployment is a short outage (workers retry).
  deployment_minimum_healthy_percent = 50
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
    security_groups  = [aws_security_group.pgbouncer.id]
    assign_public_ip = false
  }

  service_registries {
    registry_arn = aws_service_discovery_service.pgbouncer.arn
  }

  tags = { "polybot:component" = "pgbouncer" }

  # The shared login exists (the migrate task creates it) before PgBouncer
  # offers it to workers.
  depends_on = [terraform_data.migrate, aws_iam_role_policy.pgbouncer_execution]
}
