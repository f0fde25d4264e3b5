"""How workflow code runs: this project's own workflows outside Temporal's sandbox, every other
workflow inside it.

Temporal's sandbox imports a workflow's module anew for every run and checks, at run time, that
workflow code reads no clock, draws no randomness, does no I/O and starts no threads. For this
project's ``workflows`` package it did neither any more:

- The package is passed through the sandbox. Re-importing ``agent_workflow.py`` compiled it again
  for every agent run: about 150 KB of code objects per cached agent (half of an idle agent's
  memory) and 5 ms of CPU per start; the action workflow's cost 60 KB and 3 ms per action. The
  SDK's documented remedy is to pass such modules through. They hold no module state a run could
  leak (constants and pure functions).
- A passed-through module runs with the real modules it imported, so the sandbox no longer saw
  its calls: ``datetime.now()`` in a passed-through workflow ran unchecked (tried on the dev
  server; the same call in a sandboxed module fails the workflow task). What it checked is
  checked for every module in ``workflows/`` by ``tests/unit/test_workflow_determinism.py`` and
  proven by the replay test over recorded histories.

What the sandbox still cost them was its per-activation machinery (running each activation and
each payload's serialization context through code executed in the sandbox's namespace): with it,
1,000 idle agents took one event each at 0.74x the rate of raw no-op workflows; without it, at
0.81x (medians of 3 runs). So ``ProjectWorkflowRunner`` runs workflows defined in ``workflows``
unsandboxed.

Workflows of other packages (an agent author's own, the benchmarks' raw ones) keep the full
sandbox, with two packages passed through:

- ``cryptography`` (under PyJWT, which verifies signed approvals in workflow code) must not be
  re-imported: its Rust extension may be initialized once per process, and a re-import inside
  the sandbox (which its Rust code triggers when it raises ``InvalidSignature``) aborts the
  whole worker process.
- ``workflows`` and ``aiops.contracts``: the code and contracts other workflows import.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from temporalio.worker import (
    UnsandboxedWorkflowRunner,
    WorkflowInstance,
    WorkflowInstanceDetails,
    WorkflowRunner,
)
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

PASSED_THROUGH = ("cryptography", "jwt", "workflows", "aiops.contracts")
OWN_PACKAGES = ("workflows",)  # their workflows run unsandboxed; see the module docstring


def restrictions() -> SandboxRestrictions:
    return SandboxRestrictions.default.with_passthrough_modules(*PASSED_THROUGH)


def _in_packages(cls: type, packages: Sequence[str]) -> bool:
    module = cls.__module__
    return any(module == p or module.startswith(p + ".") for p in packages)


class ProjectWorkflowRunner(WorkflowRunner):
    """Runs workflows defined in ``unsandboxed`` packages (this project's ``workflows``) as they
    are, and every other workflow in the sandbox (``restrictions()``)."""

    def __init__(self, unsandboxed: Sequence[str] = OWN_PACKAGES) -> None:
        self.unsandboxed = tuple(unsandboxed)
        self.sandboxed = SandboxedWorkflowRunner(restrictions=restrictions())
        self.plain = UnsandboxedWorkflowRunner()

    def runs_unsandboxed(self, cls: type) -> bool:
        return _in_packages(cls, self.unsandboxed)

    def runner_for(self, cls: type) -> WorkflowRunner:
        """The runner of workflow class ``cls``."""
        return self.plain if self.runs_unsandboxed(cls) else self.sandboxed

    def prepare_workflow(self, defn: Any) -> None:
        self.runner_for(defn.cls).prepare_workflow(defn)

    def create_instance(self, det: WorkflowInstanceDetails) -> WorkflowInstance:
        return self.runner_for(det.defn.cls).create_instance(det)

    def set_worker_level_failure_exception_types(self, types: Sequence[type[BaseException]]) -> None:
        self.sandboxed.set_worker_level_failure_exception_types(types)
        self.plain.set_worker_level_failure_exception_types(types)


def workflow_runner() -> ProjectWorkflowRunner:
    """The runner of replayers and tests; workers use ``aiops.runtime.activation_memory``'s, the
    same routing keeping less of each run's first activation alive."""
    return ProjectWorkflowRunner()
