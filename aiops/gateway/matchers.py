"""Label matchers as Alertmanager's routes write them: ``a="v"``, ``a!="v"``, ``a=~"re"``, ``a!~"re"``.

Semantics follow Alertmanager: a regex is anchored at both ends, and a label that
is absent matches as the empty string (so ``env!="prod"`` matches an alert with no
``env`` label, and ``env=""`` matches only such an alert).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from enum import StrEnum


class Op(StrEnum):
    EQUAL = "="
    NOT_EQUAL = "!="
    REGEX = "=~"
    NOT_REGEX = "!~"


_MATCHER = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(.*?)\s*$", re.DOTALL)


@dataclass(frozen=True)
class Matcher:
    name: str
    op: Op
    value: str
    pattern: re.Pattern[str] | None = None

    @classmethod
    def build(cls, name: str, op: Op, value: str) -> Matcher:
        pattern = None
        if op in (Op.REGEX, Op.NOT_REGEX):
            try:
                pattern = re.compile(f"\\A(?:{value})\\Z", re.DOTALL)
            except re.error as err:
                raise ValueError(
                    f"{name}{op.value}{value!r}: not a valid regular expression: {err}"
                ) from None
        return cls(name, op, value, pattern)

    @classmethod
    def parse(cls, text: str) -> Matcher:
        """``alertname="DiskFull"`` (quotes optional for simple values, JSON escapes inside them)."""
        found = _MATCHER.match(text)
        if found is None:
            raise ValueError(
                f"{text!r}: a matcher is NAME OP VALUE, OP one of = != =~ !~, e.g. 'severity=~\"crit|high\"'"
            )
        name, op, raw = found.groups()
        if raw.startswith('"'):
            try:
                value = json.loads(raw)
            except json.JSONDecodeError:
                raise ValueError(f"{text!r}: the quoted value is not closed or has a bad escape") from None
            if not isinstance(value, str):
                raise ValueError(f"{text!r}: the value must be a string")
        else:
            if any(c in raw for c in '"{},'):
                raise ValueError(f'{text!r}: quote a value that holds any of " {{ }} ,')
            value = raw
        return cls.build(name, Op(op), value)

    def matches(self, labels: dict[str, str]) -> bool:
        actual = labels.get(self.name, "")
        if self.op is Op.EQUAL:
            return actual == self.value
        if self.op is Op.NOT_EQUAL:
            return actual != self.value
        assert self.pattern is not None
        hit = self.pattern.match(actual) is not None
        return hit if self.op is Op.REGEX else not hit

    def __str__(self) -> str:
        return f"{self.name}{self.op.value}{json.dumps(self.value)}"
