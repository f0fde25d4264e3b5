"""Signed approvals against the real dev server and PostgreSQL: the refusal matrix.

Every attempt that does not prove an allowed decision (a name without a token, a
token for another action or plan, expired, replayed, signed by an untrusted key,
by the requester, by someone without the role) is refused through each channel
(signal, as the Web UI and the ``temporal`` CLI send it, and the ``decide``
update), recorded on the action, written to the audit log by the workflow
itself, and leaves the action pending. A correct 2-of-2 with two keys runs once.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError

from aiops.client import AiopsClient, AiopsError
from aiops.contracts import action as action_contract
from aiops.contracts.action import ActionMessages, ActionStatus, ApprovalRequest, DecisionRequest
from aiops.keys import KeyFile, generate
from tests.conftest import TEMPORAL_BIN
from tests.helpers import agent_config, eventually, start_pending_action, team
from tests.support.agents_for_tests import LEDGER
from workflows.action.details import details_markdown
from workflows.approval_token import generate_private_key, private_key_pem, sign


def key(name: str) -> KeyFile:
    return KeyFile(approver=name, private_key=private_key_pem(generate_private_key()).decode())


ALICE, BOB, DAVE, OSCAR = key("alice"), key("bob"), key("dave"), key("oscar")
MALLORY = key("alice")  # claims to be alice, with a key nobody trusts


def signed_team():
    settings = team({k.approver: k.public_key() for k in (ALICE, BOB, OSCAR)})
    dave = settings.approvers[0].model_copy(update={"name": "dave", "public_key": DAVE.public_key()})
    return settings.model_copy(update={"approvers": [*settings.approvers, dave]})


async def pending(aiops: AiopsClient, risk: str = "high"):
    config = agent_config("scripted", approval=signed_team())
    _, action_id, record = await start_pending_action(aiops, config, risk, requested_by="dave")
    return config, action_id, record


def token(k: KeyFile, action_id: str, digest: str | None, verb: str = "approve", **kw) -> str:
    return sign(k.key(), k.approver, action_id, verb, digest, kw.pop("now", datetime.now(UTC)), **kw)  # type: ignore[arg-type]


Attempt = Callable[[str, str | None], ApprovalRequest]

# (why it must be refused, the request, the words the refusal reason must hold)
ATTEMPTS: list[tuple[str, Attempt, str]] = [
    ("a name without a token", lambda a, d: ApprovalRequest(approver="alice"), "is not signed"),
    (
        "a token for another action",
        lambda a, d: ApprovalRequest(approver="alice", credential=token(ALICE, a + "x", d)),
        "not for this action",
    ),
    (
        "a token for another plan",
        lambda a, d: ApprovalRequest(approver="alice", credential=token(ALICE, a, "0" * 64)),
        "the current plan is",
    ),
    (
        "an expired token",
        lambda a, d: ApprovalRequest(
            approver="alice", credential=token(ALICE, a, d, now=datetime.now(UTC) - timedelta(hours=2))
        ),
        "expired",
    ),
    (
        "a token signed by an untrusted key",
        lambda a, d: ApprovalRequest(approver="alice", credential=token(MALLORY, a, d)),
        "forged or altered",
    ),
    (
        "the requester approving their own action",
        lambda a, d: ApprovalRequest(approver="dave", credential=token(DAVE, a, d)),
        "requested this action",
    ),
    (
        "an approver without the role",
        lambda a, d: ApprovalRequest(approver="oscar", credential=token(OSCAR, a, d)),
        "may not approve high risk",
    ),
    (
        "a token naming someone else",
        lambda a, d: ApprovalRequest(approver="bob", credential=token(ALICE, a, d)),
        "signed by alice",
    ),
    (
        "garbage as a token",
        lambda a, d: ApprovalRequest(approver="alice", credential="x" * 8000),
        "not a signed",
    ),
]


@pytest.mark.parametrize("channel", ["signal", "update"])
async def test_every_unproven_decision_is_refused_audited_and_leaves_the_action_pending(
    aiops: AiopsClient, worker, channel: str
) -> None:
    _, action_id, record = await pending(aiops)
    handle = aiops.approvals.action_handle(action_id)
    for n, (why, attempt, says) in enumerate(ATTEMPTS):
        request = attempt(action_id, record.plan_digest)
        if channel == "signal":
            await handle.signal(ActionMessages.approve, request.model_dump(exclude_none=True))
        else:
            with pytest.raises(WorkflowUpdateFailedError) as refused:
                await handle.execute_update(
                    ActionMessages.decide, DecisionRequest(approve=True, **request.model_dump())
                )
            cause = refused.value.cause
            assert isinstance(cause, ApplicationError) and says in cause.message, f"{why}: {cause}"
        seen = await eventually(lambda: aiops.approvals.action(action_id), lambda r, n=n: r.refused_total > n)
        assert says in seen.refused[-1].reason, f"{why}: {seen.refused[-1].reason}"
        assert seen.refused[-1].channel == channel
    record = await aiops.approvals.action(action_id)
    assert record.status == ActionStatus.PENDING_APPROVAL and record.approvals == []
    assert record.refused_total == len(ATTEMPTS)
    rows = await eventually(
        lambda: aiops.audit.rows(action_id=action_id),
        lambda rs: sum(r.step == "approval_refused" for r in rs) == len(ATTEMPTS),
    )
    reasons = [r.detail["reason"] for r in rows if r.step == "approval_refused"]
    for (why, _, says), reason in zip(ATTEMPTS, reasons, strict=True):
        assert says in reason, f"{why}: audited as {reason}"
    assert all(r.detail["channel"] == channel for r in rows if r.step == "approval_refused")
    assert LEDGER["executed"] == []


async def test_a_replayed_token_is_refused_after_its_use(aiops: AiopsClient, worker) -> None:
    _, action_id, record = await pending(aiops, "critical")  # two approvals needed: it stays pending
    request = ApprovalRequest(approver="alice", credential=token(ALICE, action_id, record.plan_digest))
    handle = aiops.approvals.action_handle(action_id)
    await handle.signal(ActionMessages.approve, request.model_dump(exclude_none=True))
    await eventually(lambda: aiops.approvals.action(action_id), lambda r: len(r.approvals) == 1)
    await handle.signal(ActionMessages.approve, request.model_dump(exclude_none=True))
    refused = await eventually(lambda: aiops.approvals.action(action_id), lambda r: r.refused_total == 1)
    # alice's second approval is refused either way; the token may be used once only
    assert "already approved" in refused.refused[0].reason or "used already" in refused.refused[0].reason
    assert refused.status == ActionStatus.PENDING_APPROVAL
    assert refused.approvals[0].authenticated and refused.approvals[0].token_id


async def test_two_signed_approvals_run_a_critical_action_once(aiops: AiopsClient, worker) -> None:
    _, action_id, _ = await pending(aiops, "critical")
    first = await aiops.approvals.approve(action_id, comment="checked the plan", key=ALICE)
    assert first.status == ActionStatus.PENDING_APPROVAL and first.approvals[0].authenticated
    await aiops.approvals.approve(action_id, comment="me too", key=BOB)
    done = await asyncio.wait_for(aiops.approvals.wait_for_action(action_id), 60)
    assert done.status == ActionStatus.VERIFIED
    assert [(a.approver, a.authenticated) for a in done.approvals] == [("alice", True), ("bob", True)]
    assert LEDGER["executed"] == [action_id]
    rows = await aiops.audit.rows(action_id=action_id)
    approvals = [r for r in rows if r.step == "approval"]
    assert [(r.actor, r.detail["authenticated"]) for r in approvals] == [("alice", True), ("bob", True)]


async def test_a_pasted_token_approves_through_the_temporal_cli(
    aiops: AiopsClient, worker, address: str, tmp_path: Path
) -> None:
    """The `aiops approvals token` JSON, sent by the raw `temporal` CLI (as pasted into the Web UI)."""
    _, action_id, _ = await pending(aiops)
    key_file = tmp_path / "alice.json"
    key_file.write_text(ALICE.model_dump_json())
    printed = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "aiops.cli", "approvals", "token", action_id, "--key", str(key_file)],
        capture_output=True, text=True, timeout=60, env={**os.environ, "TEMPORAL_ADDRESS": address},
    )  # fmt: skip
    assert printed.returncode == 0, printed.stderr
    body = printed.stdout.strip()
    assert json.loads(body)["approver"] == "alice" and "temporal workflow signal" in printed.stderr
    sent = await asyncio.to_thread(
        subprocess.run,
        [TEMPORAL_BIN, "workflow", "signal", "--address", address, "--workflow-id", action_id,
         "--name", action_contract.APPROVE, "--input", body],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert sent.returncode == 0, sent.stderr
    done = await asyncio.wait_for(aiops.approvals.wait_for_action(action_id), 60)
    assert done.status == ActionStatus.VERIFIED
    assert [(a.approver, a.channel, a.authenticated) for a in done.approvals] == [("alice", "signal", True)]


async def test_a_key_file_is_made_private_and_names_its_approver(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "alice.json"
    made = generate("alice", path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert made.public_key().startswith("ed25519:")
    with pytest.raises(AiopsError, match="exists"):
        generate("alice", path)


async def test_dev_mode_approvals_say_they_are_unauthenticated_everywhere(aiops: AiopsClient, worker) -> None:
    config = agent_config("scripted", approval=team())  # allow_unsigned: dev mode
    _, action_id, _ = await start_pending_action(aiops, config, "high")
    done = await aiops.approvals.approve(action_id, "alice", "by name")
    assert done.approvals[0].authenticated is False
    rows = await eventually(
        lambda: aiops.audit.rows(action_id=action_id), lambda rs: any(r.step == "approval" for r in rs)
    )
    assert next(r for r in rows if r.step == "approval").detail["authenticated"] is False
    finished = await asyncio.wait_for(aiops.approvals.wait_for_action(action_id), 60)
    assert finished.decision is not None
    details = details_markdown(finished, finished.decision, config.approval)  # the Web UI's current details
    assert "**Approved by** alice (UNAUTHENTICATED, by name only" in details
