"""The health monitor's verdicts in PostgreSQL: one row per agent per monitor run.

A monitor run retried after a crash writes each agent's row once (unique per
run and agent), and "the previous status" ignores the run being recorded, so
a retry never sees its own verdicts as the past.
"""

from __future__ import annotations

import json

import asyncpg

from agents.health import AgentHealth, AgentObservation, HealthStatus


class HealthSnapshots:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def record(
        self,
        monitor_run: str,
        taken_at: object,
        verdicts: list[AgentHealth],
        observations: list[AgentObservation],
    ) -> dict[str, HealthStatus]:
        """Store this run's verdicts; return each agent's status from the run before."""
        ids = [h.agent_id for h in verdicts]
        observed = {o.agent_id: o for o in observations}
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                "SELECT DISTINCT ON (agent_id) agent_id, status FROM health_snapshots"
                " WHERE agent_id = ANY($1::text[]) AND monitor_run <> $2 ORDER BY agent_id, seq DESC",
                ids,
                monitor_run,
            )
            await conn.executemany(
                "INSERT INTO health_snapshots (monitor_run, taken_at, agent_id, agent_type, status, reasons,"
                " observation) VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7::jsonb)"
                " ON CONFLICT (monitor_run, agent_id) DO NOTHING",
                [
                    (
                        monitor_run,
                        taken_at,
                        h.agent_id,
                        h.agent_type,
                        h.status.value,
                        json.dumps(h.reasons),
                        observed[h.agent_id].model_dump_json() if h.agent_id in observed else "{}",
                    )
                    for h in verdicts
                ],
            )
        return {r["agent_id"]: HealthStatus(r["status"]) for r in rows}
