# Security groups. Workers accept nothing and reach only HTTPS (venues, AWS
# APIs, the image registry) and the database; the database accepts only the
# control plane and the workers.

resource "aws_security_group" "alb" {
  name        = "${var.name}-alb"
  description = "PolyBot control-plane load balancer"
  vpc_id      = var.vpc_id
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
  vpc_id      = var.vpc_id
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
  vpc_id      = var.vpc_id
}

resource "aws_vpc_security_group_egress_rule" "workers_https" {
  security_group_id = aws_security_group.workers.id
  description       = "HTTPS and WSS to the venues, ECR and CloudWatch"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_vpc_security_group_egress_rule" "workers_database" {
  security_group_id            = aws_security_group.workers.id
  description                  = "PostgreSQL"
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
  referenced_security_group_id = aws_security_group.database.id
}

# Created even with an external database: its firewall should then admit this
# group (attach it to the external instance, or allow it by ID).
resource "aws_security_group" "database" {
  name        = "${var.name}-database"
  description = "PolyBot PostgreSQL: ingress from the control plane and the workers only"
  vpc_id      = var.vpc_id
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
  security_group_id            = aws_security_group.database.id
  description                  = "PostgreSQL from the workers"
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
  referenced_security_group_id = aws_security_group.workers.id
}
