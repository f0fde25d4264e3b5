"""A JSON file that may hold resolved secrets, for a tool that reads its inputs from a file.

Values an operator configured as secret references (``env:``/``file:``) arrive resolved. Handing
them to a child tool on its command line would show them to every local user (``ps``), and
leaving them in a file would outlive the run; so they go to a file only the worker's user can
read (created 0600, never an existing one), which is deleted when the run is over.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def secret_json_file(folder: Path, prefix: str, suffix: str, body: Any) -> Iterator[Path]:
    """``body`` as JSON in a new 0600 file ``folder/<prefix><random><suffix>``, removed on exit."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = folder / f"{prefix}{uuid.uuid4().hex}{suffix}"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(body, f)
        yield path
    finally:
        path.unlink(missing_ok=True)
