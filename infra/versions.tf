terraform {
  # templatestring() (control_plane.tf) needs 1.9.
  required_version = ">= 1.9.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.70"
    }
    random = {
      source  = "hashicorp/random"
      version = "~> 3.6"
    }
  }

  # Keep the state remote and encrypted: it holds the database master password.
  # backend "s3" {
  #   bucket       = "…"
  #   key          = "polybot/terraform.tfstate"
  #   region       = "us-east-1"
  #   encrypt      = true
  #   use_lockfile = true
  # }
}

provider "aws" {
  region = var.region

  # Cost allocation: every resource Terraform creates carries these tags.
  # Activate `project`, `environment` and `tenant_id` as cost allocation tags in
  # the Billing console; the control plane tags each tenant's task definition,
  # tasks and secret with `tenant_id` itself (DESIGN.md, "Orchestration").
  default_tags {
    tags = merge(var.extra_tags, {
      project     = "polybot-cloud"
      environment = var.environment
      managed_by  = "terraform"
    })
  }
}

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  region     = var.region

  # Tenant secrets are created by the control plane, never by Terraform; this
  # prefix is the only Secrets Manager scope of the control plane's task role
  # and of the worker execution role.
  tenant_secret_arn_pattern = "arn:${local.partition}:secretsmanager:${local.region}:${local.account_id}:secret:polybot/tenants/*"

  # Worker task-definition families are `polybot-t-<tenant id>`
  # (deploy/ecs/worker.task-definition.template.json).
  worker_task_definition_arn_pattern = "arn:${local.partition}:ecs:${local.region}:${local.account_id}:task-definition/polybot-t-*:*"
  cluster_task_arn_pattern           = "arn:${local.partition}:ecs:${local.region}:${local.account_id}:task/${aws_ecs_cluster.main.name}/*"
}
