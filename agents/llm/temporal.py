"""What a worker registers to run diagnoses (the worker-plugin hook adds it, see below).

Diagnoses run on their own task queue, ``diagnosis_task_queue(task_queue)`` =
``<task queue>.llm-diagnosis``, served by a worker built with ``build_diagnosis_worker``:

- ``WORKFLOWS``: ``DiagnosisWorkflow`` and ``LlmBudgetWorkflow``;
- ``activities()``: Pydantic AI's model-request and tool-call activities for the diagnosis agent,
  and the two hourly-budget activities;
- ``plugins()``: Pydantic AI's ``PydanticAIPlugin`` on that worker only. It is required: it passes
  ``pydantic_ai``, ``pydantic``, ``httpx``, ``openai``... through the workflow sandbox, makes the
  agent's deterministic run errors fail the workflow instead of its task, and swaps the payload
  converter for ``PydanticAIPayloadConverter``, a subclass of the ``pydantic_data_converter``'s
  ``PydanticPayloadConverter`` with the same JSON wire format (memoised adapters and the validation
  context Pydantic AI's message history needs), so it interoperates with every other worker and
  client here.

The ``llm`` agent registers ``build_diagnosis_worker`` through the SDK's worker-plugin hook
(``agents.registry.register_worker_plugin``, in ``agents.llm.agent``): the worker runtime builds it
for every worker serving the ``llm`` type. The agent and these activities reach Temporal with the
worker's own client, from the framework services the runtime installs (``agents.services``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from pydantic_ai.durable_exec.temporal import PydanticAIPlugin, TemporalDurability
from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from agents.llm.contracts import diagnosis_task_queue
from agents.llm.diagnosis import BUDGET_ACTIVITIES, diagnosis_agent
from agents.llm.workflow import DiagnosisWorkflow, LlmBudgetWorkflow

WORKFLOWS: list[type] = [DiagnosisWorkflow, LlmBudgetWorkflow]

try:  # MCP toolsets are built inside workflow code (tools.mcp_server_toolset): import their heavy
    # modules here, once per process, not during a workflow activation, where an import taking
    # over 2 s on a loaded machine trips the SDK's deadlock detector.
    import fastmcp.client.transports  # noqa: F401
    import pydantic_ai.mcp  # noqa: F401
except ImportError:  # the mcp extra is not installed: no MCP tools in this process
    pass

__all__ = [
    "WORKFLOWS",
    "activities",
    "build_diagnosis_worker",
    "diagnosis_task_queue",
    "plugins",
    "workflow_runner",
]


def activities() -> list[Callable[..., Any]]:
    """The model-request and tool-call activities of the diagnosis agent, and the budget ones."""
    bound = TemporalDurability.from_agent(diagnosis_agent)
    assert bound is not None
    return [*bound.temporal_activities, *BUDGET_ACTIVITIES]


def plugins() -> list[PydanticAIPlugin]:
    return [PydanticAIPlugin()]


def workflow_runner() -> SandboxedWorkflowRunner:
    """The sandbox with ``agents.llm`` passed through: the diagnosis agent (built once, at import,
    with its activities registered) and the models registered in this process must be the host's."""
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules("agents.llm")
    )


def build_diagnosis_worker(client: Client, task_queue: str, **worker_options: Any) -> Worker:
    """The worker of ``<task_queue>.llm-diagnosis``.

    ``worker_options`` go to ``Worker`` (``identity``, ``graceful_shutdown_timeout``,
    ``deployment_config``...); the worker runtime passes its own."""
    worker_options.setdefault("graceful_shutdown_timeout", timedelta(seconds=30))
    return Worker(
        client,
        task_queue=diagnosis_task_queue(task_queue),
        workflows=WORKFLOWS,
        activities=activities(),
        plugins=plugins(),
        workflow_runner=workflow_runner(),
        **worker_options,
    )
