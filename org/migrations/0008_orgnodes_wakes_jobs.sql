-- Wake-ups shared by every server node (docs/org.md, "Wake-ups"): when the key's next wake
-- may go (milliseconds since the Unix epoch, taken by one conditional UPDATE so exactly one
-- node sends) and the last wake's outcome, shown in the inventory. Never a token or URL.
ALTER TABLE keys ADD COLUMN wake_due_at BIGINT;
ALTER TABLE keys ADD COLUMN last_wake_at TEXT;
ALTER TABLE keys ADD COLUMN last_wake_outcome TEXT;
ALTER TABLE keys ADD COLUMN last_wake_refusal TEXT;

-- The order of a key's registration jobs (docs/org.md, "Registering on the user's behalf"):
-- times are kept to the second, so two jobs made in one second had none. Each key counts the
-- jobs made for it, and a job takes the next number in the transaction that makes it (the
-- key's row is locked meanwhile on PostgreSQL, so nodes creating jobs at once queue). Jobs
-- already made are numbered by time, then id.
ALTER TABLE keys ADD COLUMN jobs_made BIGINT NOT NULL DEFAULT 0;
ALTER TABLE registrations ADD COLUMN job_seq BIGINT;
UPDATE registrations SET job_seq = (
    SELECT COUNT(*) FROM registrations r WHERE r.key_id = registrations.key_id
    AND (r.created_at < registrations.created_at
         OR (r.created_at = registrations.created_at AND r.id <= registrations.id)));
UPDATE keys SET jobs_made = (SELECT COUNT(*) FROM registrations r WHERE r.key_id = keys.id);
CREATE UNIQUE INDEX registrations_job_order ON registrations (key_id, job_seq);

-- The server's own post of a completed registration to Microsoft Graph (`serve --graph-url`):
-- the Graph user it goes to, and the post's state (NULL: not asked; `due` once completed,
-- `posting` while one node posts it, then `posted` or `failed`), time and detail (Graph's
-- HTTP status and error code; never the token).
ALTER TABLE registrations ADD COLUMN graph_user TEXT;
ALTER TABLE registrations ADD COLUMN graph_post TEXT;
ALTER TABLE registrations ADD COLUMN graph_post_at TEXT;
ALTER TABLE registrations ADD COLUMN graph_post_detail TEXT;
CREATE INDEX registrations_graph_post ON registrations (graph_post);
