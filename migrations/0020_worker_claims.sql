-- Issue 22: workers share one login and carry a per-tenant claim, so that a
-- transaction-mode pooler (PgBouncer) can serve the whole fleet from a fixed
-- budget of server connections, while the database still decides which
-- tenant a worker's transaction may see.
--
-- A worker login is a LOGIN role that is a direct member of polybot_worker
-- (`polybot migrate --worker-login`, or the embedded cluster, creates it).
-- Such a session never names its tenant with `polybot.tenant_id`: the policy
-- function reads the tenant from `polybot.worker_claim`, a text the worker
-- sets in every transaction (`set_config(…, true)`, so it never outlives the
-- transaction and works in transaction pooling):
--
--     v1.<tenant uuid>.<expiry, Unix seconds>.<hex HMAC-SHA256>
--
-- The HMAC is over `v1.<tenant uuid>.<expiry>` with the tenant's own random
-- key, kept in `polybot.worker_claim_keys`, which only polybot_owner reads.
-- A claim that is malformed, expired, signed with another key, or whose
-- tenant's key was deleted (offboarding) binds no tenant: NULL, and
-- `tenant_id = NULL` matches no row. A forged claim fails closed.
--
-- Per-tenant login roles (`polybot_t_<hex>`, onboarded before this
-- migration) keep working as before until the tenant is offboarded; new
-- onboarding creates none.
--
-- The HMAC is computed with PostgreSQL's built-in sha256() (11+), so no
-- extension is needed (pgcrypto is not installable everywhere the schema
-- runs). It is checked against RFC 4231's vectors by the store's tests.

SET LOCAL ROLE polybot_owner;

-- One random key per tenant. Deleting a tenant's row revokes every claim it
-- was ever given; replacing the key (rotation) revokes them too.
-- `claims_expire_at` is the expiry of the last claim minted, the one the
-- tenant's secret holds: the control plane renews it before then.
CREATE TABLE polybot.worker_claim_keys (
    tenant_id         uuid PRIMARY KEY REFERENCES public.tenants (id) ON DELETE CASCADE,
    key               bytea NOT NULL CHECK (length(key) = 32),
    created_at        timestamptz NOT NULL DEFAULT now(),
    claims_expire_at  timestamptz NOT NULL
);
CREATE INDEX worker_claim_keys_expiry_idx ON polybot.worker_claim_keys (claims_expire_at);
REVOKE ALL ON polybot.worker_claim_keys FROM PUBLIC;

-- HMAC-SHA256 (RFC 2104) over PostgreSQL's sha256().
CREATE FUNCTION polybot.hmac_sha256(key bytea, message bytea) RETURNS bytea
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    k bytea := key;
    ipad bytea;
    opad bytea;
BEGIN
    IF pg_catalog.length(k) > 64 THEN
        k := pg_catalog.sha256(k);
    END IF;
    k := k || pg_catalog.decode(pg_catalog.repeat('00', 64 - pg_catalog.length(k)), 'hex');
    ipad := k;
    opad := k;
    FOR i IN 0..63 LOOP
        ipad := pg_catalog.set_byte(ipad, i, pg_catalog.get_byte(k, i) # 54);
        opad := pg_catalog.set_byte(opad, i, pg_catalog.get_byte(k, i) # 92);
    END LOOP;
    RETURN pg_catalog.sha256(opad || pg_catalog.sha256(ipad || message));
END
$$;

-- Whether this session logged in as a worker login: a direct member of
-- polybot_worker (not through superuser, which pg_has_role would count).
CREATE FUNCTION polybot.is_worker_login() RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT EXISTS (
        SELECT 1 FROM pg_catalog.pg_auth_members m
        WHERE m.member OPERATOR(pg_catalog.=) (SELECT r.oid FROM pg_catalog.pg_roles r
                                               WHERE r.rolname OPERATOR(pg_catalog.=) session_user)
          AND m.roleid OPERATOR(pg_catalog.=) (SELECT r.oid FROM pg_catalog.pg_roles r
                                               WHERE r.rolname OPERATOR(pg_catalog.=) 'polybot_worker'))
$$;

-- The tenant the transaction's claim proves, or NULL. Runs as the owner, the
-- only role that reads the keys.
CREATE FUNCTION polybot.claimed_tenant() RETURNS uuid
LANGUAGE plpgsql STABLE SECURITY DEFINER PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    claim text := pg_catalog.current_setting('polybot.worker_claim', true);
    parts text[];
    tenant uuid;
    secret bytea;
BEGIN
    IF claim IS NULL OR claim OPERATOR(pg_catalog.!~)
        '^v1\.[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\.[0-9]{1,12}\.[0-9a-f]{64}$'
    THEN
        RETURN NULL;
    END IF;
    parts := pg_catalog.string_to_array(claim, '.');
    IF parts[3]::bigint OPERATOR(pg_catalog.<=) pg_catalog.date_part('epoch', pg_catalog.now())::bigint THEN
        RETURN NULL;
    END IF;
    tenant := parts[2]::uuid;
    SELECT k.key INTO secret FROM polybot.worker_claim_keys k WHERE k.tenant_id OPERATOR(pg_catalog.=) tenant;
    IF secret IS NULL THEN
        RETURN NULL;
    END IF;
    IF polybot.hmac_sha256(secret, pg_catalog.convert_to('v1.' || parts[2] || '.' || parts[3], 'UTF8'))
        OPERATOR(pg_catalog.<>) pg_catalog.decode(parts[4], 'hex')
    THEN
        RETURN NULL;
    END IF;
    RETURN tenant;
END
$$;

-- As in 0008, with worker logins bound by their claim. Per-tenant logins
-- keep their binding by name; everyone else (the control plane) names the
-- tenant with `polybot.tenant_id`. In PL/pgSQL, which keeps its plans for
-- the session: the SQL function of 0008, not inlinable because of its SET
-- clause, was planned anew on every call (0.2 ms of every statement).
CREATE OR REPLACE FUNCTION polybot.current_tenant() RETURNS uuid
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    who text := session_user::pg_catalog.text;
BEGIN
    IF pg_catalog.left(who, 10) OPERATOR(pg_catalog.=) 'polybot_t_' THEN
        IF pg_catalog.length(who) OPERATOR(pg_catalog.=) 42 THEN
            RETURN pg_catalog.substr(who, 11)::pg_catalog.uuid;
        END IF;
        RETURN NULL;
    END IF;
    IF polybot.is_worker_login() THEN
        RETURN polybot.claimed_tenant();
    END IF;
    -- A malformed setting fails the statement: closed, never open.
    RETURN nullif(pg_catalog.current_setting('polybot.tenant_id', true), '')::pg_catalog.uuid;
END
$$;

-- Never true for a worker, whatever it sets (PL/pgSQL for the same reason).
CREATE OR REPLACE FUNCTION polybot.operator_scope() RETURNS boolean
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN NOT (session_user::pg_catalog.text OPERATOR(pg_catalog.~~) 'polybot\_t\_%')
       AND NOT polybot.is_worker_login()
       AND coalesce(pg_catalog.current_setting('polybot.operator', true), '') OPERATOR(pg_catalog.=) 'on';
END
$$;

-- Mints a claim for the transaction's tenant (the control plane's
-- `polybot.tenant_id`), valid for `valid_for`; creates the tenant's key on
-- first use. Only the control plane may call it.
CREATE FUNCTION polybot.mint_worker_claim(tenant uuid, valid_for interval) RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    secret bytea;
    body text;
    expires bigint;
BEGIN
    IF tenant IS NULL OR tenant IS DISTINCT FROM polybot.current_tenant() THEN
        RAISE EXCEPTION 'a worker claim is minted in its own tenant''s transaction'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF valid_for IS NULL OR valid_for OPERATOR(pg_catalog.<=) interval '0' THEN
        RAISE EXCEPTION 'a worker claim must be valid for a positive time'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    expires := pg_catalog.date_part('epoch', pg_catalog.now() + valid_for)::bigint;
    -- 2 × 122 random bits from the server's strong generator, hashed to 32 bytes.
    INSERT INTO polybot.worker_claim_keys AS k (tenant_id, key, claims_expire_at)
    VALUES (tenant, pg_catalog.sha256(pg_catalog.convert_to(
        pg_catalog.gen_random_uuid()::text || pg_catalog.gen_random_uuid()::text, 'UTF8')),
        pg_catalog.to_timestamp(expires))
    ON CONFLICT (tenant_id) DO UPDATE SET claims_expire_at = excluded.claims_expire_at
    RETURNING k.key INTO STRICT secret;
    body := 'v1.' || tenant::text || '.' || expires::text;
    RETURN body || '.' || pg_catalog.encode(
        polybot.hmac_sha256(secret, pg_catalog.convert_to(body, 'UTF8')), 'hex');
END
$$;

-- Revokes every claim of the transaction's tenant (offboarding, rotation):
-- the next statement of a worker holding one sees no rows. True if there
-- was a key.
CREATE FUNCTION polybot.revoke_worker_claims(tenant uuid) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF tenant IS NULL OR tenant IS DISTINCT FROM polybot.current_tenant() THEN
        RAISE EXCEPTION 'a tenant''s worker claims are revoked in its own transaction'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    DELETE FROM polybot.worker_claim_keys k WHERE k.tenant_id OPERATOR(pg_catalog.=) tenant;
    RETURN FOUND;
END
$$;

-- The tenants whose last claim expires within `within`, soonest first: the
-- control plane's leader renews them. Only the control plane may call it.
CREATE FUNCTION polybot.worker_claims_expiring(within interval, max_rows integer)
RETURNS SETOF uuid
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT k.tenant_id FROM polybot.worker_claim_keys k
    WHERE k.claims_expire_at OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.+) within)
    ORDER BY k.claims_expire_at
    LIMIT max_rows
$$;

REVOKE ALL ON FUNCTION polybot.worker_claims_expiring(interval, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION polybot.worker_claims_expiring(interval, integer) TO polybot_control;
REVOKE ALL ON FUNCTION polybot.mint_worker_claim(uuid, interval) FROM PUBLIC;
REVOKE ALL ON FUNCTION polybot.revoke_worker_claims(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION polybot.mint_worker_claim(uuid, interval) TO polybot_control;
GRANT EXECUTE ON FUNCTION polybot.revoke_worker_claims(uuid) TO polybot_control;

RESET ROLE;
