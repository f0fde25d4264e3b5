"""Agent health: what the monitor observes, the thresholds, and the verdict.

Pure functions, so the health monitor workflow can classify deterministically
and the rules are unit-tested on their own. An agent is *unhealthy* when it
cannot do its job (unreachable, failed, a failing health check, the circuit
breaker open, most decisions failing) and *degraded* when it works but
something needs a look (errors, failed actions, slow actions, a long queue, a
silent agent, a worker short of memory or disk).
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class HealthStatus(StrEnum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"

    @property
    def level(self) -> int:
        """0, 1, 2: the value of the ``aiops_agent_health`` gauge."""
        return [HealthStatus.HEALTHY, HealthStatus.DEGRADED, HealthStatus.UNHEALTHY].index(self)


class HealthThresholds(BaseModel):
    model_config = ConfigDict(extra="forbid")

    degraded_error_rate: float = Field(default=0.1, ge=0, le=1)
    unhealthy_error_rate: float = Field(default=0.5, ge=0, le=1)
    min_success_rate: float = Field(default=0.8, ge=0, le=1)
    min_finished_actions: int = Field(default=5, ge=1, description="rates below this many are not judged")
    min_decisions: int = Field(default=10, ge=1, description="error rates below this many are not judged")
    max_action_seconds: float = Field(default=600.0, gt=0, description="mean of the recent actions")
    max_queue_length: int = Field(default=1000, ge=1)
    max_heartbeat_age_seconds: float | None = Field(
        default=None, gt=0, description="degraded when no event arrived for this long (off by default)"
    )
    max_worker_memory_mb: float = Field(default=4096.0, gt=0)
    min_disk_free_ratio: float = Field(default=0.05, ge=0, le=1)
    status_timeout_seconds: float = Field(default=10.0, gt=0)
    max_initializing_seconds: float = Field(
        default=300.0, gt=0, description="an agent still initializing is judged only after this long"
    )


class WorkerResources(BaseModel):
    worker: str
    memory_mb: float
    disk_free_ratio: float


class AgentObservation(BaseModel):
    """One agent as the monitor saw it: its ``status`` answer and its health check."""

    agent_id: str
    agent_type: str = ""
    reachable: bool = True
    problem: str | None = None
    state: str | None = None
    error_rate: float = 0.0
    decisions: int = 0
    success_rate: float | None = None
    finished_actions: int = 0
    queue_length: int = 0
    circuit_open: bool = False
    recent_action_seconds: list[float] = Field(default_factory=list)
    heartbeat_age_seconds: float | None = None
    checks: dict[str, bool] = Field(default_factory=dict)
    check_error: str | None = None


class AgentHealth(BaseModel):
    agent_id: str
    agent_type: str
    status: HealthStatus
    reasons: list[str] = Field(default_factory=list)


class HealthTransition(BaseModel):
    agent_id: str
    agent_type: str
    previous: HealthStatus | None
    current: HealthStatus
    reasons: list[str]


def classify(o: AgentObservation, worker: WorkerResources, t: HealthThresholds) -> AgentHealth | None:
    """The verdict, or None for an agent too new to judge (still initializing, briefly)."""
    bad: list[str] = []
    poor: list[str] = []
    if o.reachable and o.state == "initializing":
        age = o.heartbeat_age_seconds or 0.0
        if age <= t.max_initializing_seconds:
            return None
        poor.append(f"still initializing after {age:.0f}s (its initialize hook keeps failing?)")
    if not o.reachable:
        bad.append(f"no heartbeat: the agent did not answer its status query ({o.problem or 'no answer'})")
    if o.state == "failed":
        bad.append("the agent failed")
    if o.check_error:
        bad.append(f"health check could not run: {o.check_error}")
    failing = sorted(name for name, ok in o.checks.items() if not ok)
    if failing:
        bad.append("failing health check(s): " + ", ".join(failing))
    if o.circuit_open:
        bad.append("the circuit breaker is open: automatic execution stopped after repeated failures")
    judged = o.decisions >= t.min_decisions
    if judged and o.error_rate >= t.unhealthy_error_rate and o.error_rate > 0:
        bad.append(f"decision error rate {o.error_rate:.0%} (unhealthy at {t.unhealthy_error_rate:.0%})")
    elif judged and o.error_rate >= t.degraded_error_rate and o.error_rate > 0:
        poor.append(f"decision error rate {o.error_rate:.0%} (degraded at {t.degraded_error_rate:.0%})")
    if (
        o.success_rate is not None
        and o.finished_actions >= t.min_finished_actions
        and o.success_rate < t.min_success_rate
    ):
        poor.append(f"action success rate {o.success_rate:.0%} (below {t.min_success_rate:.0%})")
    if o.recent_action_seconds:
        mean = sum(o.recent_action_seconds) / len(o.recent_action_seconds)
        if mean > t.max_action_seconds:
            poor.append(f"recent actions took {mean:.0f}s on average (limit {t.max_action_seconds:.0f}s)")
    if o.queue_length > t.max_queue_length:
        poor.append(f"{o.queue_length} events queued (limit {t.max_queue_length})")
    if (
        t.max_heartbeat_age_seconds is not None
        and o.heartbeat_age_seconds is not None
        and o.heartbeat_age_seconds > t.max_heartbeat_age_seconds
    ):
        poor.append(f"no event for {o.heartbeat_age_seconds:.0f}s (limit {t.max_heartbeat_age_seconds:.0f}s)")
    if worker.memory_mb > t.max_worker_memory_mb:
        limit = t.max_worker_memory_mb
        poor.append(f"worker {worker.worker} uses {worker.memory_mb:.0f} MB (limit {limit:.0f})")
    if worker.disk_free_ratio < t.min_disk_free_ratio:
        poor.append(f"worker {worker.worker} has {worker.disk_free_ratio:.1%} disk free")
    status = HealthStatus.UNHEALTHY if bad else HealthStatus.DEGRADED if poor else HealthStatus.HEALTHY
    return AgentHealth(agent_id=o.agent_id, agent_type=o.agent_type, status=status, reasons=[*bad, *poor])


def transitions(previous: dict[str, HealthStatus], current: list[AgentHealth]) -> list[HealthTransition]:
    """Changes worth an alert: a status that differs from the last one recorded, or a first
    sighting that is not healthy."""
    changes = []
    for health in current:
        before = previous.get(health.agent_id)
        if before == health.status or (before is None and health.status == HealthStatus.HEALTHY):
            continue
        changes.append(
            HealthTransition(
                agent_id=health.agent_id,
                agent_type=health.agent_type,
                previous=before,
                current=health.status,
                reasons=health.reasons,
            )
        )
    return changes
