"""Through a real Alertmanager: what the gateway cannot hand an agent is never answered as taken.

Alerts for an agent whose config its type refuses are never taken.

The gateway answers 503 with ``Retry-After`` while the agent type refuses the config the route
starts the agent with (a 2xx would make Alertmanager forget the alerts; a 4xx drops them until
the next group interval), Alertmanager keeps retrying, and once the config is fixed every alert
is decided, each exactly once. Two ways to fix it are proven: the config file the route names is
corrected (the gateway reloads it), or an operator starts the agent with a good config
(``aiops agents start --config``), after which the route's refused file no longer matters.

Alerts Alertmanager itself leaves out of a notification (the receiver's ``max_alerts``) cannot be
fetched by any answer: they are counted and named instead of silently missing.
"""

from __future__ import annotations

import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from aiops.client import AiopsClient
from aiops.gateway.delivery import Connector
from tests.helpers import agent_config, eventually
from tests.support.agents_for_tests import LEDGER
from tests.support.alertmanager import Alertmanager
from tests.test_gateway import (
    TOKEN,
    am_alert,
    am_payload,
    bearer,
    gateway_config,
    metric,
    serving,
    write_config,
)

ALERTS = 20  # in two Alertmanager groups


def decisions(fingerprints: set[str]) -> Counter[str]:
    """How many times the tunable agent decided each of these alerts firing (its ledger: ``id@vN:mode``)."""
    counted: Counter[str] = Counter()
    for entry in LEDGER["decided"]:
        parts = entry.split(":")
        if len(parts) > 2 and parts[0] == "am" and parts[1] in fingerprints and parts[2] == "firing":
            counted[parts[1]] += 1
    return counted


async def fingerprints(am: Alertmanager, agent_id: str) -> set[str]:
    """Alertmanager's fingerprints of the alerts labelled for this agent."""
    async with httpx.AsyncClient() as http:
        answer = await http.get(f"{am.url}/api/v2/alerts", params={"filter": f'agent="{agent_id}"'})
    return {alert["fingerprint"] for alert in answer.json()}


@pytest.mark.slow
@pytest.mark.parametrize("fix", ["route_file", "agents_start"])
async def test_alerts_for_an_agent_whose_config_its_type_refuses_are_503_then_decided_once_when_fixed(
    aiops: AiopsClient, worker: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fix: str
) -> None:
    monkeypatch.setenv("GW_TEST_TOKEN", TOKEN)
    monkeypatch.setenv("GW_TEST_HMAC", "unused")
    agent_id = f"tunable-{uuid.uuid4().hex[:8]}"
    refused = agent_config("tunable", id=agent_id, settings={"mode": "observe", "limit": 0})
    fixed = refused.model_copy(update={"settings": {"mode": "observe", "limit": 5}})
    agent_file = write_config(tmp_path / "agent.json", refused.model_dump(mode="json"))
    routes = [{"name": "all", "agents": [agent_id], "agent_configs": {agent_id: "agent.json"}}]
    config_file = write_config(tmp_path / "gw.json", gateway_config(1, routes))

    async with serving(config_file, Connector.of(aiops)) as (server, gateway):
        am = Alertmanager(f"{server.url}/v1/alertmanager/am", bearer_token=TOKEN, group_interval="1s").start()
        try:
            alerts = [
                {"labels": {"alertname": f"Refused{i % 2}", "instance": f"db-{i}", "agent": agent_id}}
                for i in range(ALERTS)
            ]
            async with httpx.AsyncClient() as http:
                answer = await http.post(f"{am.url}/api/v2/alerts", json=alerts)
                assert answer.status_code == 200, answer.text
                ours = await eventually(lambda: fingerprints(am, agent_id), lambda f: len(f) == ALERTS)

                # Alertmanager is told 503 for both groups (its failed notifications rise, and every
                # alert counts as failed at the gateway); nothing is started, nothing is decided.
                await eventually(am.notifications, lambda sent_failed: sent_failed[1] >= 2, within=30)
                await eventually(
                    lambda: http.get(f"{server.url}/metrics"),
                    lambda page: (
                        metric(page.text, "aiops_gateway_events_total", source="am", outcome="failed")
                        >= ALERTS
                    ),
                )
                page = (await http.get(f"{server.url}/metrics")).text
                assert metric(page, "aiops_gateway_events_total", source="am", outcome="accepted") == 0
                assert not await aiops.agents.is_running(agent_id), "no run was started with a refused config"
                assert decisions(ours) == Counter()

                # What the gateway answers, as Alertmanager hears it: 503, Retry-After, and why.
                probe = {
                    "version": "4",
                    "groupKey": "{}:{}",
                    "status": "firing",
                    "alerts": [
                        {
                            "status": "firing",
                            "labels": {"alertname": "Probe"},
                            "startsAt": "2024-05-01T10:00:00Z",
                        }
                    ],
                }
                said = await http.post(
                    f"{server.url}/v1/alertmanager/am",
                    json=probe,
                    headers={"Authorization": f"Bearer {TOKEN}"},
                )
                assert said.status_code == 503 and int(said.headers["retry-after"]) >= 1, said.text
                assert "settings.limit must be a positive integer" in said.json()["error"], said.text
                assert "nothing is lost: deliver again" in said.json()["error"]

            # The fix; Alertmanager's own retries then deliver every alert.
            if fix == "route_file":
                write_config(agent_file, fixed.model_dump(mode="json"))
                await eventually(
                    lambda: _loaded(gateway, agent_id), lambda config: config == fixed, within=10
                )
            else:
                await aiops.agents.start(fixed)

            await eventually(lambda: _decided(ours), lambda counted: len(counted) == ALERTS, within=90)
            status = await eventually(
                lambda: aiops.agents.status(agent_id), lambda s: s.counters.events_processed >= ALERTS
            )
            counted = decisions(ours)
            assert set(counted.values()) == {1}, f"decided more than once: {counted}"
            assert status.counters.events_processed == ALERTS and status.counters.events_rejected == 0
            assert status.state.value == "running" and status.config.settings["limit"] == 5
            sent, failed = await am.notifications()
            assert failed >= 2 and sent > failed, am.log()
        finally:
            am.stop()


async def _loaded(gateway: Any, agent_id: str) -> Any:
    return gateway.holder.current.agent_configs.get(agent_id)


async def _decided(ours: set[str]) -> Counter[str]:
    return decisions(ours)


@pytest.mark.slow
async def test_alerts_alertmanager_truncates_are_counted_and_named_not_silently_missing(
    aiops: AiopsClient, worker: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GW_TEST_TOKEN", TOKEN)
    monkeypatch.setenv("GW_TEST_HMAC", "unused")
    agent = agent_config("tunable", settings={"mode": "observe"})
    await aiops.agents.start(agent)
    routes = [{"name": "all", "agents": [agent.id]}]
    async with serving(
        write_config(tmp_path / "gw.json", gateway_config(1, routes)), Connector.of(aiops)
    ) as (
        server,
        _,
    ):
        am = Alertmanager(f"{server.url}/v1/alertmanager/am", bearer_token=TOKEN, max_alerts=2).start()
        try:
            alerts = [
                {"labels": {"alertname": "Cut", "instance": f"h{i}", "agent": agent.id}} for i in range(5)
            ]
            async with httpx.AsyncClient() as http:
                assert (await http.post(f"{am.url}/api/v2/alerts", json=alerts)).status_code == 200
                page = await eventually(
                    lambda: http.get(f"{server.url}/metrics"),
                    lambda p: counted(p.text, "truncated") >= 3 and counted(p.text, "accepted") >= 2,
                )
            assert counted(page.text, "truncated") == 3 and counted(page.text, "accepted") == 2, page.text
            status = await eventually(
                lambda: aiops.agents.status(agent.id), lambda s: s.counters.events_processed >= 2
            )
            taken = status.counters.events_received - status.counters.events_deduplicated
            assert taken == 2, "Alertmanager sent two; the other three never came"
            # and the sender reads it in the answer
            payload = {**am_payload(am_alert(agent=agent.id)), "truncatedAlerts": 7}
            async with httpx.AsyncClient() as http:
                answer = await http.post(f"{server.url}/v1/alertmanager/am", json=payload, headers=bearer())
            assert answer.status_code == 200 and answer.json()["truncated"] == 7, answer.text
            assert (await am.notifications())[1] == 0, am.log()
        finally:
            am.stop()


def counted(page: str, outcome: str) -> float:
    return metric(page, "aiops_gateway_events_total", source="am", outcome=outcome)
