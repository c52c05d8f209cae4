"""Printer-column JSONPaths of CRDs: evaluated as Kubernetes' JSONPath does, in bounded time."""

from __future__ import annotations

import time

from k3c.apiserver.tables import compile_path


def test_simple_and_filter_paths() -> None:
    obj = {"status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "Other", "status": "False"}]}}
    assert compile_path(".status.conditions[1].type")(obj) == ["Other"]
    assert compile_path('.status.conditions[?(@.type=="Ready")].status')(obj) == ["True"]


def test_regex_filters_are_not_run() -> None:
    """Kubernetes' JSONPath has no `=~`: a CRD author's (possibly catastrophic) regex never runs."""
    obj = {"spec": {"items": [{"name": "a" * 40 + "!"}]}}
    started = time.monotonic()
    assert compile_path('.spec.items[?(@.name =~ "(a+)+$")].name')(obj) == []
    assert time.monotonic() - started < 1.0
