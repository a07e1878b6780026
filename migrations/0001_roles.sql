-- Roles, the `polybot` schema and the policy functions.
--
-- Roles are cluster-wide while migrations run once per database, and the
-- test suite migrates many databases of one cluster at once: every CREATE ROLE
-- and GRANT tolerates a concurrent twin.
--
--   polybot_owner    owns the tables; only migrations run as it. CREATEROLE so
--                    that its SECURITY DEFINER functions can create tenant roles.
--   polybot_control  the control plane (SET LOCAL ROLE in each transaction). No
--                    BYPASSRLS: row-level security applies to it like to anyone.
--   polybot_worker   the group of the per-tenant login roles `polybot_t_<hex>`.

DO $$
BEGIN
    BEGIN
        CREATE ROLE polybot_owner NOLOGIN CREATEROLE;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
    END;
    BEGIN
        CREATE ROLE polybot_control NOLOGIN;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
    END;
    BEGIN
        CREATE ROLE polybot_worker NOLOGIN;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
    END;
    -- PostgreSQL 16+ requires ADMIN on a role to grant it; 15 accepts CREATEROLE.
    BEGIN
        GRANT polybot_worker TO polybot_owner WITH ADMIN OPTION;
    EXCEPTION WHEN duplicate_object OR unique_violation OR insufficient_privilege OR invalid_grant_operation THEN NULL;
    END;
    -- Whoever runs migrations must be able to become these roles (a non-superuser
    -- administrator such as RDS's master user needs explicit membership).
    IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        BEGIN
            EXECUTE format('GRANT polybot_owner, polybot_control TO %I', current_user);
        EXCEPTION WHEN duplicate_object OR unique_violation OR invalid_grant_operation THEN NULL;
        END;
    END IF;
END
$$;

GRANT USAGE, CREATE ON SCHEMA public TO polybot_owner;
GRANT USAGE ON SCHEMA public TO polybot_control, polybot_worker;

CREATE SCHEMA IF NOT EXISTS polybot AUTHORIZATION polybot_owner;
GRANT USAGE ON SCHEMA polybot TO polybot_control, polybot_worker;

SET LOCAL ROLE polybot_owner;

-- The tenant a session may see.
--
-- A per-tenant login role (`polybot_t_<32 hex>`) is bound to its tenant by its
-- name: the value comes from `session_user`, which no SET or SET ROLE can change
-- for a non-superuser, so a compromised worker cannot reach another tenant's
-- rows. Any other session (the control plane) names the tenant with
-- `set_config('polybot.tenant_id', …, true)` inside its transaction. No tenant
-- bound means NULL, and `tenant_id = NULL` matches no row.
CREATE FUNCTION polybot.current_tenant() RETURNS uuid
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT CASE
        WHEN left(session_user::text, 10) = 'polybot_t_' THEN
            CASE WHEN length(session_user::text) = 42
                THEN substr(session_user::text, 11)::uuid
            END
        -- A malformed setting fails the statement: closed, never open.
        ELSE nullif(current_setting('polybot.tenant_id', true), '')::uuid
    END
$$;

-- True inside the control plane's operator-wide read transactions. Never true
-- for a tenant login role, whatever it sets.
CREATE FUNCTION polybot.operator_scope() RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT session_user::text NOT LIKE 'polybot\_t\_%'
       AND coalesce(current_setting('polybot.operator', true), '') = 'on'
$$;

RESET ROLE;
