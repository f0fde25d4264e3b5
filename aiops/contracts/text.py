"""Text that names something (ids, sources, targets) and text shown to a person (approvers, tables).

A name with a control character or a bidirectional override is not a name: a newline makes
``service/web\\n`` look like ``service/web``, and U+202E makes a description read backwards. Names
refuse them (``name_problem``); everything displayed escapes them visibly (``escape_for_display``),
so an approver sees ``\\u202e`` where an alert source planted one.
"""

from __future__ import annotations

import unicodedata
from typing import Annotated

from pydantic import AfterValidator

# Unicode categories that are invisible or reorder text: controls, formats (bidi overrides and
# isolates, zero-width characters, the BOM), surrogates, private use, unassigned, line separators.
UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def is_unsafe(char: str) -> bool:
    return unicodedata.category(char) in UNSAFE_CATEGORIES


def _all_safe(text: str) -> bool:
    """No unsafe character in ``text``, at C speed for the common case: ``str.isprintable`` is
    False for every character of the categories Other (Cc, Cf, Cs, Co, Cn) and Separator (Zs, Zl,
    Zp) but the ASCII space, from the same Unicode database, so a printable text has none of
    ``UNSAFE_CATEGORIES`` (tests/unit/test_exact_names_and_display.py checks every code point).
    Only a text that is not (a newline, a non-ASCII space) is looked at character by character.
    Every event's id and source are checked on intake: character by character it was half of
    parsing an event."""
    return text.isprintable() or not any(is_unsafe(c) for c in text)


def name_problem(value: str, what: str = "the value") -> str | None:
    """Why ``value`` cannot name anything (the first unsafe character, escaped), or None."""
    if value.isprintable():  # the common case, at C speed: see _all_safe
        return None
    for position, char in enumerate(value):
        if is_unsafe(char):
            return (
                f"{what} contains the control or invisible character {_escape(char)} at position {position}; "
                "names, ids and targets may not"
            )
    return None


def visible(value: str) -> str:
    """``value`` if it can name something; ``ValueError`` (a validation problem) if not."""
    problem = name_problem(value, "it")
    if problem is not None:
        raise ValueError(problem)
    return value


# A string that names something people read (ids, sources, display names, roles).
VisibleName = Annotated[str, AfterValidator(visible)]


def _escape(char: str) -> str:
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def escape_for_display(text: str, keep_newlines: bool = False) -> str:
    """``text`` with every control, format and bidi character written as its escape (``\\u202e``),
    and backslashes left as they are; with ``keep_newlines`` a plain ``\\n`` stays a line break."""
    if _all_safe(text):
        return text
    return "".join(c if not is_unsafe(c) or (keep_newlines and c == "\n") else _escape(c) for c in text)


def escape_in_json(text: str) -> str:
    """A JSON document with its invisible and bidi characters written as ``\\uXXXX`` escapes: still
    the same JSON (the escapes decode to the same strings), but a person reading it sees them."""
    if _all_safe(text):
        return text
    out = []
    for c in text:
        if not is_unsafe(c) or c == "\n":  # json.dumps already escapes the controls inside strings
            out.append(c)
            continue
        code = ord(c)
        if code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            code -= 0x10000
            out.append(f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}")
    return "".join(out)
