-- Versioned, append-only agent configuration (DESIGN.md section 6).
CREATE TABLE agent_config_versions (
    agent_id   text        NOT NULL,
    version    integer     NOT NULL CHECK (version >= 1),
    config     jsonb       NOT NULL,
    author     text        NOT NULL,
    comment    text        NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (agent_id, version)
);

-- Append-only, hash-chained audit log (DESIGN.md section 7). One row per action step;
-- idempotency_key makes a retried activity write once.
CREATE TABLE audit_log (
    seq             bigserial   PRIMARY KEY,
    agent_id        text        NOT NULL,
    action_id       text,
    step            text        NOT NULL,
    idempotency_key text        NOT NULL UNIQUE,
    actor           text,
    detail          jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    prev_hash       text        NOT NULL,
    row_hash        text        NOT NULL
);
CREATE INDEX audit_log_agent_seq ON audit_log (agent_id, seq);
CREATE INDEX audit_log_action ON audit_log (action_id);
