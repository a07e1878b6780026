# The control plane's task definition and service come from deploy/ecs/, the
# same files an operator would hand to `aws ecs register-task-definition` and
# `aws ecs create-service`. The task definition's `{{name}}` placeholders are
# filled by templatestring(); the service file's fixed values (replicas,
# deployment settings, port) are read from it, its placeholders are the
# resources below.

locals {
  control_plane_task_template = replace(
    file("${path.module}/../deploy/ecs/control-plane.task-definition.json"),
    "/\\{\\{([a-z_]+)\\}\\}/",
    "$${$1}",
  )

  control_plane_task = jsondecode(templatestring(local.control_plane_task_template, {
    image                      = "${aws_ecr_repository.polybot.repository_url}:${var.image_tag}"
    execution_role_arn         = aws_iam_role.control_plane_execution.arn
    task_role_arn              = aws_iam_role.control_plane_task.arn
    region                     = local.region
    log_group                  = aws_cloudwatch_log_group.control_plane.name
    database_secret_arn        = local.database_secret_arn
    tokens_secret_arn          = aws_secretsmanager_secret.control_plane_tokens.arn
    worker_settings_secret_arn = aws_secretsmanager_secret.worker_settings.arn
    worker_database_secret_arn = aws_secretsmanager_secret.worker_database.arn
    cluster_arn                = aws_ecs_cluster.main.arn
    worker_subnet_ids          = join(",", local.private_subnet_ids)
    worker_security_group_id   = aws_security_group.workers.id
    worker_execution_role_arn  = aws_iam_role.worker_execution.arn
    worker_task_role_arn       = aws_iam_role.worker_task.arn
    worker_log_group           = aws_cloudwatch_log_group.workers.name
    events_queue_url           = aws_sqs_queue.ecs_events.id
  }))

  control_plane_service = jsondecode(file("${path.module}/../deploy/ecs/control-plane.service.json"))
}

resource "aws_ecs_task_definition" "control_plane" {
  family                   = local.control_plane_task.family
  requires_compatibilities = local.control_plane_task.requiresCompatibilities
  network_mode             = local.control_plane_task.networkMode
  cpu                      = local.control_plane_task.cpu
  memory                   = local.control_plane_task.memory
  execution_role_arn       = aws_iam_role.control_plane_execution.arn
  task_role_arn            = aws_iam_role.control_plane_task.arn
  container_definitions    = jsonencode(local.control_plane_task.containerDefinitions)

  runtime_platform {
    cpu_architecture        = local.control_plane_task.runtimePlatform.cpuArchitecture
    operating_system_family = local.control_plane_task.runtimePlatform.operatingSystemFamily
  }

  volume {
    name = "tmp"
  }

  tags = { for t in local.control_plane_task.tags : t.key => t.value }
}

resource "aws_ecs_service" "control_plane" {
  name                               = local.control_plane_service.serviceName
  cluster                            = aws_ecs_cluster.main.id
  task_definition                    = aws_ecs_task_definition.control_plane.arn
  desired_count                      = local.control_plane_service.desiredCount
  platform_version                   = local.control_plane_service.platformVersion
  deployment_minimum_healthy_percent = local.control_plane_service.deploymentConfiguration.minimumHealthyPercent
  deployment_maximum_percent         = local.control_plane_service.deploymentConfiguration.maximumPercent
  health_check_grace_period_seconds  = local.control_plane_service.healthCheckGracePeriodSeconds
  enable_execute_command             = local.control_plane_service.enableExecuteCommand
  enable_ecs_managed_tags            = local.control_plane_service.enableECSManagedTags
  propagate_tags                     = local.control_plane_service.propagateTags

  dynamic "capacity_provider_strategy" {
    for_each = local.control_plane_service.capacityProviderStrategy
    content {
      capacity_provider = capacity_provider_strategy.value.capacityProvider
      weight            = capacity_provider_strategy.value.weight
      base              = capacity_provider_strategy.value.base
    }
  }

  deployment_circuit_breaker {
    enable   = local.control_plane_service.deploymentConfiguration.deploymentCircuitBreaker.enable
    rollback = local.control_plane_service.deploymentConfiguration.deploymentCircuitBreaker.rollback
  }

  network_configuration {
    subnets          = local.private_subnet_ids
    security_groups  = [aws_security_group.control_plane.id]
    assign_public_ip = false
  }

  load_balancer {
    target_group_arn = aws_lb_target_group.control_plane.arn
    container_name   = local.control_plane_service.loadBalancers[0].containerName
    container_port   = local.control_plane_service.loadBalancers[0].containerPort
  }

  tags = { for t in local.control_plane_service.tags : t.key => t.value }

  # The schema is migrated (and the control plane's login created) before
  # a task of this revision starts: it refuses an older schema.
  depends_on = [aws_lb_listener.https, aws_ecs_cluster_capacity_providers.main, terraform_data.migrate, aws_secretsmanager_secret_version.worker_database, aws_secretsmanager_secret_version.worker_settings]
}
