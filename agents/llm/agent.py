"""The ``llm`` agent type: an alert in, a durable AI diagnosis, at most one catalog action out.

``_process_event_specific`` starts (or re-attaches to) the ``DiagnosisWorkflow`` for this agent
and event and waits for its result. The workflow id derives from agent and event, with
``USE_EXISTING`` for a running one and ``REJECT_DUPLICATE`` for a closed one, so a retried
decision (after a worker crash, say) joins the diagnosis already under way, or reads its result,
instead of asking the model again.

The proposal becomes an ordinary ``AgentAction`` through ``agents.llm.proposal.to_action``: only a
catalog entry, a matching target and allowed parameters, and a risk that is the higher of the
model's and the entry's floor. Everything else (model down, slow, garbage, out of catalog, budget
spent) is "no proposal": the hook returns None, logs the reason and, with
``settings.escalation_agent``, sends that agent an alert. The model never executes and never
approves: execution is the catalog entry's ``executor_agent``'s own hooks, after the policy.

Config requirements (checked by ``_validate_config_specific``): ``runtime.local_decisions: false``
and ``runtime.decision_timeout_seconds`` of at least 60 (300 or more is typical).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any

from temporalio import activity
from temporalio.client import Client, WorkflowFailureError
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.worker import Worker

from agents.base_agent import BaseAgent
from agents.llm import runtime
from agents.llm.contracts import (
    DIAGNOSIS_WORKFLOW_TYPE,
    DiagnosisInput,
    diagnosis_task_queue,
    diagnosis_workflow_id,
)
from agents.llm.proposal import (
    LLM_PARAMETER_KEYS,
    NONE_PROPOSED,
    DiagnosisResult,
    ProposalRefused,
    to_action,
)
from agents.llm.settings import LlmSettings, diagnosis_timeout, parse_settings, settings_problems
from agents.registry import register_agent, register_worker_plugin
from agents.services import framework_services
from aiops.contracts.agent import AgentMessages, agent_workflow_id
from aiops.contracts.config import AgentConfig
from aiops.contracts.errors import NonRetryableActionError
from aiops.contracts.models import ActionResult, AgentAction, EventType, Plan, SystemEvent, escalation_alert

outcomes = logging.getLogger("aiops.llm")
DEFAULT_TASK_QUEUE = "aiops-agents"


def _main_task_queue(agent_type: str) -> str:
    """The framework's task queue, from the decide activity's own (``<queue>`` or ``<queue>.<type>``)."""
    if not activity.in_activity():
        return DEFAULT_TASK_QUEUE
    queue = activity.info().task_queue
    return queue.removesuffix(f".{agent_type}")


def diagnosis_worker(client: Client, task_queue: str, **worker_options: Any) -> Worker:
    """The worker of this type's diagnoses (``agents.llm.temporal``), which every worker serving
    the type runs. Imported only then: registering the type (a CLI validating a config, a worker
    serving other types) does not load Pydantic AI, its Temporal integration or the MCP client."""
    from agents.llm.temporal import build_diagnosis_worker

    return build_diagnosis_worker(client, task_queue, **worker_options)


register_worker_plugin("llm", diagnosis_worker)


@register_agent("llm")
class LlmAgent(BaseAgent):
    def __init__(self, config: AgentConfig) -> None:
        super().__init__(config)
        self.settings: LlmSettings = parse_settings(config.settings)
        self.last_result: DiagnosisResult | None = None  # the latest diagnosis seen by this instance

    def _get_subscribed_event_types(self) -> list[EventType]:
        return [EventType.ALERT, EventType.METRIC_THRESHOLD, EventType.HEALTH_CHECK, EventType.CUSTOM]

    def _validate_config_specific(self, config: AgentConfig) -> list[str]:
        return settings_problems(config)

    async def _reload_config_specific(self, old_config: AgentConfig, new_config: AgentConfig) -> None:
        self.settings = parse_settings(new_config.settings)

    # ----- deciding ----------------------------------------------------------------------------

    async def _process_event_specific(self, event: SystemEvent) -> AgentAction | None:
        task_queue = _main_task_queue(self.config.type)
        try:
            result = await self._diagnose(event, task_queue)
        except Exception as err:  # cannot start, diagnosis failed or timed out: no proposal
            reason = f"the diagnosis did not finish: {type(err).__name__}: {str(err)[:300]}"
            result = DiagnosisResult(agent_id=self.agent_id, event_id=event.id, no_proposal_reason=reason)
        self.last_result = result
        self._log_outcome(result)
        if result.proposal is None or result.diagnosis is None:
            await self._escalate(event, result)
            return None
        try:
            return to_action(result, self.settings, event)
        except ProposalRefused as err:  # the config changed since the diagnosis, or a foreign result
            result.no_proposal_reason = f"proposal refused: {err}"
            self._log_outcome(result)
            await self._escalate(event, result)
            return None

    async def _diagnose(self, event: SystemEvent, task_queue: str) -> DiagnosisResult:
        client = runtime.get_client()
        timeout = diagnosis_timeout(self.config, self.settings)
        request = DiagnosisInput(
            agent_id=self.agent_id,
            task_queue=task_queue,
            event=event,
            settings=self.settings,
            timeout_seconds=timeout,
        )
        workflow_id = diagnosis_workflow_id(self.agent_id, event.id)
        try:
            handle = await client.start_workflow(
                DIAGNOSIS_WORKFLOW_TYPE,
                request,
                id=workflow_id,
                task_queue=diagnosis_task_queue(task_queue),
                result_type=DiagnosisResult,
                execution_timeout=timedelta(seconds=timeout + 30),
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                static_summary=f"llm diagnosis of {event.id} for {self.agent_id}"[:200],
            )
        except WorkflowAlreadyStartedError:  # closed already: read its outcome, never re-run it
            handle = client.get_workflow_handle(workflow_id, result_type=DiagnosisResult)
        try:
            return await asyncio.wait_for(handle.result(), timeout + 35)
        except WorkflowFailureError as err:
            raise RuntimeError(f"diagnosis workflow {workflow_id} failed: {err.cause}") from None

    def _log_outcome(self, result: DiagnosisResult) -> None:
        usage = result.usage
        fields = {
            "agent_id": self.agent_id,
            "event_id": result.event_id,
            "llm_model": result.model,
            "llm_requests": usage.requests,
            "llm_input_tokens": usage.input_tokens,
            "llm_output_tokens": usage.output_tokens,
            "llm_tool_calls": usage.tool_calls,
            "llm_proposal": result.proposal.catalog_entry if result.proposal else None,
        }
        if result.proposal is not None:
            outcomes.info(
                "llm diagnosis of %s: proposal %s on %s (risk %s); %d requests, %d tokens, %d tool calls",
                result.event_id,
                result.proposal.catalog_entry,
                result.proposal.target,
                result.risk_level.value if result.risk_level else "?",
                usage.requests,
                usage.total_tokens,
                usage.tool_calls,
                extra=fields,
            )
        else:
            outcomes.warning(
                "llm diagnosis of %s: no proposal: %s; %d requests, %d tokens, %d tool calls",
                result.event_id,
                result.no_proposal_reason,
                usage.requests,
                usage.total_tokens,
                usage.tool_calls,
                extra={**fields, "llm_no_proposal_reason": result.no_proposal_reason},
            )

    async def _escalate(self, event: SystemEvent, result: DiagnosisResult) -> None:
        """An alert to ``settings.escalation_agent``; its id derives from agent and event, so a
        retried decision delivers it once (the target deduplicates it)."""
        target = self.settings.escalation_agent
        if target is None or result.no_proposal_reason == NONE_PROPOSED:
            return
        alert = escalation_alert(
            "llm-no-proposal",
            f"{self.agent_id}\n{event.id}",
            source=f"agent/{self.agent_id}",
            data={
                "agent_id": self.agent_id,
                "event_id": event.id,
                "message": f"llm agent {self.agent_id}: no proposal for event {event.id}",
                "reason": (result.no_proposal_reason or "")[:1000],
            },
            correlation_id=event.correlation_id or event.id,
        )
        try:
            client: Client = runtime.get_client()
            # A signal, not the intake update: an agent escalating to itself would wait on its own
            # decision. The signal is the agent's declared entry point (AgentMessages).
            await client.get_workflow_handle(agent_workflow_id(target)).signal(
                AgentMessages.submit_event, alert.model_dump(mode="json")
            )
        except Exception as err:  # escalation is best effort: the no-proposal is logged either way
            outcomes.warning("llm agent %s could not escalate to %s: %s", self.agent_id, target, err)

    # ----- acting: only through the catalog entry's executor agent ------------------------------

    def _executor_id(self, action: AgentAction) -> str | None:
        entry = self.settings.entry(str(action.parameters.get("catalog_entry", "")))
        if entry is None:
            raise NonRetryableActionError("the action names no catalog entry of this agent's config")
        return entry.executor_agent

    @staticmethod
    def _for_executor(action: AgentAction, executor: str) -> AgentAction:
        params = {k: v for k, v in action.parameters.items() if k not in LLM_PARAMETER_KEYS}
        return action.model_copy(update={"parameters": params, "agent_id": executor})

    async def _executor_config(self, executor: str) -> AgentConfig:
        return await framework_services().agent_config(executor, _main_task_queue(self.config.type))

    async def _plan_specific(self, action: AgentAction) -> Plan | None:
        executor = self._executor_id(action)
        diagnosis = action.parameters.get("diagnosis", {})
        header = f"LLM diagnosis: {diagnosis.get('summary', '')}" if isinstance(diagnosis, dict) else ""
        if executor is None:
            return Plan(summary="advisory proposal: no executor agent is configured", details=header)
        async with runtime.peer_agent(await self._executor_config(executor)) as agent:
            plan = await agent.plan(self._for_executor(action, executor))
        if plan is None:
            return Plan(summary=f"executor {executor} has no dry run", details=header)
        return plan.model_copy(update={"details": f"{header}\n\n{plan.details}".strip()})

    async def _execute_action_specific(self, action: AgentAction) -> ActionResult:
        executor = self._executor_id(action)
        if executor is None:
            return ActionResult(
                success=False, message="advisory proposal: no executor agent, nothing was run"
            )
        async with runtime.peer_agent(await self._executor_config(executor)) as agent:
            return await agent.execute_action(self._for_executor(action, executor))

    async def _verify_specific(self, action: AgentAction, result: ActionResult) -> bool:
        executor = self._executor_id(action)
        if executor is None:
            return result.success
        async with runtime.peer_agent(await self._executor_config(executor)) as agent:
            return await agent.verify(self._for_executor(action, executor), result)

    async def _rollback_specific(self, action: AgentAction) -> ActionResult | None:
        executor = self._executor_id(action)
        if executor is None:
            return None
        async with runtime.peer_agent(await self._executor_config(executor)) as agent:
            return await agent.rollback(self._for_executor(action, executor))
