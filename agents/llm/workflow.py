"""``DiagnosisWorkflow``: one durable diagnosis per (agent, event), and the hourly budget ledger.

The Pydantic AI agent loop runs here, in workflow code, replayed deterministically; every model
request and every tool call is an activity, so a worker that dies mid-diagnosis resumes on another
worker from the last completed one without repeating it. Whatever happens, the workflow returns a
``DiagnosisResult``: a failure is a recorded "no proposal" with its reason, never a stuck run.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from pydantic_ai.durable_exec.temporal import PydanticAIWorkflow
    from pydantic_ai.exceptions import UsageLimitExceeded
    from pydantic_ai.settings import ModelSettings

    from agents.llm import diagnosis as d
    from agents.llm.contracts import (
        BUDGET_WORKFLOW_TYPE,
        DIAGNOSIS_WORKFLOW_TYPE,
        DiagnosisDeps,
        DiagnosisInput,
    )
    from agents.llm.proposal import DiagnosisResult, ProposalRefused, Usage, check_proposal

BUDGET_RETRY = RetryPolicy(maximum_attempts=3, initial_interval=timedelta(seconds=1))
# Time kept back from the diagnosis timeout to record the outcome (and charge the budget).
WRAP_UP_SECONDS = 5.0


@workflow.defn(name=DIAGNOSIS_WORKFLOW_TYPE)
class DiagnosisWorkflow(PydanticAIWorkflow):
    __pydantic_ai_agents__ = [d.diagnosis_agent]

    @workflow.run
    async def run(self, request: DiagnosisInput) -> DiagnosisResult:
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
                f"hourly budget spent ({spent.requests} requests, {spent.total_tokens} tokens this hour; "
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
        run_usage = None
        messages = []
        model_settings: ModelSettings = {"max_tokens": endpoint.max_output_tokens}
        if endpoint.temperature is not None:
            model_settings["temperature"] = endpoint.temperature
        try:
            async with d.diagnosis_agent.iter(
                d.user_prompt(request),
                deps=deps,
                output_type=d.output_spec(settings),
                usage_limits=d.usage_limits(limits),
                model_settings=model_settings,
                timeout=max(request.timeout_seconds - WRAP_UP_SECONDS, 1.0),
            ) as run:
                try:
                    async for _ in run:
                        pass
                finally:
                    run_usage = run.usage()
                    messages = run.all_messages()
            answer = run.result.output if run.result is not None else None
        except UsageLimitExceeded as err:
            result.refused = True
            result.no_proposal_reason = f"per-event budget spent: {err}"
            answer = None
        except TimeoutError:
            result.no_proposal_reason = f"the diagnosis took longer than {request.timeout_seconds:g}s"
            answer = None
        except Exception as err:  # model down, garbage output, a failing activity: no proposal
            result.no_proposal_reason = f"the model gave no usable answer: {_cause(err)}"
            answer = None
        if run_usage is not None:
            result.usage = d.usage_of(run_usage)
        result.tool_calls = d.tool_calls_of(messages, settings.tools.max_bytes)
        if answer is not None:
            result.diagnosis = answer.diagnosis
            known = {c.tool_call_id for c in result.tool_calls}
            result.unsupported_evidence = [
                e.tool_call_id
                for e in answer.diagnosis.evidence
                if e.tool_call_id and e.tool_call_id not in known
            ]
            if answer.proposal is None:
                result.no_proposal_reason = "the model proposed no action"
            else:
                try:
                    _, result.risk_level = check_proposal(answer.proposal, settings)
                    result.proposal = answer.proposal
                except ProposalRefused as err:
                    result.no_proposal_reason = f"proposal refused: {err}"
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
