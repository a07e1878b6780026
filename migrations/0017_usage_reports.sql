-- Issue 21: usage reported to Stripe as meter events, one row per tenant,
-- day and metric. The `identifier` is the meter event's (derived from the
-- tenant, the day and the metric), so a resend after a crash is dropped by
-- Stripe; the row tells the reporter not to send it again at all.

SET LOCAL ROLE polybot_owner;

CREATE TABLE usage_reports (
    tenant_id    uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    day          date NOT NULL,
    metric       text NOT NULL CHECK (metric IN ('worker_minutes', 'orders', 'api_calls')),
    value        bigint NOT NULL CHECK (value >= 0),
    identifier   text NOT NULL UNIQUE CHECK (length(identifier) <= 100),
    reported_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, day, metric)
);
SELECT polybot.protect_tenant_table('usage_reports');

GRANT SELECT, INSERT, DELETE ON usage_reports TO polybot_control;

RESET ROLE;
