-- Housekeeping: heartbeats arrive every few seconds per tenant (17 million a
-- day for 1,000 tenants) and idempotency records are only needed for a
-- retry window. The reconciler's leader prunes both, in bounded batches.

SET LOCAL ROLE polybot_owner;

-- The pruning function runs as the owner, on whom RLS is forced: it may see
-- and delete heartbeats without a tenant bound, and nothing else.
CREATE POLICY owner_housekeeping_read ON worker_heartbeats FOR SELECT TO polybot_owner USING (true);
CREATE POLICY owner_housekeeping_delete ON worker_heartbeats FOR DELETE TO polybot_owner USING (true);

-- Deletes heartbeats older than `keep_heartbeats` (always keeping each
-- tenant's newest) and idempotency records older than `keep_idempotency`,
-- at most `batch` rows of each per call. Returns what it deleted.
CREATE FUNCTION polybot.prune_history(keep_heartbeats interval, keep_idempotency interval, batch integer)
RETURNS TABLE (heartbeats bigint, idempotency_keys bigint)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = public, pg_temp
AS $$
DECLARE
    h bigint;
    i bigint;
BEGIN
    DELETE FROM worker_heartbeats
    WHERE id IN (
        SELECT w.id FROM worker_heartbeats w
        WHERE w.at < now() - keep_heartbeats
          AND w.id <> (SELECT x.id FROM worker_heartbeats x
                       WHERE x.tenant_id = w.tenant_id ORDER BY x.at DESC, x.id DESC LIMIT 1)
        LIMIT batch);
    GET DIAGNOSTICS h = ROW_COUNT;
    DELETE FROM idempotency_keys
    WHERE (scope, key) IN (
        SELECT k.scope, k.key FROM idempotency_keys k
        WHERE k.created_at < now() - keep_idempotency LIMIT batch);
    GET DIAGNOSTICS i = ROW_COUNT;
    RETURN QUERY SELECT h, i;
END
$$;

REVOKE ALL ON FUNCTION polybot.prune_history(interval, interval, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION polybot.prune_history(interval, interval, integer) TO polybot_control;

RESET ROLE;
