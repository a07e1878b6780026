-- Operator views (issue 9): dashboard sessions, alert channels and alert
-- state, and the worker availability the SLO is computed from.

SET LOCAL ROLE polybot_owner;

-- Dashboard sign-ins. Not tenant data: a session names the bearer token it
-- was opened with (by hash), and every request re-resolves that token, so a
-- revoked token or an offboarded tenant ends its sessions at once. The
-- cookie's value is stored only as its SHA-256 hash.
CREATE TABLE dashboard_sessions (
    id_hash     bytea PRIMARY KEY,
    token_hash  bytea NOT NULL,
    csrf_token  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
CREATE INDEX dashboard_sessions_expiry_idx ON dashboard_sessions (expires_at);

-- A tenant's own notification channels. `secret` is the webhook's HMAC key
-- or the Telegram bot token: write-only, never returned (only a fingerprint).
CREATE TABLE alert_channels (
    id          uuid PRIMARY KEY,
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    kind        text NOT NULL CHECK (kind IN ('webhook', 'telegram')),
    target      text NOT NULL,
    secret      text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX alert_channels_tenant_idx ON alert_channels (tenant_id, created_at);
SELECT polybot.protect_tenant_table('alert_channels');

-- Operator-wide channels: every tenant's alerts. Not tenant data.
CREATE TABLE operator_alert_channels (
    id          uuid PRIMARY KEY,
    kind        text NOT NULL CHECK (kind IN ('webhook', 'telegram')),
    target      text NOT NULL,
    secret      text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- One row per (tenant, alert, subject) ever raised: the evaluator notifies
-- only on a change of `firing`, so a condition that persists is one alert.
CREATE TABLE alert_states (
    tenant_id    uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    alert        text NOT NULL,
    subject      text NOT NULL DEFAULT '',
    firing       boolean NOT NULL,
    summary      text NOT NULL,
    fired_at     timestamptz NOT NULL,
    -- while firing: since when the condition has been clear (resolution hold)
    clear_since  timestamptz,
    resolved_at  timestamptz,
    PRIMARY KEY (tenant_id, alert, subject)
);
SELECT polybot.protect_tenant_table('alert_states');

-- Worker availability per tenant and minute: milliseconds in which the
-- worker was desired (tenant active), and in which it was also running with
-- a fresh heartbeat. The SLO is sum(up_ms) / sum(desired_ms) over a window.
CREATE TABLE worker_availability (
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    minute      timestamptz NOT NULL,
    desired_ms  bigint NOT NULL DEFAULT 0 CHECK (desired_ms >= 0),
    up_ms       bigint NOT NULL DEFAULT 0 CHECK (up_ms >= 0 AND up_ms <= desired_ms),
    PRIMARY KEY (tenant_id, minute)
);
SELECT polybot.protect_tenant_table('worker_availability');

GRANT SELECT, INSERT, UPDATE, DELETE ON
    dashboard_sessions, alert_channels, operator_alert_channels, alert_states, worker_availability
    TO polybot_control;

RESET ROLE;
