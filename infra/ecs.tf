resource "aws_ecs_cluster" "main" {
  name = var.name

  setting {
    name  = "containerInsights"
    value = var.container_insights
  }
}

# Workers run On-Demand by default (ARM64 tasks cannot use Fargate Spot); an
# x86-64 tenant can be placed on FARGATE_SPOT by the launcher.
resource "aws_ecs_cluster_capacity_providers" "main" {
  cluster_name       = aws_ecs_cluster.main.name
  capacity_providers = ["FARGATE", "FARGATE_SPOT"]

  default_capacity_provider_strategy {
    capacity_provider = "FARGATE"
    weight            = 1
    base              = 0
  }
}

resource "aws_ecr_repository" "polybot" {
  name                 = var.name
  image_tag_mutability = "IMMUTABLE"

  image_scanning_configuration {
    scan_on_push = true
  }

  encryption_configuration {
    encryption_type = "KMS"
  }
}

resource "aws_ecr_lifecycle_policy" "polybot" {
  repository = aws_ecr_repository.polybot.name
  policy = jsonencode({
    rules = [{
      rulePriority = 1
      description  = "Keep the last 50 images (rollbacks and tenants mid-rollout)"
      selection = {
        tagStatus   = "any"
        countType   = "imageCountMoreThan"
        countNumber = 50
      }
      action = { type = "expire" }
    }]
  })
}

resource "aws_cloudwatch_log_group" "control_plane" {
  #checkov:skip=CKV_AWS_158: encrypted with CloudWatch's service-managed keys; no secrets are logged (secrecy types), and a customer-managed key would add a key policy for little gain
  #checkov:skip=CKV_AWS_338: operational logs are kept for var.log_retention_days (30 by default) to bound cost and personal data (GDPR); the audit trail lives in the database's audit_log
  name              = "/${var.name}/control-plane"
  retention_in_days = var.log_retention_days
}

resource "aws_cloudwatch_log_group" "workers" {
  #checkov:skip=CKV_AWS_158: encrypted with CloudWatch's service-managed keys; no secrets are logged (secrecy types), and a customer-managed key would add a key policy for little gain
  #checkov:skip=CKV_AWS_338: operational logs are kept for var.log_retention_days (30 by default) to bound cost and personal data (GDPR); the audit trail lives in the database's audit_log
  name              = "/${var.name}/workers"
  retention_in_days = var.log_retention_days
}
