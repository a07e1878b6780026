# The control plane's own secrets and the workers' operator-level settings,
# all generated here and injected by ECS through the task definitions'
# `secrets` (never in plain environment, never written to disk):
#
#   polybot/control-plane/tokens  POLYBOT_OPERATOR_TOKEN, POLYBOT_METRICS_TOKEN,
#       POLYBOT_MASTER_KEY: every replica gets the same ones; the control
#       plane refuses to start in cloud mode without them
#   polybot/workers/settings      POLYBOT_NEWSAPI_KEY (empty unless
#       var.newsapi_key is set) and POLYBOT_MARKET_DATA_URL (the `worker` user
#       of the market-data Redis, market_data.tf): read by the worker
#       execution role, outside polybot/tenants/*

resource "random_password" "operator_token" {
  length  = 40
  special = false
}

resource "random_password" "metrics_token" {
  length  = 40
  special = false
}

# 32 random bytes, as the 64 hex digits POLYBOT_MASTER_KEY takes.
resource "random_id" "master_key" {
  byte_length = 32
}

resource "aws_secretsmanager_secret" "control_plane_tokens" {
  #checkov:skip=CKV_AWS_149: encrypted with the AWS-managed Secrets Manager key; only the control plane's execution role can read it (iam.tf)
  #checkov:skip=CKV2_AWS_57: the operator token is rotated through the API (docs/operations.md); the master key seals stored ciphertext and is not rotated by a Lambda
  name                    = "polybot/control-plane/tokens"
  description             = "Operator token, metrics token and master key of the PolyBot control plane"
  recovery_window_in_days = 30
}

resource "aws_secretsmanager_secret_version" "control_plane_tokens" {
  secret_id = aws_secretsmanager_secret.control_plane_tokens.id
  secret_string = jsonencode({
    POLYBOT_OPERATOR_TOKEN = "pbo_${random_password.operator_token.result}"
    POLYBOT_METRICS_TOKEN  = random_password.metrics_token.result
    POLYBOT_MASTER_KEY     = random_id.master_key.hex
  })
}

resource "aws_secretsmanager_secret" "worker_settings" {
  #checkov:skip=CKV_AWS_149: encrypted with the AWS-managed Secrets Manager key; only the worker execution role can read it (iam.tf)
  #checkov:skip=CKV2_AWS_57: a NewsAPI key is rotated at NewsAPI (the new one is set with var.newsapi_key); the Redis password with a new apply (docs/operations.md)
  name                    = "polybot/workers/settings"
  description             = "Operator-level settings of every PolyBot worker (POLYBOT_NEWSAPI_KEY, POLYBOT_MARKET_DATA_URL)"
  recovery_window_in_days = 7
}

# Every key the workers' task definitions name (WORKER_SETTINGS_KEYS of
# crates/deploy-spec) must be present, or ECS refuses to start the task: an
# unset NewsAPI key is an empty string, which the worker reads as none.
resource "aws_secretsmanager_secret_version" "worker_settings" {
  secret_id = aws_secretsmanager_secret.worker_settings.id
  secret_string = jsonencode({
    POLYBOT_NEWSAPI_KEY     = var.newsapi_key == null ? "" : var.newsapi_key
    POLYBOT_MARKET_DATA_URL = var.shared_market_data ? local.market_data_worker_url : ""
  })
}
