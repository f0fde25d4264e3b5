"""The console's pure parts: signed cookies, CSRF, what the pages show, and that hostile text in an
action's evidence is shown as text, never run (autoescaped templates, no inline script)."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from aiops.api.auth import Principal
from aiops.console import views
from aiops.console.pages import HOME, render, safe_next
from aiops.console.session import CookieNames, SessionRefused, Signer, csrf_matches, loopback, new_session
from aiops.contracts.action import ActionRecord, ActionStatus, ApprovalRecord, StatusChange
from aiops.contracts.models import ActionType, AgentAction, Plan, RiskLevel, SystemEvent
from aiops.contracts.policy import Outcome, PolicyDecision
from aiops.gateway.config import Console

KEY = b"k" * 32
ALICE = Principal(name="alice", roles=["sre"], via="oidc")
NOW = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)
HOSTILE = '<script>alert(1)</script><img src=x onerror="alert(2)">'


def test_a_session_cookie_round_trips_and_any_change_is_refused() -> None:
    signer = Signer(KEY)
    session = new_session(ALICE, hours=1)
    cookie = signer.dump("session", session.model_dump(mode="json"))
    assert signer.session(cookie) == session
    body, mac = cookie.split(".")
    tampered = [
        (body[:-2] + "AA." + mac, "not signed by this console"),
        (body + "." + mac[:-2] + "AA", "not signed by this console"),
        (body, "not signed by this console"),
        ("x" * 5000, "over 4096"),
        (Signer(b"o" * 32).dump("session", session.model_dump(mode="json")), "not signed by this console"),
        (
            signer.dump("sign-in", session.model_dump(mode="json")),
            "not signed by this console",
        ),  # another kind
        (signer.dump("session", {**session.model_dump(mode="json"), "expires": time.time() - 1}), "expired"),
        (signer.dump("session", {"expires": time.time() + 60}), "not readable"),
    ]
    for bad, says in tampered:
        with pytest.raises(SessionRefused, match=says):
            signer.session(bad)
    with pytest.raises(SessionRefused, match="32 bytes"):
        Signer(b"short")


def test_csrf_tokens_compare_exactly() -> None:
    session = new_session(ALICE, hours=1)
    assert csrf_matches(session, session.csrf)
    for offered in (None, "", session.csrf[:-1], session.csrf + "x", session.csrf.upper()):
        assert not csrf_matches(session, offered), offered


def test_cookies_are_secure_except_on_a_loopback_http_address() -> None:
    assert loopback("http://localhost:8080") and loopback("http://127.0.0.1") and loopback("http://[::1]:1")
    for url in ("https://localhost", "http://localhost.evil.example", "http://aiops.example.com"):
        assert not loopback(url), url
    secure = CookieNames("https://aiops.example.com")
    assert secure.secure and secure.session.startswith("__Host-") and secure.flow.startswith("__Host-")
    attributes = secure.attributes("strict", 60)
    assert attributes["httponly"] and attributes["secure"] and attributes["path"] == "/"
    assert not CookieNames("http://localhost:1").secure


def test_the_console_settings_refuse_what_is_wrong() -> None:
    ok = Console(issuer="https://login.example", client_id="aiops", public_url="https://aiops.example.com")
    assert ok.secret_env == "AIOPS_CONSOLE_SECRET" and ok.session_hours == 8
    for bad in (
        {"public_url": "https://aiops.example.com/path"},
        {"public_url": "ftp://aiops.example.com"},
        {"secret_env": "lower-case"},
        {"session_hours": 0},
        {"surprise": 1},
    ):
        with pytest.raises(ValidationError):
            Console.model_validate({**ok.model_dump(), **bad})


def record(**kw: object) -> ActionRecord:
    event = SystemEvent(id="e1", type="alert", source="prom", timestamp=NOW - timedelta(minutes=5))
    action = AgentAction(
        id="a1",
        agent_id="disk-agent",
        type=ActionType.RUN_COMMAND,
        description="clean /var/log on host1\nsecond line",
        risk_level=RiskLevel.CRITICAL,
        parameters=kw.pop("parameters", {}),  # type: ignore[arg-type]
    )
    base: dict[str, object] = {
        "action": action,
        "event": event,
        "config_version": 3,
        "status": ActionStatus.PENDING_APPROVAL,
        "decision": PolicyDecision(outcome=Outcome.REQUIRE_APPROVAL, reason="critical", required_approvals=2),
        "plan": Plan(summary="would delete 3 files"),
        "plan_digest": "d" * 64,
        "approval_deadline": NOW + timedelta(minutes=55),
        "history": [StatusChange(status=ActionStatus.PROPOSED, at=NOW - timedelta(minutes=4))],
    }
    return ActionRecord.model_validate({**base, **kw})


def test_an_inbox_row_says_risk_agent_age_summary_and_approvals_against_those_needed() -> None:
    approvals = [
        ApprovalRecord(approver="alice", approved=True, comment="", at=NOW, channel="update"),
        ApprovalRecord(approver="alice", approved=True, comment="", at=NOW, channel="update"),
    ]
    [row] = views.inbox_rows([("action-disk-agent:e1", record(approvals=approvals))], NOW)
    assert (row.risk, row.agent, row.age, row.summary) == (
        "critical",
        "disk-agent",
        "4m",
        "clean /var/log on host1",
    )
    assert (row.approvals, row.needed) == (1, 2)  # one person counts once
    assert row.deadline == "2026-12-06 09:55:00 UTC (in 55m)"
    assert views.age(NOW - timedelta(days=2, hours=3), NOW) == "2d 3h"
    assert views.one_line("x" * 300).endswith("…") and len(views.one_line("x" * 300)) == 160


def test_the_llm_diagnosis_and_its_tool_calls_are_read_from_the_action() -> None:
    diagnosis = {
        "summary": "disk full",
        "confidence": 0.8,
        "why": "logs grew",
        "model": "m",
        "evidence": [{"observation": "95% used", "tool_call_id": "c1"}, "plain"],
        "tool_calls": [
            {"tool_call_id": "c1", "tool": "df", "arguments": {"path": "/"}, "result": "95%", "ok": True}
        ],
    }
    shown = views.diagnosis_of(record(parameters={"diagnosis": diagnosis}))
    assert shown is not None and shown.confidence == "0.80"
    assert shown.evidence == ["95% used [tool call c1]", "plain"]
    assert [(c.id, c.tool, c.result) for c in shown.tool_calls] == [("c1", "df", "95%")]
    assert views.diagnosis_of(record()) is None
    assert views.diagnosis_of(record(parameters={"diagnosis": "not a dict"})) is None
    assert "escalated once to on-call" in views.after_deadline("escalate", "on-call")
    assert "not readable" in views.after_deadline(None, None)


def test_hostile_evidence_is_shown_as_text_and_pages_carry_no_inline_script() -> None:
    diagnosis = {"summary": HOSTILE, "tool_calls": [{"tool": HOSTILE, "result": HOSTILE}]}
    evil = record(parameters={"diagnosis": diagnosis, "note": HOSTILE})
    page = render(
        "action.html",
        me=ALICE,
        csrf="c" * 32,
        action_id="action-disk-agent:e1",
        record=evil,
        summary=HOSTILE,
        diagnosis=views.diagnosis_of(evil),
        event_data=views.pretty({"x": HOSTILE}),
        parameters=views.pretty(evil.action.parameters),
        approved=0,
        needed=2,
        deadline="soon",
        after_deadline="it expires",
        decidable=True,
        may_decide=True,
    ).body.decode()
    assert "<script>alert" not in page and 'onerror="alert' not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert re.findall(r"<script[^>]*>", page) == ['<script src="/console/static/console.js" defer>']
    assert " style=" not in page and " on" + "click=" not in page


def test_every_template_and_the_script_need_no_build_step() -> None:
    root = Path(__file__).resolve().parents[2] / "aiops" / "console"
    script = (root / "static" / "console.js").read_text()
    assert "import " not in script and "require(" not in script and "eval(" not in script
    for template in (root / "templates").glob("*.html"):
        text = template.read_text()
        assert not re.search(r"<script(?![^>]*\bsrc=)", text), template.name  # no inline script
        assert "<style" not in text and " style=" not in text, template.name


def test_a_sign_in_leads_back_only_to_a_console_page_of_this_origin() -> None:
    assert safe_next("/console/actions/action-a:e1?x=1") == "/console/actions/action-a:e1?x=1"
    hostile = ["//evil.example", "/console//evil.example", "/console/\\evil", "https://evil.example"]
    hostile += ["javascript:alert(1)", '/console/x"><script>', "/consolex", "/console/" + "a" * 700]
    for value in [*hostile, None, 3]:
        assert safe_next(value) == HOME, value
