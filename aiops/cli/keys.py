"""``aiops keys``: an approver's own key pair, to sign decisions with (see aiops/keys.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from aiops import keys
from aiops.cli.output import BadInput, emit

app = typer.Typer(help="Your approver key: generate it, show its public half.", no_args_is_help=True)

OutOption = Annotated[
    Path | None,
    typer.Option(
        "--out", metavar="FILE", help="where (default: $AIOPS_KEY_FILE, else ~/.config/aiops/key.json)"
    ),
]


@app.command("generate")
def generate(
    ctx: typer.Context,
    name: Annotated[
        str, typer.Argument(metavar="NAME", help="your approver name, as in the agents' configs")
    ],
    out: OutOption = None,
    force: Annotated[bool, typer.Option("--force", help="replace an existing key file")] = False,
) -> None:
    """Make a key pair for NAME: the private key stays in FILE (mode 0600); put the printed public
    key in each agent's config under approval.approvers (name, roles, public_key)."""
    path = (out or keys.default_path()).expanduser()
    try:
        keys.check_approver_name(name)
        key_file = keys.generate(name, path, overwrite=force)
    except keys.KeyFileError as err:
        raise BadInput(str(err)) from None
    public = key_file.public_key()

    def render() -> None:
        typer.echo(f"wrote {path} (keep it private)")
        typer.echo(f"public key of {name}:\n  {public}")
        entry = json.dumps({"name": name, "roles": ["sre"], "public_key": public})
        typer.echo(f'in the agents\' configs, under "approval": {{"approvers": [...]}}:\n  {entry}')

    emit(ctx, {"approver": name, "key_file": str(path), "public_key": public}, render)


@app.command("show")
def show(
    ctx: typer.Context,
    key: Annotated[Path | None, typer.Option("--key", metavar="FILE", help="the key file")] = None,
) -> None:
    """Print the approver name and public key of your key file."""
    path = (key or keys.default_path()).expanduser()
    try:
        key_file = keys.load(path)
    except keys.KeyFileError as err:
        raise BadInput(str(err)) from None
    public = key_file.public_key()
    emit(
        ctx,
        {"approver": key_file.approver, "key_file": str(path), "public_key": public},
        lambda: typer.echo(f"{key_file.approver}: {public}"),
    )
