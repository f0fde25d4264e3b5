"""The README's run command, end to end: ``bash scripts/demo.sh`` on its own dev stack.

The stack (Temporal dev server, PostgreSQL, a worker) gets free ports and a
fresh data folder, so the demo runs beside the test session's servers; it is
stopped with ``temporal-dev/stop.sh`` afterwards.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.support.postgres_server import free_port
from tests.support.processes import ROOT

pytestmark = pytest.mark.slow


async def test_the_demo_tells_the_whole_story_and_exits_cleanly() -> None:
    await _demo([], LLM_STORY_ABSENT)


LLM_STORY_ABSENT = "An llm agent diagnoses"


async def test_the_demo_with_an_llm_agent_and_a_scripted_model() -> None:
    """``--llm``: the whole story, then an alert that a scripted model (a FunctionModel in the
    worker) diagnoses from the service's log into one catalog proposal, which alice rejects."""
    await _demo(
        ["--llm"],
        expect=[
            "Started a worker",
            "An llm agent diagnoses an alert with a scripted model",
            "model    registered:scripted:",
            "1 tool call(s)",
            "$ aiops approvals show action-demo-llm:",
            "restart_service",
            "out of memory",
            "$ aiops approvals reject action-demo-llm:",
            "status rejected",
        ],
    )


async def _demo(args: list[str], absent: str | None = None, expect: list[str] | None = None) -> None:
    data = Path(tempfile.mkdtemp(prefix="aiops-demo-"))
    os.chmod(data, 0o755)  # PostgreSQL runs as its own user and must reach its folder
    temporal_port = free_port()
    env = {
        **os.environ,
        "AIOPS_DEV_DATA": str(data),
        "AIOPS_TEMPORAL_PORT": str(temporal_port),
        "AIOPS_TEMPORAL_UI_PORT": str(free_port()),
        "AIOPS_PG_PORT": str(free_port()),
        "AIOPS_HTTP_PORT": str(free_port()),
    }
    env.pop("TEMPORAL_ADDRESS", None)
    env.pop("DATABASE_URL", None)
    try:
        run = await asyncio.to_thread(
            subprocess.run, ["bash", "scripts/demo.sh", *args], cwd=ROOT, env=env,
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        out = run.stdout
        assert run.returncode == 0, f"{out[-3000:]}\n{run.stderr[-3000:]}"
        assert "\x1b[" not in out + run.stderr, "no ANSI codes in output that is not a terminal"
        for expected in [
            "demo-terraform: a low drift ran on its own",
            "demo-staging: a medium drift ran on its own",
            "the alert was filtered by demo-terraform",
            "$ aiops approvals list",
            "require_approval",
            "/namespaces/default/workflows/action-demo-terraform:",
            "temporal workflow signal --workflow-id action-demo-terraform:",
            "$ aiops approvals approve action-demo-terraform:",
            "approved action-demo-terraform:",
            "execution_result",
            "hash chain of demo-terraform:",
            "intact",
            # The real system: a tmpfs filled with old logs, fixed after approval and verified.
            "A real system: a small disk (tmpfs) fills up with rotated logs",
            "Its detector (a Temporal Schedule per agent) runs now",
            "$ aiops approvals approve action-demo-disk:",
            "status verified",
            "left: ['app.log']",
            *(expect or []),
        ]:
            assert expected in out, f"missing {expected!r} in:\n{out[-4000:]}"
        if absent is not None:
            assert absent not in out, "the default demo has no llm chapter"
    finally:
        await asyncio.to_thread(
            subprocess.run,
            ["bash", "temporal-dev/stop.sh"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            timeout=120,
        )
