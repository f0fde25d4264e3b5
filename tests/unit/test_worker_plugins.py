"""The SDK's two hooks for agent types that need more of the framework: worker plugins by type,
and framework services that exist only inside a worker."""

from __future__ import annotations

from typing import Any

import pytest

from agents.registry import register_worker_plugin, worker_plugins
from agents.services import FrameworkServicesUnavailableError, framework_services, install_services
from aiops.contracts.errors import AiopsError


def first(client: Any, task_queue: str, **options: Any) -> Any:
    return ("first", task_queue)


def second(client: Any, task_queue: str, **options: Any) -> Any:
    return ("second", task_queue)


def test_a_types_plugins_are_found_only_for_that_type_each_once() -> None:
    register_worker_plugin("unit-plugin-a", first)
    register_worker_plugin("unit-plugin-a", first)  # a re-imported module registers again: no-op
    register_worker_plugin("unit-plugin-b", first)  # shared by two types: built once
    register_worker_plugin("unit-plugin-b", second)
    assert worker_plugins(["unit-plugin-a"]) == [first]
    assert worker_plugins(["unit-plugin-b", "unit-plugin-a", "unit-plugin-a"]) == [first, second]
    assert worker_plugins(["unit-plugin-none"]) == []
    assert worker_plugins([]) == []


def test_outside_a_worker_the_framework_services_are_a_clear_aiops_error() -> None:
    install_services(None)
    with pytest.raises(FrameworkServicesUnavailableError, match="framework services are not available"):
        framework_services()
    assert issubclass(FrameworkServicesUnavailableError, AiopsError)
