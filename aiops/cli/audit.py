"""``aiops audit``: read the audit log and verify its hash chains (needs ``DATABASE_URL``)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer

from activities.database.audit_log import AuditRow, ChainReport
from aiops.cli.common import action_workflow_id, run
from aiops.cli.output import (
    BadInput,
    Failed,
    TimesOption,
    compact,
    console,
    emit,
    repeat,
    report_error,
    table,
    when,
)

app = typer.Typer(help="Read the audit log and verify its tamper-evident hash chains.", no_args_is_help=True)

_RELATIVE = re.compile(r"\A\s*(\d+)\s*([smhdw])\s*\Z")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """``90s``, ``15m``, ``1h``, ``2d``, ``1w`` ago, or an ISO time (UTC unless it names a zone)."""
    match = _RELATIVE.match(text)
    if match:
        amount, unit = int(match.group(1)), match.group(2)
        return (now or datetime.now(UTC)) - timedelta(**{_UNITS[unit]: amount})
    try:
        at = datetime.fromisoformat(text.strip())
    except ValueError:
        raise BadInput(
            f"--since {text!r}: give a duration (15m, 1h, 2d) or an ISO time such as 2026-05-01T12:00"
        ) from None
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


@app.command("tail")
def tail(
    ctx: typer.Context,
    agent: Annotated[str | None, typer.Option("--agent", "-a", help="only this agent's rows")] = None,
    action: Annotated[
        str | None, typer.Option("--action", help="only this action's rows (action-<agent>:<event>)")
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", metavar="1h|ISO-TIME", help="only rows that happened since then")
    ] = None,
    lines: Annotated[int, typer.Option("-n", "--lines", min=1, max=10000, help="the last N rows")] = 50,
    follow: Annotated[
        float | None,
        typer.Option(
            "--follow",
            "-f",
            min=0.2,
            metavar="SECONDS",
            help="then keep printing new rows as they land, polling every SECONDS, until Ctrl-C",
        ),
    ] = None,
    times: TimesOption = None,
) -> None:
    """The last N audit rows, oldest first: when, agent, action, step, actor, detail."""
    start = parse_since(since) if since else None
    action_id = action_workflow_id(action) if action else None
    last_seq = 0

    def once(n: int) -> None:
        nonlocal start, last_seq
        rows = run(
            ctx,
            lambda aiops: aiops.audit.rows(
                agent_id=agent, action_id=action_id, since=start, limit=lines, newest_first=True
            ),
        )
        rows = [r for r in reversed(rows) if r.seq > last_seq]
        if rows:
            last_seq = max(r.seq for r in rows)
            start = min(r.occurred_at for r in rows) if start is None else start
        if n == 0 or rows:
            _print_rows(ctx, rows, quiet_when_empty=n > 0)

    repeat(follow, times, once)


def _print_rows(ctx: typer.Context, rows: list[AuditRow], quiet_when_empty: bool) -> None:
    def render() -> None:
        if not rows:
            if not quiet_when_empty:
                typer.echo("no audit rows match")
            return
        body = [
            (
                r.seq,
                when(r.occurred_at),
                r.agent_id,
                r.action_id,
                r.step,
                r.actor or "-",
                compact(r.detail, 120),
            )
            for r in rows
        ]
        console().print(table(["SEQ", "AT", "AGENT", "ACTION", "STEP", "ACTOR", "DETAIL"], body))

    emit(ctx, rows, render)


@app.command("verify")
def verify(
    ctx: typer.Context,
    agent: Annotated[
        str | None,
        typer.Argument(metavar="[AGENT]", help="check this agent's chain (default: every agent's)"),
    ] = None,
) -> None:
    """Walk the hash chain of one agent, or of all; exit 1 naming the first broken row if any is broken."""
    reports: list[ChainReport] = run(ctx, lambda aiops: aiops.audit.verify(agent))
    if agent is not None and all(r.rows_checked == 0 for r in reports):
        raise Failed(f"the audit log has no rows for agent {agent!r}")

    def render() -> None:
        if not reports:
            typer.echo("the audit log is empty")
            return
        body = [
            (
                r.agent_id,
                r.rows_checked,
                "ok" if r.ok else f"BROKEN at row {r.broken_at_seq}",
                r.problem or "-",
            )
            for r in reports
        ]
        console().print(table(["AGENT", "ROWS", "CHAIN", "PROBLEM"], body))

    emit(ctx, reports, render)
    broken = [r for r in reports if not r.ok]
    if broken:
        first = broken[0]
        others = f" ({len(broken) - 1} more broken chains)" if len(broken) > 1 else ""
        report_error(
            f"the audit chain of agent {first.agent_id} is broken at row {first.broken_at_seq}: "
            f"{first.problem}{others}"
        )
        raise typer.Exit(1)
