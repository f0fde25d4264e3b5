"""Events sent by signal when every update slot of the agent is taken.

The server admits at most 10 in-flight updates per workflow (``history.maxInFlightUpdates``) and
refuses the rest with ``RESOURCE_EXHAUSTED``. One ``AiopsClient`` never meets that limit for one
agent (it keeps 8 intake calls in flight and merges the rest), but independent senders (many
processes, hosts, gateway replicas) do: sent again with backoff, a thousand of them got almost
nothing through, and neither did raw Temporal fed the same way (docs/scale.md, "Independent
senders"). A signal needs no slot: the server writes it to the agent's history and the agent
takes it with its next workflow task, or spills it to its overflow while its queue is full, so
it will be decided. What a signal cannot do is answer, so the sender checks each event here as
the intake does (``parse_event``; sizes were checked before anything was sent) and answers
``rejected`` for what the agent would refuse, without sending it, and ``queued`` for the rest.
The agent's own answer (accepted, duplicate, grouped) is counted in its status and audited.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from temporalio.common import WorkflowIDReusePolicy

from aiops.client.common import Connection
from aiops.contracts.agent import (
    SUBMIT_EVENTS,
    AgentMessages,
    AgentWorkflowInput,
    EventAnswer,
    EventOutcome,
    agent_workflow_id,
)
from aiops.contracts.config import AgentConfig
from workflows.agent.event_intake import EventRejected, parse_event
from workflows.agent.workflow import AgentWorkflow

QUEUED_REASON = "sent by signal: every update slot of the agent was taken; the agent decides it"


async def queue_by_signal(
    conn: Connection, agent_id: str, batch: list[Any], config: AgentConfig | None
) -> list[EventAnswer]:
    """Send ``batch`` in one ``submit_events`` signal (signal-with-start when ``config`` is given:
    the agent is started with it if it is not running); one answer per event, in order.

    Raises the server's ``RPCError`` when the signal was refused: then nothing was sent."""
    now = datetime.now(UTC)  # only to check the events; the agent stamps them with its own time
    answers: list[EventAnswer] = []
    sent: list[Any] = []
    for index, payload in enumerate(batch):
        event_id = payload.get("id") if isinstance(payload, dict) else None
        try:
            event = parse_event(payload, now)
        except EventRejected as err:
            answers.append(
                EventAnswer(
                    event_id=_text_id(event_id), outcome=EventOutcome.REJECTED, reason=str(err), index=index
                )
            )
            continue
        sent.append(payload)
        answers.append(EventAnswer(event_id=event.id, outcome=EventOutcome.QUEUED, reason=QUEUED_REASON))
    if not sent:
        return answers
    if config is None:
        await conn.agent_handle(agent_id).signal(AgentMessages.submit_events, sent)
    else:
        await conn.client.start_workflow(
            AgentWorkflow.run,
            AgentWorkflowInput(config=config),
            id=agent_workflow_id(agent_id),
            task_queue=conn.task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            start_signal=SUBMIT_EVENTS,
            start_signal_args=[sent],
        )
    return answers


def _text_id(value: Any) -> str | None:
    return value if isinstance(value, str) else None
