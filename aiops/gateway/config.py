"""The gateway's config file: sources (who may send, how they prove it, how fast), routes, limits.

One YAML or JSON file (``aiops gateway --routes FILE``), versioned: its top-level
``version`` must rise with every change of content, so the version in force
(``/readyz``, the ``aiops_gateway_config_version`` gauge, the logs) names exactly
one content. Secrets are references, as everywhere in the framework: ``env:NAME``
or ``file:/path``, resolved in the gateway's memory when the file is loaded (and
again when a referenced file changes); a literal secret is refused.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from agents.secrets import resolve_reference
from aiops.contracts.config import AgentConfig, TrustedIssuer
from aiops.contracts.errors import AiopsError, SecretUnavailableError
from aiops.contracts.secret_refs import is_reference
from aiops.gateway.routing import Route

MIB = 1024 * 1024


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)


class Auth(_Strict):
    """``bearer``: ``Authorization: Bearer <token>``; ``hmac``: ``X-Aiops-Signature: sha256=<hex>``
    of the raw body with ``secret``; ``none``: no check (say so explicitly, e.g. on loopback)."""

    type: Literal["bearer", "hmac", "none"]
    token: str | None = None
    secret: str | None = None

    @model_validator(mode="after")
    def _references(self) -> Auth:
        needed = {"bearer": "token", "hmac": "secret"}.get(self.type)
        for name in ("token", "secret"):
            value = getattr(self, name)
            if value is None:
                continue
            if name != needed:
                raise ValueError(f"auth type {self.type} takes no {name}")
            if not is_reference(value):
                raise ValueError(
                    f"auth.{name}: a secret must be a reference, not a literal value; "
                    f'write "env:NAME" or "file:/run/secrets/{name}"'
                )
        if needed and getattr(self, needed) is None:
            raise ValueError(f"auth type {self.type} needs {needed} (env:NAME or file:/path)")
        return self


class RateLimit(_Strict):
    per_second: float = Field(default=50.0, gt=0, le=1_000_000)
    burst: int = Field(default=100, ge=1, le=1_000_000)


class Source(_Strict):
    auth: Auth
    rate_limit: RateLimit = Field(default_factory=RateLimit)


class Limits(_Strict):
    max_body_bytes: int = Field(default=MIB, ge=1024, le=64 * MIB)
    max_events_per_request: int = Field(default=2000, ge=1, le=100_000)
    read_timeout_seconds: float = Field(default=10.0, gt=0, le=300)


class Delivery(_Strict):
    """How long a request waits on Temporal before answering 503 (Alertmanager then retries)."""

    attempts: int = Field(default=3, ge=1, le=20)
    timeout_seconds: float = Field(default=5.0, gt=0, le=120)
    retry_after_seconds: int = Field(default=5, ge=1, le=3600)
    # Concurrent requests for one agent share its intake updates (see delivery.py): while this many
    # updates to the agent are under way, later batches for it wait and go together in the next one.
    coalesce: bool = True
    in_flight_per_agent: int = Field(default=8, ge=1, le=8)


class Console(_Strict):
    """The web console under ``/console`` (docs/console.md), served with the API when present.

    ``issuer``: the identity provider people sign in with (authorization code with PKCE); it must
    be one of ``api.issuers``, whose pinned keys check its ID tokens (``aud`` = ``client_id``).
    Optional: without one, people sign in with a personal API token or a passkey, and the
    sign-in page shows no identity provider's button.
    ``public_url``: where people reach the gateway (the redirect URI is
    ``<public_url>/console/signin/callback``); session cookies are ``Secure`` unless it is a
    loopback ``http://`` address. ``secret_env``: the environment variable holding the key that
    signs session cookies (32 bytes or more); unset, a random key per process (sessions end
    with it)."""

    issuer: str | None = Field(default=None, min_length=1, max_length=500)
    client_id: str | None = Field(default=None, min_length=1, max_length=200)
    client_secret_env: str | None = Field(default=None, pattern=r"^[A-Z_][A-Z0-9_]{0,100}$")
    public_url: str = Field(pattern=r"^https?://[^/?#\s]+$", max_length=500)
    scope: str = Field(default="openid profile groups", max_length=500)
    session_hours: float = Field(default=8.0, gt=0, le=24 * 7)
    secret_env: str = Field(default="AIOPS_CONSOLE_SECRET", pattern=r"^[A-Z_][A-Z0-9_]{0,100}$")

    @model_validator(mode="after")
    def _identity_provider(self) -> Console:
        if (self.issuer is None) != (self.client_id is None):
            raise ValueError(
                "issuer and client_id go together: both for sign-in with an identity provider, "
                "neither for sign-in with API tokens and passkeys only"
            )
        if self.issuer is None and self.client_secret_env is not None:
            raise ValueError("client_secret_env is the identity provider's client secret: it needs issuer")
        return self


class Api(_Strict):
    """The REST API under ``/v1`` (docs/api.md): served when this section is present.

    ``issuers``: identity providers whose JWTs name the caller (keys pinned, as in
    ``approval.issuers``); their tokens must carry ``aud`` = ``audience``. ``rate_limit`` is per
    person. ``decide_roles``: who may relay a decision (the workflow still checks the signature
    and the approver's roles of the action's own config)."""

    issuers: list[TrustedIssuer] = Field(default_factory=list, max_length=20)
    audience: str = Field(default="aiops-api", min_length=1, max_length=500)
    rate_limit: RateLimit = Field(default_factory=RateLimit)
    decide_roles: list[str] = Field(default_factory=lambda: ["approver", "operator", "sre", "admin"])
    console: Console | None = None  # the web console (docs/console.md)


class GatewayConfig(_Strict):
    version: int = Field(ge=1)
    sources: dict[str, Source] = Field(min_length=1)
    routes: list[Route] = Field(default_factory=list)
    limits: Limits = Field(default_factory=Limits)
    delivery: Delivery = Field(default_factory=Delivery)
    api: Api | None = None

    @model_validator(mode="after")
    def _consistent(self) -> GatewayConfig:
        names = [r.name for r in self.routes]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"route names must be unique: {', '.join(twice)}")
        for route in self.routes:
            unknown = sorted(set(route.sources) - set(self.sources))
            if unknown:
                raise ValueError(f"route {route.name!r} names unknown sources: {', '.join(unknown)}")
        return self


class ConfigProblem(AiopsError):
    """A config file that cannot be used; the message is one line naming the problem."""


@dataclass
class LoadedConfig:
    """A validated config with its secrets resolved and its agent configs read."""

    path: Path
    config: GatewayConfig
    digest: str
    secrets: dict[str, bytes] = field(default_factory=dict)
    agent_configs: dict[str, AgentConfig] = field(default_factory=dict)
    watched: dict[Path, tuple[float, int] | None] = field(default_factory=dict)

    @property
    def version(self) -> int:
        return self.config.version


def describe(err: ValidationError, limit: int = 3) -> str:
    parts = []
    for problem in err.errors()[:limit]:
        where = ".".join(str(p) for p in problem["loc"])
        parts.append(f"{where}: {problem['msg']}" if where else problem["msg"])
    more = len(err.errors()) - limit
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def file_stamp(path: Path) -> tuple[float, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return (stat.st_mtime, stat.st_size)


def load_config(path: Path) -> LoadedConfig:
    """Read, validate and resolve ``path``; raise ``ConfigProblem`` with one line otherwise."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise ConfigProblem(f"{path}: cannot read it: {err.strerror}") from None
    try:
        document = yaml.safe_load(raw)
    except yaml.YAMLError as err:
        reason = " ".join(str(err).split())
        raise ConfigProblem(f"{path}: not valid YAML/JSON: {reason}") from None
    if not isinstance(document, dict):
        raise ConfigProblem(f"{path}: the config must be a mapping with version, sources and routes")
    try:
        config = GatewayConfig.model_validate(document)
    except ValidationError as err:
        raise ConfigProblem(f"{path}: {describe(err)}") from None
    loaded = LoadedConfig(path, config, hashlib.sha256(raw).hexdigest())
    loaded.watched[path] = file_stamp(path)
    for name, source in config.sources.items():
        reference = source.auth.token or source.auth.secret
        if reference is None:
            continue
        try:
            value = resolve_reference(reference, f"sources.{name}.auth")
        except SecretUnavailableError as err:
            raise ConfigProblem(f"{path}: {err}") from None
        if not value:
            raise ConfigProblem(f"{path}: sources.{name}.auth: the secret {reference} is empty")
        loaded.secrets[name] = value.encode()
        if reference.startswith("file:"):
            secret_file = Path(reference.removeprefix("file:"))
            loaded.watched[secret_file] = file_stamp(secret_file)
    for route in config.routes:
        for agent_id, config_path in route.agent_configs.items():
            where = path.parent / config_path
            try:
                agent_config = AgentConfig.model_validate_json(where.read_bytes())
            except OSError as err:
                raise ConfigProblem(
                    f"{path}: route {route.name!r}: cannot read {where}: {err.strerror}"
                ) from None
            except ValidationError as err:
                raise ConfigProblem(f"{path}: route {route.name!r}: {where}: {describe(err)}") from None
            if agent_config.id != agent_id:
                raise ConfigProblem(
                    f"{path}: route {route.name!r}: {where} is the config of "
                    f"{agent_config.id!r}, not {agent_id!r}"
                )
            loaded.agent_configs[agent_id] = agent_config
            loaded.watched[where] = file_stamp(where)
    return loaded
