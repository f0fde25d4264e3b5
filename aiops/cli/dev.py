"""``aiops worker`` and ``aiops dev``: run a worker here, start and stop the local dev stack."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

from aiops.cli.output import Failed, emit, settings

app = typer.Typer(
    help="The local dev stack (Temporal dev server and PostgreSQL), from a source checkout.",
    no_args_is_help=True,
)

ROOT = Path(__file__).resolve().parents[2]
DEV_DIR = ROOT / "temporal-dev"


def worker(
    ctx: typer.Context,
    args: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="ARGS",
            help="worker.py's own options: --task-queue, --agent-module MODULE, --identity, "
            "--register-search-attributes, --no-database, --log-level (`aiops worker -- -h` lists them)",
        ),
    ] = None,
) -> None:
    """Run a worker in this process (what `python worker.py ARGS` does); SIGTERM stops it gracefully.

    It reads TEMPORAL_ADDRESS, DATABASE_URL and AIOPS_TASK_QUEUE like every command;
    the global --task-queue is passed on unless ARGS name one.
    """
    from aiops.runtime import worker_process  # the worker's imports are only paid for here

    argv = list(args or [])
    if settings(ctx).task_queue_given and not any(
        a == "--task-queue" or a.startswith("--task-queue=") for a in argv
    ):
        argv = ["--task-queue", settings(ctx).task_queue, *argv]
    sys.argv[0] = "aiops worker"  # how argparse names the program in its messages
    worker_process.main(argv)


def _script(name: str) -> Path:
    path = DEV_DIR / name
    if not path.exists():
        raise Failed(f"{path} is missing: `aiops dev` works from a source checkout of the project")
    return path


def _run_script(name: str) -> None:
    """Run a temporal-dev script; its chatter goes to stderr so stdout stays for the export lines."""
    completed = subprocess.run(["bash", str(_script(name))], cwd=ROOT, stdout=sys.stderr, check=False)
    if completed.returncode != 0:
        raise Failed(f"temporal-dev/{name} failed (exit {completed.returncode}); see its output above")


def dev_settings() -> dict[str, str]:
    """What a shell needs to reach the local stack."""
    port = os.environ.get("AIOPS_TEMPORAL_PORT", "7233")
    url = subprocess.run(
        [sys.executable, str(_script("postgres.py")), "url"], capture_output=True, text=True, check=False
    )
    if url.returncode != 0 or not url.stdout.strip():
        raise Failed(f"temporal-dev/postgres.py url failed: {url.stderr.strip() or url.stdout.strip()}")
    return {"TEMPORAL_ADDRESS": f"127.0.0.1:{port}", "DATABASE_URL": url.stdout.strip()}


@app.command("up")
def up(ctx: typer.Context) -> None:
    """Start the dev server and PostgreSQL (temporal-dev/start.sh) and print the export lines.

    Only the export lines go to stdout, so `eval "$(aiops dev up)"` sets up the shell.
    """
    _run_script("start.sh")
    values = dev_settings()
    emit(ctx, values, lambda: typer.echo("\n".join(f"export {k}={v}" for k, v in values.items())))


@app.command("down")
def down(ctx: typer.Context) -> None:
    """Stop the dev stack and any demo worker (temporal-dev/stop.sh); the data stays."""
    _run_script("stop.sh")
    emit(ctx, {"stopped": True}, lambda: typer.echo("dev stack stopped"))
