"""Reading one agent's audit rows for a window, page by page, into a ``Simulation``.

Read-only: plain SELECTs on ``audit_log`` (never the writer, never a workflow, never an agent's
hooks other than the constructor and ``get_subscribed_event_types``). Rows come in chain order
(``seq``) in pages of ``PAGE`` found by key (``seq > last``), so memory does not grow with the
window. The window is the seq range from the first row that happened at or after ``since`` to
the last before ``until``; every row in it must link to the one before (the hash chain), else
the report says where a row is missing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import datetime

import asyncpg
from temporalio.client import Client

from agents.registry import default_factory, load_agent_modules
from aiops.contracts.config import AgentConfig
from aiops.whatif.models import WhatIfReport
from aiops.whatif.rerun import Proposals, rerun
from aiops.whatif.simulate import Simulation

PAGE = 5000
PURE = "pure"
NOT_RERUN = (
    "the audit log holds each event's type, source, severity and correlation, not its payload, so "
    "the decision hook cannot be re-run from it; the recorded proposals were judged again"
)


def agent_facts(candidate: AgentConfig) -> tuple[set[str] | None, str, list[str]]:
    """The event types the candidate's agent subscribes to (None when its type is not installed
    here), what the what-if does with proposals (``PURE`` when the hook may be re-run), and
    notes."""
    notes: list[str] = []
    try:
        load_agent_modules()
        cls = default_factory.agent_class(candidate.type)
        agent = cls(candidate)
        subscribed: set[str] | None = {t.value for t in agent.get_subscribed_event_types()}
    except Exception as err:  # another package's agent type, or settings it refuses
        notes.append(f"filtering is not re-evaluated: the agent type is not usable here ({err})"[:400])
        return None, NOT_RERUN, notes
    if cls.pure_decisions:
        return subscribed, PURE, notes
    return (
        subscribed,
        f"{candidate.type} does not declare pure decisions: the recorded proposals were reused",
        notes,
    )


async def what_if(
    pool: asyncpg.Pool,
    candidate: AgentConfig,
    since: datetime | None = None,
    until: datetime | None = None,
    listed_limit: int = 200,
    progress: Callable[[int], None] | None = None,
    client: Client | None = None,
) -> WhatIfReport:
    """What ``candidate`` would have done with its agent's recorded window. With ``client``
    and an agent type that declares pure decisions, its hook is re-run on the events the
    agent's workflow histories hold (``rerun.py``)."""
    started = time.monotonic()
    subscribed, proposals_note, notes = agent_facts(candidate)
    proposals: Proposals | None = None
    if proposals_note == PURE and client is None:
        proposals_note = f"{candidate.type} declares pure decisions, but {NOT_RERUN}"
    elif proposals_note == PURE and client is not None:
        try:
            proposals = await rerun(client, default_factory, candidate, since, until)
        except Exception as err:  # the hook cannot run here (its agent does not start): say so
            proposals_note = f"the decision hook could not be re-run here ({err}); {NOT_RERUN}"[:500]
    if proposals is not None:
        proposals_note = (
            f"{candidate.type} declares pure decisions: its hook was re-run with the candidate on "
            f"{len(proposals)} events from the agent's workflow histories; events those no longer "
            "hold (past retention) keep their recorded proposals"
        )
    report = WhatIfReport(
        agent_id=candidate.id,
        agent_type=candidate.type,
        candidate_version=candidate.version,
        since=since,
        until=until,
        proposals_note=proposals_note,
        proposals="rerun" if proposals is not None else "recorded",
        rerun_events=len(proposals or {}),
        notes=notes,
    )
    sim = Simulation(candidate, subscribed, listed_limit, proposals)
    agent_id = candidate.id
    first = await pool.fetchval(
        "SELECT min(seq) FROM audit_log WHERE agent_id = $1"
        " AND ($2::timestamptz IS NULL OR occurred_at >= $2)",
        agent_id,
        since,
    )
    if first is None:
        report.notes.append(f"the audit log has no rows of agent {agent_id} in the window")
        report.seconds = round(time.monotonic() - started, 3)
        return sim.report(report)
    last = await pool.fetchval(
        "SELECT max(seq) FROM audit_log WHERE agent_id = $1"
        " AND ($2::timestamptz IS NULL OR occurred_at < $2)",
        agent_id,
        until,
    )
    before = await pool.fetchval(
        "SELECT row_hash FROM audit_log WHERE agent_id = $1 AND seq < $2 ORDER BY seq DESC LIMIT 1",
        agent_id,
        first,
    )
    expected_prev = before or "0" * 64
    after = first - 1
    while last is not None and after < last:
        page = await pool.fetch(
            "SELECT seq, action_id, step, detail::text AS detail, occurred_at, prev_hash, row_hash"
            " FROM audit_log WHERE agent_id = $1 AND seq > $2 AND seq <= $3 ORDER BY seq LIMIT $4",
            agent_id,
            after,
            last,
            PAGE,
        )
        if not page:
            break
        for row in page:
            if report.chain_linked and row["prev_hash"] != expected_prev:
                report.chain_linked = False
                report.chain_problem = (
                    f"row {row['seq']} does not link to the row before it: rows are missing or altered "
                    f"(run `aiops audit verify {agent_id}`); the what-if read what is there"
                )
            expected_prev = row["row_hash"]
            detail = json.loads(row["detail"])
            sim.feed(
                row["step"], row["action_id"], detail if isinstance(detail, dict) else {}, row["occurred_at"]
            )
        report.rows_read += len(page)
        after = page[-1]["seq"]
        if progress is not None:
            progress(report.rows_read)
    report.seconds = round(time.monotonic() - started, 3)
    return sim.report(report)
