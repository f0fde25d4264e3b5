"""How long ``aiops what-if`` takes over a busy agent's week: 100,000 events by default.

    python bench/what_if.py [--events 100000] [--action-every 10] [--filtered-every 20]

Starts a throwaway PostgreSQL (tests/support/postgres_server.py, as the tests do), writes one
agent's audit rows with the project's own writer (``AuditLog.append``, rows built by
``event_record`` as the agent builds them, and decision / action_finished rows as the action
workflow writes them), spread over seven days, then times ``what_if`` with a candidate that
raises the agent to ``full_auto`` with an automatic-execution limit. Prints the write time,
the what-if time, rows per second and the process's peak memory before and after the what-if
(the streaming keeps the latter flat).
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from activities.database.audit_log import AuditLog
from activities.database.migrations import migrate
from aiops.contracts.action import action_workflow_id
from aiops.contracts.activities import AuditRecord, AuditStep, EventDecision
from aiops.contracts.audit_rows import bounded_record, event_record
from aiops.contracts.config import AgentConfig, ApprovalSettings
from aiops.contracts.models import ActionType, AgentAction, AutomationLevel, SystemEvent
from aiops.whatif import what_if
from tests.support.postgres_server import PostgresServer

RISKS = ["low", "medium", "medium", "high", "critical"]
STATUSES = ["verified", "rejected", "verified", "failed", "expired"]


def rows_for(config: AgentConfig, n: int, at: datetime, args: argparse.Namespace) -> list[AuditRecord]:
    event = SystemEvent(
        id=f"evt-{n}",
        type="metric_threshold" if n % args.filtered_every == 0 else "alert",
        source=f"host-{n % 50}",
        timestamp=at,
        correlation_id=f"group-{n % 300}",
        data={},
    )
    filtered = event.type != "alert"
    acts = not filtered and n % args.action_every == 0
    action = (
        AgentAction(id="-", agent_id=config.id, type=ActionType.RUN_COMMAND, description="restart")
        if acts
        else None
    )
    decision = EventDecision(event_id=event.id, action=action)
    rows = [bounded_record(event_record(config.id, "run-1", event, decision, 0, 1, at, filtered=filtered))]
    if acts:
        action_id = action_workflow_id(config.id, event.id)
        risk = RISKS[(n // args.action_every) % len(RISKS)]
        auto = risk == "low"
        rows.append(
            AuditRecord(
                agent_id=config.id,
                action_id=action_id,
                step=AuditStep.DECISION,
                key=f"{action_id}/r:decision",
                occurred_at=at,
                detail={
                    "outcome": "auto_execute" if auto else "require_approval",
                    "reason": "bench",
                    "required_approvals": 0 if auto else (2 if risk == "critical" else 1),
                    "allowed_roles": [] if auto else ["sre", "admin"],
                    "risk_level": risk,
                    "description": "restart",
                    "event_id": event.id,
                    "event_type": event.type.value,
                    "correlation_id": event.correlation_id,
                    "config_version": 1,
                },
            )
        )
        status = "verified" if auto else STATUSES[(n // args.action_every) % len(STATUSES)]
        rows.append(
            AuditRecord(
                agent_id=config.id,
                action_id=action_id,
                step=AuditStep.ACTION_FINISHED,
                key=f"{action_id}/r:finished",
                occurred_at=at + timedelta(seconds=30),
                detail={"status": status, "note": ""},
            )
        )
    return rows


async def main(args: argparse.Namespace) -> None:
    server = PostgresServer()
    url = server.start()
    try:
        conn = await asyncpg.connect(url)
        await migrate(conn)
        await conn.close()
        pool = await asyncpg.create_pool(url, min_size=1, max_size=4)
        config = AgentConfig(id="busy", name="busy", type="bench-unknown", approval=ApprovalSettings())
        log = AuditLog(pool)
        start = datetime.now(UTC) - timedelta(days=7)
        step = timedelta(days=7) / args.events
        began, batch, written = time.monotonic(), [], 0
        for n in range(args.events):
            batch.extend(rows_for(config, n, start + step * n, args))
            if len(batch) >= 2000:
                written += await log.append(batch)
                batch = []
        written += await log.append(batch)
        wrote = time.monotonic() - began
        print(f"wrote {written} audit rows for {args.events} events in {wrote:.1f}s")
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        candidate = config.model_copy(
            update={
                "automation_level": AutomationLevel.FULL_AUTO,
                "approval": ApprovalSettings(max_auto_executions=20, auto_execution_window_seconds=3600),
            }
        )
        began = time.monotonic()
        report = await what_if(pool, candidate, since=start - timedelta(minutes=1), listed_limit=200)
        took = time.monotonic() - began
        rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(
            f"what-if: {report.rows_read} rows, {report.actions} actions, {report.changed} changed, "
            f"{took:.1f}s ({report.rows_read / took:,.0f} rows/s); chain linked: {report.chain_linked}"
        )
        print(f"peak RSS {rss_before / 1024:.0f} MiB before the what-if, {rss_after / 1024:.0f} MiB after")
        for c in report.summary:
            print(f"  {c.verdict.value:14} recorded {c.recorded:6}  candidate {c.candidate:6}")
        await pool.close()
    finally:
        server.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--action-every", type=int, default=10)
    parser.add_argument("--filtered-every", type=int, default=20)
    asyncio.run(main(parser.parse_args()))
