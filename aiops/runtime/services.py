"""The worker's implementation of the agents' ``FrameworkServices`` (agents/services.py).

This is the one place the worker runtime lends ``AiopsClient`` to agent code: every answer an
agent may ask the framework for goes through the small adapter below, so a change of the client's
shape is absorbed here.
"""

from __future__ import annotations

from temporalio.client import Client

from aiops.client import AiopsClient
from aiops.contracts.agent import AgentStatus
from aiops.contracts.config import AgentConfig


class WorkerServices:
    """``FrameworkServices`` over the worker's own Temporal client."""

    def __init__(self, client: Client) -> None:
        self._client = client

    @property
    def client(self) -> Client:
        return self._client

    def _aiops(self, task_queue: str) -> AiopsClient:
        return AiopsClient(self._client, task_queue)

    async def agent_status(self, agent_id: str, task_queue: str) -> AgentStatus:
        return await self._aiops(task_queue).agents.status(agent_id)

    async def agent_config(self, agent_id: str, task_queue: str) -> AgentConfig:
        return (await self.agent_status(agent_id, task_queue)).config

    async def approval_inbox(self, agent_id: str, task_queue: str) -> list[str]:
        return [action_id for action_id, _ in await self._aiops(task_queue).approvals.inbox(agent_id)]
