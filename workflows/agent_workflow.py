"""Where ``AgentWorkflow`` lived before it became the package ``workflows/agent/``.

Kept only for ``aiops/client.py``, which another change is splitting right now: once the client
imports ``workflows.agent.workflow`` (or sends by ``aiops.contracts.agent.AgentMessages``), delete
this module.
"""

from workflows.agent.workflow import AgentWorkflow

__all__ = ["AgentWorkflow"]
