"""Approvers are told: approval notices to a generic webhook, Slack and PagerDuty, for real.

A local HTTP receiver stands in for all three and records what arrives. Notices are activities:
a receiver that fails is retried until it takes the notice (once per step and channel, every
attempt with the same idempotency key), a receiver that refuses (4xx) is not retried, and each
delivery or give-up is a row in the action's audit trail. Secrets (the Slack URL, the routing
key, the auth header) are references resolved on the worker: they reach neither history nor
the audit log.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator
from urllib.parse import quote

import pytest
import pytest_asyncio
from pydantic import ValidationError
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from activities.agent_activities import AgentActivities
from activities.notify_activities import DEFAULT_UI_URL, UI_URL_ENV
from agents.secrets import secret_problems
from aiops.client import AiopsClient
from aiops.contracts.action import ActionStatus
from aiops.contracts.config import (
    MAX_NOTIFY_CHANNELS,
    AgentConfig,
    ApprovalRule,
    ApprovalSettings,
    ExpiryAction,
    NotifyChannel,
    NotifyStep,
)
from aiops.contracts.models import RiskLevel
from aiops.runtime.worker_build import build_worker
from tests.helpers import agent_config, eventually, start_pending_action, team
from tests.support.agents_for_tests import LEDGER
from tests.support.http_receiver import Receiver, http_receiver
from tests.support.time_skipping import time_skipping_server
from workflows.action.details import console_link

SLACK_PATH = "/services/T000/B000/slack-secret-path"


@pytest_asyncio.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with http_receiver() as r:
        yield r


def _config_with(notify: list[dict[str, object]]) -> AgentConfig:
    return AgentConfig.model_validate(
        {"id": f"n-{uuid.uuid4().hex[:8]}", "name": "n", "type": "example", "approval": {"notify": notify}}
    )


# ----- config ------------------------------------------------------------------------------------


def test_a_slack_url_or_a_routing_key_written_as_a_literal_is_refused_and_not_echoed() -> None:
    with pytest.raises(ValidationError) as refused:
        _config_with([{"type": "slack", "url": "https://hooks.slack.com/services/T0/B0/hunter2"}])
    assert (
        'url is a secret and must be a reference, not a literal value; write "env:SLACK_WEBHOOK_URL"'
        in str(refused.value)
    )
    assert "hunter2" not in str(refused.value)
    with pytest.raises(ValidationError) as refused:
        _config_with([{"type": "pagerduty", "routing_key": "R0UTINGKEYhunter3"}])
    assert "routing_key is a secret and must be a reference" in str(refused.value)
    assert "hunter3" not in str(refused.value)
    with pytest.raises(ValidationError, match="auth_header is a secret"):
        _config_with([{"type": "webhook", "url": "http://hooks.internal/x", "auth_header": "Bearer hunter4"}])


def test_channels_are_checked_and_bounded() -> None:
    config = _config_with(
        [
            {"type": "webhook", "url": "http://hooks.internal/aiops"},  # a literal URL is fine here
            {"type": "slack", "url": "env:SLACK_URL", "steps": ["pending"]},
            {"type": "pagerduty", "routing_key": "file:/run/secrets/pd"},
        ]
    )
    webhook, slack, pagerduty = config.approval.notify
    assert webhook.steps == list(NotifyStep) and slack.steps == [NotifyStep.PENDING]
    assert pagerduty.secret_references() == {"routing_key": "file:/run/secrets/pd"}
    cases: list[tuple[dict[str, object], str]] = [
        ({"type": "webhook"}, "a webhook channel needs url"),
        ({"type": "pagerduty", "url": "http://x"}, "needs routing_key"),
        ({"type": "slack", "url": "env:S", "routing_key": "env:K"}, "routing_key is for pagerduty"),
        ({"type": "webhook", "url": "ftp://x"}, "http(s) URL or a secret reference"),
        ({"type": "webhook", "url": "http://x", "steps": ["pending", "pending"]}, "a step twice"),
        ({"type": "webhook", "url": "http://x", "steps": ["approved"]}, "Input should be"),
        ({"type": "webhook", "url": "http://x", "colour": "red"}, "Extra inputs are not permitted"),
        ({"type": "webhook", "url": "http://x", "give_up_after_seconds": 1e9}, "less than or equal"),
        ({"type": "webhook", "url": "http://x/" + "a" * 3000}, "at most 2048"),
    ]
    for bad, reason in cases:
        with pytest.raises(ValidationError, match=reason.replace("(", r"\(").replace(")", r"\)")):
            _config_with([bad])
    with pytest.raises(ValidationError, match=f"at most {MAX_NOTIFY_CHANNELS} items"):
        _config_with([{"type": "webhook", "url": "http://x"}] * (MAX_NOTIFY_CHANNELS + 1))


def test_unresolvable_channel_references_are_config_problems(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIOPS_TEST_PD_SET", "key")
    config = _config_with(
        [
            {"type": "pagerduty", "routing_key": "env:AIOPS_TEST_PD_SET"},
            {"type": "slack", "url": "env:AIOPS_TEST_SLACK_NOT_SET"},
        ]
    )
    assert secret_problems(config) == [
        "approval.notify[1].url: environment variable AIOPS_TEST_SLACK_NOT_SET is not set on this worker"
    ]


def test_the_console_link_comes_from_console_url_only_and_an_unsafe_url_is_refused() -> None:
    assert console_link(None, "action-web:e1") == ""
    assert (
        console_link("https://aiops.example/base/", "action-web:am:f1@2")
        == "https://aiops.example/base/console/actions/action-web:am:f1@2"
    )
    assert console_link("http://c", "a/b c\u00e9") == "http://c/console/actions/a%2Fb%20c%C3%A9"
    # a character that would end Slack's <url|text> or Markdown's [text](url) early is refused
    for unsafe in (
        "https://x|y",
        "https://x/a)b",
        "https://x/<b>",
        "https://x/a b",
        "javascript:x",
        "https://x/\u202e",
    ):
        with pytest.raises(ValidationError, match="console_url"):
            ApprovalSettings(console_url=unsafe)


# ----- delivery, on the real dev server and PostgreSQL ----------------------------------------------


async def test_approvers_are_told_on_every_channel_retried_once_per_step_and_audited(
    aiops: AiopsClient, worker, client: Client, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    routing_key = f"pd-key-{uuid.uuid4().hex}"
    auth = f"Bearer hook-{uuid.uuid4().hex}"
    monkeypatch.setenv("AIOPS_TEST_SLACK_URL", receiver.url(SLACK_PATH))
    monkeypatch.setenv("AIOPS_TEST_PD_KEY", routing_key)
    monkeypatch.setenv("AIOPS_TEST_HOOK_AUTH", auth)
    receiver.fail_first["/hook"] = 2  # the webhook is down for two attempts
    approval = team().model_copy(
        update={
            "notify": [
                NotifyChannel(
                    type="webhook", url=receiver.url("/hook"), auth_header="env:AIOPS_TEST_HOOK_AUTH"
                ),
                NotifyChannel(
                    type="slack", url="env:AIOPS_TEST_SLACK_URL", ui_url="https://temporal.example"
                ),
                NotifyChannel(type="pagerduty", routing_key="env:AIOPS_TEST_PD_KEY", url=receiver.url("/pd")),
            ],
            "console_url": "https://console.example:8443/",
        }
    )
    config = agent_config("scripted", approval=approval)
    _, action_id, record = await start_pending_action(aiops, config, "high")
    console = f"https://console.example:8443/console/actions/{action_id}"
    await eventually(
        lambda: _async(receiver),
        lambda r: len(r.accepted("/hook")) == 1 and bool(r.accepted(SLACK_PATH)) and bool(r.accepted("/pd")),
    )
    ui = os.environ.get(UI_URL_ENV) or DEFAULT_UI_URL  # what the worker fixture's activities use
    link = f"{ui}/namespaces/default/workflows/{quote(action_id, safe='')}"

    # The webhook: answered 500 twice, then taken; every attempt with the same key and auth.
    hook = receiver.to("/hook")
    assert [r.status for r in hook] == [500, 500, 200]
    assert {r.headers["idempotency-key"] for r in hook} == {f"{action_id}:pending:0"}
    assert {r.headers["authorization"] for r in hook} == {auth}
    body = hook[-1].body
    assert body["step"] == "pending" and body["action_id"] == action_id and body["risk"] == "high"
    assert body["plan"] == {
        "summary": record.plan.summary if record.plan else "",
        "digest": record.plan_digest,
    }
    assert body["approve_command"] == record.approve_command and action_id in body["approve_command"]
    assert body["link"] == link and body["console_link"] == console
    assert body["approvals"] == 0 and body["required_approvals"] == 1 and body["deadline"]

    # Slack: the summary, risk, plan digest, the evidence link (on the channel's UI) and the command.
    [slack] = receiver.to(SLACK_PATH)
    assert slack.headers["idempotency-key"] == f"{action_id}:pending:1"
    assert slack.body["text"].startswith("Approval needed: [high]")
    text = json.dumps(slack.body["blocks"])
    assert record.plan_digest and record.plan_digest in text and "*Risk*: high" in text
    assert f"https://temporal.example/namespaces/default/workflows/{quote(action_id, safe='')}" in text
    assert json.dumps(record.approve_command)[1:-1] in text
    assert f"<{console}|Decide in the console>" in text

    # PagerDuty: a trigger keyed by the action, with the resolved routing key.
    [trigger] = receiver.to("/pd")
    assert trigger.body["event_action"] == "trigger" and trigger.body["dedup_key"] == action_id
    assert trigger.body["routing_key"] == routing_key
    assert trigger.body["payload"]["severity"] == "error" and trigger.body["client_url"] == link
    assert trigger.body["links"][0] == {"href": console, "text": "Decide in the console"}
    assert trigger.body["payload"]["custom_details"]["console_link"] == console

    # The Web UI's current details name the same page.
    metadata = await aiops.approvals.action_handle(action_id).query("__temporal_workflow_metadata")
    current = metadata["currentDetails"] if isinstance(metadata, dict) else metadata.current_details
    assert f"[Open it in the console]({console})" in current

    await aiops.approvals.approve(action_id, "alice", "notified and approved")
    done = await aiops.approvals.wait_for_action(action_id)
    assert done.status == ActionStatus.VERIFIED
    # The run completed only once every notice settled: the resolves are already here.
    [resolve] = [r for r in receiver.to("/pd") if r.body["event_action"] == "resolve"]
    assert resolve.body == {"routing_key": routing_key, "event_action": "resolve", "dedup_key": action_id}
    resolved = [r.body for r in receiver.to("/hook") if r.body["step"] == "resolved"]
    assert [b["outcome"] for b in resolved] == ["approved by alice"]
    assert [b["console_link"] for b in resolved] == [console]
    for path in ("/hook", SLACK_PATH, "/pd"):
        keys = [r.headers["idempotency-key"] for r in receiver.accepted(path)]
        assert len(keys) == 2 and len(set(keys)) == 2, f"once per step at {path}: {keys}"

    rows = [r for r in await aiops.audit.rows(action_id=action_id) if r.step == "notification"]
    by_key = {(r.detail["notice"], r.detail["channel"]): r.detail for r in rows}
    assert len(rows) == 6 and set(by_key) == {(s, c) for s in ("pending", "resolved") for c in (0, 1, 2)}
    assert all(d["delivered"] is True and d["status_code"] == 200 for d in by_key.values())
    assert by_key[("pending", 0)]["attempts"] == 3 and by_key[("pending", 1)]["attempts"] == 1
    assert by_key[("pending", 0)]["idempotency_key"] == f"{action_id}:pending:0"

    history = await client.get_workflow_handle(action_id).fetch_history()
    raw = b"".join(e.SerializeToString() for e in history.events)
    assert b"env:AIOPS_TEST_PD_KEY" in raw, "the reference is there (the search is real)"
    for secret in (routing_key, auth, SLACK_PATH):
        assert secret.encode() not in raw
        assert secret not in json.dumps([r.detail for r in rows])


async def test_a_refusing_receiver_is_not_retried_and_the_give_up_is_audited(
    aiops: AiopsClient, worker, receiver: Receiver
) -> None:
    receiver.always["/gone"] = 404  # a deleted webhook: retrying cannot help
    approval = team().model_copy(
        update={
            "on_expiry": ExpiryAction.REJECT,
            "notify": [NotifyChannel(type="webhook", url=receiver.url("/gone"), steps=["pending"])],
        }
    )
    approval.rules[RiskLevel.HIGH] = ApprovalRule(roles=["sre"], timeout_seconds=3)
    config = agent_config("scripted", approval=approval)
    _, action_id, _ = await start_pending_action(aiops, config, "high")
    done = await aiops.approvals.wait_for_action(action_id)
    assert done.status == ActionStatus.EXPIRED
    assert [r.status for r in receiver.to("/gone")] == [404]
    assert receiver.to("/gone")[0].body["console_link"] is None, "no approval.console_url: no link"
    [row] = [r for r in await aiops.audit.rows(action_id=action_id) if r.step == "notification"]
    assert row.detail["delivered"] is False and row.detail["notice"] == "pending"
    assert "answered 404" in row.detail["error"]


async def test_a_decision_cancels_a_notice_still_retrying_and_a_final_one_gives_up_in_time(
    aiops: AiopsClient, worker, receiver: Receiver
) -> None:
    receiver.fail_first["/down"] = 10_000  # down for good
    approval = team().model_copy(
        update={
            "notify": [NotifyChannel(type="webhook", url=receiver.url("/down"), give_up_after_seconds=10)]
        }
    )
    config = agent_config("scripted", approval=approval)
    _, action_id, _ = await start_pending_action(aiops, config, "high")
    await eventually(lambda: _async(receiver), lambda r: len(r.to("/down")) >= 2)  # retrying
    await aiops.approvals.approve(action_id, "alice")
    done = await aiops.approvals.wait_for_action(action_id, appear_within=30)
    assert done.status == ActionStatus.VERIFIED
    rows = [r for r in await aiops.audit.rows(action_id=action_id) if r.step == "notification"]
    by_notice = {r.detail["notice"]: r.detail for r in rows}
    assert len(rows) == 2 and not any(d["delivered"] for d in by_notice.values())
    assert by_notice["pending"]["error"] == "cancelled: the approval wait ended before it was delivered"
    assert by_notice["resolved"]["error"].startswith("gave up"), by_notice["resolved"]["error"]
    pending = [r for r in receiver.to("/down") if r.body["step"] == "pending"]
    resolved = [r for r in receiver.to("/down") if r.body["step"] == "resolved"]
    assert receiver.requests.index(pending[-1]) < receiver.requests.index(resolved[0]), "resolved comes last"
    assert len(resolved) >= 3, "retried with backoff until the channel's 10 s were up"


async def test_without_channels_an_action_schedules_no_notice(
    aiops: AiopsClient, worker, client: Client
) -> None:
    config = agent_config("scripted", approval=team())
    _, action_id, _ = await start_pending_action(aiops, config, "high")
    await aiops.approvals.approve(action_id, "alice")
    assert (await aiops.approvals.wait_for_action(action_id)).status == ActionStatus.VERIFIED
    history = await client.get_workflow_handle(action_id).fetch_history()
    raw = b"".join(e.SerializeToString() for e in history.events)
    assert b"notify_approvers" not in raw and b"approval-notices-v1" not in raw


# ----- escalation and expiry, hours in moments on the time-skipping server ----------------------------


@pytest_asyncio.fixture
async def skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    async with time_skipping_server() as env:
        yield env


async def test_escalation_and_expiry_are_told_and_pagerduty_resolves(
    skipping_env: WorkflowEnvironment, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    LEDGER.clear()
    monkeypatch.setenv("AIOPS_TEST_PD_KEY", "pd-key")
    task_queue = f"tq-{uuid.uuid4()}"
    approval = team().model_copy(
        update={
            "notify": [
                NotifyChannel(type="webhook", url=receiver.url("/hook")),
                NotifyChannel(type="pagerduty", routing_key="env:AIOPS_TEST_PD_KEY", url=receiver.url("/pd")),
                NotifyChannel(type="webhook", url=receiver.url("/late"), steps=["escalated", "expired"]),
            ]
        }
    )
    approval.rules[RiskLevel.HIGH] = ApprovalRule(roles=["sre"], timeout_seconds=4 * 3600)
    config = agent_config("scripted", approval=approval)
    async with build_worker(skipping_env.client, task_queue, AgentActivities(client=skipping_env.client)):
        skipping = AiopsClient(skipping_env.client, task_queue)
        _, action_id, _ = await start_pending_action(skipping, config, "high")
        await eventually(lambda: _async(receiver), lambda r: len(r.to("/pd")) == 1)
        await skipping_env.sleep(4 * 3600 + 60)
        await eventually(lambda: _async(receiver), lambda r: len(r.to("/pd")) == 2)
        await skipping_env.sleep(4 * 3600 + 60)
        done = await skipping.approvals.wait_for_action(action_id)
    assert done.status == ActionStatus.EXPIRED and done.escalated
    assert [r.body["step"] for r in receiver.to("/hook")] == ["pending", "escalated", "expired"]
    assert [r.body["step"] for r in receiver.to("/late")] == ["escalated", "expired"]
    expired = receiver.to("/hook")[-1].body
    assert "a timeout never approves" in expired["outcome"] and expired["escalation_target"] == "on-call"
    assert [(r.body["event_action"], r.body["dedup_key"]) for r in receiver.to("/pd")] == [
        ("trigger", action_id),
        ("trigger", action_id),
        ("resolve", action_id),
    ]
    assert receiver.to("/pd")[1].body["payload"]["summary"].startswith("Escalated: approval still needed")


async def _async(receiver: Receiver) -> Receiver:
    return receiver
