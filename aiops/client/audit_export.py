"""The audit trail as files a search engine takes, and their verification without the database.

An export is one JSON document per audit row (NDJSON), or the same documents as
Elasticsearch/OpenSearch ``_bulk`` bodies (an action line with a deterministic ``_id``, then the
document), each with its hash-chain fields: ``seq``, ``prev_hash``, ``row_hash`` and
``detail_text``, the exact text the hash covers. So a copy held anywhere can be checked offline:
every row's hash is recomputed and every link of each agent's chain is followed.

A filtered export (one action, a time window, rows after a position) holds a partial chain: each
row's own hash is still checked, but a link can only be checked between two rows of an agent
that are consecutive in its chain and both present; ``verify_file(partial=True)`` reports the
links it could not check instead of failing on them. Removing the *last* rows of a chain leaves
no broken link in any copy: compare the row counts with ``aiops audit verify`` on the database.

Nothing here touches the database (the rows come from ``AuditClient.tail``; the hash and the
row types come through ``aiops.client.audit``, the one audit module that reads the database).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError

from aiops.client.audit import GENESIS, AuditPosition, ChainRow, chain_hash
from aiops.client.errors import ClientError

Format = Literal["ndjson", "es-bulk"]
MAX_LINE_BYTES = 4 * 1024 * 1024
"""A line longer than this is refused: an audit row's detail is bounded well below it."""
MAX_PROBLEMS = 50
_HASH = r"^[0-9a-f]{64}$"


class AuditExportError(ClientError):
    """An export or position file that cannot be used; the message says which and why."""


def document(row: ChainRow) -> str:
    """One row as one JSON line. ``detail`` is spliced in as PostgreSQL rendered it (valid JSON,
    one line), so it is searchable as an object and still equal to ``detail_text``."""
    fields = {
        "seq": row.seq,
        "agent_id": row.agent_id,
        "action_id": row.action_id,
        "step": row.step,
        "key": row.key,
        "actor": row.actor,
        "occurred_at": row.occurred_at.isoformat(),
        "recorded_at": row.recorded_at.isoformat(),
        "prev_hash": row.prev_hash,
        "row_hash": row.row_hash,
        "detail_text": row.detail_text,
    }
    head = json.dumps(fields, ensure_ascii=False, separators=(",", ":"))
    return f'{head[:-1]},"detail":{row.detail_text}}}'


def bulk_action(row: ChainRow, index: str) -> str:
    """The ``_bulk`` action line: ``index`` with ``_id`` = ``seq`` (unique in the log), so
    shipping the same rows again overwrites them with themselves instead of adding copies."""
    return json.dumps({"index": {"_index": index, "_id": str(row.seq)}}, separators=(",", ":"))


def lines(rows: Iterable[ChainRow], fmt: Format, index: str = "aiops-audit") -> Iterator[str]:
    for row in rows:
        if fmt == "es-bulk":
            yield bulk_action(row, index)
        yield document(row)


# ----- the position of an export, kept in a file ---------------------------------------------


def load_position(path: Path) -> AuditPosition:
    """The position saved at ``path``; an empty one if there is no file yet."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return AuditPosition()
    except OSError as err:
        raise AuditExportError(f"cannot read the position file {path}: {err}") from None
    return parse_position(text, f"the position file {path}")


def parse_position(text: str, where: str = "--from-position") -> AuditPosition:
    try:
        return AuditPosition.model_validate_json(text)
    except ValidationError as err:
        problem = err.errors()[0]
        raise AuditExportError(
            f'{where} is not a position such as {{"agents": {{"disk-1": 42}}}}: '
            f"{'.'.join(str(p) for p in problem['loc']) or 'document'}: {problem['msg']}"
        ) from None


def save_position(path: Path, position: AuditPosition) -> None:
    """Write the position atomically (temporary file, fsync, rename): a crash leaves the old
    position or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(position.model_dump_json())
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ----- verification without the database -------------------------------------------------------


class ExportedRow(BaseModel):
    """A document as read back; strict types, so a changed type is named, not coerced. Fields
    a shipper adds (``host``, ``@timestamp``, ...) are ignored."""

    model_config = ConfigDict(extra="ignore")

    seq: StrictInt = Field(ge=1)
    agent_id: StrictStr
    action_id: StrictStr | None
    step: StrictStr
    key: StrictStr
    actor: StrictStr
    occurred_at: datetime
    prev_hash: str = Field(pattern=_HASH)
    row_hash: str = Field(pattern=_HASH)
    detail_text: StrictStr
    detail: Any


class ChainCheck(BaseModel):
    """One agent's chain as found in the file."""

    agent_id: str
    rows: int = 0
    first_seq: int = 0
    last_seq: int = 0
    starts_at_genesis: bool = False
    links_checked: int = 0
    gaps: list[int] = []
    """Rows whose predecessor is not in the file (partial export): their link is not checked."""
    ok: bool = True
    broken_at_seq: int | None = None
    problem: str | None = None


class FileReport(BaseModel):
    source: str
    format: Format
    partial: bool
    rows: int = 0
    agents: list[ChainCheck] = []
    problems: list[str] = []
    """Everything that failed, each naming the line (and the row, when it could be read)."""

    @property
    def ok(self) -> bool:
        return not self.problems


class _Chains:
    def __init__(self, partial: bool) -> None:
        self.partial = partial
        self.checks: dict[str, ChainCheck] = {}
        self.last_hash: dict[str, str] = {}

    def add(self, row: ExportedRow, where: str) -> str | None:
        """Check one row against its own hash and the agent's previous row in the file."""
        check = self.checks.setdefault(row.agent_id, ChainCheck(agent_id=row.agent_id))
        name = f"{where} (agent {row.agent_id}, seq {row.seq})"
        problem = self._problem(row, check)
        check.rows += 1
        if problem is None or not problem.startswith("out of order"):
            # Follow the file's own chain even past an altered row, so one change is reported
            # once (plus the next link, when the change was to row_hash itself).
            check.last_seq = row.seq
            self.last_hash[row.agent_id] = row.row_hash
        if problem is None:
            return None
        if check.ok:
            check.ok, check.broken_at_seq, check.problem = False, row.seq, problem
        return f"{name}: {problem}"

    def _problem(self, row: ExportedRow, check: ChainCheck) -> str | None:
        first = check.rows == 0
        if first:
            check.first_seq = row.seq
            check.starts_at_genesis = row.prev_hash == GENESIS
        computed = chain_hash(
            row.prev_hash, row.agent_id, row.action_id, row.step, row.key, row.actor,
            row.detail_text, row.occurred_at,
        )  # fmt: skip
        if computed != row.row_hash:
            return "altered: its content no longer matches row_hash"
        if not _same_json(row.detail_text, row.detail):
            return "altered: detail differs from detail_text, the hashed text"
        if first:
            if not check.starts_at_genesis and not self.partial:
                return (
                    "the agent's first row in the file does not start its chain: earlier rows are "
                    "missing (verify a filtered export with --partial)"
                )
            return None
        if row.seq <= check.last_seq:
            return f"out of order: it comes after seq {check.last_seq} of the same agent"
        if row.prev_hash == self.last_hash[row.agent_id]:
            check.links_checked += 1
            return None
        if self.partial:
            check.gaps.append(row.seq)
            return None
        return (
            f"does not link to seq {check.last_seq}, the agent's row before it in the file: a row "
            "between them was removed or rows were reordered (verify a filtered export with --partial)"
        )


def _same_json(text: str, value: Any) -> bool:
    """``text`` parses to exactly ``value``: compared as canonical JSON, so ``true`` is not ``1``
    and ``1.0`` is not ``1`` (Python's ``==`` would say they are)."""
    try:
        parsed = json.loads(text)
        return json.dumps(parsed, sort_keys=True) == json.dumps(value, sort_keys=True)
    except (ValueError, RecursionError):
        return False


def read_lines(stream: IO[bytes]) -> Iterator[tuple[int, str, str | None]]:
    """(line number, text, problem) of each non-blank line; a line too long or not UTF-8 has no
    text but a problem. Reads are bounded: a huge line is skipped, never held in memory."""
    number = 0
    while True:
        raw = stream.readline(MAX_LINE_BYTES + 1)
        if not raw:
            return
        number += 1
        if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
            while raw and not raw.endswith(b"\n"):  # skip the rest of the line, bounded reads
                raw = stream.readline(MAX_LINE_BYTES)
            yield number, "", f"longer than {MAX_LINE_BYTES} bytes, not an audit row"
            continue
        try:
            text = raw.decode()
        except UnicodeDecodeError:
            yield number, "", "not UTF-8 text"
            continue
        if text.strip():
            yield number, text, None


def verify_stream(
    stream: IO[bytes], source: str, fmt: Format | None = None, partial: bool = False
) -> FileReport:
    """Verify an NDJSON or ``_bulk`` export (``fmt`` None: told by its first line)."""
    chains = _Chains(partial)
    report = FileReport(source=source, format=fmt or "ndjson", partial=partial)
    expect_action = fmt == "es-bulk"
    decided = fmt is not None
    action_id: str | None = None
    for number, text, unreadable in read_lines(stream):
        where = f"line {number}"
        if len(report.problems) >= MAX_PROBLEMS:
            report.problems.append(f"stopped after {MAX_PROBLEMS} problems")
            break
        if unreadable:
            report.problems.append(f"{where}: {unreadable}")
            continue
        try:
            value = json.loads(text)
        except json.JSONDecodeError as err:
            report.problems.append(f"{where}: not JSON ({err.msg} at column {err.colno})")
            continue
        except (ValueError, RecursionError) as err:  # a too long integer, too deep nesting
            report.problems.append(f"{where}: not usable JSON ({err})")
            continue
        if not decided:
            decided, expect_action = True, _is_action(value)
            report.format = "es-bulk" if expect_action else "ndjson"
        if expect_action:
            action_id = _bulk_id(value)
            if action_id is None:
                report.problems.append(
                    f'{where}: expected a _bulk action line such as {{"index": {{"_id": ...}}}}'
                )
                continue
            expect_action = False
            continue
        try:
            row = ExportedRow.model_validate(value)
        except ValidationError as err:
            first = err.errors()[0]
            field = ".".join(str(p) for p in first["loc"]) or "document"
            report.problems.append(f"{where}: not an audit row: {field}: {first['msg']}")
            expect_action = report.format == "es-bulk"
            continue
        report.rows += 1
        if report.format == "es-bulk":
            expect_action = True
            if action_id != str(row.seq):
                report.problems.append(
                    f"{where} (agent {row.agent_id}, seq {row.seq}): its action line's _id "
                    f"{action_id!r} is not its seq"
                )
                continue
        problem = chains.add(row, where)
        if problem:
            report.problems.append(problem)
    if report.format == "es-bulk" and not expect_action and decided:
        report.problems.append("the file ends with an action line without its document")
    report.agents = sorted(chains.checks.values(), key=lambda c: c.agent_id)
    return report


def _is_action(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and next(iter(value)) in ("index", "create")


def _bulk_id(value: Any) -> str | None:
    if not _is_action(value):
        return None
    meta = next(iter(value.values()))
    found = meta.get("_id") if isinstance(meta, dict) else None
    return found if isinstance(found, str) else None


def verify_file(path: str, fmt: Format | None = None, partial: bool = False) -> FileReport:
    """``verify_stream`` on a file (``-``: standard input)."""
    import sys

    if path == "-":
        return verify_stream(sys.stdin.buffer, "stdin", fmt, partial)
    try:
        with open(path, "rb") as stream:
            return verify_stream(stream, path, fmt, partial)
    except (FileNotFoundError, IsADirectoryError, PermissionError) as err:
        raise AuditExportError(f"cannot read {path}: {err.strerror}") from None
