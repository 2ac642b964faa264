-- Activated devices and device authentication. Portable SQL (SQLite and PostgreSQL): TEXT
-- and BIGINT only, binary values as hex TEXT, times as RFC 3339 UTC TEXT.

-- One row per activated key: the device's public key (it authenticates the phone from now
-- on) and the enterprise attestation certificate issued to it.
CREATE TABLE devices (
    key_id TEXT PRIMARY KEY REFERENCES keys (id),
    public_key TEXT NOT NULL UNIQUE,
    enterprise_serial TEXT NOT NULL,
    enterprise_cert_pem TEXT NOT NULL,
    created_at TEXT NOT NULL
);

-- Single-use challenges a device signs to authenticate; in the database so that any server
-- node can check an answer to a challenge another node gave.
CREATE TABLE device_nonces (
    nonce TEXT PRIMARY KEY,
    key_id TEXT NOT NULL REFERENCES keys (id),
    expires_at TEXT NOT NULL
);

-- The last status change of a key: why and by whom (revoke, suspend, resume).
ALTER TABLE keys ADD COLUMN status_reason TEXT;
ALTER TABLE keys ADD COLUMN status_actor TEXT;
ALTER TABLE keys ADD COLUMN status_changed_at TEXT;
