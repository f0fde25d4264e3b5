"""Applying exactly the reviewed dry run, once: each outcome of ``execute_reviewed``, on a real ledger.

The dry run and the apply are a small in-memory world (what is pending, how often it was applied);
the ledger is the real one on disk.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.ledger import ActionLedger
from agents.reviewed_change import DryRun, Reviewed, clip, execute_reviewed, text_digest
from agents.secret_file import secret_json_file
from aiops.contracts.errors import NonRetryableActionError
from aiops.contracts.models import ActionResult, ActionType, AgentAction

REVIEWED = Reviewed(
    label="tool plan",
    digest_key="plan_sha256",
    blind="no approved plan: refusing",
    moved_on="changed since approval (approved {approved}, current {current})",
    recovered="applied by an earlier attempt",
    nothing="nothing to do",
)


class World:
    """What the tool would change (``pending``, a text) and how often it applied something."""

    def __init__(self, pending: str) -> None:
        self.pending = pending
        self.applied: list[str] = []
        self.fail = False

    async def dry_run(self) -> DryRun:
        return DryRun(changed=bool(self.pending), digest=text_digest(self.pending), changes=[self.pending])

    async def apply(self, approved: str, current: DryRun) -> ActionResult:
        if self.fail:
            return ActionResult(success=False, message="the tool failed", error="boom")
        self.applied.append(self.pending)
        self.pending = ""
        return ActionResult(success=True, message="applied", data={"plan_sha256": approved})


def approved_action(text: str, action_id: str = "act-1") -> AgentAction:
    details = f"{REVIEWED.header(text_digest(text), '/srv/module')}\n{text}"
    return AgentAction(
        id=action_id,
        agent_id="a1",
        type=ActionType.CUSTOM,
        description="apply",
        parameters={"approved_plan": {"summary": "s", "details": details, "changes": []}},
    )


async def test_the_approved_change_is_applied_once_and_a_retry_gets_the_same_answer(tmp_path: Path) -> None:
    ledger, world = ActionLedger(tmp_path), World("v2")
    action = approved_action("v2")
    first = await execute_reviewed(ledger, action, REVIEWED, world.dry_run, world.apply)
    assert first.success and world.applied == ["v2"]
    world.pending = "v2"  # even if the world drifted back, the finished action does not run again
    assert await execute_reviewed(ledger, action, REVIEWED, world.dry_run, world.apply) == first
    assert world.applied == ["v2"]


async def test_without_an_approved_header_or_after_the_change_moved_on_it_refuses(tmp_path: Path) -> None:
    ledger, world = ActionLedger(tmp_path), World("v3")
    blind = approved_action("v2").model_copy(update={"parameters": {}})
    with pytest.raises(NonRetryableActionError, match="no approved plan: refusing"):
        await execute_reviewed(ledger, blind, REVIEWED, world.dry_run, world.apply)
    with pytest.raises(NonRetryableActionError, match=r"changed since approval \(approved [0-9a-f]{12}"):
        await execute_reviewed(ledger, approved_action("v2"), REVIEWED, world.dry_run, world.apply)
    assert world.applied == []


async def test_a_crash_after_the_intent_with_nothing_left_is_recovered_not_refused(tmp_path: Path) -> None:
    ledger, world = ActionLedger(tmp_path), World("")  # the crashed attempt's apply went through
    action = approved_action("v2")
    async with ledger.entry(action) as entry:
        entry.intend({"plan_sha256": text_digest("v2")})
    result = await execute_reviewed(ledger, action, REVIEWED, world.dry_run, world.apply)
    assert result.success and result.data == {"plan_sha256": text_digest("v2"), "recovered": True}
    assert result.message == "applied by an earlier attempt" and world.applied == []
    # Without a recorded intent, the same "nothing pending" is a change the approver never saw.
    with pytest.raises(NonRetryableActionError, match="changed since approval"):
        await execute_reviewed(ledger, approved_action("v2", "act-2"), REVIEWED, world.dry_run, world.apply)


async def test_a_failure_is_returned_not_recorded_so_a_later_attempt_may_apply(tmp_path: Path) -> None:
    ledger, world = ActionLedger(tmp_path), World("v2")
    action = approved_action("v2")
    world.fail = True
    failed = await execute_reviewed(ledger, action, REVIEWED, world.dry_run, world.apply)
    assert not failed.success and ledger.lookup(action).done_result() is None
    world.fail = False
    assert (await execute_reviewed(ledger, action, REVIEWED, world.dry_run, world.apply)).success
    assert world.applied == ["v2"]


async def test_an_approved_empty_dry_run_is_recorded_as_nothing_to_do(tmp_path: Path) -> None:
    ledger, world = ActionLedger(tmp_path), World("")
    action = approved_action("")
    result = await execute_reviewed(ledger, action, REVIEWED, world.dry_run, world.apply)
    assert result.message == "nothing to do" and world.applied == []
    assert ledger.lookup(action).done_result() == result


def test_clip_keeps_short_text_and_says_how_much_was_cut() -> None:
    assert clip("abc", 5) == "abc"
    assert clip("abcdefgh", 5) == "abcde\n... (3 more characters)"


def test_a_secret_file_is_private_and_gone_after_use(tmp_path: Path) -> None:
    with secret_json_file(tmp_path / "run", "vars-", ".json", {"token": "s3cret"}) as path:
        assert path.read_text() == '{"token": "s3cret"}'
        assert path.stat().st_mode & 0o777 == 0o600
    assert not path.exists()
