-- Who caused a key's last status change: an admin (REST API or console), the directory
-- (SCIM deactivation), or the stale-key policy. SCIM reactivation resumes only the keys the
-- directory suspended. The organisation's stale-key policy: suspend active keys not seen for
-- this many days (NULL: off).
ALTER TABLE keys ADD COLUMN status_cause TEXT CHECK (status_cause IN ('admin', 'directory', 'policy'));
ALTER TABLE org ADD COLUMN stale_suspend_days BIGINT;
