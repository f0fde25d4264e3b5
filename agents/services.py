"""What an agent may ask of the framework at run time, without importing the framework.

The agent SDK sits below the framework's client and worker runtime (docs/architecture.md), so an
agent that needs a Temporal client or another agent's state cannot import ``aiops.client``. It
asks for ``framework_services()`` instead: an object satisfying ``FrameworkServices``, which the
worker runtime installs when it builds a worker (``aiops.runtime.services``). Outside a worker
nothing is installed and the call raises ``FrameworkServicesUnavailableError``, so a hook run in
a plain script fails with a sentence, not with an import or a connection to a default address.

The protocol is deliberately small: what agents need today, each answer a contract model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from aiops.contracts.errors import AiopsError

if TYPE_CHECKING:
    from temporalio.client import Client

    from aiops.contracts.agent import AgentStatus
    from aiops.contracts.config import AgentConfig


class FrameworkServicesUnavailableError(AiopsError):
    """An agent asked for the framework's services where no worker has installed them."""


class FrameworkServices(Protocol):
    """The framework's answers to an agent at run time.

    ``task_queue`` is the framework's task queue the asking agent runs on (agents and approvals
    are scoped to it), not a hooks queue.
    """

    @property
    def client(self) -> Client:
        """The worker's own Temporal client (its namespace, data converter and telemetry)."""
        ...

    async def agent_status(self, agent_id: str, task_queue: str) -> AgentStatus:
        """Another agent's ``status`` query answer; raises if no such agent runs."""
        ...

    async def agent_config(self, agent_id: str, task_queue: str) -> AgentConfig:
        """The config another agent runs now (secret references unresolved, as stored)."""
        ...

    async def approval_inbox(self, agent_id: str, task_queue: str) -> list[str]:
        """Ids of the agent's actions waiting for approval, oldest first."""
        ...


_installed: FrameworkServices | None = None


def install_services(services: FrameworkServices | None) -> None:
    """Called by the worker runtime when it builds a worker (the latest one wins in a process
    running several); ``None`` uninstalls them."""
    global _installed
    _installed = services


def framework_services() -> FrameworkServices:
    """The services the worker installed; raises ``FrameworkServicesUnavailableError`` without."""
    if _installed is None:
        raise FrameworkServicesUnavailableError(
            "the framework services are not available: this code runs outside an aiops worker "
            "(they are installed by aiops.runtime.worker_build.build_worker)"
        )
    return _installed
