"""``aiops config``: apply, compare, list and roll back an agent's stored config versions."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from activities.database.pool import DATABASE_URL_ENV
from agents.config_cases import run_cases
from agents.registry import default_factory, load_agent_modules
from aiops.cli import whatif
from aiops.cli.common import KeyOption, load_config, run, signer
from aiops.cli.output import BadInput, Failed, compact, console, emit, settings, table
from aiops.client import AiopsClient, ConfigRefusedError
from aiops.contracts.activities import UNKNOWN_CONFIG_VERSION
from aiops.contracts.agent import ConfigApplied
from aiops.contracts.config_cases import CaseResult

app = typer.Typer(
    help="Change a running agent's config (hot reload), compare versions, roll back.", no_args_is_help=True
)

AgentArg = Annotated[str, typer.Argument(metavar="AGENT", help="the agent's id")]
AuthorOption = Annotated[
    str | None,
    typer.Option(
        "--author",
        "--as",
        metavar="NAME",
        help="who changes it (default: the approver of your key file, else $AIOPS_USER)",
    ),
]
CommentOption = Annotated[str, typer.Option("--comment", "-m", help="why, stored with the version")]


def _render_applied(applied: ConfigApplied) -> None:
    if applied.changed:
        typer.echo(
            f"agent {applied.agent_id} now runs config version {applied.version} "
            f"(was {applied.previous_version})"
        )
    else:
        typer.echo(f"agent {applied.agent_id}: nothing changed, still config version {applied.version}")


@app.command("apply")
def apply(
    ctx: typer.Context,
    config_file: Annotated[
        Path,
        typer.Argument(
            metavar="FILE.json", help="the whole new AgentConfig as JSON", dir_okay=False, allow_dash=True
        ),
    ],
    author: AuthorOption = None,
    comment: CommentOption = "",
    key: KeyOption = None,
    what_if: Annotated[
        bool,
        typer.Option(
            "--what-if",
            help="first show what this config would have done with the agent's recorded window "
            "(`aiops what-if`), then ask before applying",
        ),
    ] = False,
    since: whatif.SinceOption = "7d",
    yes: Annotated[bool, typer.Option("--yes", "-y", help="with --what-if: apply without asking")] = False,
) -> None:
    """Validate a config on a worker, store it as the next version and hot-reload the running agent.

    A refused config (a problem in a setting, another type, a secret that does
    not resolve, a failing case of its `tests`) exits 1 with every reason and changes nothing.
    Signed with your key: the agent takes a config change only from someone with the reconfigure
    role (admin by default), unless its config is in dev mode (approval.allow_unsigned).
    With --what-if the report is shown first (on stderr with -o json) and the change is applied
    only when you confirm (or pass --yes); without a terminal to ask on, --yes is required.
    """
    config = load_config(config_file)
    who, key_file = signer(key, author)
    if what_if:
        if not yes and not sys.stdin.isatty():
            raise BadInput("--what-if asks before applying and there is no terminal to ask on; add --yes")
        report = whatif.compute(ctx, config, since, None, 50)
        whatif.render(report, stderr=settings(ctx).json)
        if not yes and not typer.confirm(f"apply this config to agent {config.id}?", err=True):
            raise Failed("not applied")
    applied = run(
        ctx,
        lambda aiops: aiops.config.apply(config, author=who, comment=comment, key=key_file),
        agent_id=config.id,
    )
    emit(ctx, applied, lambda: _render_applied(applied))


@app.command("diff")
def diff(
    ctx: typer.Context,
    agent: AgentArg,
    old: Annotated[int, typer.Argument(metavar="FROM", help="the older version", min=1)],
    new: Annotated[int, typer.Argument(metavar="TO", help="the newer version", min=1)],
) -> None:
    """What changed between two stored versions, setting by setting."""
    changes = run(ctx, lambda aiops: aiops.config.diff(agent, old, new))

    def render() -> None:
        if not changes:
            typer.echo(f"agent {agent}: versions {old} and {new} have the same settings")
            return
        rows = [(c.path, compact(c.old), compact(c.new)) for c in changes]
        console().print(table(["SETTING", f"v{old}", f"v{new}"], rows))

    emit(ctx, changes, render)


@app.command("history")
def history(
    ctx: typer.Context,
    agent: AgentArg,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="at most this many versions")] = 50,
) -> None:
    """The agent's stored config versions, newest first: version, when, author, comment."""
    versions = run(ctx, lambda aiops: aiops.config.history(agent, limit))
    if not versions:
        raise Failed(f"agent {agent!r} has no stored config versions")

    def render() -> None:
        rows = [(v.version, v.created_at, v.author or "-", v.comment or "-") for v in versions]
        console().print(table(["VERSION", "STORED", "AUTHOR", "COMMENT"], rows))

    emit(ctx, versions, render)


@app.command("rollback")
def rollback(
    ctx: typer.Context,
    agent: AgentArg,
    version: Annotated[int, typer.Argument(metavar="VERSION", help="the version to go back to", min=1)],
    author: AuthorOption = None,
    comment: Annotated[
        str, typer.Option("--comment", "-m", help="why (default: 'rollback to version N')")
    ] = "",
    key: KeyOption = None,
) -> None:
    """Store a copy of an old version as the next version and hot-reload the agent with it
    (signed with your key, like `config apply`)."""
    who, key_file = signer(key, author)

    async def work(aiops: AiopsClient) -> ConfigApplied:
        # A missing version of a running agent is named here, in one line (an agent that is not
        # running is reported as such by the rollback itself).
        if os.environ.get(DATABASE_URL_ENV) and await aiops.agents.is_running(agent):
            await aiops.config.version(agent, version)
        try:
            return await aiops.config.rollback(agent, version, author=who, comment=comment, key=key_file)
        except ConfigRefusedError as err:  # the worker's error type is no news to the operator
            raise Failed(str(err).replace(f"{UNKNOWN_CONFIG_VERSION}: ", "")) from None

    applied = run(ctx, work, agent_id=agent)
    emit(ctx, applied, lambda: _render_applied(applied))


def _render_cases(results: list[CaseResult]) -> None:
    rows = [("pass" if r.passed else "FAIL", r.name, r.expected, r.got) for r in results]
    console().print(table(["RESULT", "CASE", "EXPECTED", "GOT"], rows))
    failed = sum(not r.passed for r in results)
    typer.echo(f"{len(results) - failed} of {len(results)} cases passed")


@app.command("test")
def test(
    ctx: typer.Context,
    config_file: Annotated[
        Path,
        typer.Argument(
            metavar="FILE.json", help="an AgentConfig with `tests`", dir_okay=False, allow_dash=True
        ),
    ],
) -> None:
    """Run a config's cases (its `tests`) here, through the agent type's own decision hook.

    Each case's event goes to a fresh agent built from this config (nothing runs against the
    live agent; no action is started) and the proposal is judged with the config's policy.
    Exit 0 when every case passes, 1 when one fails (each named, with what was expected and what
    happened) or the agent type is not installed here, 2 when the file is not a valid config or
    has no cases. The same cases run on `aiops config apply`, on a worker.
    """
    config = load_config(config_file)
    if not config.tests:
        raise BadInput(f"{config_file}: the config has no cases (`tests`) to run")
    try:
        load_agent_modules()
        default_factory.agent_class(config.type)
    except Exception as err:
        raise Failed(f"cannot run the cases here: {err}") from None
    results = asyncio.run(run_cases(default_factory, config))
    emit(ctx, results, lambda: _render_cases(results))
    failed = [r.name for r in results if not r.passed]
    if failed:
        raise Failed(f"{len(failed)} case(s) failed: {', '.join(repr(n) for n in failed)}")
