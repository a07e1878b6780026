-- Issue 22: moving tenants onboarded before 0020 (each with a login role of
-- its own, `polybot_t_<hex>`) to the fleet's shared worker login with
-- claims (`polybot fleet move-to-shared-login`). Per tenant, in one
-- transaction: a claim is minted, the tenant's secret gets the shared
-- login's URL (a new secret version: the reconciler replaces the worker),
-- and the old role loses LOGIN, so that no new session can use it. Its
-- sessions end when the old worker stops; once it has none, it is dropped.
-- Every step is idempotent and decided from what the catalog shows, so a
-- run cut short is completed by the next.

SET LOCAL ROLE polybot_owner;

-- The tenant login roles that exist, with whether they may still log in
-- and how many sessions use them. Only the control plane may call it.
CREATE FUNCTION polybot.tenant_logins()
RETURNS TABLE (tenant_id uuid, can_login boolean, sessions integer)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_catalog.substr(r.rolname, 11)::uuid,
           r.rolcanlogin,
           (SELECT pg_catalog.count(*)::integer FROM pg_catalog.pg_stat_activity a
             WHERE a.usename OPERATOR(pg_catalog.=) r.rolname)
      FROM pg_catalog.pg_roles r
     WHERE r.rolname OPERATOR(pg_catalog.~) '^polybot_t_[0-9a-f]{32}$'
     ORDER BY 1
$$;

-- Stops the transaction's tenant's own role from logging in, leaving its
-- sessions alone (the reconciler stops the worker that holds them). False
-- if the tenant has no role. Only the control plane may call it, in the
-- tenant's own transaction.
CREATE FUNCTION polybot.block_tenant_login(tenant uuid) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    role_name text := 'polybot_t_' || pg_catalog.replace(tenant::text, '-', '');
BEGIN
    IF tenant IS NULL OR tenant IS DISTINCT FROM polybot.current_tenant() THEN
        RAISE EXCEPTION 'a tenant''s login is blocked in its own transaction'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) role_name) THEN
        RETURN false;
    END IF;
    EXECUTE pg_catalog.format('ALTER ROLE %I NOLOGIN', role_name);
    RETURN true;
END
$$;

REVOKE ALL ON FUNCTION polybot.tenant_logins() FROM PUBLIC;
REVOKE ALL ON FUNCTION polybot.block_tenant_login(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION polybot.tenant_logins() TO polybot_control;
GRANT EXECUTE ON FUNCTION polybot.block_tenant_login(uuid) TO polybot_control;

RESET ROLE;
