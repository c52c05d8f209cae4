"""Markers by place: a test under tests/unit is ``unit``, one under tests/e2e is ``e2e``, and one using the
``daemon`` fixture is also ``containerd``; so ``-m`` selects by kind without anyone marking by hand."""

from __future__ import annotations

from pathlib import Path

import pytest

TESTS = Path(__file__).parent
KINDS = ("unit", "e2e")


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        kind = next((k for k in KINDS if item.path.is_relative_to(TESTS / k)), None)
        if kind is None:
            raise pytest.UsageError(f"{item.nodeid}: a test lives in tests/unit or tests/e2e")
        item.add_marker(kind)
        if "daemon" in getattr(item, "fixturenames", ()):
            item.add_marker("containerd")
