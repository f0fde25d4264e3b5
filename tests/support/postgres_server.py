"""The test session's PostgreSQL, started the same way ``temporal-dev/`` starts the dev one."""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import tempfile
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def dev_postgres() -> ModuleType:
    spec = importlib.util.spec_from_file_location("dev_postgres", ROOT / "temporal-dev" / "postgres.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PostgresServer:
    """A throwaway cluster on a free port, in a folder the ``postgres`` user can reach."""

    def __init__(self) -> None:
        self.pg = dev_postgres()
        self.root = Path(tempfile.mkdtemp(prefix="aiops-pg-"))
        os.chmod(self.root, 0o755)
        self.data = self.root / "data"
        self.port = free_port()
        self.url = ""

    def start(self) -> str:
        self.url = self.pg.start(self.data, self.port, quiet=True)
        return self.url

    def stop(self) -> None:
        """Stop the cluster, keeping its data (a test may start it again)."""
        self.pg.stop(self.data, quiet=True)

    def close(self) -> None:
        """Stop the cluster and delete its folder: a cluster is about 125 MB, and a machine that
        runs the suite many times filled its disk with them (900 left in /tmp, 48 GB)."""
        try:
            self.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
