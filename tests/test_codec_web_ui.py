"""The Temporal Web UI with the codec server, in headless Chromium (docs/encryption.md).

A dev server whose Web UI is configured with the gateway's codec endpoint
(``--ui-codec-endpoint``), a worker and a client that encrypt, and an action waiting for
approval whose event carries a canary. Without a codec-server token the UI's decode requests
are refused (401): the UI says its codec server could not connect and shows the action's input
as ciphertext (base64), the canary
nowhere on the page; with the token the same page shows the decoded input, canary included.
The UI itself sends no static token (it passes its OIDC access token when configured to): the
token is added to the browser's requests to the codec endpoint here, as the authenticating proxy
docs/encryption.md describes would. Screenshots land in the test's tmp_path (``ciphertext``,
``decoded``).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
from playwright.async_api import async_playwright
from temporalio.testing import WorkflowEnvironment

from activities.agent_activities import AgentActivities
from agents.registry import load_agent_modules
from aiops.client import AiopsClient
from aiops.codec.tokens import new_token
from aiops.connection import connect
from aiops.contracts.search_attributes import ALL as SEARCH_ATTRIBUTES
from aiops.gateway.app import Gateway
from aiops.gateway.delivery import Connector
from aiops.gateway.server import running
from aiops.runtime.worker_build import build_worker
from tests.conftest import CODEC_KEY, CODEC_KEY_ENV, TEMPORAL_BIN
from tests.helpers import agent_config, event, team, wait_pending
from tests.support.browser import BrowserUnavailable, ChromiumInstall, Evidence, free_port, launch_chromium
from tests.test_web_ui import _wait_for_http, chromium  # noqa: F401  (the Chromium fixture)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

UI_TIMEOUT_MS = 30_000


@pytest_asyncio.fixture(scope="module")
async def codec_ui() -> AsyncIterator[tuple[WorkflowEnvironment, int, int]]:
    """A dev server whose Web UI decodes through a codec endpoint on a port chosen in advance."""
    load_agent_modules()
    ui_port, codec_port = free_port(), free_port()
    environment = await WorkflowEnvironment.start_local(
        dev_server_existing_path=TEMPORAL_BIN,
        search_attributes=SEARCH_ATTRIBUTES,
        ui=True,
        ui_port=ui_port,
        dev_server_startup_timeout=timedelta(seconds=30),
        dev_server_extra_args=["--ui-codec-endpoint", f"http://127.0.0.1:{codec_port}/codec"],
    )
    try:
        await asyncio.to_thread(_wait_for_http, f"http://127.0.0.1:{ui_port}/", 30.0)
        yield environment, ui_port, codec_port
    finally:
        await environment.shutdown()


async def test_the_web_ui_shows_ciphertext_without_a_token_and_the_action_with_one(
    chromium: ChromiumInstall,  # noqa: F811
    codec_ui: tuple[WorkflowEnvironment, int, int],
    pool: asyncpg.Pool,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    environment, ui_port, codec_port = codec_ui
    canary = f"CANARY-web-ui-{uuid.uuid4().hex[:10]}"
    token, hash_line = new_token("alice")
    monkeypatch.setenv(CODEC_KEY_ENV, CODEC_KEY)
    monkeypatch.setenv("AIOPS_CODEC_KEYS", f"a=env:{CODEC_KEY_ENV}")
    monkeypatch.setenv("AIOPS_CODEC_SERVER_TOKENS", hash_line)
    monkeypatch.setenv("AIOPS_CODEC_SERVER_ORIGINS", f"http://127.0.0.1:{ui_port},http://localhost:{ui_port}")
    address = environment.client.service_client.config.target_host
    sealed = await connect(address)
    task_queue = f"tq-codec-ui-{uuid.uuid4()}"
    aiops = AiopsClient(sealed, task_queue, pool, actor="bob")
    routes = tmp_path / "gateway.yaml"
    routes.write_text(json.dumps({"version": 1, "sources": {"default": {"auth": {"type": "none"}}}}))

    async def to_temporal() -> AiopsClient:
        return aiops

    gateway = Gateway(routes, Connector(to_temporal), reload_every=0)
    async with (
        running(gateway, port=codec_port),
        build_worker(sealed, task_queue, AgentActivities(client=sealed), pool=pool),
        async_playwright() as playwright,
    ):
        config = agent_config("scripted", approval=team())
        await aiops.agents.start(config)
        alert = event("alert", risk="high", note=canary)
        await aiops.events.send(config.id, alert)
        action_id = aiops.approvals.action_id(config.id, alert.id)
        await wait_pending(aiops, action_id)
        try:
            browser = await launch_chromium(playwright, chromium.path, tmp_path / "chromium-profile")
        except BrowserUnavailable as err:
            pytest.skip(f"the Web UI test needs Chromium: {err}")
        try:
            browser.set_default_timeout(UI_TIMEOUT_MS)
            page = browser.pages[0] if browser.pages else await browser.new_page()
            evidence = Evidence(page, tmp_path / "screens")
            url = f"http://127.0.0.1:{ui_port}/namespaces/default/workflows/{action_id}"
            codec_answers: list[int] = []
            page.on("response", lambda r: codec_answers.append(r.status) if "/codec/" in r.url else None)

            async with evidence.step("ciphertext"):
                await page.goto(url, wait_until="domcontentloaded")
                text = await evidence.wait_for_text(
                    [action_id, "Codec Server could not connect", "Input"], within=60
                )
                assert canary not in text
                assert 401 in codec_answers, codec_answers  # the UI asked; the codec server refused

            async def with_token(route: Any) -> None:
                await route.continue_(headers={**route.request.headers, "authorization": f"Bearer {token}"})

            await page.route(f"http://127.0.0.1:{codec_port}/codec/**", with_token)
            codec_answers.clear()
            async with evidence.step("decoded"):
                await page.goto(url, wait_until="domcontentloaded")
                text = await evidence.wait_for_text([action_id, canary], within=60)
                assert 200 in codec_answers, codec_answers
        finally:
            await browser.close()
