"""An agent's config: ``AgentConfig`` with its runtime, retry and approval settings (approvers,
trusted issuers, quorum rules, command roles, notice channels).

Beside ``models.py``, which holds what an agent handles (events, actions, results, plans) and
the limits both share.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any

from pydantic import Field, field_validator, model_validator

from aiops.contracts.errors import AiopsError
from aiops.contracts.models import (
    AGENT_ID_PATTERN,
    MAX_CONFIG_BYTES,
    MAX_SECONDS,
    AgentType,
    AutomationLevel,
    RiskLevel,
    SystemEvent,
    _non_finite,
    _oversized,
    _Strict,
)
from aiops.contracts.passkey import MAX_PASSKEYS_PER_APPROVER, PasskeyCredential
from aiops.contracts.secret_refs import is_reference, literal_secret_problems
from aiops.contracts.text import VisibleName


class Integration(_Strict):
    """A system the agent talks to; secret settings are references (``env:NAME``, ``file:/path``)."""

    name: str
    type: str
    config: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _secrets_are_references(self) -> Integration:
        where = f"integration {self.name!r} config"
        problems = [*literal_secret_problems(self.config, where), *_non_finite(self.config, where)]
        if problems:
            raise ValueError("; ".join(problems))
        return self


class RetrySettings(_Strict):
    """The durable retry policy of an action's execute step."""

    maximum_attempts: int = Field(default=5, ge=1, le=1000)
    initial_interval_seconds: float = Field(default=1.0, gt=0, le=MAX_SECONDS)
    backoff_coefficient: float = Field(default=2.0, ge=1.0, le=100.0)
    maximum_interval_seconds: float = Field(default=60.0, gt=0, le=MAX_SECONDS)
    start_to_close_timeout_seconds: float = Field(default=300.0, gt=0, le=MAX_SECONDS)
    heartbeat_timeout_seconds: float | None = Field(default=None, gt=0, le=MAX_SECONDS)


class RuntimeSettings(_Strict):
    """How the agent workflow paces itself; the defaults suit production."""

    batch_size: int = Field(default=100, ge=1, le=1000)
    dedup_window: int = Field(default=2048, ge=1, le=8000)
    max_events_per_run: int = Field(default=20_000, ge=1, le=100_000)
    max_queue: int = Field(default=5000, ge=1, le=20000)
    # Actions started per run (each is a local-activity marker in the agent's history; runs
    # recorded before actions started from the worker started them as children, 2,000 at most).
    max_actions_per_run: int = Field(default=1000, ge=1, le=1500)
    decision_timeout_seconds: float = Field(default=30.0, gt=0, le=MAX_SECONDS)
    local_decisions: bool = True
    # How long an agent's start waits for a worker that serves its type to pick up initialization.
    worker_pickup_seconds: float = Field(default=60.0, ge=1, le=MAX_SECONDS)
    # Incidents: events with one correlation (correlation_id, or these labels' values) arriving
    # within this many seconds are decided once, together; None: every event is decided alone.
    incident_window_seconds: float | None = Field(default=None, gt=0, le=86400)
    incident_group_by: list[str] = Field(default_factory=list, max_length=10)
    # How often the agent's detector runs (agent types with a ``_detect_specific`` hook); None: never.
    detect_every_seconds: float | None = Field(default=None, ge=10, le=MAX_SECONDS)


def _unused(value: object) -> bool:
    return value is None or value == []


class Approver(_Strict):
    """A person who may decide actions. ``public_key`` (``ed25519:...``, from ``aiops keys
    generate``) verifies the tokens they sign; without one they can decide only where
    ``approval.allow_unsigned`` (dev mode) is set."""

    name: VisibleName = Field(min_length=1, max_length=200)
    roles: list[VisibleName] = Field(default_factory=list, max_length=50)
    public_key: str | None = Field(default=None, pattern=r"^ed25519:[A-Za-z0-9_-]{43}$")
    # Passkeys (WebAuthn) that sign their decisions too: the lines enrollment prints (docs/passkeys.md).
    # Left out of dumps while unused (as are the rp settings below), so a config without passkeys
    # serializes, and its reconfigure tokens' digests stay, as before they existed.
    passkeys: list[PasskeyCredential] = Field(
        default_factory=list, max_length=MAX_PASSKEYS_PER_APPROVER, exclude_if=_unused
    )


class ApprovalRule(_Strict):
    """Who may approve an action of one risk level, how many, and for how long."""

    roles: list[str] = Field(min_length=1)
    required_approvals: int = Field(default=1, ge=1, le=10)
    timeout_seconds: float = Field(default=3600.0, gt=0, le=MAX_SECONDS)


class AgentVerb(StrEnum):
    """What a person may ask of a running agent (see ``ApprovalSettings.command_roles``)."""

    PAUSE = "pause"
    RESUME = "resume"
    STOP = "stop"
    RESET_CIRCUIT_BREAKER = "reset-circuit-breaker"
    RECONFIGURE = "reconfigure"
    UPGRADE = "upgrade"  # continue as new now: the agent moves to the code its workers run today


def _default_command_roles() -> dict[AgentVerb, list[str]]:
    # Pausing only ever stops things, so any operator may; resuming, stopping and closing the
    # breaker let work go ahead or end it, as an SRE would; changing the config can change
    # who approves what, so it is an admin's.
    return {
        AgentVerb.PAUSE: ["operator", "sre", "admin"],
        AgentVerb.RESUME: ["sre", "admin"],
        AgentVerb.STOP: ["sre", "admin"],
        AgentVerb.RESET_CIRCUIT_BREAKER: ["sre", "admin"],
        AgentVerb.RECONFIGURE: ["admin"],
        AgentVerb.UPGRADE: ["sre", "admin"],
    }


MAX_JWKS_BYTES = 64 * 1024
ISSUER_ALGORITHMS = ("RS256", "RS384", "RS512", "ES256", "ES384", "PS256", "EdDSA")


class TrustedIssuer(_Strict):
    """An identity provider (OIDC) whose signed tokens prove who a person is, its key set pinned
    here (copied from its ``jwks_uri``; never fetched by a workflow). Its tokens carry the same
    binding claims as a personal key's (``aud`` the workflow id, ``verb``, ``digest``, ``exp``,
    ``jti``) plus ``iss``; the person's name is the ``name_claim`` and their roles come from
    ``group_roles`` of their ``groups_claim``, plus those of an approver of the same name."""

    issuer: str = Field(min_length=1, max_length=500)
    jwks: dict[str, Any]
    name_claim: str = Field(default="sub", min_length=1, max_length=100)
    groups_claim: str = Field(default="groups", min_length=1, max_length=100)
    group_roles: dict[str, list[str]] = Field(default_factory=dict, max_length=200)
    algorithms: list[str] = Field(default_factory=lambda: ["RS256", "ES256", "EdDSA"], min_length=1)

    @field_validator("algorithms")
    @classmethod
    def _known_algorithms(cls, value: list[str]) -> list[str]:
        unknown = [a for a in value if a not in ISSUER_ALGORITHMS]
        if unknown:
            raise ValueError(f"{unknown} not accepted; use some of {list(ISSUER_ALGORITHMS)}")
        return value

    @field_validator("jwks")
    @classmethod
    def _usable_key_set(cls, value: dict[str, Any]) -> dict[str, Any]:
        import json

        import jwt

        if len(json.dumps(value)) > MAX_JWKS_BYTES:
            raise ValueError(f"the key set is over {MAX_JWKS_BYTES} bytes")
        try:
            keys = jwt.PyJWKSet.from_dict(value).keys
        except jwt.PyJWTError as err:
            raise ValueError(f"not a usable JSON Web Key Set ({{'keys': [...]}}): {err}") from None
        if any(k.key_type == "oct" for k in keys):
            raise ValueError("a shared-secret ('oct') key cannot prove who signed; pin public keys only")
        return value

    def signing_keys(self, header: dict[str, Any], token: str) -> tuple[str, list[Any]]:
        """The algorithm a token's (unverified) header names and the pinned keys (``jwt.PyJWK``)
        that may have signed it: one check for approval tokens and API sign-in alike, so both
        refuse the same algorithms and keys. Raises ``UntrustedSigning`` naming what is wrong;
        ``token`` is how the message calls the token ("the token", "the JWT")."""
        import jwt

        algorithm = header.get("alg")
        if algorithm not in self.algorithms or algorithm not in ISSUER_ALGORITHMS:
            raise UntrustedSigning(
                f"{token} is signed with {str(algorithm)[:20]!r}; "
                f"{self.issuer} may sign with {', '.join(self.algorithms)}"
            )
        try:
            key_set = jwt.PyJWKSet.from_dict(dict(self.jwks))
        except jwt.PyJWTError as err:
            raise UntrustedSigning(f"the pinned key set of {self.issuer} is not usable: {err}") from None
        kid = header.get("kid")
        return str(algorithm), [k for k in key_set.keys if kid is None or k.key_id == kid]

    def roles_of(self, groups: object) -> list[str]:
        """The roles ``group_roles`` gives the groups a token's ``groups_claim`` names (one group
        or a list; anything else names none; at most 200 looked at)."""
        named = [groups] if isinstance(groups, str) else groups if isinstance(groups, list) else []
        return sorted({r for g in named[:200] if isinstance(g, str) for r in self.group_roles.get(g, [])})


class UntrustedSigning(AiopsError):
    """A token signed with an algorithm or a key set its issuer's pinned settings do not allow."""


def _default_rules() -> dict[RiskLevel, ApprovalRule]:
    return {
        RiskLevel.LOW: ApprovalRule(roles=["operator", "sre", "admin"], timeout_seconds=3600),
        RiskLevel.MEDIUM: ApprovalRule(roles=["sre", "admin"], timeout_seconds=4 * 3600),
        RiskLevel.HIGH: ApprovalRule(roles=["sre", "admin"], timeout_seconds=4 * 3600),
        RiskLevel.CRITICAL: ApprovalRule(roles=["sre", "admin"], required_approvals=2, timeout_seconds=3600),
    }


class ExpiryAction(StrEnum):
    ESCALATE = "escalate"
    REJECT = "reject"


class NotifyType(StrEnum):
    WEBHOOK = "webhook"  # a generic JSON POST
    SLACK = "slack"  # a Slack incoming webhook
    PAGERDUTY = "pagerduty"  # PagerDuty Events API v2


class NotifyStep(StrEnum):
    """When approvers are told: the wait starts, escalates, expires, or ends otherwise (approved,
    rejected or aborted: ``resolved``, which also resolves a PagerDuty incident)."""

    PENDING = "pending"
    ESCALATED = "escalated"
    EXPIRED = "expired"
    RESOLVED = "resolved"


PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
MAX_NOTIFY_CHANNELS = 10


class NotifyChannel(_Strict):
    """Where approvers are told that an action waits for them (``approval.notify``).

    URLs and keys that grant access are secret references (``env:NAME``, ``file:/path``)
    resolved only on the worker, as the config travels through history and the database: a
    Slack webhook URL and a PagerDuty routing key always; a generic webhook's URL may be a
    literal (it is often an internal endpoint), and its ``auth_header`` (the ``Authorization``
    header's value) is a reference.
    """

    type: NotifyType
    name: str = Field(default="", max_length=64)
    url: str | None = Field(default=None, min_length=1, max_length=2048)
    routing_key: str | None = Field(default=None, min_length=1, max_length=512)
    auth_header: str | None = Field(default=None, min_length=1, max_length=512)
    steps: list[NotifyStep] = Field(default_factory=lambda: list(NotifyStep), min_length=1, max_length=4)
    # The Temporal Web UI the evidence link points at; None: the worker's AIOPS_UI_URL, else
    # http://localhost:8233.
    ui_url: str | None = Field(default=None, max_length=512, pattern=r"^https?://[^\s]+$")
    # Delivery retries with backoff for this long, then gives up (audited either way).
    give_up_after_seconds: float = Field(default=3600.0, ge=10, le=86400)

    @model_validator(mode="after")
    def _usable(self) -> NotifyChannel:
        kind, problems = self.type.value, []
        if self.type == NotifyType.PAGERDUTY:
            if self.routing_key is None:
                problems.append("a pagerduty channel needs routing_key")
            if self.url is not None and not _is_http_url(self.url):
                problems.append("url (the Events API endpoint) must be an http(s) URL")
        elif self.routing_key is not None:
            problems.append(f"routing_key is for pagerduty channels, not {kind}")
        if self.type != NotifyType.PAGERDUTY and self.url is None:
            problems.append(f"a {kind} channel needs url")
        if self.type == NotifyType.SLACK and self.url is not None and not is_reference(self.url):
            problems.append(_must_be_reference("url", "SLACK_WEBHOOK_URL"))
        if self.type == NotifyType.WEBHOOK and self.url is not None:
            if not (is_reference(self.url) or _is_http_url(self.url)):
                problems.append("url must be an http(s) URL or a secret reference")
        if self.routing_key is not None and not is_reference(self.routing_key):
            problems.append(_must_be_reference("routing_key", "PAGERDUTY_ROUTING_KEY"))
        if self.auth_header is not None:
            if self.type != NotifyType.WEBHOOK:
                problems.append(f"auth_header is for webhook channels, not {kind}")
            elif not is_reference(self.auth_header):
                problems.append(_must_be_reference("auth_header", "WEBHOOK_AUTH_HEADER"))
        if len(set(self.steps)) != len(self.steps):
            problems.append("steps lists a step twice")
        if problems:  # never the value: a refused literal may be a secret
            raise ValueError(f"notify {kind} channel: " + "; ".join(problems))
        return self

    def secret_references(self) -> dict[str, str]:
        """The fields holding references, by name (resolved by the worker that delivers)."""
        fields = {"url": self.url, "routing_key": self.routing_key, "auth_header": self.auth_header}
        return {k: v for k, v in fields.items() if v is not None and is_reference(v)}


def _is_http_url(value: str) -> bool:
    return re.match(r"^https?://[^\s]+$", value) is not None


def _must_be_reference(field: str, env_name: str) -> str:
    return (
        f"{field} is a secret and must be a reference, not a literal value; write "
        f'"env:{env_name}" (an environment variable on the worker) or "file:/run/secrets/{field}"'
    )


class ApprovalSettings(_Strict):
    """Approvers, the rules per risk level, and the limits of safe autonomy."""

    approvers: list[Approver] = Field(default_factory=list)
    rules: dict[RiskLevel, ApprovalRule] = Field(default_factory=_default_rules)
    auto_execute_max_risk: RiskLevel | None = None
    deny_at_or_above: RiskLevel | None = None
    on_expiry: ExpiryAction = ExpiryAction.ESCALATE
    escalation_target: str = "on-call"
    escalation_extension_seconds: float | None = Field(default=None, gt=0, le=MAX_SECONDS)
    max_auto_executions: int | None = Field(default=None, ge=0)
    auto_execution_window_seconds: float = Field(default=3600.0, gt=0, le=MAX_SECONDS)
    circuit_breaker_failures: int = Field(default=3, ge=1)
    # Who is told when an action starts waiting, escalates, expires or is decided (see NotifyChannel).
    notify: list[NotifyChannel] = Field(default_factory=list, max_length=MAX_NOTIFY_CHANNELS)
    # The approver's console (served by the API process): notices and the Web UI details link each
    # action to <console_url>/console/actions/<action id>. None: no console link anywhere. A base
    # URL (host, port, path; no query) of characters safe inside Slack's and Markdown's link syntax.
    # Left out of the JSON when unset, so signed reconfigure digests and histories stay as before.
    console_url: str | None = Field(
        default=None,
        max_length=512,
        pattern=r"^https?://[A-Za-z0-9._~:/@%+-]+$",
        exclude_if=lambda url: url is None,
    )
    # Dev mode: approvals and agent commands by name alone, without a signed token. Off unless
    # set: then every view (status, Web UI details, CLI, audit row) says it was unauthenticated.
    allow_unsigned: bool = False
    # Identity providers whose tokens are trusted besides the approvers' personal keys.
    issuers: list[TrustedIssuer] = Field(default_factory=list, max_length=10)
    # Who may pause, resume, stop, reset the circuit breaker of, or reconfigure the agent.
    command_roles: dict[AgentVerb, list[str]] = Field(default_factory=_default_command_roles)
    # The WebAuthn relying party the approvers' passkeys belong to: its id (a host name, like
    # "aiops.example.com") and the exact origins the console is served from.
    passkey_rp_id: str | None = Field(
        default=None, max_length=253, pattern=r"^[a-z0-9.-]+$", exclude_if=_unused
    )
    passkey_origins: list[str] = Field(default_factory=list, max_length=10, exclude_if=_unused)

    @model_validator(mode="after")
    def _passkeys_usable(self) -> ApprovalSettings:
        ids = [p.id for a in self.approvers for p in a.passkeys]
        if ids and not (self.passkey_rp_id and self.passkey_origins):
            raise ValueError("approvers have passkeys: set approval.passkey_rp_id and passkey_origins")
        if len(set(ids)) != len(ids):
            raise ValueError("a passkey id is registered twice (each passkey belongs to one approver)")
        for origin in self.passkey_origins:
            if not re.fullmatch(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?", origin):
                raise ValueError(f"passkey origin {origin[:80]!r} is not like https://host[:port]")
        return self

    def roles_for(self, verb: AgentVerb) -> list[str]:
        roles = self.command_roles.get(verb)
        return roles if roles is not None else _default_command_roles()[verb]

    def rule_for(self, risk: RiskLevel) -> ApprovalRule:
        rule = self.rules.get(risk)
        return rule if rule is not None else _default_rules()[risk]

    def approver(self, name: str) -> Approver | None:
        return next((a for a in self.approvers if a.name == name), None)


MAX_CONFIG_CASES = 50
MAX_CASE_EVENT_BYTES = 16_000


class CaseOutcome(StrEnum):
    """What the policy does with a case's proposed action (``aiops.contracts.policy.Outcome``)."""

    RUN = "run"  # runs on its own
    APPROVAL = "approval"  # waits for approval
    DENY = "deny"


class CaseExpectation(_Strict):
    """What a config case expects. ``action`` is required: the proposed action type, or null for
    "proposes nothing"; ``risk`` and ``outcome`` are checked only when given."""

    action: str | None = Field(max_length=100)
    risk: RiskLevel | None = None
    outcome: CaseOutcome | None = None


class ConfigCase(_Strict):
    """A test inside a config: this event must lead to this proposal and this policy outcome.

    Run by ``aiops config test``, and on every config change (the reconfigure path's validation
    activity, on a worker of the agent's type): a config whose cases fail is refused, naming them.
    The outcome is the policy's with no history (no open circuit breaker, no rate limit spent).
    """

    name: str = Field(min_length=1, max_length=200)
    event: SystemEvent
    expect: CaseExpectation

    @model_validator(mode="after")
    def _small_event(self) -> ConfigCase:
        size = len(self.event.model_dump_json())
        if size > MAX_CASE_EVENT_BYTES:
            raise ValueError(
                f"case {self.name[:60]!r}: its event is {size} bytes, over {MAX_CASE_EVENT_BYTES}"
            )
        return self


class AgentConfig(_Strict):
    id: str
    name: VisibleName
    type: str
    enabled: bool = True
    automation_level: AutomationLevel = AutomationLevel.SEMI_AUTO
    thresholds: dict[str, float] = Field(default_factory=dict)
    approval_required: bool = False
    integrations: list[Integration] = Field(default_factory=list)
    settings: dict[str, Any] = Field(default_factory=dict)
    retry: RetrySettings = Field(default_factory=RetrySettings)
    approval: ApprovalSettings = Field(default_factory=ApprovalSettings)
    runtime: RuntimeSettings = Field(default_factory=RuntimeSettings)
    version: int = Field(default=0, ge=0)
    # Cases the config must pass before it is applied (see ConfigCase); names are unique. Left
    # out of the JSON when empty, so a config without cases serializes (and its signed
    # reconfigure digest, and the recorded histories) exactly as before the field existed.
    tests: list[ConfigCase] = Field(
        default_factory=list, max_length=MAX_CONFIG_CASES, exclude_if=lambda cases: not cases
    )

    @field_validator("tests")
    @classmethod
    def _unique_case_names(cls, value: list[ConfigCase]) -> list[ConfigCase]:
        names = [c.name for c in value]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"case names must be unique; named twice: {twice[:5]}")
        return value

    @field_validator("id")
    @classmethod
    def _id_is_usable_in_workflow_ids(cls, value: str) -> str:
        if not AGENT_ID_PATTERN.match(value):
            raise ValueError(
                "agent id must start with a letter or digit and contain only "
                "letters, digits and _ . - (at most 64 characters)"
            )
        return value

    @field_validator("type", mode="before")
    @classmethod
    def _type_as_plain_name(cls, value: Any) -> Any:
        if isinstance(value, AgentType):
            return value.value
        return value

    @field_validator("settings")
    @classmethod
    def _secret_settings_are_references(cls, value: dict[str, Any]) -> dict[str, Any]:
        problems = [
            *literal_secret_problems(value, "settings"),
            *_non_finite(value, "settings"),
            *_oversized(value, "settings"),
        ]
        if problems:
            raise ValueError("; ".join(problems))
        return value

    @model_validator(mode="after")
    def _bounded(self) -> AgentConfig:
        problems = [
            *_oversized(self.name, "name"),
            *_oversized(self.type, "type"),
            *(
                p
                for i in self.integrations
                for p in _oversized(i.config, f"integration {i.name[:40]!r} config")
            ),
        ]
        if problems:
            raise ValueError("; ".join(problems))
        size = len(self.model_dump_json())
        if size > MAX_CONFIG_BYTES:
            raise ValueError(
                f"the config is {size} bytes as JSON, over the {MAX_CONFIG_BYTES}-byte limit; "
                "keep large data elsewhere (a file or URL the agent reads) and reference it in settings"
            )
        return self
