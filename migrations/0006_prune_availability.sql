-- Availability is kept per tenant and minute (1,440 rows a tenant a day);
-- the SLO looks back 30 days. The reconciler's leader prunes older minutes,
-- and timeline events older than the given age, in bounded batches.

SET LOCAL ROLE polybot_owner;

CREATE POLICY owner_housekeeping_read ON worker_availability FOR SELECT TO polybot_owner USING (true);
CREATE POLICY owner_housekeeping_delete ON worker_availability FOR DELETE TO polybot_owner USING (true);
CREATE POLICY owner_housekeeping_read ON tenant_runtime_events FOR SELECT TO polybot_owner USING (true);
CREATE POLICY owner_housekeeping_delete ON tenant_runtime_events FOR DELETE TO polybot_owner USING (true);

-- Deletes availability minutes older than `keep_availability` and timeline
-- events older than `keep_events`, at most `batch` rows of each per call.
CREATE FUNCTION polybot.prune_timeline(keep_availability interval, keep_events interval, batch integer)
RETURNS TABLE (availability bigint, events bigint)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = public, pg_temp
AS $$
DECLARE
    a bigint;
    e bigint;
BEGIN
    DELETE FROM worker_availability
    WHERE (tenant_id, minute) IN (
        SELECT w.tenant_id, w.minute FROM worker_availability w
        WHERE w.minute < now() - keep_availability LIMIT batch);
    GET DIAGNOSTICS a = ROW_COUNT;
    DELETE FROM tenant_runtime_events
    WHERE id IN (
        SELECT r.id FROM tenant_runtime_events r
        WHERE r.at < now() - keep_events LIMIT batch);
    GET DIAGNOSTICS e = ROW_COUNT;
    RETURN QUERY SELECT a, e;
END
$$;

REVOKE ALL ON FUNCTION polybot.prune_timeline(interval, interval, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION polybot.prune_timeline(interval, interval, integer) TO polybot_control;

RESET ROLE;
