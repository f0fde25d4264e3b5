"""An approver's key file: who they are and the private key they sign decisions with.

Like an SSH key: each person generates their own (``aiops keys generate NAME``),
keeps the private half in a file only they can read, and gives the one-line
public half (``ed25519:...``) to whoever maintains the agents' configs, which
list it under ``approval.approvers[].public_key``. The CLI finds the file at
``--key FILE``, else ``$AIOPS_KEY_FILE``, else ``~/.config/aiops/key.json``, and
takes the approver's name from it: the identity is the key's, never the
operating system's user name.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from aiops.contracts.errors import AiopsError, describe_validation_error
from workflows.approval_token import generate_private_key, private_key_pem, public_key_text

KEY_FILE_ENV = "AIOPS_KEY_FILE"
MAX_KEY_FILE_BYTES = 16_384
# A name that is typed on command lines, shown in tables and audit rows, and matched against
# configs: letters, digits and ``. _ - @`` (an e-mail address works), starting with a letter or digit.
APPROVER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,199}")


class KeyFileError(AiopsError):
    """A key file that is missing, unreadable or not an approver's key; the message says which."""


class KeyFile(BaseModel):
    """What ``aiops keys generate`` writes (JSON, mode 0600)."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    approver: str = Field(min_length=1, max_length=200)
    private_key: str = Field(min_length=1, max_length=8192)  # PKCS#8 PEM, unencrypted

    def key(self) -> Ed25519PrivateKey:
        try:
            key = load_pem_private_key(self.private_key.encode(), password=None)
        except (ValueError, TypeError) as err:
            raise KeyFileError(f"the private key is not a readable PEM key: {err}") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyFileError("the private key is not an Ed25519 key (make one with `aiops keys generate`)")
        return key

    def public_key(self) -> str:
        return public_key_text(self.key().public_key())


def default_path() -> Path:
    given = os.environ.get(KEY_FILE_ENV, "").strip()
    if given:
        return Path(given).expanduser()
    return Path.home() / ".config" / "aiops" / "key.json"


def check_approver_name(approver: str) -> str:
    """``approver`` if it is a valid approver name, else ``KeyFileError`` saying what a name may hold."""
    if not APPROVER_NAME.fullmatch(approver):
        raise KeyFileError(
            f"{approver[:60]!r} is not an approver name: 1 to 200 letters, digits, '.', '_', '-' or '@', "
            "starting with a letter or digit (e.g. alice, alice.smith@example.com)"
        )
    return approver


def generate(approver: str, path: Path, overwrite: bool = False) -> KeyFile:
    """Write a new key pair for ``approver`` to ``path`` (readable by its owner only)."""
    check_approver_name(approver)
    if path.exists() and not overwrite:
        raise KeyFileError(f"{path} exists; pass --force to replace it (its approvals would stop verifying)")
    key_file = KeyFile(approver=approver, private_key=private_key_pem(generate_private_key()).decode())
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as f:
        f.write(key_file.model_dump_json(indent=2) + "\n")
    os.chmod(path, 0o600)
    return key_file


def load(path: Path) -> KeyFile:
    """The key file at ``path``; ``KeyFileError`` saying what is wrong otherwise."""
    try:
        if path.stat().st_size > MAX_KEY_FILE_BYTES:
            raise KeyFileError(f"{path} is over {MAX_KEY_FILE_BYTES} bytes: not a key file")
        text = path.read_text()
    except FileNotFoundError:
        raise KeyFileError(
            f"no key file at {path}: make one with `aiops keys generate NAME` (or pass --key FILE, "
            f"or set {KEY_FILE_ENV})"
        ) from None
    except (OSError, UnicodeDecodeError) as err:
        raise KeyFileError(f"cannot read {path}: {err}") from None
    try:
        key_file = KeyFile.model_validate(json.loads(text))
    except (ValueError, ValidationError) as err:
        why = describe_validation_error(err) if isinstance(err, ValidationError) else str(err)
        raise KeyFileError(f"{path} is not an aiops key file: {why}") from None
    key_file.key()  # a key that does not load is refused now, not at the first approval
    return key_file
