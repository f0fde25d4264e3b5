"""The typed search attributes behind the approval inbox and the agent list.

They must be registered on the namespace (``temporal-dev/`` does it for the dev
server; ``REGISTER_COMMAND`` prints the line for any other server).
"""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

AGENT_ID = SearchAttributeKey.for_keyword("AiopsAgentId")
AGENT_TYPE = SearchAttributeKey.for_keyword("AiopsAgentType")
AGENT_STATE = SearchAttributeKey.for_keyword("AiopsAgentState")
ACTION_STATUS = SearchAttributeKey.for_keyword("AiopsActionStatus")
RISK_LEVEL = SearchAttributeKey.for_keyword("AiopsRiskLevel")

ALL = (AGENT_ID, AGENT_TYPE, AGENT_STATE, ACTION_STATUS, RISK_LEVEL)

REGISTER_COMMAND = "temporal operator search-attribute create " + " ".join(
    f"--name {key.name} --type Keyword" for key in ALL
)


def quoted(value: str) -> str:
    """``value`` as a visibility-query string literal: quoted, with quotes and backslashes escaped."""
    escaped = value.replace("\\", "\\\\").replace("'", "\\'").replace('"', '\\"')
    return f"'{escaped}'"
