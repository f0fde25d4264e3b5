"""The Web UI approval path, end to end in a real browser.

A dev server with its Web UI, a worker, and headless Chromium (Debian's package,
installed by the test when missing). An approver finds the pending high-risk
action through the approval inbox query, reads its User Metadata (summary,
details, current details with the approve command), and approves it with
More Actions → Send a Signal. The client then sees it executed with alice's
approval on the signal channel.

Screenshots of every step land in the test's tmp_path; a failed step's message
carries the page's text. Without a browser the test skips with the reason.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio
from playwright.async_api import Locator, Page, async_playwright, expect
from playwright.async_api import TimeoutError as PlaywrightTimeout
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from activities.agent_activities import AgentActivities
from agents.registry import load_agent_modules
from aiops.client import AiopsClient
from aiops.runtime.worker_build import build_worker
from tests.conftest import TEMPORAL_BIN
from tests.helpers import agent_config, start_pending_action, team
from tests.support.agents_for_tests import LEDGER
from tests.support.browser import (
    BrowserUnavailable,
    ChromiumInstall,
    Evidence,
    ensure_chromium,
    free_port,
    launch_chromium,
)
from workflows import action_contract
from workflows.action_contract import ActionStatus
from workflows.action_details import static_summary
from workflows.search_attributes import ALL as SEARCH_ATTRIBUTES

# The backstop covers a first-time `apt-get install chromium`; the browser part itself takes seconds.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

INBOX_QUERY = 'AiopsActionStatus="pending_approval"'
APPROVAL = {"approver": "alice", "comment": "approved in the browser"}
UI_TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def chromium() -> ChromiumInstall:
    try:
        install = ensure_chromium()
    except BrowserUnavailable as err:
        pytest.skip(f"the Web UI test needs Chromium: {err}")
    if install.installed_now:
        print(f"\ninstalled chromium with apt-get in {install.seconds:.1f}s")
    return install


@pytest_asyncio.fixture(scope="module")
async def ui_server() -> AsyncIterator[tuple[WorkflowEnvironment, int]]:
    """A dev server of its own, with the Web UI on a free port (the session's server has none)."""
    load_agent_modules()
    ui_port = free_port()
    environment = await WorkflowEnvironment.start_local(
        dev_server_existing_path=TEMPORAL_BIN,
        data_converter=pydantic_data_converter,
        search_attributes=SEARCH_ATTRIBUTES,
        ui=True,
        ui_port=ui_port,
        dev_server_startup_timeout=timedelta(seconds=30),
    )
    try:
        await asyncio.to_thread(_wait_for_http, f"http://127.0.0.1:{ui_port}/", 30.0)
        yield environment, ui_port
    finally:
        await environment.shutdown()


def _wait_for_http(url: str, within: float) -> None:
    deadline = time.monotonic() + within
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError) as err:
            if time.monotonic() > deadline:
                raise AssertionError(f"the Web UI at {url} did not answer in {within}s: {err}") from err
        time.sleep(0.2)


async def test_approve_a_pending_action_in_the_web_ui(
    chromium: ChromiumInstall,
    ui_server: tuple[WorkflowEnvironment, int],
    pool: asyncpg.Pool,
    tmp_path: Path,
) -> None:
    environment, ui_port = ui_server
    client = environment.client
    task_queue = f"tq-web-ui-{uuid.uuid4()}"
    aiops = AiopsClient(client, task_queue, pool)
    base = f"http://127.0.0.1:{ui_port}/namespaces/default"
    inbox_url = f"{base}/workflows?query={urllib.parse.quote(INBOX_QUERY)}"
    LEDGER.clear()

    async with async_playwright() as playwright:
        try:
            browser = await launch_chromium(playwright, chromium.path, tmp_path / "chromium-profile")
        except BrowserUnavailable as err:
            pytest.skip(f"the Web UI test needs Chromium: {err}")
        try:
            browser.set_default_timeout(UI_TIMEOUT_MS)
            browser.set_default_navigation_timeout(60_000)
            page = browser.pages[0] if browser.pages else await browser.new_page()
            evidence = Evidence(page, tmp_path / "screens")

            async with build_worker(client, task_queue, AgentActivities(client=client), pool=pool):
                config = agent_config("scripted", approval=team())
                _, action_id, record = await start_pending_action(aiops, config, "high")
                started = time.monotonic()

                async with evidence.step("inbox"):
                    await page.goto(inbox_url, wait_until="domcontentloaded")
                    await expect(page.get_by_role("link", name=action_id, exact=True)).to_be_visible()
                    # The query filters: the agent's own (running) workflow is not in the inbox.
                    await expect(
                        page.get_by_role("link", name=f"agent-{config.id}", exact=True)
                    ).to_have_count(0)

                async with evidence.step("workflow"):
                    await page.get_by_role("link", name=action_id, exact=True).click()
                    await page.wait_for_url(re.compile(r"/workflows/action-"))
                    await expect(page.get_by_role("heading", name=action_id)).to_be_visible()

                async with evidence.step("user-metadata"):
                    await page.get_by_role("tab", name="User Metadata").click()
                    for heading in ("Summary", "Details", "Current Details"):
                        await expect(page.get_by_role("heading", name=heading, exact=True)).to_be_visible()
                    # Summary and details are markdown rendered in iframes: read every frame.
                    await evidence.wait_for_text(
                        [
                            static_summary(record.action),  # the summary
                            "risk: high",  # the static details
                            "Approve from a terminal:",
                            "status: pending_approval",  # the current details
                            "approvals: 0/1",
                            record.approve_command,  # in both details
                        ]
                    )

                async with evidence.step("signal-dialog"):
                    await page.get_by_role("button", name="More Actions").click()
                    await page.get_by_role("menuitem", name="Send a Signal").filter(visible=True).click()
                    dialog = page.get_by_role("dialog", name="Send a Signal")
                    await expect(dialog).to_be_visible()
                    await _choose_signal(dialog, action_contract.APPROVE)
                    data = dialog.get_by_role("textbox", name="Data")
                    await data.click()
                    await page.keyboard.press("Control+A")
                    # insert_text: one input, so the code editor's bracket auto-closing stays out of it.
                    await page.keyboard.insert_text(json.dumps(APPROVAL))
                    assert json.loads(await data.inner_text()) == APPROVAL
                    plain = dialog.get_by_role("radio", name="json/plain")
                    if await plain.count():
                        await expect(plain).to_be_checked()

                async with evidence.step("signal-sent"):
                    await dialog.get_by_role("button", name="Submit").click()
                    await expect(dialog).to_be_hidden()

                done = await asyncio.wait_for(aiops.wait_for_action(action_id), 60)
                browser_seconds = time.monotonic() - started

                async with evidence.step("completed"):
                    await page.reload(wait_until="domcontentloaded")
                    await expect(
                        page.get_by_role("status").filter(has_text=re.compile(r"^\s*completed\s*$", re.I))
                    ).to_be_visible()

                async with evidence.step("inbox-empty"):
                    await _until_gone_from_inbox(page, inbox_url, action_id)

            assert done.status in (ActionStatus.SUCCEEDED, ActionStatus.VERIFIED), done
            assert done.refused == [], done.refused
            first = done.approvals[0]
            assert (first.approver, first.approved, first.channel, first.comment) == (
                "alice",
                True,
                "signal",
                APPROVAL["comment"],
            )
            assert LEDGER["executed"] == [action_id]
            print(f"\napproved in the Web UI in {browser_seconds:.1f}s; screenshots in {evidence.directory}")
        finally:
            await browser.close()


async def _choose_signal(dialog: Locator, name: str) -> None:
    """Pick the signal: from the workflow's declared signals, else type it (older UIs, or Custom)."""
    typed = dialog.get_by_role("textbox", name="Signal name")
    if not await typed.count():
        await dialog.get_by_role("button", name="Select a signal").click()
        option = dialog.get_by_role("option", name=name, exact=True)
        try:
            await option.wait_for(state="visible", timeout=10_000)
            await option.click()
            return
        except PlaywrightTimeout:
            await dialog.get_by_role("option", name=re.compile(r"^Custom")).click()
    await typed.fill(name)


async def _until_gone_from_inbox(page: Page, inbox_url: str, action_id: str, within: float = 20.0) -> None:
    """The finished action leaves the inbox query (visibility may lag a moment: reload until it does)."""
    link = page.get_by_role("link", name=action_id, exact=True)
    empty = page.get_by_text("No Workflows Found", exact=True)
    deadline = time.monotonic() + within
    while True:
        await page.goto(inbox_url, wait_until="domcontentloaded")
        await expect(link.or_(empty).first).to_be_visible()
        if not await link.count():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{action_id} is still in the approval inbox after {within}s")
        await page.wait_for_timeout(500)
