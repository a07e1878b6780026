output "cluster_arn" {
  description = "The ECS cluster (POLYBOT_ECS_CLUSTER)."
  value       = aws_ecs_cluster.main.arn
}

output "ecr_repository_url" {
  description = "Push the polybot image here (deploy/Dockerfile)."
  value       = aws_ecr_repository.polybot.repository_url
}

output "control_plane_url" {
  description = "The control plane's HTTPS endpoint (point a DNS name with the certificate's name at it)."
  value       = "https://${aws_lb.control_plane.dns_name}"
}

output "worker_subnet_ids" {
  description = "Subnets for worker tasks (POLYBOT_ECS_SUBNETS)."
  value       = local.private_subnet_ids
}

output "worker_security_group_id" {
  description = "Security group for worker tasks (POLYBOT_ECS_SECURITY_GROUPS)."
  value       = aws_security_group.workers.id
}

output "worker_execution_role_arn" {
  description = "Execution role of every worker task definition."
  value       = aws_iam_role.worker_execution.arn
}

output "worker_task_role_arn" {
  description = "Task role of every worker task definition (no permissions)."
  value       = aws_iam_role.worker_task.arn
}

output "worker_log_group" {
  description = "CloudWatch log group of the workers."
  value       = aws_cloudwatch_log_group.workers.name
}

output "database_secret_arn" {
  description = "Secret holding the control plane's DATABASE_URL (its own login)."
  value       = local.database_secret_arn
}

output "admin_database_secret_arn" {
  description = "Secret holding the administrator's DATABASE_URL (the migrate task's)."
  value       = local.admin_database_secret_arn
}

output "control_plane_tokens_secret_arn" {
  description = "Secret holding POLYBOT_OPERATOR_TOKEN, POLYBOT_METRICS_TOKEN and POLYBOT_MASTER_KEY."
  value       = aws_secretsmanager_secret.control_plane_tokens.arn
}

output "migrate_task_definition_arn" {
  description = "The one-shot migrate task (run-migrate.sh runs it; run it by hand the same way)."
  value       = aws_ecs_task_definition.migrate.arn
}

output "database_security_group_id" {
  description = "Admit this group on an external database's firewall."
  value       = aws_security_group.database.id
}

output "events_queue_url" {
  description = "The queue of the cluster's ECS task state changes (POLYBOT_ECS_EVENTS_QUEUE_URL of the control plane)."
  value       = aws_sqs_queue.ecs_events.id
}

output "events_dead_letter_queue_url" {
  description = "Task-event messages the control plane could not read end here; alarm on its depth."
  value       = aws_sqs_queue.ecs_events_dead_letter.id
}

output "vpc_id" {
  description = "The VPC everything runs in (created unless vpc_id was given)."
  value       = local.vpc_id
}
