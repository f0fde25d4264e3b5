"""Structured logs: one JSON object per line, with the ids that correlate them.

Every line carries, where they apply, the workflow id and run id (from the
SDK's workflow and activity loggers, or the running activity), the agent,
action and event ids (from ``extra=`` or read off the workflow id), and the
trace and span ids of the current OpenTelemetry span. Workflow code logs
through ``workflow.logger``, which stays silent during replay, so a replayed
step never logs twice. ``AIOPS_LOG_FORMAT`` (json | text) and
``AIOPS_LOG_LEVEL`` choose the format and level.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import Any

from opentelemetry import trace
from temporalio import activity

FORMAT_ENV = "AIOPS_LOG_FORMAT"
LEVEL_ENV = "AIOPS_LOG_LEVEL"
CORRELATION_FIELDS = ("agent_id", "action_id", "event_id", "correlation_id")
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


def ids_from_workflow_id(workflow_id: str) -> dict[str, str]:
    """``agent-<id>`` names an agent; ``action-<agent>:<event>`` an action, its agent and event."""
    if workflow_id.startswith("agent-"):
        return {"agent_id": workflow_id.removeprefix("agent-")}
    if workflow_id.startswith("action-") and ":" in workflow_id:
        agent, _, event = workflow_id.removeprefix("action-").partition(":")
        return {"action_id": workflow_id, "agent_id": agent, "event_id": event}
    return {}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        temporal = getattr(record, "temporal_workflow", None) or getattr(record, "temporal_activity", None)
        if isinstance(temporal, dict):
            line["workflow_id"] = temporal.get("workflow_id")
            line["run_id"] = temporal.get("run_id") or temporal.get("workflow_run_id")
            for key in ("workflow_type", "activity_type", "activity_id", "attempt", "update_name"):
                if temporal.get(key) is not None:
                    line[key] = temporal[key]
        elif activity.in_activity():
            info = activity.info()
            line.update(
                workflow_id=info.workflow_id,
                run_id=info.workflow_run_id,
                activity_type=info.activity_type,
                attempt=info.attempt,
            )
        if line.get("workflow_id"):
            for key, value in ids_from_workflow_id(str(line["workflow_id"])).items():
                line.setdefault(key, value)
        for key, value in record.__dict__.items():
            if key in CORRELATION_FIELDS or (key not in _STANDARD and not key.startswith("temporal_")):
                if value is not None:
                    line[key] = value if isinstance(value, str | int | float | bool) else str(value)
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            line["trace_id"] = format(span.trace_id, "032x")
            line["span_id"] = format(span.span_id, "016x")
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure_logging(level: str | None = None, fmt: str | None = None) -> None:
    """Root logging from arguments, else ``AIOPS_LOG_LEVEL`` / ``AIOPS_LOG_FORMAT`` (default json)."""
    chosen_level = (level or os.environ.get(LEVEL_ENV) or "INFO").upper()
    chosen_format = (fmt or os.environ.get(FORMAT_ENV) or "json").lower()
    handler = logging.StreamHandler(sys.stderr)
    if chosen_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(chosen_level)
