-- Wake-ups shared by every server node (docs/org.md, "Wake-ups"): when the key's next wake
-- may go (milliseconds since the Unix epoch, taken by one conditional UPDATE so exactly one
-- node sends) and the last wake's outcome, shown in the inventory. Never a token or URL.
ALTER TABLE keys ADD COLUMN wake_due_at BIGINT;
ALTER TABLE keys ADD COLUMN last_wake_at TEXT;
ALTER TABLE keys ADD COLUMN last_wake_outcome TEXT;
ALTER TABLE keys ADD COLUMN last_wake_refusal TEXT;
