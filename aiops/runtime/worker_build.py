"""Which workflows and activities a worker serves: one place, for the worker process,
the tests and the benchmarks alike."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable, Sequence
from datetime import timedelta
from typing import Any

import asyncpg
from temporalio.client import Client
from temporalio.common import VersioningBehavior, WorkerDeploymentVersion
from temporalio.worker import Worker, WorkerDeploymentConfig

from activities.action_start import ActionStarter
from activities.agent_activities import AgentActivities
from activities.audit_activities import AuditActivities
from activities.config_activities import ConfigActivities
from activities.database.audit_log import AuditLog
from activities.database.config_store import ConfigStore
from activities.detector_activities import DetectorActivities
from activities.first_activation import FirstActivations
from activities.health_activities import HealthActivities
from activities.notify_activities import NotifyActivities
from activities.overflow_activities import OverflowActivities
from agents.registry import worker_plugins
from agents.services import install_services
from aiops.contracts.agent import DEFAULT_TASK_QUEUE, hooks_task_queue
from aiops.runtime.activation_memory import DetachActivation, detached_runner
from aiops.runtime.services import WorkerServices
from workflows.action.workflow import ActionWorkflow
from workflows.agent.detector import DetectorWorkflow
from workflows.agent.overflow import AgentOverflowWorkflow
from workflows.agent.workflow import AgentWorkflow
from workflows.health_monitor import HealthMonitorWorkflow
from workflows.sandbox import OWN_PACKAGES

WORKFLOWS = [AgentWorkflow, ActionWorkflow, HealthMonitorWorkflow, DetectorWorkflow, AgentOverflowWorkflow]


class WorkerGroup:
    """The Temporal workers one process runs: one on the shared task queue (every workflow and
    activity), one per agent type it serves, on that type's hooks queue (the type's actions and
    the activities that run agent code), and the extra workers the served types registered
    through the worker-plugin hook. Used like a single ``Worker``: ``async with``, ``run()``,
    ``is_running``."""

    def __init__(self, main: Worker, by_type: dict[str, Worker], extra: Sequence[Worker] = ()) -> None:
        self.main = main
        self.by_type = by_type
        self.extra = list(extra)  # the agent types' plugin workers, on queues of their own
        self._stack: contextlib.AsyncExitStack | None = None

    @property
    def workers(self) -> list[Worker]:
        return [self.main, *self.by_type.values(), *self.extra]

    @property
    def is_running(self) -> bool:
        return all(w.is_running for w in self.workers)

    @property
    def task_queue(self) -> str:
        return self.main.task_queue

    async def __aenter__(self) -> WorkerGroup:
        async with contextlib.AsyncExitStack() as stack:
            for worker in self.workers:
                await stack.enter_async_context(worker)
            self._stack = stack.pop_all()
        return self

    async def __aexit__(self, *exc: object) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()

    async def run(self) -> None:
        await asyncio.gather(*(w.run() for w in self.workers))

    async def shutdown(self) -> None:
        await asyncio.gather(*(w.shutdown() for w in self.workers))


def build_worker(
    client: Client,
    task_queue: str = DEFAULT_TASK_QUEUE,
    activities: AgentActivities | None = None,
    identity: str | None = None,
    graceful_shutdown: timedelta = timedelta(seconds=30),
    pool: asyncpg.Pool | None = None,
    extra_workflows: Sequence[type] = (),
    extra_activities: Sequence[Callable[..., Any]] = (),
    max_cached_workflows: int = 1000,
    deployment: WorkerDeploymentConfig | None = None,
    plugin_types: Iterable[str] | None = None,
    unsandboxed_packages: Sequence[str] = OWN_PACKAGES,
) -> WorkerGroup:
    """The workers for every workflow and activity; ``pool`` backs the config store and audit log.

    Agent types served are ``activities.agent_types`` (every registered type by default): one
    activity worker per type polls ``hooks_task_queue(task_queue, type)``, so agent code only
    ever runs where its type is. Without a pool, audit steps are only logged and configs cannot
    be stored.

    Agent types may need workers of their own (their workflows on a queue of their own, a worker
    plugin): they register a factory with ``agents.registry.register_worker_plugin``, and the
    factories of the types in ``plugin_types`` (default: the types served) are built here, into
    ``WorkerGroup.extra``. A type not served never has its factory called, nor what it imports.

    Building installs the framework services agents ask for (``agents.services``) over
    ``client``; in a process building several workers, the latest build's client serves them.

    Workflows defined in ``unsandboxed_packages`` (this project's ``workflows``) run outside
    Temporal's sandbox, every other one inside it (see ``workflows/sandbox.py``).
    """
    activities = activities or AgentActivities(client=client, identity=identity or "")
    config = ConfigActivities(ConfigStore(pool) if pool else None, activities.instances)
    audit = AuditActivities(AuditLog(pool) if pool else None)
    if activities.audit is None:
        activities.audit = audit.audit  # decisions write their audit rows themselves
    if activities.register is None:
        activities.register = config.register_config  # an agent's start registers its config itself
    health = HealthActivities(client, activities.instances, pool)
    detectors = DetectorActivities(client)
    notify = NotifyActivities()  # approval notices; AIOPS_UI_URL sets the evidence links' Web UI
    common: dict[str, Any] = {
        "identity": identity,
        "graceful_shutdown_timeout": graceful_shutdown,
        "deployment_config": deployment,
    }
    # One per process: the agent's action starts wait on it for the first activation the runner
    # computes of an eagerly started action (activities/first_activation.py).
    first_activations = FirstActivations()
    # Hooks are registered on the shared queue too: decisions run as local activities there, and
    # actions started there (before the type queues ran actions) still schedule hooks there.
    every_activity = [
        *activities.all(),
        *config.all(),
        *audit.all(),
        *health.all(),
        *health.hooks(),
        *detectors.all(),
        *notify.all(),
        *OverflowActivities(client).all(),
        *ActionStarter(client, first_activations).all(),
        *extra_activities,
    ]
    runner: dict[str, Any] = {
        "max_cached_workflows": max_cached_workflows,
        "workflow_runner": detached_runner(unsandboxed_packages, first_activations),
        "interceptors": [DetachActivation()],  # with the runner: see aiops/runtime/activation_memory.py
    }
    main = Worker(
        client,
        task_queue=task_queue,
        workflows=[*WORKFLOWS, *extra_workflows],
        activities=every_activity,
        **runner,
        **common,
    )
    # One worker per agent type on its own queue: the type's actions run there, with every
    # activity they schedule (hooks, audit rows, notices), so each is dispatched eagerly to the
    # worker whose workflow task scheduled it; other hooks (health checks, config checks) come
    # from the shared queue's workflows and the client. Only workers that have the type poll it.
    by_type = {
        agent_type: Worker(
            client,
            task_queue=hooks_task_queue(task_queue, agent_type),
            workflows=[ActionWorkflow],
            activities=every_activity,
            max_concurrent_activity_task_polls=2,  # one queue per type: keep the idle pollers few
            max_concurrent_workflow_task_polls=2,
            **runner,
            **common,
        )
        for agent_type in sorted(activities.agent_types)
    }
    install_services(WorkerServices(client))
    served = activities.agent_types if plugin_types is None else plugin_types
    extra = [factory(client, task_queue, **common) for factory in worker_plugins(served)]
    return WorkerGroup(main, by_type, extra)


def versioned_deployment(deployment_name: str, build_id: str) -> WorkerDeploymentConfig:
    """Worker Versioning: this worker serves ``build_id`` of ``deployment_name``.

    Every workflow run is pinned to the build it started on (a workflow's own annotation would
    be refused by unversioned workers, so the versioned worker's default says it): actions,
    detector ticks and monitor passes end there, and an agent moves to the current build when
    it continues as new (``aiops agents upgrade`` asks for that now). See docs/deploy.md,
    "Versioning workflow code".
    """
    return WorkerDeploymentConfig(
        version=WorkerDeploymentVersion(deployment_name=deployment_name, build_id=build_id),
        use_worker_versioning=True,
        default_versioning_behavior=VersioningBehavior.PINNED,
    )
