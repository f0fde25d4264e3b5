"""The web console on the real stack for tests: a local OIDC provider (authorization code + PKCE)
whose keys the gateway pins, and the gateway serving ``/v1`` and ``/console`` at
``http://localhost:PORT`` (a secure context for WebAuthn, and a site other than the provider's
``127.0.0.1``, so the sign-in's redirects are truly cross-site)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from activities.database.api_tokens import ApiTokens
from aiops.client import AiopsClient
from aiops.gateway.app import Gateway
from aiops.gateway.delivery import Connector
from aiops.gateway.server import running
from tests.support.alertmanager import free_port
from tests.support.api_stack import GROUP_ROLES, api_config
from tests.support.oidc_provider import Provider, serving

CLIENT_ID = "aiops-console"
PASSWORD = "s3cret"
USERS = {
    "alice": (PASSWORD, ["sre-team", "approvers"]),
    "bob": (PASSWORD, ["sre-team", "admins", "approvers"]),
    "vic": (PASSWORD, ["viewers"]),
}


@dataclass
class ConsoleStack:
    url: str
    provider: Provider
    tokens: ApiTokens
    gateway: Gateway

    def http(self, **kw: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, timeout=30, **kw)


@asynccontextmanager
async def console_stack(aiops: AiopsClient, tmp_path: Path, **console: Any) -> AsyncIterator[ConsoleStack]:
    provider = Provider(users=dict(USERS), audience="aiops-api-test")
    async with serving(provider), httpx.AsyncClient(base_url=provider.issuer) as idp:
        pinned = (await idp.get("/jwks")).json()  # what an operator copies into the config
        port = free_port()
        url = f"http://localhost:{port}"
        provider.clients[CLIENT_ID] = [f"{url}/console/signin/callback"]
        config = api_config(
            issuers=[
                {
                    "issuer": provider.issuer,
                    "jwks": pinned,
                    "group_roles": GROUP_ROLES,
                    "algorithms": ["ES256"],
                }
            ]
        )
        config["api"]["console"] = {
            "issuer": provider.issuer,
            "client_id": CLIENT_ID,
            "public_url": url,
            **console,
        }
        routes = tmp_path / "gateway.yaml"
        routes.write_text(yaml.safe_dump(config))
        gateway = Gateway(routes, Connector.of(aiops), reload_every=0)
        tokens = ApiTokens(aiops.pool) if aiops.pool is not None else None  # None: a bench, no database
        async with running(gateway, port=port):
            yield ConsoleStack(url, provider, tokens, gateway)  # type: ignore[arg-type]
