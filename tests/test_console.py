"""The web console against the real stack: a local OIDC provider, the gateway, Temporal, PostgreSQL.

Sign-in by authorization code with PKCE and every wrong redirect refused, the session cookie's
attributes, the content security policy, CSRF on the console's forms and on its script's ``/v1``
calls, each refusal audited. The browser scenarios are in tests/test_console_browser.py.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import httpx
import pytest
import yaml

from aiops.client import AiopsClient
from aiops.console.app import CSP
from aiops.contracts.passkey import b64url_decode
from aiops.gateway.config import ConfigProblem, GatewayConfig, load_config
from tests.helpers import agent_config, start_pending_action
from tests.support.api_stack import api_stack
from tests.support.console_stack import CLIENT_ID, PASSWORD, ConsoleStack, console_stack
from tests.support.soft_authenticator import SoftAuthenticator
from tests.test_signed_approvals import ALICE, signed_team, token

pytestmark = pytest.mark.slow


def set_cookies(answer: httpx.Response) -> dict[str, str]:
    """Each cookie the answer sets, name → its whole Set-Cookie line."""
    return {line.split("=", 1)[0]: line for line in answer.headers.get_list("set-cookie")}


def cookie_value(line: str) -> str:
    return line.split(";", 1)[0].split("=", 1)[1]


async def begin(stack: ConsoleStack, http: httpx.AsyncClient) -> tuple[str, dict[str, list[str]]]:
    """Start a sign-in: the flow cookie and the identity provider's authorization request."""
    answer = await http.get("/console/signin/oidc")
    assert answer.status_code == 303, answer.text
    flow = set_cookies(answer)["aiops-signin"]
    assert "HttpOnly" in flow and "SameSite=lax" in flow and "Secure" not in flow  # loopback http
    location = answer.headers["location"]
    assert location.startswith(f"{stack.provider.issuer}/authorize?")
    return cookie_value(flow), parse_qs(urlsplit(location).query)


async def log_in(stack: ConsoleStack, query: dict[str, list[str]], user: str) -> dict[str, list[str]]:
    """What the person does at the identity provider: the form, the password; the redirect's query."""
    form = {k: v[0] for k, v in query.items()} | {"username": user, "password": PASSWORD}
    async with httpx.AsyncClient(base_url=stack.provider.issuer) as idp:
        assert "Test identity provider" in (await idp.get("/authorize", params=query)).text
        answer = await idp.post("/authorize", data=form)
    assert answer.status_code == 303, answer.text
    back = answer.headers["location"]
    assert back.startswith(f"{stack.url}/console/signin/callback?")
    return parse_qs(urlsplit(back).query)


async def signed_in(stack: ConsoleStack, http: httpx.AsyncClient, user: str) -> tuple[str, str]:
    """A whole sign-in: the session cookie and the page's CSRF token."""
    flow, query = await begin(stack, http)
    back = await log_in(stack, query, user)
    answer = await http.get(
        "/console/signin/callback",
        params={k: v[0] for k, v in back.items()},
        headers={"cookie": f"aiops-signin={flow}"},
    )
    assert answer.status_code == 200, answer.text
    session = set_cookies(answer)["aiops-session"]
    inbox = await http.get("/console/", headers={"cookie": f"aiops-session={cookie_value(session)}"})
    csrf = inbox.text.split('name="csrf-token" content="', 1)[1].split('"', 1)[0]
    return cookie_value(session), csrf


async def test_sign_in_by_code_with_pkce_and_each_wrong_redirect_refused_and_audited(
    aiops: AiopsClient, tmp_path: Path
) -> None:
    async with console_stack(aiops, tmp_path) as stack, stack.http() as http:
        first = await http.get("/console/")
        assert first.status_code == 303 and first.headers["location"].startswith("/console/signin")
        page = await http.get("/console/signin")
        assert page.headers["content-security-policy"] == CSP
        assert page.headers["x-frame-options"] == "DENY" and page.headers["referrer-policy"] == "no-referrer"
        assert f"Sign in with {stack.provider.issuer}" in page.text and "<script>" not in page.text

        flow, query = await begin(stack, http)
        assert query["code_challenge_method"] == ["S256"] and query["client_id"] == [CLIENT_ID]
        assert len(query["code_challenge"][0]) == 43 and query["nonce"] and query["state"]
        back = {k: v[0] for k, v in (await log_in(stack, query, "alice")).items()}
        cookie = {"cookie": f"aiops-signin={flow}"}
        refusals = [
            ({**back, "state": "another"}, cookie, "state does not match"),
            (back, {}, "no sign-in under way"),
            (back, {"cookie": f"aiops-signin={flow[:-2]}xx"}, "not signed by this console"),
            ({"error": "access_denied", "state": back["state"]}, cookie, "refused the sign-in"),
        ]  # fmt: skip
        for params, headers, says in refusals:
            answer = await http.get("/console/signin/callback", params=params, headers=headers)
            assert answer.status_code == 401 and says in answer.text, (says, answer.text)
            assert "aiops-session" not in set_cookies(answer)
        answer = await http.get("/console/signin/callback", params=back, headers=cookie)
        assert answer.status_code == 200 and "Signed in as <strong>alice</strong>" in answer.text
        session = set_cookies(answer)["aiops-session"]
        assert "HttpOnly" in session and "SameSite=strict" in session and "Path=/" in session
        replayed = await http.get("/console/signin/callback", params=back, headers=cookie)
        assert replayed.status_code == 401 and "did not exchange the code" in replayed.text
        stored = [r.reason for r in await stack.tokens.refusals(100) if r.path == "/console/signin/callback"]
        assert len(stored) == 5 and any("state does not match" in r for r in stored)

        me = await http.get("/v1/me", headers={"cookie": f"aiops-session={cookie_value(session)}"})
        assert me.json()["name"] == "alice" and me.json()["via"] == "oidc", me.text
        forged = await http.get(
            "/v1/me", headers={"cookie": f"aiops-session={cookie_value(session)[:-3]}abc"}
        )
        assert forged.status_code == 401 and "not signed by this console" in forged.json()["error"]


async def test_csrf_is_required_on_every_post_and_a_pasted_token_decides(
    aiops: AiopsClient, worker, tmp_path: Path
) -> None:
    config = agent_config("scripted", approval=signed_team())
    _, action_id, record = await start_pending_action(aiops, config, "high", requested_by="dave")
    async with console_stack(aiops, tmp_path) as stack, stack.http() as http:
        session, csrf = await signed_in(stack, http, "alice")
        cookie = {"cookie": f"aiops-session={session}"}
        decision = {"approve": True, "credential": "x"}
        path = f"/v1/actions/{action_id}/decision"
        for headers in (cookie, {**cookie, "x-csrf-token": csrf[:-2] + "zz"}):
            answer = await http.post(path, json=decision, headers=headers)
            assert answer.status_code == 403 and "CSRF token" in answer.json()["error"], answer.text
        form = {"verb": "approve", "credential": token(ALICE, action_id, record.plan_digest)}
        answer = await http.post(f"/console/actions/{action_id}/decide", data=form, headers=cookie)
        assert answer.status_code == 403 and "CSRF token" in answer.text
        stored = [r for r in await stack.tokens.refusals(100) if "CSRF" in r.reason]
        assert len(stored) == 3 and all(r.who == "alice" and r.status == 403 for r in stored)

        viewer, viewer_csrf = await signed_in(stack, http, "vic")
        page = await http.get(f"/console/actions/{action_id}", headers={"cookie": f"aiops-session={viewer}"})
        assert (
            "may read this action but not decide it" in page.text and "Approve with passkey" not in page.text
        )
        answer = await http.post(
            f"/console/actions/{action_id}/decide",
            data={**form, "csrf": viewer_csrf},
            headers={"cookie": f"aiops-session={viewer}"},
        )
        assert answer.status_code == 403 and "vic (viewer) may not POST" in answer.text
        assert any(r.who == "vic" and r.status == 403 for r in await stack.tokens.refusals(100))
        other = token(ALICE, action_id + "x", record.plan_digest)
        answer = await http.post(
            f"/console/actions/{action_id}/decide",
            data={**form, "credential": other, "csrf": csrf},
            headers=cookie,
        )
        assert answer.status_code == 409 and "not for this action" in answer.text
        answer = await http.post(
            f"/console/actions/{action_id}/decide",
            data={**form, "csrf": csrf, "comment": "go"},
            headers=cookie,
        )
        assert answer.status_code == 303, answer.text  # post/redirect/get: a reload never decides again
        shown = await http.get(answer.headers["location"], headers=cookie)
        assert "approve recorded" in shown.text and "alice approved" in shown.text
        done = await aiops.approvals.wait_for_action(action_id)
        assert [(a.approver, a.comment, a.authenticated) for a in done.approvals] == [("alice", "go", True)]


async def test_passkey_sign_in_names_only_a_registered_verified_passkey_once(
    aiops: AiopsClient, worker, tmp_path: Path
) -> None:
    async with console_stack(aiops, tmp_path) as stack, stack.http() as http:
        laptop, stranger = (
            SoftAuthenticator("localhost", stack.url),
            SoftAuthenticator("localhost", stack.url),
        )
        team = signed_team()
        approval = team.model_copy(
            update={
                "approvers": [
                    a.model_copy(update={"passkeys": [laptop.config_line("laptop")]})
                    if a.name == "alice"
                    else a
                    for a in team.approvers
                ],
                "passkey_rp_id": "localhost",
                "passkey_origins": [stack.url],
            }
        )
        await aiops.agents.start(agent_config("scripted", approval=approval))

        async def options(name: str) -> tuple[bytes, str]:
            answer = await http.post("/console/signin/passkey-options", json={"name": name})
            assert answer.status_code == 200, answer.text
            assert answer.json()["allow_credentials"] == [laptop.id] and answer.json()["rp_id"] == "localhost"
            return b64url_decode(answer.json()["challenge"]), cookie_value(
                set_cookies(answer)["aiops-signin"]
            )

        async def sign_in(flow: str, name: str, key: SoftAuthenticator, signed: dict) -> httpx.Response:
            body = {"name": name, "credential_id": key.id, **signed}
            return await http.post(
                "/console/signin/passkey", json=body, headers={"cookie": f"aiops-signin={flow}"}
            )

        nobody = await http.post("/console/signin/passkey-options", json={"name": "carol"})
        assert nobody.status_code == 401 and "'carol' has no registered passkey" in nobody.json()["error"]
        challenge, flow = await options("alice")
        wrong = [
            ("alice", stranger, stranger.get(challenge), "unregistered credential"),
            ("alice", laptop, laptop.get(challenge, origin="http://evil.example"), "does not verify"),
            ("alice", laptop, laptop.get(challenge, user_verified=False), "does not verify"),
            ("alice", laptop, laptop.get(b"another challenge"), "does not verify"),
            ("bob", laptop, laptop.get(challenge), "another person"),
        ]
        for name, key, signed, says in wrong:
            answer = await sign_in(flow, name, key, signed)
            assert answer.status_code == 401 and says in answer.json()["error"], (says, answer.text)
        good = laptop.get(challenge)
        answer = await sign_in(flow, "alice", laptop, good)
        assert answer.status_code == 200 and answer.json() == {"next": "/console/"}, answer.text
        session = set_cookies(answer)["aiops-session"]
        assert "HttpOnly" in session and "SameSite=strict" in session
        me = (await http.get("/v1/me", headers={"cookie": f"aiops-session={cookie_value(session)}"})).json()
        assert (me["name"], me["roles"], me["via"]) == ("alice", ["approver", "viewer"], "passkey")
        replayed = await sign_in(flow, "alice", laptop, good)
        assert replayed.status_code == 401 and "already used" in replayed.json()["error"]
        stored = [r for r in await stack.tokens.refusals(100) if r.path.startswith("/console/signin/passkey")]
        assert len(stored) == len(wrong) + 2


async def test_the_console_is_off_without_its_settings(aiops: AiopsClient, tmp_path: Path) -> None:
    async with api_stack(aiops, tmp_path) as api, api.http() as http:
        answer = await http.get("/console/")
        assert answer.status_code == 404 and "the console is off: add `api.console`" in answer.text
        assert answer.headers["content-security-policy"] == CSP
        assert (await http.get("/v1/me", headers={"cookie": "aiops-session=x.y"})).status_code == 401


def form_csrf(page: str) -> str:
    """The sign-in page's token form's anti-CSRF value."""
    return page.split('name="csrf" value="', 1)[1].split('"', 1)[0]


async def token_form(http: httpx.AsyncClient) -> tuple[str, str]:
    """Load the sign-in page as a browser does: its form cookie and the value the form echoes."""
    page = await http.get("/console/signin")
    assert page.status_code == 200, page.text
    line = set_cookies(page)["aiops-signin-form"]
    assert "HttpOnly" in line and "SameSite=lax" in line and "Path=/" in line
    return cookie_value(line), form_csrf(page.text)


async def post_token(
    http: httpx.AsyncClient, text: str, form: tuple[str, str] | None = None
) -> httpx.Response:
    cookie, csrf = form or await token_form(http)
    return await http.post(
        "/console/signin/token",
        data={"token": text, "csrf": csrf, "next": "/console/"},
        headers={"cookie": f"aiops-signin-form={cookie}"},
    )


async def test_a_console_without_an_identity_provider_signs_in_with_an_api_token_and_shows_the_inbox(
    aiops: AiopsClient, worker, tmp_path: Path
) -> None:
    config = agent_config("scripted", approval=signed_team())
    _, action_id, _ = await start_pending_action(aiops, config, "high", requested_by="dave")
    async with console_stack(aiops, tmp_path, issuer=None, client_id=None) as stack, stack.http() as http:
        page = await http.get("/console/signin")
        assert "signin-oidc" not in page.text and "Sign in with http" not in page.text  # no IdP button
        assert 'id="signin-token-form"' in page.text and 'id="signin-passkey-form"' in page.text
        assert page.headers["content-security-policy"] == CSP and "<script>" not in page.text
        idp = await http.get("/console/signin/oidc")
        assert idp.status_code == 404 and "no identity provider" in idp.text

        _, text = await stack.tokens.create(
            "alice", ["sre", "approver"], datetime.now(UTC) + timedelta(hours=1)
        )
        answer = await post_token(http, text)
        assert answer.status_code == 200 and "Signed in as <strong>alice</strong>" in answer.text, answer.text
        line = set_cookies(answer)["aiops-session"]
        assert "HttpOnly" in line and "SameSite=strict" in line and "Path=/" in line
        max_age = int(line.split("Max-Age=", 1)[1].split(";", 1)[0])
        assert 3500 < max_age <= 3600, "the session ends with the token (1 h), not after session_hours (8 h)"
        session = {"cookie": f"aiops-session={cookie_value(line)}"}
        inbox = await http.get("/console/", headers=session)
        assert inbox.status_code == 200 and config.id in inbox.text, inbox.text
        assert quote(action_id, safe="/") in inbox.text and "(approver, sre, via token)" in inbox.text
        me = (await http.get("/v1/me", headers=session)).json()
        assert (me["name"], me["roles"], me["via"]) == ("alice", ["approver", "sre"], "token")
        csrf = inbox.text.split('name="csrf-token" content="', 1)[1].split('"', 1)[0]
        decision = {"approve": True, "credential": "x"}
        refused = await http.post(f"/v1/actions/{action_id}/decision", json=decision, headers=session)
        assert refused.status_code == 403 and "CSRF token" in refused.json()["error"]  # as any session
        relayed = await http.post(
            f"/v1/actions/{action_id}/decision", json=decision, headers={**session, "x-csrf-token": csrf}
        )
        assert relayed.status_code == 409, relayed.text  # past the session's checks, to the workflow's


async def test_a_wrong_expired_or_revoked_token_is_refused_and_audited(
    aiops: AiopsClient, tmp_path: Path
) -> None:
    async with console_stack(aiops, tmp_path, issuer=None, client_id=None) as stack, stack.http() as http:
        now = datetime.now(UTC)
        _, expired = await stack.tokens.create("erin", ["sre"], now - timedelta(minutes=1))
        revoked_token, revoked = await stack.tokens.create("rob", ["sre"], now + timedelta(days=1))
        await stack.tokens.revoke(revoked_token.id)
        _, good = await stack.tokens.create("alice", ["approver", "viewer"], now + timedelta(days=1))
        before = {r.seq for r in await stack.tokens.refusals(1000)}
        cookie, csrf = await token_form(http)
        wrong = [
            (await post_token(http, "hunter2"), "", "not a personal API token"),
            (await post_token(http, "aiops_pat_0123456789ab_" + "A" * 43), "", "unknown API token"),
            (await post_token(http, expired), "erin", "expired at"),
            (await post_token(http, revoked), "rob", "was revoked at"),
            (await post_token(http, good, (cookie, csrf[:-2] + "zz")), "", "CSRF token is missing or wrong"),
            (await post_token(http, good, ("", csrf)), "", "no sign-in form under way"),
            (await post_token(http, good, (cookie[:-3] + "abc", csrf)), "", "not signed by this console"),
        ]
        for answer, _, says in wrong:
            assert answer.status_code == 401 and says in answer.text, (says, answer.text)
            assert "aiops-session" not in set_cookies(answer) and 'id="signin-token-form"' in answer.text
            assert good not in answer.text and revoked not in answer.text  # never echoed back
        stored = [r for r in await stack.tokens.refusals(1000) if r.seq not in before]
        assert len(stored) == len(wrong) and all(r.status == 401 for r in stored)
        for (_, who, says), row in zip(wrong, reversed(stored), strict=True):
            assert says in row.reason and row.who == who, (says, row)

        answer = await post_token(http, good)
        assert answer.status_code == 200, answer.text
        session = {"cookie": f"aiops-session={cookie_value(set_cookies(answer)['aiops-session'])}"}
        assert (await http.get("/console/", headers=session)).status_code == 200
        token_id = (await http.get("/v1/me", headers=session)).json()["token_id"]
        await stack.tokens.revoke(token_id)  # checked again on every request the session makes
        page = await http.get("/console/", headers=session)
        assert page.status_code == 303 and page.headers["location"].startswith("/console/signin?why=")
        assert "was+revoked" in page.headers["location"]
        me = await http.get("/v1/me", headers=session)
        assert me.status_code == 401 and "was revoked at" in me.json()["error"]
        after = [r for r in await stack.tokens.refusals(1000) if r.seq not in before and r.who == "alice"]
        assert {r.path for r in after} == {"/console/", "/v1/me"}


def test_a_console_config_without_an_identity_provider_validates(tmp_path: Path) -> None:
    base = {"version": 1, "sources": {"demo": {"auth": {"type": "none"}}}}
    console = {"public_url": "http://127.0.0.1:9470"}
    config = GatewayConfig.model_validate({**base, "api": {"console": console}})
    assert config.api is not None and config.api.console is not None and config.api.console.issuer is None
    for extra, says in (
        ({"client_id": "aiops-console"}, "issuer and client_id go together"),
        ({"issuer": "https://login.example.com"}, "issuer and client_id go together"),
        ({"client_secret_env": "SECRET"}, "client_secret_env is the identity provider's client secret"),
    ):
        path = tmp_path / "gateway.yaml"
        path.write_text(yaml.safe_dump({**base, "api": {"console": {**console, **extra}}}))
        with pytest.raises(ConfigProblem, match=says):
            load_config(path)
