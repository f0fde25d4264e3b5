"""How an agent starts an action's workflow from its own worker: the request, the answer, the inbox.

An agent used to start each action as a child workflow. The server then creates the child,
records the start in the agent's history, and only after that schedules the child's first
workflow task, which a worker polls: three server round trips before the action runs a line
(docs/scale.md, "Latency"). Now the agent asks a local activity to start it
(``activities/action_start.py``), with eager workflow start: when a worker in the same process
polls the agent type's queue, the server hands the action's first task back in the start's
answer, and the action plans and executes while the agent's task is still finishing.

What stays as it was: one durable workflow per action, its deterministic id (agent and event),
REJECT_DUPLICATE (an event delivered again never starts a second action), ABANDON-like life
(actions outlive their agent's run), and the inbox columns set at start.

What the start by activity has to add:
- **Its own repeat told from a duplicate.** A local activity runs at least once: a retried
  attempt, or the agent's task run again after a worker crash, starts the same action again and
  meets "already started". The ``LAUNCH_MEMO`` memo names the agent that started the action, so a
  workflow that carries this agent's name is its own start (the comment on ``LAUNCH_MEMO`` says
  why that holds), anything else is a duplicate. If that earlier attempt's action has already
  reported its end (its published status is final, closed or not), the answer says how, as the
  action's own ``action_finished`` signal may have reached the agent before the agent knew the
  action was its own, and found no pending action to end.
- **The agent named in the input** (``ActionInput.launch == "client"``): there is no parent
  link, so the action confirms holds with ``agent_workflow_id``, which its starter set.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field
from temporalio.common import SearchAttributePair, TypedSearchAttributes

from aiops.contracts import search_attributes as sa
from aiops.contracts.action import ActionInput, ActionOutcome, ActionStatus
from aiops.contracts.models import AgentAction
from aiops.contracts.policy import Outcome

# The memo field that names the agent that started the action (its workflow id, every run).
#
# An "already started" for an action carrying this agent's name is the agent's own start, whose
# result was lost (a retried activity, or the agent's task run again after a crash or a
# force-closed task, when the event may even be decided in a later run). The agent never launches
# an action it knows of a second time: not in the same run (``workflows/action_launch.py`` keeps
# the ids it launched), not while it is pending (carried across runs), not for an event still in
# the dedup window (carried). So the one case the name cannot tell is an event delivered again
# after the dedup window forgot it (or to a new agent with the same id), whose action has ended:
# it is counted as proposed and ended again (never run again), where a child start counted it a
# duplicate. Not a counter or a random draw of the run: a task run again after the server
# force-closed it sees more buffered events, may form its batches differently and would draw
# another.
LAUNCH_MEMO = "aiops-launch"


def status_at_start(input: ActionInput) -> ActionStatus:
    """The status an action's search attributes show from its start: ``executing`` for one that
    runs at once (auto-approved, no dry run, not held), whose first task goes straight on to
    execute; else ``proposed``. Set at start, the first task of an action that runs at once has
    nothing to upsert: an upsert in the task that schedules execute makes the server hand execute
    over about 3 ms later (``bench/upsert_probe.py``, docs/scale.md). The action then publishes
    ``proposed`` only if it started otherwise (``workflows/action/workflow.py``)."""
    at_once = input.decision.outcome == Outcome.AUTO_EXECUTE and not input.has_plan and not input.held
    return ActionStatus.EXECUTING if at_once else ActionStatus.PROPOSED


def inbox_attributes(
    action: AgentAction,
    agent_type: str,
    requested_at: datetime,
    approvals_needed: int,
    summary: str,
    status: ActionStatus = ActionStatus.PROPOSED,
) -> TypedSearchAttributes:
    """The action's search attributes at start: the approval inbox's columns, set once here so the
    action's first task upserts only what differs (``workflows/action/publishing.py``). ``status``:
    ``status_at_start``'s for the worker-side start; the agent's older start as a child (a command
    in its replayed history, ``workflows/action_launch.py``) keeps ``proposed``."""
    return TypedSearchAttributes(
        [
            SearchAttributePair(sa.AGENT_ID, action.agent_id),
            SearchAttributePair(sa.AGENT_TYPE, agent_type),
            SearchAttributePair(sa.RISK_LEVEL, action.risk_level.value),
            SearchAttributePair(sa.ACTION_STATUS, status.value),
            SearchAttributePair(sa.SUMMARY, summary),
            SearchAttributePair(sa.REQUESTED_AT, requested_at),
            SearchAttributePair(sa.APPROVALS, 0),
            SearchAttributePair(sa.APPROVALS_NEEDED, approvals_needed),
        ]
    )


class ActionStart(BaseModel):
    """What the ``start_action`` local activity needs to start one action's workflow."""

    input: ActionInput
    workflow_id: str = Field(min_length=1)
    task_queue: str = Field(min_length=1)
    priority_key: int = Field(ge=1, le=5)
    requested_at: datetime
    inbox_summary: str
    static_summary: str
    static_details: str
    launched_by: str = Field(min_length=1)  # the agent's workflow id, for LAUNCH_MEMO


class ActionStarted(BaseModel):
    """How the start went.

    - ``started``: the action's workflow runs (this call started it, or an earlier attempt of it).
    - ``duplicate``: a workflow with this id was started before, not by this agent (a child start
      of an earlier build, another agent with the same id before it); nothing was started.
    - ``refused``: the server refused the request itself (``reason`` says why, e.g. a search
      attribute the namespace lacks); no attempt can succeed, so the agent refuses the proposal
      instead of retrying for ever.
    - ``unavailable``: this worker has no Temporal client to start with; the agent starts the
      action as a child workflow instead.
    """

    outcome: Literal["started", "duplicate", "refused", "unavailable"]
    reason: str = ""
    # Started by an earlier attempt of this start, and already ended: how (its own record).
    ended: ActionOutcome | None = None
