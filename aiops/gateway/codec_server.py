"""The codec server: the Temporal Web UI and ``temporal --codec-endpoint`` decode payloads here.

The Temporal server stores only ciphertext (``aiops.codec``); a person reading a workflow in the
Web UI or the ``temporal`` CLI sees it decoded only when their tool sends the payloads to a codec
server holding the keys, and only with a token this server accepts. Temporal's remote-codec
protocol: ``POST <endpoint>/decode`` (and ``/encode``, which the Web UI uses to send a signal's
input) with the JSON form of ``Payloads``, ``{"payloads": [{"metadata": {...}, "data": "..."}]}``,
every bytes field base64; the answer has the same shape.

Settings (environment, like the keys; docs/encryption.md):

- ``AIOPS_CODEC_SERVER_TOKENS``: the accepted tokens, as hash lines ``name:sha256:<hex>`` separated
  by commas or newlines, or ``file:/path`` to a file of them (``aiops codec token NAME`` prints a
  new token and its line). Only hashes are stored; a token is compared by its SHA-256 in constant
  time. Unset: no codec server (the routes are not mounted: 404).
- ``AIOPS_CODEC_SERVER_ORIGINS``: the browser origins allowed to call it (CORS), e.g. the Web UI's
  ``https://temporal.example.com``; a preflight from another origin is refused.
- ``AIOPS_CODEC_SERVER_MAX_BYTES``: the largest body accepted (default 4 MiB).

Every refusal is one line of JSON (``{"error": ...}``), logged and counted in
``aiops_gateway_codec_requests{operation, code}``.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial

from google.protobuf import json_format
from prometheus_client import CollectorRegistry, Counter
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from temporalio.api.common.v1 import Payloads

from agents.secrets import resolve_reference
from aiops.codec import CodecConfigError, CodecError, EncryptionCodec, codec_from_env
from aiops.codec.tokens import parse_hash_lines
from aiops.contracts.errors import SecretUnavailableError
from aiops.contracts.secret_refs import is_reference
from aiops.gateway.body import read_body

log = logging.getLogger("aiops.gateway.codec")

TOKENS_ENV = "AIOPS_CODEC_SERVER_TOKENS"
ORIGINS_ENV = "AIOPS_CODEC_SERVER_ORIGINS"
MAX_BYTES_ENV = "AIOPS_CODEC_SERVER_MAX_BYTES"
DEFAULT_MAX_BYTES = 4 * 1024 * 1024
READ_TIMEOUT_SECONDS = 10.0
MAX_PAYLOADS = 10_000
ALLOWED_HEADERS = "Authorization, Content-Type, X-Namespace"


@dataclass(frozen=True)
class CodecServerSettings:
    codec: EncryptionCodec
    token_hashes: Mapping[str, bytes]
    origins: frozenset[str] = frozenset()
    max_bytes: int = DEFAULT_MAX_BYTES

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> CodecServerSettings | None:
        """The settings, ``None`` when no tokens are configured; ``CodecConfigError`` when wrong."""
        env = os.environ if environ is None else environ
        tokens = env.get(TOKENS_ENV, "").strip()
        if not tokens:
            return None
        codec = codec_from_env(env)
        if codec is None:
            raise CodecConfigError(
                f"{TOKENS_ENV} is set but encryption is off: the codec server needs the keys "
                "(AIOPS_CODEC_KEYS) to decode anything"
            )
        if is_reference(tokens):
            try:
                tokens = resolve_reference(tokens, TOKENS_ENV)
            except SecretUnavailableError as err:
                raise CodecConfigError(str(err)) from None
        hashes = parse_hash_lines(tokens, TOKENS_ENV)
        origins = frozenset(o.strip().rstrip("/") for o in env.get(ORIGINS_ENV, "").split(",") if o.strip())
        text = env.get(MAX_BYTES_ENV, "").strip() or str(DEFAULT_MAX_BYTES)
        if not text.isdigit() or not 1024 <= int(text) <= 64 * 1024 * 1024:
            raise CodecConfigError(f"{MAX_BYTES_ENV}={text[:20]!r}: give a byte count from 1024 to 67108864")
        return cls(codec, hashes, origins, int(text))


class _Refused(CodecError):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass
class CodecServer:
    settings: CodecServerSettings
    registry: CollectorRegistry | None = None
    requests: Counter = field(init=False)

    def __post_init__(self) -> None:
        self.requests = Counter(
            "aiops_gateway_codec_requests",
            "Codec server requests by operation (encode, decode, preflight) and status code",
            ["operation", "code"],
            registry=self.registry,
        )

    def routes(self) -> list[Route]:
        return [
            Route(f"/codec/{operation}", partial(self.handle, operation), methods=["POST", "OPTIONS"])
            for operation in ("encode", "decode")
        ]

    async def handle(self, operation: str, request: Request) -> Response:
        origin = request.headers.get("origin", "").rstrip("/")
        cors = self._cors(origin)
        try:
            if origin and not cors:
                raise _Refused(403, f"origin {origin[:100]!r} is not allowed (add it to {ORIGINS_ENV})")
            if request.method == "OPTIONS":
                return self._answer("preflight", 204, None, cors, request)
            self._authenticate(request)
            body = await read_body(request, self.settings.max_bytes, READ_TIMEOUT_SECONDS, _Refused)
            return self._answer(operation, 200, await self._transform(operation, body), cors, request)
        except _Refused as refusal:
            return self._answer(operation, refusal.status, {"error": refusal.reason}, cors, request)
        except Exception as err:  # a bug costs one request a 500, never the process
            log.exception("codec server request failed")
            reason = " ".join(str(err).split())[:200]
            return self._answer(operation, 500, {"error": f"internal error: {reason}"}, cors, request)

    def _cors(self, origin: str) -> dict[str, str]:
        if not origin or origin not in self.settings.origins:
            return {}
        return {
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Methods": "POST, OPTIONS",
            "Access-Control-Allow-Headers": ALLOWED_HEADERS,
            "Access-Control-Allow-Credentials": "true",
            "Access-Control-Max-Age": "600",
            "Vary": "Origin",
        }

    def _authenticate(self, request: Request) -> None:
        given = request.headers.get("authorization", "")
        scheme, _, token = given.partition(" ")
        if not given:
            raise _Refused(401, "missing Authorization: Bearer <codec server token>")
        if scheme.lower() != "bearer" or not token.strip():
            raise _Refused(401, "the Authorization header must be 'Bearer <codec server token>'")
        digest = hashlib.sha256(token.strip().encode()).digest()
        matched = False
        for expected in self.settings.token_hashes.values():  # every hash compared: constant time
            matched |= hmac.compare_digest(digest, expected)
        if not matched:
            raise _Refused(401, "bad codec server token")

    async def _transform(self, operation: str, body: bytes) -> dict[str, object]:
        message = Payloads()
        try:
            json_format.Parse(body, message)
        except (json_format.ParseError, UnicodeDecodeError, RecursionError) as err:
            reason = " ".join(str(err).split())[:200]
            raise _Refused(400, f'not a Payloads JSON body {{"payloads": [...]}}: {reason}') from None
        if len(message.payloads) > MAX_PAYLOADS:
            raise _Refused(422, f"{len(message.payloads)} payloads, over the limit of {MAX_PAYLOADS}")
        codec = self.settings.codec
        try:
            if operation == "encode":
                result = await codec.encode(list(message.payloads))
            else:
                result = await codec.decode(list(message.payloads))
        except CodecError as err:
            raise _Refused(422, str(err)) from None
        answer: dict[str, object] = json_format.MessageToDict(Payloads(payloads=result))
        answer.setdefault("payloads", [])
        return answer

    def _answer(
        self,
        operation: str,
        status: int,
        body: dict[str, object] | None,
        cors: Mapping[str, str],
        request: Request,
    ) -> Response:
        self.requests.labels(operation, str(status)).inc()
        if status >= 400:
            client = request.client.host if request.client else "?"
            error = body.get("error") if body else ""
            log.warning(
                "codec server refused %s %s from %s: %s %s", request.method, operation, client, status, error
            )
        headers = dict(cors)
        if status == 401:
            headers["WWW-Authenticate"] = "Bearer"
        if body is None:
            return Response(status_code=status, headers=headers)
        return JSONResponse(body, status_code=status, headers=headers)


def check_settings() -> CodecServerSettings | None:
    """The settings from the environment; ``CodecConfigError`` when wrong. The gateway command
    calls it before serving, so a bad key or token line stops it at start (the keys are checked
    even with no codec server: the gateway's own client seals the events it sends)."""
    codec_from_env()
    return CodecServerSettings.from_env()


def codec_routes(registry: CollectorRegistry | None = None) -> list[Route]:
    """The codec server's routes when configured (``AIOPS_CODEC_SERVER_TOKENS``), else none."""
    settings = check_settings()
    return CodecServer(settings, registry).routes() if settings is not None else []
