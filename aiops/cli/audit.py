"""``aiops audit``: read the audit log and verify its hash chains (needs ``DATABASE_URL``)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Annotated

import typer

from activities.database.audit_log import AuditPosition, AuditRow, ChainReport
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
from aiops.client import AiopsClient
from aiops.client.audit_export import (
    AuditExportError,
    FileReport,
    Format,
    lines,
    load_position,
    parse_position,
    save_position,
    verify_file,
)

app = typer.Typer(help="Read the audit log and verify its tamper-evident hash chains.", no_args_is_help=True)

_RELATIVE = re.compile(r"\A\s*(\d+)\s*([smhdw])\s*\Z")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(text: str, now: datetime | None = None, option: str = "--since") -> datetime:
    """``90s``, ``15m``, ``1h``, ``2d``, ``1w`` ago, or an ISO time (UTC unless it names a zone)."""
    match = _RELATIVE.match(text)
    if match:
        amount, unit = int(match.group(1)), match.group(2)
        return (now or datetime.now(UTC)) - timedelta(**{_UNITS[unit]: amount})
    try:
        at = datetime.fromisoformat(text.strip())
    except ValueError:
        raise BadInput(
            f"{option} {text!r}: give a duration (15m, 1h, 2d) or an ISO time such as 2026-05-01T12:00"
        ) from None
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


# The row filters ``tail`` and ``export`` share: declared once so both commands take them alike.
AgentFilter = Annotated[str | None, typer.Option("--agent", "-a", help="only this agent's rows")]
ActionFilter = Annotated[
    str | None, typer.Option("--action", help="only this action's rows (action-<agent>:<event>)")
]
SinceFilter = Annotated[
    str | None, typer.Option("--since", metavar="1h|ISO-TIME", help="only rows that happened since then")
]
UntilFilter = Annotated[
    str | None, typer.Option("--until", metavar="1h|ISO-TIME", help="only rows that happened before then")
]


@app.command("tail")
def tail(
    ctx: typer.Context,
    agent: AgentFilter = None,
    action: ActionFilter = None,
    since: SinceFilter = None,
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
    file: Annotated[
        str | None,
        typer.Option(
            "--file",
            metavar="EXPORT",
            help="verify an export (NDJSON or _bulk, `-` for stdin) offline instead of the database",
        ),
    ] = None,
    partial: Annotated[
        bool,
        typer.Option(
            "--partial",
            help="with --file: the export was filtered; report the links it cannot check, not fail",
        ),
    ] = False,
    fmt: Annotated[
        str | None, typer.Option("--format", metavar="ndjson|es-bulk", help="with --file (default: detected)")
    ] = None,
) -> None:
    """Walk the hash chain of one agent, or of all; exit 1 naming the first broken row if any is broken.

    With --file, check an export without the database: every row's hash, every link of each
    agent's chain, and the order of its rows; exit 1 naming each broken row (line, agent, seq)."""
    if file is not None:
        if agent is not None:
            raise BadInput("give an AGENT or --file, not both (a file is verified whole)")
        _verify_file(ctx, file, _format(fmt), partial)
        return
    if partial or fmt:
        raise BadInput("--partial and --format go with --file EXPORT")
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


def _format(text: str | None) -> Format | None:
    if text is None or text == "ndjson":
        return None if text is None else "ndjson"
    if text == "es-bulk":
        return "es-bulk"
    raise BadInput(f"--format {text!r}: give ndjson or es-bulk")


def _verify_file(ctx: typer.Context, path: str, fmt: Format | None, partial: bool) -> None:
    try:
        report: FileReport = verify_file(path, fmt, partial)
    except AuditExportError as err:
        raise Failed(str(err)) from None

    def render() -> None:
        body = [
            (
                c.agent_id,
                c.rows,
                f"{c.first_seq}..{c.last_seq}",
                "genesis" if c.starts_at_genesis else "mid-chain",
                c.links_checked,
                len(c.gaps),
                "ok" if c.ok else f"BROKEN at seq {c.broken_at_seq}",
            )
            for c in report.agents
        ]
        console().print(table(["AGENT", "ROWS", "SEQ", "STARTS", "LINKS OK", "UNCHECKED", "RESULT"], body))
        if partial:
            typer.echo(
                "partial export: every row's own hash was checked; links were checked only between rows "
                "consecutive in their chain (UNCHECKED: rows whose predecessor is not in the file)"
            )

    emit(ctx, {**report.model_dump(mode="json"), "ok": report.ok}, render)
    if not report.ok:
        for problem in report.problems[1:]:
            typer.echo(f"  {problem}", err=True)
        others = len(report.problems) - 1
        more = f" ({others} more problem{'s' if others > 1 else ''} above)" if others else ""
        report_error(f"{report.source}: {report.problems[0]}{more}")
        raise typer.Exit(1)
    if report.rows == 0:
        raise Failed(f"{report.source} holds no audit rows")


@app.command("export")
def export(
    ctx: typer.Context,
    agent: AgentFilter = None,
    action: ActionFilter = None,
    since: SinceFilter = None,
    until: UntilFilter = None,
    fmt: Annotated[
        str, typer.Option("--format", metavar="ndjson|es-bulk", help="one document per line, or _bulk bodies")
    ] = "ndjson",
    index: Annotated[
        str, typer.Option("--index", help="es-bulk: the index each action line names")
    ] = "aiops-audit",
    output: Annotated[
        Path | None,
        typer.Option("--output-file", "-O", metavar="FILE", help="append to FILE (default: stdout)"),
    ] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="then keep exporting rows as they land")
    ] = False,
    interval: Annotated[
        float,
        typer.Option("--interval", min=0.1, max=3600, metavar="SECONDS", help="--follow: poll every SECONDS"),
    ] = 2.0,
    position_file: Annotated[
        Path | None,
        typer.Option(
            "--position-file",
            metavar="PATH",
            help="resume from the position saved here, and save it (atomically) after each batch",
        ),
    ] = None,
    from_position: Annotated[
        str | None,
        typer.Option("--from-position", metavar="JSON", help='start after {"agents": {"ID": SEQ}}'),
    ] = None,
    batch: Annotated[
        int, typer.Option("--batch", min=1, max=10000, help="rows per read and per flush")
    ] = 500,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress on stderr")] = False,
) -> None:
    """Stream audit rows with their hash-chain fields, oldest first, for a search engine or an archive.

    NDJSON by default; --format es-bulk writes Elasticsearch/OpenSearch _bulk bodies (_id = seq, so
    shipping again is idempotent). Verify a copy with `aiops audit verify --file`. With --follow it
    polls for new rows until SIGINT/SIGTERM, which it honours after flushing the batch in hand."""
    chosen = _format(fmt) or "ndjson"
    if index != index.lower() or not index or any(c in index for c in ' ,"*\\/<>|?#'):
        raise BadInput(
            f"--index {index!r}: a lowercase index name without spaces, commas, quotes or wildcards"
        )
    start = parse_since(since) if since else None
    end = parse_since(until, option="--until") if until else None
    action_id = action_workflow_id(action) if action else None
    try:
        position = parse_position(from_position) if from_position is not None else None
        if position is None:
            position = load_position(position_file) if position_file else AuditPosition()
    except AuditExportError as err:
        raise BadInput(str(err)) from None

    async def work(aiops: AiopsClient) -> int:
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):
                asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        progress = _Progress(quiet)
        _save(position_file, position)  # an unwritable position file fails now, not after a batch
        with _opened(output) as out:
            async for rows, after in aiops.audit.tail(
                position, agent_id=agent, action_id=action_id, since=start, until=end, batch=batch,
                follow=follow, interval=interval, stop=stop, on_retry=progress.retry,
            ):  # fmt: skip
                try:
                    out.write("".join(f"{line}\n" for line in lines(rows, chosen, index)))
                    out.flush()
                    if output is not None:
                        os.fsync(out.fileno())
                except OSError as err:  # a full disk, a closed pipe: not the database's fault
                    raise Failed(
                        f"cannot write {output or 'stdout'} ({err.strerror}); stopped after {progress.rows} "
                        "rows, the position file holds the last batch written"
                    ) from None
                _save(position_file, after)
                progress.add(len(rows), after)
        progress.done()
        return progress.rows

    run(ctx, work)


def _save(path: Path | None, position: AuditPosition) -> None:
    if path is None:
        return
    try:
        save_position(path, position)
    except OSError as err:
        raise Failed(f"cannot save the position to {path}: {err.strerror}") from None


@contextlib.contextmanager
def _opened(path: Path | None) -> Iterator[IO[str]]:
    if path is None:
        yield sys.stdout
        return
    try:
        stream: IO[str] = path.open("a", encoding="utf-8")
    except OSError as err:
        raise Failed(f"cannot write {path}: {err.strerror}") from None
    with stream:
        yield stream


class _Progress:
    """Progress on stderr for long exports: every few seconds, and a last line at the end."""

    EVERY = 5.0

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.rows = 0
        self.last = time.monotonic()
        self.position = AuditPosition()

    def add(self, n: int, position: AuditPosition) -> None:
        self.rows += n
        self.position = position
        if not self.quiet and time.monotonic() - self.last >= self.EVERY:
            self.last = time.monotonic()
            typer.echo(f"exported {self.rows} rows so far", err=True)

    def retry(self, err: BaseException, delay: float) -> None:
        typer.echo(
            f"the database is unreachable ({type(err).__name__}: {err}); retrying in {delay:g}s", err=True
        )

    def done(self) -> None:
        if not self.quiet:
            typer.echo(f"exported {self.rows} rows; position {self.position.model_dump_json()}", err=True)
