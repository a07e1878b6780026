-- Live execution (issue 18).
--
-- `shadow` joins the tenant modes: orders are built and signed with the
-- tenant's keys and recorded as they would have been sent, never sent.
-- Trades stay `paper` or `live` (a shadow order never fills).
--
-- The worker records what it found at the venue when it starts (open
-- orders, positions, balances) in the tenant's audit log, so it may append
-- there; it still reads nothing of it.

SET LOCAL ROLE polybot_owner;
ALTER TABLE tenants DROP CONSTRAINT tenants_mode_check;
ALTER TABLE tenants
    ADD CONSTRAINT tenants_mode_check CHECK (mode IN ('paper', 'shadow', 'live'));

GRANT INSERT ON audit_log TO polybot_worker;
RESET ROLE;
