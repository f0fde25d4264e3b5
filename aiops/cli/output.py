"""What the CLI prints: tables and JSON on stdout, one-line errors on stderr, and the exit codes.

Exit codes: 0 success; 1 refused or failed (unknown agent or action, a refused
approval or config, a broken audit chain, a server that cannot be reached);
2 bad input (usage errors, malformed JSON, missing files, wrong enum values,
a config or event the models refuse). Every failure is one ``error: ...`` line
on stderr; with ``--output json`` stdout carries only the JSON document.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, NoReturn

import typer
from pydantic import BaseModel, ValidationError
from rich import box
from rich.console import Console, ConsoleOptions, RenderResult
from rich.table import Table
from rich.text import Text
from typer.core import TyperGroup

try:  # typer 0.2x carries its own copy of click
    from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError
except ImportError:  # pragma: no cover  (older typer on click)
    from click.exceptions import ClickException, NoArgsIsHelpError, UsageError  # type: ignore[no-redef,assignment,unused-ignore]

from aiops.contracts.agent import DEFAULT_TASK_QUEUE
from aiops.contracts.errors import AiopsError
from aiops.contracts.fields import map_leaves
from aiops.contracts.text import escape_for_display, escape_in_json

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class OutputFormat(StrEnum):
    TABLE = "table"
    JSON = "json"


@dataclass
class Settings:
    """The global options, kept on the root context for every command."""

    output: OutputFormat = OutputFormat.TABLE
    task_queue: str = DEFAULT_TASK_QUEUE
    task_queue_given: bool = False

    @property
    def json(self) -> bool:
        return self.output == OutputFormat.JSON


def settings(ctx: typer.Context) -> Settings:
    obj = ctx.find_root().obj
    return obj if isinstance(obj, Settings) else Settings()


# ----- errors -------------------------------------------------------------------


class CliError(AiopsError):
    """A failure the CLI reports as one line and an exit code."""

    exit_code = EXIT_FAILED


class Failed(CliError):
    """Refused or failed: the request was fine, the answer is no (exit 1)."""

    exit_code = EXIT_FAILED


class BadInput(CliError):
    """The input itself is wrong: fix the command line or the file (exit 2)."""

    exit_code = EXIT_USAGE


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def report_error(message: str) -> None:
    typer.echo(f"error: {escape_for_display(one_line(message))}", err=True)


def describe_validation(err: ValidationError) -> str:
    """Every problem as ``field.path: message``, joined with ``;`` (input values never echoed)."""
    parts = []
    for problem in err.errors(include_input=False, include_url=False):
        where = ".".join(str(p) for p in problem["loc"])
        parts.append(f"{where}: {problem['msg']}" if where else problem["msg"])
    return "; ".join(parts)


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    raise (BadInput if code == EXIT_USAGE else Failed)(message)


# ----- rendering ----------------------------------------------------------------


def console(stderr: bool = False) -> Console:
    """A plain console on the current stream: no markup, no colour when piped, wide when not a tty."""
    stream = sys.stderr if stderr else sys.stdout
    try:
        interactive = stream.isatty()
    except (AttributeError, ValueError):
        interactive = False
    width = None if interactive or os.environ.get("COLUMNS") else 200
    return Console(file=stream, width=width, markup=False, highlight=False, emoji=False, soft_wrap=False)


def jsonable(value: Any) -> Any:
    return map_leaves(value, lambda v: v.model_dump(mode="json") if isinstance(v, BaseModel) else v)


def print_json(value: Any) -> None:
    typer.echo(escape_in_json(json.dumps(jsonable(value), indent=2, ensure_ascii=False)))


def emit(ctx: typer.Context, data: Any, render: Callable[[], None]) -> None:
    """Print ``data`` as JSON with ``--output json``, else call ``render``."""
    if settings(ctx).json:
        print_json(data)
    else:
        render()


WatchOption = Annotated[
    float | None,
    typer.Option(
        "--watch",
        "-w",
        min=1.0,
        metavar="SECONDS",
        help="refresh every SECONDS until Ctrl-C (JSON output: one document per refresh)",
    ),
]
TimesOption = Annotated[
    int | None, typer.Option("--times", min=1, help="with --watch/--follow: stop after N refreshes")
]


def repeat(every: float | None, times: int | None, once: Callable[[int], None]) -> None:
    """Call ``once(n)`` a first time, then every ``every`` seconds until Ctrl-C or ``times`` calls."""
    n = 0
    while True:
        once(n)
        n += 1
        if every is None or (times is not None and n >= times):
            return
        try:
            sys.stdout.flush()
            time.sleep(every)
        except KeyboardInterrupt:
            return


def say(ctx: typer.Context, message: str) -> None:
    """A human confirmation: stdout in table mode, stderr in JSON mode (stdout stays pure JSON)."""
    typer.echo(message, err=settings(ctx).json)


def table(columns: Sequence[str], rows: Iterable[Sequence[Any]], title: str | None = None) -> FittedTable:
    return FittedTable(columns, [[cell(value) for value in row] for row in rows], title)


class FittedTable:
    """A table as wide as its content when that fits the terminal (``COLUMNS``); when it does not,
    one block of ``COLUMN  value`` lines per row instead, so a narrow terminal never gets a table
    whose ids are broken across lines or whose rows wrap into each other."""

    def __init__(self, columns: Sequence[str], rows: list[list[Text]], title: str | None) -> None:
        self.columns, self.rows, self.title = list(columns), rows, title

    def as_table(self) -> Table:
        t = Table(
            title=self.title, box=box.SIMPLE_HEAD, title_justify="left", pad_edge=False, show_edge=False
        )
        for name in self.columns:
            t.add_column(name, overflow="fold")
        for row in self.rows:
            t.add_row(*row)
        return t

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        whole = self.as_table()
        unbounded = options.update_width(100_000)  # Measurement.get would clamp to the width
        if whole.__rich_measure__(console, unbounded).maximum <= options.max_width:
            yield whole
            return
        if self.title:
            yield Text(self.title)
        for index, row in enumerate(self.rows):
            if index:
                yield Text("")
            yield pairs(zip(self.columns, row, strict=True))


def cell(value: Any) -> Text:
    """One table cell. Text from agents, events and alerts is untrusted: every control, invisible and
    bidi-override character is shown as its escape (``\\u202e``), never obeyed by the terminal."""
    if value is None:
        return Text("-")
    if isinstance(value, Text):
        return shown(value)
    if isinstance(value, datetime):
        return Text(when(value))
    if isinstance(value, bool):
        return Text("yes" if value else "no")
    if isinstance(value, StrEnum):
        return Text(escape_for_display(value.value))
    if isinstance(value, dict | list):
        return Text(compact(value))
    return Text(escape_for_display(str(value), keep_newlines=True))


def shown(text: Text | str) -> Text:
    """``text`` safe to print: its control, invisible and bidi characters escaped (newlines kept)."""
    if isinstance(text, str):
        return Text(escape_for_display(text, keep_newlines=True))
    plain = escape_for_display(text.plain, keep_newlines=True)
    return text if plain == text.plain else Text(plain, style=text.style)


def pairs(rows: Iterable[tuple[str, Any]], title: str | None = None) -> Table:
    """A two-column key / value grid."""
    grid = Table.grid(padding=(0, 2))
    grid.title = title
    grid.title_justify = "left"
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    for key, value in rows:
        grid.add_row(key, cell(value))
    return grid


def compact(value: Any, limit: int | None = None) -> str:
    text = escape_for_display(json.dumps(jsonable(value), ensure_ascii=False, separators=(", ", ": ")))
    if limit is not None and len(text) > limit:
        return text[: limit - 1] + "…"
    return text


def when(at: datetime | None) -> str:
    if at is None:
        return "-"
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def age(at: datetime | None, now: datetime | None = None) -> str:
    """``42s``, ``5m``, ``2h10m``, ``3d4h``: how long ago ``at`` was."""
    if at is None:
        return "-"
    seconds = max(0, int(((now or datetime.now(UTC)) - at).total_seconds()))
    if seconds < 60:
        return f"{seconds}s"
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if minutes < 60:
        return f"{minutes}m"
    if hours < 24:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"


# ----- the root command: every error becomes one line and an exit code ----------------


def hoist_output_option(args: list[str]) -> list[str]:
    """Move ``-o/--output FORMAT`` given after the command (``aiops audit tail -o json``) to the
    front, where the root command reads it; ``--`` and the worker's own arguments are left alone."""
    if not args or args[0] == "worker":
        return args
    hoisted: list[str] = []
    rest: list[str] = []
    index = 0
    while index < len(args):
        arg = args[index]
        if arg == "--":
            rest += args[index:]
            break
        if arg in ("-o", "--output") and index + 1 < len(args):
            hoisted += [arg, args[index + 1]]
            index += 2
            continue
        if arg.startswith("--output=") or (
            arg.startswith("-o") and len(arg) > 2 and not arg.startswith("--")
        ):
            hoisted.append(arg)
        else:
            rest.append(arg)
        index += 1
    return hoisted + rest


class AiopsGroup(TyperGroup):
    """Runs the command tree in non-standalone mode so that usage errors, ``CliError``s and
    aborts are all reported the same way: ``error: ...`` on stderr and the documented code."""

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        args = hoist_output_option(list(sys.argv[1:] if args is None else args))
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except CliError as err:
            report_error(str(err))
            sys.exit(err.exit_code)
        except NoArgsIsHelpError:
            sys.exit(EXIT_USAGE)  # the help has been printed
        except UsageError as err:
            hint = f" (see '{err.ctx.command_path} --help')" if err.ctx is not None else ""
            report_error(err.format_message().replace("Value error, ", "") + hint)
            sys.exit(err.exit_code)
        except ClickException as err:
            report_error(err.format_message())
            sys.exit(err.exit_code)
        except typer.Abort:
            report_error("aborted")
            sys.exit(EXIT_FAILED)
        sys.exit(result if isinstance(result, int) else EXIT_OK)
