"""The agent's event intake: admission, the bounded queue, batching, and poison-event bisection.

Pure and deterministic: no Temporal calls, ``now`` is passed in, so the unit
tests drive it directly. ``EventIntake`` works on the ``AgentRunState`` it is
given (the queue, dedup window and attempt counts live there and are carried
across continue-as-new); what it keeps itself (sizes, the current batch limit,
consecutive failures) is rebuilt from that state in every run. The workflow
does the side effects an answer asks for: audit rows, metrics, starting
actions, sleeping before a retry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import TypeAdapter, ValidationError

from aiops.contracts.activities import MAX_DECIDE_ATTEMPTS, EventDecision, attempts_after
from aiops.contracts.agent import AgentRunState
from aiops.contracts.errors import AiopsError, describe_validation_error
from aiops.contracts.limits import MAX_EVENT_BYTES
from aiops.contracts.models import Severity, SystemEvent
from workflows.agent.incidents import IncidentBook, correlation_of

# The queue is carried through continue-as-new, whose input the server caps at 2 MiB.
MAX_QUEUE_BYTES = 1_000_000
MAX_DECIDE_BACKOFF_SECONDS = 60
# The queue's order: critical first, then high, medium, low, info; first come first within each.
SEVERITY_ORDER = (Severity.CRITICAL, Severity.HIGH, Severity.MEDIUM, Severity.LOW, Severity.INFO)
RANK = {severity: rank for rank, severity in enumerate(SEVERITY_ORDER)}


class Admission(StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    GROUPED = "grouped"  # joined an open incident (see incidents.py) instead of the queue


class EventRejected(AiopsError):
    """A payload that is not a usable event, or one the queue cannot take; the message says why."""


class QueueFull(EventRejected):
    """A usable event the queue has no room for now (``event``): a signal's is spilled, not lost."""

    def __init__(self, message: str, event: SystemEvent, payload: Any = None) -> None:
        super().__init__(message)
        self.event = event
        self._payload = payload

    def as_json(self) -> dict[str, Any]:
        """The event as plain data to spill: the payload it was read from when that was already
        plain data (a storm's signals: dumping each anew cost a third of a full queue's intake)."""
        if isinstance(self._payload, dict):
            return self._payload
        return self.event.model_dump(mode="json")


def parse_event(payload: Any, now: datetime) -> SystemEvent:
    """Turn a signal payload into an event, or raise ``EventRejected`` saying why.

    A missing timestamp becomes the workflow's ``now`` (never the wall clock), and
    a missing id is an error: without an id an event cannot be deduplicated.
    """
    if isinstance(payload, SystemEvent):
        return payload
    if not isinstance(payload, dict):
        raise EventRejected(f"event must be a JSON object, got {type(payload).__name__}")
    if "id" not in payload:
        raise EventRejected("id: field required (every event needs an id for deduplication)")
    if "timestamp" not in payload:
        payload = {**payload, "timestamp": now}
    try:
        return SystemEvent.model_validate(payload)
    except ValidationError as err:
        raise EventRejected(describe_validation_error(err)) from None


_TO_JSON = SystemEvent.__pydantic_serializer__.to_json


_EVENTS = TypeAdapter(list[SystemEvent])


def parse_all(payloads: list[Any], now: datetime) -> list[SystemEvent] | None:
    """``parse_event`` of each payload, in one validation: ``None`` unless every one is an event
    (then each is read alone, for its own answer). One call for a batch costs a third less than
    one per event, the largest part of taking an event."""
    if not all(isinstance(p, dict) and "id" in p for p in payloads):
        return None
    try:
        return _EVENTS.validate_python([p if "timestamp" in p else {**p, "timestamp": now} for p in payloads])
    except ValidationError:
        return None


def event_size(event: SystemEvent) -> int:
    """``len(event.model_dump_json())``, the size every bound counts in (characters of its JSON)."""
    return _measured(event)[0]


def _measured(event: SystemEvent) -> tuple[int, bytes]:
    """The event's size (see ``event_size``) and its JSON: pydantic's bytes are measured as they are
    when they are ASCII (one byte a character), decoded only when not. Every event is measured on
    intake; its JSON is kept while it is queued, for its decision's input (``json_of``)."""
    data = _TO_JSON(event)
    return (len(data) if data.isascii() else len(data.decode())), data


def events_of(payload: Any) -> list[Any]:
    """The items of a ``submit_events`` payload (a list, or ``{"events": [...]}``)."""
    items = payload.get("events") if isinstance(payload, dict) else payload
    if not isinstance(items, list):
        raise EventRejected('submit_events needs a JSON list of events or {"events": [...]}')
    return items


@dataclass
class Taken:
    """What admission did with one payload: its event, and the incident it joined if grouped."""

    admission: Admission
    event: SystemEvent
    incident: str | None = None


@dataclass
class Settlement:
    """What one decided batch came to, in the order the workflow must act on it."""

    filtered: list[SystemEvent]
    audited: list[tuple[SystemEvent, EventDecision]] = field(default_factory=list)
    proposals: list[tuple[SystemEvent, EventDecision]] = field(default_factory=list)
    notes: list[tuple[str, str]] = field(default_factory=list)  # (message, event id)
    processed: int = 0
    retry_after_seconds: int | None = None


@dataclass
class BatchFailure:
    """What a failed decision step came to: a culprit given up on, or a smaller batch after a pause."""

    note: str
    gave_up: SystemEvent | None = None
    gave_up_note: str = ""
    retry_after_seconds: int = 0


class EventIntake:
    def __init__(self, state: AgentRunState) -> None:
        self._s = state
        # A queue carried from a run that kept arrival order is put in severity order (stable).
        state.queue.sort(key=lambda e: RANK[e.severity])
        self._ranked = [0] * len(SEVERITY_ORDER)  # events queued per severity: see _queue
        for e in state.queue:
            self._ranked[RANK[e.severity]] += 1
        self._seen: set[str] = set(state.seen_event_ids)
        self._sizes: dict[str, int] = {}
        # Each queued event's JSON, by the event object's identity (it holds the event, so the
        # identity is not reused while the entry lives): see ``json_of``. Dropped with the event.
        self._json: dict[int, tuple[SystemEvent, bytes]] = {}
        for e in state.queue:
            size, data = _measured(e)
            self._sizes[e.id] = size
            self._json[id(e)] = (e, data)
        self.queue_bytes = sum(self._sizes.values())
        self.batch_limit = state.config.runtime.batch_size
        self._failures = 0  # decision steps failed in a row
        self.incidents = IncidentBook(state.incidents, state.incidents_opened)
        # Events a graver one moved out of the full queue, as plain data: the workflow spills them.
        self.displaced: list[dict[str, Any]] = []

    # ----- admission --------------------------------------------------------

    def take(self, payload: Any, now: datetime) -> Taken:
        """Queue one event payload; raises ``EventRejected`` with the reason when it cannot."""
        event = parse_event(payload, now)
        size, data = _measured(event)
        s = self._s
        if size > MAX_EVENT_BYTES:
            raise EventRejected(
                f"event {event.id} is {size} bytes, over the {MAX_EVENT_BYTES}-byte limit; "
                "keep large payloads elsewhere and send a reference in data"
            )
        if not self._room_for(event, size):
            raise self._full(event, payload, now)
        s.counters.events_received += 1
        if s.last_event_at != now:  # one message's events share their ``now``: set once
            s.last_event_at = now
        if event.id in self._seen:
            s.counters.events_deduplicated += 1
            return Taken(Admission.DUPLICATE, event)
        self._remember(event.id)
        window = s.config.runtime.incident_window_seconds
        key = correlation_of(event, s.config.runtime) if window is not None else None
        if key is not None and window is not None and self.incidents.add(key, event, now, window):
            s.incidents_opened = self.incidents.opened
            return Taken(Admission.GROUPED, event, key)
        self._queue(event, size, data)
        return Taken(Admission.ACCEPTED, event)

    def _room_for(self, event: SystemEvent, size: int) -> bool:
        """Whether the queue takes ``event`` now. A full queue makes room for a graver event: the
        newest of its least grave events leave it for the overflow (``displaced``), forgotten by
        the dedup window and not counted received, so their hand-back takes them as new."""
        s = self._s
        max_queue = s.config.runtime.max_queue
        if len(s.queue) < max_queue and self.queue_bytes + size <= MAX_QUEUE_BYTES:
            return True  # the common case, without the closure below
        rank = RANK[event.severity]

        def full() -> bool:
            return len(s.queue) >= s.config.runtime.max_queue or self.queue_bytes + size > MAX_QUEUE_BYTES

        while full() and s.queue and RANK[s.queue[-1].severity] > rank:
            last = s.queue.pop()
            self._ranked[RANK[last.severity]] -= 1
            self._forget([last])
            self._seen.discard(last.id)
            if last.id in s.seen_event_ids:  # not if the window forgot it already
                s.seen_event_ids.remove(last.id)
            s.counters.events_received -= 1
            self.displaced.append(last.model_dump(mode="json"))
        return not full()

    def takes_graver(self, payloads: list[Any]) -> bool:
        """Whether a full queue would make room for all of ``payloads`` (see ``_room_for``): each
        graver than as many queued events. Read from their ``severity`` alone (the intake
        validator's question; what is no event is refused when taken)."""
        least_grave = 0
        for payload in payloads:
            severity = payload.get("severity", Severity.MEDIUM) if isinstance(payload, dict) else None
            rank = RANK.get(severity) if isinstance(severity, str) else None  # type: ignore[call-overload]
            if rank is None:
                return False
            least_grave = max(least_grave, rank)
        return bool(payloads) and sum(self._ranked[least_grave + 1 :]) >= len(payloads)

    def spill_as_is(self, payload: Any, size: int, now: datetime) -> dict[str, Any] | None:
        """A signalled event to keep as it came, when the queue is full by count: a dict with an
        id, no larger than an event may be (``size``: its bytes as sent). ``None``: admit it
        the usual way.

        A storm's signals mostly find the queue full; reading each into an event only to spill it
        was half of the workflow task's time per signal. Its hand-back through ``intake``
        reads it then, and refuses it (counted, audited) if it is no event; a sender learns
        nothing later than before, a signal has no answer.
        """
        s = self._s
        if (
            len(s.queue) < s.config.runtime.max_queue
            or not isinstance(payload, dict)
            or not isinstance(payload.get("id"), str)
            or size > MAX_EVENT_BYTES
            or self.takes_graver([payload])  # it may take a less grave event's place
        ):
            return None
        return payload if "timestamp" in payload else {**payload, "timestamp": now.isoformat()}

    def _full(self, event: SystemEvent, payload: Any, now: datetime) -> QueueFull:
        s = self._s
        if isinstance(payload, dict) and "timestamp" not in payload:
            payload = {**payload, "timestamp": now.isoformat()}  # the time it reached the agent
        return QueueFull(
            f"event {event.id}: the queue is full ({len(s.queue)} events, {self.queue_bytes} bytes "
            f"waiting; the agent is {s.state.value}); resend it later",
            event,
            payload,
        )

    def _queue(self, event: SystemEvent, size: int, data: bytes | None = None) -> None:
        """Queue ``event`` after every event of its severity or a graver one: the queue stays in
        severity order, so a critical event is decided next whatever waits before it. The
        position comes from the counts per severity, no scan; in a storm of one severity it is
        the end (an append)."""
        rank = RANK[event.severity]
        self._ranked[rank] += 1
        self._s.queue.insert(sum(self._ranked[: rank + 1]) - 1, event)
        self._sizes[event.id] = size
        self._json[id(event)] = (event, data if data is not None else _TO_JSON(event))
        self.queue_bytes += size

    def _take_off(self, events: list[SystemEvent]) -> None:
        """Remove ``events`` (taken from the queue's head) from the queue. Events queued since
        may stand before them (a graver one that came in while they were decided), so they are
        found by identity from the head, not cut off it."""
        wanted = {id(e) for e in events}
        queue, kept, i = self._s.queue, [], 0
        while wanted and i < len(queue):
            if id(queue[i]) in wanted:
                wanted.discard(id(queue[i]))
                self._ranked[RANK[queue[i].severity]] -= 1
            else:
                kept.append(queue[i])
            i += 1
        queue[:i] = kept

    def release_incidents(self, now: datetime, all_now: bool = False) -> list[SystemEvent]:
        """Queue the incidents whose window has passed (``all_now``: every undecided one, as when
        the agent stops), one event each; close the resolved ones."""
        due = self.incidents.due(now, all_now)
        for event in due:  # bounded in size by the alerts an incident keeps
            self._queue(event, event_size(event))
        self.incidents.close_resolved()
        return due

    def _remember(self, event_id: str) -> None:
        """Add ``event_id`` to the bounded dedup window (oldest forgotten first)."""
        s = self._s
        s.seen_event_ids.append(event_id)
        self._seen.add(event_id)
        excess = len(s.seen_event_ids) - s.config.runtime.dedup_window
        if excess > 0:
            for old in s.seen_event_ids[:excess]:
                self._seen.discard(old)
            del s.seen_event_ids[:excess]

    # ----- batching ---------------------------------------------------------

    def next_batch(self) -> tuple[list[SystemEvent], list[SystemEvent]]:
        """The next batch off the head of the queue: (subscribed events, filtered ones).

        Filtering happens here, not at admission, because events may arrive before
        initialization has told the workflow which types the agent subscribes to.
        """
        s = self._s
        batch = s.queue[: max(1, min(self.batch_limit, s.config.runtime.batch_size))]
        wanted = set(s.subscribed_event_types)
        return [e for e in batch if e.type in wanted], [e for e in batch if e.type not in wanted]

    def settle(
        self,
        batch: list[SystemEvent],
        filtered: list[SystemEvent],
        decisions: list[EventDecision],
        quiet_rest: bool = False,
        rows: bool = True,
    ) -> Settlement:
        """Take a decided batch off the queue; transient errors go back to its end for a retry.

        ``quiet_rest``: ``decisions`` is a compact answer (``DecideEventsResult.compact``), every
        event of ``batch`` it does not name was decided to need nothing. Those are settled without
        a decision object each unless ``rows`` (the workflow writes the batch's audit rows, from
        ``audited``): building one per quiet event was a tenth of a batch's settling in a storm."""
        s = self._s
        self._failures = 0
        self.batch_limit = s.config.runtime.batch_size
        self._take_off([*batch, *filtered])
        self._forget([*batch, *filtered])
        if filtered:
            s.counters.events_filtered += len(filtered)
        out = Settlement(filtered=filtered)
        attempts_by_id = s.decide_attempts
        retry: list[SystemEvent] = []
        processed = errors = 0
        if quiet_rest:
            said = {d.event_id: d for d in decisions}
            pairs: list[tuple[SystemEvent, EventDecision | None]] = [(e, said.get(e.id)) for e in batch]
        else:
            by_id = {e.id: e for e in batch}
            pairs = [(by_id[d.event_id], d) for d in decisions if d.event_id in by_id]
        for event, decision in pairs:
            if decision is None:  # decided quietly (a compact answer leaves it out)
                if attempts_by_id:
                    attempts_by_id.pop(event.id, None)
                processed += 1
                if rows:
                    out.audited.append((event, EventDecision.model_construct(event_id=event.id)))
                continue
            out.audited.append((event, decision))
            if decision.error is not None:
                attempts = attempts_after(attempts_by_id.get(event.id, 0), decision)
                if attempts:
                    attempts_by_id[event.id] = attempts
                    retry.append(event)
                    out.notes.append((f"{decision.error} (attempt {attempts}; will retry)", event.id))
                    continue
                attempts_by_id.pop(event.id, None)
                processed += 1
                errors += 1
                out.notes.append((decision.error, event.id))
                continue
            attempts_by_id.pop(event.id, None)
            processed += 1
            if decision.action is not None:
                out.proposals.append((event, decision))
        # Counted once per batch, not once per event (pydantic's __setattr__ is not free).
        out.processed = processed
        if processed:
            s.counters.events_processed += processed
        if errors:
            s.counters.decision_errors += errors
        if retry:
            for e in retry:
                self._queue(e, event_size(e))
            out.retry_after_seconds = 2 ** max(attempts_by_id[e.id] for e in retry)
        return out

    def batch_failed(self, batch: list[SystemEvent], reason: str) -> BatchFailure:
        """The decision step itself failed: halve the batch until the culprit stands alone.

        Events stay queued; a lone event that keeps failing is given up on (counted as
        a decision error and dropped), so one poison event cannot stall the agent.
        """
        s = self._s
        self._failures += 1
        failure = BatchFailure(note=f"deciding {len(batch)} event(s) failed: {reason}")
        if len(batch) == 1:
            event = batch[0]
            attempts = s.decide_attempts.get(event.id, 0) + 1
            s.decide_attempts[event.id] = attempts
            if attempts >= MAX_DECIDE_ATTEMPTS:
                self._take_off([event])
                self._forget([event])
                s.decide_attempts.pop(event.id, None)
                s.counters.events_processed += 1
                s.counters.decision_errors += 1
                failure.gave_up = event
                failure.gave_up_note = f"gave up on event after {attempts} failed decisions: {reason}"
                return failure
        self.batch_limit = max(1, len(batch) // 2)
        failure.retry_after_seconds = min(2**self._failures, MAX_DECIDE_BACKOFF_SECONDS)
        return failure

    def config_switched(self) -> None:
        self.batch_limit = self._s.config.runtime.batch_size

    def _forget(self, events: list[SystemEvent]) -> None:
        for e in events:
            self.queue_bytes -= self._sizes.pop(e.id, 0)
            self._json.pop(id(e), None)

    def json_of(self, events: list[SystemEvent]) -> list[bytes]:
        """The JSON of ``events`` (queued ones: as measured on intake, not serialized again)."""
        kept = self._json
        return [
            entry[1] if (entry := kept.get(id(e))) is not None and entry[0] is e else _TO_JSON(e)
            for e in events
        ]
