"""The signals people type by hand reach the agent even when no converter can read them.

The SDK drops a signal whose payload it cannot decode (an unknown encoding, invalid JSON) with a
traceback in the worker log and nothing anywhere else. The agent takes those signals undecoded
(``workflows/agent/raw.py``) and refuses such a payload like any malformed one: counted, in its
status and in the audit log, and the agent keeps going.
"""

from __future__ import annotations

from typing import Any

from temporalio.api.common.v1 import Payload
from temporalio.client import WorkflowExecutionStatus
from temporalio.common import RawValue

from aiops.client import AiopsClient
from aiops.contracts.agent import AgentMessages, AgentState
from tests.helpers import agent_config, event, eventually

INVALID_JSON = RawValue(Payload(metadata={"encoding": b"json/plain"}, data=b'{"id": "e-1", "type": '))
UNKNOWN_ENCODING = RawValue(Payload(metadata={"encoding": b"text/x-nobody-reads-this"}, data=b"hello"))


def rejections(rows: list[Any]) -> list[Any]:
    return [r for r in rows if r.step == "event_received" and r.detail.get("rejected")]


def refusals(rows: list[Any]) -> list[Any]:
    return [r for r in rows if r.step == "agent_lifecycle" and r.detail.get("state") == "command_refused"]


async def test_undecodable_and_malformed_payloads_are_refused_counted_and_audited(
    aiops: AiopsClient, worker
) -> None:
    config = agent_config("recorder")
    await aiops.agents.start(config)
    await eventually(lambda: aiops.agents.status(config.id), lambda s: s.state == AgentState.RUNNING)
    handle = aiops.agents.handle(config.id)

    await handle.signal(AgentMessages.submit_event, INVALID_JSON)
    await handle.signal(AgentMessages.submit_events, UNKNOWN_ENCODING)
    await handle.signal(AgentMessages.pause, INVALID_JSON)
    await handle.signal(AgentMessages.stop, UNKNOWN_ENCODING)
    # Decodable but not a command: the SDK used to drop this one silently too.
    await handle.signal(AgentMessages.reset_circuit_breaker, {"actor": ["not", "a", "name"]})
    await aiops.events.send_many(config.id, [event()])  # still taking and deciding events

    status = await eventually(
        lambda: aiops.agents.status(config.id), lambda s: s.counters.events_processed == 1
    )
    assert status.state == AgentState.RUNNING  # neither the pause nor the stop was taken
    assert status.counters.events_rejected == 2 and status.counters.commands_refused == 3
    assert [r.message.split(" (")[0] for r in status.recent_rejections] == ["undecodable payload"] * 2
    assert "Unknown payload encoding text/x-nobody-reads-this" in status.recent_rejections[1].message
    errors = [e.message for e in status.recent_errors]
    assert sum("malformed command: undecodable payload" in e for e in errors) == 2
    assert any(e.startswith("refused reset-circuit-breaker (signal)") and "actor: " in e for e in errors)

    rows = await eventually(
        lambda: aiops.audit.rows(agent_id=config.id),
        lambda rs: len(rejections(rs)) == 2 and len(refusals(rs)) == 3,
    )
    assert all("undecodable payload" in r.detail["reason"] for r in rejections(rows))
    assert [r.detail["verb"] for r in refusals(rows)] == ["pause", "stop", "reset-circuit-breaker"]
    assert all(r.detail["channel"] == "signal" for r in refusals(rows))
    assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING


async def test_a_bare_command_signal_still_works(aiops: AiopsClient, worker) -> None:
    """No argument at all is an empty command (a dev-mode agent takes it), as before."""
    config = agent_config("recorder")
    await aiops.agents.start(config)
    await eventually(lambda: aiops.agents.status(config.id), lambda s: s.state == AgentState.RUNNING)
    await aiops.agents.handle(config.id).signal(AgentMessages.pause)
    status = await eventually(lambda: aiops.agents.status(config.id), lambda s: s.state == AgentState.PAUSED)
    assert status.counters.commands_refused == 0
