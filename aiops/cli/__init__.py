"""The ``aiops`` command line: agents, events, approvals, config, audit, a worker and the dev stack.

    aiops [--output table|json] [--task-queue Q] COMMAND ...   (-o/--output also after COMMAND)

Every command connects like the worker does (``TEMPORAL_ADDRESS``,
``TEMPORAL_NAMESPACE``, TLS and API-key settings, ``DATABASE_URL``) and exits 0 on
success, 1 when refused or failed, 2 on bad input; see docs/cli.md.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Annotated

import typer

from aiops.cli import (
    agents,
    api_tokens,
    approvals,
    audit,
    codec,
    config,
    dev,
    events,
    gateway,
    keys,
    redis,
    whatif,
)
from aiops.cli.output import AiopsGroup, OutputFormat, Settings
from aiops.contracts.agent import DEFAULT_TASK_QUEUE
from aiops.tracing import shutdown_tracing

TASK_QUEUE_ENV = "AIOPS_TASK_QUEUE"

app = typer.Typer(
    cls=AiopsGroup,
    name="aiops",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def root(
    ctx: typer.Context,
    output: Annotated[
        OutputFormat,
        typer.Option(
            "--output", "-o", help="table for people, json for scripts (stdout holds only the JSON)"
        ),
    ] = OutputFormat.TABLE,
    task_queue: Annotated[
        str,
        typer.Option("--task-queue", envvar=TASK_QUEUE_ENV, help="the workers' task queue"),
    ] = DEFAULT_TASK_QUEUE,
) -> None:
    """Operate AIOps agents on Temporal: agents, events, approvals, config versions and the audit log.

    Connection settings come from the environment, as for the worker: TEMPORAL_ADDRESS,
    TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TEMPORAL_TLS_*, TEMPORAL_PROFILE, and DATABASE_URL
    (config history and the audit log). Exit codes: 0 done, 1 refused or failed, 2 bad input.
    """
    source = ctx.get_parameter_source("task_queue")
    ctx.obj = Settings(
        output=output,
        task_queue=task_queue,
        task_queue_given=source is not None and source.name == "COMMANDLINE",
    )


app.add_typer(agents.app, name="agents")
app.add_typer(events.app, name="events")
app.add_typer(approvals.app, name="approvals")
app.add_typer(keys.app, name="keys")
app.add_typer(config.app, name="config")
app.add_typer(audit.app, name="audit")
app.add_typer(codec.app, name="codec")
app.add_typer(api_tokens.app, name="api-token")
app.command("what-if")(whatif.what_if)
try:  # the llm plugin's evaluation needs Pydantic AI, an optional extra (not in the default image)
    from aiops.cli import evaluate

    app.add_typer(evaluate.app, name="eval")
except ImportError as missing:  # pragma: no cover - exercised by the container image's smoke test
    _eval_missing = f"aiops eval needs the llm extra (pip install 'aiops-agents[llm]'): {missing}"

    @app.command("eval", help="Evaluate the llm diagnoser offline (needs the llm extra).")
    def _eval_unavailable() -> None:
        typer.echo(f"error: {_eval_missing}", err=True)
        raise typer.Exit(2)


app.command(
    "worker",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)(dev.worker)
app.add_typer(dev.app, name="dev")
app.command("gateway")(gateway.gateway)
app.add_typer(redis.source_app, name="source")
app.add_typer(redis.publish_app, name="publish")


def main() -> None:
    """The console script."""
    # The client's database pool retries quietly; its failure is reported as one line instead.
    logging.getLogger("aiops.database").setLevel(logging.ERROR)
    if os.environ.get("AIOPS_DEBUG"):
        logging.basicConfig(level=logging.DEBUG)
    code: int = 0
    try:
        app(prog_name="aiops")
    except SystemExit as done:
        if isinstance(done.code, str):
            print(done.code, file=sys.stderr)
        code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    # os._exit skips atexit: export the command's OpenTelemetry spans (when tracing is on) first.
    try:
        shutdown_tracing()
    except Exception as err:  # a collector that is down must not change the exit status
        print(f"warning: could not export traces: {err}", file=sys.stderr)
    # Leave without interpreter finalization, during which the SDK's native threads can abort
    # the process (SIGABRT) and turn a clean exit into a crash (as worker.py does).
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`aiops ... | head`)
            pass
    os._exit(code)


__all__ = ["app", "main"]
