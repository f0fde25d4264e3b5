"""Approvals: find the actions waiting for a decision, read an action, approve or reject it.

Decisions go through the action's ``decide`` update, so a refusal comes back at once with its
reason (the workflow records and audits it itself); ``signal`` is the fire-and-forget path the
Web UI and ``temporal workflow signal`` use. The inbox is read from Temporal's visibility store.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode

from aiops.client.common import Connection, checked_agent_id, update_refused
from aiops.client.errors import ActionNotFoundError, ClientError
from aiops.contracts import action as action_contract
from aiops.contracts.action import ActionRecord, ActionStatus, ApprovalRequest, DecisionRequest
from aiops.keys import KeyFile
from workflows import approval_token
from workflows.action.workflow import ActionWorkflow


class ApprovalsClient:
    """Actions and their decisions: ``client.approvals`` of an ``AiopsClient``."""

    def __init__(self, connection: Connection) -> None:
        self._conn = connection

    # ----- reading actions ----------------------------------------------------------------------

    @staticmethod
    def action_id(agent_id: str, event_id: str) -> str:
        """The id of the action the agent proposes for one event (one event, one action)."""
        return action_contract.action_workflow_id(agent_id, event_id)

    def action_handle(self, action_id: str) -> WorkflowHandle[Any, Any]:
        return self._conn.client.get_workflow_handle(action_id)

    async def action(self, action_id: str) -> ActionRecord:
        """The action's record now (what ``aiops approvals show`` prints)."""
        try:
            return await self.action_handle(action_id).query(ActionWorkflow.status)
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                raise ActionNotFoundError(
                    f"no action {action_id!r}; list the waiting ones with `aiops approvals list`"
                ) from err
            raise

    async def wait_for_action(self, action_id: str, appear_within: float = 10.0) -> ActionRecord:
        """Block until the action workflow has ended; return its final record.

        The action may not exist yet when its event was only just sent, so a
        missing action is awaited for ``appear_within`` seconds before it is an error.
        """
        handle = self._conn.client.get_workflow_handle(action_id, result_type=ActionRecord)
        deadline = asyncio.get_running_loop().time() + appear_within
        while True:
            try:
                record: ActionRecord = await handle.result()
                return record
            except RPCError as err:
                if err.status != RPCStatusCode.NOT_FOUND:
                    raise
                if asyncio.get_running_loop().time() > deadline:
                    raise ActionNotFoundError(f"no action {action_id!r}") from err
                await asyncio.sleep(0.1)

    async def pending(self, agent_id: str | None = None) -> list[str]:
        """Ids of the actions waiting for approval (on any task queue), optionally of one agent."""
        query = action_contract.pending_approvals_query(agent_id=checked_agent_id(agent_id))
        return [w.id async for w in self._conn.client.list_workflows(query)]

    async def inbox(self, agent_id: str | None = None) -> list[tuple[str, ActionRecord]]:
        """``(action id, record)`` of every action on this task queue waiting for approval, oldest first."""
        query = action_contract.pending_approvals_query(self._conn.task_queue, checked_agent_id(agent_id))
        ids = [w.id async for w in self._conn.client.list_workflows(query)]
        found = await asyncio.gather(*(self.action(action_id) for action_id in ids), return_exceptions=True)
        inbox = []
        for action_id, result in zip(ids, found, strict=True):
            if isinstance(result, ActionNotFoundError):
                continue
            if isinstance(result, BaseException):
                raise result
            if result.status == ActionStatus.PENDING_APPROVAL:  # the listing lags a decision
                inbox.append((action_id, result))
        return sorted(inbox, key=lambda item: (item[1].event.timestamp, item[0]))

    # ----- deciding -----------------------------------------------------------------------------

    async def approve(
        self,
        action_id: str,
        approver: str | None = None,
        comment: str = "",
        plan_digest: str | None = None,
        key: KeyFile | None = None,
    ) -> ActionRecord:
        """Approve as ``approver``; with ``key`` the decision is signed (and ``approver`` defaults
        to the key's), binding it to this action and its current plan."""
        return await self._decide(action_id, True, approver, comment, plan_digest, key)

    async def reject(
        self, action_id: str, approver: str | None = None, comment: str = "", key: KeyFile | None = None
    ) -> ActionRecord:
        return await self._decide(action_id, False, approver, comment, None, key)

    async def token(
        self,
        action_id: str,
        key: KeyFile,
        approve: bool = True,
        plan_digest: str | None = None,
        lifetime_seconds: int = approval_token.DEFAULT_LIFETIME_SECONDS,
    ) -> ApprovalRequest:
        """A signed decision for ``action_id`` (what ``aiops approvals token`` prints, for the Web
        UI's Send a Signal box or ``temporal workflow signal --input``). An approval is bound
        to the plan the action holds now (or to ``plan_digest``, refused if that is not it)."""
        digest = None
        if approve:
            digest = (await self.action(action_id)).plan_digest
            if plan_digest is not None and plan_digest != digest:
                raise ClientError(
                    f"refused: the plan changed since it was reviewed (digest {plan_digest[:12]} given, "
                    f"current {str(digest)[:12]}); review the current plan and decide again"
                )
        token = approval_token.sign(
            key.key(),
            key.approver,
            action_id,
            "approve" if approve else "reject",
            digest,
            datetime.now(UTC),
            lifetime_seconds=lifetime_seconds,
        )
        return ApprovalRequest(approver=key.approver, credential=token)

    async def signal(self, action_id: str, request: ApprovalRequest, approve: bool = True) -> None:
        """The fire-and-forget path (what the Web UI and ``temporal workflow signal`` use)."""
        signal = ActionWorkflow.approve if approve else ActionWorkflow.reject
        await self.action_handle(action_id).signal(signal, request)

    async def _decide(
        self,
        action_id: str,
        approve: bool,
        approver: str | None,
        comment: str,
        plan_digest: str | None,
        key: KeyFile | None,
    ) -> ActionRecord:
        """Decide through the ``decide`` update, so a refusal comes back at once with its reason."""
        credential = None
        if key is not None:
            if approver is not None and approver != key.approver:
                raise ClientError(f"refused: the key is {key.approver}'s, not {approver}'s")
            signed = await self.token(action_id, key, approve, plan_digest)
            approver, credential = key.approver, signed.credential
        if not approver:
            raise ClientError("refused: say who decides (an approver name, or a key file)")
        request = DecisionRequest(
            approve=approve,
            approver=approver,
            comment=comment,
            plan_digest=plan_digest,
            credential=credential,
        )
        return await self.decide(action_id, request)

    async def decide(self, action_id: str, request: DecisionRequest) -> ActionRecord:
        """Send a decision as it is (signed by whoever made it: what the REST API relays)."""
        try:
            return await self.action_handle(action_id).execute_update(ActionWorkflow.decide, request)
        except WorkflowUpdateFailedError as err:
            raise update_refused(err, action_contract.APPROVAL_REFUSED, ClientError, "the decision") from err
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
            record = await self.action(action_id)  # raises ActionNotFoundError if it never existed
            raise ClientError(
                f"refused: action {action_id} is no longer pending approval (it is {record.status.value})"
            ) from err
