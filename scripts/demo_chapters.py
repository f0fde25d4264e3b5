"""The demo's last chapters: a real disk cleanup on a tmpfs, and (``--llm``) an AI diagnosis."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import subprocess
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from demo_common import DATA, RUN, aiops_cli, alice_key, approvers, save_config, say, show
from demo_waits import pending_action, poll, run_detector

from agents import AgentConfig, SystemEvent
from aiops import keys
from aiops.client import AiopsClient
from aiops.client.audit import AuditRow
from aiops.contracts.action import ActionStatus


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
        # Long ago, and a time of this run's own: the plan (and so the event and the action) is new
        # each run, as real rotated logs would be.
        old = 1_700_000_000 + int(hashlib.sha256(RUN.encode()).hexdigest()[:6], 16) % 86_400
        for n in range(1, 7):
            rotated = logs / f"app.log.{n}"
            rotated.write_bytes(os.urandom(1024 * 1024))
            os.utime(rotated, (old, old))
        (logs / "app.log").write_bytes(b"the live log is never touched\n")
        print(f"  {mount}: {df(mount)} (6 rotated logs of demo run {RUN})")
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
        save_config(config)
        await aiops.agents.start(config, started_by="demo")
        say("Its detector (a Temporal Schedule per agent) runs now instead of in an hour")
        await run_detector(aiops, config.id, attempts=100)
        action_id = await pending_action(aiops, config.id, attempts=300)
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
    ``local`` (``agents.llm.local_model``, on loopback: ``AIOPS_LLM_LOCAL_PORT``)."""
    from agents.llm.local_model import chosen, endpoint

    local = mode == "local"
    model = f"a small local model ({chosen().label}, offline)" if local else "a scripted model"
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
    save_config(config)
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
    sent_at = datetime.now(UTC) - timedelta(seconds=1)
    await aiops.events.send(config.id, alert)
    action_id = aiops.approvals.action_id(config.id, alert.id)

    async def diagnoses() -> list[AuditRow]:
        rows = await aiops.audit.rows(agent_id=config.id, since=sent_at)
        return [r for r in rows if r.step == "llm_diagnosis" and r.detail.get("event_id") == alert.id]

    found = await poll(diagnoses, 4000 if local else 600)  # a local model on 2 cores: tens of seconds
    row = found[0] if found else None
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
    await poll(lambda: aiops.approvals.pending(config.id), 300, lambda waiting: action_id in waiting)
    say("The proposal waits for a person, with the model's diagnosis as its evidence")
    aiops_cli("approvals", "show", action_id)
    say("alice reads it, restarts checkout by hand, and rejects the proposal (signed)")
    aiops_cli("approvals", "reject", action_id, "--key", str(alice_key()), "--comment", "restarted by hand")
    record = await aiops.approvals.wait_for_action(action_id)
    show(record)
    return record.status == ActionStatus.REJECTED
