"""AgentFactory: the registry of agent classes by type name, and where they come from.

Agent classes register under a type name with ``@register_agent("name")``.
A worker finds them in three places, so a user's own package runs without
editing the framework: the built-in agents, modules named on its command line
or in ``AIOPS_AGENT_MODULES``, and the ``aiops.agents`` entry-point group.

An agent type that needs Temporal workers of its own (workflows or activities on
a queue of its own, a worker plugin such as Pydantic AI's) registers a factory
for them with ``register_worker_plugin(type_name, factory)``, next to its
``@register_agent``: a worker serving that type builds them beside its own
(``aiops.runtime.worker_build.build_worker``), and a worker not serving it never
calls the factory, so never imports what the factory imports.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Callable, Iterable
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from agents.base_agent import BaseAgent
from aiops.contracts.config import AgentConfig
from aiops.contracts.errors import UnknownAgentTypeError

if TYPE_CHECKING:
    from temporalio.client import Client
    from temporalio.worker import Worker

ENTRY_POINT_GROUP = "aiops.agents"
MODULES_ENV_VAR = "AIOPS_AGENT_MODULES"
BUILTIN_MODULES = ("agents.example_agent", "agents.builtin")

log = logging.getLogger("aiops.registry")

A = TypeVar("A", bound=type[BaseAgent])


class AgentFactory:
    """Maps agent type names to classes and builds agents from their config."""

    def __init__(self) -> None:
        self._classes: dict[str, type[BaseAgent]] = {}

    def register(self, type_name: str, cls: type[BaseAgent]) -> None:
        if not issubclass(cls, BaseAgent):
            raise TypeError(f"{cls!r} is not a BaseAgent subclass")
        existing = self._classes.get(type_name)
        if existing is not None and existing is not cls:
            if (existing.__module__, existing.__qualname__) != (cls.__module__, cls.__qualname__):
                raise ValueError(
                    f"agent type {type_name!r} is already registered by "
                    f"{existing.__module__}.{existing.__qualname__}"
                )
        self._classes[type_name] = cls

    def agent_class(self, type_name: str) -> type[BaseAgent]:
        try:
            return self._classes[type_name]
        except KeyError:
            known = ", ".join(sorted(self._classes)) or "none"
            raise UnknownAgentTypeError(
                f"no agent type {type_name!r} is registered (known: {known}); "
                f"load its module with --agent-module or {MODULES_ENV_VAR}, "
                f"or install a package exposing it in the {ENTRY_POINT_GROUP!r} entry-point group"
            ) from None

    def create(self, config: AgentConfig) -> BaseAgent:
        return self.agent_class(config.type)(config)

    def types(self) -> list[str]:
        return sorted(self._classes)


default_factory = AgentFactory()


def register_agent(type_name: str) -> Callable[[A], A]:
    """Class decorator: make ``cls`` the agent for ``type_name``."""

    def decorate(cls: A) -> A:
        default_factory.register(str(type_name), cls)
        return cls

    return decorate


def load_agent_modules(extra_modules: Iterable[str] = ()) -> list[str]:
    """Import built-in, named and entry-point agent modules; return the types known.

    A module that fails to import is an error at worker start, not a stuck
    workflow later.
    """
    names = list(BUILTIN_MODULES) + list(extra_modules)
    names += [m.strip() for m in os.environ.get(MODULES_ENV_VAR, "").split(",") if m.strip()]
    for name in names:
        importlib.import_module(name)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        loaded = ep.load()
        if isinstance(loaded, type) and issubclass(loaded, BaseAgent):
            default_factory.register(ep.name, loaded)
        log.info("loaded agent entry point %s = %s", ep.name, ep.value)
    return default_factory.types()


# ----- the worker-plugin hook -------------------------------------------------------------------


class WorkerPluginFactory(Protocol):
    """Builds one extra ``Worker`` for an agent type, on a queue derived from ``task_queue`` (the
    framework's queue the worker serves). ``worker_options`` are the framework's own ``Worker``
    options (``identity``, ``graceful_shutdown_timeout``, ``deployment_config``): pass them on so
    the extra worker shuts down, identifies and is versioned like the rest of its process."""

    def __call__(self, client: Client, task_queue: str, **worker_options: Any) -> Worker: ...


_worker_plugins: dict[str, list[WorkerPluginFactory]] = {}


def register_worker_plugin(type_name: str, factory: WorkerPluginFactory) -> None:
    """A worker serving agent type ``type_name`` also runs ``factory(client, task_queue, ...)``.

    Call it at import of the agent's module (an entry-point package's too: loading the entry
    point imports it). Registering the same factory again (a re-imported module) is a no-op.
    """
    known = _worker_plugins.setdefault(str(type_name), [])
    key = (factory.__module__, getattr(factory, "__qualname__", repr(factory)))
    if all((f.__module__, getattr(f, "__qualname__", repr(f))) != key for f in known):
        known.append(factory)


def worker_plugins(type_names: Iterable[str]) -> list[WorkerPluginFactory]:
    """The factories registered for these agent types, each once, in type-name order."""
    found: list[WorkerPluginFactory] = []
    for name in sorted(set(type_names)):
        found += [f for f in _worker_plugins.get(name, ()) if f not in found]
    return found
