"""The old home of ``ActionWorkflow``, now in ``workflows/action/`` (``workflows.action.workflow``).

Kept for the callers still importing it from here (``aiops/client.py`` and the agent workflow,
being split by other helpers); they should send through ``aiops.contracts.action.ActionMessages``
and start it from ``workflows.action.workflow``. Delete this module once nothing imports it.
"""

from workflows.action.workflow import ActionWorkflow

__all__ = ["ActionWorkflow"]
