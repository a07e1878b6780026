-- Issue 16: an operator's pause that a tenant cannot lift, and tenant tokens
-- that expire, record their last use and are refused once revoked or expired.

SET LOCAL ROLE polybot_owner;

-- Set by an operator's pause, cleared only by an operator's resume (the
-- lifecycle's `Standing` decides; the API writes what it says).
ALTER TABLE tenants
    ADD COLUMN held_by_operator boolean NOT NULL DEFAULT false,
    ADD COLUMN hold_reason text CHECK (length(hold_reason) <= 200);

-- Tokens issued before this migration get the default lifetime (90 days)
-- from now, so an upgrade does not lock anyone out at once. The control plane
-- always states a new token's expiry; the default only backs rows written
-- without one.
ALTER TABLE api_tokens
    ADD COLUMN expires_at timestamptz NOT NULL DEFAULT (now() + interval '90 days'),
    ADD COLUMN last_used_at timestamptz;
CREATE INDEX api_tokens_live_idx ON api_tokens (tenant_id) WHERE revoked_at IS NULL;

-- The token lookup records the use, so the owner may update token rows.
CREATE POLICY owner_token_use ON api_tokens FOR UPDATE TO polybot_owner USING (true);

-- The tenant of a live token (unrevoked, unexpired, tenant not offboarding),
-- with its token id and expiry; records the use. Crosses tenants like
-- `tenant_for_token` and returns nothing else. Every name is qualified and
-- the search path pinned, so a tenant's objects can never shadow them.
CREATE FUNCTION polybot.use_tenant_token(hash bytea)
RETURNS TABLE (tenant_id uuid, token_id uuid, expires_at timestamptz)
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    UPDATE public.api_tokens t SET last_used_at = pg_catalog.now()
    FROM public.tenants n
    WHERE n.id = t.tenant_id
      AND t.token_hash = hash
      AND t.revoked_at IS NULL
      AND t.expires_at > pg_catalog.now()
      AND n.state NOT IN ('offboarding', 'offboarded')
    RETURNING t.tenant_id, t.id, t.expires_at
$$;
REVOKE ALL ON FUNCTION polybot.use_tenant_token(bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION polybot.use_tenant_token(bytea) TO polybot_control;

-- The older lookup stays for compatibility but refuses expired tokens too.
CREATE OR REPLACE FUNCTION polybot.tenant_for_token(hash bytea) RETURNS uuid
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT t.tenant_id FROM public.api_tokens t
    JOIN public.tenants n ON n.id = t.tenant_id
    WHERE t.token_hash = hash AND t.revoked_at IS NULL
      AND t.expires_at > pg_catalog.now()
      AND n.state NOT IN ('offboarding', 'offboarded')
$$;

RESET ROLE;
