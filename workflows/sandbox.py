"""The workflow sandbox every worker and replayer of this project uses.

Workflow code runs in Temporal's sandbox, which re-imports modules per workflow
so that no state leaks between runs. ``cryptography`` (under PyJWT, which
verifies signed approvals in workflow code) must not be re-imported: its Rust
extension may be initialized once per process, and a re-import inside the
sandbox (which its Rust code triggers when it raises ``InvalidSignature``)
aborts the whole worker process. Both are passed through: they are pure
functions of their inputs, with no state a workflow could leak.
"""

from __future__ import annotations

from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

PASSED_THROUGH = ("cryptography", "jwt")


def workflow_runner() -> SandboxedWorkflowRunner:
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(*PASSED_THROUGH)
    )
