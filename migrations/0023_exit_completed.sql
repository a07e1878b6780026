-- A worker exit first seen part-way (the task stopping, its container's exit
-- code not yet known) is completed by the sighting that knows the code, the
-- task's state-change event: the control plane may fill in `exit_code` and
-- `reason` of a row it recorded without a code. The row still counts once.

SET LOCAL ROLE polybot_owner;

GRANT UPDATE (exit_code, reason) ON worker_exits TO polybot_control;

RESET ROLE;
