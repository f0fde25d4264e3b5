"""The narrated demo: drift in, a low-risk plan runs on its own, a high-risk one waits for a person.

Run through ``scripts/demo.sh``, which starts the dev server and a worker first.
``--leave-pending`` stops at the pending approval so you can approve it in the Web UI.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents import AgentConfig, SystemEvent
from agents.models import ApprovalSettings, Approver
from aiops.client import AiopsClient
from workflows.action_state import ActionRecord, ActionStatus

PORT = int(os.environ.get("AIOPS_TEMPORAL_PORT", "7233"))
UI = f"http://127.0.0.1:{os.environ.get('AIOPS_TEMPORAL_UI_PORT', PORT + 1000)}"
TEMPORAL = shutil.which("temporal", path=str(Path(sys.executable).parent)) or "temporal"


def say(text: str) -> None:
    print(f"\n\033[1m▸ {text}\033[0m", flush=True)


def show(record: ActionRecord) -> None:
    print(f"  action   {record.action.id}")
    print(f"  risk     {record.action.risk_level.value}   status {record.status.value}")
    if record.decision:
        print(f"  policy   {record.decision.outcome.value}: {record.decision.reason}")
    if record.plan:
        print(f"  plan     {record.plan.summary}")
        for change in record.plan.changes:
            print(f"             {change}")
    if record.result:
        print(f"  result   {record.result.message or record.result.error}")


def summary(detail: dict[str, object]) -> str:
    keys = ("outcome", "reason", "comment", "attempt", "success", "verified", "status", "state", "version")
    return ", ".join(f"{k}={detail[k]}" for k in keys if detail.get(k) not in (None, ""))[:110]


async def audit_trail(aiops: AiopsClient, agent_id: str, action_id: str) -> None:
    """The rows the audit log holds for the action, from PostgreSQL, and the chain's verdict."""
    rows = []
    for _ in range(100):  # the last rows land just after the action's final status
        rows = await aiops.audit_trail(action_id=action_id)
        if rows and rows[-1].step == "action_finished":
            break
        await asyncio.sleep(0.1)
    for row in rows:
        actor = f" by {row.actor}" if row.actor and not row.actor.startswith("aiops-worker") else ""
        print(f"  #{row.seq:<5} {row.occurred_at:%H:%M:%S}  {row.step:<18}{actor}  {summary(row.detail)}")
    [report] = await aiops.verify_audit(agent_id)
    verdict = "intact" if report.ok else f"BROKEN at row {report.broken_at_seq}: {report.problem}"
    print(f"  hash chain of {agent_id}: {report.rows_checked} rows, {verdict}")


def drift(severity: str, resources: list[str]) -> SystemEvent:
    return SystemEvent(
        id=f"drift-{uuid.uuid4().hex[:10]}",
        type="infrastructure_drift",
        source="terraform-cloud/workspace/prod-network",
        severity=severity,
        data={"workspace": "prod-network", "resources": resources},
    )


async def main(leave_pending: bool) -> int:
    aiops = await AiopsClient.connect()
    config = AgentConfig(
        id="demo-terraform",
        name="Terraform drift remediation",
        type="example",
        automation_level="semi_auto",
        approval=ApprovalSettings(approvers=[Approver(name="alice", roles=["sre"])]),
    )
    say(f"Starting agent {config.id!r} (type example, automation semi_auto: low risk runs on its own)")
    await aiops.start_agent(config)
    for _ in range(100):
        status = await aiops.status(config.id)
        if status.state.value != "initializing":
            break
        await asyncio.sleep(0.1)
    print(f"  state {status.state.value}, config version {status.config_version}")

    say("A low-severity drift arrives: two security-group rules changed by hand")
    low = drift("low", ["aws_security_group_rule.ssh", "aws_security_group_rule.https"])
    await aiops.send_event(config.id, low)
    record = await aiops.wait_for_action(aiops.action_id(config.id, low.id))
    show(record)

    say("A high-severity drift arrives: the production VPC's route table was edited")
    high = drift("high", ["aws_route_table.prod", "aws_vpc.prod"])
    await aiops.send_event(config.id, high)
    action_id = aiops.action_id(config.id, high.id)
    for _ in range(100):
        record = await aiops.action(action_id) if action_id in await aiops.pending_approvals() else None
        if record is not None:
            break
        await asyncio.sleep(0.1)
    assert record is not None, "the high-risk action did not reach the approval inbox"
    show(record)

    say("The approval inbox (AiopsActionStatus = 'PendingApproval')")
    for pending in await aiops.pending_approvals():
        p = await aiops.action(pending)
        print(f"  {pending}   [{p.action.risk_level.value}] {p.action.description}")
    approve = [TEMPORAL, "workflow", "signal", "--workflow-id", action_id, "--name", "approve",
               "--input", json.dumps({"approver": "alice", "comment": "reviewed the plan"})]  # fmt: skip
    print("\n  Open it in the Web UI:")
    print(f"    {UI}/namespaces/default/workflows/{action_id}")
    inbox = "AiopsActionStatus%3D%22PendingApproval%22"
    print(f"    (the inbox: {UI}/namespaces/default/workflows?query={inbox})")
    address = os.environ.get("TEMPORAL_ADDRESS", f"127.0.0.1:{PORT}")
    body = json.dumps({"approver": "alice", "comment": "ok"})
    print("  Approve it from a terminal:")
    print(f"    TEMPORAL_ADDRESS={address} .venv/bin/temporal workflow signal --workflow-id {action_id} \\")
    print(f"      --name approve --input '{body}'")

    if leave_pending:
        say("Leaving the action pending and the stack running: approve it in the Web UI")
        print(f'  (More actions → Send a Signal, name "approve", input {body}).')
        print("  Stop everything with: bash temporal-dev/stop.sh")
        return 0

    say("alice approves it with the temporal CLI")
    print("  $ " + " ".join(approve[:-1]) + f" '{approve[-1]}'")
    await asyncio.to_thread(subprocess.run, approve, check=True, capture_output=True, env=os.environ)
    record = await aiops.wait_for_action(action_id)
    show(record)
    if record.status not in (ActionStatus.SUCCEEDED, ActionStatus.VERIFIED):
        print(f"  unexpected end: {record.status.value} {record.error}")
        return 1

    say("The audit trail of the approved action (PostgreSQL, hash-chained per agent)")
    await audit_trail(aiops, config.id, action_id)

    status = await aiops.status(config.id)
    c = status.counters
    say(
        f"Agent {config.id}: {c.events_processed} events decided, {c.actions_proposed} actions proposed, "
        f"{c.actions_succeeded} succeeded; success rate {status.success_rate}"
    )
    print(f"\n  Web UI: {UI}   (the dev server keeps running; stop it: bash temporal-dev/stop.sh)")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--leave-pending", action="store_true", help="stop at the pending approval")
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.leave_pending)))
