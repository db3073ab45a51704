-- doorman-sqlx schema 1 (SQLite).
-- Credentials appear only as SHA-256 hashes (32-byte BLOBs); times are
-- unix seconds; scopes are space-joined; lists are JSON arrays.

CREATE TABLE doorman_clients (
    client_id       TEXT PRIMARY KEY NOT NULL,
    secret_hash     BLOB CHECK (secret_hash IS NULL OR length(secret_hash) = 32),
    name            TEXT NOT NULL,
    description     TEXT NOT NULL,
    redirect_uris   TEXT NOT NULL,
    scope           TEXT NOT NULL,
    grant_types     TEXT NOT NULL,
    trusted         INTEGER NOT NULL,
    released_claims TEXT,
    created_at      INTEGER NOT NULL
);

CREATE TABLE doorman_codes (
    hash                  BLOB PRIMARY KEY NOT NULL CHECK (length(hash) = 32),
    grant_id              TEXT NOT NULL,
    client_id             TEXT NOT NULL,
    user_id               TEXT NOT NULL,
    redirect_uri          TEXT NOT NULL,
    redirect_uri_explicit INTEGER NOT NULL,
    scope                 TEXT NOT NULL,
    code_challenge        TEXT,
    issued_at             INTEGER NOT NULL,
    expires_at            INTEGER NOT NULL,
    consumed_at           INTEGER
) WITHOUT ROWID;
CREATE INDEX doorman_codes_client_user ON doorman_codes (client_id, user_id);
CREATE INDEX doorman_codes_grant ON doorman_codes (grant_id);
CREATE INDEX doorman_codes_expires ON doorman_codes (expires_at);

-- A revoked grant stays as a marker (revoked = 1) so that it can never be
-- created again; a grant revoked before it existed is a marker with NULLs.
CREATE TABLE doorman_grants (
    id         TEXT PRIMARY KEY NOT NULL,
    client_id  TEXT,
    user_id    TEXT,
    scope      TEXT NOT NULL DEFAULT '',
    created_at INTEGER,
    revoked    INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX doorman_grants_client_user ON doorman_grants (client_id, user_id);

CREATE TABLE doorman_tokens (
    hash        BLOB PRIMARY KEY NOT NULL CHECK (length(hash) = 32),
    kind        TEXT NOT NULL CHECK (kind IN ('access', 'refresh')),
    grant_id    TEXT NOT NULL,
    client_id   TEXT NOT NULL,
    user_id     TEXT,
    scope       TEXT NOT NULL,
    issued_at   INTEGER NOT NULL,
    expires_at  INTEGER,
    consumed_at INTEGER
) WITHOUT ROWID;
CREATE INDEX doorman_tokens_grant ON doorman_tokens (grant_id);
CREATE INDEX doorman_tokens_expires ON doorman_tokens (expires_at) WHERE expires_at IS NOT NULL;

CREATE TABLE doorman_consents (
    user_id    TEXT NOT NULL,
    client_id  TEXT NOT NULL,
    scope      TEXT NOT NULL,
    granted_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, client_id)
) WITHOUT ROWID;
CREATE INDEX doorman_consents_client ON doorman_consents (client_id);
