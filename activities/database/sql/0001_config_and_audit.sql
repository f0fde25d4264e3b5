-- Versioned, append-only agent configuration (DESIGN.md section 6).
CREATE TABLE agent_config_versions (
    agent_id   text        NOT NULL,
    version    integer     NOT NULL CHECK (version >= 1),
    config     jsonb       NOT NULL,
    author     text        NOT NULL,
    comment    text        NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    request_id text        UNIQUE,  -- the apply request that stored it: a retried store is one version
    PRIMARY KEY (agent_id, version)
);

-- Append-only, hash-chained audit log (DESIGN.md section 7). One row per step;
-- idempotency_key makes a retried activity write once. occurred_at is when the step
-- happened (workflow time); recorded_at is when the row landed (later after an outage).
CREATE TABLE audit_log (
    seq             bigserial   PRIMARY KEY,
    agent_id        text        NOT NULL,
    action_id       text,
    step            text        NOT NULL,
    idempotency_key text        NOT NULL UNIQUE,
    actor           text        NOT NULL DEFAULT '',
    detail          jsonb       NOT NULL DEFAULT '{}'::jsonb,
    occurred_at     timestamptz NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    prev_hash       text        NOT NULL,
    row_hash        text        NOT NULL
);
CREATE INDEX audit_log_agent_seq ON audit_log (agent_id, seq);
CREATE INDEX audit_log_action ON audit_log (action_id, seq);
CREATE INDEX audit_log_occurred ON audit_log (occurred_at);

-- Both tables are append-only: the application never updates or deletes a row, and the
-- database refuses it too (a superuser can still bypass triggers; the hash chain shows it).
CREATE FUNCTION aiops_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP;
END $$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION aiops_refuse_change();
CREATE TRIGGER agent_config_versions_append_only BEFORE UPDATE OR DELETE ON agent_config_versions
    FOR EACH ROW EXECUTE FUNCTION aiops_refuse_change();

-- Every stored config version is announced, whoever wrote it, so workers can hot-reload
-- the running agent (LISTEN aiops_config).
CREATE FUNCTION aiops_announce_config() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('aiops_config',
        json_build_object('agent_id', NEW.agent_id, 'version', NEW.version)::text);
    RETURN NEW;
END $$;
CREATE TRIGGER agent_config_versions_announce AFTER INSERT ON agent_config_versions
    FOR EACH ROW EXECUTE FUNCTION aiops_announce_config();
