"""``aiops config``: apply, compare, list and roll back an agent's stored config versions."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from activities.database.pool import DATABASE_URL_ENV
from aiops.cli.common import KeyOption, load_config, run, signer
from aiops.cli.output import Failed, compact, console, emit, table
from aiops.client import AiopsClient, ConfigRefusedError
from aiops.contracts.activities import UNKNOWN_CONFIG_VERSION
from aiops.contracts.agent import ConfigApplied

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
) -> None:
    """Validate a config on a worker, store it as the next version and hot-reload the running agent.

    A refused config (a problem in a setting, another type, a secret that does
    not resolve) exits 1 with every reason and changes nothing. Signed with your key: the agent
    takes a config change only from someone with the reconfigure role (admin by default), unless
    its config is in dev mode (approval.allow_unsigned).
    """
    config = load_config(config_file)
    who, key_file = signer(key, author)
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
