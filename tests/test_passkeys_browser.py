"""Passkeys made and used by a real browser: headless Chromium with the DevTools virtual
authenticator enrolls through the API and signs an action's decision challenge; the workflow
verifies what Chromium produced (its clientDataJSON, authenticator data and signature), not only
what the test's software authenticator produces.

The page is ``http://localhost:PORT`` (a secure context), answered by Playwright's router: no
console is needed here, the test relays between the page and the API as a console script would.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from aiops.client import AiopsClient
from aiops.contracts.action import ActionStatus
from aiops.contracts.passkey import PasskeyClaims, PasskeyCredential, assertion_from_browser
from tests.helpers import agent_config, start_pending_action
from tests.support.api_stack import api_stack, login_jwt
from tests.support.browser import BrowserUnavailable, ensure_chromium, free_port, launch_chromium
from tests.test_passkeys_api import RP_ID, decide, with_passkey

CREATE = """async (options) => {
  const cred = await navigator.credentials.create(
    {publicKey: PublicKeyCredential.parseCreationOptionsFromJSON(options)});
  return cred.toJSON();
}"""
GET = """async (offer) => {
  const bytes = (b64) => Uint8Array.from(atob(b64.replace(/-/g, '+').replace(/_/g, '/')
    + '='.repeat((4 - b64.length % 4) % 4)), c => c.charCodeAt(0));
  const cred = await navigator.credentials.get({publicKey: {
    challenge: bytes(offer.challenge), rpId: offer.rp_id, timeout: offer.timeout_ms,
    userVerification: 'required',
    allowCredentials: offer.allow_credentials.map(id => ({type: 'public-key', id: bytes(id)})),
  }});
  return cred.toJSON();
}"""


async def test_a_passkey_made_in_chromium_approves_an_action_through_the_api(
    aiops: AiopsClient, worker, tmp_path: Path
) -> None:
    from playwright.async_api import async_playwright

    try:
        install = ensure_chromium()
    except BrowserUnavailable as err:
        pytest.skip(f"the passkey browser test needs Chromium: {err}")
    origin = f"http://localhost:{free_port()}"
    async with async_playwright() as playwright, api_stack(aiops, tmp_path) as api:
        browser = await launch_chromium(playwright, install.path, tmp_path / "profile")
        try:
            page = browser.pages[0] if browser.pages else await browser.new_page()
            await page.route(
                f"{origin}/**", lambda route: route.fulfill(body="<html><body>console</body></html>")
            )
            await page.goto(f"{origin}/")
            cdp = await page.context.new_cdp_session(page)
            await cdp.send("WebAuthn.enable")
            options = {"protocol": "ctap2", "transport": "internal", "hasResidentKey": True,
                       "hasUserVerification": True, "isUserVerified": True}  # fmt: skip
            await cdp.send("WebAuthn.addVirtualAuthenticator", {"options": options})

            async with api.http(login_jwt("alice", ["sre-team", "approvers"])) as alice:
                headers = {"Origin": origin}
                creation = await alice.post("/v1/passkeys/registration-options", headers=headers)
                assert creation.status_code == 200, creation.text
                created: dict[str, Any] = await page.evaluate(CREATE, creation.json())
                enrolled = await alice.post("/v1/passkeys/registration", json=created, headers=headers)
                assert enrolled.status_code == 200, enrolled.text
                line = PasskeyCredential.model_validate(enrolled.json())

                settings = with_passkey(line).model_copy(update={"passkey_origins": [origin]})
                config = agent_config("scripted", approval=settings)
                _, action_id, _ = await start_pending_action(aiops, config, "high", requested_by="dave")
                offer = (
                    await alice.post(f"/v1/actions/{action_id}/passkey-challenge", json={"verb": "approve"})
                ).json()
                assert offer["rp_id"] == RP_ID and offer["allow_credentials"] == [line.id]
                signed: dict[str, Any] = await page.evaluate(GET, offer)
                claims = PasskeyClaims.model_validate(offer["claims"])
                credential = assertion_from_browser(claims, signed).envelope()
                answer = await decide(alice, action_id, credential)
                assert answer.status_code == 200, answer.text
                assert answer.json()["approvals"][0]["token_id"] == f"passkey:{claims.nonce}"
        finally:
            await browser.close()
    assert (await aiops.approvals.wait_for_action(action_id)).status == ActionStatus.VERIFIED
