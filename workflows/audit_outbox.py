"""A workflow's audit outbox: steps queue here and reach the audit log in order.

One ``record_audit`` activity is in flight at a time, carrying everything
queued since the last one, so a storm of events costs a few activities, not
one per row. The activity retries without limit: during a PostgreSQL outage
the workflow carries on and the rows land when the database returns, once
each (the activity is idempotent by key). A workflow waits for ``drained``
before it continues as new or completes, so no queued row is ever dropped.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.audit_activities import AuditActivities
    from activities.contracts import AuditBatch, AuditRecord

# Steps recorded before this patch was deployed had no audit rows; replaying their
# histories must not schedule activities they never had.
AUDIT_PATCH = "audit-log-v1"
AUDIT_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=0,  # unlimited: an outage delays audit rows, it never loses them
)
MAX_RECORDS_PER_CALL = 500
# Well under the server's 2 MB payload limit, whatever the records hold.
MAX_BYTES_PER_CALL = 512 * 1024
# A single text in a row (an event source, a comment, an error) is cut to this many characters.
MAX_TEXT = 2000


def bounded(value: Any) -> Any:
    """``value`` with every string cut to ``MAX_TEXT`` characters, so no row can be huge."""
    if isinstance(value, str):
        return value if len(value) <= MAX_TEXT else value[:MAX_TEXT] + f"... ({len(value)} chars)"
    if isinstance(value, dict):
        return {k: bounded(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [bounded(v) for v in value]
    return value


class AuditOutbox:
    def __init__(self) -> None:
        # Asked once, in the workflow's first activation: a patch first asked later (say
        # right after a local activity) did not replay reliably.
        self._enabled = workflow.patched(AUDIT_PATCH)
        self._queue: list[AuditRecord] = []
        self._in_flight = False

    def add(self, record: AuditRecord) -> None:
        if not self._enabled:
            return
        record = record.model_copy(
            update={"detail": bounded(record.detail), "actor": bounded(record.actor), "key": record.key[:500]}
        )
        self._queue.append(record)
        if not self._in_flight:
            self._in_flight = True
            asyncio.create_task(self._flush(), name="audit-outbox")  # noqa: RUF006 - tracked by _in_flight

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
