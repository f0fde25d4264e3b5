"""The Web UI as the approver's console, end to end in a real browser (docs/web-ui.md).

A dev server with its Web UI, a worker, and headless Chromium (Debian's package,
installed by the test when missing). Two actions wait for approval. The approver
sets up the inbox as the docs say (columns, relative times, a saved view) and sees
risk, agent, age and approvals for both; on an action's page the timeline's steps
read as sentences, and the current details say what to do now. A refusal shows where
the person acted: in the update dialog at once, and for a signal at the top of the
current details on the UI's own refresh (R), without reloading the page. Then alice
approves with More Actions → Send a Signal, and the completed action's details say
what happened.

Screenshots of every step land in the test's tmp_path (``inbox-columns`` and
``action-timeline`` are the inbox and the action page); a failed step's message
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
from aiops.contracts import action as action_contract
from aiops.contracts.action import ActionStatus
from aiops.contracts.search_attributes import ALL as SEARCH_ATTRIBUTES
from aiops.keys import KeyFile
from aiops.runtime.worker_build import build_worker
from tests.conftest import TEMPORAL_BIN
from tests.helpers import agent_config, eventually, start_pending_action, team
from tests.support.agents_for_tests import LEDGER
from tests.support.browser import (
    BrowserUnavailable,
    ChromiumInstall,
    Evidence,
    ensure_chromium,
    free_port,
    launch_chromium,
)
from workflows.action.details import plan_step, static_summary
from workflows.approval_token import generate_private_key, private_key_pem

# The backstop covers a first-time `apt-get install chromium`; the browser part itself takes seconds.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

INBOX_QUERY = 'AiopsActionStatus="pending_approval"'
APPROVAL = {"approver": "alice", "comment": "approved in the browser"}
ALICE = KeyFile(approver="alice", private_key=private_key_pem(generate_private_key()).decode())
REFUSED = {"approver": "mallory", "comment": "not on the team"}
# docs/web-ui.md: the approval inbox's columns and saved view.
INBOX_COLUMNS = (
    "AiopsRiskLevel",
    "AiopsAgentId",
    "AiopsRequestedAt",
    "AiopsApprovals",
    "AiopsApprovalsNeeded",
)
INBOX_VIEW = "Approval inbox"
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
            expect.set_options(timeout=UI_TIMEOUT_MS)  # the UI may answer slowly on a busy machine
            browser.set_default_navigation_timeout(60_000)
            page = browser.pages[0] if browser.pages else await browser.new_page()
            evidence = Evidence(page, tmp_path / "screens")

            async with build_worker(client, task_queue, AgentActivities(client=client), pool=pool):
                # alice signs with her own key; her public key is in the config (no dev mode).
                config = agent_config("scripted", approval=team({"alice": ALICE.public_key()}))
                _, action_id, record = await start_pending_action(aiops, config, "high")
                # What `aiops approvals token` prints, pasted into the signal dialog below.
                signed = await aiops.approvals.token(action_id, ALICE)
                approval = {**signed.model_dump(exclude_none=True), "comment": APPROVAL["comment"]}
                other = agent_config("scripted", approval=team())
                _, other_id, _ = await start_pending_action(aiops, other, "critical")
                started = time.monotonic()

                async with evidence.step("inbox"):
                    await page.goto(inbox_url, wait_until="domcontentloaded")
                    await expect(page.get_by_role("link", name=action_id, exact=True)).to_be_visible()
                    # The query filters: the agent's own (running) workflow is not in the inbox.
                    await expect(
                        page.get_by_role("link", name=f"agent-{config.id}", exact=True)
                    ).to_have_count(0)
                    await _set_up_the_inbox(page)
                    # Each pending action's row reads: risk, agent, age, approvals so far and needed.
                    for row_of, risk, agent, needed in (
                        (action_id, "high", config.id, 1),
                        (other_id, "critical", other.id, 2),
                    ):
                        row = page.get_by_role("row").filter(
                            has=page.get_by_role("link", name=row_of, exact=True)
                        )
                        await expect(row).to_contain_text(risk)
                        await expect(row).to_contain_text(agent)
                        await expect(row).to_contain_text(re.compile(r"\d+ (second|minute)s? ago"))
                        cells = [c.strip() for c in await row.get_by_role("cell").all_inner_texts()]
                        assert cells[-2:] == ["0", str(needed)], cells
                    await page.get_by_role("button", name=INBOX_VIEW).wait_for()
                inbox_shot = await evidence.shot("inbox-columns")
                inbox_text = await evidence.all_text()
                for needle in (INBOX_VIEW, *INBOX_COLUMNS, action_id, other_id, "critical", "ago"):
                    assert needle in inbox_text, needle
                assert inbox_shot.stat().st_size > 10_000  # a real picture of the table, not a blank page

                async with evidence.step("workflow"):
                    await page.get_by_role("link", name=action_id, exact=True).click()
                    await page.wait_for_url(re.compile(r"/workflows/action-"))
                    await expect(page.get_by_role("heading", name=action_id)).to_be_visible()

                async with evidence.step("timeline"):
                    # Each step says what it is: the plan activity and the deadline timer read as sentences.
                    for label in (plan_step(record.action), "approval deadline", "then escalates to on-call"):
                        await expect(page.get_by_text(re.compile(re.escape(label))).first).to_be_visible()
                    assert "1 (4h)" not in await page.locator("body").inner_text()
                action_shot = await evidence.shot("action-timeline")
                assert action_shot.stat().st_size > 10_000

                async with evidence.step("user-metadata"):
                    await page.get_by_role("tab", name="User Metadata").click()
                    for heading in ("Summary", "Details", "Current Details"):
                        await expect(page.get_by_role("heading", name=heading, exact=True)).to_be_visible()
                    # Summary and details are markdown rendered in iframes: read every frame.
                    text = await evidence.wait_for_text(
                        [
                            static_summary(record.action),  # the summary
                            "risk: high",  # the static details
                            "--name decide",  # the long commands, wrapped, in the static details
                            "Waiting for approval: 0 of 1",  # the current details: what to do now
                            "Decide before",
                            "then it escalates to on-call",
                            "Send an Update",
                            f"aiops approvals approve {action_id}",
                            "never send them by hand",
                        ]
                    )
                    assert "Approve from a terminal" not in text  # would still say so once it is done

                async with evidence.step("refused-update"):
                    # The update path: a refusal is shown in the dialog at once.
                    dialog = await _open(page, "Send an Update")
                    await _choose(dialog, "Select an update", action_contract.DECIDE)
                    await _type_data(page, dialog, {**REFUSED, "approve": True})
                    await dialog.get_by_role("button", name="Submit", exact=True).click()
                    await expect(dialog).to_contain_text("unknown approver 'mallory'")
                    await dialog.get_by_role("button", name="Cancel", exact=True).last.click()
                    await expect(dialog).to_be_hidden()

                async with evidence.step("refused-signal"):
                    # The signal path says only "Workflow signaled."; the refusal heads the current
                    # details as soon as they are fetched again (R, the UI's own refresh), no reload.
                    dialog = await _open(page, "Send a Signal")
                    await _choose_signal(dialog, action_contract.APPROVE)
                    await _type_data(page, dialog, REFUSED)
                    await dialog.get_by_role("button", name="Submit").click()
                    await expect(dialog).to_be_hidden()
                    await eventually(lambda: aiops.approvals.action(action_id), lambda r: bool(r.refused))
                    url = page.url
                    await page.keyboard.press("r")
                    await evidence.wait_for_text(["Refused: mallory may not approve (signal"])
                    assert page.url == url

                async with evidence.step("signal-dialog"):
                    dialog = await _open(page, "Send a Signal")
                    await _choose_signal(dialog, action_contract.APPROVE)
                    data = await _type_data(page, dialog, approval)
                    assert json.loads(await data.inner_text()) == approval
                    plain = dialog.get_by_role("radio", name="json/plain")
                    if await plain.count():
                        await expect(plain).to_be_checked()

                async with evidence.step("signal-sent"):
                    await dialog.get_by_role("button", name="Submit").click()
                    # What counts is the signal's effect, read through the client: the dialog itself
                    # sometimes keeps spinning when the action completes during the UI's refresh that
                    # follows a signal (seen with UI 2.54.1); the reload below leaves it behind.
                    done = await asyncio.wait_for(aiops.approvals.wait_for_action(action_id), 60)
                browser_seconds = time.monotonic() - started

                async with evidence.step("completed"):
                    await page.reload(wait_until="domcontentloaded")
                    await expect(
                        page.get_by_role("status").filter(has_text=re.compile(r"^\s*completed\s*$", re.I))
                    ).to_be_visible()
                    await page.get_by_role("tab", name="User Metadata").click()
                    # Once final, the current details say what happened, not what to do.
                    text = await evidence.wait_for_text(
                        [
                            "Verified: done, nothing left to do",
                            "Approved by alice (signed; signal",
                            "Nothing is left to decide",
                        ]
                    )
                    assert "Waiting for approval" not in text and "Send an Update" not in text

                async with evidence.step("inbox-empty"):
                    await _until_gone_from_inbox(page, inbox_url, action_id, still_pending=other_id)

            assert done.status in (ActionStatus.SUCCEEDED, ActionStatus.VERIFIED), done
            # Both refusals are recorded by the workflow (the update's is decided in its handler).
            assert [(r.approver, r.channel) for r in done.refused] == [
                ("mallory", "update"),
                ("mallory", "signal"),
            ], done.refused
            first = done.approvals[0]
            assert (first.approver, first.approved, first.channel, first.comment) == (
                "alice",
                True,
                "signal",
                APPROVAL["comment"],
            )
            assert first.authenticated and first.token_id  # the pasted token was verified
            assert LEDGER["executed"] == [action_id]
            print(f"\napproved in the Web UI in {browser_seconds:.1f}s; screenshots in {evidence.directory}")
        finally:
            await browser.close()


async def _set_up_the_inbox(page: Page) -> None:
    """docs/web-ui.md's steps: the columns, relative times (the age), and the query saved as a view."""
    await page.get_by_role("button", name="Configure Columns").click()
    for name in INBOX_COLUMNS:
        await page.get_by_role("button", name=f"Add {name} column").click()
    for name in ("Run ID", "Type", "End"):
        await page.get_by_role("button", name=f"Remove {name} column").click()
    await page.get_by_role("button", name=re.compile("close", re.I)).first.click()
    await page.get_by_test_id("timezones-menu-button").click()
    await page.get_by_test_id("timezones-relative-toggle").click()
    await page.get_by_test_id("timezones-menu-button").click()
    await page.get_by_role("button", name="Save as New").click()
    await page.get_by_test_id("workflow-save-view-modal-input").fill(INBOX_VIEW)
    await page.get_by_role("dialog").filter(visible=True).get_by_role("button", name="Save").click()


async def _open(page: Page, item: str) -> Locator:
    await page.get_by_role("button", name="More Actions").click()
    await page.get_by_role("menuitem", name=item).filter(visible=True).click()
    dialog = page.get_by_role("dialog", name=item)
    await expect(dialog).to_be_visible()
    return dialog


async def _choose(dialog: Locator, button: str, name: str) -> None:
    """Pick a declared handler: its option reads its name, then its description."""
    await dialog.get_by_role("button", name=button).click()
    await dialog.get_by_role("option", name=re.compile(rf"^{re.escape(name)}\b")).click()


async def _type_data(page: Page, dialog: Locator, body: dict[str, object]) -> Locator:
    data = dialog.get_by_role("textbox", name="Data")
    await data.click()
    await page.keyboard.press("Control+A")
    # insert_text: one input, so the code editor's bracket auto-closing stays out of it.
    await page.keyboard.insert_text(json.dumps(body))
    await dialog.get_by_text("Single JSON payload supported.").click()  # the editor commits on blur
    return data


async def _choose_signal(dialog: Locator, name: str) -> None:
    """Pick the signal: from the workflow's declared signals, else type it (older UIs, or Custom)."""
    typed = dialog.get_by_role("textbox", name="Signal name")
    if not await typed.count():
        await dialog.get_by_role("button", name="Select a signal").click()
        option = dialog.get_by_role("option", name=re.compile(rf"^{re.escape(name)}\b"))
        try:
            await option.wait_for(state="visible", timeout=10_000)
            await option.click()
            return
        except PlaywrightTimeout:
            await dialog.get_by_role("option", name=re.compile(r"^Custom")).click()
    await typed.fill(name)


async def _until_gone_from_inbox(
    page: Page, inbox_url: str, action_id: str, still_pending: str, within: float = 20.0
) -> None:
    """The finished action leaves the inbox query while ``still_pending`` stays (visibility may lag
    a moment: reload until it does)."""
    link = page.get_by_role("link", name=action_id, exact=True)
    deadline = time.monotonic() + within
    while True:
        await page.goto(inbox_url, wait_until="domcontentloaded")
        await expect(page.get_by_role("link", name=still_pending, exact=True)).to_be_visible()
        if not await link.count():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{action_id} is still in the approval inbox after {within}s")
        await page.wait_for_timeout(500)
