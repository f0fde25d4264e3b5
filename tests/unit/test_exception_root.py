"""Every exception the project defines derives from ``AiopsError``, the one root a caller catches."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

from aiops.contracts.errors import AiopsError

PRODUCT_PACKAGES = ("aiops", "agents", "activities", "workflows")


def product_modules() -> list[str]:
    names = []
    for package_name in PRODUCT_PACKAGES:
        package = importlib.import_module(package_name)
        names.append(package_name)
        for info in pkgutil.walk_packages(package.__path__, prefix=f"{package_name}."):
            if not info.name.endswith(".__main__"):  # running it is its only job
                names.append(info.name)
    return sorted(names)


def defined_exceptions() -> list[type[BaseException]]:
    found = []
    for name in product_modules():
        module = importlib.import_module(name)
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if obj.__module__ == name and issubclass(obj, BaseException):
                found.append(obj)
    return found


def test_the_product_defines_exceptions_at_all() -> None:
    assert len(defined_exceptions()) > 10


@pytest.mark.parametrize("error", defined_exceptions(), ids=lambda e: f"{e.__module__}.{e.__qualname__}")
def test_every_exception_derives_from_aiops_error(error: type[BaseException]) -> None:
    assert issubclass(error, AiopsError), f"{error.__module__}.{error.__qualname__} is not an AiopsError"
