# Migrations run as a one-shot ECS task (deploy/ecs/migrate.task-definition.json,
# `polybot migrate`) with the administrator's DATABASE_URL, before the control
# plane's service deploys a new revision: the control plane's own login can
# neither change the schema nor start on an older one. The task also creates
# (or resets the password of) that login from the control plane's secret,
# and the workers' shared login (pgbouncer.tf) from theirs.
#
# terraform_data.migrate runs it whenever the task definition changes (a new
# image), from the machine that applies, with the AWS CLI; a non-zero exit
# fails the apply before the service is touched (docs/operations.md).

locals {
  migrate_task_template = replace(
    file("${path.module}/../deploy/ecs/migrate.task-definition.json"),
    "/\\{\\{([a-z_]+)\\}\\}/",
    "$${$1}",
  )

  migrate_task = jsondecode(templatestring(local.migrate_task_template, {
    image                      = "${aws_ecr_repository.polybot.repository_url}:${var.image_tag}"
    execution_role_arn         = aws_iam_role.migrate_execution.arn
    region                     = local.region
    log_group                  = aws_cloudwatch_log_group.control_plane.name
    admin_database_secret_arn  = local.admin_database_secret_arn
    database_secret_arn        = local.database_secret_arn
    worker_database_secret_arn = aws_secretsmanager_secret.worker_database.arn
  }))
}

resource "aws_ecs_task_definition" "migrate" {
  family                   = local.migrate_task.family
  requires_compatibilities = local.migrate_task.requiresCompatibilities
  network_mode             = local.migrate_task.networkMode
  cpu                      = local.migrate_task.cpu
  memory                   = local.migrate_task.memory
  execution_role_arn       = aws_iam_role.migrate_execution.arn
  container_definitions    = jsonencode(local.migrate_task.containerDefinitions)

  runtime_platform {
    cpu_architecture        = local.migrate_task.runtimePlatform.cpuArchitecture
    operating_system_family = local.migrate_task.runtimePlatform.operatingSystemFamily
  }

  volume {
    name = "tmp"
  }

  tags = { for t in local.migrate_task.tags : t.key => t.value }

  lifecycle {
    precondition {
      condition     = local.admin_database_secret_arn != null
      error_message = "external_database_secret_arn needs external_database_admin_secret_arn: the migrate task runs as the database's administrator."
    }
  }
}

resource "terraform_data" "migrate" {
  triggers_replace = [aws_ecs_task_definition.migrate.arn]

  provisioner "local-exec" {
    command = "${path.module}/run-migrate.sh"
    environment = {
      REGION          = local.region
      CLUSTER         = aws_ecs_cluster.main.arn
      TASK_DEFINITION = aws_ecs_task_definition.migrate.arn
      SUBNETS         = join(",", local.private_subnet_ids)
      SECURITY_GROUP  = aws_security_group.control_plane.id
      LOG_GROUP       = aws_cloudwatch_log_group.control_plane.name
    }
  }

  depends_on = [
    aws_secretsmanager_secret_version.database,
    aws_secretsmanager_secret_version.database_admin,
    aws_secretsmanager_secret_version.worker_database,
    aws_iam_role_policy.migrate_execution,
    # In a created network the task pulls its image and reads its secrets
    # through NAT (and the S3 endpoint): the routes must exist first.
    aws_route_table_association.private,
    aws_vpc_endpoint.s3,
  ]
}
