"""Hold, release and abort from the agent: prompts, confirmed with the agent's own state.

Anyone who can reach Temporal can send these signals, so their content is only a prompt: the
agent's ``hold_state`` (changed only by verified commands) decides, and a claim it does not
confirm is audited as refused. The confirmation loop runs beside the action's main path for its
whole life; the main path waits in ``until_free`` before executing.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.agent_activities import AgentActivities
    from aiops.contracts.activities import AuditStep
    from workflows.action.context import ActionContext
    from workflows.failures import cause_message

Verb = Literal["hold", "release", "abort"]


class Holds:
    def __init__(self, ctx: ActionContext) -> None:
        self._ctx = ctx
        self._claims: list[Verb] = []  # to confirm with the agent
        self._claims_seen = 0

    def claim(self, verb: Verb) -> None:
        """A hold, release or abort signal arrived (the loop confirms it with the agent)."""
        self._claims.append(verb)

    async def until_free(self) -> None:
        """Until the action is not held (the agent resumed) or the agent aborted it."""
        ctx = self._ctx
        await workflow.wait_condition(lambda: not ctx.record.held or ctx.aborted is not None)

    async def confirm_with_agent(self) -> None:
        """Apply what the agent's own state says whenever a hold, release or abort arrives."""
        ctx, r = self._ctx, self._ctx.record
        agent = self._agent()
        while True:
            await workflow.wait_condition(lambda: bool(self._claims))
            claims, self._claims = self._claims, []
            if agent is None:
                for verb in claims:
                    self._refuse(verb, "this action has no agent; only an agent holds, releases or aborts")
                continue
            try:
                view = await workflow.execute_local_activity_method(
                    AgentActivities.agent_hold_state,
                    agent,
                    start_to_close_timeout=timedelta(seconds=10),
                    retry_policy=RetryPolicy(maximum_attempts=5, initial_interval=timedelta(seconds=1)),
                )
            except ActivityError as err:
                for verb in claims:
                    self._refuse(verb, f"could not confirm with agent {agent}: {cause_message(err)}")
                continue
            if view is None:
                for verb in claims:
                    self._refuse(verb, f"agent {agent} no longer exists")
                continue
            if view.abort_reason is not None and ctx.aborted is None:
                ctx.aborted = f"aborted: {view.abort_reason}"
            if view.hold_epoch > r.hold_epoch:
                r.hold_epoch = view.hold_epoch
                r.held = view.paused
                ctx.refresh_details()
            for verb in claims:
                if verb == "abort" and view.abort_reason is None:
                    self._refuse(verb, f"agent {agent} is not stopping without draining")
                elif verb == "hold" and not view.paused:
                    self._refuse(verb, f"agent {agent} is not paused")
                elif verb == "release" and view.paused:
                    self._refuse(verb, f"agent {agent} is paused")

    def _agent(self) -> str | None:
        """The agent to confirm with: the parent of an action started as a child, the agent its
        starter named for one started from the agent's worker (``ActionInput.launch``), None for
        an action started by hand."""
        parent = workflow.info().parent
        if parent is not None:
            return parent.workflow_id
        input = self._ctx.input
        return input.agent_workflow_id or None if input.launch == "client" else None

    def _refuse(self, verb: Verb, reason: str) -> None:
        self._claims_seen += 1
        self._ctx.audit.record(
            AuditStep.COMMAND_REFUSED, f"{verb}-refused:{self._claims_seen}", verb=verb, reason=reason
        )
        workflow.logger.warning("%s not confirmed: %s", verb, reason)
