"""Workflow code stays deterministic: no clock, randomness, I/O or threads in ``workflows/``.

This project's workflows run outside Temporal's sandbox (see ``workflows/sandbox.py``), so nothing
checks these modules at run time; this scan does, for every module there, and the replay test
proves the recorded paths.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.worker import UnsandboxedWorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from workflows.action.workflow import ActionWorkflow
from workflows.agent.detector import DetectorWorkflow
from workflows.agent.workflow import AgentWorkflow
from workflows.health_monitor import HealthMonitorWorkflow
from workflows.sandbox import ProjectWorkflowRunner

ROOT = Path(__file__).resolve().parents[2]
# The workflows and the contracts they run (passed through the sandbox, so checked here).
DETERMINISTIC = (ROOT / "workflows", ROOT / "aiops" / "contracts")

# Modules whose use in workflow code reads the clock, draws randomness, does I/O or starts threads.
BANNED_MODULES = {
    "asyncpg",
    "concurrent",
    "http",
    "httpx",
    "multiprocessing",
    "os",
    "pathlib",
    "random",
    "requests",
    "secrets",
    "shutil",
    "signal",
    "socket",
    "subprocess",
    "tempfile",
    "threading",
    "time",
    "urllib",
    "uuid",
}
# Calls that read the clock or leave the event loop, whatever they are called on (but see below).
BANNED_ATTRIBUTES = {"now", "utcnow", "today", "time_ns", "to_thread", "run_in_executor", "getenv"}
# ``workflow.now()`` is the workflow's own, replayed clock.
ALLOWED_OWNERS = {"workflow"}
BANNED_BUILTINS = {"open", "input", "breakpoint", "exec", "eval"}
# A line that only clients run (say signing a token, in the module both sides share) says so.
EXEMPT = "# not workflow code:"


def problems(source: str, name: str = "<source>") -> list[str]:
    found: list[str] = []
    lines = source.splitlines()
    for node in ast.walk(ast.parse(source, name)):
        line = getattr(node, "lineno", 0)
        if line and EXEMPT in lines[line - 1]:
            continue
        where = f"{name}:{line}"
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in BANNED_MODULES:
                    found.append(f"{where}: imports {alias.name}")
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] in BANNED_MODULES:
                found.append(f"{where}: imports from {node.module}")
        elif isinstance(node, ast.Attribute) and node.attr in BANNED_ATTRIBUTES:
            owner = node.value.id if isinstance(node.value, ast.Name) else None
            if owner not in ALLOWED_OWNERS:
                found.append(f"{where}: uses .{node.attr}")
        elif (
            isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in BANNED_BUILTINS
        ):
            found.append(f"{where}: calls {node.func.id}()")
    return found


def test_workflow_modules_read_no_clock_and_do_no_io() -> None:
    modules = sorted(path for folder in DETERMINISTIC for path in folder.rglob("*.py"))
    assert len(modules) > 20
    found = [p for path in modules for p in problems(path.read_text(), path.name)]
    assert found == []


@pytest.mark.parametrize(
    "source, expected",
    [
        ("import time\n", "imports time"),
        ("import os.path\n", "imports os.path"),
        ("from random import choice\n", "imports from random"),
        ("from datetime import datetime\nx = datetime.now()\n", "uses .now"),
        ("import datetime\nx = datetime.date.today()\n", "uses .today"),
        ("import asyncio\nasync def f():\n    await asyncio.to_thread(print)\n", "uses .to_thread"),
        ("data = open('/etc/passwd').read()\n", "calls open()"),
        ("from uuid import uuid4\n", "imports from uuid"),
    ],
)
def test_the_scan_finds_what_the_sandbox_would_have_refused(source: str, expected: str) -> None:
    assert any(expected in p for p in problems(source)), problems(source)


def test_the_workflows_own_clock_is_allowed() -> None:
    assert problems("from temporalio import workflow\nx = workflow.now()\n") == []


def test_a_line_only_clients_run_says_so() -> None:
    assert problems("import uuid  # not workflow code: clients sign tokens\n") == []
    assert problems("import uuid  # clients sign tokens\n") != []


@workflow.defn(name="SomeoneElses")
class SomeoneElses:
    """A workflow of another package (an agent author's, say)."""

    @workflow.run
    async def run(self) -> None:
        return None


def test_this_projects_workflows_run_unsandboxed_and_every_other_in_the_sandbox() -> None:
    runner = ProjectWorkflowRunner()
    for own in (AgentWorkflow, ActionWorkflow, DetectorWorkflow, HealthMonitorWorkflow):
        assert isinstance(runner.runner_for(own), UnsandboxedWorkflowRunner), own
    assert isinstance(runner.runner_for(SomeoneElses), SandboxedWorkflowRunner)
    assert ProjectWorkflowRunner(["tests"]).runs_unsandboxed(SomeoneElses)
    assert not ProjectWorkflowRunner(["test"]).runs_unsandboxed(SomeoneElses)  # a package, not a prefix
