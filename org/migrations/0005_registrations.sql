-- Registrations on the user's behalf (docs/org.md, "Registering on the user's behalf"): the
-- admin posts a relying party's creation options for a key, the phone makes the credential at
-- its next sync and posts the attestation back. Portable SQL: TEXT only, times RFC 3339 UTC.
-- The client data (with the RP's challenge) is built and kept here so that the body handed
-- back to the admin is exactly what the phone signed for; nothing in a row is secret.
CREATE TABLE registrations (
    id TEXT PRIMARY KEY,
    key_id TEXT NOT NULL REFERENCES keys (id),
    status TEXT NOT NULL CHECK (status IN ('pending', 'completed', 'denied', 'expired')),
    rp_id TEXT NOT NULL,
    origin TEXT NOT NULL,
    display_name TEXT NOT NULL,
    -- What the phone is sent: rp, user, clientDataHash, parameters, the prompt's names.
    job_json TEXT NOT NULL,
    client_data_json TEXT NOT NULL,
    -- base64url of the credential id and attestation object, once completed.
    credential_id TEXT,
    attestation_object TEXT,
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    finished_at TEXT
);

CREATE INDEX registrations_by_key ON registrations (key_id, status);
