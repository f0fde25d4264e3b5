"""Durable execution: retries, non-retryable errors, verify and rollback, crashes, redelivery,
and the limits of safe autonomy."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from pathlib import Path

import pytest

from aiops.client import AiopsClient
from aiops.contracts.action import ActionRecord, ActionStatus
from tests.helpers import agent_config, event, eventually, team
from tests.support.agents_for_tests import LEDGER
from tests.support.postgres_server import PostgresServer
from tests.support.processes import worker_process

FAST_RETRY = {"initial_interval_seconds": 0.1, "maximum_interval_seconds": 0.2, "maximum_attempts": 5}


async def run_one(aiops: AiopsClient, config, **data) -> ActionRecord:
    await aiops.agents.start(config)
    e = event("alert", risk=data.pop("risk", "low"), **data)
    await aiops.events.send(config.id, e)
    return await asyncio.wait_for(
        aiops.approvals.wait_for_action(aiops.approvals.action_id(config.id, e.id)), 60
    )


async def test_transient_failures_are_retried_until_success(aiops: AiopsClient, worker) -> None:
    record = await run_one(aiops, agent_config("scripted", retry=FAST_RETRY), fail_times=2)
    assert record.status == ActionStatus.VERIFIED
    assert len(LEDGER["attempt"]) == 3
    assert LEDGER["executed"] == [record.action.id]


async def test_retries_stop_at_the_configured_maximum(aiops: AiopsClient, worker) -> None:
    config = agent_config("scripted", retry={**FAST_RETRY, "maximum_attempts": 2})
    record = await run_one(aiops, config, fail_times=5)
    assert record.status == ActionStatus.FAILED
    assert "transient failure" in (record.error or "")
    assert len(LEDGER["attempt"]) == 2


async def test_non_retryable_error_fails_at_the_first_attempt(aiops: AiopsClient, worker) -> None:
    record = await run_one(aiops, agent_config("scripted", retry=FAST_RETRY), fatal=True)
    assert record.status == ActionStatus.FAILED
    assert "the target does not exist" in (record.error or "")
    assert len(LEDGER["attempt"]) == 1


async def test_an_expected_non_retryable_error_is_one_warning_line_without_traceback(
    aiops: AiopsClient, worker, caplog: pytest.LogCaptureFixture
) -> None:
    """An agent saying "retrying cannot fix this" is an expected outcome, not a crash: one WARNING
    line naming the agent, hook and reason; no ERROR, no traceback (from the agent or the SDK)."""
    caplog.set_level(logging.INFO)
    record = await run_one(aiops, agent_config("scripted", retry=FAST_RETRY), fatal=True)
    assert record.status == ActionStatus.FAILED
    about = [r for r in caplog.records if "the target does not exist" in r.getMessage() or (
        r.exc_info and "the target does not exist" in str(r.exc_info[1]))]  # fmt: skip
    assert [r.levelno for r in about] == [logging.WARNING], [
        (r.name, r.levelname, r.getMessage()) for r in about
    ]
    assert about[0].exc_info is None and record.action.agent_id in about[0].getMessage()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR and r.exc_info], (
        "no traceback at ERROR"
    )


async def test_failed_verification_rolls_back(aiops: AiopsClient, worker) -> None:
    config = agent_config("scripted")
    record = await run_one(aiops, config, verify=False)
    assert record.status == ActionStatus.ROLLED_BACK
    assert record.verified is False
    assert record.rollback_result is not None and record.rollback_result.success
    assert LEDGER["rolled_back"] == [record.action.id]
    statuses = [h.status for h in record.history]
    assert statuses[-3:] == [ActionStatus.EXECUTING, ActionStatus.VERIFYING, ActionStatus.ROLLED_BACK]
    status = await eventually(
        lambda: aiops.agents.status(config.id), lambda s: s.counters.actions_failed == 1
    )
    assert status.success_rate == 0.0


async def test_a_redelivered_event_never_creates_a_second_action(aiops: AiopsClient, worker) -> None:
    config = agent_config("recorder", runtime={"dedup_window": 1})
    await aiops.agents.start(config)
    first = event(act=True)
    await aiops.events.send(config.id, first)
    await aiops.approvals.wait_for_action(aiops.approvals.action_id(config.id, first.id))
    await aiops.events.send(config.id, event())  # pushes the first id out of the dedup window
    await aiops.events.send(config.id, first)  # redelivered after the window forgot it
    status = await eventually(
        lambda: aiops.agents.status(config.id),
        lambda s: s.counters.events_processed == 3 and s.counters.actions_duplicate == 1,
    )
    assert status.counters.actions_proposed == 1
    assert LEDGER["executed"] == [aiops.approvals.action_id(config.id, first.id)]


@pytest.mark.parametrize(
    "heartbeat",
    [
        pytest.param({"heartbeat_timeout_seconds": 1.0}, id="configured-heartbeat"),
        # No heartbeat configured: the framework's default (seconds) still moves the attempt to
        # another worker long before the 300 s start-to-close timeout would.
        pytest.param({"start_to_close_timeout_seconds": 300}, id="default-heartbeat"),
    ],
)
async def test_worker_killed_mid_action_the_action_completes_once_elsewhere(
    aiops: AiopsClient,
    address: str,
    task_queue: str,
    tmp_path: Path,
    postgres: PostgresServer,
    heartbeat: dict[str, float],
) -> None:
    ledger = {"AIOPS_TEST_LEDGER_DIR": str(tmp_path)}
    config = agent_config("scripted", retry={**FAST_RETRY, "start_to_close_timeout_seconds": 60, **heartbeat})
    # Long enough that a loaded machine still kills the worker before this attempt ends.
    e = event("alert", risk="low", sleep=8)
    action_id = aiops.approvals.action_id(config.id, e.id)
    with worker_process(address, task_queue, "doomed", postgres.url, **ledger) as doomed:
        await aiops.events.send(config.id, e, config=config)
        await eventually(
            lambda: aiops.approvals.action(action_id), lambda r: r.status == ActionStatus.EXECUTING
        )

        async def attempt_started() -> bool:
            return (tmp_path / "attempt.log").exists()

        await eventually(attempt_started, lambda started: started, within=20)
        os.kill(doomed.pid, signal.SIGKILL)
        doomed.wait()
    with worker_process(address, task_queue, "survivor", postgres.url, **ledger):
        record = await asyncio.wait_for(aiops.approvals.wait_for_action(action_id), 60)
    assert record.status == ActionStatus.VERIFIED
    assert (tmp_path / "executed.log").read_text().split() == [action_id]
    assert len((tmp_path / "attempt.log").read_text().split()) == 2


async def test_circuit_breaker_opens_after_consecutive_failures_and_a_person_resets_it(
    aiops: AiopsClient, worker
) -> None:
    config = agent_config(
        "scripted", retry=FAST_RETRY, approval={**team().model_dump(), "circuit_breaker_failures": 2}
    )
    await aiops.agents.start(config)
    for _ in range(2):
        e = event("alert", risk="low", fatal=True)
        await aiops.events.send(config.id, e)
        assert (
            await aiops.approvals.wait_for_action(aiops.approvals.action_id(config.id, e.id))
        ).status == ActionStatus.FAILED
    status = await eventually(lambda: aiops.agents.status(config.id), lambda s: s.circuit_open)
    assert status.consecutive_failures == 2

    held = event("alert", risk="low")
    await aiops.events.send(config.id, held)
    record = await eventually(
        lambda: aiops.approvals.action(aiops.approvals.action_id(config.id, held.id)),
        lambda r: r.status == ActionStatus.PENDING_APPROVAL,
    )
    assert record.decision is not None and "circuit breaker is open" in record.decision.reason

    await aiops.agents.reset_circuit_breaker(config.id, by="alice")
    await eventually(lambda: aiops.agents.status(config.id), lambda s: not s.circuit_open)
    again = event("alert", risk="low")
    await aiops.events.send(config.id, again)
    assert (
        await aiops.approvals.wait_for_action(aiops.approvals.action_id(config.id, again.id))
    ).status == ActionStatus.VERIFIED


async def test_automatic_executions_are_limited_per_window(aiops: AiopsClient, worker) -> None:
    config = agent_config("scripted", approval={**team().model_dump(), "max_auto_executions": 1})
    await aiops.agents.start(config)
    first, second = event("alert", risk="low"), event("alert", risk="low")
    await aiops.events.send(config.id, first)
    assert (
        await aiops.approvals.wait_for_action(aiops.approvals.action_id(config.id, first.id))
    ).status == ActionStatus.VERIFIED
    await aiops.events.send(config.id, second)
    record = await eventually(
        lambda: aiops.approvals.action(aiops.approvals.action_id(config.id, second.id)),
        lambda r: r.status == ActionStatus.PENDING_APPROVAL,
    )
    assert record.decision is not None and "automatic execution limit reached" in record.decision.reason


async def test_an_action_whose_dry_run_fails_is_never_executed(aiops: AiopsClient, worker) -> None:
    record = await run_one(aiops, agent_config("scripted"), plan_fails=True)
    assert record.status == ActionStatus.FAILED
    assert (
        record.error is not None and "plan failed" in record.error and "cannot reach the API" in record.error
    )
    assert LEDGER["attempt"] == []
