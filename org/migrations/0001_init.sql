-- The organisation server's schema. Portable SQL (SQLite now, PostgreSQL next): TEXT times in
-- RFC 3339 UTC, hex TEXT hashes, BLOB for sealed keys (BYTEA on PostgreSQL).

-- One organisation per state directory / database.
CREATE TABLE org (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    name TEXT NOT NULL,
    created_at TEXT NOT NULL,
    root_cert_pem TEXT NOT NULL,
    root_key_sealed BLOB NOT NULL,
    batch_cert_pem TEXT NOT NULL,
    batch_key_sealed BLOB NOT NULL,
    policy_json TEXT NOT NULL
);

-- Admin API keys: only the SHA-256 of the secret is kept.
CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);

-- The inventory: one row per organisation key, from invitation on.
CREATE TABLE keys (
    id TEXT PRIMARY KEY,
    email TEXT NOT NULL,
    display_name TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('invited', 'active', 'suspended', 'revoked')),
    created_at TEXT NOT NULL,
    activated_at TEXT,
    last_seen_at TEXT,
    device_name TEXT,
    platform TEXT
);

-- Invitations: the activation token is stored as its SHA-256 only; a resend replaces it.
CREATE TABLE invites (
    id TEXT PRIMARY KEY,
    key_id TEXT NOT NULL REFERENCES keys (id),
    token_hash TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    used_at TEXT
);

-- The append-only audit log. Each row's hash covers its fields and the previous row's hash;
-- seq as the primary key makes two concurrent appends collide instead of forking the chain.
CREATE TABLE audit (
    seq INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    subject TEXT NOT NULL,
    detail TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
