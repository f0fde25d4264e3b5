"""Telling approvers: one HTTP delivery per channel and step of an action's approval wait.

The workflow schedules ``notify_approvers`` once per (action, step, channel) and Temporal retries
it with backoff, so a receiver that is down gets the notice when it is back; every attempt carries
the same key (``Idempotency-Key`` for webhooks; PagerDuty deduplicates by the action id), so a
retry after a lost answer is recognisable. A 4xx answer (but 429) means the request itself is
wrong (a revoked Slack URL, a bad routing key): retrying cannot help, so it fails at once.

Secret references (Slack URL, routing key, auth header) are resolved here, in the worker's memory;
the resolved values never go back to the workflow, not even inside an error message.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from agents.secrets import resolve_reference
from aiops.contracts.activities import ApprovalNotice, NoticeDelivery
from aiops.contracts.config import PAGERDUTY_EVENTS_URL, NotifyStep, NotifyType
from aiops.contracts.errors import SecretUnavailableError
from aiops.contracts.models import RiskLevel
from aiops.contracts.secret_refs import is_reference

log = logging.getLogger("aiops.notify")

UI_URL_ENV = "AIOPS_UI_URL"
DEFAULT_UI_URL = "http://localhost:8233"
HTTP_TIMEOUT_SECONDS = 10.0
USER_AGENT = "aiops-agents-notify/1"
NOTICE_REFUSED = "NoticeRefused"  # the receiver answered 4xx (not 429): retrying cannot help

_PAGERDUTY_SEVERITY = {
    RiskLevel.LOW: "info",
    RiskLevel.MEDIUM: "warning",
    RiskLevel.HIGH: "error",
    RiskLevel.CRITICAL: "critical",
}
_HEADLINES = {
    NotifyStep.PENDING: "Approval needed",
    NotifyStep.ESCALATED: "Escalated: approval still needed",
    NotifyStep.EXPIRED: "Expired without a decision",
    NotifyStep.RESOLVED: "Decided",
}


def evidence_link(ui_url: str, namespace: str, workflow_id: str) -> str:
    """The action in the Temporal Web UI: its plan, approvals and every step, as evidence."""
    namespace, workflow_id = quote(namespace, safe=""), quote(workflow_id, safe="")
    return f"{ui_url.rstrip('/')}/namespaces/{namespace}/workflows/{workflow_id}"


def _headline(notice: ApprovalNotice) -> str:
    return f"{_HEADLINES[notice.step]}: [{notice.risk.value}] {notice.summary}"


def webhook_body(notice: ApprovalNotice, link: str) -> dict[str, Any]:
    """The generic webhook's JSON: every fact of the notice, flat, for any receiver."""
    return {
        "kind": "aiops.approval_notice",
        "idempotency_key": notice.key,
        "step": notice.step.value,
        "headline": _headline(notice),
        "action_id": notice.action_id,
        "agent_id": notice.agent_id,
        "workflow_id": notice.workflow_id,
        "risk": notice.risk.value,
        "summary": notice.summary,
        "description": notice.description,
        "targets": notice.targets,
        "plan": {"summary": notice.plan_summary, "digest": notice.plan_digest},
        "approvals": notice.approvals,
        "required_approvals": notice.required_approvals,
        "allowed_roles": notice.allowed_roles,
        "deadline": notice.deadline.isoformat() if notice.deadline else None,
        "escalation_target": notice.escalation_target,
        "outcome": notice.outcome,
        "link": link,
        "console_link": notice.console_link or None,  # null: no approval.console_url configured
        "approve_command": notice.approve_command,
        "cli_command": notice.cli_command,
    }


def slack_body(notice: ApprovalNotice, link: str) -> dict[str, Any]:
    """Slack's incoming-webhook format: ``text`` (the notification line) and blocks with the
    facts an approver needs to decide, the evidence link and the exact command."""
    facts = [
        f"*Risk*: {notice.risk.value}",
        f"*Action*: `{notice.action_id}` (agent {notice.agent_id})",
        f"*Plan*: {notice.plan_summary or '-'}",
        f"*Plan digest*: `{notice.plan_digest or '-'}`",
        f"*Approvals*: {notice.approvals} of {notice.required_approvals}"
        + (f" (roles: {', '.join(notice.allowed_roles)})" if notice.allowed_roles else ""),
    ]
    if notice.deadline is not None and notice.step in (NotifyStep.PENDING, NotifyStep.ESCALATED):
        facts.append(f"*Decide before*: {notice.deadline.strftime('%Y-%m-%d %H:%M UTC')}")
    if notice.outcome:
        facts.append(f"*Outcome*: {notice.outcome}")
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _HEADLINES[notice.step][:150]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*{notice.summary}*"[:3000]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(facts)[:3000]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": _links(notice, link)}},
    ]
    if notice.step in (NotifyStep.PENDING, NotifyStep.ESCALATED):
        command = f"Approve with:\n```{notice.approve_command}```"
        if notice.cli_command:
            command += f"\nor: `{notice.cli_command}`"
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": command[:3000]}})
    return {"text": _headline(notice)[:3000], "blocks": blocks}


def pagerduty_body(notice: ApprovalNotice, routing_key: str, link: str) -> dict[str, Any]:
    """Events API v2: pending and escalated trigger an alert, expired and resolved resolve it;
    ``dedup_key`` is the action id, so every step of one action is one incident."""
    if notice.step in (NotifyStep.EXPIRED, NotifyStep.RESOLVED):
        return {"routing_key": routing_key, "event_action": "resolve", "dedup_key": notice.action_id}
    return {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": notice.action_id,
        "payload": {
            "summary": _headline(notice)[:1024],
            "source": notice.agent_id,
            "severity": _PAGERDUTY_SEVERITY[notice.risk],
            "component": ", ".join(notice.targets)[:255] or None,
            "custom_details": {
                "idempotency_key": notice.key,
                "step": notice.step.value,
                "plan": notice.plan_summary,
                "plan_digest": notice.plan_digest,
                "approvals": f"{notice.approvals} of {notice.required_approvals}",
                "deadline": notice.deadline.isoformat() if notice.deadline else None,
                "approve_command": notice.approve_command,
                "cli_command": notice.cli_command,
                "console_link": notice.console_link or None,
            },
        },
        "client": "aiops-agents",
        "client_url": link,
        "links": [
            *([{"href": notice.console_link, "text": console_text(notice)}] if notice.console_link else []),
            {"href": link, "text": "Evidence in the Temporal Web UI"},
        ],
    }


def _links(notice: ApprovalNotice, link: str) -> str:
    """Slack's link line: the console (where the approver decides) first, when there is one."""
    evidence = f"<{link}|Evidence in the Temporal Web UI>"
    if not notice.console_link:
        return evidence
    return f"<{notice.console_link}|{console_text(notice)}> \u00b7 {evidence}"


def console_text(notice: ApprovalNotice) -> str:
    waiting = notice.step in (NotifyStep.PENDING, NotifyStep.ESCALATED)
    return "Decide in the console" if waiting else "The action in the console"


class NotifyActivities:
    """The approval notices, on the main task queue (no agent code runs here)."""

    def __init__(self, ui_url: str | None = None, transport: httpx.AsyncBaseTransport | None = None) -> None:
        # The Web UI for evidence links when a channel names none: this worker's AIOPS_UI_URL.
        self.ui_url = ui_url or os.environ.get(UI_URL_ENV) or DEFAULT_UI_URL
        self._transport = transport

    @activity.defn
    async def notify_approvers(self, notice: ApprovalNotice) -> NoticeDelivery:
        """Deliver one notice to one channel; raise (retried by the workflow's policy) until it lands."""
        info = activity.info()
        channel = notice.channel
        secrets: list[str] = []

        def resolved(value: str, field: str) -> str:
            if not is_reference(value):
                return value
            try:
                secret = resolve_reference(value, f"approval.notify[{notice.channel_index}].{field}")
            except SecretUnavailableError as err:  # a config problem: fix the worker, not retry
                raise ApplicationError(str(err), type=type(err).__name__, non_retryable=True) from None
            secrets.append(secret)
            return secret

        link = evidence_link(channel.ui_url or self.ui_url, info.namespace, notice.workflow_id)
        headers = {"User-Agent": USER_AGENT, "Idempotency-Key": notice.key}
        if channel.type == NotifyType.PAGERDUTY:
            url = resolved(channel.url, "url") if channel.url else PAGERDUTY_EVENTS_URL
            body = pagerduty_body(notice, resolved(channel.routing_key or "", "routing_key"), link)
        else:
            url = resolved(channel.url or "", "url")
            build = slack_body if channel.type == NotifyType.SLACK else webhook_body
            body = build(notice, link)
            if channel.auth_header:
                headers["Authorization"] = resolved(channel.auth_header, "auth_header")
        where = f"{channel.type.value} channel {channel.name or notice.channel_index}"
        try:
            async with httpx.AsyncClient(timeout=HTTP_TIMEOUT_SECONDS, transport=self._transport) as http:
                response = await http.post(url, json=body, headers=headers)
        except httpx.HTTPError as err:
            raise ApplicationError(_redacted(f"{where}: {type(err).__name__}: {err}", secrets)) from None
        if response.is_success:
            log.info(
                "approval notice %s delivered to %s (attempt %d)",
                notice.key,
                where,
                info.attempt,
                extra={"action_id": notice.action_id, "agent_id": notice.agent_id},
            )
            return NoticeDelivery(status_code=response.status_code, attempt=info.attempt)
        answer = _redacted(f"{where} answered {response.status_code}: {response.text[:200]}", secrets)
        if 400 <= response.status_code < 500 and response.status_code != 429:
            raise ApplicationError(answer, type=NOTICE_REFUSED, non_retryable=True)
        raise ApplicationError(answer, type="NoticeNotDelivered")

    def all(self) -> list[Callable[..., Any]]:
        return [self.notify_approvers]


def _redacted(text: str, secrets: list[str]) -> str:
    """``text`` without any resolved secret (an error message goes to history and the audit log)."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "<secret>")
    return text
