"""Where the command gate lived before it moved to ``workflows/agent/command_gate.py``.

Kept only for ``aiops/client.py`` (being split by another change): once it imports the digests
from ``workflows.agent.command_gate``, delete this module.
"""

from workflows.agent.command_gate import reconfigure_digest, stop_digest

__all__ = ["reconfigure_digest", "stop_digest"]
