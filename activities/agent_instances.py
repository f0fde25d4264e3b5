"""Live agent instances, one per agent id per worker process.

Activities for one agent may land on any worker, so every worker builds an
agent lazily from the config the workflow passes: create, initialize, start;
and when the config version changes, ``reload_config``. Workers never assume
they saw an agent's earlier activities.
"""

from __future__ import annotations

import asyncio

from agents.base_agent import BaseAgent
from agents.models import AgentConfig
from agents.registry import AgentFactory, default_factory


class AgentInstances:
    def __init__(self, factory: AgentFactory = default_factory) -> None:
        self.factory = factory
        self._agents: dict[str, BaseAgent] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def get(self, config: AgentConfig) -> BaseAgent:
        lock = self._locks.setdefault(config.id, asyncio.Lock())
        async with lock:
            agent = self._agents.get(config.id)
            if agent is None:
                agent = self.factory.create(config)
                await agent.initialize()
                await agent.start()
                self._agents[config.id] = agent
            elif agent.config != config:
                await agent.reload_config(config)
            return agent

    async def stop(self, config: AgentConfig) -> bool:
        lock = self._locks.setdefault(config.id, asyncio.Lock())
        async with lock:
            agent = self._agents.pop(config.id, None)
            if agent is None:
                return False
            await agent.stop()
            return True

    def cached(self, agent_id: str) -> BaseAgent | None:
        return self._agents.get(agent_id)

    async def stop_all(self) -> None:
        for agent in list(self._agents.values()):
            await self.stop(agent.config)
