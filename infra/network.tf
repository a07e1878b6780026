# The network: a VPC of its own (unless `vpc_id` names an existing one),
# with private subnets for the control plane, the workers and the database in
# each availability zone, public subnets for the load balancer and the NAT
# gateways, and VPC flow logs. Workers reach the internet (the venues' public
# APIs) through NAT; AWS APIs too, except S3 (ECR's image layers), which has a
# free gateway endpoint. infra/README.md explains the choice against interface
# endpoints.

locals {
  create_network = var.vpc_id == null

  vpc_id             = local.create_network ? aws_vpc.main[0].id : var.vpc_id
  private_subnet_ids = local.create_network ? aws_subnet.private[*].id : var.private_subnet_ids
  public_subnet_ids  = local.create_network ? aws_subnet.public[*].id : var.public_subnet_ids

  network_zones = local.create_network ? slice(data.aws_availability_zones.available[0].names, 0, var.availability_zone_count) : []
  nat_count     = local.create_network ? (var.nat_gateway_per_zone ? var.availability_zone_count : 1) : 0
}

data "aws_availability_zones" "available" {
  count = local.create_network ? 1 : 0
  state = "available"
}

resource "aws_vpc" "main" {
  count = local.create_network ? 1 : 0

  cidr_block           = var.vpc_cidr
  enable_dns_support   = true
  enable_dns_hostnames = true

  tags = { Name = var.name }
}

# The default security group of the VPC admits nothing: every task and the
# database use the groups below.
resource "aws_default_security_group" "main" {
  count  = local.create_network ? 1 : 0
  vpc_id = aws_vpc.main[0].id
}

resource "aws_internet_gateway" "main" {
  count  = local.create_network ? 1 : 0
  vpc_id = aws_vpc.main[0].id

  tags = { Name = var.name }
}

# Public subnets hold only the load balancer and the NAT gateways; nothing in
# them gets a public address unless it asks for one.
resource "aws_subnet" "public" {
  count = length(local.network_zones)

  vpc_id                  = aws_vpc.main[0].id
  availability_zone       = local.network_zones[count.index]
  cidr_block              = cidrsubnet(var.vpc_cidr, 4, count.index)
  map_public_ip_on_launch = false

  tags = { Name = "${var.name}-public-${local.network_zones[count.index]}" }
}

# Private subnets: the control plane, the workers (one ENI per Fargate task,
# so each holds 4,091 tasks) and the database.
resource "aws_subnet" "private" {
  count = length(local.network_zones)

  vpc_id            = aws_vpc.main[0].id
  availability_zone = local.network_zones[count.index]
  cidr_block        = cidrsubnet(var.vpc_cidr, 4, count.index + 8)

  tags = { Name = "${var.name}-private-${local.network_zones[count.index]}" }
}

resource "aws_route_table" "public" {
  count  = local.create_network ? 1 : 0
  vpc_id = aws_vpc.main[0].id

  route {
    cidr_block = "0.0.0.0/0"
    gateway_id = aws_internet_gateway.main[0].id
  }

  tags = { Name = "${var.name}-public" }
}

resource "aws_route_table_association" "public" {
  count          = length(aws_subnet.public)
  subnet_id      = aws_subnet.public[count.index].id
  route_table_id = aws_route_table.public[0].id
}

resource "aws_eip" "nat" {
  count  = local.nat_count
  domain = "vpc"

  tags = { Name = "${var.name}-nat-${count.index}" }
}

resource "aws_nat_gateway" "main" {
  count         = local.nat_count
  allocation_id = aws_eip.nat[count.index].id
  subnet_id     = aws_subnet.public[count.index].id

  tags       = { Name = "${var.name}-nat-${count.index}" }
  depends_on = [aws_internet_gateway.main]
}

# One route table per zone, to that zone's NAT gateway (or the only one).
resource "aws_route_table" "private" {
  count  = length(aws_subnet.private)
  vpc_id = aws_vpc.main[0].id

  route {
    cidr_block     = "0.0.0.0/0"
    nat_gateway_id = aws_nat_gateway.main[min(count.index, local.nat_count - 1)].id
  }

  tags = { Name = "${var.name}-private-${local.network_zones[count.index]}" }
}

resource "aws_route_table_association" "private" {
  count          = length(aws_subnet.private)
  subnet_id      = aws_subnet.private[count.index].id
  route_table_id = aws_route_table.private[count.index].id
}

# ECR keeps image layers in S3: a gateway endpoint (free) keeps every image
# pull's bulk off the NAT gateways' per-GB charge.
resource "aws_vpc_endpoint" "s3" {
  count             = local.create_network ? 1 : 0
  vpc_id            = aws_vpc.main[0].id
  service_name      = "com.amazonaws.${var.region}.s3"
  vpc_endpoint_type = "Gateway"
  route_table_ids   = aws_route_table.private[*].id

  tags = { Name = "${var.name}-s3" }
}

# --- flow logs: rejected and accepted connections, for incident review ---

resource "aws_cloudwatch_log_group" "flow_logs" {
  #checkov:skip=CKV_AWS_158: encrypted with CloudWatch's service-managed keys; flow logs hold addresses and ports, no payloads
  #checkov:skip=CKV_AWS_338: kept for var.log_retention_days (30 by default) to bound cost; raise it where compliance asks
  count             = local.create_network ? 1 : 0
  name              = "/${var.name}/vpc-flow-logs"
  retention_in_days = var.log_retention_days
}

data "aws_iam_policy_document" "flow_logs_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["vpc-flow-logs.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "flow_logs" {
  count              = local.create_network ? 1 : 0
  name               = "${var.name}-vpc-flow-logs"
  assume_role_policy = data.aws_iam_policy_document.flow_logs_assume.json
}

data "aws_iam_policy_document" "flow_logs" {
  count = local.create_network ? 1 : 0

  statement {
    sid = "WriteFlowLogsToTheirGroup"
    actions = [
      "logs:CreateLogStream",
      "logs:PutLogEvents",
      "logs:DescribeLogStreams",
    ]
    resources = ["${aws_cloudwatch_log_group.flow_logs[0].arn}:*"]
  }
}

resource "aws_iam_role_policy" "flow_logs" {
  count  = local.create_network ? 1 : 0
  name   = "vpc-flow-logs"
  role   = aws_iam_role.flow_logs[0].id
  policy = data.aws_iam_policy_document.flow_logs[0].json
}

resource "aws_flow_log" "main" {
  count                = local.create_network ? 1 : 0
  vpc_id               = aws_vpc.main[0].id
  traffic_type         = "ALL"
  log_destination_type = "cloud-watch-logs"
  log_destination      = aws_cloudwatch_log_group.flow_logs[0].arn
  iam_role_arn         = aws_iam_role.flow_logs[0].arn
}

# --- security groups ---
#
# Security groups. Workers accept nothing and reach only HTTPS (venues, AWS
# APIs, the image registry), PgBouncer and the market-data Redis; the
# database accepts only the control plane and PgBouncer (and the workers
# themselves with var.workers_direct_database_access).

resource "aws_security_group" "alb" {
  name        = "${var.name}-alb"
  description = "PolyBot control-plane load balancer"
  vpc_id      = local.vpc_id
}

resource "aws_vpc_security_group_ingress_rule" "alb_https" {
  for_each = toset(var.alb_ingress_cidrs)

  security_group_id = aws_security_group.alb.id
  description       = "HTTPS from operators and API clients"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_egress_rule" "alb_to_control_plane" {
  security_group_id            = aws_security_group.alb.id
  description                  = "To the control-plane tasks"
  ip_protocol                  = "tcp"
  from_port                    = 8080
  to_port                      = 8080
  referenced_security_group_id = aws_security_group.control_plane.id
}

resource "aws_security_group" "control_plane" {
  name        = "${var.name}-control-plane"
  description = "PolyBot control-plane tasks"
  vpc_id      = local.vpc_id
}

resource "aws_vpc_security_group_ingress_rule" "control_plane_from_alb" {
  security_group_id            = aws_security_group.control_plane.id
  description                  = "HTTP from the load balancer"
  ip_protocol                  = "tcp"
  from_port                    = 8080
  to_port                      = 8080
  referenced_security_group_id = aws_security_group.alb.id
}

resource "aws_vpc_security_group_egress_rule" "control_plane_https" {
  security_group_id = aws_security_group.control_plane.id
  description       = "HTTPS to AWS APIs (ECS, Secrets Manager, ECR, CloudWatch)"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_vpc_security_group_egress_rule" "control_plane_database" {
  security_group_id            = aws_security_group.control_plane.id
  description                  = "PostgreSQL"
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
  referenced_security_group_id = aws_security_group.database.id
}

resource "aws_security_group" "workers" {
  #checkov:skip=CKV2_AWS_5: attached at run time: the control plane passes it to RunTask for every worker task (POLYBOT_ECS_SECURITY_GROUPS)
  name        = "${var.name}-workers"
  description = "PolyBot worker tasks: no ingress; egress HTTPS and PostgreSQL only"
  vpc_id      = local.vpc_id
}

resource "aws_vpc_security_group_egress_rule" "workers_https" {
  security_group_id = aws_security_group.workers.id
  description       = "HTTPS and WSS to the venues, ECR and CloudWatch"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_vpc_security_group_egress_rule" "workers_pgbouncer" {
  security_group_id            = aws_security_group.workers.id
  description                  = "PostgreSQL through PgBouncer"
  ip_protocol                  = "tcp"
  from_port                    = 6432
  to_port                      = 6432
  referenced_security_group_id = aws_security_group.pgbouncer.id
}

# Only for tenants still on a login of their own (var.workers_direct_database_access).
resource "aws_vpc_security_group_egress_rule" "workers_database" {
  count = var.workers_direct_database_access ? 1 : 0

  security_group_id            = aws_security_group.workers.id
  description                  = "PostgreSQL, direct (tenants onboarded before migration 0020)"
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
  referenced_security_group_id = aws_security_group.database.id
}

resource "aws_vpc_security_group_egress_rule" "workers_redis" {
  security_group_id            = aws_security_group.workers.id
  description                  = "The market-data Redis (TLS)"
  ip_protocol                  = "tcp"
  from_port                    = 6379
  to_port                      = 6379
  referenced_security_group_id = aws_security_group.redis.id
}

# Created even with an external database: its firewall should then admit this
# group (attach it to the external instance, or allow it by ID).
resource "aws_security_group" "database" {
  name        = "${var.name}-database"
  description = "PolyBot PostgreSQL: ingress from the control plane and the workers only"
  vpc_id      = local.vpc_id
}

resource "aws_vpc_security_group_ingress_rule" "database_from_control_plane" {
  security_group_id            = aws_security_group.database.id
  description                  = "PostgreSQL from the control plane"
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
  referenced_security_group_id = aws_security_group.control_plane.id
}

resource "aws_vpc_security_group_ingress_rule" "database_from_workers" {
  count = var.workers_direct_database_access ? 1 : 0

  security_group_id            = aws_security_group.database.id
  description                  = "PostgreSQL from the workers (tenants onboarded before migration 0020)"
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
  referenced_security_group_id = aws_security_group.workers.id
}

resource "aws_vpc_security_group_ingress_rule" "database_from_pgbouncer" {
  security_group_id            = aws_security_group.database.id
  description                  = "PostgreSQL from PgBouncer"
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
  referenced_security_group_id = aws_security_group.pgbouncer.id
}

# PgBouncer accepts the workers only, and reaches only the database and
# (for its image, its logs and its secret) HTTPS.
resource "aws_security_group" "pgbouncer" {
  name        = "${var.name}-pgbouncer"
  description = "PolyBot PgBouncer: ingress 6432 from the workers; egress PostgreSQL and HTTPS"
  vpc_id      = local.vpc_id
}

resource "aws_vpc_security_group_ingress_rule" "pgbouncer_from_workers" {
  security_group_id            = aws_security_group.pgbouncer.id
  description                  = "PgBouncer from the workers"
  ip_protocol                  = "tcp"
  from_port                    = 6432
  to_port                      = 6432
  referenced_security_group_id = aws_security_group.workers.id
}

resource "aws_vpc_security_group_egress_rule" "pgbouncer_database" {
  security_group_id            = aws_security_group.pgbouncer.id
  description                  = "PostgreSQL"
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
  referenced_security_group_id = aws_security_group.database.id
}

resource "aws_vpc_security_group_egress_rule" "pgbouncer_https" {
  security_group_id = aws_security_group.pgbouncer.id
  description       = "HTTPS to the image registry, Secrets Manager and CloudWatch"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

# The market-data service reaches the venues (HTTPS, WSS) and its Redis.
resource "aws_security_group" "market_data" {
  name        = "${var.name}-market-data"
  description = "PolyBot market-data service: no ingress; egress HTTPS and Redis"
  vpc_id      = local.vpc_id
}

resource "aws_vpc_security_group_egress_rule" "market_data_https" {
  security_group_id = aws_security_group.market_data.id
  description       = "HTTPS and WSS to the venues, ECR, Secrets Manager and CloudWatch"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_vpc_security_group_egress_rule" "market_data_redis" {
  security_group_id            = aws_security_group.market_data.id
  description                  = "The market-data Redis (TLS)"
  ip_protocol                  = "tcp"
  from_port                    = 6379
  to_port                      = 6379
  referenced_security_group_id = aws_security_group.redis.id
}

# The Redis accepts the market-data service and the workers only.
resource "aws_security_group" "redis" {
  name        = "${var.name}-redis"
  description = "PolyBot market-data Redis: ingress from the market-data service and the workers only"
  vpc_id      = local.vpc_id
}

resource "aws_vpc_security_group_ingress_rule" "redis_from_market_data" {
  security_group_id            = aws_security_group.redis.id
  description                  = "Redis from the market-data service"
  ip_protocol                  = "tcp"
  from_port                    = 6379
  to_port                      = 6379
  referenced_security_group_id = aws_security_group.market_data.id
}

resource "aws_vpc_security_group_ingress_rule" "redis_from_workers" {
  security_group_id            = aws_security_group.redis.id
  description                  = "Redis from the workers"
  ip_protocol                  = "tcp"
  from_port                    = 6379
  to_port                      = 6379
  referenced_security_group_id = aws_security_group.workers.id
}
