"""Small pieces the built-in agents share: types for their settings models, and event-id slugs.

Their idempotency records live in the action ledger (``agents.ledger``), not here.
"""

from __future__ import annotations

import os
import re
from typing import Annotated

from pydantic import AfterValidator, Field

# ----- pieces of typed settings (agents.settings models) -------------------------------------------

SYSTEM_TREES = ("/proc", "/sys", "/dev", "/etc", "/usr", "/boot")


def absolute_path(value: str) -> str:
    """An absolute path in normal form, the only kind a setting may name (no ``..`` tricks)."""
    if "\0" in value or "\n" in value:
        raise ValueError("must not contain NUL or newline characters")
    if len(value) > 1024:
        raise ValueError("is longer than 1024 characters")
    if not value.startswith("/"):
        raise ValueError(f"{value!r} is not an absolute path (it must start with /)")
    if os.path.normpath(value) != value or "//" in value:
        raise ValueError(
            f"{value!r} is not in normal form (no '..', '.', '//' or trailing '/'); "
            f"write {os.path.normpath(value)!r}"
        )
    return value


def inside(path: str, folder: str) -> bool:
    """Lexically, no I/O: whether ``path`` is ``folder`` or lies below it."""
    return path == folder or folder == "/" or path.startswith(folder.rstrip("/") + "/")


def own_folder(value: str) -> str:
    """A folder the agent may write its own files to: not ``/`` and not in a system tree."""
    if value == "/" or any(inside(value, tree) for tree in SYSTEM_TREES):
        raise ValueError(f"{value!r} is a system directory; use a dedicated folder")
    return value


AbsolutePath = Annotated[str, Field(strict=True, min_length=1), AfterValidator(absolute_path)]
OwnFolder = Annotated[AbsolutePath, AfterValidator(own_folder)]


def slug(text: str, fallback: str) -> str:
    """``text`` reduced to a short, safe piece of an event id."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")[:40] or fallback
