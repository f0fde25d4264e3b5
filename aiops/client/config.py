"""Configuration: apply a new config or roll back to a stored version, and read the history.

Changes go through the agent's ``reconfigure`` update (validated on a worker, stored as the next
version, hot-reloaded), signed when a key is at hand. The history is read from PostgreSQL: this
and the audit sub-client are the only parts of the client that touch the database.
"""

from __future__ import annotations

from datetime import UTC, datetime

from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError

from activities.database.config_store import ConfigStore
from agents.config_diff import ConfigChange, diff_configs
from aiops.client.common import Connection, no_agent
from aiops.client.errors import ClientError, ConfigRefusedError
from aiops.contracts.activities import StoredConfig
from aiops.contracts.agent import ConfigApplied, ReconfigureRequest, agent_workflow_id
from aiops.contracts.config import AgentConfig
from aiops.keys import KeyFile
from workflows import approval_token
from workflows.agent.command_gate import reconfigure_digest
from workflows.agent.workflow import AgentWorkflow


class ConfigClient:
    """Agents' configs and their versions: ``client.config`` of an ``AiopsClient``."""

    def __init__(self, connection: Connection) -> None:
        self._conn = connection

    async def apply(
        self, config: AgentConfig, author: str = "", comment: str = "", key: KeyFile | None = None
    ) -> ConfigApplied:
        """Validate on a worker, store as the next version, and hot-reload the running agent."""
        author, key = self._conn.signer(author, key)
        request = ReconfigureRequest(config=config, author=author, comment=comment, actor=author)
        return await self._reconfigure(config.id, request, key)

    async def rollback(
        self, agent_id: str, version: int, author: str = "", comment: str = "", key: KeyFile | None = None
    ) -> ConfigApplied:
        """Store a copy of ``version`` as the next version and apply it."""
        author, key = self._conn.signer(author, key)
        request = ReconfigureRequest(rollback_to=version, author=author, comment=comment, actor=author)
        return await self._reconfigure(agent_id, request, key)

    async def reconfigure(self, agent_id: str, request: ReconfigureRequest) -> ConfigApplied:
        """Send a config change as it is (signed by whoever made it: what the REST API relays)."""
        return await self._reconfigure(agent_id, request)

    async def _reconfigure(
        self, agent_id: str, request: ReconfigureRequest, key: KeyFile | None = None
    ) -> ConfigApplied:
        if key is not None:  # bound to this agent and exactly this change
            digest = reconfigure_digest(request)
            credential = approval_token.sign(
                key.key(), key.approver, agent_workflow_id(agent_id), "reconfigure", digest, datetime.now(UTC)
            )
            request = request.model_copy(update={"credential": credential})
        try:
            return await self._conn.agent_handle(agent_id).execute_update(AgentWorkflow.reconfigure, request)
        except WorkflowUpdateFailedError as err:
            cause = err.cause
            message = cause.message if isinstance(cause, ApplicationError) else str(cause)
            raise ConfigRefusedError(message) from err
        except RPCError as err:
            raise no_agent(agent_id, err) from err

    # ----- the stored versions (PostgreSQL) -----------------------------------------------------

    async def history(self, agent_id: str, limit: int = 100) -> list[StoredConfig]:
        """Stored versions, newest first."""
        return await ConfigStore(self._conn.database()).history(agent_id, limit)

    async def version(self, agent_id: str, version: int) -> StoredConfig:
        stored = await ConfigStore(self._conn.database()).get(agent_id, version)
        if stored is None:
            raise ClientError(
                f"agent {agent_id!r} has no config version {version}; see `aiops config history {agent_id}`"
            )
        return stored

    async def latest(self, agent_id: str) -> StoredConfig:
        """The agent's newest stored config version."""
        history = await self.history(agent_id, limit=1)
        if not history:
            raise ClientError(
                f"agent {agent_id!r} has no stored config; start it with its config file "
                "(`aiops agents start --config FILE.json`)"
            )
        return history[0]

    async def diff(self, agent_id: str, old: int, new: int) -> list[ConfigChange]:
        before = await self.version(agent_id, old)
        after = await self.version(agent_id, new)
        return diff_configs(before.config, after.config)
