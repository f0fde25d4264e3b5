"""A workflow's audit outbox: steps queue here and reach the audit log in order.

One ``record_audit`` activity is in flight at a time, carrying everything
queued since the last one, so a storm of events costs a few activities, not
one per row. The activity retries without limit: during a PostgreSQL outage
the workflow carries on and the rows land when the database returns, once
each (the activity is idempotent by key). A workflow waits for ``drained``
before it continues as new or completes, so no queued row is ever dropped.

Two ways cost no activity at all: an agent's decision writes its own batch's rows
in its local activity (the outbox takes them only when that write failed), and
once a worker says it has no audit log (no database), rows are not queued, as
there is nowhere to write them.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.audit_activities import AuditActivities
    from aiops.contracts.activities import AuditBatch, AuditRecord
    from aiops.contracts.audit_rows import bounded_record

AUDIT_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=0,  # unlimited: an outage delays audit rows, it never loses them
)
MAX_RECORDS_PER_CALL = 500
# Well under the server's 2 MB payload limit, whatever the records hold.
MAX_BYTES_PER_CALL = 512 * 1024


class AuditOutbox:
    def __init__(self) -> None:
        self._queue: list[AuditRecord] = []
        self._in_flight = False  # a record_audit activity
        # False once a worker said it has no audit log (no database): rows then go nowhere, and
        # no activity is scheduled just to log them (see ``sink_available``).
        self._sink = True

    def add(self, record: AuditRecord) -> None:
        if not self._sink:
            return
        self._queue.append(bounded_record(record))
        self._start()

    def _start(self) -> None:
        if not self._in_flight and self._queue:
            self._in_flight = True
            asyncio.create_task(self._flush(), name="audit-outbox")  # noqa: RUF006 - tracked by _in_flight

    @property
    def has_sink(self) -> bool:
        return self._sink

    def sink_available(self, available: bool) -> None:
        """What the last worker said: whether it has an audit log to write to."""
        self._sink = available
        if not available:
            self._queue.clear()

    async def _flush(self) -> None:
        while self._queue:
            size, count = 0, 0
            for record in self._queue[:MAX_RECORDS_PER_CALL]:
                size += len(record.model_dump_json())
                if count and size > MAX_BYTES_PER_CALL:
                    break
                count += 1
            batch, self._queue = self._queue[:count], self._queue[count:]
            await workflow.execute_activity_method(
                AuditActivities.record_audit,
                AuditBatch(records=batch),
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=AUDIT_RETRY,
            )
        self._in_flight = False

    def is_drained(self) -> bool:
        return not self._queue and not self._in_flight

    async def drained(self) -> None:
        await workflow.wait_condition(self.is_drained)
