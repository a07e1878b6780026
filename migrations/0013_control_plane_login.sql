-- The control plane logs in as its own role (`polybot migrate` creates it:
-- LOGIN, member of polybot_control, no superuser, no BYPASSRLS) instead of
-- the administrator. Before it switches to polybot_control it reads the
-- migration history, to refuse to serve a schema older than itself.

GRANT SELECT ON TABLE _sqlx_migrations TO polybot_control;

-- Operator-level settings every local worker gets as a secret (the
-- operator's NewsAPI key): the local secret store's counterpart of
-- `polybot/workers/settings` in Secrets Manager, sealed under the master key
-- like tenants' keys. Not tenant data; workers have no access.
SET LOCAL ROLE polybot_owner;

CREATE TABLE operator_secrets (
    name        text PRIMARY KEY CHECK (name ~ '^POLYBOT_[A-Z_]+$'),
    ciphertext  bytea NOT NULL,
    nonce       bytea NOT NULL,
    key_id      text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

GRANT SELECT, INSERT, UPDATE, DELETE ON operator_secrets TO polybot_control;

RESET ROLE;
