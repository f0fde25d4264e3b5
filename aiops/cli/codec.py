"""``aiops codec``: make the secrets of payload encryption (docs/encryption.md).

Both commands print to stdout only; nothing is written to disk or sent anywhere.
"""

from __future__ import annotations

from typing import Annotated

import typer

from aiops.cli.output import BadInput, emit
from aiops.codec.settings import CodecConfigError, new_key
from aiops.codec.tokens import new_token

app = typer.Typer(help="Payload encryption: new keys and codec-server tokens.", no_args_is_help=True)


@app.command("key")
def key(ctx: typer.Context) -> None:
    """Print a new random 256-bit encryption key (base64): store it as a Secret and list it in
    AIOPS_CODEC_KEYS as id=env:NAME or id=file:/path."""
    value = new_key()

    def render() -> None:
        typer.echo(value)

    emit(ctx, {"key": value}, render)


@app.command("token")
def token(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="whose token (shown in the gateway's logs)")],
) -> None:
    """Print a new codec-server token and its hash line: give the token to NAME (their Web UI or
    `temporal --codec-auth`), put the hash line in AIOPS_CODEC_SERVER_TOKENS."""
    try:
        value, line = new_token(name)
    except CodecConfigError as err:
        raise BadInput(str(err)) from None

    def render() -> None:
        typer.echo(f"token (give it to {name}; it is not stored anywhere):\n  {value}")
        typer.echo(f"hash line (add it to AIOPS_CODEC_SERVER_TOKENS):\n  {line}")

    emit(ctx, {"name": name, "token": value, "hash_line": line}, render)
