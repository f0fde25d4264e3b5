"""``aiops what-if AGENT --config FILE``: a candidate config against the agent's recorded window."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from aiops.cli.audit import parse_since
from aiops.cli.common import input_file_option, load_config, run
from aiops.cli.output import BadInput, console, emit, settings, table
from aiops.contracts.config import AgentConfig
from aiops.whatif import DecisionView, WhatIfReport

SinceOption = Annotated[
    str,
    typer.Option("--since", metavar="7d|ISO-TIME", help="the window starts this long ago, or at this time"),
]
UntilOption = Annotated[
    str | None, typer.Option("--until", metavar="ISO-TIME", help="the window ends here (default: now)")
]
LimitOption = Annotated[
    int, typer.Option("--limit", "-n", min=0, max=100_000, help="list at most this many changed decisions")
]


def _progress(rows: int) -> None:
    """Rows read so far, on stderr (one line, rewritten on a terminal)."""
    end = "\r" if sys.stderr.isatty() else "\n"
    print(f"what-if: {rows} audit rows read", end=end, file=sys.stderr, flush=True)


def compute(
    ctx: typer.Context, candidate: AgentConfig, since: str, until: str | None, limit: int
) -> WhatIfReport:
    start = parse_since(since)
    end = parse_since(until) if until else None
    report = run(
        ctx,
        lambda aiops: aiops.config.what_if(candidate, start, end, listed_limit=limit, progress=_progress),
    )
    if sys.stderr.isatty():
        print(file=sys.stderr)
    return report


def _verdict(view: DecisionView) -> str:
    """``approval 2 of sre,admin``: the verdict, and for an approval its quorum and roles."""
    if not view.allowed_roles:
        return view.verdict.value
    return f"{view.verdict.value} {view.required_approvals} of {','.join(view.allowed_roles)}"


def render(report: WhatIfReport, stderr: bool = False) -> None:
    """The summary table, the event changes, then the changed decisions."""
    out = console(stderr)
    window = f"since {_when(report.since)}" + (f" until {_when(report.until)}" if report.until else "")
    out.print(
        f"what-if for agent {report.agent_id} ({report.agent_type}), {window}: "
        f"{report.rows_read} audit rows, {report.actions} proposed actions, {report.seconds:g}s"
    )
    out.print(f"proposals: {report.proposals_note}")
    if not report.chain_linked:
        out.print(f"warning: {report.chain_problem}")
    rows = [(c.verdict.value, c.recorded, c.candidate, c.candidate - c.recorded) for c in report.summary]
    out.print(table(["VERDICT", "RECORDED", "CANDIDATE", "CHANGE"], rows, title="Proposed actions"))
    ev = report.events
    out.print(
        table(
            ["EVENTS", "RECORDED", "CANDIDATE", "NEWLY", "NO LONGER"],
            [
                (
                    "filtered",
                    ev.filtered_recorded,
                    ev.filtered_candidate,
                    ev.now_filtered,
                    ev.no_longer_filtered,
                ),
                ("grouped", ev.grouped_recorded, ev.grouped_candidate, ev.now_grouped, ev.no_longer_grouped),
            ],
            title=f"Events ({ev.events}; {ev.decision_errors} decision errors; "
            f"{ev.incidents_candidate} incidents under the candidate)",
        )
    )
    changed = [
        (
            d.at,
            d.action_id,
            d.risk,
            _verdict(d.recorded),
            _verdict(d.candidate),
            d.recorded_status,
            d.candidate.reason,
        )
        for d in report.changed_decisions
    ]
    title = f"Changed decisions: {report.changed}"
    if report.changed > len(changed):
        title += f" (first {len(changed)} listed; raise --limit for more)"
    out.print(
        table(["WHEN", "ACTION", "RISK", "RECORDED", "CANDIDATE", "ENDED", "WHY NOW"], changed, title=title)
    )
    for note in report.notes:
        out.print(f"note: {note}")


def _when(at: datetime | None) -> str:
    return at.isoformat(timespec="seconds") if at else "the start"


def what_if(
    ctx: typer.Context,
    agent: Annotated[str, typer.Argument(metavar="AGENT", help="the agent's id")],
    config_file: Annotated[Path, input_file_option("--config", "-c", help="the candidate AgentConfig")],
    since: SinceOption = "7d",
    until: UntilOption = None,
    limit: LimitOption = 200,
) -> None:
    """What a candidate config would have done with what the agent really received and proposed.

    Reads the agent's audit log for the window (read-only: nothing is started, written or
    executed) and judges every recorded proposal with the candidate's policy, rate limit and
    circuit breaker, and every event with its filter and grouping. Progress on stderr. Exit 0
    with the report (even when decisions change), 1 when the audit log cannot be read, 2 on
    bad input. See docs/what-if.md.
    """
    candidate = load_config(config_file)
    if candidate.id != agent:
        raise BadInput(f"{config_file}: the config is for agent {candidate.id!r}, not {agent!r}")
    report = compute(ctx, candidate, since, until, limit)
    emit(ctx, report, lambda: render(report, stderr=settings(ctx).json))
