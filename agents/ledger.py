"""The action ledger: effectively-once execution of an action whose hook runs at least once.

Temporal runs ``_execute_action_specific`` at least once: after a timeout or a worker killed
mid-way, another attempt (maybe on another worker sharing the state directory) runs it again with
the same ``action.id``. The ledger is the durable record that makes the second attempt safe. Per
action key it keeps:

- the **intent**: what the attempt is about to do, written *before* the side effect, so a retry
  knows the change may be under way (or done) even though no result was written;
- the **steps** done so far (a file deleted, a call made), so a retry resumes instead of redoing;
- the **result**, written last: a retry that finds it returns it and does nothing else.

Use::

    ledger = ActionLedger(settings.state_dir)
    async with ledger.entry(action) as entry:
        if (done := entry.done_result()) is not None:
            return done                      # finished before: the same answer, no side effect
        if entry.intent is None:
            entry.intend({"pid_before": pid})  # then act
        else:
            ...                              # a crashed attempt: resume from entry.steps
        entry.step("deleted", {"path": path})
        return entry.finish(result)

Durability: the record (intent and result) is rewritten whole through a temporary file, ``fsync``
and ``os.replace``, then the directory is synced, so a crash leaves the old record or the new one.
Steps are appended one JSON line at a time and synced; a line torn by a crash is ignored when read
(the step it described is re-checked by the agent), which keeps a thousand steps linear in cost.
Keys are hashed into file names, so any key (path separators, NUL, thousands of characters) is
safe; the key itself is stored in the record. ``entry()`` holds an exclusive ``flock`` on the key
for its duration, so two attempts of one action on hosts sharing the directory never interleave;
the kernel releases it when a worker dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import IO, Any

from pydantic import BaseModel, ConfigDict, Field

from aiops.contracts.errors import NonRetryableActionError
from aiops.contracts.models import ActionResult, AgentAction


class LedgerStep(BaseModel):
    """One step an attempt finished: its name and what the agent needs to know about it later."""

    model_config = ConfigDict(frozen=True)

    name: str
    data: dict[str, Any] = Field(default_factory=dict)
    at: float


class LedgerRecord(BaseModel):
    """What the ledger knows of one action key, apart from its steps."""

    key: str
    intent: dict[str, Any] | None = None
    intended_at: float | None = None
    result: ActionResult | None = None
    finished_at: float | None = None


def ledger_key(action: AgentAction | str) -> str:
    """The idempotency key of an action (the framework sets ``idempotency_key`` to ``action.id``)."""
    if isinstance(action, str):
        return action
    return action.idempotency_key or action.id


class LedgerEntry:
    """The ledger's view of one action key. Reading methods re-read the files, so an entry sees
    what an earlier (crashed) attempt wrote; writing methods are durable when they return. They
    block on ``fsync``: from a hook that records many steps, call them in a thread."""

    def __init__(self, folder: Path, key: str) -> None:
        self.key = key
        self.name = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
        """The key's file name stem in the ledger folder."""
        self._folder = folder
        self._record_path = folder / f"{self.name}.json"
        self._steps_path = folder / f"{self.name}.steps.jsonl"

    # ----- reading ---------------------------------------------------------------------------------

    def record(self) -> LedgerRecord:
        try:
            record = LedgerRecord.model_validate_json(self._record_path.read_bytes())
        except FileNotFoundError:
            return LedgerRecord(key=self.key)
        if record.key != self.key:  # a sha-256 collision: refuse rather than mix two actions
            raise NonRetryableActionError(f"ledger file {self._record_path} belongs to another key")
        return record

    def done_result(self) -> ActionResult | None:
        """The recorded final result, or None if no attempt finished."""
        return self.record().result

    @property
    def intent(self) -> dict[str, Any] | None:
        """What an attempt declared it was about to do, or None if none got that far."""
        return self.record().intent

    @property
    def steps(self) -> list[LedgerStep]:
        """The steps recorded so far, oldest first (a line torn by a crash is left out)."""
        try:
            lines = self._steps_path.read_text().splitlines()
        except FileNotFoundError:
            return []
        steps = []
        for line in lines:
            if not line.strip():
                continue
            try:
                steps.append(LedgerStep.model_validate_json(line))
            except ValueError:
                continue
        return steps

    # ----- writing ---------------------------------------------------------------------------------

    def intend(self, payload: dict[str, Any]) -> None:
        """Record what is about to be done, before doing it (replaces an earlier intent)."""
        record = self.record()
        self._write(record.model_copy(update={"intent": payload, "intended_at": time.time()}))

    def step(self, name: str, data: dict[str, Any] | None = None) -> None:
        """Record that a step is done."""
        line = LedgerStep(name=name, data=data or {}, at=time.time()).model_dump_json()
        self._folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        with self._steps_path.open("a") as f:
            f.write("\n" + line + "\n")  # the leading newline ends a line a crash may have torn
            f.flush()
            os.fsync(f.fileno())

    def finish(self, result: ActionResult) -> ActionResult:
        """Record the final result (later attempts return it) and return it."""
        record = self.record()
        self._write(record.model_copy(update={"result": result, "finished_at": time.time()}))
        return result

    def _write(self, record: LedgerRecord) -> None:
        self._folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        partial = self._record_path.with_name(f".{self._record_path.name}.{uuid.uuid4().hex}.tmp")
        try:
            with partial.open("w") as f:
                f.write(record.model_dump_json())
                f.flush()
                os.fsync(f.fileno())
            os.replace(partial, self._record_path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                partial.unlink()
        _fsync_dir(self._folder)


class ActionLedger:
    """Per-action records in ``state_dir`` (created on first write, mode 0700)."""

    def __init__(self, state_dir: str | os.PathLike[str]) -> None:
        self.folder = Path(state_dir)

    def lookup(self, action: AgentAction | str) -> LedgerEntry:
        """The entry of ``action`` without taking its lock: for verify, rollback and tests, which
        read what an execution recorded."""
        return LedgerEntry(self.folder, ledger_key(action))

    @contextlib.contextmanager
    def entry_sync(self, action: AgentAction | str) -> Iterator[LedgerEntry]:
        """``entry`` for code already running in a thread."""
        entry = self.lookup(action)
        lock = self._lock(entry)
        try:
            yield entry
        finally:
            lock.close()  # closing the descriptor releases the flock

    @contextlib.asynccontextmanager
    async def entry(self, action: AgentAction | str) -> AsyncIterator[LedgerEntry]:
        """The entry of ``action``, held exclusively (another attempt of it waits) until the block
        ends; the lock is taken in a thread so that waiting does not block the event loop."""
        entry = self.lookup(action)
        lock = await asyncio.to_thread(self._lock, entry)
        try:
            yield entry
        finally:
            lock.close()

    def _lock(self, entry: LedgerEntry) -> IO[str]:
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        lock = (self.folder / f"{entry.name}.lock").open("a")
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        except BaseException:
            lock.close()
            raise
        return lock


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
