"""The REST API fuzzed from its own OpenAPI document with schemathesis, on the real stack.

Three callers: an admin (everything allowed: no 5xx, every answer inside the document), a viewer
(every write refused 403) and nobody (every call refused 401); each refusal is recorded in
``api_refusals``. Examples are bounded (``EXAMPLES`` per operation and caller) so it runs in about
a minute; schemathesis calls are blocking, so they run in a thread beside the served gateway.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import hypothesis
import schemathesis
from hypothesis import HealthCheck, Phase
from schemathesis.specs.openapi.checks import positive_data_acceptance

from aiops.client import AiopsClient
from tests.helpers import agent_config, start_pending_action
from tests.support.api_stack import api_stack
from tests.test_signed_approvals import signed_team

EXAMPLES = 6
# The slowest answer measured from the API: a status query to an agent whose worker has just
# stopped waits about 30 s for the server's "no poller seen for task queue recently".
CALL_TIMEOUT_SECONDS = 90


INTAKE = ("/v1/events", "/v1/alertmanager")  # the gateway's routes: the sources' own auth, not a person's


def fuzz(url: str, token: str | None, real: dict[str, str] | None = None) -> list[tuple[str, str, int]]:
    """Call every operation with generated requests; check each answer against the document.

    ``real``: path parameters of things that exist (a running agent, a pending action), put in
    every other case that has them, so the generated commands, config changes and decisions also
    reach real workflows, not only the not-found paths."""
    schema = schemathesis.openapi.from_url(f"{url}/v1/openapi.json")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    seen: list[tuple[str, str, int]] = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @hypothesis.given(case=operation.as_strategy())
        @hypothesis.settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def call(case: schemathesis.Case) -> None:
            if len(seen) % 2 == 0:
                for name, value in (real or {}).items():
                    if name in (case.path_parameters or {}):
                        case.path_parameters[name] = value  # type: ignore[index]
            # Bounded: a call that hangs fails here naming its request, not the whole test at 300 s.
            response = case.call(base_url=url, headers=headers, timeout=CALL_TIMEOUT_SECONDS)
            # No 5xx; status, content type, headers and body as documented. Not "schema-valid data is
            # accepted": the contracts check more than JSON Schema says (an agent id's pattern is a
            # validator of AgentConfig, a config's id must be the path's), answered 422 with why.
            case.validate_response(response, excluded_checks=[positive_data_acceptance])
            seen.append((case.method.upper(), case.operation.path, response.status_code))

        call()
    return seen


async def test_the_api_fuzzed_from_its_document_answers_as_documented_and_refuses_as_it_should(
    aiops: AiopsClient, worker, tmp_path: Path
) -> None:
    config = agent_config("scripted", approval=signed_team())
    _, action_id, _ = await start_pending_action(aiops, config, "critical", requested_by="dave")
    real = {"agent_id": config.id, "action_id": action_id}
    async with api_stack(aiops, tmp_path) as api:
        admin = await api.personal("fuzz-admin", ["admin"])
        viewer = await api.personal("fuzz-viewer", ["viewer"])
        latest = await api.tokens.refusals(1)
        before = latest[0].seq if latest else 0

        as_admin = await asyncio.to_thread(fuzz, api.url, admin, real)
        assert not [s for s in as_admin if s[2] in (401, 403) and s[1] != "/v1/refusals"], as_admin
        assert all(status < 500 for _, _, status in as_admin)

        intake = [s for s in as_admin if s[1].startswith(INTAKE)]
        assert {status for _, _, status in intake} <= {200, 404, 422, 429}, intake

        as_viewer = [
            s for s in await asyncio.to_thread(fuzz, api.url, viewer, real) if not s[1].startswith(INTAKE)
        ]
        writes = [s for s in as_viewer if s[0] != "GET" or s[1] == "/v1/refusals"]
        reads = [s for s in as_viewer if s not in writes]
        assert writes and all(status == 403 for _, _, status in writes), writes
        assert reads and not [s for s in reads if s[2] in (401, 403)], reads

        as_nobody = [
            s for s in await asyncio.to_thread(fuzz, api.url, None, real) if not s[1].startswith(INTAKE)
        ]
        assert as_nobody and all(status == 401 for _, _, status in as_nobody), Counter(as_nobody)

        refused = [r for r in await api.tokens.refusals(1000) if r.seq > before]
        assert Counter((r.method, r.status) for r in refused if r.who == "fuzz-viewer") == Counter(
            (m, 403) for m, _, _ in writes
        )
        # schemathesis's ignored_auth check also re-sends calls without (or with a broken) token: more 401s
        assert len([r for r in refused if r.status == 401]) >= len(as_nobody)
        print(
            "FUZZ",
            len(as_admin),
            len(as_viewer),
            len(as_nobody),
            len(refused),
            Counter(s for _, _, s in as_admin),
        )
        covered = {path for _, path, _ in as_admin}
        assert len(covered) == len({p for p in (await _paths(api.url))}), covered


async def _paths(url: str) -> list[str]:
    import httpx

    async with httpx.AsyncClient() as http:
        return list((await http.get(f"{url}/v1/openapi.json")).json()["paths"])
