"""What the client raises: each a ``ClientError`` (so an ``AiopsError``) whose message says what to do."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiops.contracts.agent import EventAnswer
from aiops.contracts.errors import AiopsError

if TYPE_CHECKING:
    from aiops.client.agent_survey import AgentSurvey

__all__ = [
    "ActionNotFoundError",
    "AgentNotRunningError",
    "AgentTypeNotServedError",
    "AgentsUnansweredError",
    "AiopsError",
    "ClientError",
    "CommandRefusedError",
    "ConfigRefusedError",
    "EventTooLargeError",
    "EventsRejectedError",
    "IntakeRefusedError",
]


class ClientError(AiopsError):
    """A refused or failed operator request; the message says what to do."""


class AgentNotRunningError(ClientError):
    """No agent of that id runs: start it with its config (or send the event with its config)."""


class ActionNotFoundError(ClientError):
    """No action of that id exists (yet, or any more)."""


class ConfigRefusedError(ClientError):
    """The agent refused a new config or a rollback; the message names every problem."""


class CommandRefusedError(ClientError):
    """The agent refused a command (and audited the refusal); the message says why."""


class AgentTypeNotServedError(ClientError):
    """No worker polls the task queue where this agent type's code runs."""


class IntakeRefusedError(ClientError):
    """The agent could not take a batch (stopping, or still full after the patience ran out)."""


class EventsRejectedError(ClientError):
    """Some events were not taken; ``rejected`` says which and why, ``answers`` has them all."""

    def __init__(self, rejected: list[EventAnswer], answers: list[EventAnswer]) -> None:
        self.rejected = rejected
        self.answers = answers
        reasons = "; ".join(f"{a.event_id or '?'}: {a.reason}" for a in rejected[:5])
        more = f" (and {len(rejected) - 5} more)" if len(rejected) > 5 else ""
        super().__init__(f"{len(rejected)} of {len(answers)} event(s) rejected: {reasons}{more}")


class EventTooLargeError(ClientError):
    """An event (or what one update would carry) over its size budget: refused before anything is
    sent, since the agent could never take it; the message names the event, its size and the limit."""


class AgentsUnansweredError(ClientError):
    """Some agents did not answer their status query (their workers down, or their workflow task
    failing); ``survey`` has the statuses of the rest and why each silent one did not answer."""

    def __init__(self, survey: AgentSurvey) -> None:
        self.survey = survey
        named = "; ".join(f"{u.agent_id}: {u.reason}" for u in survey.unanswered[:5])
        more = f" (and {len(survey.unanswered) - 5} more)" if len(survey.unanswered) > 5 else ""
        super().__init__(
            f"{len(survey.unanswered)} agent(s) did not answer ({len(survey.statuses)} did): {named}{more}"
        )
