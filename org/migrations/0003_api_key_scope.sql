-- API keys get a scope and may expire; the inventory is listed in pages ordered by
-- (created_at, id), which this index serves.
ALTER TABLE api_keys ADD COLUMN scope TEXT NOT NULL DEFAULT 'admin' CHECK (scope IN ('admin', 'read'));
ALTER TABLE api_keys ADD COLUMN expires_at TEXT;
CREATE INDEX keys_by_created ON keys (created_at, id);
