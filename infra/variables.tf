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

# --- network: a VPC of its own (network.tf), or an existing one ---

variable "vpc_id" {
  description = "An existing VPC to run in; null (the default) creates one (network.tf)."
  type        = string
  default     = null
}

variable "private_subnet_ids" {
  description = "With vpc_id: private subnets (with a route to a NAT gateway) for the control plane, the workers and the database; two AZs at least."
  type        = list(string)
  default     = []

  validation {
    condition     = var.vpc_id == null ? length(var.private_subnet_ids) == 0 : length(var.private_subnet_ids) >= 2
    error_message = "With vpc_id, give at least two private subnets in different availability zones; without it, give none (they are created)."
  }
}

variable "public_subnet_ids" {
  description = "With vpc_id: public subnets for the internet-facing load balancer; two AZs at least. Unused when alb_internal is true."
  type        = list(string)
  default     = []
}

variable "vpc_cidr" {
  description = "Address range of the created VPC (a /16 leaves room for 16 subnets of 4,091 tasks)."
  type        = string
  default     = "10.40.0.0/16"
}

variable "availability_zone_count" {
  description = "Availability zones the created VPC spans (a public and a private subnet in each)."
  type        = number
  default     = 2

  validation {
    condition     = var.availability_zone_count >= 2 && var.availability_zone_count <= 6
    error_message = "Span 2 to 6 availability zones (RDS and the load balancer need two)."
  }
}

variable "nat_gateway_per_zone" {
  description = "A NAT gateway in every zone (a zone's outage does not cut the others' workers off the venues); false shares one, for about $32 a month less per zone."
  type        = bool
  default     = true
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

variable "external_database_host" {
  description = "With external_database_secret_arn: the database's host name, which PgBouncer (pgbouncer.tf) connects to on port 5432."
  type        = string
  default     = null
}

# --- the workers' connection pooler (pgbouncer.tf) ---

variable "pgbouncer_image" {
  description = "PgBouncer image configured by environment variables in the way of edoburu/docker-pgbouncer (DB_HOST, POOL_MODE, MAX_DB_CONNECTIONS, …), e.g. edoburu/pgbouncer:<version>, pinned by `@sha256:` digest, from a public registry the tasks reach through NAT (Docker Hub, ECR Public). PgBouncer 1.18 or later."
  type        = string
}

variable "pgbouncer_tasks" {
  description = "PgBouncer tasks (spread across availability zones); each opens at most pgbouncer_server_connections ÷ pgbouncer_tasks connections to PostgreSQL."
  type        = number
  default     = 2

  validation {
    condition     = var.pgbouncer_tasks >= 1 && var.pgbouncer_tasks <= 10
    error_message = "Run 1 to 10 PgBouncer tasks."
  }
}

variable "pgbouncer_server_connections" {
  description = "The workers' connection budget: server connections all PgBouncer tasks together open to PostgreSQL (each task's max_db_connections and default_pool_size are this ÷ pgbouncer_tasks). 100 carries 1,000 workers (docs/scale.md)."
  type        = number
  default     = 100

  validation {
    condition     = var.pgbouncer_server_connections >= 2 && var.pgbouncer_server_connections <= 5000
    error_message = "Give 2 to 5,000 server connections."
  }
}

variable "pgbouncer_max_client_connections" {
  description = "Worker connections each PgBouncer task accepts (max_client_conn); a worker holds up to two."
  type        = number
  default     = 5000
}

variable "workers_direct_database_access" {
  description = "Keep the workers' direct route to PostgreSQL (5432), for tenants onboarded before migration 0020 who still log in with a role of their own (docs/operations.md). False: workers reach only PgBouncer (6432)."
  type        = bool
  default     = false
}

# --- shared market data (market_data.tf) ---

variable "shared_market_data" {
  description = "Run the market-data service (one ECS task) and give the workers its Redis (POLYBOT_MARKET_DATA_URL, rediss:// to the ElastiCache below): one set of public venue connections for the whole fleet instead of one per tenant. False: each worker reads the venues itself; the Redis is created either way."
  type        = bool
  default     = false
}

variable "market_data_shards" {
  description = "Venue groups of the market-data service, one ECS service each (polybot market-data --venues), e.g. [\"polymarket,kalshi\", \"binance_us,coinbase,kraken\"]: spreads the venue connections over several tasks. Empty: one task serving every venue. Each venue in at most one group; a venue in none is read by no service (workers then see it as not published)."
  type        = list(string)
  default     = []

  validation {
    condition = alltrue([
      for venues in var.market_data_shards : alltrue([
        for venue in split(",", replace(venues, " ", "")) : contains(["polymarket", "kalshi", "binance_us", "coinbase", "kraken"], venue)
      ])
    ])
    error_message = "Each group is a comma-separated list of venues among polymarket, kalshi, binance_us, coinbase, kraken."
  }

  validation {
    condition = length(flatten([for venues in var.market_data_shards : split(",", replace(venues, " ", ""))])) == length(distinct(flatten([
      for venues in var.market_data_shards : split(",", replace(venues, " ", ""))
    ])))
    error_message = "A venue is in two groups: each venue must be served by exactly one market-data service (two would publish its topics under two sequence counters)."
  }
}

variable "redis_node_type" {
  description = "ElastiCache node type of the market-data Redis."
  type        = string
  default     = "cache.t4g.small"
}

variable "redis_engine_version" {
  description = "ElastiCache Redis engine version (7.x: RBAC with read/write key permissions)."
  type        = string
  default     = "7.1"
}

variable "redis_replicas" {
  description = "Read replicas of the market-data Redis in other availability zones (automatic failover needs at least one)."
  type        = number
  default     = 1

  validation {
    condition     = var.redis_replicas >= 1 && var.redis_replicas <= 5
    error_message = "Give 1 to 5 replicas: automatic failover needs one."
  }
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

# --- task state-change events (events.tf) ---

variable "events_max_receive_count" {
  description = "Receives of an unreadable task-event message before it moves to the dead-letter queue."
  type        = number
  default     = 5
}
