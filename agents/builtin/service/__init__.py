"""The ``service`` agent: a supervised process that died or stopped answering, restarted and checked.

It watches programs run by Debian's ``supervisor`` (their state over supervisor's XML-RPC API, on its
unix or inet socket) and, optionally, an HTTP health endpoint per program. A program that exited or
failed to start, or that runs but whose endpoint fails, is restarted through the same API
(``stopProcess`` then ``startProcess``, or only ``startProcess`` when it is down); verification
waits for state RUNNING and a healthy endpoint.

Restarts are bounded: at most ``max_restarts`` per ``restart_window_seconds`` per program. Beyond
the limit the agent does not loop: it still proposes the restart, but as an *escalated* action of
risk ``escalation_risk`` (high by default), which the approval policy always sends to a person, with
the restart history in its description and plan. A restart the policy ran automatically re-checks
the limit when it executes and refuses (a failed action, nothing restarted) if it was reached since.

Execution is effectively once by ``action.id``: before restarting, the agent records its intent
in the action ledger (keyed by the action id, with supervisor's clock and the old pid) in
``state_dir``; a retried execution that finds the intent and a process started after it does not
restart again, it only waits for the result. A program that is healthy again by the time the
action runs is left alone. A restart cannot be undone, so there is no rollback: a failed
verification fails the action.

Modules: ``settings`` (what may be configured), ``supervisor`` (the XML-RPC client and the HTTP
check), ``history`` (restarts per window), ``restart`` (one restart per action, verification) and
``agent`` (the hooks).
"""

from agents.builtin.service.agent import ServiceAgent
from agents.builtin.service.settings import Service, ServiceSettings, SupervisorSettings

__all__ = ["Service", "ServiceAgent", "ServiceSettings", "SupervisorSettings"]
