"""The REST API on the real stack for tests: the gateway (uvicorn, in this event loop) with an
``api:`` section trusting the test identity provider, the session's Temporal and PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import yaml

from activities.database.api_tokens import ApiTokens
from aiops.client import AiopsClient
from aiops.gateway.app import Gateway
from aiops.gateway.delivery import Connector
from aiops.gateway.server import running
from tests.support import identity_provider as idp

AUDIENCE = "aiops-api-test"
# The identity provider's groups, mapped to roles as an operator would in the gateway config.
GROUP_ROLES = {
    "viewers": ["viewer"],
    "ops": ["operator"],
    "sre-team": ["sre"],
    "admins": ["admin"],
    "approvers": ["approver"],
}
ROLE_GROUP = {roles[0]: group for group, roles in GROUP_ROLES.items()}


def api_config(
    rate: float = 10_000.0, burst: int = 10_000, issuers: list[dict] | None = None
) -> dict[str, Any]:
    issuer = idp.trusted_issuer().model_copy(update={"group_roles": GROUP_ROLES})
    return {
        "version": 1,
        "sources": {"default": {"auth": {"type": "none"}}},
        "limits": {"max_body_bytes": 65536},
        "api": {
            "issuers": [issuer.model_dump(mode="json"), *(issuers or [])],
            "audience": AUDIENCE,
            "rate_limit": {"per_second": rate, "burst": burst},
        },
    }


def login_jwt(name: str, groups: list[str], key: Any = idp.KEY, lifetime: int = 600, **claims: Any) -> str:
    """An access token as the identity provider issues it for the API (``aud``: the API)."""
    now = int(datetime.now(UTC).timestamp())
    body = {
        "iss": idp.ISSUER, "sub": name, "groups": groups, "aud": AUDIENCE,
        "iat": now, "exp": now + lifetime, "jti": uuid.uuid4().hex, **claims,
    }  # fmt: skip
    return jwt.encode(body, key, algorithm="ES256", headers={"kid": idp.KID})


@dataclass
class Api:
    url: str
    tokens: ApiTokens
    gateway: Gateway

    def http(self, token: str | None = None) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=30)

    async def personal(self, owner: str, roles: list[str], days: float = 1) -> str:
        _, text = await self.tokens.create(owner, roles, datetime.now(UTC) + timedelta(days=days))
        return text


@asynccontextmanager
async def api_stack(aiops: AiopsClient, tmp_path: Path, **config: Any) -> AsyncIterator[Api]:
    routes = tmp_path / "gateway.yaml"
    routes.write_text(yaml.safe_dump(api_config(**config)))
    gateway = Gateway(routes, Connector.of(aiops), reload_every=0)
    assert aiops.pool is not None
    async with running(gateway) as served:
        yield Api(served.url, ApiTokens(aiops.pool), gateway)
