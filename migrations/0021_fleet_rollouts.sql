-- Issue 22: fleet-wide rollouts. A rollout carries a new worker image and/or
-- new worker settings to every tenant at a configured rate; the control
-- plane's reconciler leader drives it (`polybot-control-plane`'s `rollout`
-- module). `tenant_releases` is what each tenant's worker runs once a rollout
-- reached it; a tenant without a row runs the fleet's release (the changes
-- of every completed rollout, in order, over the launcher's configured image).

SET LOCAL ROLE polybot_owner;

-- Not tenant data: one row per rollout the operator started.
-- `next_at` is when the next tenant may begin (NULL: at the next step).
CREATE TABLE fleet_rollouts (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    image        text CHECK (image IS NULL OR length(image) BETWEEN 1 AND 255),
    -- Worker settings (plain environment) by name.
    settings     jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(settings) = 'object'),
    per_minute   integer NOT NULL CHECK (per_minute BETWEEN 1 AND 60),
    state        text NOT NULL DEFAULT 'running'
                 CHECK (state IN ('running', 'paused', 'aborted', 'done')),
    -- Why it is paused, aborted or done, in words.
    reason       text CHECK (length(reason) <= 500),
    next_at      timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    CHECK (image IS NOT NULL OR settings <> '{}'::jsonb),
    CHECK ((finished_at IS NOT NULL) = (state IN ('aborted', 'done')))
);
-- At most one rollout is unfinished: starting a second is refused by this
-- index (the API answers 409).
CREATE UNIQUE INDEX fleet_rollouts_one_unfinished ON fleet_rollouts ((true))
    WHERE state IN ('running', 'paused');

-- The release a rollout gave a tenant: its full image and settings (not the
-- change), `rolling` until its worker runs it, then `done`.
CREATE TABLE tenant_releases (
    tenant_id   uuid PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    rollout_id  bigint NOT NULL REFERENCES fleet_rollouts (id),
    image       text CHECK (image IS NULL OR length(image) BETWEEN 1 AND 255),
    settings    jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(settings) = 'object'),
    state       text NOT NULL CHECK (state IN ('rolling', 'done')),
    began_at    timestamptz NOT NULL,
    done_at     timestamptz,
    CHECK ((done_at IS NOT NULL) = (state = 'done'))
);
CREATE INDEX tenant_releases_rollout_idx ON tenant_releases (rollout_id, state);
SELECT polybot.protect_tenant_table('tenant_releases');

GRANT SELECT, INSERT, UPDATE ON fleet_rollouts TO polybot_control;
GRANT SELECT, INSERT, UPDATE, DELETE ON tenant_releases TO polybot_control;

RESET ROLE;
