"""The action ledger: what a retried execution finds after a crash, on a real filesystem."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from agents.ledger import ActionLedger, ledger_key
from aiops.contracts.models import ActionResult, ActionType, AgentAction

CRASHING_ATTEMPT = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    from agents.ledger import ActionLedger

    async def main() -> None:
        async with ActionLedger(sys.argv[1]).entry(sys.argv[2]) as entry:
            entry.intend({"files": ["a", "b", "c"]})
            entry.step("deleted", {"path": "a"})
            entry.step("deleted", {"path": "b"})
            os.kill(os.getpid(), signal.SIGKILL)  # the worker dies before it can finish

    asyncio.run(main())
    """
)


def action(action_id: str) -> AgentAction:
    return AgentAction(id=action_id, agent_id="a1", type=ActionType.CUSTOM, description="test")


async def test_a_killed_attempt_leaves_its_intent_and_steps_and_the_retry_resumes(tmp_path: Path) -> None:
    ledger = ActionLedger(tmp_path / "state")
    died = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", CRASHING_ATTEMPT, str(ledger.folder), "action-1"],
        capture_output=True,
        text=True,
    )
    assert died.returncode == -signal.SIGKILL, died.stderr

    async with ledger.entry(action("action-1")) as entry:
        assert entry.done_result() is None
        assert entry.intent == {"files": ["a", "b", "c"]}
        done = [s.data["path"] for s in entry.steps if s.name == "deleted"]
        assert done == ["a", "b"]
        for path in ["a", "b", "c"]:
            if path not in done:
                entry.step("deleted", {"path": path})
        result = entry.finish(ActionResult(success=True, message="3 deleted", data={"n": 3}))

    async with ledger.entry(action("action-1")) as again:
        assert again.done_result() == result
        assert [s.data["path"] for s in again.steps] == ["a", "b", "c"]


async def test_an_exception_between_intent_and_finish_records_no_result(tmp_path: Path) -> None:
    ledger = ActionLedger(tmp_path)
    with pytest.raises(RuntimeError, match="boom"):
        async with ledger.entry("k") as entry:
            entry.intend({"pid_before": 41})
            raise RuntimeError("boom")
    entry = ledger.lookup("k")
    assert entry.intent == {"pid_before": 41} and entry.done_result() is None
    async with ledger.entry("k") as entry:  # the lock was released by the failed attempt
        entry.finish(ActionResult(success=False, error="gave up"))
    assert ledger.lookup("k").done_result() == ActionResult(success=False, error="gave up")


def test_a_torn_step_line_and_a_stray_temporary_file_are_ignored(tmp_path: Path) -> None:
    ledger = ActionLedger(tmp_path)
    with ledger.entry_sync("k") as entry:
        entry.intend({"x": 1})
        entry.step("one")
    steps_file = next(tmp_path.glob("*.steps.jsonl"))
    with steps_file.open("a") as f:
        f.write('\n{"name": "two", "da')  # what a crash in the middle of an append leaves
    (tmp_path / f".{entry.name}.json.deadbeef.tmp").write_text('{"key": "k", "result": {"succ')
    with ledger.entry_sync("k") as entry:
        assert [s.name for s in entry.steps] == ["one"]
        assert entry.intent == {"x": 1}
        entry.step("three")  # appending after a torn line starts a fresh line
        assert [s.name for s in entry.steps] == ["one", "three"]


async def test_concurrent_keys_do_not_mix(tmp_path: Path) -> None:
    ledger = ActionLedger(tmp_path)

    async def run(key: str) -> None:
        async with ledger.entry(key) as entry:
            entry.intend({"key": key})
            for i in range(20):
                entry.step("n", {"key": key, "i": i})
                await asyncio.sleep(0)
            entry.finish(ActionResult(success=True, message=key))

    keys = [f"action-{i}" for i in range(8)]
    await asyncio.gather(*(run(k) for k in keys))
    for key in keys:
        entry = ledger.lookup(key)
        assert entry.intent == {"key": key}
        assert [(s.data["key"], s.data["i"]) for s in entry.steps] == [(key, i) for i in range(20)]
        assert entry.done_result() == ActionResult(success=True, message=key)


def test_one_key_is_held_by_one_attempt_at_a_time(tmp_path: Path) -> None:
    ledger = ActionLedger(tmp_path)
    trying = threading.Event()

    def second_attempt() -> None:
        trying.set()
        with ledger.entry_sync("same") as entry:
            entry.step("second")

    with ledger.entry_sync("same") as entry:
        other = threading.Thread(target=second_attempt)
        other.start()
        trying.wait()
        entry.step("first")
        entry.step("first, again")
    other.join()
    assert [s.name for s in ledger.lookup("same").steps] == ["first", "first, again", "second"]


@pytest.mark.parametrize(
    "key",
    ["../../etc/passwd", "/absolute/path", "a/b\\c", "nul\0inside", "x" * 10_000, "ünïcødé ☃", ".", ""],
)
def test_hostile_keys_stay_inside_the_state_directory(tmp_path: Path, key: str) -> None:
    state = tmp_path / "state"
    ledger = ActionLedger(state)
    with ledger.entry_sync(key) as entry:
        entry.intend({"k": key})
        entry.step("s", {"k": key})
        entry.finish(ActionResult(success=True, message=key))
    assert {p.parent for p in tmp_path.rglob("*") if p.is_file()} == {state}
    assert all(len(p.name) < 100 for p in state.iterdir())
    entry = ledger.lookup(key)
    assert entry.record().key == key and entry.done_result() == ActionResult(success=True, message=key)
    assert ledger.lookup(key + "!").done_result() is None


def test_the_key_is_the_idempotency_key_the_framework_sets() -> None:
    proposed = action("action-a1:ev-1")
    assert ledger_key(proposed) == "action-a1:ev-1"
    assert ledger_key(proposed.model_copy(update={"idempotency_key": "other"})) == "other"
