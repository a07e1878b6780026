#!/bin/sh
# Runs the migrate task once (terraform_data.migrate, migrate.tf) and fails
# unless its container exits 0. Also usable by hand with the same variables:
# REGION, CLUSTER, TASK_DEFINITION, SUBNETS (comma-separated),
# SECURITY_GROUP, LOG_GROUP.
set -eu

task=$(aws ecs run-task --region "$REGION" --cluster "$CLUSTER" \
  --task-definition "$TASK_DEFINITION" --launch-type FARGATE \
  --network-configuration "awsvpcConfiguration={subnets=[$SUBNETS],securityGroups=[$SECURITY_GROUP],assignPublicIp=DISABLED}" \
  --query 'tasks[0].taskArn' --output text)
if [ -z "$task" ] || [ "$task" = "None" ]; then
  echo "run-migrate: ECS started no migrate task (see the RunTask failures above)" >&2
  exit 1
fi
echo "run-migrate: $task started; waiting for it to stop"
aws ecs wait tasks-stopped --region "$REGION" --cluster "$CLUSTER" --tasks "$task"
code=$(aws ecs describe-tasks --region "$REGION" --cluster "$CLUSTER" --tasks "$task" \
  --query 'tasks[0].containers[0].exitCode' --output text)
if [ "$code" != "0" ]; then
  reason=$(aws ecs describe-tasks --region "$REGION" --cluster "$CLUSTER" --tasks "$task" \
    --query 'tasks[0].stoppedReason' --output text)
  echo "run-migrate: $task exited with $code ($reason); its log is in $LOG_GROUP, stream prefix migrate" >&2
  exit 1
fi
echo "run-migrate: the schema is current and the control plane's login is ready"
