"""The web console in headless Chromium against the real stack: sign in at a real local OIDC
provider, see the inbox, open an action, decide, watch it execute; a second approver on a critical
action; refusals shown with their reason and audited. Each step's screenshot is saved in the
test's tmp dir and the page checked for the step's key texts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from playwright.async_api import async_playwright

from aiops.client import AiopsClient
from aiops.contracts.activities import AuditStep
from tests.helpers import agent_config, eventually, start_pending_action
from tests.support.browser import (
    LAPTOP_VIEWPORT,
    BrowserUnavailable,
    ChromiumInstall,
    Evidence,
    ensure_chromium,
    launch_chromium,
)
from tests.support.console_stack import PASSWORD, ConsoleStack, console_stack
from tests.test_signed_approvals import ALICE, BOB, signed_team, token

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def chromium() -> ChromiumInstall:
    try:
        return ensure_chromium()
    except BrowserUnavailable as err:
        pytest.skip(f"the console's browser test needs Chromium: {err}")


@pytest_asyncio.fixture
async def browser(chromium: ChromiumInstall, tmp_path: Path) -> AsyncIterator[Any]:
    async with async_playwright() as playwright:
        try:
            context = await launch_chromium(
                playwright, chromium.path, tmp_path / "chromium-profile", viewport=LAPTOP_VIEWPORT
            )
        except BrowserUnavailable as err:
            pytest.skip(str(err))
        try:
            yield context
        finally:
            await context.close()


async def sign_in(evidence: Evidence, stack: ConsoleStack, user: str) -> None:
    """From the console's front door through the identity provider's login form, back signed in."""
    page = evidence.page
    await page.goto(f"{stack.url}/console/")
    await evidence.wait_for_text(["Sign in", "sign in first", f"Sign in with {stack.provider.issuer}"])
    await page.click("#signin-oidc")
    await page.wait_for_selector("#username")
    await evidence.wait_for_text(["Test identity provider"])
    await page.fill("#username", user)
    await page.fill("#password", PASSWORD)
    await page.click("#login")
    await page.wait_for_url(f"{stack.url}/console/")
    await evidence.wait_for_text([f"Signed in as {user}", "Waiting for a decision"])


async def test_an_approver_signs_in_reads_the_evidence_decides_and_watches_it_execute(
    aiops: AiopsClient, worker, tmp_path: Path, browser: Any
) -> None:
    config = agent_config("scripted", approval=signed_team())
    _, action_id, record = await start_pending_action(aiops, config, "critical", requested_by="dave")
    digest = record.plan_digest
    assert digest is not None
    async with console_stack(aiops, tmp_path) as stack:
        page = await browser.new_page()
        violations: list[str] = []
        page.on(
            "console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None
        )
        evidence = Evidence(page, tmp_path / "screens")

        async with evidence.step("alice-signed-in-inbox"):
            await sign_in(evidence, stack, "alice")
            await evidence.wait_for_text(
                [config.id, "critical", "0 of 2", "Agent", "Risk", "Age", "Approvals"]
            )
        cookies = {c["name"]: c for c in await browser.cookies(stack.url)}
        session = cookies["aiops-session"]
        assert session["httpOnly"] and session["sameSite"] == "Strict", session

        async with evidence.step("inbox-filtered-out"):
            await page.goto(f"{stack.url}/console/?risk=low")
            await evidence.wait_for_text(["No action is waiting for a decision with these filters"])

        async with evidence.step("action-page"):
            await page.goto(f"{stack.url}/console/?agent={config.id}&risk=critical")
            await page.click(f"text={record.action.description.splitlines()[0][:30]}")
            await evidence.wait_for_text(
                [action_id, "pending_approval", "The plan", digest, "The triggering event", "The policy",
                 "0 of 2 needed", "Deadline", "Approve with passkey"]
            )  # fmt: skip

        async with evidence.step("refused-token-for-another-action"):
            await page.click("summary")
            await page.fill("textarea[name=credential]", token(ALICE, action_id + "x", digest))
            await page.click("#token-form button[value=approve]")
            await evidence.wait_for_text(["Refused:", "not for this action"])

        async with evidence.step("alice-approved-1-of-2"):
            await page.fill("#comment", "disk is full, go")
            await page.click("summary")
            await page.fill("textarea[name=credential]", token(ALICE, action_id, digest))
            await page.click("#token-form button[value=approve]")
            await evidence.wait_for_text(
                ["approve recorded", "1 of 2 needed", "alice approved", "disk is full, go"]
            )

        async with evidence.step("bob-signed-in"):
            await page.click("text=Sign out")
            await page.wait_for_url(f"{stack.url}/console/signin")
            await sign_in(evidence, stack, "bob")
            await evidence.wait_for_text([config.id, "1 of 2"])

        async with evidence.step("bob-approved-executed"):
            await page.goto(f"{stack.url}/console/actions/{action_id}")
            await page.click("summary")
            await page.fill("textarea[name=credential]", token(BOB, action_id, digest))
            await page.click("#token-form button[value=approve]")
            await evidence.wait_for_text(["approve recorded", "bob approved"])
            await eventually(lambda: aiops.approvals.action(action_id), lambda r: r.status.is_final)
            await page.reload()
            await evidence.wait_for_text(["verified", "Result: succeeded"])

        assert not violations, violations
        refused = await aiops.audit.rows(None, action_id, None, None, 100)
        assert any(r.step == AuditStep.APPROVAL_REFUSED and "not for this action" in str(r) for r in refused)
        assert len(list((tmp_path / "screens").glob("*.png"))) >= 7
