"""Names and targets match exactly (no final newline slips through), control characters are refused
in names, and everything the CLI shows escapes control and bidi-override characters visibly."""

from __future__ import annotations

import io
import json
import sys

import pytest
from pydantic import ValidationError
from rich.console import Console
from rich.text import Text

from agents.builtin.service.settings import PROGRAM_NAME
from agents.llm.proposal import TARGET
from agents.llm.settings import MCP_SERVER_NAME, MCP_TOOL_NAME
from aiops.cli.common import parse_json
from aiops.cli.output import BadInput, cell, compact, table
from aiops.contracts.models import AGENT_ID_PATTERN, SystemEvent
from aiops.contracts.secret_refs import is_reference
from aiops.contracts.text import escape_for_display, escape_in_json, is_unsafe, name_problem
from aiops.gateway.matchers import Matcher

# Every character an approver must see rather than have the terminal obey.
HOSTILE = [
    ("\u202a", "\\u202a"),  # LEFT-TO-RIGHT EMBEDDING
    ("\u202b", "\\u202b"),
    ("\u202c", "\\u202c"),
    ("\u202d", "\\u202d"),
    ("\u202e", "\\u202e"),  # RIGHT-TO-LEFT OVERRIDE
    ("\u2066", "\\u2066"),  # isolates
    ("\u2067", "\\u2067"),
    ("\u2068", "\\u2068"),
    ("\u2069", "\\u2069"),
    ("\u200e", "\\u200e"),  # LRM, RLM
    ("\u200f", "\\u200f"),
    ("\u200b", "\\u200b"),  # zero-width space
    ("\ufeff", "\\ufeff"),  # BOM
    ("\u2028", "\\u2028"),  # line separator
    ("\x1b", "\\x1b"),  # ESC: terminal escape sequences
    ("\x00", "\\x00"),
    ("\r", "\\x0d"),
    ("\x7f", "\\x7f"),
    ("\x85", "\\x85"),  # C1 next line
]


@pytest.mark.parametrize(("char", "shown"), HOSTILE)
def test_every_hostile_character_is_shown_as_its_escape(char: str, shown: str) -> None:
    text = f"approve restart of web{char}evil"
    assert escape_for_display(text) == f"approve restart of web{shown}evil"
    assert name_problem(f"web{char}") is not None and shown in str(name_problem(f"web{char}"))
    assert cell(text).plain == f"approve restart of web{shown}evil"
    decoded = json.loads(escape_in_json(json.dumps({"d": text}, ensure_ascii=False)))
    assert decoded == {"d": text}, "the JSON output is the same data, only written visibly"
    assert char not in escape_in_json(json.dumps({"d": text}, ensure_ascii=False))


def test_plain_text_and_newlines_stay_as_they_are() -> None:
    assert escape_for_display("café → ok") == "café → ok"
    assert escape_for_display("a\nb", keep_newlines=True) == "a\nb"
    assert escape_for_display("a\nb") == "a\\x0ab"
    assert name_problem("service/web") is None
    assert escape_in_json('{"a": "\U0001f600"}') == '{"a": "\U0001f600"}'


def test_tables_and_compact_json_escape_what_they_show() -> None:
    out = io.StringIO()
    rows = [("a:1", "restart web\u202e(evil)"), (Text("x\u2066y"), {"k": "\u202e"})]
    Console(file=out, width=200, markup=False, highlight=False).print(table(["ACTION", "DESCRIPTION"], rows))
    rendered = out.getvalue()
    assert "\u202e" not in rendered and "\u2066" not in rendered
    assert "restart web\\u202e(evil)" in rendered and "x\\u2066y" in rendered
    assert compact({"k": "v\u202e"}) == '{"k": "v\\u202e"}'


@pytest.mark.parametrize("field", ["id", "source", "correlation_id"])
@pytest.mark.parametrize("bad", ["web\n", "web\u202e", "\x00", "a\u200bb"])
def test_an_event_refuses_control_characters_in_its_names(field: str, bad: str) -> None:
    fields = {"id": "e1", "type": "alert", "source": "x", field: bad}
    with pytest.raises(ValidationError, match="control or invisible character"):
        SystemEvent.model_validate(fields)


@pytest.mark.parametrize(
    ("pattern", "good"),
    [
        (TARGET, "service/web"),
        (AGENT_ID_PATTERN, "db-1"),
        (PROGRAM_NAME, "group:web"),
        (MCP_SERVER_NAME, "github"),
        (MCP_TOOL_NAME, "list_issues"),
    ],
)
def test_name_patterns_match_the_whole_string_only(pattern: object, good: str) -> None:
    import re

    assert isinstance(pattern, re.Pattern)
    assert pattern.match(good)
    assert not pattern.match(good + "\n"), "a final newline is not part of a name"
    assert not pattern.match(good + "\n\n")


def test_a_secret_reference_and_a_matcher_are_exact_too() -> None:
    assert is_reference("env:TOKEN") and not is_reference("env:TOKEN\n")
    matcher = Matcher.parse('instance=~"web-[0-9]+"')
    assert matcher.pattern is not None
    assert matcher.pattern.match("web-1") and not matcher.pattern.match("web-1\n")


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('{"v": NaN}', "NaN is not a JSON number"),
        ('{"v": -Infinity}', "-Infinity is not a JSON number"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ('{"v": ', "not valid JSON"),
    ],
)
def test_cli_json_is_strict_and_says_what_is_wrong(text: str, needle: str) -> None:
    with pytest.raises(BadInput, match=needle):
        parse_json(text, "--data")


@pytest.mark.parametrize("bad", ["alice\n", "al\u202eice", "\x1b[31mbob"])
def test_config_names_shown_to_people_refuse_control_characters(bad: str) -> None:
    from aiops.contracts.config import AgentConfig, Approver

    with pytest.raises(ValidationError, match="control or invisible character"):
        Approver(name=bad)
    with pytest.raises(ValidationError, match="control or invisible character"):
        Approver(name="alice", roles=["sre", bad])
    with pytest.raises(ValidationError, match="control or invisible character"):
        AgentConfig(id="a", name=bad, type="example")


def test_pydantic_patterns_are_exact_too() -> None:
    """Pydantic checks ``pattern`` with Rust's regex engine, whose ``$`` is the end of the text."""
    from agents.llm.settings import CatalogEntry
    from aiops.contracts.config import Approver
    from aiops.gateway.alertmanager import Alert

    alert = {"status": "firing", "labels": {"a": "b"}, "startsAt": "2024-05-01T10:00:00Z"}
    assert Alert.model_validate({**alert, "fingerprint": "abc"}).fingerprint == "abc"
    with pytest.raises(ValidationError):
        Alert.model_validate({**alert, "fingerprint": "abc\n"})
    with pytest.raises(ValidationError):
        Approver(name="a", public_key="ed25519:" + "A" * 43 + "\n")
    with pytest.raises(ValidationError):
        CatalogEntry.model_validate({"name": "restart\n", "action_type": "notify", "targets": ["x"]})


def test_the_printable_fast_path_finds_every_unsafe_character() -> None:
    """``name_problem`` answers a printable name at C speed (``str.isprintable``): that is exact
    only if no printable character is of an unsafe category, for every code point there is."""
    printable_but_unsafe = [
        c for c in map(chr, range(sys.maxunicode + 1)) if c.isprintable() and is_unsafe(c)
    ]
    assert printable_but_unsafe == []
    assert name_problem("web\u00a0x") is None  # a no-break space is a separator, not unsafe
    assert name_problem("web\u2028x") is not None  # a line separator is
