"""Re-running a pure decision hook on the events an agent really received, with the candidate.

The audit log holds no event payloads; the agent's workflow histories do, for the runs the
server still retains: each ``submit_event`` / ``submit_events`` signal and ``intake`` update
carries the events as they were sent. This reads them (read-only: history fetches, decoded by
the client's own data converter, so a payload codec is honoured), parses each as the agent did
(``workflows.agent.event_intake.parse_event``), and hands every event of the window to the
candidate's decision hook on a fresh instance. Only for agent types that declare
``pure_decisions``: any other hook may call out, and is never re-run.

The answer is small per event (the proposed action's type and risk, or nothing), so 100,000
events stay a few megabytes; an event whose hook fails is left out (its recorded proposal
stands).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client

from agents.registry import AgentFactory
from agents.secrets import resolve_secrets
from aiops.contracts.agent import INTAKE, SUBMIT_EVENT, SUBMIT_EVENTS, agent_workflow_id
from aiops.contracts.config import AgentConfig
from aiops.contracts.models import RiskLevel, SystemEvent
from workflows.agent.event_intake import EventRejected, events_of, parse_event

# event id -> (action type, risk) the candidate's hook proposes, or None for nothing
Proposals = dict[str, tuple[str, RiskLevel] | None]
MAX_RERUN_EVENTS = 500_000


def _payloads_of(event: HistoryEvent) -> tuple[str, Any] | None:
    if event.HasField("workflow_execution_signaled_event_attributes"):
        attrs = event.workflow_execution_signaled_event_attributes
        return attrs.signal_name, attrs.input.payloads
    if event.HasField("workflow_execution_update_accepted_event_attributes"):
        request = event.workflow_execution_update_accepted_event_attributes.accepted_request
        return request.input.name, request.input.args.payloads
    return None


async def recorded_events(
    client: Client, agent_id: str, since: datetime | None, until: datetime | None
) -> AsyncIterator[SystemEvent]:
    """The events sent to the agent in the window, run by run, as its histories hold them."""
    workflow_id = agent_workflow_id(agent_id)
    async for run in client.list_workflows(f'WorkflowId = "{workflow_id}"'):
        if since is not None and run.close_time is not None and run.close_time < since:
            continue
        if until is not None and run.start_time >= until:
            continue
        handle = client.get_workflow_handle(workflow_id, run_id=run.run_id)
        async for event in handle.fetch_history_events():
            found = _payloads_of(event)
            if found is None or found[0] not in (SUBMIT_EVENT, SUBMIT_EVENTS, INTAKE):
                continue
            name, payloads = found
            at = event.event_time.ToDatetime(tzinfo=UTC)
            if (since is not None and at < since) or (until is not None and at >= until):
                continue
            try:
                [value] = await client.data_converter.decode(list(payloads)[:1])
                items = [value] if name == SUBMIT_EVENT else events_of(value)
            except (EventRejected, ValueError, TypeError):
                continue  # refused then too: it never reached the hook
            for item in items:
                try:
                    parsed = parse_event(item, at)
                except EventRejected:
                    continue
                yield parsed


async def rerun(
    client: Client,
    factory: AgentFactory,
    candidate: AgentConfig,
    since: datetime | None,
    until: datetime | None,
    progress: Callable[[int], None] | None = None,
) -> Proposals:
    """What the candidate's hook proposes for each recorded event of the window."""
    agent = factory.create(resolve_secrets(candidate))
    await agent.initialize()
    await agent.start()
    proposals: Proposals = {}
    try:
        async for event in recorded_events(client, candidate.id, since, until):
            if len(proposals) >= MAX_RERUN_EVENTS:
                break
            try:
                action = await agent.process_event(event)
            except Exception:  # the hook's failure on one event: its recorded proposal stands
                continue
            proposals[event.id] = None if action is None else (action.type.value, action.risk_level)
            if progress is not None and len(proposals) % 5000 == 0:
                progress(len(proposals))
    finally:
        await agent.stop()
    return proposals
