-- Issue 16: functions that cannot be shadowed, offboarding a tenant whose
-- login holds objects, and less of the cluster's activity shown to tenants.
--
-- 1. Row level security calls `polybot.current_tenant()`; a SQL function's
--    names are resolved when it runs, with the caller's `search_path`. Where
--    a tenant may create objects in `public` (the default before PostgreSQL
--    15, kept by pg_upgrade), its login could define `public.substr` and put
--    `public` first: the policy then named another tenant. Every policy and
--    SECURITY DEFINER function now pins `search_path` to `pg_catalog, pg_temp`
--    (pg_temp last: it is never searched for functions, and last for
--    relations) and qualifies what it calls; tables are named with their
--    schema. Nobody but the owner creates in `public`.
-- 2. Offboarding ends the tenant's sessions (a TEMP table or anything its
--    login owns used to make DROP ROLE fail) and drops what it owns.
-- 3. A tenant login no longer reads the cluster's activity (who is connected).

-- Only the owner of `public` (or a superuser) can revoke; run by anyone else
-- this is a warning, not an error, and the pinned functions still hold.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;

-- pg_stat_activity names the login of every backend of the cluster, and so
-- every connected tenant. The view calls pg_stat_get_activity with the
-- caller's rights, so both are revoked; pg_stat_get_backend_userid is the
-- other way to the same logins. The owner's offboarding function and the
-- control plane keep them. (pg_roles cannot be closed the same way: any role
-- oid casts to its name through `regrole`, which needs no privilege.)
REVOKE SELECT ON pg_catalog.pg_stat_activity FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION pg_catalog.pg_stat_get_activity(integer) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION pg_catalog.pg_stat_get_backend_userid(integer) FROM PUBLIC;
GRANT SELECT ON pg_catalog.pg_stat_activity TO polybot_owner, polybot_control;
GRANT EXECUTE ON FUNCTION pg_catalog.pg_stat_get_activity(integer) TO polybot_owner, polybot_control;
GRANT EXECUTE ON FUNCTION pg_catalog.pg_stat_get_backend_userid(integer) TO polybot_owner, polybot_control;

SET LOCAL ROLE polybot_owner;

-- As in 0001, with every name qualified and the path pinned.
CREATE OR REPLACE FUNCTION polybot.current_tenant() RETURNS uuid
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE
        WHEN pg_catalog.left(session_user::pg_catalog.text, 10) OPERATOR(pg_catalog.=) 'polybot_t_' THEN
            CASE WHEN pg_catalog.length(session_user::pg_catalog.text) OPERATOR(pg_catalog.=) 42
                THEN pg_catalog.substr(session_user::pg_catalog.text, 11)::pg_catalog.uuid
            END
        -- A malformed setting fails the statement: closed, never open.
        ELSE nullif(pg_catalog.current_setting('polybot.tenant_id', true), '')::pg_catalog.uuid
    END
$$;

CREATE OR REPLACE FUNCTION polybot.operator_scope() RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT NOT (session_user::pg_catalog.text OPERATOR(pg_catalog.~~) 'polybot\_t\_%')
       AND coalesce(pg_catalog.current_setting('polybot.operator', true), '') OPERATOR(pg_catalog.=) 'on'
$$;

-- Policies it creates are resolved under the pinned path too.
ALTER FUNCTION polybot.protect_tenant_table(regclass, name) SET search_path = pg_catalog, pg_temp;

CREATE OR REPLACE FUNCTION polybot.tenant_for_token(hash bytea) RETURNS uuid
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT t.tenant_id FROM public.api_tokens t
    JOIN public.tenants n ON n.id = t.tenant_id
    WHERE t.token_hash = hash AND t.revoked_at IS NULL
      AND n.state NOT IN ('offboarding', 'offboarded')
$$;

CREATE OR REPLACE FUNCTION polybot.prune_history(keep_heartbeats interval, keep_idempotency interval, batch integer)
RETURNS TABLE (heartbeats bigint, idempotency_keys bigint)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    h bigint;
    i bigint;
BEGIN
    DELETE FROM public.worker_heartbeats
    WHERE id IN (
        SELECT w.id FROM public.worker_heartbeats w
        WHERE w.at < now() - keep_heartbeats
          AND w.id <> (SELECT x.id FROM public.worker_heartbeats x
                       WHERE x.tenant_id = w.tenant_id ORDER BY x.at DESC, x.id DESC LIMIT 1)
        LIMIT batch);
    GET DIAGNOSTICS h = ROW_COUNT;
    DELETE FROM public.idempotency_keys
    WHERE (scope, key) IN (
        SELECT k.scope, k.key FROM public.idempotency_keys k
        WHERE k.created_at < now() - keep_idempotency LIMIT batch);
    GET DIAGNOSTICS i = ROW_COUNT;
    RETURN QUERY SELECT h, i;
END
$$;

CREATE OR REPLACE FUNCTION polybot.prune_timeline(keep_availability interval, keep_events interval, batch integer)
RETURNS TABLE (availability bigint, events bigint)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    a bigint;
    e bigint;
BEGIN
    DELETE FROM public.worker_availability
    WHERE (tenant_id, minute) IN (
        SELECT w.tenant_id, w.minute FROM public.worker_availability w
        WHERE w.minute < now() - keep_availability LIMIT batch);
    GET DIAGNOSTICS a = ROW_COUNT;
    DELETE FROM public.tenant_runtime_events
    WHERE id IN (
        SELECT r.id FROM public.tenant_runtime_events r
        WHERE r.at < now() - keep_events LIMIT batch);
    GET DIAGNOSTICS e = ROW_COUNT;
    RETURN QUERY SELECT a, e;
END
$$;

-- Stops a tenant's login from logging in and terminates its sessions (which
-- drops their TEMP objects). Commit it before dropping the role: NOLOGIN is
-- seen by new connections only once committed. To signal another role's
-- backends, and later to drop what it owns, the owner needs that role's
-- privileges: it grants itself the role (it created it, so it may).
-- Returns the number of sessions terminated.
CREATE FUNCTION polybot.end_tenant_sessions(tenant uuid) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    role_name text := 'polybot_t_' || replace(tenant::text, '-', '');
    ended integer;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = role_name) THEN
        RETURN 0;
    END IF;
    EXECUTE format('ALTER ROLE %I NOLOGIN', role_name);
    IF NOT pg_catalog.pg_has_role(current_user, role_name, 'USAGE') THEN
        EXECUTE format('GRANT %I TO %I', role_name, current_user);
    END IF;
    -- Waits up to 5 s for each backend to exit, so its TEMP tables are gone.
    SELECT count(*) FILTER (WHERE pg_catalog.pg_terminate_backend(a.pid, 5000))
      INTO ended
      FROM pg_catalog.pg_stat_activity a
     WHERE a.usename = role_name AND a.pid <> pg_catalog.pg_backend_pid();
    RETURN ended;
END
$$;

-- Removes a tenant's login role (offboarding); a no-op if it does not exist.
-- Ends its sessions first and drops whatever it owns in this database, so a
-- tenant cannot keep its role alive by holding a TEMP table.
CREATE OR REPLACE FUNCTION polybot.drop_tenant_role(tenant uuid) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    role_name text := 'polybot_t_' || replace(tenant::text, '-', '');
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = role_name) THEN
        RETURN false;
    END IF;
    PERFORM polybot.end_tenant_sessions(tenant);
    EXECUTE format('DROP OWNED BY %I', role_name);
    EXECUTE format('DROP ROLE %I', role_name);
    RETURN true;
END
$$;

REVOKE ALL ON FUNCTION polybot.end_tenant_sessions(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION polybot.end_tenant_sessions(uuid) TO polybot_control;

RESET ROLE;
