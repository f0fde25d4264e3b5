"""What every command shares: one connection per invocation, and reading operator input.

Input is checked before anything connects, so a typo costs no round trip and
always exits 2; what the servers answer is mapped to exit 1 in one place.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import sys
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import asyncpg
import typer
from pydantic import ValidationError
from temporalio.client import WorkflowQueryFailedError, WorkflowQueryRejectedError
from temporalio.service import RPCError, RPCStatusCode

from activities.database.pool import DATABASE_URL_ENV
from aiops import keys
from aiops.cli.output import BadInput, CliError, Failed, describe_validation, emit, settings
from aiops.client import AgentNotRunningError, AiopsClient, AiopsError
from aiops.client.event_input import event_from_json
from aiops.connection import connect_settings
from aiops.contracts.action import WORKFLOW_ID_PREFIX as ACTION_WORKFLOW_PREFIX
from aiops.contracts.config import AgentConfig
from aiops.contracts.limits import MAX_EVENT_BYTES, over_budget
from aiops.contracts.models import SystemEvent

T = TypeVar("T")

USER_ENV = "AIOPS_USER"
DEBUG_ENV = "AIOPS_DEBUG"


def run(ctx: typer.Context, work: Callable[[AiopsClient], Awaitable[T]], agent_id: str | None = None) -> T:
    """Connect, run ``work``, close; every failure becomes a ``CliError`` with its exit code."""
    task_queue = settings(ctx).task_queue

    async def session() -> T:
        aiops = await _connect(task_queue)
        try:
            return await work(aiops)
        finally:
            await aiops.close()

    try:
        return asyncio.run(session())
    except CliError:
        raise
    except AgentNotRunningError as err:
        if agent_id is None:
            raise Failed(str(err)) from None
        raise Failed(
            f"no agent named {agent_id!r} is running; start it with `aiops agents start --config FILE.json` "
            f"(or `aiops agents start {agent_id}` to restart its last stored config)"
        ) from None
    except AiopsError as err:
        raise Failed(str(err)) from None
    except ValidationError as err:
        raise BadInput(describe_validation(err)) from None
    except RPCError as err:
        raise Failed(_rpc_problem(err, task_queue)) from None
    except (WorkflowQueryFailedError, WorkflowQueryRejectedError) as err:
        raise Failed(f"the query failed: {err}") from None
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as err:
        raise Failed(f"PostgreSQL ({DATABASE_URL_ENV}) failed: {err}") from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    except Exception as err:
        if os.environ.get(DEBUG_ENV):
            traceback.print_exc()
        raise Failed(
            f"unexpected {type(err).__name__}: {err} (set {DEBUG_ENV}=1 to see the traceback)"
        ) from None


def _rpc_problem(err: RPCError, task_queue: str) -> str:
    if err.status == RPCStatusCode.UNAVAILABLE:
        return f"cannot reach Temporal at {_temporal_address()}: {err.message}"
    if err.status in (RPCStatusCode.CANCELLED, RPCStatusCode.DEADLINE_EXCEEDED):
        return (
            f"Temporal did not answer in time ({err.message}): is a worker polling task queue "
            f"{task_queue!r}? start one with `aiops worker`"
        )
    name = err.status.name if err.status is not None else "error"
    return f"Temporal refused the request ({name}): {err.message}"


async def _connect(task_queue: str) -> AiopsClient:
    try:
        return await AiopsClient.connect(task_queue=task_queue)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as err:
        raise Failed(f"cannot reach PostgreSQL at {DATABASE_URL_ENV}: {err}") from None
    except RuntimeError as err:
        if "connect" in str(err).lower():
            raise Failed(f"cannot reach Temporal at {_temporal_address()}: {err}") from None
        raise


def _temporal_address() -> str:
    try:
        return str(connect_settings().get("target_host"))
    except Exception:  # a broken profile file is reported by the connection itself
        return os.environ.get("TEMPORAL_ADDRESS", "?")


# ----- who is asking ------------------------------------------------------------


def current_user(given: str | None = None) -> str:
    """``--as``, else ``AIOPS_USER``, else the approver named in your key file; never the
    operating system's user name, which no agent config knows."""
    if given is not None:
        if not given.strip():
            raise BadInput("--as needs a name")
        return given
    from_env = os.environ.get(USER_ENV, "").strip()
    if from_env:
        return from_env
    path = keys.default_path()
    if path.exists():
        try:
            return keys.load(path).approver
        except keys.KeyFileError as err:
            raise BadInput(str(err)) from None
    raise BadInput(
        f"cannot tell who you are: pass --as NAME, set {USER_ENV}, or make a key with "
        "`aiops keys generate NAME`"
    )


def input_file_option(*names: str, help: str, metavar: str = "FILE.json", stdin: bool = True) -> Any:
    """The option naming a file a command reads (with ``read_text``, which bounds its size): never
    a directory, and ``-`` for stdin unless ``stdin`` is False."""
    return typer.Option(*names, metavar=metavar, help=help, dir_okay=False, allow_dash=stdin)


KeyOption = Annotated[
    Path | None,
    typer.Option(
        "--key",
        metavar="FILE",
        help="sign with this key file (default: $AIOPS_KEY_FILE, else ~/.config/aiops/key.json if there)",
    ),
]


def signer(key: Path | None, who: str | None) -> tuple[str, keys.KeyFile | None]:
    """Who asks and the key that proves it: the key's approver when there is a key, else
    ``current_user`` (sent unsigned: refused unless the agent's config is in dev mode)."""
    key_file = key_for(key, who)
    return (key_file.approver if key_file is not None else current_user(who)), key_file


def key_for(given: Path | None, who: str | None) -> keys.KeyFile | None:
    """The key to sign with: ``--key FILE``, else your default key file when it is there and is
    the named person's (a decision ``--as`` someone else is sent unsigned, and the workflow
    refuses it unless the agent's config allows unsigned approvals)."""
    try:
        if given is not None:
            key_file = keys.load(given.expanduser())
            if who is not None and who != key_file.approver:
                raise BadInput(f"--key is {key_file.approver}'s key, not {who}'s")
            return key_file
        path = keys.default_path()
        if not path.exists():
            return None
        key_file = keys.load(path)
    except keys.KeyFileError as err:
        raise BadInput(str(err)) from None
    return key_file if who in (None, key_file.approver) else None


def action_workflow_id(given: str) -> str:
    """Accept ``action-<agent>:<event>`` or the short ``<agent>:<event>``."""
    given = given.strip()
    if not given.startswith(ACTION_WORKFLOW_PREFIX) and ":" in given:
        return ACTION_WORKFLOW_PREFIX + given
    return given


# ----- reading files --------------------------------------------------------------


# The largest input file a command reads (a --jsonl batch of events at most this size): a bigger one
# is refused before it is read, so a wrong file (a disk image, /dev/zero) costs nothing.
MAX_INPUT_FILE_BYTES = 64 * 1024 * 1024


def read_text(path: Path) -> str:
    try:
        if str(path) == "-":
            data = sys.stdin.buffer.read(MAX_INPUT_FILE_BYTES + 1)
        else:
            with path.open("rb") as handle:
                data = handle.read(MAX_INPUT_FILE_BYTES + 1)
        if len(data) > MAX_INPUT_FILE_BYTES:
            raise BadInput(f"{path}: over the {MAX_INPUT_FILE_BYTES}-byte limit of an input file")
        return data.decode("utf-8")
    except FileNotFoundError:
        raise BadInput(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise BadInput(f"{path}: cannot read it: {err}") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number (JSON has no NaN or Infinity)")


def parse_json(text: str, what: str) -> Any:
    """Strict JSON: no NaN or Infinity (Python's json accepts them, nothing downstream should), and a
    document nested too deeply to decode is refused with that reason, not a traceback."""
    try:
        return json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as err:
        raise BadInput(
            f"{what} is not valid JSON: {err.msg} (line {err.lineno} column {err.colno})"
        ) from None
    except ValueError as err:
        raise BadInput(f"{what} is not valid JSON: {err}") from None
    except RecursionError:
        raise BadInput(f"{what} is nested too deeply") from None


def load_config(path: Path) -> AgentConfig:
    """An ``AgentConfig`` from a JSON file; every problem named, exit 2."""
    document = parse_json(read_text(path), str(path))
    if not isinstance(document, dict):
        raise BadInput(f"{path}: a config must be a JSON object, got {type(document).__name__}")
    try:
        return AgentConfig.model_validate(document)
    except ValidationError as err:
        raise BadInput(f"{path}: invalid config: {describe_validation(err)}") from None


def event_from(payload: Any, where: str) -> SystemEvent:
    """An event from a JSON value; events from files need their ``id`` (it is how a resend is spotted)."""
    event = event_from_json(payload, where, BadInput, describe_validation)
    return sized(event, where)


def sized(event: SystemEvent, where: str) -> SystemEvent:
    """The event if the agent's intake can take it; refused here, before anything connects, if not."""
    try:
        size = len(event.model_dump_json())
    except (ValueError, RecursionError):
        raise BadInput(f"{where}: the event cannot be encoded as JSON (nested too deeply)") from None
    if size > MAX_EVENT_BYTES:
        raise BadInput(f"{where}: {over_budget('the event', size, MAX_EVENT_BYTES)} of one event")
    return event


def emit_pasteable_signal(
    ctx: typer.Context,
    workflow_id: str,
    signal: str,
    body: dict[str, Any],
    minutes: int,
    what: dict[str, str],
) -> None:
    """Print a signed message's JSON (stdout) for the Web UI's Send a Signal box, and the
    `temporal workflow signal` command that sends it (stderr); ``what`` heads the JSON output."""
    text = json.dumps(body)
    command = [
        "temporal",
        "workflow",
        "signal",
        "--workflow-id",
        workflow_id,
        "--name",
        signal,
        "--input",
        text,
    ]

    def render() -> None:
        typer.echo(text)
        typer.echo(
            f"\nvalid for {minutes} min, once; Web UI: Send a Signal, name {signal!r}, paste the line above."
            "\nOr:\n  " + shlex.join(command),
            err=True,
        )

    emit(ctx, {**what, "signal": signal, "input": body}, render)
