"""Activities of the configuration manager: validate, store, load and reload.

Validation runs here, on a worker, because the agent type's own hook and the
secret references can only be checked where the agent code and the secrets
are. A worker started without a database still validates and reloads, but
refuses to store (non-retryable, with the fix in the message).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import asyncpg
from pydantic import ValidationError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.agent_instances import AgentInstances
from activities.config_store import ConfigStore
from activities.contracts import (
    LOAD_CONFIG,
    REGISTER_CONFIG,
    RELOAD_AGENT,
    STORE_CONFIG,
    VALIDATE_CONFIG,
    ConfigProposal,
    LoadConfigCall,
    ReloadCall,
    StoredConfig,
)
from activities.secrets import secret_problems
from agents.errors import AgentError, InvalidAgentConfigError, UnknownAgentTypeError
from agents.models import AgentConfig
from workflows.agent_state import describe_validation_error

NO_STORE = (
    "this worker has no configuration store; start it with DATABASE_URL pointing at PostgreSQL "
    "(bash temporal-dev/start.sh prints a local one)"
)


class ConfigActivities:
    def __init__(self, store: ConfigStore | None, instances: AgentInstances) -> None:
        self.store = store
        self.instances = instances

    @activity.defn(name=VALIDATE_CONFIG)
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

    @activity.defn(name=REGISTER_CONFIG)
    async def register_config(self, proposal: ConfigProposal) -> StoredConfig | None:
        """The stored version of the config an agent starts with (None without a store)."""
        if self.store is None:
            return None
        with _refused_by_the_database():
            return await self.store.register(proposal.config, proposal.author, proposal.comment)

    @activity.defn(name=STORE_CONFIG)
    async def store_config(self, proposal: ConfigProposal) -> StoredConfig:
        if self.store is None:
            raise ApplicationError(NO_STORE, type="NoConfigStore", non_retryable=True)
        with _refused_by_the_database():
            return await self.store.append(
                proposal.config, proposal.author, proposal.comment, request_id=proposal.request_id
            )

    @activity.defn(name=LOAD_CONFIG)
    async def load_config(self, call: LoadConfigCall) -> StoredConfig:
        if self.store is None:
            raise ApplicationError(NO_STORE, type="NoConfigStore", non_retryable=True)
        with _refused_by_the_database():
            stored = await self.store.get(call.agent_id, call.version)
        if stored is None:
            raise ApplicationError(
                f"agent {call.agent_id} has no config version {call.version}",
                type="UnknownConfigVersion",
                non_retryable=True,
            )
        return stored

    @activity.defn(name=RELOAD_AGENT)
    async def reload_agent(self, call: ReloadCall) -> None:
        """Call the agent's ``_reload_config_specific(old, new)`` on this worker."""
        try:
            await self.instances.reload(call.old, call.new)
        except InvalidAgentConfigError as err:
            raise ApplicationError(str(err), type="InvalidAgentConfigError", non_retryable=True) from err

    def all(self) -> list[object]:
        return [
            self.validate_config,
            self.register_config,
            self.store_config,
            self.load_config,
            self.reload_agent,
        ]


@contextlib.contextmanager
def _refused_by_the_database() -> Iterator[None]:
    """A config PostgreSQL cannot store (a NUL character, say) will never store: fail at once
    instead of retrying for ever; an unreachable database stays retryable."""
    try:
        yield
    except asyncpg.DataError as err:
        raise ApplicationError(
            f"config refused: PostgreSQL cannot store it: {err}", type="ConfigRefused", non_retryable=True
        ) from err
    except ValueError as err:  # a stored row (written by hand, say) that is not a valid config
        why = describe_validation_error(err) if isinstance(err, ValidationError) else str(err)
        raise ApplicationError(
            f"config refused: the stored config is not valid: {why}",
            type="ConfigRefused",
            non_retryable=True,
        ) from err
