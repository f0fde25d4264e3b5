"""The Prometheus alerts, their promtool unit tests, the scrape config and the Grafana dashboard.

``promtool`` comes from Debian's ``prometheus`` package. When it is missing the ``promtool`` fixture
installs that package (as root, or through ``sudo -n``), with a temporary ``policy-rc.d`` so the
package does not start a Prometheus server; if it cannot be installed the promtool tests are skipped
with the reason. The static checks (dashboard structure, metric names) need nothing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS_DIR = ROOT / "observability" / "prometheus"
ALERTS = PROMETHEUS_DIR / "alerts.yml"
ALERTS_TEST = PROMETHEUS_DIR / "alerts_test.yml"
SCRAPE = PROMETHEUS_DIR / "scrape.yml"
DASHBOARD = ROOT / "observability" / "grafana" / "aiops-dashboard.json"

POLICY_RC_D = Path("/usr/sbin/policy-rc.d")
INSTALL_TIMEOUT = 900

# The worker's metrics contract. Histograms also expose _bucket, _sum and _count series.
COUNTERS = {"aiops_events_total", "aiops_actions_total", "aiops_health_alerts_total"}
HISTOGRAMS = {"aiops_approval_wait_seconds", "aiops_action_duration_seconds"}
GAUGES = {"aiops_pending_approvals", "aiops_oldest_pending_approval_seconds", "aiops_agent_health"}
CONTRACT = COUNTERS | HISTOGRAMS | GAUGES

EXPECTED_ALERTS = {
    "AiopsAgentUnhealthy",
    "AiopsAgentDegraded",
    "AiopsApprovalWaitingTooLong",
    "AiopsActionFailureRateHigh",
    "AiopsWorkerDown",
    "AiopsWorkersAbsent",
}


# --- promtool ---------------------------------------------------------------------------------------------


def _output(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit status {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"


def _prometheus_pids() -> set[int]:
    """Ids of running processes whose executable name is ``prometheus``."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() == "prometheus":
                pids.add(int(entry.name))
        except OSError:
            continue
    return pids


def _privilege_prefix() -> list[str]:
    """How to run a command as root, or skip with the reason when that is impossible."""
    if os.geteuid() == 0:
        return []
    if shutil.which("sudo") is None:
        pytest.skip(
            "promtool is not installed, and installing Debian's prometheus package needs root or sudo"
        )
    probe = subprocess.run(["sudo", "-n", "true"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        pytest.skip(
            "promtool is not installed, and `sudo -n` cannot install Debian's prometheus package: "
            + (probe.stderr.strip() or f"exit status {probe.returncode}")
        )
    return ["sudo", "-n"]


def _install_prometheus() -> str:
    """Install Debian's prometheus package without starting its service; return promtool's path."""
    if shutil.which("apt-get") is None:
        pytest.skip(
            "promtool is not installed and there is no apt-get to install Debian's prometheus package"
        )
    sudo = _privilege_prefix()
    apt = [*sudo, "env", "DEBIAN_FRONTEND=noninteractive", "apt-get"]
    install = [*apt, "install", "-y", "-q", "--no-install-recommends", "prometheus"]

    def run(command: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(command, capture_output=True, text=True, timeout=INSTALL_TIMEOUT, check=False)

    before = _prometheus_pids()
    created_policy = False
    started = time.monotonic()
    try:
        if not POLICY_RC_D.exists():
            # invoke-rc.d and deb-systemd-invoke ask policy-rc.d; 101 means "do not start services".
            made = run(
                [
                    *sudo,
                    "sh",
                    "-c",
                    f"printf '#!/bin/sh\\nexit 101\\n' > {POLICY_RC_D} && chmod 755 {POLICY_RC_D}",
                ]
            )
            created_policy = made.returncode == 0
        result = run(install)
        if result.returncode != 0:
            update = run([*apt, "update", "-q"])
            if update.returncode != 0:
                pytest.skip(
                    f"cannot install Debian's prometheus package: apt-get update failed: {_output(update)}"
                )
            result = run(install)
        if result.returncode != 0:
            pytest.skip(f"cannot install Debian's prometheus package: {_output(result)}")
    finally:
        if created_policy:
            run([*sudo, "rm", "-f", str(POLICY_RC_D)])
        # Should a Prometheus server have been started by the package anyway, stop it: the tests only
        # need promtool, and a server on :9090 must not outlive them.
        leftovers = _prometheus_pids() - before
        if leftovers:
            for stop in (["service", "prometheus", "stop"], ["systemctl", "stop", "prometheus"]):
                if shutil.which(stop[0]):
                    run([*sudo, *stop])
            for pid in _prometheus_pids() & leftovers:
                run([*sudo, "kill", str(pid)])
    print(f"installed Debian's prometheus package in {time.monotonic() - started:.1f}s")
    found = shutil.which("promtool")
    if found is None:
        pytest.skip("Debian's prometheus package installed, but promtool is still not on PATH")
    return found


@pytest.fixture(scope="module")
def promtool() -> str:
    found = shutil.which("promtool")
    return found if found is not None else _install_prometheus()


def _promtool(promtool: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, *args], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.timeout(INSTALL_TIMEOUT + 120)
def test_promtool_check_rules(promtool: str) -> None:
    result = _promtool(promtool, "check", "rules", str(ALERTS.relative_to(ROOT)))
    assert result.returncode == 0, f"promtool check rules failed:\n{_output(result)}"
    assert f"SUCCESS: {len(EXPECTED_ALERTS)} rules found" in result.stdout, _output(result)


@pytest.mark.timeout(INSTALL_TIMEOUT + 120)
def test_promtool_test_rules(promtool: str) -> None:
    result = _promtool(promtool, "test", "rules", str(ALERTS_TEST.relative_to(ROOT)))
    assert result.returncode == 0, f"promtool test rules failed:\n{_output(result)}"
    assert "SUCCESS" in result.stdout, _output(result)


@pytest.mark.timeout(INSTALL_TIMEOUT + 120)
def test_promtool_check_scrape_config(promtool: str) -> None:
    result = _promtool(promtool, "check", "config", str(SCRAPE.relative_to(ROOT)))
    assert result.returncode == 0, f"promtool check config failed:\n{_output(result)}"


# --- the metric names in the expressions -------------------------------------------------------------------

_KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool",
    "offset", "inf", "nan",
}  # fmt: skip
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_BRACES = re.compile(r"\{[^{}]*\}")
_BRACKETS = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENTIFIER = re.compile(r"(?<![\w.$:])([A-Za-z_:][\w:]*)\s*(\()?")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (functions, keywords and label names left out)."""
    text = _STRING.sub('""', expr)
    text = _BRACES.sub(" ", text)
    text = _BRACKETS.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    text = re.sub(r"\$\{?\w+\}?", " ", text)  # Grafana variables outside selectors
    names = set()
    for match in _IDENTIFIER.finditer(text):
        name, call = match.groups()
        if call is None and name.lower() not in _KEYWORDS:
            names.add(name)
    return names


def allowed(name: str) -> bool:
    if name in CONTRACT or name == "up" or name.startswith("temporal_"):
        return True
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and name.removesuffix(suffix) in HISTOGRAMS:
            return True
    return False


def test_metric_name_extraction() -> None:
    expr = (
        "histogram_quantile(0.95, sum by (le, status) (rate(aiops_action_duration_seconds_bucket"
        '{agent_type=~"$agent_type", status!="a b"}[$__rate_interval]))) / on (agent_type) group_left '
        'bogus_metric offset 5m > bool 1e3 and absent(up{job="aiops-worker"}) or vector(0)'
    )
    assert metric_names(expr) == {"aiops_action_duration_seconds_bucket", "bogus_metric", "up"}
    assert metric_names('{__name__=~"x.*"}') == set()
    assert not allowed("bogus_metric")
    assert not allowed("aiops_events_total_bucket")
    assert allowed("aiops_approval_wait_seconds_count")
    assert allowed("temporal_activity_execution_failed_total")


def _alert_rules() -> dict[str, str]:
    """Alert name to expr, read from alerts.yml (written with `- alert:` then `expr:` per rule)."""
    rules: dict[str, str] = {}
    lines = ALERTS.read_text().splitlines()
    current = None
    for index, line in enumerate(lines):
        alert = re.match(r"\s*- alert:\s*(\S+)\s*$", line)
        if alert:
            current = alert.group(1)
            continue
        expr = re.match(r"(\s*)expr:\s*(.*?)\s*$", line)
        if expr and current is not None:
            indent, value = len(expr.group(1)), expr.group(2)
            if value[:1] in ("|", ">"):
                block = []
                for following in lines[index + 1 :]:
                    if following.strip() and len(following) - len(following.lstrip()) <= indent:
                        break
                    block.append(following.strip())
                value = "\n".join(block).strip()
            rules[current] = value.strip("'\"") if value[:1] in "'\"" else value
            current = None
    return rules


def _dashboard_exprs(dashboard: dict) -> list[tuple[str, str]]:
    found = []

    def walk(panels: list[dict]) -> None:
        for panel in panels:
            for target in panel.get("targets", []):
                found.append((panel.get("title", "?"), target.get("expr", "")))
            walk(panel.get("panels", []))

    walk(dashboard["panels"])
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"] if isinstance(variable["query"], str) else variable["query"]["query"]
            inner = re.fullmatch(r"label_values\((.*),\s*\w+\)", query)
            assert inner, f"variable {variable['name']} is not a label_values query: {query}"
            found.append((f"${variable['name']}", inner.group(1)))
    return found


def test_alerts_use_only_contract_metrics() -> None:
    rules = _alert_rules()
    assert set(rules) == EXPECTED_ALERTS
    for name, expr in rules.items():
        used = metric_names(expr)
        assert used, f"{name}: no metric found in {expr!r}"
        unknown = sorted(metric for metric in used if not allowed(metric))
        assert not unknown, f"{name} uses metrics outside the contract: {unknown}"


def test_every_alert_has_firing_and_quiet_cases() -> None:
    tests = ALERTS_TEST.read_text()
    for name in EXPECTED_ALERTS:
        cases = re.findall(rf"alertname: {name}\n\s*exp_alerts:(.*)", tests)
        assert any(case.strip() == "[]" for case in cases), f"{name} has no not-firing case"
        assert any(case.strip() == "" for case in cases), f"{name} has no firing case"


def test_dashboard_panels_and_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["title"] and dashboard["uid"]
    assert 36 <= dashboard["schemaVersion"] <= 41
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert {"agent_type", "agent_id"} <= set(variables)

    panels = dashboard["panels"]
    assert len(panels) >= 10
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    for panel in panels:
        assert panel.get("title"), f"panel {panel.get('id')} has no title"
        assert "gridPos" in panel, f"{panel['title']} has no gridPos"
        if panel["type"] == "row":  # layout only: a row header holds no query
            continue
        assert panel.get("targets"), f"{panel['title']} has no target"
        assert panel["datasource"]["uid"] == "${datasource}", f"{panel['title']} ignores $datasource"
        for target in panel["targets"]:
            assert target.get("expr", "").strip(), f"{panel['title']} has a target without expr"
            assert target["datasource"]["uid"] == "${datasource}", f"{panel['title']} ignores $datasource"

    used: set[str] = set()
    for title, expr in _dashboard_exprs(dashboard):
        names = metric_names(expr)
        assert names, f"{title}: no metric found in {expr!r}"
        unknown = sorted(name for name in names if not allowed(name))
        assert not unknown, f"{title} uses metrics outside the contract: {unknown}"
        used |= names
    # Every metric of the contract is on the dashboard, and so are the Temporal SDK's and `up`.
    shown = {name.removesuffix("_bucket").removesuffix("_count").removesuffix("_sum") for name in used}
    assert CONTRACT <= shown, f"not on the dashboard: {sorted(CONTRACT - shown)}"
    assert "up" in used
    assert any(name.startswith("temporal_") for name in used)


def test_fleet_gauges_are_aggregated_with_max_across_workers() -> None:
    """The health monitor's gauges come from one worker, two around a hand-over (aiops/metrics.py):
    every alert and panel reads them through ``max by (...)`` over the workers, never raw or summed."""
    exprs = list(_alert_rules().items()) + _dashboard_exprs(json.loads(DASHBOARD.read_text()))
    checked = 0
    for title, expr in exprs:
        if title.startswith("$"):  # label_values() of a template variable: no aggregation there
            continue
        for gauge in GAUGES:
            for match in re.finditer(rf"\b{gauge}\b", expr):
                before = expr[: match.start()].rstrip()
                aggregated = re.search(r"max(?: by \([^()]*\) )?\($", before)
                assert aggregated, f"{title}: {gauge} outside max by: {expr}"
                checked += 1
    assert checked >= 6
