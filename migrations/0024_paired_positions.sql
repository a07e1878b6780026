-- The paired-position ledger (issue 19): one row per cross-venue pair a
-- worker sent (a Polymarket leg and a Kalshi leg that together pay 1).
--
-- The worker writes the row `open` before it sends either leg, with both
-- legs' client order ids, so that a worker stopped mid-pair leaves a row
-- its successor finds and settles from the venues' fills. After the legs
-- answered (and any repair), the row says how the pair ended: `locked`
-- (both legs filled equally), `completed` (the short leg was bought up to
-- the long one), `unwound` (the long leg's excess was sold back), `broken`
-- (the legs are still unequal), or `unfilled` (nothing filled).
--
-- `legs` holds every order of the pair (venue, market, side, price, size,
-- fills, fees, client and venue order ids); `matched` the complete sets
-- held; `locked_edge` what they lock in after fees; `realised_loss` what
-- unwinding cost; `resolution` what happens when the markets resolve.

SET LOCAL ROLE polybot_owner;

CREATE TABLE paired_positions (
    id             uuid PRIMARY KEY,
    tenant_id      uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    epoch          bigint NOT NULL,
    strategy       text NOT NULL,
    -- The engine's opportunity number within the worker's run.
    opportunity    bigint NOT NULL,
    status         text NOT NULL
                   CHECK (status IN ('open', 'locked', 'completed', 'unwound', 'broken', 'unfilled')),
    matched        numeric NOT NULL DEFAULT 0,
    locked_edge    numeric NOT NULL DEFAULT 0,
    realised_loss  numeric NOT NULL DEFAULT 0,
    legs           jsonb NOT NULL,
    resolution     text NOT NULL DEFAULT '',
    note           text,
    opened_at      timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX paired_positions_tenant_idx ON paired_positions (tenant_id, opened_at DESC, id DESC);
-- A worker's start looks for the pairs its predecessors left open.
CREATE INDEX paired_positions_open_idx ON paired_positions (tenant_id) WHERE status = 'open';
SELECT polybot.protect_tenant_table('paired_positions');

GRANT SELECT, INSERT, UPDATE ON paired_positions TO polybot_worker;
-- The control plane reads and writes every tenant table, row level security permitting.
GRANT SELECT, INSERT, UPDATE, DELETE ON paired_positions TO polybot_control;

RESET ROLE;
