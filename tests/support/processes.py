"""Real worker processes (``python worker.py``) for tests about many workers and crashes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def worker_process(
    address: str, task_queue: str, identity: str, database_url: str, **env: str
) -> Iterator[subprocess.Popen[str]]:
    """Start ``worker.py`` with the test agents loaded; wait until it polls; kill it at the end."""
    environment = {
        **os.environ,
        "TEMPORAL_ADDRESS": address,
        "DATABASE_URL": database_url,
        "AIOPS_HTTP_PORT": "0",  # several workers per test host: let each pick a free port
        "AIOPS_HEALTH_EVERY": "0",  # no health-monitor schedules left behind by test workers
        "PYTHONPATH": str(ROOT),
        "AIOPS_AGENT_MODULES": "tests.support.agents_for_tests",
        **env,
    }
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "worker.py"), "--task-queue", task_queue, "--identity", identity],
        cwd=ROOT,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        assert process.stdout is not None
        for line in process.stdout:
            if "worker ready" in line:
                break
            if time.monotonic() > deadline:
                raise AssertionError("worker did not become ready")
        else:
            raise AssertionError(f"worker exited early with code {process.wait()}")
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
