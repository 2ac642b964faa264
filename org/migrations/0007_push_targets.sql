-- Where the organisation server wakes each activated key's phone (docs/org.md, "Wake-ups"):
-- one push target per key, replaced when the phone registers again, dropped when the provider
-- says it is no longer valid. The wake id is the phone's, carried by every wake-up.
CREATE TABLE push_targets (
    key_id TEXT PRIMARY KEY REFERENCES keys(id),
    provider TEXT NOT NULL CHECK (provider IN ('fcm', 'apns', 'webhook')),
    target TEXT NOT NULL,
    environment TEXT CHECK (environment IN ('production', 'sandbox')),
    wake_id TEXT NOT NULL,
    registered_at TEXT NOT NULL
);

-- Wake-ups owed, written in the transaction of the change that calls for one (a key's
-- revocation, suspension or resumption, a new registration job), so a wake goes out only for
-- a committed change. The sender takes a key's rows all at once: one wake covers them all.
CREATE TABLE push_wakes (
    id TEXT PRIMARY KEY,
    key_id TEXT NOT NULL,
    cause TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX push_wakes_key ON push_wakes (key_id);
