-- doorman-sqlx schema 1 (PostgreSQL).
-- Credentials appear only as SHA-256 hashes (32-byte BYTEA); times are
-- unix seconds; scopes are space-joined; lists are JSON arrays.

CREATE TABLE doorman_clients (
    client_id       TEXT PRIMARY KEY,
    secret_hash     BYTEA CHECK (secret_hash IS NULL OR octet_length(secret_hash) = 32),
    name            TEXT NOT NULL,
    description     TEXT NOT NULL,
    redirect_uris   TEXT NOT NULL,
    scope           TEXT NOT NULL,
    grant_types     TEXT NOT NULL,
    trusted         BOOLEAN NOT NULL,
    released_claims TEXT,
    created_at      BIGINT NOT NULL
);

CREATE TABLE doorman_codes (
    hash                  BYTEA PRIMARY KEY CHECK (octet_length(hash) = 32),
    grant_id              TEXT NOT NULL,
    client_id             TEXT NOT NULL,
    user_id               TEXT NOT NULL,
    redirect_uri          TEXT NOT NULL,
    redirect_uri_explicit BOOLEAN NOT NULL,
    scope                 TEXT NOT NULL,
    code_challenge        TEXT,
    issued_at             BIGINT NOT NULL,
    expires_at            BIGINT NOT NULL,
    consumed_at           BIGINT
);
CREATE INDEX doorman_codes_client_user ON doorman_codes (client_id, user_id);
CREATE INDEX doorman_codes_grant ON doorman_codes (grant_id);
CREATE INDEX doorman_codes_expires ON doorman_codes (expires_at);

-- A revoked grant stays as a marker (revoked = TRUE) so that it can never
-- be created again; a grant revoked before it existed is a marker with NULLs.
CREATE TABLE doorman_grants (
    id         TEXT PRIMARY KEY,
    client_id  TEXT,
    user_id    TEXT,
    scope      TEXT NOT NULL DEFAULT '',
    created_at BIGINT,
    revoked    BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX doorman_grants_client_user ON doorman_grants (client_id, user_id);

CREATE TABLE doorman_tokens (
    hash        BYTEA PRIMARY KEY CHECK (octet_length(hash) = 32),
    kind        TEXT NOT NULL CHECK (kind IN ('access', 'refresh')),
    grant_id    TEXT NOT NULL,
    client_id   TEXT NOT NULL,
    user_id     TEXT,
    scope       TEXT NOT NULL,
    issued_at   BIGINT NOT NULL,
    expires_at  BIGINT,
    consumed_at BIGINT
);
CREATE INDEX doorman_tokens_grant ON doorman_tokens (grant_id);
CREATE INDEX doorman_tokens_expires ON doorman_tokens (expires_at) WHERE expires_at IS NOT NULL;

CREATE TABLE doorman_consents (
    user_id    TEXT NOT NULL,
    client_id  TEXT NOT NULL,
    scope      TEXT NOT NULL,
    granted_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, client_id)
);
CREATE INDEX doorman_consents_client ON doorman_consents (client_id);
