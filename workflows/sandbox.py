"""The workflow sandbox every worker and replayer of this project uses.

Workflow code runs in Temporal's sandbox, which imports a workflow's module anew for every run
so that no state leaks between runs. Two kinds of modules are passed through instead:

- ``cryptography`` (under PyJWT, which verifies signed approvals in workflow code) must not be
  re-imported: its Rust extension may be initialized once per process, and a re-import inside
  the sandbox (which its Rust code triggers when it raises ``InvalidSignature``) aborts the
  whole worker process.
- This project's own ``workflows`` package. Re-importing ``agent_workflow.py`` compiled it again
  for every agent run: about 150 KB of code objects per cached agent (half of an idle agent's
  memory) and 5 ms of CPU per start; ``action_workflow.py`` cost 60 KB and 3 ms per action.
  The SDK's documented remedy is to pass such modules through. Their helpers were passed
  through already; they hold no module state a run could leak (constants and pure functions),
  and what the sandbox checked at run time (no clock, randomness, I/O or threads) is checked
  for every module in ``workflows/`` by ``tests/unit/test_workflow_determinism.py`` and proven
  by the replay test over recorded histories.

Workflows of other packages (an agent author's own, the benchmarks' raw ones) keep the full
sandbox.
"""

from __future__ import annotations

from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

PASSED_THROUGH = ("cryptography", "jwt", "workflows")


def restrictions() -> SandboxRestrictions:
    return SandboxRestrictions.default.with_passthrough_modules(*PASSED_THROUGH)


def workflow_runner() -> SandboxedWorkflowRunner:
    """The runner of replayers and tests; workers use ``aiops.runtime.activation_memory``'s, the
    same sandbox keeping less of each run's first activation alive."""
    return SandboxedWorkflowRunner(restrictions=restrictions())
