"""What an action shows the world as it goes: search attributes, current details, reports to its agent.

Pure publishing, no decisions: the approval inbox reads the search attributes, an approver reads
the Web UI's current details, and the agent counts what its actions report. ``ActionContext``
calls these on every status change (its ``set_status``) and whenever the record changes in a way
a person should see.
"""

from __future__ import annotations

from typing import Any

from temporalio import workflow
from temporalio.common import SearchAttributeKey, SearchAttributeUpdate

with workflow.unsafe.imports_passed_through():
    from aiops.contracts import agent as agent_contract
    from aiops.contracts import search_attributes as sa
    from aiops.contracts.action import ActionInput, ActionOutcome, ActionRecord, ActionStatus
    from workflows.action.approval_gate import approvals_count
    from workflows.action.details import details_markdown


def publish_status(record: ActionRecord, input: ActionInput) -> bool:
    """The status and the inbox's columns (requested at, approvals so far and needed), upserted
    only where they differ from what the workflow already has: the agent sets the status
    (proposed), the request time and the approvals needed when it starts this workflow
    (``workflows/action_launch.py``), so the first task of an action that executes at once upserts
    its status once, not twice. The agent, its type, the risk and the summary are set at start too.
    Whether anything was upserted."""
    current = workflow.info().typed_search_attributes
    wanted: list[tuple[SearchAttributeKey[Any], Any]] = [
        (sa.ACTION_STATUS, record.status.value),
        (sa.APPROVALS, approvals_count(record)),
        (sa.APPROVALS_NEEDED, input.decision.required_approvals),
    ]
    updates: list[SearchAttributeUpdate[Any]] = [
        key.value_set(value) for key, value in wanted if current.get(key) != value
    ]
    if current.get(sa.REQUESTED_AT) is None:  # an agent that did not set it at start
        updates.append(sa.REQUESTED_AT.value_set(record.history[0].at))
    if updates:
        workflow.upsert_search_attributes(updates)
    return bool(updates)


def publish_approvals(record: ActionRecord) -> None:
    """The inbox's approvals-so-far column, after an approval that did not change the status."""
    workflow.upsert_search_attributes([sa.APPROVALS.value_set(approvals_count(record))])


def show_details(record: ActionRecord, input: ActionInput) -> None:
    """The Web UI's current details: what to do now, or what happened."""
    workflow.set_current_details(details_markdown(record, input.decision, input.config.approval))


async def report_to_agent(record: ActionRecord, input: ActionInput, status: ActionStatus) -> None:
    """Tell the agent that ``status`` was reached (it counts its actions' outcomes and waits for
    the pending ones); an agent that is gone does not change this action's record."""
    r = record
    outcome = ActionOutcome(
        action_id=r.action.id,
        event_id=r.action.event_id or "",
        status=status,
        success=status in (ActionStatus.SUCCEEDED, ActionStatus.VERIFIED) if status.is_final else None,
        message=r.error or (r.result.message if r.result else ""),
        duration_seconds=(workflow.now() - r.history[0].at).total_seconds() if status.is_final else None,
    )
    try:
        await workflow.get_external_workflow_handle(input.agent_workflow_id).signal(
            agent_contract.AgentMessages.action_finished, outcome
        )
    except Exception as err:  # the agent may have stopped; the action's record stands
        workflow.logger.info("could not report %s to %s: %s", status.value, input.agent_workflow_id, err)
