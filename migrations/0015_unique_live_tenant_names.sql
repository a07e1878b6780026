-- A tenant's name is unique among the tenants that are not offboarded, so
-- that a name finds one tenant (`polybot tenants show NAME`, the fleet).
-- An offboarded tenant gives its name back.
--
-- Databases that already hold live namesakes keep the oldest under its name
-- and suffix the others with the start of their id, so that the index can
-- be built; row level security is lifted for that one statement only.

SET LOCAL ROLE polybot_owner;
ALTER TABLE tenants NO FORCE ROW LEVEL SECURITY;
UPDATE tenants t
   SET name = left(t.name, 90) || ' (' || left(t.id::text, 8) || ')', updated_at = now()
 WHERE t.state <> 'offboarded'
   AND EXISTS (SELECT 1 FROM tenants o
                WHERE o.name = t.name AND o.state <> 'offboarded'
                  AND (o.created_at, o.id) < (t.created_at, t.id));
ALTER TABLE tenants FORCE ROW LEVEL SECURITY;
CREATE UNIQUE INDEX tenants_live_name_key ON tenants (name) WHERE state <> 'offboarded';

RESET ROLE;
