"""Which workflows and activities a worker serves: one place, for the worker process,
the tests and the benchmarks alike."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

import asyncpg
from temporalio.client import Client
from temporalio.common import VersioningBehavior, WorkerDeploymentVersion
from temporalio.worker import Worker, WorkerDeploymentConfig

from activities.agent_activities import AgentActivities
from activities.audit_activities import AuditActivities
from activities.config_activities import ConfigActivities
from activities.database.audit_log import AuditLog
from activities.database.config_store import ConfigStore
from activities.detector_activities import DetectorActivities
from activities.health_activities import HealthActivities
from workflows.action_workflow import ActionWorkflow
from workflows.agent_contract import DEFAULT_TASK_QUEUE
from workflows.agent_workflow import AgentWorkflow
from workflows.detector_workflow import DetectorWorkflow
from workflows.health_monitor import HealthMonitorWorkflow

WORKFLOWS = [AgentWorkflow, ActionWorkflow, HealthMonitorWorkflow, DetectorWorkflow]


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
) -> Worker:
    """A worker for every workflow and activity; ``pool`` backs the config store and audit log.

    Without a pool, audit steps are only logged and configs cannot be stored.
    """
    activities = activities or AgentActivities(client=client, identity=identity or "")
    config = ConfigActivities(ConfigStore(pool) if pool else None, activities.instances)
    audit = AuditActivities(AuditLog(pool) if pool else None)
    health = HealthActivities(client, activities.instances, pool)
    detectors = DetectorActivities(client)
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[*WORKFLOWS, *extra_workflows],
        activities=[
            *activities.all(),
            *config.all(),
            *audit.all(),
            *health.all(),
            *detectors.all(),
            *extra_activities,
        ],
        max_cached_workflows=max_cached_workflows,
        identity=identity,
        graceful_shutdown_timeout=graceful_shutdown,
        deployment_config=deployment,
    )


def versioned_deployment(deployment_name: str, build_id: str) -> WorkerDeploymentConfig:
    """Worker Versioning: this worker serves ``build_id`` of ``deployment_name``.

    Every workflow here auto-upgrades: agents run for months and actions can wait hours for an
    approval, so pinning them to the build that started them would keep old workers alive for
    ever. Changes to running workflows are guarded with ``workflow.patched`` and proven by the
    replay test over recorded histories before a build is made current.
    """
    return WorkerDeploymentConfig(
        version=WorkerDeploymentVersion(deployment_name=deployment_name, build_id=build_id),
        use_worker_versioning=True,
        default_versioning_behavior=VersioningBehavior.AUTO_UPGRADE,
    )
