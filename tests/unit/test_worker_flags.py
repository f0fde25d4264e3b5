"""The worker's command line: cache size is a flag, checked before anything starts."""

from __future__ import annotations

import pytest

from aiops.runtime.worker_process import DEFAULT_CACHED_WORKFLOWS, parse_args


def test_the_workflow_cache_is_sized_for_thousands_of_agents_by_default(monkeypatch) -> None:
    monkeypatch.delenv("AIOPS_MAX_CACHED_WORKFLOWS", raising=False)
    assert parse_args([]).max_cached_workflows == DEFAULT_CACHED_WORKFLOWS >= 10_000
    assert parse_args(["--max-cached-workflows", "25000"]).max_cached_workflows == 25_000
    monkeypatch.setenv("AIOPS_MAX_CACHED_WORKFLOWS", "3000")
    assert parse_args([]).max_cached_workflows == 3000


@pytest.mark.parametrize(("value", "says"), [("0", "out of range"), ("lots", "not a whole number")])
def test_a_bad_cache_size_is_refused_saying_why(value: str, says: str, capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        parse_args(["--max-cached-workflows", value])
    assert exit_.value.code == 2
    assert says in capsys.readouterr().err


@pytest.mark.parametrize(
    ("variable", "value", "flag"),
    [("AIOPS_HTTP_PORT", "lots", "--http-port"), ("AIOPS_HEALTH_EVERY", "soon", "--health-every")],
)
def test_a_bad_value_in_the_environment_is_refused_naming_the_flag(
    variable: str, value: str, flag: str, monkeypatch, capsys
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SystemExit) as exit_:
        parse_args([])
    assert exit_.value.code == 2
    assert f"argument {flag}: invalid" in capsys.readouterr().err


def test_settings_come_from_the_environment_unless_a_flag_says_otherwise(monkeypatch) -> None:
    monkeypatch.setenv("AIOPS_HTTP_PORT", "1234")
    monkeypatch.setenv("AIOPS_HTTP_PORT_FALLBACK", "Yes")
    monkeypatch.setenv("AIOPS_HEALTH_EVERY", "5")
    args = parse_args([])
    assert (args.http_port, args.http_port_fallback, args.health_every) == (1234, True, 5.0)
    assert parse_args(["--http-port", "9", "--health-every", "2"]).http_port == 9
    monkeypatch.setenv("AIOPS_HTTP_PORT_FALLBACK", "no")
    assert parse_args([]).http_port_fallback is False
