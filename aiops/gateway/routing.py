"""Routes: which agents receive an alert, as what event type and severity.

Routes are tried in order, like Alertmanager's child routes: the first whose
matchers all hold takes the alert, unless it says ``continue: true``, in which
case later routes are tried too. An alert no route takes is *unrouted*: counted,
logged and named in the answer, never silently dropped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from aiops.contracts.models import AGENT_ID_PATTERN, EventType, Severity, SystemEvent
from aiops.gateway.matchers import Matcher, Op

# How common severity label values map to the framework's severities; a route's own map wins.
DEFAULT_SEVERITY_MAP: dict[str, Severity] = {
    "critical": Severity.CRITICAL,
    "page": Severity.CRITICAL,
    "high": Severity.HIGH,
    "error": Severity.HIGH,
    "major": Severity.HIGH,
    "warning": Severity.MEDIUM,
    "warn": Severity.MEDIUM,
    "medium": Severity.MEDIUM,
    "minor": Severity.LOW,
    "low": Severity.LOW,
    "info": Severity.INFO,
    "none": Severity.INFO,
}


class Route(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, hide_input_in_errors=True)

    name: str = Field(min_length=1, max_length=100)
    matchers: list[str] = Field(
        default_factory=list, description='Alertmanager matchers: name="v", =~, !=, !~'
    )
    match: dict[str, str] = Field(
        default_factory=dict, description="equality matchers (Alertmanager's legacy form)"
    )
    match_re: dict[str, str] = Field(default_factory=dict, description="regex matchers (legacy form)")
    sources: list[str] = Field(default_factory=list, description="only for requests from these sources")
    agents: list[str] = Field(min_length=1)
    event_type: EventType = EventType.ALERT
    severity_label: str = "severity"
    severity_map: dict[str, Severity] = Field(default_factory=dict)
    default_severity: Severity = Severity.MEDIUM
    source_labels: list[str] = Field(default_factory=lambda: ["instance", "job", "alertname"])
    agent_configs: dict[str, Path] = Field(
        default_factory=dict,
        description="agent id -> its AgentConfig JSON file: start the agent with it when it is not running",
    )
    continue_: bool = Field(default=False, alias="continue")

    _compiled: list[Matcher] = PrivateAttr(default_factory=list)

    @field_validator("agents")
    @classmethod
    def _agent_ids(cls, agents: list[str]) -> list[str]:
        bad = [a for a in agents if not AGENT_ID_PATTERN.match(a)]
        if bad:
            raise ValueError(f"not valid agent ids: {', '.join(map(repr, bad))}")
        return list(dict.fromkeys(agents))

    @model_validator(mode="after")
    def _compile(self) -> Route:
        compiled = [Matcher.parse(m) for m in self.matchers]
        compiled += [Matcher.build(k, Op.EQUAL, v) for k, v in self.match.items()]
        compiled += [Matcher.build(k, Op.REGEX, v) for k, v in self.match_re.items()]
        self._compiled = compiled
        strangers = sorted(set(self.agent_configs) - set(self.agents))
        if strangers:
            raise ValueError(f"agent_configs names agents the route does not send to: {', '.join(strangers)}")
        return self

    def matches(self, labels: dict[str, str], source: str) -> bool:
        if self.sources and source not in self.sources:
            return False
        return all(m.matches(labels) for m in self._compiled)

    def severity(self, labels: dict[str, str]) -> Severity:
        value = labels.get(self.severity_label, "").strip().lower()
        if value in self.severity_map:
            return self.severity_map[value]
        return DEFAULT_SEVERITY_MAP.get(value, self.default_severity)

    def event_source(self, labels: dict[str, str]) -> str:
        for name in self.source_labels:
            if labels.get(name):
                return labels[name]
        return "alertmanager"


def select_routes(routes: list[Route], labels: dict[str, str], source: str) -> list[Route]:
    """The routes that take an alert with ``labels`` from ``source``: first match, plus ``continue`` ones."""
    chosen: list[Route] = []
    for route in routes:
        if route.matches(labels, source):
            chosen.append(route)
            if not route.continue_:
                break
    return chosen


def event_labels(event: SystemEvent) -> dict[str, str]:
    """What the routes of ``/v1/events`` match on: ``type``, ``source``, ``severity`` and ``data.labels``."""
    labels: dict[str, str] = {}
    extra: Any = event.data.get("labels")
    if isinstance(extra, dict):
        labels.update({str(k): str(v) for k, v in extra.items() if isinstance(v, str | int | float | bool)})
    labels.update(type=event.type.value, source=event.source, severity=event.severity.value)
    return labels
