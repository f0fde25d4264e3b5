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
from aiops.contracts.passkey import PasskeyClaims, PasskeyCredential, b64url, passkey_challenge
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

# The llm agent's evidence as the action carries it (agents/llm/proposal.py), with hostile text.
DIAGNOSIS = {
    "summary": "disk /var is 97% full <script>alert(1)</script>",
    "confidence": 0.82,
    "why": "logs grew after the deploy",
    "evidence": [{"observation": "97% used", "tool_call_id": "call-1"}],
    "tool_calls": [
        {"tool_call_id": "call-1", "tool": "prometheus_query", "ok": True,
         "arguments": {"query": "node_filesystem_avail_bytes{mountpoint='/var'}"}, "result": "0.03"}
    ],
}  # fmt: skip


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


async def sign_in(evidence: Evidence, stack: ConsoleStack, user: str, start: str = "/console/") -> None:
    """From a console page (the front door, or an approval notice's link to an action) through
    the identity provider's login form, back to that page signed in."""
    page = evidence.page
    await page.goto(f"{stack.url}{start}")
    if start.startswith("/console/actions/"):  # signed out, an action's page offers one touch or sign-in
        await page.click("#signin-first")
    else:
        await evidence.wait_for_text(["sign in first"])
    await evidence.wait_for_text(["Sign in", f"Sign in with {stack.provider.issuer}"])
    await page.click("#signin-oidc")
    await page.wait_for_selector("#username")
    await evidence.wait_for_text(["Test identity provider"])
    await page.fill("#username", user)
    await page.fill("#password", PASSWORD)
    await page.click("#login")
    await page.wait_for_url(f"{stack.url}{start}")
    await evidence.wait_for_text([f"Signed in as {user}"])


async def test_an_approver_signs_in_reads_the_evidence_decides_and_watches_it_execute(
    aiops: AiopsClient, worker, tmp_path: Path, browser: Any
) -> None:
    config = agent_config("scripted", approval=signed_team())
    _, action_id, record = await start_pending_action(
        aiops, config, "critical", requested_by="dave", diagnosis=DIAGNOSIS
    )
    digest = record.plan_digest
    assert digest is not None
    async with console_stack(aiops, tmp_path) as stack:
        page = await browser.new_page()
        dialogs: list[str] = []
        page.on("dialog", lambda d: dialogs.append(d.message))
        violations: list[str] = []
        page.on(
            "console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None
        )
        evidence = Evidence(page, tmp_path / "screens")

        async with evidence.step("alice-signed-in-inbox"):
            await sign_in(evidence, stack, "alice")
            await evidence.wait_for_text(["Waiting for a decision"])
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
                 "critical actions always need approval", "0 of 2 needed", "Deadline",
                 "escalated once to on-call", "Approve with passkey", "LLM diagnosis",
                 "disk /var is 97% full", "confidence 0.82",
                 "prometheus_query", "node_filesystem_avail_bytes", "<script>alert(1)</script>"]
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

        async with evidence.step("bob-signed-in-from-the-actions-link"):
            await page.click("text=Sign out")
            await page.wait_for_url(f"{stack.url}/console/signin")
            await sign_in(evidence, stack, "bob", start=f"/console/actions/{action_id}")  # a notice's link
            await evidence.wait_for_text([action_id, "1 of 2 needed", "alice approved"])

        async with evidence.step("bob-approved-executed"):
            await page.click("summary")
            await page.fill("textarea[name=credential]", token(BOB, action_id, digest))
            await page.click("#token-form button[value=approve]")
            await evidence.wait_for_text(["approve recorded", "bob approved"])
            await eventually(lambda: aiops.approvals.action(action_id), lambda r: r.status.is_final)
            await page.reload()  # a GET: the decision's POST was redirected, a reload does not repeat it
            await evidence.wait_for_text(["verified", "Result: succeeded"])
            assert "no longer pending" not in await evidence.all_text()

        assert not violations and not dialogs, (violations, dialogs)  # the hostile text never ran
        refused = await aiops.audit.rows(action_id=action_id, limit=100)
        assert any(r.step == AuditStep.APPROVAL_REFUSED and "not for this action" in str(r) for r in refused)
        assert len(list((tmp_path / "screens").glob("*.png"))) >= 7


async def virtual_authenticator(page: Any) -> Any:
    """A platform authenticator in the browser, through DevTools: it answers WebAuthn without a person."""
    cdp = await page.context.new_cdp_session(page)
    await cdp.send("WebAuthn.enable")
    # No resident keys: a second passkey of the same person must not replace the first (a
    # discoverable credential of the same user and relying party would).
    options = {"protocol": "ctap2", "transport": "internal", "hasResidentKey": False,
               "hasUserVerification": True, "isUserVerified": True}  # fmt: skip
    await cdp.send("WebAuthn.addVirtualAuthenticator", {"options": options})
    return cdp


async def enroll(evidence: Evidence, stack: ConsoleStack, name: str) -> PasskeyCredential:
    page = evidence.page
    await page.goto(f"{stack.url}/console/passkeys")
    await page.click("#enroll")
    await evidence.wait_for_text(["Put this line under your passkeys:", '"public_key"'])
    await evidence.shot(f"enrolled-{name}")
    line = await page.inner_text("#enroll-line")
    return PasskeyCredential.model_validate_json(line.removeprefix("- "))


async def sign_out(evidence: Evidence, stack: ConsoleStack) -> None:
    await evidence.page.click("text=Sign out")
    await evidence.page.wait_for_url(f"{stack.url}/console/signin")


def tampered(**update: Any) -> Any:
    """A route handler that alters the API's passkey challenge (and re-derives its challenge), as a
    hostile page or proxy could: the browser then signs claims the workflow must refuse."""

    async def handler(route: Any) -> None:
        response = await route.fetch()
        offer = await response.json()
        claims = PasskeyClaims.model_validate(offer["claims"]).model_copy(
            update={k: v for k, v in update.items() if k != "allow_credentials"}
        )
        offer["claims"] = claims.model_dump(mode="json")
        offer["challenge"] = b64url(passkey_challenge(claims))
        if "allow_credentials" in update:
            offer["allow_credentials"] = update["allow_credentials"]
        await route.fulfill(response=response, json=offer)

    return handler


async def decide_with_passkey(evidence: Evidence, verb: str = "approve") -> None:
    await evidence.page.click(f"button.passkey.{verb}")


async def test_passkeys_enroll_and_decide_and_every_wrong_assertion_is_refused_on_the_page(
    aiops: AiopsClient, worker, tmp_path: Path, browser: Any
) -> None:
    async with console_stack(aiops, tmp_path) as stack:
        page = await browser.new_page()
        await virtual_authenticator(page)
        evidence = Evidence(page, tmp_path / "screens")

        async with evidence.step("enrolled"):
            await sign_in(evidence, stack, "alice")
            alice_key = await enroll(evidence, stack, "alice")
            await sign_out(evidence, stack)
            await sign_in(evidence, stack, "bob")
            bob_key = await enroll(evidence, stack, "bob")
            await sign_out(evidence, stack)

        team = signed_team()
        keys = {"alice": alice_key, "bob": bob_key}
        approval = team.model_copy(
            update={
                "approvers": [a.model_copy(update={"passkeys": [keys[a.name]]}) if a.name in keys else a
                              for a in team.approvers],
                "passkey_rp_id": "localhost",
                "passkey_origins": [stack.url],
            }
        )  # fmt: skip
        first = agent_config("scripted", approval=approval)
        second = agent_config("scripted", approval=approval)
        _, action_id, record = await start_pending_action(aiops, first, "critical", requested_by="dave")
        _, other_id, _ = await start_pending_action(aiops, second, "critical", requested_by="dave")

        await sign_in(evidence, stack, "alice")
        spare = await enroll(evidence, stack, "alice-spare")  # enrolled, never added to the config
        await page.goto(f"{stack.url}/console/actions/{action_id}")

        async with evidence.step("refused-another-plan"):
            await page.route("**/passkey-challenge", tampered(digest="0" * 64))
            await decide_with_passkey(evidence)
            await evidence.wait_for_text(["Refused:", "approves another plan"])
            await page.unroute("**/passkey-challenge")

        sent: list[str] = []

        async def keep(route: Any) -> None:
            sent.append(route.request.post_data)
            await route.continue_()

        async with evidence.step("alice-approved-with-passkey"):
            await page.route("**/decision", keep)
            await page.fill("#comment", "checked the plan")
            await decide_with_passkey(evidence)
            await evidence.wait_for_text(["1 of 2 needed", "alice approved", "checked the plan"])
            await page.unroute("**/decision")

        async with evidence.step("refused-replayed"):

            async def replay(route: Any) -> None:
                await route.continue_(post_data=sent[0])

            await page.route("**/decision", replay)
            await decide_with_passkey(evidence)
            await evidence.wait_for_text(["Refused:", "already used"])
            await page.unroute("**/decision")

        await page.goto(f"{stack.url}/console/actions/{other_id}")
        async with evidence.step("refused-another-action"):
            await page.route("**/passkey-challenge", tampered(aud=action_id))
            await decide_with_passkey(evidence)
            await evidence.wait_for_text(["Refused:", "made for another action"])
            await page.unroute("**/passkey-challenge")

        async with evidence.step("refused-unregistered"):
            await page.route("**/passkey-challenge", tampered(allow_credentials=[spare.id]))
            await decide_with_passkey(evidence)
            await evidence.wait_for_text(["Refused:", "unregistered credential"])
            await page.unroute("**/passkey-challenge")

        async with evidence.step("passkey-sign-in-refused-without-a-registered-passkey"):
            await sign_out(evidence, stack)
            await page.fill("#signin-name", "carol")
            await page.click("#signin-passkey")
            await evidence.wait_for_text(["Refused:", "'carol' has no registered passkey"])

        async with evidence.step("bob-signed-in-with-passkey"):
            await page.goto(f"{stack.url}/console/actions/{action_id}")  # a notice's link, signed out
            await page.click("#signin-first")  # to read the evidence before deciding (a second touch)
            await page.fill("#signin-name", "bob")
            await page.click("#signin-passkey")
            await page.wait_for_url(f"{stack.url}/console/actions/{action_id}")
            await evidence.wait_for_text(["Signed in as bob", "via passkey", "1 of 2 needed"])

        async with evidence.step("bob-second-approver-executed"):
            async with page.expect_navigation():  # the console's script reloads the page itself
                await decide_with_passkey(evidence)
            await eventually(lambda: aiops.approvals.action(action_id), lambda r: r.status.is_final)
            # Reload only after the script's own reload has landed: two at once abort each other.
            await page.reload()
            await evidence.wait_for_text(["bob approved", "alice approved", "verified", "Result: succeeded"])

        done = await aiops.approvals.action(action_id)
        passkeyed = [(a.approver, str(a.token_id).startswith("passkey:")) for a in done.approvals]
        assert passkeyed == [("alice", True), ("bob", True)]
        assert done.plan_digest == record.plan_digest
        refusals = [
            (action_id, "approves another plan"),
            (action_id, "already used"),
            (other_id, "made for another action"),
            (other_id, "unregistered credential"),
        ]
        for refused_on, says in refusals:
            rows = await aiops.audit.rows(action_id=refused_on, limit=200)
            assert any(
                r.step == AuditStep.APPROVAL_REFUSED and says in r.detail.get("reason", "") for r in rows
            ), says
