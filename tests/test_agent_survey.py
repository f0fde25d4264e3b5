"""Listing every agent when one of them cannot answer (``aiops/client/agent_survey.py``).

Real server. An agent whose workers are down answers no query: the list used to wait out the
call's deadline and then fail whole. Now each agent is asked with its own short patience, the
rest are listed, and the silent one is named with why (the CLI's side is in tests/test_cli.py).
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path

import asyncpg
from temporalio.client import Client

from aiops.client import AiopsClient
from aiops.client.agent_survey import survey
from aiops.client.errors import AgentsUnansweredError
from tests.helpers import agent_config, eventually, gone, start_without_worker
from tests.support.api_stack import api_stack


async def test_a_survey_lists_the_answering_agents_and_names_the_silent_one(
    aiops: AiopsClient, worker, client: Client
) -> None:
    answering = agent_config("recorder")
    await aiops.agents.start(answering)
    await eventually(lambda: aiops.agents.status(answering.id), lambda s: s.state == "running")
    silent = agent_config("recorder")  # on a queue no worker polls: its workers are down
    await start_without_worker(client, silent, f"tq-down-{uuid.uuid4().hex[:8]}")
    try:
        found = await survey(
            aiops.connection, [silent.id, answering.id, "never-started"], patience=timedelta(seconds=2)
        )
        assert [s.agent_id for s in found.statuses] == [answering.id]
        assert [u.agent_id for u in found.unanswered] == [silent.id], "an agent that is gone is left out"
        reason = found.unanswered[0].reason
        assert "no answer to its status query within 2s" in reason and aiops.connection.task_queue in reason
    finally:
        await gone(client, silent)


async def test_the_api_lists_the_rest_and_names_silent_agents_in_a_header(
    client: Client, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """An agent whose workers are down: ``GET /v1/agents`` answers 200 within the patience, without
    it, and names it in ``Aiops-Unanswered-Agents``; ``statuses`` raises, carrying the rest."""
    queue = f"tq-down-{uuid.uuid4().hex[:8]}"
    down = AiopsClient(client, queue, pool, actor="bob")
    silent = agent_config("recorder")
    await start_without_worker(client, silent, queue)
    try:
        await eventually(lambda: down.agents.ids(this_queue=True), lambda ids: ids == [silent.id])
        async with api_stack(down, tmp_path) as api, api.http(await api.personal("vi", ["viewer"])) as http:
            listed = await http.get("/v1/agents")
            assert listed.status_code == 200, listed.text
            assert listed.json() == []
            assert listed.headers["Aiops-Unanswered-Agents"] == f"1: {silent.id}"
        try:
            await down.agents.statuses(patience=timedelta(seconds=1))
        except AgentsUnansweredError as err:
            assert silent.id in str(err) and err.survey.statuses == []
        else:
            raise AssertionError("statuses() must say that an agent did not answer")
    finally:
        await gone(client, silent)
