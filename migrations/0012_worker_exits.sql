-- Worker exits, recorded once by the launcher's instance id (an ECS task
-- ARN), so that a reconciler that sees the same stopped task twice — from a
-- task state-change event and from its ListTasks backstop, or after a leader
-- failover — counts it once. Crash-loop counts and alerts follow from these
-- rows, never from a replica's memory.
--
-- And a failing launch (RunTask) backs off per tenant: `launch_failures`
-- counts the failures in a row, `backoff_until` says when the next try is.

SET LOCAL ROLE polybot_owner;

CREATE TABLE worker_exits (
    tenant_id    uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    instance_id  text NOT NULL CHECK (length(instance_id) BETWEEN 1 AND 2048),
    exit_code    integer,
    reason       text NOT NULL,
    -- the launcher was asked to stop it (not a crash)
    requested    boolean NOT NULL,
    -- counted as a crash (an exit nobody asked for while the tenant should run)
    crashed      boolean NOT NULL,
    exited_at    timestamptz NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, instance_id)
);
CREATE INDEX worker_exits_recorded_idx ON worker_exits (recorded_at);
SELECT polybot.protect_tenant_table('worker_exits');

ALTER TABLE tenant_runtime
    ADD COLUMN launch_failures integer NOT NULL DEFAULT 0 CHECK (launch_failures >= 0);

GRANT SELECT, INSERT ON worker_exits TO polybot_control;

-- ECS forgets a stopped task within hours and the events queue keeps a
-- message at most 4 days: an exit older than a week can no longer be seen
-- again, and its row goes.
CREATE POLICY owner_housekeeping_read ON worker_exits FOR SELECT TO polybot_owner USING (true);
CREATE POLICY owner_housekeeping_delete ON worker_exits FOR DELETE TO polybot_owner USING (true);

-- Deletes exits recorded before `keep`, at most `batch` rows per call.
CREATE FUNCTION polybot.prune_exits(keep interval, batch integer)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint;
BEGIN
    DELETE FROM public.worker_exits
    WHERE (tenant_id, instance_id) IN (
        SELECT e.tenant_id, e.instance_id FROM public.worker_exits e
        WHERE e.recorded_at < now() - keep LIMIT batch);
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;

REVOKE ALL ON FUNCTION polybot.prune_exits(interval, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION polybot.prune_exits(interval, integer) TO polybot_control;

RESET ROLE;
