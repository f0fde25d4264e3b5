"""What crosses into and out of the diagnosis workflow: no secret, only references and settings."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from agents.llm.settings import EndpointSettings, LlmSettings, ToolSettings
from aiops.contracts.models import SystemEvent

DIAGNOSIS_WORKFLOW_TYPE = "DiagnosisWorkflow"
BUDGET_WORKFLOW_TYPE = "LlmBudgetWorkflow"
DIAGNOSIS_QUEUE_SUFFIX = "llm-diagnosis"


def diagnosis_task_queue(task_queue: str) -> str:
    """Where diagnosis workflows and their activities run: ``<task queue>.llm-diagnosis``.

    A queue of its own: its worker needs Pydantic AI's plugin (sandbox pass-throughs, its payload
    converter), and one process cannot run two workers on one queue with one client."""
    return f"{task_queue}.{DIAGNOSIS_QUEUE_SUFFIX}"


def diagnosis_workflow_id(agent_id: str, event_id: str) -> str:
    """Derived from agent and event: a retried decision re-attaches to the same diagnosis."""
    return f"llm-diagnosis-{agent_id}:{event_id}"


class DiagnosisDeps(BaseModel):
    """The run's dependencies, serialized into every model and tool activity (so: no secrets)."""

    model_config = ConfigDict(extra="forbid")

    agent_id: str
    event_id: str
    task_queue: str  # the framework's task queue (the agent's own status lives there)
    endpoint: EndpointSettings
    tools: ToolSettings


class DiagnosisInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    agent_id: str
    task_queue: str
    event: SystemEvent
    settings: LlmSettings
    timeout_seconds: float = Field(gt=0)
