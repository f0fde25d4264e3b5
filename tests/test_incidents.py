"""An alert storm becomes one decision per incident: 500 alerts in 20 groups yield 20 actions."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from aiops.client import AiopsClient
from aiops.contracts.models import SystemEvent
from aiops.gateway.delivery import Connector
from tests.helpers import agent_config, eventually
from tests.support.agents_for_tests import LEDGER
from tests.support.alertmanager import Alertmanager


def storm(groups: int, per_group: int, status: str = "firing") -> list[SystemEvent]:
    return [
        SystemEvent(
            id=f"am:g{g}-a{a}:{status}:1",
            type="alert",
            source=f"host-{a}",
            severity="high",
            correlation_id=f'{{}}:{{alertname="Alert{g}"}}',  # an Alertmanager group key
            data={"status": status, "fingerprint": f"g{g}-a{a}"},
        )
        for a in range(per_group)
        for g in range(groups)
    ]


async def test_a_storm_of_500_alerts_in_20_groups_is_decided_20_times(
    aiops: AiopsClient, worker: object
) -> None:
    config = agent_config("scripted", runtime={"incident_window_seconds": 2})
    await aiops.agents.start(config)
    firing = storm(20, 25)
    await aiops.events.send_many(config.id, firing, batch_size=100)
    await aiops.events.send_many(config.id, firing[:50], batch_size=50)  # Alertmanager repeats: duplicates

    status = await eventually(
        lambda: aiops.agents.status(config.id), lambda s: s.counters.actions_succeeded == 20, within=60
    )
    assert status.counters.events_received == 550 and status.counters.events_deduplicated == 50
    assert status.counters.actions_proposed == 20, "one action per incident, not per alert"
    assert len(LEDGER["executed"]) == 20 and all(":incident:" in a for a in LEDGER["executed"])
    assert len(status.incidents) == 20 and all(i.decided and i.alerts == 25 for i in status.incidents)
    record = await aiops.approvals.action(
        aiops.approvals.action_id(config.id, status.incidents[0].action_event_id or "")
    )
    assert len(record.event.data["alerts"]) == 25, "the agent decided with every alert in view"

    # Resolving every alert of a group closes its incident; the others stay open.
    await aiops.events.send_many(
        config.id, [e for e in storm(20, 25, "resolved") if '"Alert0"' in (e.correlation_id or "")]
    )
    status = await eventually(lambda: aiops.agents.status(config.id), lambda s: len(s.incidents) == 19)
    assert status.counters.actions_proposed == 20


async def test_an_incident_of_500_alerts_decides_once_on_the_450_still_firing(
    aiops: AiopsClient, worker: object
) -> None:
    """Only 50 alerts are kept whole: when exactly those resolve, the 450 others still fire."""
    config = agent_config("scripted", runtime={"incident_window_seconds": 5})
    await aiops.agents.start(config)
    firing = storm(1, 500)
    await aiops.events.send_many(config.id, firing, batch_size=500)
    await aiops.events.send_many(config.id, storm(1, 50, "resolved"), batch_size=50)

    status = await eventually(
        lambda: aiops.agents.status(config.id), lambda s: s.counters.actions_succeeded == 1, within=60
    )
    assert status.counters.actions_proposed == 1
    assert [(i.decided, i.firing) for i in status.incidents] == [(True, 450)]
    record = await aiops.approvals.action(
        aiops.approvals.action_id(config.id, status.incidents[0].action_event_id or "")
    )
    assert record.event.data["incident"]["firing"] == 450
    assert len(record.event.data["alerts"]) == 50  # the sample, bounded

    # their resends are not a second decision, and resolving the rest closes the incident
    await aiops.events.send_many(config.id, firing[100:200], batch_size=100)
    await aiops.events.send_many(config.id, storm(1, 500, "resolved")[50:], batch_size=450)
    status = await eventually(lambda: aiops.agents.status(config.id), lambda s: s.incidents == [])
    assert status.counters.actions_proposed == 1


@pytest.mark.slow
async def test_through_a_real_alertmanager_500_alerts_of_which_50_resolve_decide_once(
    aiops: AiopsClient, worker: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.test_gateway import TOKEN, gateway_config, serving, write_config

    monkeypatch.setenv("GW_TEST_TOKEN", TOKEN)
    monkeypatch.setenv("GW_TEST_HMAC", "unused")
    config = agent_config("scripted", runtime={"incident_window_seconds": 10})
    await aiops.agents.start(config)
    routes = [{"name": "all", "agents": [config.id]}]
    document = gateway_config(1, routes, limits={"max_body_bytes": 4 * 1024 * 1024})
    async with serving(write_config(tmp_path / "gw.json", document), Connector.of(aiops)) as (server, _):
        am = Alertmanager(f"{server.url}/v1/alertmanager/am", bearer_token=TOKEN).start()
        try:
            alerts = [{"labels": {"alertname": "Wide", "instance": f"h{i}"}} for i in range(500)]
            async with httpx.AsyncClient() as http:
                answer = await http.post(f"{am.url}/api/v2/alerts", json=alerts)
                assert answer.status_code == 200, answer.text
                await eventually(
                    lambda: aiops.agents.status(config.id),
                    lambda s: s.counters.events_received >= 500,
                    within=20,
                )
                resolved = [{**a, "endsAt": "2000-01-01T00:00:00Z"} for a in alerts[:50]]
                assert (await http.post(f"{am.url}/api/v2/alerts", json=resolved)).status_code == 200
            status = await eventually(
                lambda: aiops.agents.status(config.id),
                lambda s: s.counters.actions_proposed >= 1 and any(i.decided for i in s.incidents),
                within=60,
            )
            assert [(i.decided, i.firing) for i in status.incidents] == [(True, 450)], am.log()
            assert status.counters.actions_proposed == 1
            # none lost: 500 firing and 50 resolved events taken (Alertmanager's resends of a changed
            # group are the duplicates), none refused
            counters = status.counters
            assert counters.events_received - counters.events_deduplicated == 550, counters
            assert counters.events_rejected == 0
            # bounded memory: the decision carries the count and a sample, not 450 alerts
            [incident] = status.incidents
            record = await aiops.approvals.action(
                aiops.approvals.action_id(config.id, incident.action_event_id or "")
            )
            assert record.event.data["incident"]["firing"] == 450
            assert len(record.event.data["alerts"]) == 50
            assert (await am.notifications())[1] == 0, am.log()
        finally:
            am.stop()
