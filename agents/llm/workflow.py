"""``DiagnosisWorkflow``: one durable diagnosis per (agent, event), and the hourly budget ledger.

The Pydantic AI agent loop runs here, in workflow code, replayed deterministically; every model
request and every tool call is an activity, so a worker that dies mid-diagnosis resumes on another
worker from the last completed one without repeating it. Whatever happens, the workflow returns a
``DiagnosisResult``: a failure is a recorded "no proposal" with its reason, never a stuck run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, nullcontext
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from pydantic_ai import AgentRun
    from pydantic_ai.durable_exec.temporal import PydanticAIWorkflow
    from pydantic_ai.exceptions import UsageLimitExceeded
    from pydantic_ai.messages import ModelMessage
    from pydantic_ai.settings import ModelSettings

    from agents.llm import diagnosis as d
    from agents.llm import metrics
    from agents.llm.contracts import (
        BUDGET_WORKFLOW_TYPE,
        DIAGNOSIS_WORKFLOW_TYPE,
        DiagnosisDeps,
        DiagnosisInput,
    )
    from agents.llm.proposal import (
        EVENT_BUDGET_SPENT,
        HOURLY_BUDGET_SPENT,
        NONE_PROPOSED,
        PROPOSAL_REFUSED,
        TOO_SLOW,
        DiagnosisResult,
        ModelAnswer,
        ProposalRefused,
        Usage,
        check_proposal,
        from_compact,
        outcome_of,
    )
    from agents.llm.settings import EndpointSettings, LlmSettings
    from aiops.contracts.action import action_workflow_id
    from aiops.contracts.activities import AuditBatch, AuditRecord, AuditStep
    from aiops.contracts.audit_rows import bounded_record

BUDGET_RETRY = RetryPolicy(maximum_attempts=3, initial_interval=timedelta(seconds=1))
AUDIT_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=10))
# Time kept back from the diagnosis timeout to record the outcome (and charge the budget).
WRAP_UP_SECONDS = 5.0
AUDIT_ACTIVITY = "record_audit"  # AuditActivities.record_audit, on the framework's task queue


@workflow.defn(name=DIAGNOSIS_WORKFLOW_TYPE)
class DiagnosisWorkflow(PydanticAIWorkflow):
    __pydantic_ai_agents__ = [d.diagnosis_agent]

    @workflow.run
    async def run(self, request: DiagnosisInput) -> DiagnosisResult:
        started = workflow.now()
        result = await self._diagnose(request)
        outcome = outcome_of(result)
        metrics.record(result, outcome, workflow.now() - started)
        await _audit(request, result, outcome, started)
        return result

    async def _diagnose(self, request: DiagnosisInput) -> DiagnosisResult:
        settings = request.settings
        endpoint = settings.endpoint
        result = DiagnosisResult(
            agent_id=request.agent_id,
            event_id=request.event.id,
            model=f"{endpoint.provider}:{endpoint.model}",
        )
        now = workflow.now()
        window = d.budget_window(now)
        window_ends_at = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
        spent = await workflow.execute_activity(
            d.budget_spent,
            d.BudgetQuery(agent_id=request.agent_id, window=window),
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=BUDGET_RETRY,
        )
        left = d.remaining(settings.budgets.per_hour, spent)
        if left is None:
            result.refused = True
            result.no_proposal_reason = (
                f"{HOURLY_BUDGET_SPENT} ({spent.requests} requests, {spent.total_tokens} tokens this hour; "
                f"limits {settings.budgets.per_hour.requests} requests, "
                f"{settings.budgets.per_hour.tokens} tokens)"
            )
            return result
        limits = d.narrowed(settings.budgets.per_event, left)
        deps = DiagnosisDeps(
            agent_id=request.agent_id,
            event_id=request.event.id,
            task_queue=request.task_queue,
            endpoint=endpoint,
            tools=settings.tools,
        )
        await drive_model(
            d.diagnosis_agent.iter(
                d.user_prompt(request),
                deps=deps,
                output_type=d.output_spec(settings),
                usage_limits=d.usage_limits(limits),
                model_settings=model_settings_for(endpoint),
                timeout=max(request.timeout_seconds - WRAP_UP_SECONDS, 1.0),
            ),
            result,
            settings,
            timeout_seconds=request.timeout_seconds,
            describe=_cause,
        )
        if result.usage.requests or result.usage.total_tokens:
            await workflow.execute_activity(
                d.budget_charge,
                d.BudgetCharge(
                    agent_id=request.agent_id,
                    window=window,
                    event_id=request.event.id,
                    usage=result.usage,
                    window_ends_at=window_ends_at,
                ),
                start_to_close_timeout=timedelta(seconds=10),
                retry_policy=BUDGET_RETRY,
            )
        return result


async def drive_model(
    started: AbstractAsyncContextManager[AgentRun[Any, Any]],
    result: DiagnosisResult,
    settings: LlmSettings,
    *,
    timeout_seconds: float,
    describe: Callable[[Exception], str],
    limit_seconds: float | None = None,
) -> None:
    """Run one model loop to its end and record in ``result`` what it gave: usage, tool calls, the
    settled answer, or the reason there is no proposal (budget spent, too slow, a failing model).

    One function for the worker's workflow and for ``aiops eval``, so an eval scores exactly what a
    worker would have recorded. ``limit_seconds`` bounds the loop here (the eval); the workflow
    bounds it in ``iter`` instead. ``describe`` words an unexpected failure."""
    run_usage = None
    messages: list[ModelMessage] = []
    answer: ModelAnswer | None = None
    try:
        async with started as run:
            try:
                async with asyncio.timeout(limit_seconds) if limit_seconds is not None else nullcontext():
                    async for _ in run:
                        pass
            finally:
                run_usage = run.usage
                messages = run.all_messages()
        output = run.result.output if run.result is not None else None
        answer = output if output is None or isinstance(output, ModelAnswer) else from_compact(output)
    except UsageLimitExceeded as err:
        result.refused = True
        result.no_proposal_reason = f"{EVENT_BUDGET_SPENT}: {err}"
    except TimeoutError:
        result.no_proposal_reason = f"{TOO_SLOW} {timeout_seconds:g}s"
    except Exception as err:  # model down, garbage output, a failing activity: no proposal
        result.no_proposal_reason = f"the model gave no usable answer: {describe(err)}"
    if run_usage is not None:
        result.usage = d.usage_of(run_usage)
    result.tool_calls = d.tool_calls_of(messages, settings.tools.max_bytes)
    if answer is not None:
        settle(result, answer, settings)


def model_settings_for(endpoint: EndpointSettings) -> ModelSettings:
    """The model request settings of an endpoint (pure; the eval uses it too)."""
    model_settings: ModelSettings = {"max_tokens": endpoint.max_output_tokens}
    if endpoint.temperature is not None:
        model_settings["temperature"] = endpoint.temperature
    return model_settings


def settle(result: DiagnosisResult, answer: ModelAnswer, settings: LlmSettings) -> None:
    """Record the model's answer in ``result``: the diagnosis, the evidence that cites no tool call
    of the run, and the proposal only when the catalog accepts it (else the reason). Pure: it runs
    in workflow code, and in ``aiops eval`` on the same answer."""
    result.diagnosis = answer.diagnosis
    known = {c.tool_call_id for c in result.tool_calls}
    result.unsupported_evidence = [
        e.tool_call_id for e in answer.diagnosis.evidence if e.tool_call_id and e.tool_call_id not in known
    ]
    if answer.proposal is None:
        result.no_proposal_reason = NONE_PROPOSED
        return
    try:
        _, result.risk_level = check_proposal(answer.proposal, settings)
        result.proposal = answer.proposal
    except ProposalRefused as err:
        result.no_proposal_reason = f"{PROPOSAL_REFUSED}: {err}"


async def _audit(request: DiagnosisInput, result: DiagnosisResult, outcome: str, started: datetime) -> None:
    """One ``llm_diagnosis`` audit row: outcome, usage, model, tool calls (bounded), the proposal.

    Written by the framework's ``record_audit`` activity on its task queue (idempotent by key).
    Retried for at most the diagnosis' timeout, so an audit-log outage delays the result by that
    much and never sticks the agent; the outcome is logged by the agent either way."""
    proposal = result.proposal
    diagnosis = result.diagnosis
    detail = {
        "event_id": result.event_id,
        "outcome": outcome,
        "model": result.model,
        "no_proposal_reason": result.no_proposal_reason,
        "refused_for_budget": result.refused,
        "usage": result.usage.model_dump(),
        "tool_calls": [
            {
                "tool_call_id": c.tool_call_id,
                "tool": c.tool,
                "arguments": c.arguments,
                "ok": c.ok,
                "result_bytes": len(c.result.encode()),
            }
            for c in result.tool_calls[:50]
        ],
        "summary": diagnosis.summary[:500] if diagnosis else None,
        "confidence": diagnosis.confidence if diagnosis else None,
        "proposal": (
            {
                "catalog_entry": proposal.catalog_entry,
                "target": proposal.target,
                "risk_level": result.risk_level.value if result.risk_level else None,
            }
            if proposal
            else None
        ),
        "seconds": round((workflow.now() - started).total_seconds(), 3),
    }
    record = AuditRecord(
        agent_id=result.agent_id,
        action_id=action_workflow_id(result.agent_id, result.event_id) if proposal else None,
        step=AuditStep.LLM_DIAGNOSIS,
        key=f"{result.agent_id}/llm-diagnosis:{result.event_id}",
        actor=f"llm:{result.model}"[:200],
        occurred_at=workflow.now(),
        detail=detail,
    )
    try:
        await workflow.execute_activity(
            AUDIT_ACTIVITY,
            AuditBatch(records=[bounded_record(record)]),
            task_queue=request.task_queue,
            start_to_close_timeout=timedelta(seconds=10),
            schedule_to_close_timeout=timedelta(seconds=max(request.timeout_seconds, 30.0)),
            retry_policy=AUDIT_RETRY,
        )
    except ActivityError as err:
        workflow.logger.warning("llm diagnosis of %s: audit row not written: %s", result.event_id, err)


def _cause(err: BaseException) -> str:
    """The innermost message of a (possibly wrapped) failure, bounded."""
    seen = err
    while seen.__cause__ is not None and seen.__cause__ is not seen:
        seen = seen.__cause__
    text = f"{type(seen).__name__}: {seen}"
    return text[:500]


@workflow.defn(name=BUDGET_WORKFLOW_TYPE)
class LlmBudgetWorkflow:
    """One agent's LLM usage in one hour: charged per event (once), read by the next diagnosis."""

    def __init__(self) -> None:
        self._charges: dict[str, Usage] = {}

    @workflow.run
    async def run(self, ledger: d.BudgetLedgerInput) -> Usage:
        delay = (ledger.window_ends_at - workflow.now()).total_seconds()
        await workflow.sleep(timedelta(seconds=max(delay, 0) + 60))
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.spent()

    @workflow.signal(name=d.CHARGE_SIGNAL)
    def charge(self, charge: d.BudgetCharge) -> None:
        self._charges.setdefault(charge.event_id, charge.usage)

    @workflow.query(name=d.SPENT_QUERY)
    def spent(self) -> Usage:
        total = Usage()
        for usage in self._charges.values():
            total.requests += usage.requests
            total.input_tokens += usage.input_tokens
            total.output_tokens += usage.output_tokens
            total.tool_calls += usage.tool_calls
        return total
