-- Who caused a key's last status change: an admin (REST API or console), the directory
-- (SCIM deactivation), or the stale-key policy. SCIM reactivation resumes only the keys the
-- directory suspended. The organisation's stale-key policy: suspend active keys not seen for
-- this many days (NULL: off). And the `scim` API key scope, below.
ALTER TABLE keys ADD COLUMN status_cause TEXT CHECK (status_cause IN ('admin', 'directory', 'policy'));
ALTER TABLE org ADD COLUMN stale_suspend_days BIGINT;

-- API keys get a third scope, `scim`: the directory's key, good for /scim/v2 only (and the
-- only scope SCIM takes). SQLite cannot change a column's CHECK, so the table is rebuilt
-- (the same statements run on PostgreSQL).
CREATE TABLE api_keys_scoped (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    revoked_at TEXT,
    scope TEXT NOT NULL DEFAULT 'admin' CHECK (scope IN ('admin', 'read', 'scim')),
    expires_at TEXT
);
INSERT INTO api_keys_scoped (id, name, key_hash, created_at, revoked_at, scope, expires_at)
    SELECT id, name, key_hash, created_at, revoked_at, scope, expires_at FROM api_keys;
DROP TABLE api_keys;
ALTER TABLE api_keys_scoped RENAME TO api_keys;
