"""``aiops audit export`` and ``aiops audit verify --file`` against the real PostgreSQL.

An export of a real audit log verifies offline; any one altered line fails and names the row;
a filtered export verifies as the partial chain it is; follow mode picks up rows as they land,
survives a dropped connection, stops cleanly on SIGTERM and resumes from its position file with
neither duplicates nor gaps; hostile files get a one-line error, never a traceback.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from typer.testing import CliRunner, Result

from activities.database.audit_log import GENESIS, AuditLog, ChainRow, chain_hash
from activities.database.pool import open_pool
from aiops.cli import app
from aiops.client import AiopsClient
from aiops.client.audit_export import MAX_LINE_BYTES, document, verify_stream
from aiops.contracts.action import ApprovalRequest
from aiops.contracts.activities import AuditRecord, AuditStep
from tests.helpers import agent_config, eventually, start_pending_action, team
from tests.support.postgres_server import PostgresServer

ROOT = Path(__file__).resolve().parent.parent
RUNNER = CliRunner()


def records(agent_id: str, n: int, first: int = 0) -> list[AuditRecord]:
    start = datetime(2026, 5, 1, tzinfo=UTC)
    return [
        AuditRecord(
            agent_id=agent_id,
            action_id=f"action-{agent_id}:{i % 3}",
            step=AuditStep.DECISION,
            key=f"{agent_id}:{i}",
            actor="tester",
            occurred_at=start + timedelta(minutes=i),
            # jsonb orders keys its own way: the export must carry the text the hash covers
            detail={"i": i, "price": 1.50, "zz": 'ünï "q"\n', "a": {"b": [1, 2.0, None]}, "big": 10**30},
        )
        for i in range(first, first + n)
    ]


@pytest.fixture
def cli_env(address: str, postgres: Any, task_queue: str) -> dict[str, str | None]:
    return {
        "TEMPORAL_ADDRESS": address,
        "TEMPORAL_NAMESPACE": "default",
        "TEMPORAL_PROFILE": None,
        "DATABASE_URL": postgres.url,
        "AIOPS_TASK_QUEUE": task_queue,
        "AIOPS_USER": "tester",
        "COLUMNS": "250",
    }


@pytest.fixture
def cli(cli_env: dict[str, str | None]) -> Any:
    async def invoke(*args: str) -> Result:
        return await asyncio.to_thread(RUNNER.invoke, app, list(args), env=cli_env)

    return invoke


def ok(result: Result) -> Result:
    assert result.exit_code == 0, f"exit {result.exit_code}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    return result


def error_line(result: Result, code: int = 1) -> str:
    assert result.exit_code == code, (
        f"exit {result.exit_code}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    )
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.stderr + result.stdout
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ")
    return last


def offline(*args: str) -> Result:
    """The CLI with no server configured: what ``verify --file`` needs."""
    return RUNNER.invoke(app, list(args), env={"DATABASE_URL": None, "TEMPORAL_ADDRESS": "127.0.0.1:9"})


def check(text: str, partial: bool = False) -> Any:
    return verify_stream(io.BytesIO(text.encode()), "test", partial=partial)


async def exported(cli: Any, tmp_path: Path, *args: str) -> str:
    out = tmp_path / f"export-{uuid.uuid4().hex[:6]}"
    ok(await cli("audit", "export", "-O", str(out), *args))
    return out.read_text()


@pytest.mark.slow
async def test_a_real_audit_log_exports_and_verifies_offline(
    cli: Any, pool: asyncpg.Pool, aiops: AiopsClient, worker, tmp_path: Path
) -> None:
    config = agent_config("scripted", approval=team())
    _, action_id, _ = await start_pending_action(aiops, config, "high")
    await aiops.approvals.signal(action_id, ApprovalRequest(approver="alice", comment="go"))
    await aiops.approvals.wait_for_action(action_id)
    await eventually(
        lambda: aiops.audit.rows(action_id=action_id), lambda rs: any(r.step == "action_finished" for r in rs)
    )
    await AuditLog(pool).append(records(config.id, 5))
    in_db = await aiops.audit.rows(agent_id=config.id, limit=10000)

    ndjson = await exported(cli, tmp_path, "--agent", config.id)
    docs = [json.loads(line) for line in ndjson.splitlines()]
    assert [d["seq"] for d in docs] == [r.seq for r in in_db]
    last = docs[-1]
    assert last["detail"] == json.loads(last["detail_text"]) and last["detail"]["big"] == 10**30
    assert last["detail_text"] != json.dumps(last["detail"])  # jsonb's own key order and spacing
    report = check(ndjson)
    assert report.ok and report.format == "ndjson", report.problems
    [chain] = report.agents
    assert (chain.rows, chain.starts_at_genesis, chain.links_checked) == (len(in_db), True, len(in_db) - 1)

    bulk = await exported(cli, tmp_path, "--agent", config.id, "--format", "es-bulk", "--index", "audit-x")
    pairs = bulk.splitlines()
    assert len(pairs) == 2 * len(in_db)
    assert json.loads(pairs[0]) == {"index": {"_index": "audit-x", "_id": str(in_db[0].seq)}}
    assert check(bulk).ok and check(bulk).format == "es-bulk"
    # shipping the same rows again gives the same _ids: idempotent in the search engine
    assert (
        await exported(cli, tmp_path, "--agent", config.id, "--format", "es-bulk", "--index", "audit-x")
        == bulk
    )

    for text in (ndjson, bulk):
        path = tmp_path / "copy"
        path.write_text(text)
        result = ok(await cli("audit", "verify", "--file", str(path)))
        assert config.id in result.stdout and "genesis" in result.stdout
        [agent] = json.loads(ok(await cli("-o", "json", "audit", "verify", "--file", str(path))).stdout)[
            "agents"
        ]
        assert agent["ok"] and agent["rows"] == len(in_db)

    # one action's rows: a partial chain, verified as such, never failed wrongly
    of_action = await exported(cli, tmp_path, "--action", action_id)
    assert {json.loads(x)["action_id"] for x in of_action.splitlines()} == {action_id}
    assert not check(of_action).ok  # strict: earlier rows of the agent are not in the file
    partial = check(of_action, partial=True)
    assert partial.ok, partial.problems
    [chain] = partial.agents
    assert (
        chain.rows == len(of_action.splitlines()) and chain.links_checked + len(chain.gaps) == chain.rows - 1
    )


@pytest.mark.slow
async def test_any_altered_line_fails_and_names_the_row(cli: Any, pool: asyncpg.Pool, tmp_path: Path) -> None:
    agent, other = f"exp-{uuid.uuid4().hex[:8]}", f"exp-{uuid.uuid4().hex[:8]}"
    log = AuditLog(pool)
    for i in range(0, 6, 2):  # interleaved agents: their chains are separate
        await log.append(records(agent, 2, first=i) + records(other, 2, first=i))
    text = await exported(cli, tmp_path, "--agent", agent)
    rows = text.splitlines()
    docs = [json.loads(x) for x in rows]
    seq = [d["seq"] for d in docs]

    def edited(i: int, **changes: Any) -> str:
        doc = {**docs[i], **changes}
        return "\n".join([*rows[:i], json.dumps(doc), *rows[i + 1 :]])

    cases = {
        "changed actor": (edited(2, actor="mallory"), seq[2], "altered"),
        "changed detail": (edited(3, detail={**docs[3]["detail"], "i": 99}), seq[3], "detail differs"),
        "changed hashed text": (
            edited(1, detail_text=docs[1]["detail_text"].replace('"i": ', '"i":  ')),
            seq[1],
            "altered",
        ),
        "removed row": ("\n".join(rows[:2] + rows[3:]), seq[3], "does not link"),
        "reordered rows": ("\n".join([rows[0], rows[2], rows[1], *rows[3:]]), seq[2], "does not link"),
        "altered hash": (edited(4, row_hash="0" * 64), seq[4], "altered"),
        "removed first row": ("\n".join(rows[1:]), seq[1], "does not start its chain"),
        "duplicated row": ("\n".join([*rows[:3], rows[2], *rows[3:]]), seq[2], "out of order"),
    }
    for name, (bad, at, words) in cases.items():
        report = check(bad)
        assert not report.ok, name
        assert f"(agent {agent}, seq {at})" in report.problems[0] and words in report.problems[0], (
            name,
            report,
        )
        path = tmp_path / "bad.ndjson"
        path.write_text(bad)
        line = error_line(await cli("audit", "verify", "--file", str(path)))
        assert f"seq {at}" in line and agent in line, (name, line)

    bulk = (await exported(cli, tmp_path, "--agent", agent, "--format", "es-bulk")).splitlines()
    bulk[5] = json.dumps({**json.loads(bulk[5]), "step": "approval"})
    report = check("\n".join(bulk))
    assert f"line 6 (agent {agent}, seq {seq[2]}): altered" in report.problems[0]
    bulk = (await exported(cli, tmp_path, "--agent", agent, "--format", "es-bulk")).splitlines()
    bulk[2] = json.dumps({"index": {"_id": "1"}})
    assert "is not its seq" in check("\n".join(bulk)).problems[0]


@pytest.mark.slow
async def test_filters_by_agent_action_and_time(cli: Any, pool: asyncpg.Pool, tmp_path: Path) -> None:
    agent = f"exp-{uuid.uuid4().hex[:8]}"
    await AuditLog(pool).append(records(agent, 9))
    docs = lambda text: [json.loads(x) for x in text.splitlines()]  # noqa: E731
    everything = docs(await exported(cli, tmp_path, "--agent", agent, "--batch", "2"))
    assert [d["key"] for d in everything] == [f"{agent}:{i}" for i in range(9)]
    one = docs(await exported(cli, tmp_path, "--action", f"action-{agent}:1"))
    assert [d["detail"]["i"] for d in one] == [1, 4, 7]
    window = docs(
        await exported(
            cli, tmp_path, "--agent", agent, "--since", "2026-05-01T00:02", "--until", "2026-05-01T00:05"
        )
    )
    assert [d["detail"]["i"] for d in window] == [2, 3, 4]
    report = check("\n".join(json.dumps(d) for d in window), partial=True)
    assert report.ok and report.agents[0].links_checked == 2 and not report.agents[0].starts_at_genesis

    failed = await cli("audit", "export", "--since", "last tuesday")
    assert "--since" in error_line(failed, 2)
    assert "--until" in error_line(await cli("audit", "export", "--until", "soon"), 2)
    assert "--format" in error_line(await cli("audit", "export", "--format", "csv"), 2)
    assert "--index" in error_line(await cli("audit", "export", "--format", "es-bulk", "--index", "A,b"), 2)
    assert "--from-position" in error_line(await cli("audit", "export", "--from-position", "[1]"), 2)
    assert "--from-position" in error_line(
        await cli("audit", "export", "--from-position", '{"agents": {"a": "x"}}'), 2
    )
    assert "cannot write" in error_line(await cli("audit", "export", "--agent", agent, "-O", str(tmp_path)))
    unsaved = await cli("audit", "export", "--agent", agent, "--position-file", "/proc/aiops-position")
    assert "cannot save the position" in error_line(unsaved) and unsaved.stdout == ""
    full = error_line(await cli("audit", "export", "--agent", agent, "-O", "/dev/full"))
    assert "cannot write /dev/full" in full and "stopped after 0 rows" in full
    position = json.dumps({"agents": {agent: everything[5]["seq"]}})
    rest = docs(await exported(cli, tmp_path, "--agent", agent, "--from-position", position))
    assert [d["detail"]["i"] for d in rest] == [6, 7, 8]


def test_hostile_export_files_get_a_clear_error(tmp_path: Path) -> None:
    """Offline: no database, no Temporal (the fast tier)."""
    good = json.loads(check_row_text())
    cases: dict[str, tuple[bytes, str]] = {
        "not json": (b"this is not json\n", "line 1: not JSON"),
        "huge line": (b"{" + b" " * (MAX_LINE_BYTES + 10) + b"}\n" + b"{}\n", "line 1: longer than"),
        "wrong type": (json.dumps({**good, "seq": "12"}).encode(), "line 1: not an audit row: seq"),
        "bad hash": (json.dumps({**good, "row_hash": "nope"}).encode(), "row_hash"),
        "missing field": (json.dumps({k: v for k, v in good.items() if k != "key"}).encode(), "key"),
        "a list": (b"[1, 2, 3]\n", "not an audit row"),
        "deep nesting": (b"[" * 100000 + b"]" * 100000, "line 1: not"),
        "not utf-8": (b"\xff\xfe\xfa\n", "not UTF-8"),
        "huge integer": (b'{"seq": 1' + b"0" * 5000 + b"}", "line 1: not"),
        "bulk without document": (b'{"index": {"_id": "1"}}\n', "without its document"),
    }
    for name, (content, words) in cases.items():
        path = tmp_path / "hostile"
        path.write_bytes(content)
        line = error_line(offline("audit", "verify", "--file", str(path)))
        assert words in line, (name, line)
    empty = tmp_path / "empty"
    empty.write_text("\n\n")
    assert "no audit rows" in error_line(offline("audit", "verify", "--file", str(empty)))
    assert "cannot read" in error_line(offline("audit", "verify", "--file", str(tmp_path / "absent")))
    assert "not both" in error_line(offline("audit", "verify", "agent-1", "--file", str(empty)), 2)
    assert "--file" in error_line(offline("audit", "verify", "--partial"), 2)


def check_row_text() -> str:
    """A well-formed document (its hashes need not hold: the tests using it fail earlier)."""
    return json.dumps(
        {
            "seq": 1,
            "agent_id": "a",
            "action_id": None,
            "step": "decision",
            "key": "k",
            "actor": "",
            "occurred_at": "2026-05-01T00:00:00+00:00",
            "recorded_at": "2026-05-01T00:00:00+00:00",
            "prev_hash": "0" * 64,
            "row_hash": "1" * 64,
            "detail_text": "{}",
            "detail": {},
        }
    )


class Follower:
    """``aiops audit export --follow`` as a real process (signals, a position file, a restart)."""

    def __init__(self, cli_env: dict[str, str | None], tmp_path: Path, agent: str) -> None:
        self.env = {
            k: v for k, v in {**os.environ, **cli_env, "PYTHONPATH": str(ROOT)}.items() if v is not None
        }
        self.out, self.position = tmp_path / "follow.ndjson", tmp_path / "position.json"
        self.agent = agent
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "aiops.cli", "audit", "export", "--follow", "--interval", "0.2",
            "--agent", self.agent, "--position-file", str(self.position), "-O", str(self.out),
            "--batch", "3", env=self.env, cwd=ROOT, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip

    async def stop(self) -> str:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(self.proc.communicate(), 60)
        assert self.proc.returncode == 0, err.decode()
        return err.decode()

    def keys(self) -> list[str]:
        if not self.out.exists():
            return []
        return [json.loads(line)["key"] for line in self.out.read_text().splitlines()]

    async def has(self, n: int) -> list[str]:
        return await eventually(lambda: asyncio.sleep(0, self.keys()), lambda keys: len(keys) >= n, within=60)


@pytest.mark.slow
async def test_follow_picks_up_new_rows_survives_a_database_restart_and_resumes(
    cli_env: dict[str, str | None], tmp_path: Path
) -> None:
    server = PostgresServer()  # its own, to restart it under the exporter
    await asyncio.to_thread(server.start)
    pool = await open_pool(server.url)
    try:
        agent = f"exp-{uuid.uuid4().hex[:8]}"
        await AuditLog(pool).append(records(agent, 4))
        follower = Follower({**cli_env, "DATABASE_URL": server.url}, tmp_path, agent)
        await follower.start()
        await follower.has(4)
        await AuditLog(pool).append(records(agent, 3, first=4))  # written after it started
        await follower.has(7)

        await pool.close()
        await asyncio.to_thread(server.stop)
        await asyncio.to_thread(server.start)
        pool = await open_pool(server.url)
        await AuditLog(pool).append(records(agent, 2, first=7))
        await follower.has(9)
        stderr = await follower.stop()
        # Rows 7-8 were written only after the restart, so has(9) proves it survived; whether it
        # also saw the database gone depends on whether a poll fell inside the outage.
        assert "exported 9 rows" in stderr, stderr
        saved = json.loads(follower.position.read_text())
        assert saved["agents"][agent] == json.loads(follower.out.read_text().splitlines()[-1])["seq"]

        await AuditLog(pool).append(records(agent, 5, first=9))  # while it is stopped
        await follower.start()
        await follower.has(14)
        await AuditLog(pool).append(records(agent, 1, first=14))
        await follower.has(15)
        await follower.stop()
        assert follower.keys() == [f"{agent}:{i}" for i in range(15)]  # no duplicate, no gap
        assert check(follower.out.read_text()).ok
    finally:
        await pool.close()
        await asyncio.to_thread(server.close)


def synthetic_chain(agent: str, n: int, seqs: Any) -> list[str]:
    """``n`` documents of one agent's chain, hashed as the database does (no database needed)."""
    docs, prev = [], GENESIS
    for i in range(n):
        at = datetime(2026, 5, 1, tzinfo=UTC) + timedelta(seconds=i)
        text = json.dumps({"i": i})
        row_hash = chain_hash(prev, agent, None, "decision", f"{agent}:{i}", "bot", text, at)
        row = ChainRow(
            seq=next(seqs), agent_id=agent, action_id=None, step="decision", key=f"{agent}:{i}",
            actor="bot", detail={"i": i}, detail_text=text, occurred_at=at, recorded_at=at,
            prev_hash=prev, row_hash=row_hash,
        )  # fmt: skip
        docs.append(document(row))
        prev = row_hash
    return docs


def test_a_partial_chain_verifies_what_it_can_and_says_what_it_cannot(tmp_path: Path) -> None:
    seqs = iter(range(1, 100))
    a = synthetic_chain("a", 6, seqs)
    b = synthetic_chain("b", 3, seqs)
    whole = check("\n".join(a[:3] + b + a[3:]))
    assert whole.ok and [(c.agent_id, c.rows, c.links_checked) for c in whole.agents] == [
        ("a", 6, 5),
        ("b", 3, 2),
    ]

    filtered = "\n".join([a[1], a[2], b[0], a[4], a[5]])  # a's rows 0 and 3 were not exported
    strict = check(filtered)
    assert (
        not strict.ok
        and "does not start its chain" in strict.problems[0]
        and "--partial" in strict.problems[0]
    )
    partial = check(filtered, partial=True)
    assert partial.ok, partial.problems
    chain_a = partial.agents[0]
    assert (chain_a.starts_at_genesis, chain_a.links_checked, chain_a.gaps) == (False, 2, [5])
    assert (chain_a.first_seq, chain_a.last_seq) == (2, 6)

    # a row altered in a partial export is still caught: its own hash is always checked
    altered = json.loads(a[4])
    altered["actor"] = "mallory"
    report = check("\n".join([a[1], a[2], json.dumps(altered), a[5]]), partial=True)
    assert not report.ok and "line 3 (agent a, seq 5): altered" in report.problems[0]
    # and so are rows out of order
    report = check("\n".join([a[2], a[1]]), partial=True)
    assert not report.ok and "(agent a, seq 2): out of order" in report.problems[0]

    for args, words in ((["--partial"], "UNCHECKED"), ([], "does not start its chain")):
        path = tmp_path / "partial.ndjson"
        path.write_text(filtered)
        result = offline("audit", "verify", "--file", str(path), *args)
        assert words in result.stdout + result.stderr, result.stdout + result.stderr


def test_detail_must_be_exactly_the_hashed_text() -> None:
    seqs = iter(range(1, 10))
    [line] = synthetic_chain("a", 1, seqs)
    doc = json.loads(line)
    assert check(json.dumps(doc)).ok
    for detail in ({"i": True}, {"i": 0.0}, {"i": "0"}, {"i": 0, "x": None}, [0]):
        report = check(json.dumps({**doc, "detail": detail}))
        assert "line 1 (agent a, seq 1): altered: detail differs" in report.problems[0], detail
    deep = {**doc, "detail_text": "[" * 100000 + "]" * 100000}
    assert "altered" in check(json.dumps(deep)).problems[0]
