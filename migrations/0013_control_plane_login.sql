-- The control plane logs in as its own role (`polybot migrate` creates it:
-- LOGIN, member of polybot_control, no superuser, no BYPASSRLS) instead of
-- the administrator. Before it switches to polybot_control it reads the
-- migration history, to refuse to serve a schema older than itself.

GRANT SELECT ON TABLE _sqlx_migrations TO polybot_control;
