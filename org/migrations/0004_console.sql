-- The admin console (docs/console.md): admins, their passkeys, one-time enrolment links,
-- sessions and WebAuthn ceremonies in progress. Portable SQL: TEXT and BIGINT only, times in
-- RFC 3339 UTC, secrets as their SHA-256 in hex. Everything a server node needs to finish a
-- sign-in or check a session is here, so any node behind a load balancer can serve it.

-- A console administrator. role: owner (everything), key_admin (users and keys), auditor
-- (read only). user_handle is the WebAuthn user id (a UUID), never the e-mail address.
CREATE TABLE console_admins (
    id TEXT PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('owner', 'key_admin', 'auditor')),
    user_handle TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL
);

-- An admin's passkey as webauthn-rs serialises it (public key, credential id, counter).
CREATE TABLE console_passkeys (
    cred_id TEXT PRIMARY KEY,
    admin_id TEXT NOT NULL REFERENCES console_admins (id),
    passkey_json TEXT NOT NULL,
    created_at TEXT NOT NULL,
    last_used_at TEXT
);

-- One-time links that let a person register an admin passkey: made by `init` (the first
-- owner, e-mail given on the page) or by an owner in the console. Single use, expiring.
CREATE TABLE console_admin_invites (
    id TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    email TEXT,
    role TEXT NOT NULL CHECK (role IN ('owner', 'key_admin', 'auditor')),
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    used_at TEXT
);

-- Signed-in admins: the cookie holds a 256-bit random id, the table only its SHA-256.
CREATE TABLE console_sessions (
    id_hash TEXT PRIMARY KEY,
    admin_id TEXT NOT NULL REFERENCES console_admins (id),
    created_at TEXT NOT NULL,
    last_seen_at TEXT NOT NULL
);

-- A WebAuthn ceremony between its start and finish (challenge and options, no secret),
-- looked up by the SHA-256 of a random id the browser holds; deleted when finished.
CREATE TABLE console_ceremonies (
    id_hash TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('enrol', 'sign_in')),
    subject TEXT NOT NULL,
    state_json TEXT NOT NULL,
    expires_at TEXT NOT NULL
);

-- Users provisioned by a directory over SCIM 2.0 (RFC 7643/7644), e.g. Entra ID or Okta.
-- Creating one invites its address; deactivating or deleting one suspends its keys and keeps
-- the record (deleted_at set: the directory no longer sees it).
CREATE TABLE scim_users (
    id TEXT PRIMARY KEY,
    user_name TEXT NOT NULL UNIQUE,
    external_id TEXT,
    display_name TEXT NOT NULL,
    active BIGINT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    deleted_at TEXT
);

-- Groups a directory provisions over SCIM, and their members (SCIM users). Kept for the
-- directory's sake (and later per-group policy); deleting a group forgets it.
CREATE TABLE scim_groups (
    id TEXT PRIMARY KEY,
    display_name TEXT NOT NULL UNIQUE,
    external_id TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE scim_group_members (
    group_id TEXT NOT NULL REFERENCES scim_groups (id),
    user_id TEXT NOT NULL REFERENCES scim_users (id),
    PRIMARY KEY (group_id, user_id)
);
