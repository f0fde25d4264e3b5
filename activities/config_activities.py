"""Activities of the configuration manager: validate, store, load and reload.

Validation runs here, on a worker, because the agent type's own hook and the
secret references can only be checked where the agent code and the secrets
are. A worker started without a database still validates and reloads, but
refuses to store (non-retryable, with the fix in the message).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import asyncpg
from pydantic import ValidationError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.agent_instances import AgentInstances
from activities.database.config_store import ConfigStore
from agents.secrets import secret_problems
from aiops.contracts.activities import (
    CONFIG_NOT_STORABLE,
    NO_CONFIG_STORE,
    UNKNOWN_CONFIG_VERSION,
    ConfigProposal,
    LoadConfigCall,
    ReloadCall,
    StoredConfig,
)
from aiops.contracts.config import AgentConfig
from aiops.contracts.errors import (
    AgentError,
    InvalidAgentConfigError,
    UnknownAgentTypeError,
    describe_validation_error,
)

NO_STORE = (
    "this worker has no configuration store; start it with DATABASE_URL pointing at PostgreSQL "
    "(bash temporal-dev/start.sh prints a local one)"
)


class ConfigActivities:
    def __init__(self, store: ConfigStore | None, instances: AgentInstances) -> None:
        self.store = store
        self.instances = instances

    @activity.defn
    async def validate_config(self, config: AgentConfig) -> list[str]:
        """Every problem the agent type and this worker see in ``config`` (empty: usable)."""
        try:
            agent = self.instances.factory.create(config)
        except UnknownAgentTypeError as err:
            return [str(err)]
        except AgentError as err:
            return [f"the agent refused the config: {err}"]
        try:
            own = agent.validate_config(config)
        except Exception as err:  # a validation hook that crashes has refused the config
            own = [f"the agent's validation failed on this config: {type(err).__name__}: {err}"]
        return [*own, *secret_problems(config)]

    @activity.defn
    async def register_config(self, proposal: ConfigProposal) -> StoredConfig | None:
        """The stored version of the config an agent starts with (None without a store)."""
        if self.store is None:
            return None
        with _refused_by_the_database():
            return await self.store.register(proposal.config, proposal.author, proposal.comment)

    @activity.defn
    async def store_config(self, proposal: ConfigProposal) -> StoredConfig:
        if self.store is None:
            raise ApplicationError(NO_STORE, type=NO_CONFIG_STORE, non_retryable=True)
        with _refused_by_the_database():
            return await self.store.append(
                proposal.config, proposal.author, proposal.comment, request_id=proposal.request_id
            )

    @activity.defn
    async def load_config(self, call: LoadConfigCall) -> StoredConfig:
        if self.store is None:
            raise ApplicationError(NO_STORE, type=NO_CONFIG_STORE, non_retryable=True)
        with _refused_by_the_database():
            stored = await self.store.get(call.agent_id, call.version)
        if stored is None:
            raise ApplicationError(
                f"agent {call.agent_id} has no config version {call.version}",
                type=UNKNOWN_CONFIG_VERSION,
                non_retryable=True,
            )
        return stored

    @activity.defn
    async def reload_agent(self, call: ReloadCall) -> None:
        """Call the agent's ``_reload_config_specific(old, new)`` on this worker."""
        try:
            await self.instances.reload(call.old, call.new)
        except InvalidAgentConfigError as err:
            raise ApplicationError(
                str(err), type=InvalidAgentConfigError.__name__, non_retryable=True
            ) from err

    def all(self) -> list[Callable[..., Any]]:
        return [self.register_config, self.store_config, self.load_config, *self.hooks()]

    def hooks(self) -> list[Callable[..., Any]]:
        """What runs agent code (validation hook, reload hook): served on each agent type's queue."""
        return [self.validate_config, self.reload_agent]


@contextlib.contextmanager
def _refused_by_the_database() -> Iterator[None]:
    """A config PostgreSQL cannot store (a NUL character, say) will never store: fail at once
    instead of retrying for ever; an unreachable database stays retryable."""
    try:
        yield
    except asyncpg.DataError as err:
        raise ApplicationError(
            f"config refused: PostgreSQL cannot store it: {err}", type=CONFIG_NOT_STORABLE, non_retryable=True
        ) from err
    except ValueError as err:  # a stored row (written by hand, say) that is not a valid config
        why = describe_validation_error(err) if isinstance(err, ValidationError) else str(err)
        raise ApplicationError(
            f"config refused: the stored config is not valid: {why}",
            type=CONFIG_NOT_STORABLE,
            non_retryable=True,
        ) from err
