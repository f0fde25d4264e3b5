"""The README's run command, end to end: ``bash scripts/demo.sh`` on its own dev stack.

The stack (Temporal dev server, PostgreSQL, a worker) gets free ports and a fresh data folder, so
the demo runs beside the test session's servers. The demo runs twice in a row, the second time
with ``--llm``, on that one data folder and stack, as a user following the README would: the
second run must tell its whole story again (new events, not repeats of the first run's). Then
``temporal-dev/stop.sh --reset`` stops everything and deletes the folder.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import tempfile
from pathlib import Path

import pytest

from aiops.gateway.config import load_config
from tests.support.postgres_server import free_port
from tests.support.processes import ROOT

pytestmark = pytest.mark.slow

STORY = [
    "Two Terraform root modules, applied",
    "demo-staging: a medium-risk change, applied on its own and verified",
    "Apply complete! Resources: 0 added, 1 changed, 0 destroyed.",
    "an alert sent to demo-terraform was filtered",
    "prod's plan destroys and recreates the route table: high risk, so it waits for a person",
    "$ aiops approvals list",
    "require_approval",
    "# terraform_data.route_table must be replaced",  # the evidence: Terraform's own rendering
    "/namespaces/default/workflows/action-demo-terraform:",
    "temporal workflow signal --workflow-id action-demo-terraform:",
    "is not signed",  # the unsigned approval "as alice" is refused
    "$ aiops approvals approve action-demo-terraform:",
    "approved action-demo-terraform:",
    "Apply complete! Resources: 1 added, 0 changed, 1 destroyed.",
    "verified: a fresh `terraform plan` of prod shows no changes",
    "execution_result",
    "hash chain of demo-terraform:",
    "intact",
    # The real system: a tmpfs filled with old logs, fixed after approval and verified.
    "A real system: a small disk (tmpfs) fills up with rotated logs",
    "Its detector (a Temporal Schedule per agent) runs now",
    "$ aiops approvals approve action-demo-disk:",
    "status verified",
    "left: ['app.log']",
    # The REST API and the console, after the demo: the gateway config and the commands to use it.
    "a gateway config is ready in",
    "aiops api-token create alice --role sre --role approver -q",
    "/console/ and sign in with the token",
]
LLM_STORY = [
    "An llm agent diagnoses an alert with a scripted model",
    "model    registered:scripted:",
    "1 tool call(s)",
    "$ aiops approvals show action-demo-llm:",
    "restart_service",
    "out of memory",
    "$ aiops approvals reject action-demo-llm:",
    "status rejected",
]
LLM_STORY_STARTS = LLM_STORY[0]


async def test_the_demo_reruns_on_one_data_folder_with_the_llm_chapter() -> None:
    """Once, then again with ``--llm``: two whole stories on one stack, each with its own run id,
    its own prod action (the second run stops what the first left and starts afresh) and the
    second with the llm chapter too. The rerun is the one with ``--llm``, not a third run: that
    run tells the whole default story as well, and a third demo was 40 s of the suite."""
    data = Path(tempfile.mkdtemp(prefix="aiops-demo-"))
    os.chmod(data, 0o755)  # PostgreSQL runs as its own user and must reach its folder
    env = {
        **os.environ,
        "AIOPS_DEV_DATA": str(data),
        "AIOPS_TEMPORAL_PORT": str(free_port()),
        "AIOPS_TEMPORAL_UI_PORT": str(free_port()),
        "AIOPS_PG_PORT": str(free_port()),
        "AIOPS_HTTP_PORT": str(free_port()),
    }
    env.pop("TEMPORAL_ADDRESS", None)
    env.pop("DATABASE_URL", None)
    env.pop("AIOPS_KEY_FILE", None)
    try:
        first = await _demo([], env)
        assert LLM_STORY_STARTS not in first, "the default demo has no llm chapter"
        second = await _demo(["--llm"], env, LLM_STORY)
        assert "A fresh story: stopping what an earlier demo run left running" in second
        runs = [_one(r"(?m)^demo run (\S+) \(data in", out) for out in (first, second)]
        actions = [_one(r"approved (action-demo-terraform:\S+) as alice", out) for out in (first, second)]
        assert len(set(runs)) == 2 and len(set(actions)) == 2, (runs, actions)
        for name in (
            "alice.key.json", "demo-terraform.json", "demo-staging.json", "demo-disk.json", "gateway.yaml",
        ):  # fmt: skip
            assert (data / name).is_file(), f"{name}: the README's commands use it after the demo"
        gateway = load_config(data / "gateway.yaml")  # what `aiops gateway --routes` serves
        assert gateway.version == 1, "the same config on every run: its version never had to rise"
        assert gateway.config.api and gateway.config.api.console and gateway.config.api.console.issuer is None
    finally:
        reset = await asyncio.to_thread(
            subprocess.run, ["bash", "temporal-dev/stop.sh", "--reset"], cwd=ROOT, env=env,
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert reset.returncode == 0, reset.stdout + reset.stderr
    assert not await asyncio.to_thread(data.exists), "stop.sh --reset deletes the data folder"


async def _demo(args: list[str], env: dict[str, str], expect: list[str] | None = None) -> str:
    run = await asyncio.to_thread(
        subprocess.run, ["bash", "scripts/demo.sh", *args], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=420,
    )  # fmt: skip
    out = run.stdout
    assert run.returncode == 0, f"demo.sh {args}: exit {run.returncode}\n{out[-3000:]}\n{run.stderr[-3000:]}"
    assert "\x1b[" not in out + run.stderr, "no ANSI codes in output that is not a terminal"
    for expected in [*STORY, *(expect or [])]:
        assert expected in out, f"demo.sh {args}: missing {expected!r} in:\n{out[-4000:]}"
    return out


def _one(pattern: str, text: str) -> str:
    found = re.findall(pattern, text)
    assert len(found) == 1, f"{pattern!r} found {found}"
    return str(found[0])


def test_the_reset_refuses_a_folder_the_stack_did_not_make(tmp_path: Path) -> None:
    """``stop.sh --reset`` with a mistyped ``AIOPS_DEV_DATA`` must not empty someone's folder."""
    (tmp_path / "thesis.tex").write_text("years of work")
    env = {**os.environ, "AIOPS_DEV_DATA": str(tmp_path), "AIOPS_TEMPORAL_PORT": str(free_port())}
    env["AIOPS_PG_PORT"] = str(free_port())
    done = subprocess.run(
        ["bash", "temporal-dev/stop.sh", "--reset"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0 and "not deleting" in done.stdout, done.stdout + done.stderr
    assert (tmp_path / "thesis.tex").read_text() == "years of work"


def test_the_demo_refuses_an_unknown_flag_before_starting_anything() -> None:
    done = subprocess.run(
        ["bash", "scripts/demo.sh", "--lm"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2 and "usage: bash scripts/demo.sh" in done.stderr
