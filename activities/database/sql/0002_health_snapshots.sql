-- The health monitor's verdicts, one row per agent per check (DESIGN.md section 8).
CREATE TABLE health_snapshots (
    seq         bigserial   PRIMARY KEY,
    monitor_run text        NOT NULL,
    taken_at    timestamptz NOT NULL,
    agent_id    text        NOT NULL,
    agent_type  text        NOT NULL,
    status      text        NOT NULL CHECK (status IN ('healthy', 'degraded', 'unhealthy')),
    reasons     jsonb       NOT NULL DEFAULT '[]'::jsonb,
    observation jsonb       NOT NULL DEFAULT '{}'::jsonb,
    UNIQUE (monitor_run, agent_id)
);
CREATE INDEX health_snapshots_agent ON health_snapshots (agent_id, seq DESC);
