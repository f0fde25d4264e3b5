"""One touch, signed out, from an action's page to a decision (aiops/console/one_touch.py), over HTTP.

The console verifies the decision's assertion itself (signing the person in) and relays it to
the workflow, which verifies it again. Each wrong assertion (a name it is not registered to, an
unregistered credential, another action's, a replay, no CSRF token) is refused with its reason,
signs nobody in, decides nothing and is audited. The browser walk is
tests/test_console_notice_link.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from aiops.client import AiopsClient
from aiops.contracts.action import ActionStatus
from aiops.contracts.passkey import PasskeyClaims, b64url_decode, passkey_challenge
from tests.helpers import agent_config, start_pending_action
from tests.support.api_stack import api_stack
from tests.support.console_stack import ConsoleStack, console_stack
from tests.support.soft_authenticator import SoftAuthenticator
from tests.test_console import cookie_value, set_cookies
from tests.test_signed_approvals import signed_team

pytestmark = pytest.mark.slow


class Flow:
    """One decision under way in one "browser": its options, flow cookie and CSRF token."""

    def __init__(self, answer: httpx.Response) -> None:
        assert answer.status_code == 200, answer.text
        self.options: dict[str, Any] = answer.json()
        self.cookie = cookie_value(set_cookies(answer)["aiops-signin"])
        self.claims = PasskeyClaims.model_validate(self.options["claims"])
        self.challenge = b64url_decode(self.options["challenge"])
        assert self.challenge == passkey_challenge(self.claims)


async def options(
    http: httpx.AsyncClient, action_id: str, name: str, verb: str = "approve"
) -> httpx.Response:
    http.cookies.clear()
    return await http.post(f"/console/actions/{action_id}/passkey-options", json={"name": name, "verb": verb})


async def post(
    http: httpx.AsyncClient,
    action_id: str,
    flow: Flow,
    key: SoftAuthenticator,
    signed: dict[str, Any],
    **kw: Any,
) -> httpx.Response:
    http.cookies.clear()
    headers = {"cookie": f"aiops-signin={flow.cookie}", "x-csrf-token": kw.pop("csrf", flow.options["csrf"])}
    body = {"credential_id": key.id, **signed, "comment": "one touch"}
    return await http.post(f"/console/actions/{action_id}/passkey-decision", json=body, headers=headers)


def refused(answer: httpx.Response, says: str) -> None:
    assert answer.status_code == 401 and says in answer.json()["error"], (says, answer.text)
    assert "aiops-session" not in set_cookies(answer), "a refused assertion signs nobody in"


async def test_one_touch_signs_in_and_decides_and_each_wrong_assertion_is_refused_and_audited(
    aiops: AiopsClient, worker: Any, tmp_path: Path
) -> None:
    async with console_stack(aiops, tmp_path) as stack, stack.http() as http:
        laptop, phone, stranger = (SoftAuthenticator("localhost", stack.url) for _ in range(3))
        keys = {"alice": laptop, "bob": phone}
        team = signed_team()
        approval = team.model_copy(
            update={
                "approvers": [
                    a.model_copy(update={"passkeys": [keys[a.name].config_line()]}) if a.name in keys else a
                    for a in team.approvers
                ],
                "passkey_rp_id": "localhost",
                "passkey_origins": [stack.url],
            }
        )
        configs = [agent_config("scripted", approval=approval) for _ in range(2)]
        _, action_id, record = await start_pending_action(aiops, configs[0], "high", requested_by="dave")
        _, other_id, _ = await start_pending_action(aiops, configs[1], "high", requested_by="dave")

        # Signed out, the page offers the name and the buttons, and shows no evidence.
        http.cookies.clear()
        page = await http.get(f"/console/actions/{action_id}")
        assert (
            page.status_code == 200
            and "Approve with passkey" in page.text
            and 'id="decide-name"' in page.text
        )
        assert record.plan_digest and record.plan_digest not in page.text
        assert "The triggering event" not in page.text and record.action.description not in page.text

        nobody = await options(http, action_id, "carol")
        refused(nobody, "'carol' has no registered passkey")
        flow = Flow(await options(http, action_id, "alice"))
        assert flow.claims.aud == action_id and flow.claims.sub == "alice"
        assert (flow.claims.verb, flow.claims.digest) == ("approve", record.plan_digest)
        assert flow.options["allow_credentials"] == [laptop.id] and flow.options["rp_id"] == "localhost"
        bobs = Flow(await options(http, action_id, "bob"))
        other = Flow(await options(http, other_id, "alice"))

        wrong = [
            # alice's passkey, but the decision under way names bob
            (action_id, bobs, laptop, laptop.get(bobs.challenge), "not registered to 'bob'"),
            (action_id, flow, stranger, stranger.get(flow.challenge), "unregistered credential"),
            # an assertion over the other action's claims, against this action's flow
            (action_id, flow, laptop, laptop.get(other.challenge), "does not verify"),
            # the other action's flow and assertion, posted to this action
            (action_id, other, laptop, laptop.get(other.challenge), "for another action"),
            (
                action_id,
                flow,
                laptop,
                laptop.get(flow.challenge, origin="http://evil.example"),
                "does not verify",
            ),
            (action_id, flow, laptop, laptop.get(flow.challenge, user_verified=False), "does not verify"),
        ]
        for where, under_way, key, signed, says in wrong:
            refused(await post(http, where, under_way, key, signed), says)
        good = laptop.get(flow.challenge)
        refused(await post(http, action_id, flow, laptop, good, csrf="x" * 32), "CSRF token")
        refused(await post(http, action_id, flow, laptop, good, csrf=""), "CSRF token")
        for checked in (action_id, other_id):
            assert (await aiops.approvals.action(checked)).status == ActionStatus.PENDING_APPROVAL

        answer = await post(http, action_id, flow, laptop, good)
        assert answer.status_code == 200 and answer.json() == {
            "next": f"/console/actions/{action_id}?decided=approve"
        }
        session = cookie_value(set_cookies(answer)["aiops-session"])
        me = (await http.get("/v1/me", headers={"cookie": f"aiops-session={session}"})).json()
        assert (me["name"], me["roles"], me["via"]) == ("alice", ["approver", "viewer"], "passkey")
        done = await aiops.approvals.wait_for_action(action_id)
        assert done.status == ActionStatus.VERIFIED, done.status
        assert [(a.approver, a.comment, str(a.token_id).startswith("passkey:")) for a in done.approvals] == [
            ("alice", "one touch", True)
        ]

        # The same touch again decides nothing: not here, not on the other action.
        refused(await post(http, action_id, flow, laptop, good), "already used")
        refused(await post(http, other_id, flow, laptop, good), "for another action")
        assert (await aiops.approvals.action(other_id)).status == ActionStatus.PENDING_APPROVAL
        late = await options(http, action_id, "alice")
        refused(late, "no longer pending approval")

        # Rejecting takes one touch too, and binds no plan.
        reject = Flow(await options(http, other_id, "bob", "reject"))
        assert (reject.claims.verb, reject.claims.digest, reject.claims.sub) == ("reject", None, "bob")
        answer = await post(http, other_id, reject, phone, phone.get(reject.challenge))
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"next": f"/console/actions/{other_id}?decided=reject"}
        assert (await aiops.approvals.wait_for_action(other_id)).status == ActionStatus.REJECTED

        ours = (f"/console/actions/{action_id}/", f"/console/actions/{other_id}/")
        stored = [r for r in await stack.tokens.refusals(500) if r.path.startswith(ours)]
        assert len(stored) == 1 + len(wrong) + 2 + 2 + 1, [r.reason for r in stored]
        assert any("'bob'" in r.reason and r.who == "bob" for r in stored)


def alice_with(key: SoftAuthenticator, url: str) -> Any:
    """The signed team with ``key`` registered to alice, for the console at ``url``."""
    team = signed_team()
    return team.model_copy(
        update={
            "approvers": [
                a.model_copy(update={"passkeys": [key.config_line()]}) if a.name == "alice" else a
                for a in team.approvers
            ],
            "passkey_rp_id": "localhost",
            "passkey_origins": [url],
        }
    )


async def test_one_touch_refuses_what_is_not_a_decision(
    aiops: AiopsClient, worker: Any, tmp_path: Path
) -> None:
    stack: ConsoleStack
    async with console_stack(aiops, tmp_path) as stack, stack.http() as http:
        laptop = SoftAuthenticator("localhost", stack.url)
        await aiops.agents.start(agent_config("scripted", approval=alice_with(laptop, stack.url)))
        page = await http.get("/console/actions/a%3Cb%3E")
        assert page.status_code == 400 and "that is not an action id" in page.text and "<b>" not in page.text
        bad = await http.post("/console/actions/a/passkey-options", json={"name": "alice", "verb": "delete"})
        assert bad.status_code == 422 and "approve or reject" in bad.text
        bad = await http.post("/console/actions/a/passkey-options", json={"name": "", "verb": "approve"})
        assert bad.status_code == 422 and "name the person" in bad.text
        bad = await http.post("/console/actions/a/passkey-options", content=b"name=alice")
        assert bad.status_code == 415
        # Without an approver's name nothing is said of the action, not even whether it exists.
        stranger = await options(http, "nope", "nobody-at-all")
        refused(stranger, "'nobody-at-all' has no registered passkey in the running agents' configs")
        missing = await options(http, "nope", "alice", "reject")
        refused(missing, "there is no action 'nope'")
        body = {"credential_id": "A" * 22, "authenticator_data": "A" * 60, "client_data_json": "A" * 30,
                "signature": "A" * 20}  # fmt: skip
        cookieless = await http.post("/console/actions/a/passkey-decision", json=body)
        refused(cookieless, "no passkey decision under way")
        forged = await http.post(
            "/console/actions/a/passkey-decision", json=body, headers={"cookie": "aiops-signin=e30.x"}
        )
        refused(forged, "not signed by this console")
        extra = await http.post("/console/actions/a/passkey-decision", json={**body, "name": "alice"})
        refused(extra, "malformed")


async def test_the_signed_out_action_page_is_off_with_the_console(aiops: AiopsClient, tmp_path: Path) -> None:
    async with api_stack(aiops, tmp_path) as api, api.http() as http:
        page = await http.get("/console/actions/action-x:e-1")
        assert page.status_code == 404 and "the console is off: add `api.console`" in page.text
        answer = await http.post("/console/actions/action-x:e-1/passkey-options", json={"name": "alice"})
        assert answer.status_code == 404 and "the console is off" in answer.json()["error"]
