"""ActionWorkflow: one proposed action, from the policy's decision to its verified end.

The agent workflow decides the policy and starts this workflow with it. Here the action is planned
(dry run), waits for the approvals the decision demands (signals and the ``decide`` update share
one check), escalates once on expiry and otherwise expires as rejected, then executes with the
agent's retry policy, verifies, and compensates with rollback when verification fails. Every change
is visible in ``status``, the Web UI details and the search attributes that make up the approval
inbox.

This class is a shell: ``run`` tells the story, and each message handler (declared once, in
``aiops.contracts.action.ActionMessages``) delegates to a component sharing one ``ActionContext``:
``Approvals`` (the decisions people send), ``ApprovalWait`` (the wait for a quorum), ``Holds``
(hold, release and abort from the agent) and ``Execution`` (the agent's hooks).
"""

from __future__ import annotations

import asyncio

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from aiops.contracts import search_attributes as sa
    from aiops.contracts.action import (
        ABORT,
        AGENT_MESSAGES,
        APPROVE,
        DECIDE,
        HOLD,
        NO_INPUT,
        PEOPLE_MESSAGES,
        REJECT,
        RELEASE,
        STATUS,
        WORKFLOW_TYPE,
        AbortRequest,
        ActionInput,
        ActionMessages,
        ActionRecord,
        ActionStatus,
        DecisionRequest,
        HandTyped,
        HoldRequest,
        plan_digest,
    )
    from aiops.contracts.policy import Outcome
    from workflows.action.approval_wait import ApprovalWait
    from workflows.action.approvals import Approvals
    from workflows.action.context import ActionContext
    from workflows.action.details import approve_command
    from workflows.action.execution import PUBLISH_AFTER_DISPATCH, Execution
    from workflows.action.holds import Holds
    from workflows.failures import cause_message


# Pinned under Worker Versioning (the versioned worker's default, aiops/runtime/worker_build.py):
# an action ends on the build that started it, so a new build never replays an action's history
# (docs/deploy.md, "Versioning workflow code").
@workflow.defn(name=WORKFLOW_TYPE)
class ActionWorkflow(ActionMessages):
    @workflow.init
    def __init__(self, input: ActionInput) -> None:
        self._ctx = ActionContext(input)
        self._approvals = Approvals(self._ctx)
        self._approval_wait = ApprovalWait(self._ctx)
        self._holds = Holds(self._ctx)
        self._execution = Execution(self._ctx)

    @workflow.run
    async def run(self, input: ActionInput) -> ActionRecord:
        ctx, r = self._ctx, self._ctx.record
        confirmer = asyncio.create_task(self._holds.confirm_with_agent())
        try:
            r.approve_command = approve_command(workflow.info().workflow_id)
            # An action that runs at once was started showing ``executing`` (status_at_start), so
            # its first task has nothing to upsert before execute; the record still says proposed.
            shown = workflow.info().typed_search_attributes.get(sa.ACTION_STATUS)
            started_executing = shown == ActionStatus.EXECUTING.value
            ctx.set_status(ActionStatus.PROPOSED, input.decision.reason, publish=not started_executing)
            ctx.audit.decision(input)
            if input.decision.outcome == Outcome.DENY:
                return await ctx.finish(ActionStatus.DENIED, input.decision.reason)
            if not started_executing:  # this task upserts anyway; see PUBLISH_AFTER_DISPATCH
                ctx.decide_publish_after_dispatch(PUBLISH_AFTER_DISPATCH)
            if input.has_plan:  # an agent type without a plan hook has no dry run to wait for
                ctx.set_status(ActionStatus.PLANNING)
                try:
                    r.plan = await self._execution.plan()
                except ActivityError as err:  # no dry run, no execution: never act blind
                    return await ctx.finish(ActionStatus.FAILED, f"plan failed: {cause_message(err)}")
            r.plan_digest = plan_digest(r.plan)
            if input.decision.outcome == Outcome.REQUIRE_APPROVAL:
                final = await self._approval_wait.run()
                if final is not None:
                    return await ctx.finish(final, ctx.aborted or r.error or "")
            if started_executing and r.held:  # held before its first task: show it waiting
                ctx.publish()
            await self._holds.until_free()
            if ctx.aborted is not None:
                return await ctx.finish(ActionStatus.REJECTED, ctx.aborted)
            return await self._execution.execute_and_verify()
        finally:
            confirmer.cancel()

    # ----- from people (Web UI, `temporal` CLI, `aiops approvals`) -------------------------------

    @workflow.signal(name=APPROVE, description=PEOPLE_MESSAGES[APPROVE])
    def approve(self, payload: HandTyped = NO_INPUT) -> None:
        self._approvals.take_signal(payload, approve=True)

    @workflow.signal(name=REJECT, description=PEOPLE_MESSAGES[REJECT])
    def reject(self, payload: HandTyped = NO_INPUT) -> None:
        self._approvals.take_signal(payload, approve=False)

    # The SDK's update descriptor is generic in the class it is defined on, so mypy sees this
    # override of ActionMessages.decide as another type; the SDK requires the override.
    @workflow.update(name=DECIDE, description=PEOPLE_MESSAGES[DECIDE])
    def decide(self, request: DecisionRequest) -> ActionRecord:  # type: ignore[override]
        return self._approvals.decide(request)

    @decide.validator
    def _validate_decide(self, request: DecisionRequest) -> None:
        self._approvals.validate_decide(request)

    @workflow.query(name=STATUS, description=PEOPLE_MESSAGES[STATUS])
    def status(self) -> ActionRecord:
        return self._ctx.record

    # ----- from the agent (prompts, confirmed with its own state) -----------------------------------

    @workflow.signal(name=HOLD, description=AGENT_MESSAGES[HOLD])
    def hold(self, request: HoldRequest | None = None) -> None:
        self._holds.claim("hold")

    @workflow.signal(name=RELEASE, description=AGENT_MESSAGES[RELEASE])
    def release(self, request: HoldRequest | None = None) -> None:
        self._holds.claim("release")

    @workflow.signal(name=ABORT, description=AGENT_MESSAGES[ABORT])
    def abort(self, request: AbortRequest | None = None) -> None:
        self._holds.claim("abort")
