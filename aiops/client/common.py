"""What every sub-client shares: the Temporal connection, the task queue, who acts, the database.

One ``Connection`` is built by the ``AiopsClient`` facade and handed to each sub-client, so they
agree on the task queue and the signer without knowing about one another. The database pool is
here only so that the two subjects that read PostgreSQL (config history, the audit trail) can
ask for it; nothing else in the client touches it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from activities.database.pool import DATABASE_URL_ENV
from aiops.client.errors import AgentNotRunningError, ClientError
from aiops.contracts.agent import agent_workflow_id
from aiops.contracts.models import AGENT_ID_PATTERN
from aiops.keys import KeyFile


@dataclass(frozen=True)
class Connection:
    """The Temporal client and task queue, who acts by default (``actor``, signing with ``key``
    when it is theirs) and the PostgreSQL pool when there is one."""

    client: Client
    task_queue: str
    pool: asyncpg.Pool | None = None
    actor: str = ""
    key: KeyFile | None = None

    def agent_handle(self, agent_id: str) -> WorkflowHandle[Any, Any]:
        return self.client.get_workflow_handle(agent_workflow_id(agent_id))

    def signer(self, actor: str, key: KeyFile | None) -> tuple[str, KeyFile | None]:
        """Who asks, and the key that proves it: the call's, else this client's if it is theirs."""
        if key is not None:
            if actor and actor != key.approver:
                raise ClientError(f"refused: the key is {key.approver}'s, not {actor}'s")
            return key.approver, key
        name = actor or self.actor
        own = self.key if self.key is not None and self.key.approver == name else None
        return name, own

    def database(self) -> asyncpg.Pool:
        """The pool, for the config and audit sub-clients; without one they say how to get it."""
        if self.pool is None:
            raise ClientError(
                f"set {DATABASE_URL_ENV} to the PostgreSQL the workers use to read config history and audit"
            )
        return self.pool


def no_agent(agent_id: str, err: RPCError) -> Exception:
    """``AgentNotRunningError`` for a workflow that is not there; any other RPC error as it is."""
    if err.status == RPCStatusCode.NOT_FOUND:
        return AgentNotRunningError(
            f"no agent named {agent_id!r} is running; start it with its config "
            f"(AiopsClient.agents.start, or send the event with a config to start it)"
        )
    return err


def update_refused(
    err: WorkflowUpdateFailedError, refused_type: str, refused: type[ClientError], what: str
) -> ClientError:
    """What a failed update (``command``, ``decide``) means to the caller: the workflow's own
    refusal (``refused_type``) as ``refused`` with its reason, anything else as ``what`` that could
    not be applied."""
    cause = err.cause
    if isinstance(cause, ApplicationError) and cause.type == refused_type:
        return refused(f"refused: {cause.message}")
    return ClientError(f"{what} could not be applied: {cause}")


def checked_agent_id(agent_id: str | None) -> str | None:
    """An agent id fit for a visibility query (``None`` for any); a malformed one is refused."""
    if agent_id and not AGENT_ID_PATTERN.match(agent_id):
        raise ClientError(f"{agent_id!r} is not a valid agent id")
    return agent_id or None
