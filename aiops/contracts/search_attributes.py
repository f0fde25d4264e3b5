"""The typed search attributes behind the approval inbox, the agent list and the health monitor.

They must be registered on the namespace (``temporal-dev/`` does it for the dev
server; ``REGISTER_COMMAND`` prints the line for any other server). The inbox
columns (risk, agent, requested at, approvals so far and needed) are here so a
person can work from the Web UI's workflow list, not only from ``aiops approvals list``.
"""

from __future__ import annotations

import re
from typing import Any

from temporalio.common import SearchAttributeIndexedValueType, SearchAttributeKey

AGENT_ID = SearchAttributeKey.for_keyword("AiopsAgentId")
AGENT_TYPE = SearchAttributeKey.for_keyword("AiopsAgentType")
AGENT_STATE = SearchAttributeKey.for_keyword("AiopsAgentState")
ACTION_STATUS = SearchAttributeKey.for_keyword("AiopsActionStatus")
RISK_LEVEL = SearchAttributeKey.for_keyword("AiopsRiskLevel")
# Set by every action started since inbox-columns-v1 (see ActionWorkflow).
REQUESTED_AT = SearchAttributeKey.for_datetime("AiopsRequestedAt")
APPROVALS = SearchAttributeKey.for_int("AiopsApprovals")  # distinct approvers so far
APPROVALS_NEEDED = SearchAttributeKey.for_int("AiopsApprovalsNeeded")  # 0: no approval needed
# An agent's health summary (aiops/contracts/health_summary.py): "ok" or flags, set on change.
HEALTH = SearchAttributeKey.for_keyword("AiopsHealth")
# An action's one-line summary for the inbox: "targets: description", set when it starts.
# Keyword, not Text: a column to read and a prefix to filter on (STARTS_WITH), and SQL visibility
# stores few Text attributes. Never encrypted (docs/encryption.md): it holds no parameters.
SUMMARY = SearchAttributeKey.for_keyword("AiopsSummary")
SUMMARY_MAX_CHARS = 200

ALL: tuple[SearchAttributeKey[Any], ...] = (
    AGENT_ID,
    AGENT_TYPE,
    AGENT_STATE,
    ACTION_STATUS,
    RISK_LEVEL,
    REQUESTED_AT,
    APPROVALS,
    APPROVALS_NEEDED,
    HEALTH,
    SUMMARY,
)

# The names the ``temporal`` CLI (``--type``, ``start-dev --search-attribute Name=Type``) takes.
_CLI_TYPES = {
    SearchAttributeIndexedValueType.KEYWORD: "Keyword",
    SearchAttributeIndexedValueType.DATETIME: "Datetime",
    SearchAttributeIndexedValueType.INT: "Int",
}


def cli_type(key: SearchAttributeKey[Any]) -> str:
    """The attribute's type as the ``temporal`` CLI and the dev server spell it."""
    return _CLI_TYPES[key.indexed_value_type]


REGISTER_COMMAND = "temporal operator search-attribute create " + " ".join(
    f"--name {key.name} --type {cli_type(key)}" for key in ALL
)


# Control characters (C0, DEL, C1) and the bidi controls that can make a column read other than
# it is stored (overrides, embeddings, isolates, marks), zero-width characters, and the line and
# paragraph separators.
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]+")


def summary_value(text: str, limit: int = SUMMARY_MAX_CHARS) -> str:
    """``text`` as one safe line for ``AiopsSummary``: control and bidi characters become spaces,
    runs of white space one space, and a text longer than ``limit`` ends in "…" within it."""
    line = " ".join(_UNSAFE.sub(" ", text).split())
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"


def quoted(value: str) -> str:
    """``value`` as a visibility-query string literal: quoted, with quotes and backslashes escaped."""
    escaped = value.replace("\\", "\\\\").replace("'", "\\'").replace('"', '\\"')
    return f"'{escaped}'"
