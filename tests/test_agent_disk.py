"""The ``disk`` agent against a real filesystem: an 8 MiB tmpfs filled past its threshold.

Unit-level tests call the hooks directly; the walk-through sends the detected events to a running
agent, approves the plan and checks the space came back; the crash test kills the worker process in
the middle of the deletions and proves no file is deleted twice.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import agents.builtin  # noqa: F401  (registers the built-in agents)
from agents import AgentAction, AgentConfig, NonRetryableActionError, SystemEvent
from agents.builtin.disk import DiskAgent, planned_files, usage
from agents.ledger import ActionLedger
from aiops.client import AiopsClient
from aiops.contracts.action import ActionStatus
from aiops.contracts.models import AutomationLevel, EventType, Plan, RiskLevel
from tests.helpers import agent_config, eventually, team, wait_pending
from tests.support.postgres_server import PostgresServer
from tests.support.processes import worker_process

MiB = 1024 * 1024
OLD = time.time() - 7 * 24 * 3600  # a week ago: past every min_age below


@pytest.fixture
def tmpfs() -> Iterator[Path]:
    """A real 8 MiB filesystem (tmpfs, mounted as root), unmounted afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="aiops-disk-"))
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(folder)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        folder.rmdir()
        pytest.skip(
            f"cannot mount a tmpfs here ({mounted.stderr.strip() or mounted.returncode}); the disk agent "
            "measures real filesystems (statvfs) and has no size-budget mode to fall back to"
        )
    try:
        yield folder
    finally:
        if subprocess.run(["umount", str(folder)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(folder)], capture_output=True)
        folder.rmdir()


def write(path: Path, size: int, mtime: float | None = OLD) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(size))
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


class Disk:
    """The filled tmpfs: what may be cleaned, what must not be, and the hostile bits."""

    def __init__(self, mount: Path, outside: Path) -> None:
        self.mount, self.outside = mount, outside
        self.logs = mount / "log"
        self.tmp = mount / "tmp"
        write(mount / "data" / "database.bin", 4 * MiB)  # matches no rule: never touched
        self.rotated = [write(self.logs / f"app.log.{i}", MiB // 2) for i in range(1, 5)]
        self.current = write(self.logs / "app.log", 64 * 1024, mtime=None)  # the live log: not rotated
        self.uploads = [write(self.tmp / f"upload-{i}.tmp", MiB // 4) for i in range(2)]
        self.fresh = write(self.tmp / "upload-new.tmp", 64 * 1024, mtime=None)  # too young
        # Hostile: symlinks out of the root, to a file and to a folder, with names the globs match.
        self.secret = write(outside / "secret.log.1", 1000)
        write(outside / "dir" / "victim.log.1", 1000)
        os.symlink(self.secret, self.logs / "evil.log.9")
        os.symlink(outside / "dir", self.logs / "evil-dir")
        # A hard link to a file outside the rules: removing its name frees nothing.
        write(mount / "data" / "keep.log.1", 1000)
        os.link(mount / "data" / "keep.log.1", self.logs / "linked.log.7")

    @property
    def cleanable(self) -> list[Path]:
        return [*self.rotated, *self.uploads]

    def outside_intact(self) -> bool:
        return self.secret.exists() and (self.outside / "dir" / "victim.log.1").exists()


@pytest.fixture
def disk(tmpfs: Path, tmp_path: Path) -> Disk:
    filled = Disk(tmpfs, tmp_path / "outside")
    assert usage(str(tmpfs)).percent > 80
    return filled


def settings(disk: Disk, tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    return {
        "mounts": [str(disk.mount)],
        "threshold_percent": 80,
        "roots": [
            {"path": str(disk.logs), "globs": ["*.log.[0-9]*"], "min_age_seconds": 3600},
            {"path": str(disk.tmp), "globs": ["upload-*.tmp"], "min_age_seconds": 600, "recursive": False},
        ],
        "state_dir": str(tmp_path / "state"),
        **overrides,
    }


def config_for(disk: Disk, tmp_path: Path, **overrides: Any) -> AgentConfig:
    extra = {k: overrides.pop(k) for k in list(overrides) if k in ("automation_level", "approval", "retry")}
    return agent_config("disk", settings=settings(disk, tmp_path, **overrides), **extra)


async def running_agent(config: AgentConfig) -> DiskAgent:
    agent = DiskAgent(config)
    await agent.initialize()
    await agent.start()
    return agent


async def decided(agent: DiskAgent, event: SystemEvent) -> AgentAction:
    """What the framework does with a decision: an id derived from agent and event."""
    action = await agent.process_event(event)
    assert action is not None
    return action.model_copy(update={"id": f"action-{agent.agent_id}:{event.id}", "event_id": event.id})


def approved(action: AgentAction, plan: Plan) -> AgentAction:
    """The action as ``execute`` receives it: with the approved plan in its parameters."""
    return action.model_copy(update={"parameters": {**action.parameters, "approved_plan": plan.model_dump()}})


async def planned_action(agent: DiskAgent) -> tuple[AgentAction, Plan]:
    events = await agent.detect()
    assert len(events) == 1
    action = await decided(agent, events[0])
    plan = await agent.plan(action)
    assert plan is not None
    return action, plan


# ----- settings ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"roots": [{"path": "/", "globs": ["*.log"]}]}, "'/' may not be a cleanup root"),
        ({"roots": [{"path": "/etc/app", "globs": ["*.log"]}]}, "lies in a system directory"),
        ({"roots": [{"path": "/var", "globs": ["*.log"]}]}, "'/var' may not be a cleanup root"),
        ({"roots": [{"path": "var/log", "globs": ["*.log"]}]}, "is not an absolute path"),
        ({"roots": [{"path": "/var/log/../../etc", "globs": ["*.log"]}]}, "is not in normal form"),
        (
            {"roots": [{"path": "/opt/elsewhere/logs", "globs": ["*.log"]}]},
            "is on none of the watched mounts",
        ),
        ({"roots": [{"path": "{mount}/log", "globs": ["../../etc/*"]}]}, "must match file names only"),
        ({"roots": [{"path": "{mount}/log", "globs": ["*"]}]}, "matches every file name"),
        ({"roots": [{"path": "{mount}/log", "globs": ["**.log"]}]}, "'**' is not supported"),
        ({"roots": [{"path": "{mount}/log", "globs": ["app.log.[0-9"]}]}, "has an unclosed '['"),
        (
            {"roots": [{"path": "{mount}/log", "globs": []}]},
            "settings.roots[0].globs: List should have at least 1",
        ),
        ({"roots": [{"path": "{mount}/log", "globs": ["*.gz"], "min_age_seconds": 1e30}]}, "min_age_seconds"),
        (
            {"roots": [{"path": "{mount}/log", "globs": ["*.gz"], "depth": 3}]},
            "settings.roots[0].depth: unknown setting for the disk agent (known: path, globs, min_age",
        ),
        ({"roots": [{"path": "{mount}/nope", "globs": ["*.gz"]}]}, "nope does not exist on this worker"),
        ({"mounts": ["{mount}", "/no/such/mount"]}, "/no/such/mount does not exist on this worker"),
        ({"mounts": []}, "settings.mounts: List should have at least 1"),
        (
            {"threshold_percent": 10**12},
            "settings.threshold_percent: Input should be less than or equal to 99",
        ),
        ({"threshold_percent": True}, "settings.threshold_percent: Input should be a valid number"),
        ({"max_files": 10**9}, "settings.max_files: Input should be less than or equal to 10000"),
        ({"throttle_seconds": -1}, "settings.throttle_seconds: Input should be greater than or equal to 0"),
        ({"mode": "shred"}, "settings.mode: Input should be 'delete' or 'quarantine'"),
        ({"mode": "quarantine"}, "settings.quarantine_dir: is required with mode quarantine"),
        (
            {"quarantine_dir": "{mount}/log/q"},
            "settings.quarantine_dir: '{mount}/log/q' overlaps the cleanup root",
        ),
        ({"state_dir": "/etc/aiops"}, "settings.state_dir: '/etc/aiops' is a system directory"),
        ({"risk_level": "tiny"}, "settings.risk_level: Input should be 'low'"),
        ({"colour": "blue"}, "settings.colour: unknown setting for the disk agent (known: mounts, roots,"),
        ({"target_percent": 90}, "settings.target_percent: 90 must be below threshold_percent (80)"),
    ],
)
def test_hostile_settings_are_refused_with_a_clear_message(
    disk: Disk, tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    raw = json.loads(json.dumps(change).replace("{mount}", str(disk.mount)))
    message = message.replace("{mount}", str(disk.mount))
    agent = DiskAgent(config_for(disk, tmp_path))
    problems = agent.validate_config(config_for(disk, tmp_path, **raw))
    assert any(message in p for p in problems), problems


def test_a_root_reached_through_a_symlink_is_refused(disk: Disk, tmp_path: Path) -> None:
    os.symlink(disk.logs, disk.mount / "logs-link")
    raw = {"roots": [{"path": str(disk.mount / "logs-link"), "globs": ["*.gz"]}]}
    problems = DiskAgent(config_for(disk, tmp_path)).validate_config(config_for(disk, tmp_path, **raw))
    assert any("is reached through a symlink" in p for p in problems), problems


def test_good_settings_pass(disk: Disk, tmp_path: Path) -> None:
    config = config_for(disk, tmp_path)
    assert DiskAgent(config).validate_config(config) == []
    parsed = DiskAgent(config).settings
    assert parsed.risk == RiskLevel.MEDIUM and parsed.max_files == 1000 and parsed.roots[0].recursive


# ----- hooks, called directly ------------------------------------------------------------------------------


async def test_detect_reports_one_stable_event_per_occurrence(disk: Disk, tmp_path: Path) -> None:
    agent = await running_agent(config_for(disk, tmp_path))
    first, again = await agent.detect(), await agent.detect()
    assert [e.id for e in first] == [e.id for e in again]
    (event,) = first
    assert event.type == EventType.METRIC_THRESHOLD and event.data["mount"] == str(disk.mount)
    assert event.data["candidates"] == len(disk.cleanable)
    write(disk.logs / "app.log.5", 1000)  # another rotated log: a new occurrence, a new plan
    (changed,) = await agent.detect()
    assert changed.id != event.id

    relaxed = await running_agent(config_for(disk, tmp_path, threshold_percent=99))
    assert await relaxed.detect() == []


async def test_an_alertmanager_alert_for_a_watched_mount_becomes_the_same_cleanup(
    disk: Disk, tmp_path: Path
) -> None:
    agent = await running_agent(config_for(disk, tmp_path))

    def alert(status: str, mountpoint: str) -> SystemEvent:
        labels = {"alertname": "NodeFilesystemAlmostFull", "mountpoint": mountpoint}
        return SystemEvent(
            id=f"am-{status}-{mountpoint}",
            type="alert",
            source="node",
            data={"status": status, "labels": labels},
        )

    action = await agent.process_event(alert("firing", str(disk.mount)))
    assert action is not None and action.parameters["mount"] == str(disk.mount)
    assert action.risk_level == RiskLevel.MEDIUM  # deleting files needs a person in semi_auto
    assert await agent.process_event(alert("resolved", str(disk.mount))) is None
    assert await agent.process_event(alert("firing", "/somewhere/else")) is None


async def test_the_plan_lists_the_exact_files_and_never_follows_symlinks_out(
    disk: Disk, tmp_path: Path
) -> None:
    agent = await running_agent(config_for(disk, tmp_path))
    _, plan = await planned_action(agent)
    files = planned_files(plan.model_dump())
    assert sorted(f.path for f in files) == sorted(str(p) for p in disk.cleanable)
    assert sum(f.size for f in files) == 4 * (MiB // 2) + 2 * (MiB // 4)
    assert f"delete {len(files)} file(s), 2.5 MiB on {disk.mount}" in plan.summary
    assert f"{disk.logs}/evil.log.9: symlink (never followed)" in plan.details
    assert f"{disk.logs}/evil-dir: symlink (never followed)" in plan.details
    assert "linked.log.7: has 2 hard links" in plan.details
    assert not any("victim" in c or "secret" in c or "database" in c for c in plan.changes)


async def test_execute_acts_on_exactly_the_planned_files_and_skips_what_changed(
    disk: Disk, tmp_path: Path
) -> None:
    agent = await running_agent(config_for(disk, tmp_path))
    action, plan = await planned_action(agent)
    swapped, grown, *_ = disk.rotated
    swapped.unlink()
    os.symlink(disk.secret, swapped)  # became a symlink out of the root since the plan
    with grown.open("ab") as f:
        f.write(b"more")  # changed since the plan
    newcomer = write(disk.logs / "app.log.9", 1000)  # matches, but was not in the plan

    result = await agent.execute_action(approved(action, plan))
    assert result.success, result
    assert result.data["removed_files"] == len(disk.cleanable) - 2
    assert sorted(result.data["skipped"]) == sorted(
        [f"{grown}: changed since the plan (another inode, size or time)", f"{swapped}: now a symlink"]
    )
    assert swapped.is_symlink() and grown.exists() and newcomer.exists()
    assert disk.outside_intact() and disk.secret.read_bytes()
    assert all(not p.exists() for p in disk.cleanable if p not in (swapped, grown))
    assert (disk.mount / "data" / "database.bin").exists() and disk.current.exists() and disk.fresh.exists()
    assert await agent.verify(action, result)

    # The same action again (a retried activity): the recorded answer, no second side effect.
    recreated = write(disk.uploads[0], 1000)
    assert await agent.execute_action(approved(action, plan)) == result
    assert recreated.exists()


async def test_a_folder_swapped_for_a_symlink_after_the_plan_is_not_followed(
    disk: Disk, tmp_path: Path
) -> None:
    nested = write(disk.logs / "sub" / "worker.log.1", MiB // 4)
    agent = await running_agent(config_for(disk, tmp_path))
    action, plan = await planned_action(agent)
    assert str(nested) in "\n".join(plan.changes)
    (disk.logs / "sub").rename(disk.logs / "sub.moved")
    bait = write(disk.outside / "sub" / "worker.log.1", MiB // 4)
    os.symlink(disk.outside / "sub", disk.logs / "sub")
    result = await agent.execute_action(approved(action, plan))
    assert (
        f"{nested}: parent folder changed (a folder on its path is now a symlink)" in result.data["skipped"]
    )
    assert bait.exists()


async def test_a_plan_naming_files_outside_the_roots_is_refused(disk: Disk, tmp_path: Path) -> None:
    agent = await running_agent(config_for(disk, tmp_path))
    action, plan = await planned_action(agent)
    st = disk.secret.stat()
    forged = plan.model_copy(
        update={
            "changes": [
                *plan.changes,
                f'delete "{disk.secret}" (1000 bytes, modified x) '
                f"[inode {st.st_ino}, mtime_ns {st.st_mtime_ns}]",
            ]
        }
    )
    with pytest.raises(NonRetryableActionError, match="outside the cleanup roots"):
        await agent.execute_action(approved(action, forged))
    with pytest.raises(NonRetryableActionError, match="never acts blind"):
        await agent.execute_action(action)
    assert disk.outside_intact() and all(p.exists() for p in disk.cleanable)


async def test_quarantine_moves_files_away_and_rollback_restores_them(disk: Disk, tmp_path: Path) -> None:
    quarantine = tmp_path / "quarantine"  # on the root filesystem, not on the tmpfs
    agent = await running_agent(config_for(disk, tmp_path, mode="quarantine", quarantine_dir=str(quarantine)))
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in disk.cleanable}
    action, plan = await planned_action(agent)
    assert action.risk_level == RiskLevel.LOW
    assert plan.summary.startswith("quarantine 6 file(s)")
    result = await agent.execute_action(approved(action, plan))
    assert result.success and not any(p.exists() for p in disk.cleanable)
    assert len([p for p in quarantine.rglob("*") if p.is_file()]) == len(disk.cleanable)
    assert usage(str(disk.mount)).percent < 80
    assert await agent.verify(action, result)

    restored = await agent.rollback(action)
    assert restored is not None and restored.success, restored
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in disk.cleanable} == before
    assert not [p for p in quarantine.rglob("*") if p.is_file()]
    again = await agent.rollback(action)  # idempotent
    assert again is not None and again.success and again.data["restored"] == len(disk.cleanable)


async def test_quarantine_on_the_full_filesystem_is_refused_by_the_plan(disk: Disk, tmp_path: Path) -> None:
    same_fs = str(disk.mount / "quarantine")
    agent = await running_agent(config_for(disk, tmp_path, mode="quarantine", quarantine_dir=same_fs))
    (event,) = await agent.detect()
    with pytest.raises(NonRetryableActionError, match="moving files there frees nothing"):
        await agent.plan(await decided(agent, event))


async def test_nothing_to_clean_fails_the_plan_with_the_reason(disk: Disk, tmp_path: Path) -> None:
    for p in disk.cleanable:
        p.unlink()
    write(disk.mount / "data" / "more.bin", 3 * MiB)
    agent = await running_agent(config_for(disk, tmp_path))
    (event,) = await agent.detect()
    assert event.data["candidates"] == 0 and await agent.process_event(event) is None
    alert = SystemEvent(type="alert", source="am", data={"labels": {"mountpoint": str(disk.mount)}})
    with pytest.raises(NonRetryableActionError, match="nothing to clean"):
        await agent.plan(await decided(agent, alert))


# ----- through the framework: detect, send, plan, approve, execute, verify ------------------------------


async def test_a_full_disk_is_detected_planned_approved_cleaned_and_verified(
    aiops: AiopsClient, worker, disk: Disk, tmp_path: Path
) -> None:
    config = config_for(disk, tmp_path, approval=team())
    await aiops.agents.start(config)
    events = await (await running_agent(config)).detect()  # what the scheduled detector will do
    assert len(await aiops.events.send_many(config.id, events)) == 1
    action_id = aiops.approvals.action_id(config.id, events[0].id)

    record = await wait_pending(aiops, action_id)  # deleting files: medium risk, a person decides
    assert record.plan is not None and len(record.plan.changes) == len(disk.cleanable)
    assert all(str(p) in "\n".join(record.plan.changes) for p in disk.cleanable)
    assert all(p.exists() for p in disk.cleanable)  # nothing happens before the approval

    await aiops.approvals.approve(action_id, "alice", "old logs, fine", plan_digest=record.plan_digest)
    done = await asyncio.wait_for(aiops.approvals.wait_for_action(action_id), 60)
    assert done.status == ActionStatus.VERIFIED, done.error
    assert done.result is not None and done.result.data["removed_files"] == len(disk.cleanable)
    assert not any(p.exists() for p in disk.cleanable) and disk.outside_intact()
    assert usage(str(disk.mount)).percent < 80
    assert await (await running_agent(config)).detect() == []  # the condition is gone

    await aiops.events.send_many(
        config.id, events
    )  # the same detection again: deduplicated, no second action
    status = await eventually(
        lambda: aiops.agents.status(config.id), lambda s: s.counters.events_deduplicated == 1
    )
    assert status.counters.actions_proposed == 1


@pytest.mark.slow
async def test_a_worker_killed_mid_cleanup_never_deletes_a_file_twice(
    aiops: AiopsClient, address: str, task_queue: str, tmp_path: Path, postgres: PostgresServer, disk: Disk
) -> None:
    config = config_for(
        disk,
        tmp_path,
        throttle_seconds=0.4,
        automation_level=AutomationLevel.FULL_AUTO,
        retry={
            "initial_interval_seconds": 0.1,
            "heartbeat_timeout_seconds": 1.0,
            "start_to_close_timeout_seconds": 60,
        },
    )
    events = await (await running_agent(config)).detect()
    action_id = aiops.approvals.action_id(config.id, events[0].id)
    journal = ActionLedger(config.settings["state_dir"]).lookup(action_id)
    modules = {"AIOPS_AGENT_MODULES": "tests.support.agents_for_tests,agents.builtin"}

    with worker_process(address, task_queue, "doomed", postgres.url, **modules) as doomed:
        await aiops.events.send_many(config.id, events, config=config)

        async def deleted_so_far() -> list[str]:
            return [s.data["path"] for s in journal.steps if s.name == "done"]

        first = await eventually(deleted_so_far, lambda done: len(done) >= 2, within=30, interval=0.05)
        os.kill(doomed.pid, signal.SIGKILL)
        doomed.wait()
    first = await deleted_so_far()
    assert 2 <= len(first) < len(disk.cleanable)
    # The application writes new files under the same names meanwhile: they are not this action's.
    recreated = [write(Path(p), 1000) for p in first]

    with worker_process(address, task_queue, "survivor", postgres.url, **modules):
        record = await asyncio.wait_for(aiops.approvals.wait_for_action(action_id), 60)
    assert record.status == ActionStatus.VERIFIED, record.error
    assert all(p.exists() for p in recreated)
    assert not any(p.exists() for p in disk.cleanable if str(p) not in first)
    done = [s.data["path"] for s in journal.steps if s.name == "done"]
    assert sorted(done) == sorted(str(p) for p in disk.cleanable)  # each file deleted exactly once
    attempts = [r for r in await aiops.audit.rows(action_id=action_id) if r.step == "execution_attempt"]
    assert len(attempts) == 2
