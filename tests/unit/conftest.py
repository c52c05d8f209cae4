"""Unit tests run in this process only: one that starts a process belongs in tests/e2e, and this says so."""

from __future__ import annotations

import subprocess

import pytest


@pytest.fixture(autouse=True)
def _no_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: subprocess.Popen, args: object, *rest: object, **kwargs: object) -> None:
        raise AssertionError(f"a unit test started a process ({args!r}): it belongs in tests/e2e")

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)
