"""What an approver reads: the Web UI summary and details, and the CLI line to approve.

Pure string building from the action record, so the workflow can refresh it
on every change and the tests can read it.
"""

from __future__ import annotations

from agents.models import AgentAction, SystemEvent
from agents.policy import PolicyDecision
from workflows.action_contract import ActionRecord


def approve_command(workflow_id: str) -> str:
    return (
        f"temporal workflow signal --workflow-id {workflow_id} --name approve "
        '--input \'{"approver":"<your name>","comment":"<why>"}\''
    )


def static_summary(action: AgentAction) -> str:
    targets = ", ".join(action.target_resources[:3]) or "-"
    return f"[{action.risk_level.value}] {action.type.value} on {targets}: {action.description}"[:200]


def static_details(
    action: AgentAction, event: SystemEvent, decision: PolicyDecision, workflow_id: str
) -> str:
    return "\n".join(
        [
            f"### {action.description}",
            f"- **risk**: {action.risk_level.value}",
            f"- **action**: {action.type.value} on {', '.join(action.target_resources) or '-'}",
            f"- **estimated impact**: {action.estimated_impact or '-'}",
            f"- **policy**: {decision.outcome.value}: {decision.reason}",
            f"- **event**: `{event.id}` {event.type.value} from {event.source} ({event.severity.value})",
            "",
            "Approve from a terminal:",
            "",
            f"    {approve_command(workflow_id)}",
        ]
    )


def details_markdown(record: ActionRecord, decision: PolicyDecision) -> str:
    lines = [
        f"**status**: {record.status.value} · **risk**: {record.action.risk_level.value} · "
        f"**policy**: {decision.outcome.value} ({decision.reason})",
    ]
    if decision.required_approvals:
        approvers = ", ".join(a.approver for a in record.approvals if a.approved) or "none yet"
        lines.append(
            f"**approvals**: {len({a.approver for a in record.approvals if a.approved})}"
            f"/{decision.required_approvals} from roles {', '.join(decision.allowed_roles)} ({approvers})"
        )
    if record.approval_deadline is not None and record.status.value == "pending_approval":
        lines.append(
            f"**decide before**: {record.approval_deadline.isoformat()}"
            + (" (escalated)" if record.escalated else "")
        )
    if record.held:
        lines.append("**held**: the agent is paused; execution waits until it resumes")
    if record.plan is not None:
        lines += ["", f"**plan** (digest `{(record.plan_digest or '')[:12]}`): {record.plan.summary}"]
        lines += [f"    {change}" for change in record.plan.changes[:20]]
    if record.refused:
        last = record.refused[-1]
        lines.append(f"**last refused decision**: {last.approver}: {last.reason}")
    if record.result is not None:
        lines.append(f"**result**: {record.result.message or record.result.error}")
    if record.error:
        lines.append(f"**error**: {record.error}")
    if record.status.value == "pending_approval":
        lines += ["", "Approve:", "", f"    {record.approve_command}"]
    return "\n".join(lines)
