# RDS PostgreSQL, unless var.external_database_secret_arn points at a secret
# for an existing database. Two logins, each in its own secret outside
# `polybot/tenants/*` (which no worker can read):
#
#   polybot/control-plane/database-admin  the administrator (RDS's master
#       user): only the one-shot migrate task reads it (migrate.tf)
#   polybot/control-plane/database        the control plane's own login,
#       which `polybot migrate` creates: member of polybot_control, no
#       superuser, no CREATEROLE, no BYPASSRLS (docs/security.md)

locals {
  create_database           = var.external_database_secret_arn == null
  database_secret_arn       = local.create_database ? aws_secretsmanager_secret.database[0].arn : var.external_database_secret_arn
  admin_database_secret_arn = local.create_database ? aws_secretsmanager_secret.database_admin[0].arn : var.external_database_admin_secret_arn

  # The control plane's login name, as `polybot migrate` creates it.
  control_plane_database_user = "polybot_control_plane"
}

resource "aws_db_subnet_group" "main" {
  count = local.create_database ? 1 : 0

  name       = var.name
  subnet_ids = local.private_subnet_ids
}

resource "aws_db_parameter_group" "main" {
  count = local.create_database ? 1 : 0

  name   = "${var.name}-postgres${var.db_engine_version}"
  family = "postgres${var.db_engine_version}"

  # Every connection (control plane and per-tenant worker roles) uses TLS.
  parameter {
    name  = "rds.force_ssl"
    value = "1"
  }

  # Slow statements are logged with their duration; statement text logging
  # (log_statement) stays off because CREATE ROLE … PASSWORD would be logged.
  parameter {
    name  = "log_min_duration_statement"
    value = "1000"
  }
}

# Letters and digits only, so it needs no escaping inside DATABASE_URL.
resource "random_password" "database" {
  count = local.create_database ? 1 : 0

  length  = 40
  special = false
}

resource "random_password" "control_plane_database" {
  count = local.create_database ? 1 : 0

  length  = 40
  special = false
}

resource "aws_db_instance" "main" {
  #checkov:skip=CKV_AWS_161: IAM database authentication does not fit the per-tenant login roles, whose passwords live only in each tenant's secret (docs/security.md)
  #checkov:skip=CKV_AWS_354: Performance Insights data is encrypted with the AWS-managed RDS key; it holds query shapes, not tenant secrets
  #checkov:skip=CKV2_AWS_30: statement logging (log_statement) would write CREATE ROLE … PASSWORD to the logs; slow statements are logged by duration instead
  count = local.create_database ? 1 : 0

  identifier                      = var.name
  engine                          = "postgres"
  engine_version                  = var.db_engine_version
  instance_class                  = var.db_instance_class
  allocated_storage               = var.db_allocated_storage
  max_allocated_storage           = var.db_max_allocated_storage
  storage_type                    = "gp3"
  storage_encrypted               = true
  db_name                         = "polybot"
  username                        = "polybot_admin"
  password                        = random_password.database[0].result
  port                            = 5432
  multi_az                        = var.db_multi_az
  db_subnet_group_name            = aws_db_subnet_group.main[0].name
  parameter_group_name            = aws_db_parameter_group.main[0].name
  vpc_security_group_ids          = [aws_security_group.database.id]
  publicly_accessible             = false
  backup_retention_period         = var.db_backup_retention_days
  deletion_protection             = var.db_deletion_protection
  skip_final_snapshot             = false
  final_snapshot_identifier       = "${var.name}-final"
  copy_tags_to_snapshot           = true
  auto_minor_version_upgrade      = true
  enabled_cloudwatch_logs_exports = ["postgresql", "upgrade"]
  performance_insights_enabled    = true
  monitoring_interval             = 60
  monitoring_role_arn             = aws_iam_role.rds_monitoring[0].arn
}

resource "aws_iam_role" "rds_monitoring" {
  count = local.create_database ? 1 : 0

  name = "${var.name}-rds-monitoring"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Action    = "sts:AssumeRole"
      Principal = { Service = "monitoring.rds.amazonaws.com" }
    }]
  })
}

resource "aws_iam_role_policy_attachment" "rds_monitoring" {
  count = local.create_database ? 1 : 0

  role       = aws_iam_role.rds_monitoring[0].name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole"
}

# The control plane's DATABASE_URL: its own login, which the migrate task
# creates from this URL; tenants' URLs go into their own secrets at
# onboarding.
resource "aws_secretsmanager_secret" "database" {
  #checkov:skip=CKV_AWS_149: encrypted with the AWS-managed Secrets Manager key; only the control plane's and the migrate task's execution roles can read it (iam.tf)
  #checkov:skip=CKV2_AWS_57: rotating the password means a new secret version, the migrate task (which sets it) and a new deployment; the runbook does it (docs/operations.md) instead of a rotation Lambda
  count = local.create_database ? 1 : 0

  name                    = "polybot/control-plane/database"
  description             = "DATABASE_URL of the PolyBot control plane (its own login, no superuser)"
  recovery_window_in_days = 30
}

resource "aws_secretsmanager_secret_version" "database" {
  count = local.create_database ? 1 : 0

  secret_id = aws_secretsmanager_secret.database[0].id
  secret_string = jsonencode({
    DATABASE_URL = "postgres://${local.control_plane_database_user}:${random_password.control_plane_database[0].result}@${aws_db_instance.main[0].address}:5432/polybot?sslmode=require"
  })
}

# The administrator's DATABASE_URL (RDS's master user): migrations only.
resource "aws_secretsmanager_secret" "database_admin" {
  #checkov:skip=CKV_AWS_149: encrypted with the AWS-managed Secrets Manager key; only the migrate task's execution role can read it (iam.tf)
  #checkov:skip=CKV2_AWS_57: rotating the master password means updating this URL; the runbook does it (docs/operations.md) instead of a rotation Lambda
  count = local.create_database ? 1 : 0

  name                    = "polybot/control-plane/database-admin"
  description             = "DATABASE_URL of the PolyBot database's administrator, for the migrate task"
  recovery_window_in_days = 30
}

resource "aws_secretsmanager_secret_version" "database_admin" {
  count = local.create_database ? 1 : 0

  secret_id = aws_secretsmanager_secret.database_admin[0].id
  secret_string = jsonencode({
    DATABASE_URL = "postgres://polybot_admin:${random_password.database[0].result}@${aws_db_instance.main[0].address}:5432/polybot?sslmode=require"
  })
}
