variable "region" {
  description = "AWS region for everything."
  type        = string
  default     = "us-east-1"
}

variable "environment" {
  description = "Environment name, used in tags (prod, staging, …)."
  type        = string
  default     = "prod"
}

variable "name" {
  description = "Prefix of resource names."
  type        = string
  default     = "polybot"
}

variable "extra_tags" {
  description = "Tags added to every resource besides project, environment and managed_by."
  type        = map(string)
  default     = {}
}

# --- network: an existing VPC ---

variable "vpc_id" {
  description = "The existing VPC to run in."
  type        = string
}

variable "private_subnet_ids" {
  description = "Private subnets (with a route to a NAT gateway) for the control plane, the workers and the database; two AZs at least."
  type        = list(string)

  validation {
    condition     = length(var.private_subnet_ids) >= 2
    error_message = "Give at least two private subnets, in different availability zones."
  }
}

variable "public_subnet_ids" {
  description = "Public subnets for the internet-facing load balancer; two AZs at least. Unused when alb_internal is true."
  type        = list(string)
  default     = []
}

variable "alb_internal" {
  description = "Put the control plane's load balancer in the private subnets (reachable over VPN or peering only)."
  type        = bool
  default     = false
}

variable "alb_ingress_cidrs" {
  description = "CIDR blocks allowed to reach the control plane's HTTPS listener."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "certificate_arn" {
  description = "ACM certificate for the control plane's HTTPS listener."
  type        = string
}

variable "alb_deletion_protection" {
  description = "Protect the load balancer from deletion."
  type        = bool
  default     = true
}

# --- image ---

variable "image_tag" {
  description = "Tag (or `@sha256:…` digest) of the polybot image in the ECR repository, for the control plane and the workers it starts."
  type        = string
}

# --- cluster and logs ---

variable "container_insights" {
  description = "ECS Container Insights for the cluster (\"enabled\" or \"disabled\"; it is billed per metric)."
  type        = string
  default     = "enabled"
}

variable "log_retention_days" {
  description = "Retention of the control plane's and the workers' CloudWatch logs."
  type        = number
  default     = 30
}

# --- database ---

variable "external_database_secret_arn" {
  description = "ARN of an existing Secrets Manager secret whose JSON holds the control plane's DATABASE_URL (its own login, which the migrate task creates). When set, no RDS instance is created, and external_database_admin_secret_arn is required."
  type        = string
  default     = null
}

variable "external_database_admin_secret_arn" {
  description = "With external_database_secret_arn: a secret whose JSON holds the administrator's DATABASE_URL (a user that can create roles), read only by the migrate task."
  type        = string
  default     = null
}

# --- operator settings for workers ---

variable "newsapi_key" {
  description = "The operator's NewsAPI key, given to every worker (tenants without a key of their own use it) through the polybot/workers/settings secret. None: the news strategy needs tenants' own keys."
  type        = string
  default     = null
  sensitive   = true
}

variable "db_instance_class" {
  description = "RDS instance class (see `polybot cost` for the connection budget)."
  type        = string
  default     = "db.t4g.micro"
}

variable "db_engine_version" {
  description = "PostgreSQL major version."
  type        = string
  default     = "16"
}

variable "db_allocated_storage" {
  description = "Initial storage in GB."
  type        = number
  default     = 20
}

variable "db_max_allocated_storage" {
  description = "Storage autoscaling ceiling in GB."
  type        = number
  default     = 200
}

variable "db_multi_az" {
  description = "A standby in a second availability zone."
  type        = bool
  default     = true
}

variable "db_backup_retention_days" {
  description = "Automated backup retention (point-in-time restore window)."
  type        = number
  default     = 14
}

variable "db_deletion_protection" {
  description = "Protect the database from deletion."
  type        = bool
  default     = true
}
