"""The REST API (/v1) against the real stack: the gateway on uvicorn, Temporal, PostgreSQL, a worker.

Who may call (tokens: scopes, expiry, revocation, identity-provider JWTs), the role→endpoint
matrix, every refusal recorded, the gateway's limits, and decisions and commands relayed with the
person's own signature, each refusal answered with the workflow's reason verbatim.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import jwt
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric import ec

from activities.database.api_tokens import TOKEN_PATTERN, ApiTokens
from aiops.api.auth import LADDER
from aiops.client import AiopsClient
from aiops.contracts.action import ActionStatus
from aiops.contracts.config import AgentVerb, ApprovalSettings
from tests.helpers import agent_config, eventually, start_pending_action
from tests.support import identity_provider as idp
from tests.support.alertmanager import free_port
from tests.support.api_stack import AUDIENCE, GROUP_ROLES, ROLE_GROUP, api_config, api_stack, login_jwt
from tests.support.oidc_provider import Provider, serving
from tests.test_signed_approvals import ALICE, BOB, signed_team, token

ROOT = Path(__file__).resolve().parents[1]
NOBODY = "nobody-here"

# (method, path, body, the least role that may call it; "decide": one of api.decide_roles)
MATRIX: list[tuple[str, str, dict | None, str]] = [
    ("GET", "/v1/agents", None, "viewer"),
    ("GET", f"/v1/agents/{NOBODY}", None, "viewer"),
    ("POST", "/v1/agents", {}, "sre"),
    ("POST", f"/v1/agents/{NOBODY}/pause", {}, "operator"),
    ("POST", f"/v1/agents/{NOBODY}/resume", {}, "operator"),
    ("POST", f"/v1/agents/{NOBODY}/stop", {"drain": True}, "sre"),
    ("POST", f"/v1/agents/{NOBODY}/reset-breaker", {}, "sre"),
    ("GET", f"/v1/agents/{NOBODY}/configs", None, "viewer"),
    ("GET", f"/v1/agents/{NOBODY}/configs/1", None, "viewer"),
    ("GET", f"/v1/agents/{NOBODY}/configs/diff?old=1&new=2", None, "viewer"),
    ("POST", f"/v1/agents/{NOBODY}/configs/rollback", {"version": 1}, "admin"),
    ("POST", f"/v1/agents/{NOBODY}/configs", {}, "admin"),
    ("GET", "/v1/actions", None, "viewer"),
    ("GET", "/v1/actions/no-such-action", None, "viewer"),
    ("POST", "/v1/actions/no-such-action/decision", {"approve": True, "credential": "x"}, "decide"),
    ("GET", "/v1/audit?limit=5", None, "viewer"),
    ("GET", f"/v1/audit/verify?agent_id={NOBODY}", None, "viewer"),
    ("GET", "/v1/refusals", None, "admin"),
]


def allowed(role: str, needed: str) -> bool:
    if needed == "decide":
        return role in ("approver", "operator", "sre", "admin")
    return role in LADDER and LADDER.index(role) >= LADDER.index(needed)


async def test_the_role_matrix_is_enforced_and_every_refusal_recorded(
    aiops: AiopsClient, tmp_path: Path
) -> None:
    async with api_stack(aiops, tmp_path) as api:
        for role in (*LADDER, "approver"):
            name = f"{role}-person"
            async with api.http(await api.personal(name, [role])) as http:
                for method, path, body, needed in MATRIX:
                    answer = await http.request(method, path, json=body)
                    assert answer.status_code < 400 or list(answer.json()) == ["error"], answer.text
                    if allowed(role, needed):
                        assert answer.status_code not in (401, 403), (role, method, path, answer.text)
                        assert answer.status_code < 500, (role, method, path, answer.text)
                    else:
                        assert answer.status_code == 403, (role, method, path, answer.text)
                        assert f"{name} ({role}) may not {method}" in answer.json()["error"]
            refused = [r for r in await api.tokens.refusals(1000) if r.who == name]
            expected = [(m, p.split("?")[0]) for m, p, _, n in MATRIX if not allowed(role, n)]
            assert sorted((r.method, r.path) for r in refused) == sorted(expected), role
            assert all(r.status == 403 and "may not" in r.reason for r in refused)


async def test_calls_without_a_valid_token_are_refused_401_and_recorded(
    aiops: AiopsClient, tmp_path: Path
) -> None:
    other_key = ec.generate_private_key(ec.SECP256R1())
    now = int(datetime.now(UTC).timestamp())
    cases = [
        (None, "missing Authorization"),
        ("Basic YWxpY2U6c2VjcmV0", "must be 'Bearer <token>'"),
        ("Bearer not-a-token", "neither an API token nor a JWT"),
        ("Bearer aiops_pat_0123456789ab_" + "A" * 43, "unknown API token"),
        ("Bearer " + jwt.encode({"iss": "https://login.example.test", "sub": "eve", "aud": "aiops-api-test",
                                 "exp": now + 60}, "a-shared-secret-of-32-bytes-long!", algorithm="HS256"),
         "signed with 'HS256'"),
        ("Bearer " + jwt.encode({"iss": "https://login.example.test", "sub": "eve", "aud": "aiops-api-test",
                                 "exp": now + 60}, None, algorithm="none"),
         "signed with 'none'"),
        ("Bearer " + login_jwt("eve", ["admins"], key=other_key), "forged or altered"),
        ("Bearer " + login_jwt("eve", ["admins"], aud="another-api"), "not for this API"),
        ("Bearer " + login_jwt("eve", ["admins"], lifetime=-3600), "expired"),
        ("Bearer " + login_jwt("eve", ["admins"], iss="https://evil.example"), "does not trust"),
    ]  # fmt: skip
    async with api_stack(aiops, tmp_path) as api:
        before = len(await api.tokens.refusals(1000))
        async with api.http() as http:
            for header, says in cases:
                answer = await http.get("/v1/agents", headers={"Authorization": header} if header else {})
                assert answer.status_code == 401, (says, answer.text)
                assert says in answer.json()["error"], answer.text
                assert answer.headers["www-authenticate"] == "Bearer"
        everything = await api.tokens.refusals(1000)  # newest first
        recorded = everything[: len(everything) - before]
        assert [r.status for r in recorded] == [401] * len(cases)
        assert [r.path for r in recorded] == ["/v1/agents"] * len(cases)
        for (_, says), row in zip(reversed(cases), recorded, strict=True):
            assert says in row.reason, (says, row.reason)


async def test_personal_tokens_are_hashed_scoped_expiring_and_revocable(
    aiops: AiopsClient, tmp_path: Path
) -> None:
    async with api_stack(aiops, tmp_path) as api:
        created, text = await api.tokens.create("vera", ["viewer"], datetime.now(UTC) + timedelta(hours=1))
        stored = await aiops.pool.fetchrow("SELECT * FROM api_tokens WHERE id = $1", created.id)  # type: ignore[union-attr]
        assert bytes(stored["token_hash"]) == hashlib.sha256(text.encode()).digest()
        assert text not in json.dumps({k: str(v) for k, v in dict(stored).items()})
        async with api.http(text) as http:
            me = (await http.get("/v1/me")).json()
            assert me == {
                "name": "vera",
                "roles": ["viewer"],
                "via": "token",
                "issuer": None,
                "token_id": created.id,
            }
            assert (await http.get("/v1/agents")).status_code == 200
            assert (await http.post(f"/v1/agents/{NOBODY}/pause", json={})).status_code == 403  # out of scope
            await api.tokens.revoke(created.id)
            answer = await http.get("/v1/agents")
            assert answer.status_code == 401 and "was revoked" in answer.json()["error"]
        _, expired = await api.tokens.create("vera", ["admin"], datetime.now(UTC) - timedelta(seconds=1))
        async with api.http(expired) as http:
            answer = await http.get("/v1/agents")
            assert answer.status_code == 401 and "expired at" in answer.json()["error"]


async def test_an_identity_provider_jwt_names_the_person_and_maps_groups_to_roles(
    aiops: AiopsClient, tmp_path: Path
) -> None:
    async with api_stack(aiops, tmp_path) as api:
        async with api.http(login_jwt("alice", ["sre-team", "approvers", "unknown-group"])) as http:
            me = (await http.get("/v1/me")).json()
        assert me["name"] == "alice" and me["roles"] == ["approver", "sre"] and me["via"] == "oidc"
        async with api.http(login_jwt("oscar", [ROLE_GROUP["viewer"]])) as http:
            answer = await http.post(f"/v1/agents/{NOBODY}/stop", json={})
        assert answer.status_code == 403 and "oscar (viewer) may not POST" in answer.json()["error"]


async def test_limits_and_errors_are_the_gateways(aiops: AiopsClient, tmp_path: Path) -> None:
    async with api_stack(aiops, tmp_path, rate=0.01, burst=3) as api:
        async with api.http(await api.personal("rita", ["admin"])) as http:
            big = await http.post(f"/v1/agents/{NOBODY}/pause", content=b"{" + b" " * 70_000 + b"}")
            assert big.status_code == 413 and "over the limit of 65536" in big.json()["error"]
            bad = await http.post(f"/v1/agents/{NOBODY}/pause", content=b"{not json")
            assert bad.status_code == 422 and bad.json()["error"].startswith("invalid request")
            unknown = await http.get("/v1/nothing-here")
            assert unknown.status_code == 404 and unknown.json() == {
                "error": "no such endpoint: GET /v1/nothing-here"
            }
            answers = [await http.get("/v1/me") for _ in range(3)]  # the burst is 3: one call took one
            assert [a.status_code for a in answers] == [200, 200, 429]
            limited = answers[-1]
            assert limited.status_code == 429 and "rate limit" in limited.json()["error"]
            assert int(limited.headers["retry-after"]) >= 1


async def test_a_signed_decision_is_relayed_and_every_wrong_one_refused_with_the_workflows_reason(
    aiops: AiopsClient, worker, tmp_path: Path
) -> None:
    config = agent_config("scripted", approval=signed_team())
    _, action_id, record = await start_pending_action(aiops, config, "critical", requested_by="dave")
    digest = record.plan_digest
    async with api_stack(aiops, tmp_path) as api:
        async with api.http(login_jwt("vic", ["viewers"])) as viewer:
            inbox = (
                await viewer.get("/v1/actions", params={"agent_id": config.id, "risk": "critical"})
            ).json()
            assert [i["action_id"] for i in inbox] == [action_id]
            evidence = (await viewer.get(f"/v1/actions/{action_id}")).json()
            assert evidence["plan_digest"] == digest and evidence["event"]["id"] == record.event.id
        async with api.http(login_jwt("alice", ["sre-team", "approvers"])) as alice:
            valid = token(ALICE, action_id, digest)
            answer = await alice.post(
                f"/v1/actions/{action_id}/decision", json={"approve": True, "credential": valid}
            )
            assert answer.status_code == 200, answer.text
            assert [(a["approver"], a["authenticated"]) for a in answer.json()["approvals"]] == [
                ("alice", True)
            ]
            wrong = {
                "replayed": (valid, ("used already", "already approved")),
                "another action": (token(ALICE, action_id + "x", digest), ("not for this action",)),
                "another plan": (token(ALICE, action_id, "0" * 64), ("the current plan is",)),
            }
            for why, (credential, says) in wrong.items():
                answer = await alice.post(
                    f"/v1/actions/{action_id}/decision", json={"approve": True, "credential": credential}
                )
                assert answer.status_code == 409, (why, answer.text)
                latest = (await aiops.approvals.action(action_id)).refused[-1].reason
                assert answer.json()["error"] == f"refused: {latest}", why  # verbatim
                assert any(s in latest for s in says), (why, latest)
        async with api.http(
            login_jwt("bob", ["sre-team", "approvers"])
        ) as bob:  # alice's token, relayed by bob
            answer = await bob.post(
                f"/v1/actions/{action_id}/decision",
                json={"approve": True, "credential": token(ALICE, action_id, digest)},
            )
            assert answer.status_code == 409 and "signed by alice" in answer.json()["error"]
            answer = await bob.post(
                f"/v1/actions/{action_id}/decision",
                json={"approve": True, "credential": token(BOB, action_id, digest)},
            )
            assert answer.status_code == 200, answer.text
    assert (await aiops.approvals.wait_for_action(action_id)).status == ActionStatus.VERIFIED


async def test_a_command_is_relayed_only_with_the_persons_signature(
    aiops: AiopsClient, worker, tmp_path: Path
) -> None:
    config = agent_config("scripted", approval=signed_team())
    await aiops.agents.start(config)
    async with api_stack(aiops, tmp_path) as api, api.http(login_jwt("bob", ["sre-team"])) as bob:
        unsigned = await bob.post(f"/v1/agents/{config.id}/pause", json={"reason": "maintenance"})
        assert unsigned.status_code == 409 and unsigned.json()["error"].startswith("refused: "), unsigned.text
        signed = aiops.agents.command_request(config.id, AgentVerb.PAUSE, key=BOB).credential
        answer = await bob.post(f"/v1/agents/{config.id}/pause", json={"credential": signed})
        assert answer.status_code == 200 and answer.json()["changed"] is True, answer.text
        status = (await bob.get(f"/v1/agents/{config.id}")).json()
        assert status["state"] == "paused"
        replayed = await bob.post(f"/v1/agents/{config.id}/resume", json={"credential": signed})
        assert replayed.status_code == 409 and "not to resume" in replayed.json()["error"], replayed.text


@pytest.mark.parametrize("kind", ["served"])
async def test_the_served_openapi_document_is_the_committed_one(
    aiops: AiopsClient, tmp_path: Path, kind: str
) -> None:
    """A change to the API shows in review: regenerate with `python -m aiops.api > docs/api/openapi.json`."""
    committed = json.loads((ROOT / "docs/api/openapi.json").read_text())
    async with api_stack(aiops, tmp_path) as api, api.http() as http:
        served = (await http.get("/v1/openapi.json")).json()
    assert served["openapi"].startswith("3.1")
    assert served == committed, "docs/api/openapi.json is stale: python -m aiops.api > docs/api/openapi.json"


def _cli(postgres_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": postgres_url, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "aiops.cli", "-o", "json", "api-token", *args],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip


async def test_the_api_token_commands_create_list_and_revoke(
    aiops: AiopsClient, postgres, tmp_path: Path
) -> None:
    made = await asyncio.to_thread(
        _cli, postgres.url, "create", "cli-person", "--role", "operator", "--days", "2"
    )
    assert made.returncode == 0, made.stderr
    created = json.loads(made.stdout)
    assert created["owner"] == "cli-person" and created["roles"] == ["operator"] and created["token"]
    listed = json.loads((await asyncio.to_thread(_cli, postgres.url, "list", "--owner", "cli-person")).stdout)
    assert [t["id"] for t in listed] == [created["id"]] and "token" not in listed[0]
    async with api_stack(aiops, tmp_path) as api, api.http(created["token"]) as http:
        assert (await http.get("/v1/me")).json()["name"] == "cli-person"
        revoked = await asyncio.to_thread(_cli, postgres.url, "revoke", created["id"])
        assert revoked.returncode == 0 and json.loads(revoked.stdout)["revoked_at"], revoked.stderr
        assert (await http.get("/v1/me")).status_code == 401
    quiet = await asyncio.to_thread(_cli, postgres.url, "create", "cli-person", "--role", "viewer", "-q")
    assert quiet.returncode == 0 and TOKEN_PATTERN.fullmatch(quiet.stdout.strip()), quiet.stdout
    bad = await asyncio.to_thread(_cli, postgres.url, "create", "x", "--role", "root")
    assert bad.returncode == 2 and "unknown role(s) root" in bad.stderr
    unknown = await asyncio.to_thread(_cli, postgres.url, "revoke", "000000000000")
    assert unknown.returncode == 1 and "no API token" in unknown.stderr


async def test_a_person_signs_in_at_a_real_oidc_provider_whose_pinned_keys_the_api_trusts(
    aiops: AiopsClient, tmp_path: Path
) -> None:
    provider = Provider(users={"alice": ("s3cret", ["sre-team", "approvers"])}, audience=AUDIENCE)
    async with serving(provider), httpx.AsyncClient(base_url=provider.issuer) as idp_http:
        discovery = (await idp_http.get("/.well-known/openid-configuration")).json()
        pinned = (await idp_http.get(discovery["jwks_uri"])).json()  # what an operator copies into config
        issuer = {
            "issuer": provider.issuer,
            "jwks": pinned,
            "group_roles": GROUP_ROLES,
            "algorithms": ["ES256"],
        }

        async def sign_in(password: str) -> httpx.Response:
            form = {"grant_type": "password", "username": "alice", "password": password}
            return await idp_http.post(discovery["token_endpoint"], data=form)

        assert (await sign_in("wrong")).status_code == 400
        async with api_stack(aiops, tmp_path, issuers=[issuer]) as api:
            async with api.http((await sign_in("s3cret")).json()["access_token"]) as http:
                me = (await http.get("/v1/me")).json()
            assert (me["name"], me["roles"], me["via"]) == ("alice", ["approver", "sre"], "oidc")
            assert me["issuer"] == provider.issuer and me["token_id"] is None
            provider.rotate()  # the provider's new key is not the pinned one: refused until pinned
            async with api.http((await sign_in("s3cret")).json()["access_token"]) as http:
                answer = await http.get("/v1/me")
            assert answer.status_code == 401 and "pinned keys" in answer.json()["error"]


async def test_aiops_gateway_as_a_process_serves_the_api_with_its_database(
    aiops: AiopsClient, postgres, address: str, task_queue: str, tmp_path: Path
) -> None:
    """The production wiring: `aiops gateway` with DATABASE_URL opens the API's pool itself."""
    config_file = tmp_path / "gateway.yaml"
    config_file.write_text(yaml.safe_dump(api_config()))
    port, log = free_port(), tmp_path / "gateway.log"
    env = {**os.environ, "TEMPORAL_ADDRESS": address, "DATABASE_URL": postgres.url, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "aiops.cli", "--task-queue", task_queue, "gateway",
               "--routes", str(config_file), "--port", str(port), "--log-format", "text"]  # fmt: skip
    process = await asyncio.to_thread(
        subprocess.Popen, command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log.open("ab")
    )
    try:
        _, text = await ApiTokens(aiops.pool).create(
            "pat", ["viewer"], datetime.now(UTC) + timedelta(hours=1)
        )  # type: ignore[arg-type]
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            me = await eventually(
                lambda: http.get("/v1/me", headers={"Authorization": f"Bearer {text}"}),
                lambda r: r.status_code == 200,
            )
            assert me.json()["name"] == "pat", log.read_text()[-2000:]
            audit = await http.get("/v1/audit?limit=1", headers={"Authorization": f"Bearer {text}"})
            assert audit.status_code == 200, audit.text
            assert (await http.get("/v1/me")).status_code == 401
    finally:
        process.terminate()
        await asyncio.to_thread(process.wait, 30)


async def test_an_admin_starts_reconfigures_rolls_back_and_stops_an_agent_through_the_api(
    aiops: AiopsClient, worker, tmp_path: Path
) -> None:
    config = agent_config("tunable", settings={"mode": "observe", "limit": 10})
    acting = config.model_copy(update={"settings": {**config.settings, "mode": "act"}})
    base = f"/v1/agents/{config.id}"
    async with api_stack(aiops, tmp_path) as api, api.http(await api.personal("ada", ["admin"])) as http:
        started = await http.post("/v1/agents", json={"config": config.model_dump(mode="json")})
        assert started.status_code == 201 and started.json()["agent_id"] == config.id, started.text
        await eventually(
            lambda: http.get(base), lambda r: r.status_code == 200 and r.json()["state"] == "running"
        )
        listed = (await http.get("/v1/agents", params={"state": "running", "type": "tunable"})).json()
        assert [s["agent_id"] for s in listed] == [config.id]
        assert (await http.get("/v1/agents", params={"type": "nothing-of-that-type"})).json() == []

        applied = await http.post(
            f"{base}/configs", json={"config": acting.model_dump(mode="json"), "comment": "act"}
        )
        assert applied.status_code == 200, applied.text
        assert (applied.json()["version"], applied.json()["previous_version"]) == (2, 1)
        history = (await http.get(f"{base}/configs")).json()
        newest = history[0]
        assert [v["version"] for v in history] == [2, 1]
        assert (newest["author"], newest["comment"]) == ("ada", "act")
        diff = (await http.get(f"{base}/configs/diff", params={"old": 1, "new": 2})).json()
        assert diff == [{"path": "settings.mode", "old": "observe", "new": "act"}]

        rolled = await http.post(f"{base}/configs/rollback", json={"version": 1, "comment": "back"})
        assert rolled.status_code == 200 and rolled.json()["version"] == 3, rolled.text
        assert (await http.get(f"{base}/configs/3")).json()["config"]["settings"]["mode"] == "observe"
        missing = await http.get(f"{base}/configs/99")
        assert missing.status_code == 404 and "no config version 99" in missing.json()["error"]
        other = acting.model_copy(update={"id": "someone-else"})
        wrong = await http.post(f"{base}/configs", json={"config": other.model_dump(mode="json")})
        assert wrong.status_code == 422 and "not 'tunable-" in wrong.json()["error"]

        stopped = await http.post(f"{base}/stop", json={"drain": True, "reason": "done"})
        assert stopped.status_code == 200 and stopped.json()["changed"] is True, stopped.text


async def test_an_identity_providers_decision_token_is_relayed_for_the_person_it_names(
    aiops: AiopsClient, worker, tmp_path: Path
) -> None:
    """The same provider signs the person in (API audience) and signs their decision (the action's
    id as audience); the API relays the second, the workflow checks it against its pinned keys."""
    config = agent_config("scripted", approval=ApprovalSettings(issuers=[idp.trusted_issuer()]))
    _, action_id, record = await start_pending_action(aiops, config, "high", requested_by="dave")
    async with api_stack(aiops, tmp_path) as api, api.http(login_jwt("erin", ["sre-team"])) as erin:
        as_ops = idp.token("erin", ["ops"], action_id, "approve", record.plan_digest)
        refused = await erin.post(
            f"/v1/actions/{action_id}/decision", json={"approve": True, "credential": as_ops}
        )
        assert refused.status_code == 409 and "erin may not approve high" in refused.json()["error"], (
            refused.text
        )
        good = idp.token("erin", ["sre-team"], action_id, "approve", record.plan_digest)
        answer = await erin.post(
            f"/v1/actions/{action_id}/decision", json={"approve": True, "credential": good}
        )
        assert answer.status_code == 200, answer.text
    done = await aiops.approvals.wait_for_action(action_id)
    assert done.status == ActionStatus.VERIFIED
    assert [(a.approver, a.authenticated, a.issuer) for a in done.approvals] == [("erin", True, idp.ISSUER)]
