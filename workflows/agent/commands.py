"""People's commands to an agent: pause, resume, stop, reset the circuit breaker, upgrade, and who
may reconfigure it, all through the command gate (``command_gate.py``).

A command comes by signal (the Web UI, ``temporal workflow signal``: no answer) or by the
``command`` update (``aiops``: answered). Either way a refusal (malformed, not signed, not
allowed, forged, expired, replayed) is counted, noted in the agent's status and audited here,
whoever sent it. Signals arrive undecoded (``raw.py``), so even a payload no converter can read
is refused like any other malformed command.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

from temporalio import workflow
from temporalio.common import RawValue
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from pydantic import ValidationError

    from aiops.contracts.agent import (
        COMMAND_REFUSED,
        AgentCommand,
        AgentState,
        CommandApplied,
        CommandRequest,
        ReconfigureRequest,
        StopRequest,
    )
    from aiops.contracts.config import AgentVerb
    from aiops.contracts.errors import describe_validation_error
    from aiops.contracts.operator_message import OperatorMessage
    from workflows.agent.command_gate import (
        CommandVerdict,
        check_command,
        forget_expired,
        reconfigure_digest,
        stop_digest,
    )
    from workflows.agent.health import publish_state
    from workflows.agent.raw import UndecodablePayload, decoded

if TYPE_CHECKING:
    from workflows.agent.actions import Actions
    from workflows.agent.context import AgentContext

C = TypeVar("C", bound=AgentCommand)


class Commands:
    def __init__(self, ctx: AgentContext, actions: Actions) -> None:
        self._ctx = ctx
        self._actions = actions

    # ----- by signal --------------------------------------------------------------

    async def pause_signal(self, raw: RawValue, paused: bool) -> None:
        taken = self._take(AgentVerb.PAUSE if paused else AgentVerb.RESUME, raw, AgentCommand)
        if taken is not None:
            await self._set_paused(paused, taken[1])

    def reset_signal(self, raw: RawValue) -> None:
        taken = self._take(AgentVerb.RESET_CIRCUIT_BREAKER, raw, AgentCommand)
        if taken is not None:
            self._reset_breaker(taken[1])

    def stop_signal(self, raw: RawValue) -> None:
        taken = self._take(AgentVerb.STOP, raw, StopRequest)
        if taken is not None:
            self._request_stop(*taken)

    def upgrade_signal(self, raw: RawValue) -> None:
        taken = self._take(AgentVerb.UPGRADE, raw, AgentCommand)
        if taken is not None:
            self._request_upgrade(taken[1])

    def _take(self, verb: AgentVerb, raw: RawValue, model: type[C]) -> tuple[C, CommandVerdict] | None:
        """The command and its verdict if it may change the agent; None if it was refused."""
        self._ctx.signals_this_run += 1
        try:
            payload = decoded(raw)
            command = model() if payload is None else model.model_validate(payload)
        except UndecodablePayload as err:
            self._refused(verb, "signal", "", f"malformed command: {err}")
            return None
        except ValidationError as err:
            self._refused(verb, "signal", "", f"malformed command: {describe_validation_error(err)}")
            return None
        digest = stop_digest(command.drain) if isinstance(command, StopRequest) else None
        verdict = self.authorize(verb, command, digest, "signal")
        return None if verdict.reason is not None else (command, verdict)

    # ----- by update ----------------------------------------------------------------

    async def command(self, request: CommandRequest) -> CommandApplied:
        """Apply a command and say what happened; a refusal fails the update once it is audited."""
        self._ctx.signals_this_run += 1
        digest = stop_digest(request.drain) if request.verb == AgentVerb.STOP else None
        verdict = self.authorize(request.verb, request, digest, "update")
        if verdict.reason is not None:
            raise ApplicationError(
                verdict.reason, {"audited": True}, type=COMMAND_REFUSED, non_retryable=True
            )
        if request.verb in (AgentVerb.PAUSE, AgentVerb.RESUME):
            changed = await self._set_paused(request.verb == AgentVerb.PAUSE, verdict)
        elif request.verb == AgentVerb.STOP:
            stop = StopRequest(reason=request.reason, drain=request.drain, actor=verdict.actor)
            changed = self._request_stop(stop, verdict)
        elif request.verb == AgentVerb.UPGRADE:
            changed = self._request_upgrade(verdict)
        else:
            changed = self._reset_breaker(verdict)
        return CommandApplied(
            verb=request.verb, actor=verdict.actor, authenticated=verdict.authenticated, changed=changed
        )

    # ----- who may ------------------------------------------------------------------

    def authorize(
        self, verb: AgentVerb, command: OperatorMessage, digest: str | None, channel: str
    ) -> CommandVerdict:
        """Whether this command may change the agent; a refusal is recorded and audited here."""
        s = self._ctx.state
        now = workflow.now()
        forget_expired(s.command_tokens, now)
        verdict = check_command(
            s.config, verb, command.actor, command.credential, digest, workflow.info().workflow_id, now,
            s.command_tokens,
        )  # fmt: skip
        if verdict.reason is not None:
            self._refused(verb, channel, verdict.actor, verdict.reason)
        elif verdict.token_id is not None and verdict.token_expires is not None:
            s.command_tokens[verdict.token_id] = verdict.token_expires
        return verdict

    def authorize_config_change(self, request: ReconfigureRequest) -> CommandVerdict:
        """A person's config change needs the reconfigure role; a worker relaying a version the
        config store already holds (``version`` alone) only brings the agent up to date with
        the store, which is the authority, so it needs no token."""
        if request.version is not None:
            return CommandVerdict(actor=request.actor or "config store")
        self._ctx.signals_this_run += 1  # each audited refusal has its own key
        return self.authorize(AgentVerb.RECONFIGURE, request, reconfigure_digest(request), "update")

    def _refused(self, verb: AgentVerb, channel: str, actor: str, reason: str) -> None:
        self._ctx.state.counters.commands_refused += 1
        self._ctx.note_error(f"refused {verb.value} ({channel}) from {actor or 'anonymous'}: {reason}")
        self._ctx.record_lifecycle(
            "command_refused", actor=actor, verb=verb.value, channel=channel, reason=reason
        )

    # ----- what they do -------------------------------------------------------------

    async def _set_paused(self, paused: bool, verdict: CommandVerdict) -> bool:
        s = self._ctx.state
        if s.state == AgentState.INITIALIZING:
            s.pause_requested = paused  # applied once initialization ends
            return True
        if s.state != (AgentState.RUNNING if paused else AgentState.PAUSED):
            return False
        s.state = AgentState.PAUSED if paused else AgentState.RUNNING
        s.hold_epoch += 1
        publish_state(s)
        self._ctx.record_lifecycle("paused" if paused else "resumed", actor=verdict.actor, **_proof(verdict))
        if paused:
            await self._actions.hold_all(s.hold_epoch)
        else:
            await self._actions.release_all(s.hold_epoch)
        return True

    def _reset_breaker(self, verdict: CommandVerdict) -> bool:
        s = self._ctx.state
        who = verdict.actor or "unknown"
        workflow.logger.info("circuit breaker of %s reset by %s", s.config.id, who)
        was_open = s.circuit_open
        self._ctx.record_lifecycle("circuit_breaker_reset", actor=who, was_open=was_open, **_proof(verdict))
        s.circuit_open = False
        s.consecutive_failures = 0
        return was_open

    def _request_stop(self, request: StopRequest, verdict: CommandVerdict) -> bool:
        s = self._ctx.state
        if s.stop_request is not None:
            return False
        s.stop_request = request.model_copy(update={"actor": verdict.actor})
        self._ctx.record_lifecycle(
            "stop_requested",
            actor=verdict.actor,
            drain=request.drain,
            reason=request.reason,
            **_proof(verdict),
        )
        return True

    def _request_upgrade(self, verdict: CommandVerdict) -> bool:
        """Continue as new as soon as the run is at a safe point: the batch in hand decided, every
        handler finished and the audit drained (the same path as a full run), state and queue
        carried. A new run takes the workflow code of today's build, so this moves an agent to new
        code without waiting for its run to fill up (see docs/deploy.md, versioning)."""
        s = self._ctx.state
        if self._ctx.upgrade_requested or s.stop_request is not None or s.state == AgentState.FAILED:
            return False
        self._ctx.upgrade_requested = True
        self._ctx.record_lifecycle("upgrade_requested", actor=verdict.actor, **_proof(verdict))
        return True


def _proof(verdict: CommandVerdict) -> dict[str, Any]:
    """How a command was proven, for its audit row."""
    proof: dict[str, Any] = {"authenticated": verdict.authenticated}
    if verdict.token_id is not None:
        proof["token_id"] = verdict.token_id
    if verdict.issuer is not None:
        proof["issuer"] = verdict.issuer
    return proof
