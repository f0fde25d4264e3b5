"""The audit activity: workflows hand it batches of steps; each lands exactly once.

Workflows retry it without limit, so a PostgreSQL outage delays the rows and
never loses them. A worker started without a database logs the steps instead
(``--no-database``, for local experiments only).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from temporalio import activity

from activities.database.audit_log import AuditLog
from aiops.contracts.activities import AuditBatch

log = logging.getLogger("aiops.audit")


class AuditActivities:
    def __init__(self, audit: AuditLog | None) -> None:
        self.audit = audit

    @activity.defn
    async def record_audit(self, batch: AuditBatch) -> int:
        if self.audit is None:
            for r in batch.records:
                log.debug("audit (no database) %s %s %s", r.agent_id, r.step.value, r.key)
            return 0
        info = activity.info()
        if info.attempt > 1:
            log.info("writing %d audit record(s), attempt %d", len(batch.records), info.attempt)
        return await self.audit.append(batch.records)

    def all(self) -> list[Callable[..., Any]]:
        return [self.record_audit]
