"""Not keeping a run's first activation alive for as long as the run is cached.

The SDK hands a new workflow instance pieces of the protobuf message of the run's first
activation: the last completion result, the last failure, the headers and the memo (in
``WorkflowInstanceDetails`` and ``ExecuteWorkflowInput``). Each of those pieces keeps the whole
message alive, start input included: about 11 KB of C heap for every cached agent, for its
whole life, which mattered once a worker holds thousands of idle agents. Copies (same bytes, no
link to the message) break the link; only public SDK types are used, and what workflows see is
unchanged. Measured with 1,000 idle agents in one worker: 126 -> 116 KB of RSS per agent.

The runner is also where a run is created, so it hands the runs an action's eager start waits
for to ``FirstActivations`` (``activities/first_activation.py``), which tells the start when
their first activation has been computed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, TypeVar

from temporalio.worker import (
    ExecuteWorkflowInput,
    Interceptor,
    WorkflowInboundInterceptor,
    WorkflowInstance,
    WorkflowInstanceDetails,
    WorkflowInterceptorClassInput,
)

from activities.first_activation import FirstActivations
from workflows.sandbox import OWN_PACKAGES, ProjectWorkflowRunner

M = TypeVar("M")


def _detached(message: M) -> M:
    """The same protobuf message, parsed anew: it no longer keeps its parent message alive."""
    parsed: M = type(message).FromString(message.SerializeToString())  # type: ignore[attr-defined]
    return parsed


class DetachedRunner(ProjectWorkflowRunner):
    """The project's runner, handing each new instance copies instead of the activation's parts,
    and telling ``first_activations`` when a run a start waits for has computed its first one."""

    def __init__(
        self, unsandboxed: Sequence[str] = OWN_PACKAGES, first_activations: FirstActivations | None = None
    ) -> None:
        super().__init__(unsandboxed)
        self.first_activations = first_activations

    def create_instance(self, det: WorkflowInstanceDetails) -> WorkflowInstance:
        info = dataclasses.replace(
            det.info,
            headers={k: _detached(v) for k, v in det.info.headers.items()},
            raw_memo={k: _detached(v) for k, v in det.info.raw_memo.items()},
        )
        last_failure = _detached(det.last_failure) if det.last_failure is not None else None
        det = dataclasses.replace(
            det,
            info=info,
            last_completion_result=_detached(det.last_completion_result),
            last_failure=last_failure,
        )
        instance = super().create_instance(det)
        first = self.first_activations
        if first is not None and first.awaited(det.info.workflow_id):
            first.tell_after_first_activation(instance, det.info.workflow_id)
        return instance


class _DetachedHeaders(WorkflowInboundInterceptor):
    async def execute_workflow(self, input: ExecuteWorkflowInput) -> Any:
        input.headers = {k: _detached(v) for k, v in input.headers.items()}
        return await super().execute_workflow(input)


class DetachActivation(Interceptor):
    """The other half: the headers the run's ``execute_workflow`` call keeps for the run's life."""

    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor] | None:
        return _DetachedHeaders


def detached_runner(
    unsandboxed: Sequence[str] = OWN_PACKAGES, first_activations: FirstActivations | None = None
) -> DetachedRunner:
    return DetachedRunner(unsandboxed, first_activations)
