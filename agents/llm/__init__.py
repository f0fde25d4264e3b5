"""The ``llm`` agent type: AI diagnosis with read-only tools, a typed proposal through the policy.

Importing this package registers the type (``--agent-module agents.llm`` or
``AIOPS_AGENT_MODULES=agents.llm``). The Temporal side (the diagnosis workflow, its activities and
Pydantic AI's plugin) is in ``agents.llm.temporal``; see ``docs/agents/llm.md``.
"""

from agents.llm.agent import LlmAgent

__all__ = ["LlmAgent"]
