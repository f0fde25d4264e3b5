"""The narrated demo: drift in, a low-risk plan runs on its own, a high-risk one waits for a person.

Run through ``scripts/demo.sh``, which starts the dev server and a worker first.
``--leave-pending`` stops at the pending approval so you can approve it in the Web UI.
``--llm`` adds an llm agent's diagnosis with a scripted model; ``--llm=local`` with a tiny local
model (SmolLM2-135M on llama.cpp, which ``scripts/demo.sh`` starts on loopback).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents import AgentConfig, SystemEvent
from aiops import keys
from aiops.client import AiopsClient
from aiops.contracts import action as action_contract
from aiops.contracts.action import ActionRecord, ActionStatus
from aiops.contracts.config import ApprovalSettings, Approver

PORT = int(os.environ.get("AIOPS_TEMPORAL_PORT", "7233"))
UI = f"http://127.0.0.1:{os.environ.get('AIOPS_TEMPORAL_UI_PORT', PORT + 1000)}"
TEMPORAL = shutil.which("temporal", path=str(Path(sys.executable).parent)) or "temporal"


def _bold(text: str) -> str:
    """Bold on a terminal; plain text when redirected to a file or pipe (or NO_COLOR is set)."""
    if sys.stdout.isatty() and not os.environ.get("NO_COLOR"):
        return f"\033[1m{text}\033[0m"
    return text


def say(text: str) -> None:
    print(f"\n{_bold(f'▸ {text}')}", flush=True)


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
        rows = await aiops.audit.rows(action_id=action_id)
        if rows and rows[-1].step == "action_finished":
            break
        await asyncio.sleep(0.1)
    for row in rows:
        actor = f" by {row.actor}" if row.actor and not row.actor.startswith("aiops-worker") else ""
        print(f"  #{row.seq:<5} {row.occurred_at:%H:%M:%S}  {row.step:<18}{actor}  {summary(row.detail)}")
    [report] = await aiops.audit.verify(agent_id)
    verdict = "intact" if report.ok else f"BROKEN at row {report.broken_at_seq}: {report.problem}"
    print(f"  hash chain of {agent_id}: {report.rows_checked} rows, {verdict}")


def drift(severity: str, resources: list[str], workspace: str = "prod-network") -> SystemEvent:
    return SystemEvent(
        id=f"drift-{uuid.uuid4().hex[:10]}",
        type="infrastructure_drift",
        source=f"terraform-cloud/workspace/{workspace}",
        severity=severity,
        data={"workspace": workspace, "resources": resources},
    )


def aiops_cli(*args: str) -> None:
    """Run the ``aiops`` CLI as an operator would, showing the command and its output."""
    print(f"\n  $ aiops {shlex.join(args)}", flush=True)
    subprocess.run([sys.executable, "-m", "aiops.cli", *args], check=True, env=os.environ)


def aiops_cli_refused(*args: str) -> None:
    """Run the ``aiops`` CLI for a command that must be refused (exit status 1)."""
    print(f"\n  $ aiops {shlex.join(args)}", flush=True)
    done = subprocess.run([sys.executable, "-m", "aiops.cli", *args], env=os.environ)
    if done.returncode != 1:
        raise SystemExit(f"expected a refusal (exit 1), got exit {done.returncode}")


def alice_key() -> Path:
    """alice's own key pair, as `aiops keys generate` makes it (kept in the demo's data folder)."""
    path = DATA / "alice.key.json"
    if not path.exists():
        aiops_cli("keys", "generate", "alice", "--out", str(path))
    return path


def approvers() -> ApprovalSettings:
    """alice, an SRE, whose decisions are verified with her public key (no unsigned approvals)."""
    public = keys.load(alice_key()).public_key()
    return ApprovalSettings(approvers=[Approver(name="alice", roles=["sre"], public_key=public)])


def agent(agent_id: str, name: str, automation: str) -> AgentConfig:
    return AgentConfig(
        id=agent_id, name=name, type="example", automation_level=automation, approval=approvers()
    )


async def main(leave_pending: bool, llm: str | None = None) -> int:
    aiops = await AiopsClient.connect()
    prod = agent("demo-terraform", "Terraform drift remediation (prod)", "semi_auto")
    staging = agent("demo-staging", "Terraform drift remediation (staging)", "full_auto")
    say("Starting two agents: prod (semi_auto: low risk runs alone) and staging (full_auto: up to medium)")
    for config in (prod, staging):
        await aiops.agents.start(config, started_by="demo")
    for config in (prod, staging):
        for _ in range(100):
            status = await aiops.agents.status(config.id)
            if status.state.value != "initializing":
                break
            await asyncio.sleep(0.1)
        print(f"  {config.id:<16} {status.state.value}, config version {status.config_version}")

    say("Events arrive: drift in prod and staging, and an alert the drift agents do not subscribe to")
    low = drift("low", ["aws_security_group_rule.ssh", "aws_security_group_rule.https"])
    medium = drift("medium", ["aws_instance.web"], workspace="staging-web")
    alert = SystemEvent(
        id=f"alert-{uuid.uuid4().hex[:10]}", type="alert", source="prometheus/HighErrorRate", severity="high"
    )
    await aiops.events.send_many(prod.id, [low, alert])
    await aiops.events.send(staging.id, medium)
    for config, e in ((prod, low), (staging, medium)):
        record = await aiops.approvals.wait_for_action(aiops.approvals.action_id(config.id, e.id))
        say(f"{config.id}: a {e.severity.value} drift ran on its own")
        show(record)
    status = await aiops.agents.status(prod.id)
    print(f"\n  the alert was filtered by {prod.id}: events_filtered = {status.counters.events_filtered}")

    say("A high-severity drift arrives in prod: the production VPC's route table was edited")
    high = drift("high", ["aws_route_table.prod", "aws_vpc.prod"])
    await aiops.events.send(prod.id, high)
    action_id = aiops.approvals.action_id(prod.id, high.id)
    record = None
    for _ in range(100):
        record = (
            await aiops.approvals.action(action_id) if action_id in await aiops.approvals.pending() else None
        )
        if record is not None:
            break
        await asyncio.sleep(0.1)
    assert record is not None, "the high-risk action did not reach the approval inbox"
    show(record)

    say("The approval inbox, and the evidence an approver sees")
    aiops_cli("approvals", "list")
    aiops_cli("approvals", "show", action_id)
    address = os.environ.get("TEMPORAL_ADDRESS", f"127.0.0.1:{PORT}")
    key = alice_key()
    print("\n  Open it in the Web UI:")
    print(f"    {UI}/namespaces/default/workflows/{action_id}")
    inbox = "AiopsActionStatus%3D%22pending_approval%22"
    print(f"    (the inbox: {UI}/namespaces/default/workflows?query={inbox})")
    print("  Every decision is signed with the approver's own key. Approve it from a terminal:")
    print(f'    .venv/bin/aiops approvals approve {action_id} --key {key} --comment "reviewed the plan"')
    print("  or sign a token and send it with the temporal CLI or the Web UI's Send a Signal box:")
    print(f"    .venv/bin/aiops approvals token {action_id} --key {key}")
    print(f"    TEMPORAL_ADDRESS={address} .venv/bin/temporal workflow signal --workflow-id {action_id} \\")
    print(f"      --name {action_contract.APPROVE} --input '<the JSON line it printed>'")

    if leave_pending:
        say("Leaving the action pending and the stack running: approve it in the Web UI")
        print(
            f'  (More actions → Send a Signal, name "{action_contract.APPROVE}", input: the token\'s JSON).'
        )
        print("  Stop everything with: bash temporal-dev/stop.sh")
        return 0

    say("A name alone is not enough: an unsigned approval claiming to be alice is refused (and audited)")
    aiops_cli_refused("approvals", "approve", action_id, "--as", "alice", "--comment", "trust me")
    say("alice approves it with the aiops CLI, signed with her key")
    aiops_cli("approvals", "approve", action_id, "--key", str(key), "--comment", "reviewed the plan")
    record = await aiops.approvals.wait_for_action(action_id)
    show(record)
    if record.status not in (ActionStatus.SUCCEEDED, ActionStatus.VERIFIED):
        print(f"  unexpected end: {record.status.value} {record.error}")
        return 1

    say("The audit trail of the approved action (PostgreSQL, hash-chained per agent)")
    await audit_trail(aiops, prod.id, action_id)
    aiops_cli("audit", "verify", prod.id)

    if not await disk_story(aiops):
        return 1
    if llm is not None and not await llm_story(aiops, llm):
        return 1

    for config in (prod, staging):
        status = await aiops.agents.status(config.id)
        c = status.counters
        print(
            f"\n  {config.id}: {c.events_received} events received, {c.events_processed} decided, "
            f"{c.events_filtered} filtered, {c.actions_proposed} actions proposed, "
            f"{c.actions_succeeded} succeeded"
        )
    print(f"\n  Web UI: {UI}   (the dev stack keeps running; stop it: bash temporal-dev/stop.sh)")
    await aiops.close()
    return 0


DATA = Path(os.environ.get("AIOPS_DEV_DATA", "temporal-dev/.data")).resolve()


def df(mount: Path) -> str:
    usage = shutil.disk_usage(mount)
    return (
        f"{usage.used * 100 / usage.total:.0f}% used ({usage.used // 1024} KiB of {usage.total // 1024} KiB)"
    )


async def disk_story(aiops: AiopsClient) -> bool:
    """A real fix on a real filesystem: a small tmpfs fills up with old logs; the disk agent's
    detector finds it, the plan lists the exact files, alice approves, and verification proves
    the space came back. Needs root (to mount); otherwise the chapter is skipped and says why."""
    say("A real system: a small disk (tmpfs) fills up with rotated logs")
    mount = DATA / "demo-disk"
    mount.mkdir(parents=True, exist_ok=True)
    mount_command = ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)]
    mounted = await asyncio.to_thread(subprocess.run, mount_command, capture_output=True)
    if mounted.returncode != 0:
        print(f"  skipped: mounting a tmpfs needs root ({mounted.stderr.decode().strip() or 'mount failed'})")
        return True
    try:
        logs = mount / "app" / "log"
        logs.mkdir(parents=True)
        old = 1_700_000_000  # long ago
        for n in range(1, 7):
            rotated = logs / f"app.log.{n}"
            rotated.write_bytes(os.urandom(1024 * 1024))
            os.utime(rotated, (old, old))
        (logs / "app.log").write_bytes(b"the live log is never touched\n")
        print(f"  {mount}: {df(mount)}")
        config = AgentConfig(
            id="demo-disk",
            name="Disk space on the demo volume",
            type="disk",
            automation_level="semi_auto",
            runtime={"detect_every_seconds": 3600},
            approval=approvers(),
            settings={
                "mounts": [str(mount)],
                "threshold_percent": 60,
                "roots": [{"path": str(logs), "globs": ["app.log.[0-9]*"], "min_age_seconds": 3600}],
                "mode": "delete",
                "state_dir": str(DATA / "demo-disk-state"),
            },
        )
        await aiops.agents.start(config, started_by="demo")
        schedule = aiops.client.get_schedule_handle(f"aiops-detector-{config.id}")
        for _ in range(100):  # the agent creates its detector schedule when it starts
            try:
                await schedule.describe()
                break
            except Exception:
                await asyncio.sleep(0.1)
        say("Its detector (a Temporal Schedule per agent) runs now instead of in an hour")
        await schedule.trigger()
        action_id = None
        for _ in range(300):
            waiting = await aiops.approvals.pending(config.id)
            if waiting:
                action_id = waiting[0]
                break
            await asyncio.sleep(0.1)
        if action_id is None:
            print("  the disk agent proposed nothing; see the worker log")
            return False
        say("Deleting files is medium risk: it waits for a person, with the exact files as evidence")
        aiops_cli("approvals", "show", action_id)
        say("alice approves; the agent deletes exactly the planned files and verifies the space is back")
        aiops_cli(
            "approvals", "approve", action_id, "--key", str(alice_key()), "--comment", "old rotated logs"
        )
        record = await aiops.approvals.wait_for_action(action_id)
        show(record)
        print(f"  {mount}: {df(mount)}; left: {sorted(p.name for p in logs.iterdir())}")
        await aiops.agents.stop(
            config.id, reason="demo over", key=keys.load(alice_key())
        )  # signed, as any command
        return record.status == ActionStatus.VERIFIED
    finally:
        await asyncio.to_thread(subprocess.run, ["umount", str(mount)], capture_output=True)


LLM_LOG = """\
2026-12-02T03:10:01Z checkout: request served in 41ms
2026-12-02T03:10:07Z checkout: heap at 1.9 GiB of 2 GiB
kernel: Out of memory: Killed process 4242 (checkout) total-vm:2101312kB
2026-12-02T03:10:09Z supervisor: checkout exited (killed), restarting (5th time in 10 minutes)
"""


async def llm_story(aiops: AiopsClient, mode: str) -> bool:
    """An alert to an ``llm`` agent: a model diagnoses it (reading the service's log, when it can
    call tools), proposes the one catalog action that fits, and the proposal waits for alice with
    the diagnosis as its evidence. ``mode`` is ``scripted`` (a FunctionModel in the worker) or
    ``local`` (SmolLM2-135M on llama.cpp, on loopback: ``AIOPS_LLM_LOCAL_PORT``)."""
    from agents.llm.local_model import endpoint

    local = mode == "local"
    model = "a tiny local model (SmolLM2-135M on llama.cpp, offline)" if local else "a scripted model"
    say(f"An llm agent diagnoses an alert with {model} and proposes one action from its catalog")
    logs = DATA / "demo-llm-logs"
    logs.mkdir(parents=True, exist_ok=True)
    (logs / "checkout.log").write_text(LLM_LOG)
    settings: dict[str, object] = {
        "endpoint": (
            endpoint(int(os.environ["AIOPS_LLM_LOCAL_PORT"]))
            if local
            else {"provider": "registered", "model": "scripted"}
        ),
        "catalog": [
            {
                "name": "restart-checkout",
                "action_type": "restart_service",
                "description": "restart the checkout service (fixes out-of-memory crashes)",
                "targets": ["service/checkout"],
                "risk_floor": "medium",
            }
        ],
        "tools": {"file_roots": [str(logs)]},
    }
    config = AgentConfig(
        id="demo-llm",
        name="AI diagnosis of service alerts",
        type="llm",
        automation_level="semi_auto",
        runtime={"local_decisions": False, "decision_timeout_seconds": 400},
        approval=approvers(),
        settings=settings,
    )
    await aiops.agents.start(config, started_by="demo")
    alert = SystemEvent(
        id=f"alert-{uuid.uuid4().hex[:10]}",
        type="alert",
        source="service/checkout",
        severity="high",
        data={
            "alertname": "CheckoutOutOfMemory",
            "summary": "checkout is out of memory and crash-looping; restart it",
            "log": str(logs / "checkout.log"),
        },
    )
    print(f"  alert    {alert.data['alertname']} on {alert.source}: {alert.data['summary']}")
    await aiops.events.send(config.id, alert)
    action_id = aiops.approvals.action_id(config.id, alert.id)
    row = None
    for _ in range(4000 if local else 600):  # a local model on 2 cores: tens of seconds
        rows = [r for r in await aiops.audit.rows(agent_id=config.id) if r.step == "llm_diagnosis"]
        if rows:
            row = rows[0]
            break
        await asyncio.sleep(0.1)
    if row is None:
        print("  the diagnosis did not finish; see the worker log")
        return False
    detail = row.detail
    usage = detail.get("usage", {})
    print(
        f"  model    {detail.get('model')}: {detail.get('seconds')}s, {usage.get('requests')} request(s), "
        f"{usage.get('input_tokens')} input and {usage.get('output_tokens')} output tokens, "
        f"{usage.get('tool_calls')} tool call(s) (audit row llm_diagnosis, metrics aiops_llm_*)"
    )
    if detail.get("outcome") != "proposal":
        print(f"  no proposal: {detail.get('no_proposal_reason')}")
        print(f"  the model's diagnosis: {detail.get('summary')!r}")
        return local  # a toy model may decline (the demo says so); the scripted one always proposes
    for _ in range(300):
        if action_id in await aiops.approvals.pending(config.id):
            break
        await asyncio.sleep(0.1)
    say("The proposal waits for a person, with the model's diagnosis as its evidence")
    aiops_cli("approvals", "show", action_id)
    say("alice reads it, restarts checkout by hand, and rejects the proposal (signed)")
    aiops_cli("approvals", "reject", action_id, "--key", str(alice_key()), "--comment", "restarted by hand")
    record = await aiops.approvals.wait_for_action(action_id)
    show(record)
    return record.status == ActionStatus.REJECTED


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--leave-pending", action="store_true", help="stop at the pending approval")
    parser.add_argument(
        "--llm",
        nargs="?",
        const="scripted",
        choices=["scripted", "local"],
        help="add an llm agent's diagnosis: a scripted model (default) or, with --llm=local, "
        "SmolLM2-135M on llama.cpp (scripts/demo.sh starts it)",
    )
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.leave_pending, args.llm)))
