"""``aiops api-token``: personal tokens for the REST API (docs/api.md), stored hashed in PostgreSQL.

The token's text is printed once, by ``create``; the database keeps only its SHA-256, so
``list`` shows ids, owners, roles and dates, never a token. Needs ``DATABASE_URL`` (the
PostgreSQL the workers and the gateway use); it does not connect to Temporal.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, TypeVar

import typer

from activities.database.api_tokens import ApiToken, ApiTokenError, ApiTokens
from activities.database.pool import DATABASE_URL_ENV, database_url, open_pool
from aiops.api.auth import LADDER
from aiops.cli.output import BadInput, Failed, console, emit, table, when

T = TypeVar("T")
MAX_DAYS = 366
ROLES = (*LADDER, "approver")

app = typer.Typer(help="Personal tokens for the REST API: create, list, revoke.", no_args_is_help=True)


def _run(work: Callable[[ApiTokens], Awaitable[T]]) -> T:
    url = database_url()
    if not url:
        raise BadInput(f"set {DATABASE_URL_ENV} to the PostgreSQL the gateway uses")

    async def session() -> T:
        pool = await open_pool(url, attempts=3, max_size=2)
        try:
            return await work(ApiTokens(pool))
        finally:
            await pool.close()

    try:
        return asyncio.run(session())
    except ApiTokenError as err:
        raise Failed(str(err)) from None
    except OSError as err:
        raise Failed(f"cannot reach PostgreSQL: {err}") from None


def _row(token: ApiToken) -> list[str]:
    now = datetime.now(UTC)
    state = "revoked" if token.revoked_at else "expired" if token.expires_at <= now else "active"
    return [token.id, token.owner, ",".join(token.roles), state, when(token.expires_at), token.comment]


@app.command("create")
def create(
    ctx: typer.Context,
    owner: Annotated[str, typer.Argument(metavar="NAME", help="the person every call with it names")],
    role: Annotated[
        list[str],
        typer.Option("--role", "-r", help=f"a role it carries (repeat): {', '.join(ROLES)}"),
    ],
    days: Annotated[int, typer.Option("--days", min=1, max=MAX_DAYS, help="it expires after DAYS")] = 30,
    comment: Annotated[str, typer.Option("--comment", help="what it is for")] = "",
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="print only the token's text, for TOKEN=$(...)")
    ] = False,
) -> None:
    """Create a token for NAME with these roles; its text is printed once (only its hash is stored)."""
    unknown = sorted(set(role) - set(ROLES))
    if unknown:
        raise BadInput(f"unknown role(s) {', '.join(unknown)}; use {', '.join(ROLES)}")
    if not owner.strip() or len(owner) > 200:
        raise BadInput("NAME must be 1 to 200 characters")
    expires = datetime.now(UTC) + timedelta(days=days)
    token, text = _run(lambda tokens: tokens.create(owner, role, expires, comment))

    if quiet:
        typer.echo(text)
        return

    def render() -> None:
        typer.echo(f"API token {token.id} for {owner} ({', '.join(token.roles)}), expires {when(expires)}:")
        typer.echo(f"  {text}")
        typer.echo("it is shown once: keep it secret (curl -H 'Authorization: Bearer <token>' ...)")

    emit(ctx, {**token.model_dump(mode="json"), "token": text}, render)


@app.command("list")
def list_tokens(
    ctx: typer.Context,
    owner: Annotated[str | None, typer.Option("--owner", help="only NAME's tokens")] = None,
) -> None:
    """List the tokens (never their text): id, owner, roles, active/expired/revoked, expiry."""
    found = _run(lambda tokens: tokens.listed(owner))
    emit(
        ctx,
        [t.model_dump(mode="json") for t in found],
        lambda: console().print(
            table(["id", "owner", "roles", "state", "expires", "comment"], map(_row, found))
        ),
    )


@app.command("revoke")
def revoke(
    ctx: typer.Context,
    token_id: Annotated[str, typer.Argument(metavar="ID", help="the token's id, as `list` shows it")],
) -> None:
    """Revoke a token: every later call with it is refused (401, audited)."""
    if len(token_id) > 40:
        raise BadInput("ID is the 12-character id `aiops api-token list` shows")
    token = _run(lambda tokens: tokens.revoke(token_id))
    emit(
        ctx,
        token.model_dump(mode="json"),
        lambda: typer.echo(f"revoked API token {token.id} of {token.owner}"),
    )
