"""``aiops events send``: one event from flags or a file, or a batch from a JSON-lines file."""

from __future__ import annotations

import uuid
from collections import Counter
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from aiops.cli.common import event_from, input_file_option, load_config, parse_json, read_text, run, sized
from aiops.cli.output import BadInput, Failed, console, describe_validation, emit, settings
from aiops.client import AiopsClient
from aiops.contracts.agent import EventAnswer, EventOutcome
from aiops.contracts.config import AgentConfig
from aiops.contracts.models import EventType, Severity, SystemEvent

app = typer.Typer(help="Send events to agents.", no_args_is_help=True)

MAX_LISTED_PROBLEMS = 5


@app.command("send")
def send(
    ctx: typer.Context,
    agent: Annotated[str, typer.Argument(metavar="AGENT", help="the agent that receives the events")],
    event_type: Annotated[
        EventType | None, typer.Option("--type", "-t", help="event type", show_default=False)
    ] = None,
    source: Annotated[
        str | None, typer.Option("--source", "-s", help="the system the event is about, e.g. prod-vpc")
    ] = None,
    severity: Annotated[
        Severity | None,
        typer.Option("--severity", help="event severity [default: medium]", show_default=False),
    ] = None,
    event_id: Annotated[
        str | None,
        typer.Option("--id", help="event id: a resend with the same id is dropped (default: a new one)"),
    ] = None,
    data: Annotated[
        str | None,
        typer.Option("--data", "-d", metavar="JSON", help="event data, a JSON object: '{\"k\": 1}'"),
    ] = None,
    correlation_id: Annotated[str | None, typer.Option("--correlation-id", help="correlation id")] = None,
    file: Annotated[
        Path | None,
        input_file_option(
            "--file",
            "-f",
            help="send the event in this JSON file (an object, or a list of them); '-' reads stdin",
        ),
    ] = None,
    jsonl: Annotated[
        Path | None,
        input_file_option(
            "--jsonl",
            metavar="FILE.jsonl",
            help="send every event in this file, one JSON object a line, in batches; '-' reads stdin",
        ),
    ] = None,
    config_file: Annotated[
        Path | None,
        input_file_option(
            "--config",
            "-c",
            help="the agent's config: start the agent with it if it is not running",
            stdin=False,
        ),
    ] = None,
    batch_size: Annotated[
        int,
        typer.Option(
            "--batch-size", min=1, max=1000, help="events per batch signal (--jsonl, or a list in --file)"
        ),
    ] = 500,
) -> None:
    """Send one event (from flags or --file) or a batch (--jsonl) to an agent.

    Every event needs an id: it is how a resend is recognised and dropped. With
    flags the id defaults to a new one; events from files must carry theirs.
    """
    flags_given = any(v is not None for v in (event_type, source, severity, event_id, data, correlation_id))
    modes = [m for m, given in (("flags", flags_given), ("--file", file), ("--jsonl", jsonl)) if given]
    if len(modes) > 1:
        raise BadInput(f"give the events one way: {' or '.join(modes)}, not both")
    if not modes:
        raise BadInput(
            "nothing to send: give --type and --source, or --file FILE.json, or --jsonl FILE.jsonl"
        )
    config = load_config(config_file) if config_file is not None else None
    if config is not None and config.id != agent:
        raise BadInput(f"{config_file}: the config is for agent {config.id!r}, not {agent!r}")

    if file is not None:
        events = _from_file(file)
    elif jsonl is not None:
        events = _from_jsonl(jsonl)
    else:
        events = [_from_flags(event_type, source, severity, event_id, data, correlation_id)]

    batch = jsonl is not None or len(events) > 1
    answers = run(
        ctx, lambda aiops: _send_batch(ctx, aiops, agent, events, config, batch_size), agent_id=agent
    )
    counts = Counter(a.outcome.value for a in answers)
    rejected = [a for a in answers if a.outcome == EventOutcome.REJECTED]
    sent = len(answers) - len(rejected)
    ids = [e.id for e in events]
    result: dict[str, Any] = {
        "agent_id": agent,
        "sent": sent,
        "event_ids": ids,
        "outcomes": dict(counts),
        "rejected": [a.model_dump(mode="json") for a in rejected],
    }
    if rejected:
        emit(ctx, result, lambda: None)
        listed = "; ".join(f"{a.event_id}: {a.reason}" for a in rejected[:5])
        raise Failed(f"the agent took {sent} of {len(answers)} event(s); rejected: {listed}")

    def render() -> None:
        if batch:
            detail = ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items()))
            typer.echo(f"sent {sent} events to agent {agent} ({detail})")
        else:
            e = events[0]
            typer.echo(
                f"sent event {e.id} ({e.type.value}, {e.severity.value}, from {e.source}) to agent {agent}; "
                f"an action it proposes is action-{agent}:{e.id}"
            )

    emit(ctx, result, render)


def _from_flags(
    event_type: EventType | None,
    source: str | None,
    severity: Severity | None,
    event_id: str | None,
    data: str | None,
    correlation_id: str | None,
) -> SystemEvent:
    missing = [name for name, value in (("--type", event_type), ("--source", source)) if value is None]
    if missing:
        raise BadInput(f"an event needs {' and '.join(missing)}")
    payload: dict[str, Any] = {}
    if data is not None:
        payload = parse_json(data, "--data")
        if not isinstance(payload, dict):
            raise BadInput(f"--data must be a JSON object, got {type(payload).__name__}")
    try:
        event = SystemEvent(
            id=event_id or f"evt-{uuid.uuid4().hex[:16]}",
            type=event_type,
            source=source,
            severity=severity or Severity.MEDIUM,
            data=payload,
            correlation_id=correlation_id,
        )
    except ValidationError as err:
        raise BadInput(f"invalid event: {describe_validation(err)}") from None
    return sized(event, "--data")


def _from_file(path: Path) -> list[SystemEvent]:
    document = parse_json(read_text(path), str(path))
    if isinstance(document, list):
        if not document:
            raise BadInput(f"{path}: the list of events is empty")
        return [event_from(item, f"{path}[{i}]") for i, item in enumerate(document)]
    return [event_from(document, str(path))]


def _from_jsonl(path: Path) -> list[SystemEvent]:
    """Every line checked before anything is sent, so a bad line 900 sends nothing."""
    events: list[SystemEvent] = []
    problems: list[str] = []
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path} line {number}"
        try:
            e = event_from(parse_json(line, where), where)
        except BadInput as err:
            problems.append(str(err))
            continue
        events.append(e)
    if problems:
        more = len(problems) - MAX_LISTED_PROBLEMS
        listed = "; ".join(problems[:MAX_LISTED_PROBLEMS]) + (f"; and {more} more" if more > 0 else "")
        raise BadInput(f"nothing sent: {len(problems)} bad line(s): {listed}")
    if not events:
        raise BadInput(f"{path}: no events in it")
    return events


async def _send_batch(
    ctx: typer.Context,
    aiops: AiopsClient,
    agent: str,
    events: list[SystemEvent],
    config: AgentConfig | None,
    batch_size: int,
) -> list[EventAnswer]:
    progress = Progress(
        TextColumn("sending to {task.fields[agent]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console(stderr=True),
        disable=settings(ctx).json or len(events) == 1,
    )
    answers: list[EventAnswer] = []
    with progress:
        task = progress.add_task("send", total=len(events), agent=agent)
        for start in range(0, len(events), batch_size):
            chunk = events[start : start + batch_size]
            answers += await aiops.events.submit(agent, chunk, config=config, batch_size=batch_size)
            progress.update(task, advance=len(chunk))
    return answers
