"""Sign-in with the identity provider: OpenID Connect, authorization code with PKCE (S256).

The protocol is Authlib's OAuth 2 client (``AsyncOAuth2Client``: the authorization URL with its
``code_challenge``, and the code exchanged with its ``code_verifier``), the library the field
relies on for it. The endpoints come from the issuer's discovery document; the ID token is then
checked with the API's own ``verify_jwt`` against the keys **pinned** in ``api.issuers``, never
against keys fetched at sign-in, so an identity provider whose keys were swapped cannot sign
anyone in. Its ``aud`` must be the console's ``client_id`` and its ``nonce`` the one this browser's
flow cookie holds.
"""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import jwt
from authlib.integrations.httpx_client import AsyncOAuth2Client

from aiops.api.auth import Principal, Unauthenticated, verify_jwt
from aiops.contracts.config import TrustedIssuer
from aiops.gateway.config import Console

from .session import FLOW_SECONDS, SessionRefused

CALLBACK = "/console/signin/callback"
HTTP_TIMEOUT = 10.0


class SignInRefused(SessionRefused):
    """The identity provider's answer cannot sign anyone in; the message says why."""


class NoIdentityProvider(SignInRefused):
    """The console has no ``issuer``: sign-in is by API token or passkey only."""


def provider(settings: Console) -> tuple[str, str]:
    """The console's identity provider and its client id; ``NoIdentityProvider`` without one."""
    if settings.issuer is None or settings.client_id is None:
        raise NoIdentityProvider(
            "this console has no identity provider (console.issuer): sign in with an API token or a passkey"
        )
    return settings.issuer, settings.client_id


class Oidc:
    """One console's client of its identity provider (discovery cached for the process)."""

    def __init__(self) -> None:
        self._discovered: dict[str, tuple[float, dict[str, Any]]] = {}

    def issuer(self, settings: Console, issuers: list[TrustedIssuer]) -> TrustedIssuer:
        wanted, _ = provider(settings)
        found = next((i for i in issuers if i.issuer == wanted), None)
        if found is None:
            raise SignInRefused(
                f"console.issuer {wanted!r} is not one of api.issuers: its keys must be pinned there"
            )
        return found

    async def discovery(self, issuer: str) -> dict[str, Any]:
        cached = self._discovered.get(issuer)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        url = f"{issuer.rstrip('/')}/.well-known/openid-configuration"
        try:
            async with httpx.AsyncClient(timeout=HTTP_TIMEOUT) as http:
                answer = await http.get(url)
            answer.raise_for_status()
            document = answer.json()
        except (httpx.HTTPError, ValueError) as err:
            raise SignInRefused(f"the identity provider's discovery document ({url}) failed: {err}") from None
        if not isinstance(document, dict) or document.get("issuer") != issuer:
            raise SignInRefused(f"{url} is not the discovery document of {issuer}")
        for endpoint in ("authorization_endpoint", "token_endpoint"):
            if not isinstance(document.get(endpoint), str):
                raise SignInRefused(f"{url} names no {endpoint}")
        self._discovered[issuer] = (time.monotonic() + 300, document)
        return document

    @staticmethod
    def _client(settings: Console, secret: str | None) -> AsyncOAuth2Client:
        return AsyncOAuth2Client(
            client_id=provider(settings)[1],
            client_secret=secret,
            scope=settings.scope,
            redirect_uri=settings.public_url.rstrip("/") + CALLBACK,
            code_challenge_method="S256",
            token_endpoint_auth_method="client_secret_basic" if secret else "none",
            timeout=HTTP_TIMEOUT,
        )

    async def begin(self, settings: Console, secret: str | None) -> tuple[str, dict[str, Any]]:
        """The identity provider's authorization URL, and the flow to keep in the browser's cookie."""
        document = await self.discovery(provider(settings)[0])
        flow = {
            "state": secrets.token_urlsafe(24),
            "nonce": secrets.token_urlsafe(24),
            "verifier": secrets.token_urlsafe(48),  # 64 characters: RFC 7636 asks 43 to 128
            "expires": time.time() + FLOW_SECONDS,
        }
        async with self._client(settings, secret) as client:
            url, _ = client.create_authorization_url(
                document["authorization_endpoint"],
                state=flow["state"],
                code_verifier=flow["verifier"],
                nonce=flow["nonce"],
            )
        return url, flow

    async def finish(
        self,
        settings: Console,
        secret: str | None,
        issuers: list[TrustedIssuer],
        flow: dict[str, Any],
        query: dict[str, str],
    ) -> Principal:
        """The person the identity provider's redirect names, or ``SignInRefused`` saying why."""
        if "error" in query:
            said = " ".join(f"{query.get('error', '')}: {query.get('error_description', '')}".split())[:300]
            raise SignInRefused(f"the identity provider refused the sign-in ({said})")
        if not secrets.compare_digest(str(query.get("state", "")), str(flow.get("state", ""))):
            raise SignInRefused("the sign-in's state does not match this browser's (start again)")
        code = query.get("code", "")
        if not code or len(code) > 2000:
            raise SignInRefused("the identity provider's redirect carries no code")
        trusted = self.issuer(settings, issuers)
        issuer, client_id = provider(settings)
        document = await self.discovery(issuer)
        async with self._client(settings, secret) as client:
            try:
                token = await client.fetch_token(
                    document["token_endpoint"], code=code, code_verifier=flow["verifier"]
                )
            except Exception as err:  # Authlib raises its OAuthError, httpx its own: both say why
                raise SignInRefused(f"the identity provider did not exchange the code: {err}") from None
        id_token = token.get("id_token")
        if not isinstance(id_token, str):
            raise SignInRefused("the identity provider's answer holds no ID token (is 'openid' in scope?)")
        try:
            principal = verify_jwt(id_token, [trusted], client_id, datetime.now(UTC))
        except Unauthenticated as err:
            raise SignInRefused(f"the ID token is refused: {err}") from None
        claims = jwt.decode(id_token, options={"verify_signature": False})  # verified just above
        if not secrets.compare_digest(str(claims.get("nonce", "")), str(flow.get("nonce", ""))):
            raise SignInRefused("the ID token's nonce is not this sign-in's (replayed?)")
        return principal
