"""The inbox's ``AiopsSummary`` column: what the action is, on one bounded, safe line.

Search attributes are indexed and shown in clear (never encrypted), and an agent's description
can come from an alert's text or a model's answer: control characters, bidi overrides that make
a row read other than it is stored, and unbounded length are all refused here.
"""

from __future__ import annotations

import pytest

from aiops.contracts import search_attributes as sa
from aiops.contracts.models import AgentAction
from workflows.action.details import inbox_summary


def action(description: str, targets: list[str]) -> AgentAction:
    return AgentAction(
        id="action-a1:e1",
        agent_id="a1",
        type="restart_service",
        description=description,
        target_resources=targets,
        risk_level="high",
    )


def test_it_says_what_the_action_is_and_on_what() -> None:
    assert inbox_summary(action("restart nginx after OOM", ["web-1"])) == "web-1: restart nginx after OOM"
    many = inbox_summary(action("drain", ["a", "b", "c", "d", "e"]))
    assert many == "a, b, c (+2): drain"


@pytest.mark.parametrize(
    "hostile",
    [
        "line one\nline two\r\x1b[31mred\x00",  # newlines, an ANSI escape, NUL
        "approve \u202egnp.exe\u202c now",  # right-to-left override
        "a\u2066b\u2069c\u200fd\u061ce\u200bf\ufeffg\u2028h",  # isolates, marks, zero width, separators
        "\x85next\x9bline",  # C1 controls
    ],
)
def test_control_and_bidi_characters_never_reach_the_column(hostile: str) -> None:
    line = inbox_summary(action(hostile, ["web-1"]))
    assert line.isprintable() and "  " not in line, repr(line)
    assert not any(0x202A <= ord(c) <= 0x202E or 0x2066 <= ord(c) <= 0x2069 for c in line)


def test_a_long_description_is_cut_within_the_bound_and_says_so() -> None:
    line = inbox_summary(action("x" * 5000, ["web-1"]))
    assert len(line) == sa.SUMMARY_MAX_CHARS and line.endswith("…")
    assert sa.summary_value("short") == "short"


def test_it_is_registered_with_the_others() -> None:
    assert sa.SUMMARY in sa.ALL
    assert "--name AiopsSummary --type Keyword" in sa.REGISTER_COMMAND
