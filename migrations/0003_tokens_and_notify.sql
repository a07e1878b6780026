-- Bearer-token lookup across tenants, and the reconciler's wake-up channel.

SET LOCAL ROLE polybot_owner;

-- The tenant a (hashed) tenant token belongs to. Authentication runs before
-- the request's tenant is known, so this one lookup crosses tenants; it
-- returns nothing but the tenant id of a live token.
CREATE FUNCTION polybot.tenant_for_token(hash bytea) RETURNS uuid
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = public, pg_temp
AS $$
    SELECT t.tenant_id FROM api_tokens t
    JOIN tenants n ON n.id = t.tenant_id
    WHERE t.token_hash = hash AND t.revoked_at IS NULL
      AND n.state NOT IN ('offboarding', 'offboarded')
$$;
-- The function runs as the owner, on whom RLS is forced: it needs a policy
-- that lets it read tokens by hash without a tenant bound.
CREATE POLICY owner_token_lookup ON api_tokens FOR SELECT TO polybot_owner USING (true);
CREATE POLICY owner_token_lookup ON tenants FOR SELECT TO polybot_owner USING (true);

REVOKE ALL ON FUNCTION polybot.tenant_for_token(bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION polybot.tenant_for_token(bytea) TO polybot_control;

RESET ROLE;
