"""Bursts across continue-as-new: nothing lost, nothing handled twice, actions survive."""

from __future__ import annotations

import asyncio

from aiops.client import AiopsClient
from aiops.contracts.agent import agent_workflow_id
from tests.helpers import agent_config, event, eventually, pending_actions_told
from tests.support.agents_for_tests import LEDGER


async def test_burst_straddling_several_continue_as_new_keeps_exact_counts(
    aiops: AiopsClient, worker
) -> None:
    config = agent_config("recorder", runtime={"max_events_per_run": 15, "batch_size": 7})
    await aiops.agents.start(config)
    events = [event(act=(i % 10 == 0)) for i in range(300)]
    waves = [events[i : i + 100] for i in range(0, 300, 100)]
    redelivered = [e for wave in waves for e in wave[::15]]  # sent twice, inside the same storm

    async def single(chunk):  # many concurrent single signals
        for e in chunk:
            await aiops.events.send(config.id, e)

    # Each wave is a storm of concurrent single signals, batch signals and redeliveries.
    # While a storm lasts the server refuses to close the run (the next run would miss the
    # buffered signals), so after each wave the test waits for the boundary it causes.
    run = (await eventually(lambda: aiops.agents.status(config.id), lambda s: s.run_number >= 1)).run_number
    for wave in waves:
        await asyncio.gather(
            *(single(wave[i : i + 10]) for i in range(0, 50, 10)),
            aiops.events.send_many(config.id, wave[50:], batch_size=25),
            single(wave[::15]),
        )
        status = await eventually(
            lambda: aiops.agents.status(config.id), lambda s, r=run: s.run_number > r, within=60
        )
        run = status.run_number
    expected_actions = sum(1 for e in events if e.data.get("act"))
    try:
        status = await eventually(
            lambda: aiops.agents.status(config.id),
            lambda s: s.counters.events_processed == 300 and s.counters.actions_succeeded == expected_actions,
            within=120,
        )
    except AssertionError as err:  # one action's end once never reached the agent: say what it did
        raise AssertionError(f"{err}\n{await pending_actions_told(aiops, config.id)}") from err
    # An intake update the server aborted while it was in flight (the run continuing as new, or a
    # refused update clearing the registry) is sent again by the client; if the agent had already
    # taken its events, they arrive twice and are deduplicated. So arrivals may exceed what the
    # test sent, and every one beyond the 300 is a duplicate, never a second decision.
    resent = status.counters.events_received - (300 + len(redelivered))
    assert resent >= 0, status.counters
    assert status.counters.events_deduplicated == len(redelivered) + resent, status.counters
    assert status.counters.actions_proposed == expected_actions
    assert status.counters.actions_duplicate == 0
    assert status.queue_length == 0
    assert status.pending_actions == []
    assert status.run_number >= 3, "the burst should straddle several continue-as-new boundaries"
    # Every event reached the agent's decision hook (a local activity may rerun on replay: at least once).
    assert set(LEDGER["decided"]) == {e.id for e in events}
    # Every action ran exactly once.
    assert sorted(LEDGER["executed"]) == sorted(
        aiops.approvals.action_id(config.id, e.id) for e in events if e.data.get("act")
    )

    async def runs() -> int:
        query = f"WorkflowId = '{agent_workflow_id(config.id)}'"
        return len([w async for w in aiops.client.list_workflows(query)])

    await eventually(runs, lambda n: n == status.run_number)  # visibility catches up with the chain


async def test_dedup_window_survives_continue_as_new(aiops: AiopsClient, worker) -> None:
    config = agent_config("recorder", runtime={"max_events_per_run": 5})
    await aiops.agents.start(config)
    first = [event() for _ in range(12)]
    for e in first:
        await aiops.events.send(config.id, e)
    status = await eventually(
        lambda: aiops.agents.status(config.id),
        lambda s: s.counters.events_processed == 12 and s.run_number >= 2,
    )
    await aiops.events.send_many(config.id, first[:4])  # all seen in the first run
    status = await eventually(
        lambda: aiops.agents.status(config.id), lambda s: s.counters.events_received == 16
    )
    assert status.counters.events_deduplicated == 4
    assert status.counters.events_processed == 12


async def test_runs_continue_as_new_before_too_many_child_workflows(aiops: AiopsClient, worker) -> None:
    config = agent_config("recorder", runtime={"max_actions_per_run": 3, "batch_size": 2})
    await aiops.agents.start(config)
    events = [event(act=True) for _ in range(8)]
    await aiops.events.send_many(config.id, events)
    # A run that took its share continues as new once its children have ended: a status asked in
    # between sees every action succeeded and the run not yet continued.
    status = await eventually(
        lambda: aiops.agents.status(config.id),
        lambda s: s.counters.actions_succeeded == 8 and s.run_number >= 3,
    )
    assert status.counters.actions_proposed == 8
    assert sorted(LEDGER["executed"]) == sorted(aiops.approvals.action_id(config.id, e.id) for e in events)


async def test_a_storm_with_default_pacing_is_taken_and_decided_exactly_once(
    aiops: AiopsClient, worker
) -> None:
    """20,000 events flat out through the facade, concurrently, with the default runtime: the
    agent continues as new when the server suggests it (history size), never wedges, and every
    event is accepted once and decided once (the reduced size of issue 11's 100,000 storm)."""
    config = agent_config("recorder")
    await aiops.agents.start(config)
    events = [event("alert") for _ in range(20_000)]
    waves = [events[i : i + 2000] for i in range(0, len(events), 2000)]
    answers = [
        a
        for wave in await asyncio.gather(*(aiops.events.send_many(config.id, w) for w in waves))
        for a in wave
    ]
    assert len(answers) == 20_000 and {a.outcome for a in answers} == {"accepted"}
    status = await eventually(
        lambda: aiops.agents.status(config.id), lambda s: s.counters.events_processed == 20_000, within=240
    )
    counters = status.counters
    assert (counters.events_received, counters.events_deduplicated, counters.events_rejected) == (
        20_000,
        0,
        0,
    )
    # The hook ran for each (at least once: a local activity reruns if its task is lost) ...
    assert {e.id for e in events} <= set(LEDGER["decided"])
    assert status.recent_errors == [] and status.queue_length == 0
    await asyncio.sleep(1)  # ... and each decision was recorded once: the count does not go on
    assert (await aiops.agents.status(config.id)).counters.events_processed == 20_000


async def test_the_servers_suggestion_to_continue_as_new_never_wedges_intake(
    aiops: AiopsClient, worker
) -> None:
    """The session's server suggests continue-as-new at 600 history events. A paused agent decides
    nothing, so every workflow task it gets is an intake update's. The first task to see the
    suggestion used to refuse that update, and a refused update's task is dropped with everything
    the workflow did in it, continue-as-new included: the agent then refused every event for ever.
    Now the suggestion does not refuse: the events are taken and carried into the next run."""
    config = agent_config("recorder", runtime={"max_events_per_run": 100_000})
    await aiops.agents.start(config)
    await eventually(lambda: aiops.agents.status(config.id), lambda s: s.state == "running")
    await aiops.agents.pause(config.id)
    await eventually(lambda: aiops.agents.status(config.id), lambda s: s.state == "paused")
    sent = 0
    while (await aiops.agents.status(config.id)).run_number == 1:
        assert sent < 400, "the server never suggested continue-as-new"
        answers = await aiops.events.send_many(config.id, [event("alert")], patience_seconds=10)
        assert [a.outcome for a in answers] == ["accepted"]
        sent += 1
    await aiops.events.send_many(config.id, [event("alert")], patience_seconds=10)  # the new run takes them
    await aiops.agents.resume(config.id)
    status = await eventually(
        lambda: aiops.agents.status(config.id), lambda s: s.counters.events_processed == sent + 1, within=60
    )
    assert status.run_number >= 2 and status.counters.events_rejected == 0
