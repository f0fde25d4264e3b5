"""AgentOverflowWorkflow: keeps the events that reached an agent by signal while its queue was
full, and hands them back through the agent's ``intake`` update as room frees.

A signal cannot be answered, so an event that arrived by signal has reached history and must be
decided: the agent spills it here (signal-with-start, ``agent-<id>:overflow``) instead of
refusing it. This workflow hands the events back in order, in batches the agent has room for;
refused (queue full), it waits on a durable timer (1 s doubling to 30 s) and tries again. The
agent's dedup by event id makes a hand-back idempotent, so each event is decided once. It
continues as new when the server suggests it, carrying what it holds, and ends once it has held
nothing for a minute (the next spill starts it again). An agent that takes no events any more
(stopped, failed) ends it with a failure that says how many events it still held.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.overflow_activities import OverflowActivities
    from aiops.contracts.agent import MAX_EVENTS_PER_INTAKE
    from aiops.contracts.budgets import CARRIED_STATE_BUDGET, json_size
    from aiops.contracts.overflow import (
        HOLD_EVENTS,
        OVERFLOW_HELD,
        OVERFLOW_WORKFLOW_TYPE,
        HandBackRequest,
        OverflowInput,
        first_batch,
    )

FIRST_BATCH = 100
IDLE_END = timedelta(minutes=1)
MAX_BACKOFF = 30.0


@workflow.defn(name=OVERFLOW_WORKFLOW_TYPE)
class AgentOverflowWorkflow:
    @workflow.init
    def __init__(self, input: OverflowInput) -> None:
        self._held: list[dict[str, Any]] = list(input.held)
        self._handed_back = input.handed_back

    @workflow.signal(name=HOLD_EVENTS)
    def hold(self, events: list[dict[str, Any]]) -> None:
        self._held.extend(e for e in events if isinstance(e, dict))

    @workflow.query(name=OVERFLOW_HELD)
    def held(self) -> int:
        return len(self._held)

    def _carriable(self) -> bool:
        return json_size(self._held) <= CARRIED_STATE_BUDGET

    @workflow.run
    async def run(self, input: OverflowInput) -> int:
        batch, backoff = FIRST_BATCH, 1.0
        while True:
            if not self._held:
                try:
                    await workflow.wait_condition(lambda: bool(self._held), timeout=IDLE_END)
                except TimeoutError:
                    if not self._held and workflow.all_handlers_finished():
                        return self._handed_back
                    continue
            sending = self._held[: first_batch(self._held, min(batch, MAX_EVENTS_PER_INTAKE))]
            result = await workflow.execute_activity_method(
                OverflowActivities.hand_back,
                HandBackRequest(agent_id=input.agent_id, events=sending),
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=30)),
            )
            if result.taken and len(result.kept) < len(sending):
                kept = set(result.kept)
                del self._held[: len(sending)]
                self._held[:0] = [e for e in sending if e.get("id") in kept]
                self._handed_back += len(sending) - len(kept)
                batch, backoff = FIRST_BATCH, 1.0
            elif result.gone:
                raise ApplicationError(
                    f"agent {input.agent_id} takes no events ({result.reason}); "
                    f"{len(self._held)} events that reached it by signal were not decided",
                    non_retryable=True,
                )
            elif result.room > 0 and not result.taken:
                batch = result.room  # some fit now: send those at once
            else:
                await workflow.sleep(timedelta(seconds=backoff))
                backoff = min(backoff * 2, MAX_BACKOFF)
            # What it holds must fit the next run's input; until then it hands back first.
            if workflow.info().is_continue_as_new_suggested() and self._carriable():
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(
                    OverflowInput(agent_id=input.agent_id, held=self._held, handed_back=self._handed_back)
                )
