"""Replay recorded histories against today's workflow code: a non-deterministic change fails here.

The histories in ``tests/histories`` were recorded by ``python -m tests.record_histories``.
"""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer
from temporalio.workflow import NondeterminismError

# This module defines a workflow, so the sandbox imports it again: activity modules (and the
# C extensions under them, like asyncpg's) must come through from outside, never be re-imported.
with workflow.unsafe.imports_passed_through():
    from activities.agent_activities import AgentActivities
    from activities.audit_activities import AuditActivities
    from activities.detector_activities import DetectorActivities
from aiops.contracts import action as action_contract
from aiops.contracts import agent as agent_contract
from aiops.contracts.action import ActionInput, ActionRecord
from workflows.action_workflow import ActionWorkflow
from workflows.agent_workflow import AgentWorkflow
from workflows.detector_workflow import DetectorWorkflow
from workflows.health_monitor import HealthMonitorWorkflow
from workflows.sandbox import workflow_runner

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))


def load(path: Path) -> WorkflowHistory:
    data = json.loads(path.read_text())
    workflow_id = next(
        e["workflowExecutionStartedEventAttributes"].get("workflowId", path.stem)
        for e in data["events"]
        if "workflowExecutionStartedEventAttributes" in e
    )
    return WorkflowHistory.from_json(workflow_id, data)


def test_histories_are_present() -> None:
    names = {p.stem for p in HISTORIES}
    assert {
        "agent_lifecycle",
        "agent_continue_as_new",
        "action_signal_approval",
        "action_rolled_back",
    } <= names
    # Histories of today's code paths, so a change to them must be patched too.
    audited = [
        p
        for p in HISTORIES
        if p.stem.startswith("v2_") and AuditActivities.record_audit.__name__ in p.read_text()
    ]
    assert len(audited) >= 6
    assert agent_contract.RECONFIGURE in (HISTORIES[0].parent / "v2_agent_lifecycle.json").read_text()
    # v3: the typed contracts and scheduled detectors (a detector run, and the schedule kept in line).
    detector = (HISTORIES[0].parent / "v3_agent_detector.json").read_text()
    assert DetectorActivities.sync_detector.__name__ in detector
    assert agent_contract.DETECTOR_WORKFLOW_TYPE in (HISTORIES[0].parent / "v3_detector_run.json").read_text()
    # v4: hooks on the agent type's queue, default heartbeats, the intake update, incidents.
    lifecycle = (HISTORIES[0].parent / "v4_agent_lifecycle.json").read_text()
    assert '.recorder"' in lifecycle and agent_contract.INTAKE in lifecycle  # the recorder type's queue
    assert "incident:" in (HISTORIES[0].parent / "v4_agent_incidents.json").read_text()
    assert '"heartbeatTimeout": "10s"' in (HISTORIES[0].parent / "v4_action_auto.json").read_text()

    # v5: decisions write their own audit rows (fewer record_audit activities), the inbox columns.
    def audits(name: str) -> int:
        return (HISTORIES[0].parent / name).read_text().count(f'"{AuditActivities.record_audit.__name__}"')

    assert audits("v5_agent_continue_as_new.json") < audits("v4_agent_continue_as_new.json")
    assert audits("v5_agent_lifecycle.json") < audits("v4_agent_lifecycle.json")
    assert "AiopsApprovalsNeeded" in (HISTORIES[0].parent / "v5_action_auto.json").read_text()
    # v6: signed approvals (refusals by signal and update in history) and approver notifications.
    signed = (HISTORIES[0].parent / "v6_action_signed_notified.json").read_text()
    assert signed.count('"notify_approvers"') == 2  # told when it waits, and when it is decided
    assert signed.count("workflowExecutionUpdateCompletedEventAttributes") == 3  # one refused in history
    # v7: signed agent commands (refused by signal and update, audited in history) and an action that
    # confirms hold, release and abort with its agent, approved with an identity provider's token.
    commands = (HISTORIES[0].parent / "v7_agent_signed_commands.json").read_text()
    assert '"signed-commands-v1"' in markers("v7_agent_signed_commands.json")
    assert commands.count(f'"{agent_contract.COMMAND}"') >= 4
    holds = markers("v7_action_confirmed_holds.json")
    assert '"confirmed-holds-v1"' in holds and holds.count('"agent_hold_state"') >= 3
    # v8: an agent starts in one local activity, counts an action's end as the server's record of the
    # action says, and decides a long backlog in bounded workflow tasks.
    lifecycle = markers("v8_agent_lifecycle.json")
    assert '"local-start-v1"' in lifecycle and '"start_agent"' in lifecycle
    assert '"confirmed-outcomes-v1"' in lifecycle and '"action_outcome"' in lifecycle
    assert '"register_config"' not in (HISTORIES[0].parent / "v8_agent_lifecycle.json").read_text()
    backlog = (HISTORIES[0].parent / "v8_agent_bounded_task.json").read_text()
    assert '"bounded-task-v1"' in markers("v8_agent_bounded_task.json") and '"decide_events"' in backlog
    # v8mon (tests/record_monitor_histories.py): the agent's health summary, upserted on change, and a
    # monitor pass that reads the fleet from visibility and observes only the agents that need it.
    summary = (HISTORIES[0].parent / "v8mon_agent_health_summary.json").read_text()
    assert '"health-summary-v1"' in markers("v8mon_agent_health_summary.json")
    assert summary.count('"AiopsHealth"') == 5  # ok, breaker open, breaker reset; stopping, stopped
    monitor = (HISTORIES[0].parent / "v8mon_monitor_pass.json").read_text()
    fleet = markers("v8mon_monitor_pass.json")  # the pass's own steps are local activities
    assert '"health-fleet-v1"' in fleet and '"triage_fleet"' in fleet and '"list_agents"' not in monitor
    # The same pass recorded by the monitor as it was before health-fleet-v1 (a status query each).
    before = (HISTORIES[0].parent / "v8mon_monitor_pass_before_fleet.json").read_text()
    assert '"list_agents"' in before
    assert '"health-fleet-v1"' not in markers("v8mon_monitor_pass_before_fleet.json")


def markers(name: str) -> str:
    """The decoded details of a history's markers (patches, local activities), as one text."""
    history = json.loads((HISTORIES[0].parent / name).read_text())
    details = [
        base64.b64decode(payload["data"]).decode()
        for event in history["events"]
        for detail in event.get("markerRecordedEventAttributes", {}).get("details", {}).values()
        for payload in detail["payloads"]
    ]
    return "\n".join(details)


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_recorded_history_replays(path: Path) -> None:
    replayer = Replayer(
        workflows=[AgentWorkflow, ActionWorkflow, DetectorWorkflow, HealthMonitorWorkflow],
        data_converter=pydantic_data_converter,
        workflow_runner=workflow_runner(),
    )
    await replayer.replay_workflow(load(path))


@workflow.defn(name=action_contract.WORKFLOW_TYPE)
class ActionWorkflowThatSkipsPlanning:
    """A careless change: the plan step removed without ``workflow.patched``."""

    @workflow.run
    async def run(self, input: ActionInput) -> ActionRecord:
        await workflow.execute_activity_method(
            AgentActivities.execute_action, input, start_to_close_timeout=timedelta(seconds=5)
        )
        raise AssertionError("unreachable in replay")


async def test_the_replay_test_catches_a_non_deterministic_change() -> None:
    replayer = Replayer(workflows=[ActionWorkflowThatSkipsPlanning], data_converter=pydantic_data_converter)
    history = load(next(p for p in HISTORIES if p.stem == "action_auto"))
    with pytest.raises(NondeterminismError):
        await replayer.replay_workflow(history)


async def test_replaying_records_no_framework_metrics() -> None:
    """Workflow metrics go through ``workflow.metric_meter()``: a replay must not count a step again."""
    # Imported here: this module defines a workflow, and the sandbox re-imports it without I/O libraries.
    from prometheus_client import generate_latest

    from aiops.metrics import create_telemetry

    telemetry = create_telemetry()
    replayer = Replayer(
        workflows=[AgentWorkflow, ActionWorkflow],
        data_converter=pydantic_data_converter,
        runtime=telemetry.runtime,
        workflow_runner=workflow_runner(),
    )
    for name in ("v2_agent_lifecycle", "v2_action_signal_approval", "v2_action_rolled_back"):
        await replayer.replay_workflow(load(next(p for p in HISTORIES if p.stem == name)))
    text = generate_latest(telemetry.registry).decode()
    assert not [line for line in text.splitlines() if line.startswith("aiops_")], text[:2000]


LLM_HISTORIES = sorted((Path(__file__).parent / "histories" / "llm").glob("*.json"))


def test_llm_histories_are_present() -> None:
    """v7llm: the diagnosis writes its own audit row (patch ``llm-diagnosis-audit-v1``); the compact
    answer of small models; a garbage answer given up on; a read-only tool of an MCP server."""
    names = {p.stem for p in LLM_HISTORIES}
    assert {
        "v7llm_diagnosis_tool_call_audited",
        "v7llm_diagnosis_compact",
        "v7llm_diagnosis_garbage",
        "v7llm_diagnosis_mcp_tool",
    } <= names
    mcp = (LLM_HISTORIES[0].parent / "v7llm_diagnosis_mcp_tool.json").read_text()
    assert "dynamic_toolset__aiops_mcp__call_tool" in mcp  # a tool of an MCP server
    audited = (LLM_HISTORIES[0].parent / "v7llm_diagnosis_tool_call_audited.json").read_text()
    assert '"record_audit"' in audited and "__call_tool" in audited
    patches = [
        json.loads(base64.b64decode(p["data"]))["id"]
        for e in json.loads(audited)["events"]
        if "markerRecordedEventAttributes" in e
        for p in e["markerRecordedEventAttributes"]["details"]["patch-data"]["payloads"]
    ]
    assert "llm-diagnosis-audit-v1" in patches


@pytest.mark.parametrize("path", LLM_HISTORIES, ids=[p.stem for p in LLM_HISTORIES])
async def test_recorded_llm_diagnosis_replays(path: Path) -> None:
    """The llm agent's diagnoses replay with its worker's plugin and sandbox (agents/llm/temporal.py)."""
    # Imported here: this module defines a workflow, and the sandbox re-imports it.
    from agents.llm.temporal import WORKFLOWS, plugins
    from agents.llm.temporal import workflow_runner as llm_runner

    replayer = Replayer(
        workflows=WORKFLOWS,
        data_converter=pydantic_data_converter,
        plugins=plugins(),
        workflow_runner=llm_runner(),
    )
    await replayer.replay_workflow(load(path))
