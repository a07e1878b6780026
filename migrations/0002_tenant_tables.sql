-- The tenant tables. Every table with a `tenant_id` column: NOT NULL, a
-- foreign key to `tenants`, an index that starts with `tenant_id`, row level
-- security ENABLEd and FORCEd, and the two policies installed by
-- `polybot.protect_tenant_table` (a test checks all of it for every table).

SET LOCAL ROLE polybot_owner;

-- Installs row level security on a tenant table: `tenant_isolation` (USING and
-- WITH CHECK on the current tenant, for every command and every role, the
-- owner included) and `operator_read` (SELECT for the control plane's
-- operator-wide transactions).
CREATE FUNCTION polybot.protect_tenant_table(target regclass, tenant_column name DEFAULT 'tenant_id')
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
    EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', target);
    EXECUTE format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', target);
    EXECUTE format(
        'CREATE POLICY tenant_isolation ON %s FOR ALL TO PUBLIC '
        'USING (%2$I = (SELECT polybot.current_tenant())) '
        'WITH CHECK (%2$I = (SELECT polybot.current_tenant()))',
        target, tenant_column);
    EXECUTE format(
        'CREATE POLICY operator_read ON %s FOR SELECT TO polybot_control '
        'USING ((SELECT polybot.operator_scope()))',
        target);
END
$$;

CREATE TABLE tenants (
    id                uuid PRIMARY KEY,
    name              text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    mode              text NOT NULL DEFAULT 'paper' CHECK (mode IN ('paper', 'live')),
    -- lifecycle: provisioning → active ⇄ paused; failed; offboarding → offboarded
    state             text NOT NULL DEFAULT 'provisioning'
                      CHECK (state IN ('provisioning', 'active', 'paused', 'failed', 'offboarding', 'offboarded')),
    -- the last onboarding step completed: created → role → secret → spec → done
    provisioning_step text NOT NULL DEFAULT 'created'
                      CHECK (provisioning_step IN ('created', 'role', 'secret', 'spec', 'done')),
    -- the state to go back to once a failed onboarding is retried
    last_error        text,
    spec_version      bigint NOT NULL DEFAULT 1,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    offboarded_at     timestamptz
);
CREATE INDEX tenants_state_idx ON tenants (state, created_at);
SELECT polybot.protect_tenant_table('tenants', 'id');

CREATE TABLE tenant_configs (
    tenant_id   uuid PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    strategies  jsonb NOT NULL DEFAULT '{}'::jsonb,
    risk        jsonb NOT NULL DEFAULT '{}'::jsonb,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
SELECT polybot.protect_tenant_table('tenant_configs');

-- References for AWS Secrets Manager; ciphertext for the local store. Never
-- plaintext; `fingerprints` holds only masked key fingerprints per venue.
CREATE TABLE tenant_secrets (
    tenant_id              uuid PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    store                  text NOT NULL CHECK (store IN ('local', 'aws')),
    reference              text,
    ciphertext             bytea,
    nonce                  bytea,
    key_id                 text,
    fingerprints           jsonb NOT NULL DEFAULT '{}'::jsonb,
    version                bigint NOT NULL DEFAULT 1,
    updated_at             timestamptz NOT NULL DEFAULT now(),
    deletion_scheduled_at  timestamptz
);
SELECT polybot.protect_tenant_table('tenant_secrets');

-- What the reconciler observed and did, per tenant.
CREATE TABLE tenant_runtime (
    tenant_id       uuid PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    desired         text NOT NULL DEFAULT 'stopped',
    actual          text NOT NULL DEFAULT 'pending',
    instance_id     text,
    spec_hash       text,
    restarts        integer NOT NULL DEFAULT 0,
    backoff_until   timestamptz,
    last_exit       text,
    last_error      text,
    last_action     text,
    last_action_at  timestamptz,
    observed_at     timestamptz NOT NULL DEFAULT now()
);
SELECT polybot.protect_tenant_table('tenant_runtime');

CREATE TABLE tenant_runtime_events (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id  uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    at         timestamptz NOT NULL DEFAULT now(),
    kind       text NOT NULL,
    detail     text NOT NULL
);
CREATE INDEX tenant_runtime_events_tenant_idx ON tenant_runtime_events (tenant_id, at DESC);
SELECT polybot.protect_tenant_table('tenant_runtime_events');

-- The fencing epoch: a worker takes the lease with epoch + 1; every write of a
-- worker checks that the lease still carries its epoch.
CREATE TABLE worker_leases (
    tenant_id   uuid PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    epoch       bigint NOT NULL,
    holder      text NOT NULL,
    acquired_at timestamptz NOT NULL DEFAULT now(),
    renewed_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
SELECT polybot.protect_tenant_table('worker_leases');

CREATE TABLE worker_heartbeats (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id  uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    epoch      bigint NOT NULL,
    at         timestamptz NOT NULL DEFAULT now(),
    health     jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX worker_heartbeats_tenant_idx ON worker_heartbeats (tenant_id, at DESC);
SELECT polybot.protect_tenant_table('worker_heartbeats');

CREATE TABLE opportunities (
    id               uuid PRIMARY KEY,
    tenant_id        uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    strategy         text NOT NULL,
    venue            text NOT NULL,
    market           text NOT NULL,
    description      text NOT NULL DEFAULT '',
    edge             numeric,
    expected_profit  numeric,
    size             numeric,
    details          jsonb NOT NULL DEFAULT '{}'::jsonb,
    detected_at      timestamptz NOT NULL DEFAULT now(),
    executed_at      timestamptz,
    epoch            bigint
);
CREATE INDEX opportunities_tenant_idx ON opportunities (tenant_id, detected_at DESC);

SELECT polybot.protect_tenant_table('opportunities');

CREATE TABLE trades (
    id              uuid PRIMARY KEY,
    tenant_id       uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    opportunity_id  uuid REFERENCES opportunities (id) ON DELETE SET NULL,
    strategy        text NOT NULL,
    venue           text NOT NULL,
    market          text NOT NULL,
    side            text NOT NULL,
    outcome         text,
    price           numeric NOT NULL,
    size            numeric NOT NULL,
    fee             numeric NOT NULL DEFAULT 0,
    realized_pnl    numeric,
    mode            text NOT NULL DEFAULT 'paper' CHECK (mode IN ('paper', 'live')),
    details         jsonb NOT NULL DEFAULT '{}'::jsonb,
    executed_at     timestamptz NOT NULL DEFAULT now(),
    epoch           bigint
);
CREATE INDEX trades_tenant_idx ON trades (tenant_id, executed_at DESC);
SELECT polybot.protect_tenant_table('trades');

CREATE TABLE balances (
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    venue       text NOT NULL,
    asset       text NOT NULL,
    amount      numeric NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    epoch       bigint,
    PRIMARY KEY (tenant_id, venue, asset)
);
SELECT polybot.protect_tenant_table('balances');

-- Per-tenant bearer tokens, stored as SHA-256 hashes.
CREATE TABLE api_tokens (
    id           uuid PRIMARY KEY,
    tenant_id    uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    token_hash   bytea NOT NULL UNIQUE,
    label        text NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz
);
CREATE INDEX api_tokens_tenant_idx ON api_tokens (tenant_id, created_at);
SELECT polybot.protect_tenant_table('api_tokens');

CREATE TABLE audit_log (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id  uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    at         timestamptz NOT NULL DEFAULT now(),
    actor      text NOT NULL,
    action     text NOT NULL,
    details    jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX audit_log_tenant_idx ON audit_log (tenant_id, at DESC);
SELECT polybot.protect_tenant_table('audit_log');

-- Replays of mutating requests. Keyed by the caller (`operator` or
-- `tenant:<id>`) because `POST /tenants` runs before any tenant exists, so
-- this table has no tenant_id; only the control plane can reach it.
CREATE TABLE idempotency_keys (
    scope            text NOT NULL,
    key              text NOT NULL,
    request_hash     bytea NOT NULL,
    response_status  smallint,
    response_body    jsonb,
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, key)
);

-- Operator bearer tokens (hashes); not tenant data.
CREATE TABLE operator_tokens (
    id          uuid PRIMARY KEY,
    token_hash  bytea NOT NULL UNIQUE,
    label       text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

-- The control plane reads and writes every table, row level security permitting.
GRANT SELECT, INSERT, UPDATE, DELETE ON
    tenants, tenant_configs, tenant_secrets, tenant_runtime, tenant_runtime_events,
    worker_leases, worker_heartbeats, opportunities, trades, balances,
    api_tokens, audit_log, idempotency_keys
    TO polybot_control;
GRANT SELECT, INSERT, UPDATE ON operator_tokens TO polybot_control;

-- A worker reads its tenant and configuration, and writes what it does. It
-- never sees secrets, tokens, the audit log or idempotency records.
GRANT SELECT ON tenants, tenant_configs, tenant_runtime TO polybot_worker;
GRANT SELECT, INSERT, UPDATE ON worker_leases TO polybot_worker;
GRANT SELECT, INSERT ON worker_heartbeats TO polybot_worker;
GRANT SELECT, INSERT, UPDATE ON opportunities, trades, balances TO polybot_worker;

-- Creates the login role of a tenant (`polybot_t_<hex>`, member of
-- polybot_worker) or, if it exists, sets its password. Runs as the owner so
-- that the control plane needs no CREATEROLE itself.
CREATE FUNCTION polybot.ensure_tenant_role(tenant uuid, password text) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    role_name text := 'polybot_t_' || replace(tenant::text, '-', '');
BEGIN
    IF length(password) < 24 THEN
        RAISE EXCEPTION 'a tenant role password must have at least 24 characters'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = role_name) THEN
        EXECUTE format('ALTER ROLE %I WITH LOGIN PASSWORD %L', role_name, password);
    ELSE
        EXECUTE format('CREATE ROLE %I WITH LOGIN PASSWORD %L IN ROLE polybot_worker',
                       role_name, password);
    END IF;
    RETURN role_name;
END
$$;

-- Removes a tenant's login role (offboarding); a no-op if it does not exist.
CREATE FUNCTION polybot.drop_tenant_role(tenant uuid) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    role_name text := 'polybot_t_' || replace(tenant::text, '-', '');
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = role_name) THEN
        RETURN false;
    END IF;
    EXECUTE format('DROP ROLE %I', role_name);
    RETURN true;
END
$$;

-- Whether a tenant's login role exists (the onboarding state machine checks it
-- on resume).
CREATE FUNCTION polybot.tenant_role_exists(tenant uuid) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT EXISTS (SELECT 1 FROM pg_roles
                   WHERE rolname = 'polybot_t_' || replace(tenant::text, '-', ''))
$$;

REVOKE ALL ON FUNCTION polybot.ensure_tenant_role(uuid, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION polybot.drop_tenant_role(uuid) FROM PUBLIC;
REVOKE ALL ON FUNCTION polybot.tenant_role_exists(uuid) FROM PUBLIC;
REVOKE ALL ON FUNCTION polybot.protect_tenant_table(regclass, name) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION polybot.ensure_tenant_role(uuid, text) TO polybot_control;
GRANT EXECUTE ON FUNCTION polybot.drop_tenant_role(uuid) TO polybot_control;
GRANT EXECUTE ON FUNCTION polybot.tenant_role_exists(uuid) TO polybot_control;

RESET ROLE;
