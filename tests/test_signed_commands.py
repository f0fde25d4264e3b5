"""Signed agent commands against the real dev server and PostgreSQL: the refusal matrix.

Pause, resume, stop, reset-circuit-breaker, upgrade and reconfigure change an agent only with a token
the agent verifies (a personal key or a trusted identity provider) from someone whose role
allows it. Every other attempt, by signal (as the Web UI and the ``temporal`` CLI send it) or by
the ``command`` update, is refused, audited by the agent itself, and changes nothing. Hold,
release and abort, which only an agent sends its actions, are confirmed with the agent, so a
forged one changes nothing either.
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
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from temporalio.client import WorkflowExecutionStatus, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError

from aiops.client import AiopsClient, CommandRefusedError, ConfigRefusedError
from aiops.contracts import action as action_contract
from aiops.contracts.action import ActionMessages, ActionOutcome, ActionStatus, HoldRequest
from aiops.contracts.agent import AgentCommand, AgentState, CommandRequest, StopRequest, agent_workflow_id
from aiops.contracts.config import AgentVerb, ApprovalSettings
from aiops.keys import KeyFile
from tests.conftest import TEMPORAL_BIN
from tests.helpers import agent_config, event, eventually, start_pending_action, team
from tests.support import identity_provider as idp
from tests.support.agents_for_tests import LEDGER
from workflows.agent.command_gate import stop_digest
from workflows.agent.workflow import AgentWorkflow
from workflows.approval_token import generate_private_key, private_key_pem, sign


def key(name: str) -> KeyFile:
    return KeyFile(approver=name, private_key=private_key_pem(generate_private_key()).decode())


ALICE, BOB, OSCAR = key("alice"), key("bob"), key("oscar")  # sre; sre+admin; operator
MALLORY = key("bob")  # claims to be bob, with a key nobody trusts


def signed_team() -> ApprovalSettings:
    return team({k.approver: k.public_key() for k in (ALICE, BOB, OSCAR)})


def token(k: KeyFile, agent_id: str, verb: str, digest: str | None = None, **kw: Any) -> str:
    now = kw.pop("now", datetime.now(UTC))
    return sign(k.key(), k.approver, agent_workflow_id(agent_id), verb, digest, now, **kw)  # type: ignore[arg-type]


async def running(aiops: AiopsClient, approval: ApprovalSettings | None = None, agent_type: str = "scripted"):
    config = agent_config(agent_type, approval=approval or signed_team())
    await aiops.agents.start(config)
    await eventually(lambda: aiops.agents.status(config.id), lambda s: s.state == AgentState.RUNNING)
    return config


Attempt = Callable[[str], StopRequest]
DRAIN = stop_digest(True)

# (why it must be refused, the stop request, the words the refusal reason must hold)
ATTEMPTS: list[tuple[str, Attempt, str]] = [
    ("a name without a token", lambda a: StopRequest(actor="bob"), "is not signed"),
    ("nobody, without a token", lambda a: StopRequest(), "is not signed"),
    (
        "a token for another agent",
        lambda a: StopRequest(actor="bob", credential=token(BOB, a + "x", "stop", DRAIN)),
        "not for this agent",
    ),
    (
        "a token to pause, sent to stop",
        lambda a: StopRequest(actor="bob", credential=token(BOB, a, "pause")),
        "is to pause, not to stop",
    ),
    (
        "a token to drain, sent to stop at once",
        lambda a: StopRequest(actor="bob", drain=False, credential=token(BOB, a, "stop", DRAIN)),
        "different stop",
    ),
    (
        "an expired token",
        lambda a: StopRequest(
            actor="bob", credential=token(BOB, a, "stop", DRAIN, now=datetime.now(UTC) - timedelta(hours=2))
        ),
        "expired",
    ),
    (
        "a token signed by an untrusted key",
        lambda a: StopRequest(actor="bob", credential=token(MALLORY, a, "stop", DRAIN)),
        "forged or altered",
    ),
    (
        "an operator stopping without the role",
        lambda a: StopRequest(actor="oscar", credential=token(OSCAR, a, "stop", DRAIN)),
        "oscar may not stop",
    ),
    (
        "a token naming someone else",
        lambda a: StopRequest(actor="alice", credential=token(BOB, a, "stop", DRAIN)),
        "signed by bob",
    ),
    ("garbage as a token", lambda a: StopRequest(actor="bob", credential="x" * 8000), "not a signed"),
]


def refusals(rows: list[Any]) -> list[Any]:
    return [r for r in rows if r.step == "agent_lifecycle" and r.detail.get("state") == "command_refused"]


@pytest.mark.parametrize("channel", ["signal", "update"])
async def test_every_unproven_stop_is_refused_audited_and_the_agent_keeps_running(
    aiops: AiopsClient, worker, channel: str
) -> None:
    config = await running(aiops)
    handle = aiops.agents.handle(config.id)
    for why, attempt, says in ATTEMPTS:
        request = attempt(config.id)
        if channel == "signal":
            await handle.signal(AgentWorkflow.stop, request)
        else:
            command = CommandRequest(verb=AgentVerb.STOP, **request.model_dump())
            with pytest.raises(WorkflowUpdateFailedError) as refused:
                await handle.execute_update(AgentWorkflow.command, command)
            cause = refused.value.cause
            assert isinstance(cause, ApplicationError) and says in cause.message, f"{why}: {cause}"
            assert cause.details == ({"audited": True},)
    rows = await eventually(
        lambda: aiops.audit.rows(agent_id=config.id), lambda rs: len(refusals(rs)) == len(ATTEMPTS)
    )
    for (why, _, says), row in zip(ATTEMPTS, refusals(rows), strict=True):
        assert says in row.detail["reason"], f"{why}: audited as {row.detail['reason']}"
        assert row.detail["channel"] == channel and row.detail["verb"] == "stop"
    status = await aiops.agents.status(config.id)
    assert status.state == AgentState.RUNNING
    assert any("refused stop" in p.message for p in status.recent_errors)
    # And the one that is proven, by someone with the role, stops it (once).
    applied = await aiops.agents.stop(config.id, reason="maintenance", key=BOB)
    assert (applied.actor, applied.authenticated, applied.changed) == ("bob", True, True)
    await asyncio.wait_for(handle.result(), 60)
    assert (await aiops.agents.status(config.id)).state == AgentState.STOPPED
    rows = await eventually(
        lambda: aiops.audit.rows(agent_id=config.id),
        lambda rs: any(r.detail.get("state") == "stopped" for r in rs),
    )
    asked = [r for r in rows if r.detail.get("state") == "stop_requested"]
    assert [(r.actor, r.detail["authenticated"], r.detail["drain"]) for r in asked] == [("bob", True, True)]


async def test_roles_decide_who_pauses_resumes_and_resets_and_a_token_is_used_once(
    aiops: AiopsClient, worker
) -> None:
    config = await running(aiops)
    paused = await aiops.agents.pause(config.id, key=OSCAR)  # an operator may pause
    assert paused.authenticated and paused.changed
    assert (await aiops.agents.status(config.id)).state == AgentState.PAUSED
    with pytest.raises(CommandRefusedError, match="oscar may not resume"):
        await aiops.agents.resume(config.id, key=OSCAR)  # but not resume
    with pytest.raises(CommandRefusedError, match="is not signed"):
        await aiops.agents.resume(config.id, actor="alice")
    assert (await aiops.agents.status(config.id)).state == AgentState.PAUSED
    resume = aiops.agents.command_request(config.id, AgentVerb.RESUME, key=ALICE)
    handle = aiops.agents.handle(config.id)
    applied = await handle.execute_update(AgentWorkflow.command, resume)
    assert applied.changed and (await aiops.agents.status(config.id)).state == AgentState.RUNNING
    await aiops.agents.pause(config.id, key=BOB)
    with pytest.raises(WorkflowUpdateFailedError) as replayed:  # the same resume token, again
        await handle.execute_update(AgentWorkflow.command, resume)
    assert "used already" in str(replayed.value.cause)
    assert (await aiops.agents.status(config.id)).state == AgentState.PAUSED
    with pytest.raises(CommandRefusedError, match="oscar may not reset-circuit-breaker"):
        await aiops.agents.reset_circuit_breaker(config.id, key=OSCAR)
    reset = await aiops.agents.reset_circuit_breaker(config.id, key=ALICE)
    assert reset.authenticated and not reset.changed  # it was not open
    rows = await eventually(
        lambda: aiops.audit.rows(agent_id=config.id),
        lambda rs: len(refusals(rs)) == 4 and sum(r.detail.get("state") == "paused" for r in rs) == 2,
    )
    assert [r.detail["verb"] for r in refusals(rows)] == [
        "resume",
        "resume",
        "resume",
        "reset-circuit-breaker",
    ]
    lifecycle = [(r.detail["state"], r.actor) for r in rows if r.detail.get("state") in ("paused", "resumed")]
    assert lifecycle == [("paused", "oscar"), ("resumed", "alice"), ("paused", "bob")]


async def test_forged_hold_release_and_abort_change_no_action(aiops: AiopsClient, worker) -> None:
    """Only an agent tells its actions to hold, go ahead or abort; the action asks the agent."""
    config = agent_config("scripted", approval=signed_team())
    _, action_id, record = await start_pending_action(aiops, config, "high", requested_by="dave")
    action = aiops.approvals.action_handle(action_id)
    await action.signal(ActionMessages.abort, action_contract.AbortRequest(reason="forged"))
    await action.signal(ActionMessages.hold, HoldRequest(epoch=99))
    rows = await eventually(
        lambda: aiops.audit.rows(action_id=action_id),
        lambda rs: sum(r.step == "command_refused" for r in rs) == 2,
    )
    reasons = [r.detail["reason"] for r in rows if r.step == "command_refused"]
    assert "is not stopping without draining" in reasons[0] and "is not paused" in reasons[1]
    current = await aiops.approvals.action(action_id)
    assert current.status == ActionStatus.PENDING_APPROVAL and not current.held
    # Paused for real: an approved action is held, and a forged release does not let it run.
    await aiops.agents.pause(config.id, key=OSCAR)
    await aiops.approvals.approve(action_id, key=ALICE)
    held = await eventually(
        lambda: aiops.approvals.action(action_id), lambda r: r.status == ActionStatus.APPROVED
    )
    assert held.held
    await action.signal(ActionMessages.release, HoldRequest(epoch=held.hold_epoch + 5))
    await eventually(
        lambda: aiops.audit.rows(action_id=action_id),
        lambda rs: sum(r.step == "command_refused" for r in rs) == 3,
    )
    still = await aiops.approvals.action(action_id)
    assert still.held and still.status == ActionStatus.APPROVED and LEDGER["executed"] == []
    await aiops.agents.resume(config.id, key=BOB)  # the real release
    done = await asyncio.wait_for(aiops.approvals.wait_for_action(action_id), 60)
    assert done.status == ActionStatus.VERIFIED and LEDGER["executed"] == [action_id]
    assert record.plan_digest == done.plan_digest


async def test_a_stop_without_draining_aborts_waiting_actions_through_the_agent(
    aiops: AiopsClient, worker
) -> None:
    config = agent_config("scripted", approval=signed_team())
    _, action_id, _ = await start_pending_action(aiops, config, "high", requested_by="dave")
    await aiops.agents.stop(config.id, reason="decommissioned", drain=False, key=ALICE)
    done = await asyncio.wait_for(aiops.approvals.wait_for_action(action_id), 60)
    assert done.status == ActionStatus.REJECTED and "decommissioned" in (done.error or "")
    assert LEDGER["executed"] == []


async def test_a_config_change_needs_the_reconfigure_role_and_is_bound_to_its_content(
    aiops: AiopsClient, worker
) -> None:
    config = await running(aiops)
    raised = config.model_copy(update={"thresholds": {"disk": 0.9}})
    with pytest.raises(ConfigRefusedError, match="is not signed"):
        await aiops.config.apply(raised, author="bob")
    with pytest.raises(ConfigRefusedError, match="alice may not reconfigure"):
        await aiops.config.apply(raised, key=ALICE)  # sre, not admin
    # A token bob signed for another change does not carry this one.
    handle = aiops.agents.handle(config.id)
    other = config.model_copy(update={"thresholds": {"disk": 0.1}})
    from aiops.contracts.agent import ReconfigureRequest
    from workflows.agent.command_gate import reconfigure_digest

    signed_other = ReconfigureRequest(config=other, actor="bob", author="bob")
    forged = ReconfigureRequest(
        config=raised,
        actor="bob",
        author="bob",
        credential=token(BOB, config.id, "reconfigure", reconfigure_digest(signed_other)),
    )
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update(
            AgentWorkflow.reconfigure, forged.model_dump(mode="json", exclude_none=True)
        )
    assert "different reconfigure" in str(refused.value.cause)
    assert (await aiops.agents.status(config.id)).config_version == 1
    applied = await aiops.config.apply(raised, comment="raise the limit", key=BOB)
    assert applied.changed and applied.version == 2
    back = await aiops.config.rollback(config.id, 1, key=BOB)
    assert back.changed and back.version == 3
    rows = await eventually(
        lambda: aiops.audit.rows(agent_id=config.id),
        lambda rs: len(refusals(rs)) == 3 and sum(r.step == "config_changed" for r in rs) == 2,
    )
    assert [r.detail["verb"] for r in refusals(rows)] == ["reconfigure"] * 3
    changed = [r for r in rows if r.step == "config_changed"]
    assert [r.actor for r in changed] == ["bob", "bob"]


# ----- a trusted identity provider -----------------------------------------------------------

OTHER_KEY = ec.generate_private_key(ec.SECP256R1())


def idp_token(subject: str, groups: list[str], aud: str, verb: str, digest: str | None, **kw: Any) -> str:
    return idp.token(subject, groups, aud, verb, digest, **kw)


def idp_settings() -> ApprovalSettings:
    return ApprovalSettings(issuers=[idp.trusted_issuer()])


async def test_an_identity_providers_tokens_approve_and_command_by_group(aiops: AiopsClient, worker) -> None:
    config = agent_config("scripted", approval=idp_settings())
    _, action_id, record = await start_pending_action(aiops, config, "high", requested_by="dave")
    action = aiops.approvals.action_handle(action_id)
    attempts = [  # (token, the words its refusal holds)
        (idp_token("erin", ["ops"], action_id, "approve", record.plan_digest), "erin may not approve high"),
        (idp_token("erin", ["sre-team"], action_id, "approve", record.plan_digest, key=OTHER_KEY), "forged"),
        (
            idp_token("erin", ["sre-team"], action_id, "approve", record.plan_digest, issuer="https://evil"),
            "not trust",
        ),
    ]
    for credential, _ in attempts:
        request = action_contract.ApprovalRequest(approver="erin", credential=credential)
        await action.signal(ActionMessages.approve, request.model_dump(exclude_none=True))
    seen = await eventually(
        lambda: aiops.approvals.action(action_id), lambda r: r.refused_total == len(attempts)
    )
    for (_, says), refusal in zip(attempts, seen.refused, strict=True):
        assert says in refusal.reason
    good = idp_token("erin", ["sre-team"], action_id, "approve", record.plan_digest)
    await action.signal(
        ActionMessages.approve, action_contract.ApprovalRequest(approver="erin", credential=good).model_dump()
    )
    done = await asyncio.wait_for(aiops.approvals.wait_for_action(action_id), 60)
    assert done.status == ActionStatus.VERIFIED
    assert [(a.approver, a.authenticated, a.issuer) for a in done.approvals] == [("erin", True, idp.ISSUER)]
    # The same provider's groups decide agent commands: ops may pause, not stop.
    handle = aiops.agents.handle(config.id)
    pause = CommandRequest(
        verb=AgentVerb.PAUSE, credential=idp_token("olga", ["ops"], handle.id, "pause", None)
    )
    applied = await handle.execute_update(AgentWorkflow.command, pause)
    assert (applied.actor, applied.authenticated) == ("olga", True)
    stop = CommandRequest(
        verb=AgentVerb.STOP, credential=idp_token("olga", ["ops"], handle.id, "stop", stop_digest(True))
    )
    with pytest.raises(WorkflowUpdateFailedError, match="Workflow update failed") as refused:
        await handle.execute_update(AgentWorkflow.command, stop)
    assert "olga may not stop" in str(refused.value.cause)


# ----- the CLI and the raw temporal CLI ------------------------------------------------------


def cli(address: str, task_queue: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aiops.cli", *args],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "TEMPORAL_ADDRESS": address, "AIOPS_TASK_QUEUE": task_queue, "AIOPS_USER": ""},
    )  # fmt: skip


async def test_the_cli_signs_commands_and_its_token_works_pasted_into_the_temporal_cli(
    aiops: AiopsClient, worker, address: str, tmp_path: Path, task_queue: str
) -> None:
    config = await running(aiops)
    bob_file, oscar_file = tmp_path / "bob.json", tmp_path / "oscar.json"
    bob_file.write_text(BOB.model_dump_json())
    oscar_file.write_text(OSCAR.model_dump_json())
    unsigned = await asyncio.to_thread(
        cli, address, task_queue, "agents", "pause", config.id, "--as", "oscar"
    )
    assert unsigned.returncode == 1 and "is not signed" in unsigned.stderr, unsigned.stderr
    paused = await asyncio.to_thread(
        cli, address, task_queue, "agents", "pause", config.id, "--key", str(oscar_file)
    )
    assert paused.returncode == 0 and "pause done (as oscar)" in paused.stdout, paused.stderr
    refused = await asyncio.to_thread(
        cli, address, task_queue, "agents", "stop", config.id, "--key", str(oscar_file)
    )
    assert refused.returncode == 1 and "oscar may not stop" in refused.stderr
    printed = await asyncio.to_thread(
        cli, address, task_queue, "agents", "token", config.id, "stop", "--key", str(bob_file), "-r", "pasted"
    )
    assert printed.returncode == 0, printed.stderr
    body = printed.stdout.strip()
    assert json.loads(body)["actor"] == "bob" and "temporal workflow signal" in printed.stderr
    sent = await asyncio.to_thread(
        subprocess.run,
        [TEMPORAL_BIN, "workflow", "signal", "--address", address,
         "--workflow-id", agent_workflow_id(config.id), "--name", "stop", "--input", body],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert sent.returncode == 0, sent.stderr
    await asyncio.wait_for(aiops.agents.handle(config.id).result(), 60)
    assert (await aiops.agents.status(config.id)).state == AgentState.STOPPED


async def test_a_forged_action_finished_counts_nothing(aiops: AiopsClient, worker) -> None:
    """Only the action's own record says how it ended: a forged success would reset the circuit
    breaker's count of failures in a row, so the agent asks the action before counting."""
    config = agent_config("scripted", approval=signed_team())
    _, action_id, _ = await start_pending_action(aiops, config, "high", requested_by="dave")
    forged = ActionOutcome(action_id=action_id, event_id="x", status=ActionStatus.VERIFIED, success=True)
    await aiops.agents.handle(config.id).signal(AgentWorkflow.action_finished, forged)
    rows = await eventually(lambda: aiops.audit.rows(agent_id=config.id), lambda rs: len(refusals(rs)) == 1)
    assert "it says it is pending_approval" in refusals(rows)[0].detail["reason"]
    status = await aiops.agents.status(config.id)
    assert status.counters.actions_succeeded == 0 and action_id in {
        p.action_id for p in status.pending_actions
    }
    await aiops.approvals.approve(action_id, key=ALICE)
    await asyncio.wait_for(aiops.approvals.wait_for_action(action_id), 60)
    counted = await eventually(
        lambda: aiops.agents.status(config.id), lambda s: s.counters.actions_succeeded == 1
    )
    assert counted.pending_actions == []


async def test_an_upgrade_continues_the_agent_as_new_with_its_state_and_queue(
    aiops: AiopsClient, worker, address: str, tmp_path: Path, task_queue: str
) -> None:
    """``upgrade`` (sre or admin) moves an agent to the code its workers run now: it continues as
    new at the next safe point, paused as it was, its queue carried; refusals are audited."""
    config = await running(aiops)
    await aiops.agents.pause(config.id, key=OSCAR)  # the events below wait in the queue
    await aiops.events.send_many(config.id, [event("alert", risk="low", id=f"up-{n}") for n in range(3)])
    handle = aiops.agents.handle(config.id)
    first_run = (await handle.describe()).run_id
    with pytest.raises(CommandRefusedError, match="oscar may not upgrade"):
        await aiops.agents.command(config.id, AgentVerb.UPGRADE, key=OSCAR)
    await handle.signal(AgentWorkflow.upgrade, AgentCommand(actor="bob"))  # unsigned: refused
    await eventually(
        lambda: aiops.audit.rows(agent_id=config.id),
        lambda rs: [r.detail["verb"] for r in refusals(rs)] == ["upgrade", "upgrade"],
    )
    assert (await aiops.agents.status(config.id)).run_number == 1

    applied = await aiops.agents.command(config.id, AgentVerb.UPGRADE, key=ALICE)
    assert applied.changed and applied.authenticated and applied.actor == "alice"
    status = await eventually(lambda: aiops.agents.status(config.id), lambda s: s.run_number == 2)
    assert status.state == AgentState.PAUSED and status.queue_length == 3
    before = await aiops.client.get_workflow_handle(agent_workflow_id(config.id), run_id=first_run).describe()
    assert before.status == WorkflowExecutionStatus.CONTINUED_AS_NEW

    # The CLI, for every running agent on the task queue (this test's only one).
    await eventually(aiops.agents.ids, lambda ids: config.id in ids)
    bob_file = tmp_path / "bob.json"
    bob_file.write_text(BOB.model_dump_json())
    upgraded = await asyncio.to_thread(
        cli, address, task_queue, "agents", "upgrade", "--all", "--key", str(bob_file)
    )
    assert upgraded.returncode == 0 and f"upgrade: 1 agent(s) as bob: {config.id}" in upgraded.stdout, (
        upgraded.stdout + upgraded.stderr
    )
    status = await eventually(lambda: aiops.agents.status(config.id), lambda s: s.run_number == 3)
    assert status.state == AgentState.PAUSED and status.queue_length == 3

    await aiops.agents.resume(config.id, key=BOB)
    await eventually(lambda: aiops.agents.status(config.id), lambda s: s.counters.events_processed == 3)
    rows = await aiops.audit.rows(agent_id=config.id)
    asked = [r.actor for r in rows if r.detail.get("state") == "upgrade_requested"]
    assert asked == ["alice", "bob"]
