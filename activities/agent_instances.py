"""Live agent instances, one per agent id per worker process.

Activities for one agent may land on any worker, so every worker builds an
agent lazily from the config the workflow passes: create, initialize, start;
and when the config version changes, ``reload_config``. Workers never assume
they saw an agent's earlier activities.

The agent gets its config with secret references resolved; the cache compares
the unresolved config the workflow sent, so a secret never leaves the worker.
"""

from __future__ import annotations

import asyncio

from agents.base_agent import BaseAgent
from agents.registry import AgentFactory, default_factory
from agents.secrets import resolve_secrets
from aiops.contracts.config import AgentConfig
from aiops.contracts.shared_settings import share_settings


class AgentInstances:
    def __init__(self, factory: AgentFactory = default_factory) -> None:
        self.factory = factory
        self._agents: dict[str, BaseAgent] = {}
        self._configs: dict[str, AgentConfig] = {}  # as the workflow sent them: references, no secrets
        self._locks: dict[str, asyncio.Lock] = {}

    async def get(self, config: AgentConfig) -> BaseAgent:
        lock = self._locks.setdefault(config.id, asyncio.Lock())
        async with lock:
            agent = self._agents.get(config.id)
            if agent is None:
                agent = await self._build(config)
            elif self._is_newer(config):
                await agent.reload_config(resolve_secrets(config))
                self._configs[config.id] = config
            return agent

    async def _build(self, config: AgentConfig) -> BaseAgent:
        """Create, initialize and start the agent ``config`` describes, and cache it with that
        config (the caller holds the agent's lock)."""
        share_settings(config)  # settings equal to another agent's are kept once (as the workflow does)
        agent = self.factory.create(resolve_secrets(config))
        await agent.initialize()
        await agent.start()
        self._agents[config.id] = agent
        self._configs[config.id] = config
        return agent

    def _is_newer(self, config: AgentConfig) -> bool:
        """Reload only forward: an action decided under an older version must not drag the
        agent back (its next decision would drag it forward again)."""
        cached = self._configs.get(config.id)
        if cached is None or cached == config:
            return False
        return config.version > cached.version or config.version == cached.version == 0

    async def reload(self, old: AgentConfig, new: AgentConfig) -> BaseAgent:
        """Switch the agent from ``old`` to ``new``, calling its reload hook even on a
        worker that had not built it yet (built from ``old`` first)."""
        lock = self._locks.setdefault(new.id, asyncio.Lock())
        async with lock:
            agent = self._agents.get(new.id)
            if agent is None:
                agent = await self._build(old)
            if self._configs.get(new.id) != new:
                await agent.reload_config(resolve_secrets(new))
                self._configs[new.id] = new
            return agent

    async def stop(self, config: AgentConfig) -> bool:
        lock = self._locks.setdefault(config.id, asyncio.Lock())
        async with lock:
            agent = self._agents.pop(config.id, None)
            self._configs.pop(config.id, None)
            if agent is None:
                return False
            await agent.stop()
            return True

    def cached(self, agent_id: str) -> BaseAgent | None:
        return self._agents.get(agent_id)

    async def stop_all(self) -> None:
        for agent in list(self._agents.values()):
            await self.stop(self._configs.get(agent.agent_id, agent.config))
