"""Issue 26's promise end to end, on the real stack: an approver goes from an approval notice's
link to an executed action in the browser with one passkey touch.

The agent's config sets ``approval.console_url`` to the console's base URL and a webhook notice
to a real local receiver. The link is the one the receiver got (never built here); Chromium
opens it signed out, names the approver and approves with exactly one assertion of the DevTools
virtual authenticator (counted through its credential's signature counter), which both signs
alice in and decides (aiops/console/one_touch.py); the action executes. Pressing again with the
same assertion decides nothing. Screenshots go to the test's ``screens/``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from aiops.client import AiopsClient
from aiops.contracts.action import ActionStatus
from aiops.contracts.config import NotifyChannel
from tests.helpers import agent_config, eventually, start_pending_action
from tests.support.browser import Evidence
from tests.support.console_stack import console_stack
from tests.support.http_receiver import Receiver, http_receiver
from tests.test_console_browser import browser, chromium, enroll, sign_in, sign_out  # noqa: F401
from tests.test_signed_approvals import signed_team

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


async def authenticator(page: Any) -> tuple[Any, str]:
    """A platform authenticator on ``page`` through DevTools, and its id (to read its credentials)."""
    cdp = await page.context.new_cdp_session(page)
    await cdp.send("WebAuthn.enable")
    options = {"protocol": "ctap2", "transport": "internal", "hasResidentKey": False,
               "hasUserVerification": True, "isUserVerified": True}  # fmt: skip
    added = await cdp.send("WebAuthn.addVirtualAuthenticator", {"options": options})
    return cdp, str(added["authenticatorId"])


async def sign_count(cdp: Any, authenticator_id: str) -> int:
    """The one credential's signature counter: the authenticator adds one per assertion (touch)."""
    found = await cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator_id})
    [credential] = found["credentials"]
    return int(credential["signCount"])


async def pending_notice(receiver: Receiver, action_id: str) -> dict[str, Any]:
    async def notices() -> list[dict[str, Any]]:
        return [r.body for r in receiver.accepted("/hook") if r.body.get("step") == "pending"]

    [notice] = await eventually(notices, lambda found: len(found) == 1)
    assert notice["action_id"] == action_id, notice
    return notice


async def test_from_an_approval_notices_link_to_an_executed_action_with_one_passkey_touch(
    aiops: AiopsClient,
    worker: Any,
    tmp_path: Path,
    browser: Any,  # noqa: F811
) -> None:
    async with console_stack(aiops, tmp_path) as stack, http_receiver() as receiver:
        page = await browser.new_page()
        cdp, authenticator_id = await authenticator(page)
        evidence = Evidence(page, tmp_path / "screens")

        async with evidence.step("alice-enrolled-a-passkey"):
            await sign_in(evidence, stack, "alice")
            alice_key = await enroll(evidence, stack, "alice")
            await sign_out(evidence, stack)

        # The admin puts the enrolled line in the config, with the console's address for notices.
        team = signed_team()
        approval = team.model_copy(
            update={
                "approvers": [
                    a.model_copy(update={"passkeys": [alice_key]}) if a.name == "alice" else a
                    for a in team.approvers
                ],
                "passkey_rp_id": "localhost",
                "passkey_origins": [stack.url],
                "console_url": stack.url,
                "notify": [NotifyChannel(type="webhook", url=receiver.url("/hook"))],
            }
        )
        config = agent_config("scripted", approval=approval)
        _, action_id, record = await start_pending_action(aiops, config, "high", requested_by="dave")
        assert record.status == ActionStatus.PENDING_APPROVAL

        notice = await pending_notice(receiver, action_id)
        link = notice["console_link"]
        assert isinstance(link, str) and link, f"the approval notice carries no console link: {notice}"
        parts, base = urlsplit(link), urlsplit(stack.url)
        assert (parts.scheme, parts.netloc) == (base.scheme, base.netloc), link
        assert parts.path == f"/console/actions/{action_id}" and not parts.query and not parts.fragment, link

        async with evidence.step("the-notice-link-opened-signed-out"):
            await page.goto(link)
            await evidence.wait_for_text(
                ["not signed in", action_id, "Your name", "Approve with passkey", "Reject with passkey"]
            )

        # What the one press sends, kept to press again without a touch (below).
        pressed: dict[str, Any] = {}

        async def keep(route: Any) -> None:
            request = route.request
            pressed.update(body=request.post_data_json, csrf=await request.header_value("x-csrf-token"))
            pressed["cookies"] = {c["name"]: c["value"] for c in await page.context.cookies()}
            await route.continue_()

        await page.route("**/passkey-decision", keep)
        touches = await sign_count(cdp, authenticator_id)
        async with evidence.step("approved-with-one-touch-signed-in-executed"):
            await page.fill("#decide-name", "alice")
            await page.fill("#comment", "from the notice: approved")
            await page.click("button.passkey.approve")
            await page.wait_for_url(f"{link}?decided=approve")
            done = await eventually(
                lambda: aiops.approvals.action(action_id), lambda r: r.status.is_final, within=60
            )
            await page.reload()
            await evidence.wait_for_text(
                ["Signed in as alice", "via passkey", "alice approved", "from the notice: approved",
                 record.plan_digest or "no digest", "verified", "Result: succeeded"]
            )  # fmt: skip
        assert await sign_count(cdp, authenticator_id) == touches + 1, "from the link to executed: one touch"
        me = await page.evaluate("fetch('/v1/me').then(r => r.json())")
        assert (me["name"], me["roles"], me["via"]) == ("alice", ["approver", "viewer"], "passkey"), me

        # A second press without a new touch (the same assertion and flow cookie) decides nothing:
        # not this action again, not another one pending for the same approver.
        second = agent_config("scripted", approval=approval)
        _, other_id, _ = await start_pending_action(aiops, second, "high", requested_by="dave")
        flow = pressed["cookies"]["aiops-signin"]
        async with stack.http() as http:
            for where, says in ((action_id, "already used"), (other_id, "for another action")):
                again = await http.post(
                    f"/console/actions/{where}/passkey-decision",
                    json=pressed["body"],
                    headers={"x-csrf-token": pressed["csrf"], "cookie": f"aiops-signin={flow}"},
                )
                assert again.status_code == 401 and says in again.json()["error"], again.text
                assert "aiops-session" not in again.headers.get("set-cookie", "")
        assert (await aiops.approvals.action(other_id)).status == ActionStatus.PENDING_APPROVAL
        assert await sign_count(cdp, authenticator_id) == touches + 1

        assert done.status == ActionStatus.VERIFIED, done.status
        assert [(a.approver, str(a.token_id).startswith("passkey:")) for a in done.approvals] == [
            ("alice", True)
        ]
        assert done.plan_digest == record.plan_digest
        # The loop closes where it began: the receiver is told who decided, with the same link.
        resolved = await eventually(lambda: _resolved(receiver), lambda found: len(found) == 1, within=30)
        assert resolved[0]["outcome"] == "approved by alice" and resolved[0]["console_link"] == link
        assert len(list((tmp_path / "screens").glob("*.png"))) >= 4


async def _resolved(receiver: Receiver) -> list[dict[str, Any]]:
    return [r.body for r in receiver.accepted("/hook") if r.body.get("step") == "resolved"]
