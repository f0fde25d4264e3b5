-- The REST API's personal tokens and refused calls (docs/api.md).
-- A token is stored only as the SHA-256 of its text: a leaked table cannot be replayed.
CREATE TABLE api_tokens (
    id          text        PRIMARY KEY,
    owner       text        NOT NULL,
    roles       text[]      NOT NULL,
    token_hash  bytea       NOT NULL UNIQUE,
    comment     text        NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    revoked_at  timestamptz
);
CREATE INDEX api_tokens_owner ON api_tokens (owner);

-- Every call the API refused (401, 403): who (when known), what, why. A table of its own, so a
-- flood of refusals never touches an agent's hash-chained audit trail.
CREATE TABLE api_refusals (
    seq         bigserial   PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    who         text        NOT NULL,
    method      text        NOT NULL,
    path        text        NOT NULL,
    status      integer     NOT NULL,
    reason      text        NOT NULL,
    remote      text        NOT NULL DEFAULT ''
);
CREATE INDEX api_refusals_at ON api_refusals (at DESC);
