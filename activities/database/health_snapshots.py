"""The health monitor's verdicts in PostgreSQL: one row per agent per monitor run.

A monitor run retried after a crash writes each agent's row once (unique per
run and agent), and "the previous status" ignores the run being recorded, so
a retry never sees its own verdicts as the past.

Agents the monitor judged in groups from visibility alone (their health summary,
see ``aiops/contracts/health_summary.py``) get a row only when their status differs from
their last one (or they have none), and healthy agents it only counted get none:
a fleet of healthy agents costs no rows per pass. An agent whose last row is not
healthy is listed by the next pass, so its recovery is recorded too.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import asyncpg

from aiops.contracts.health import AgentHealth, AgentObservation, HealthStatus


class HealthSnapshots:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def record(
        self,
        monitor_run: str,
        taken_at: object,
        verdicts: list[AgentHealth],
        observations: list[AgentObservation],
        grouped: Sequence[AgentHealth] = (),
    ) -> dict[str, HealthStatus]:
        """Store this run's verdicts (``grouped`` ones on change); return each agent's status from
        the run before."""
        ids = [h.agent_id for h in [*verdicts, *grouped]]
        observed = {o.agent_id: o for o in observations}
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                "SELECT DISTINCT ON (agent_id) agent_id, status FROM health_snapshots"
                " WHERE agent_id = ANY($1::text[]) AND monitor_run <> $2 ORDER BY agent_id, seq DESC",
                ids,
                monitor_run,
            )
            before = {r["agent_id"]: r["status"] for r in rows}
            changed = [h for h in grouped if before.get(h.agent_id) != h.status.value]
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
                    for h in [*verdicts, *changed]
                ],
            )
        return {r["agent_id"]: HealthStatus(r["status"]) for r in rows}

    async def last_not_healthy(self, within_days: int = 7) -> dict[str, HealthStatus]:
        """Agents whose latest verdict (of the last ``within_days``) is not healthy: the monitor
        looks for their recovery, since healthy agents are counted rather than listed."""
        rows = await self.pool.fetch(
            "SELECT agent_id, status FROM"
            " (SELECT DISTINCT ON (agent_id) agent_id, status FROM health_snapshots"
            " WHERE agent_id IN (SELECT agent_id FROM health_snapshots WHERE status <> 'healthy'"
            " AND taken_at > now() - make_interval(days => $1))"
            " ORDER BY agent_id, seq DESC) latest WHERE status <> 'healthy'",
            within_days,
        )
        return {r["agent_id"]: HealthStatus(r["status"]) for r in rows}
