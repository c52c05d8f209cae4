"""Health check resolution and docker's state machine (k3c/reconcilers/healthchecks.py)."""

from __future__ import annotations

import pytest

from k3c.reconcilers import healthchecks as hc
from k3c.reconcilers.statuses import HealthCheckResult

IMAGE = {"Healthcheck": {"Test": ["CMD", "check", "-q"], "Interval": 5_000_000_000, "Retries": 4}}


def result(code: int) -> HealthCheckResult:
    return {"start": "s", "end": "e", "exitCode": code, "output": ""}


def test_spec_fields_merge_over_the_images() -> None:
    check = hc.resolve({"healthcheck": {"timeout": "2s"}}, IMAGE)
    assert check == hc.HealthCheck(["check", "-q"], 5.0, 2.0, 0.0, 4)
    shell = hc.resolve({"healthcheck": {"test": ["CMD-SHELL", "curl -f x"], "interval": "1m30s"}}, {})
    assert shell == hc.HealthCheck(["/bin/sh", "-c", "curl -f x"], 90.0, 30.0, 0.0, 3)


@pytest.mark.parametrize("spec", [{}, {"healthcheck": {"test": ["NONE"]}}])
def test_no_check(spec: dict) -> None:
    assert hc.resolve(spec, {} if not spec else IMAGE) is None


def test_bad_test_form() -> None:
    with pytest.raises(hc.HealthCheckError):
        hc.resolve({"healthcheck": {"test": ["CMD-SHELL"]}}, {})


def test_state_machine() -> None:
    state = hc.initial_state()
    state = hc.next_state(state, result(1), in_start_period=True, retries=2)
    assert (state["status"], state["failingStreak"]) == ("starting", 0)
    state = hc.next_state(state, result(0), in_start_period=True, retries=2)
    assert (state["status"], state["failingStreak"]) == ("healthy", 0)
    state = hc.next_state(state, result(1), in_start_period=False, retries=2)
    assert (state["status"], state["failingStreak"]) == ("healthy", 1)
    state = hc.next_state(state, result(-1), in_start_period=False, retries=2)
    assert (state["status"], state["failingStreak"]) == ("unhealthy", 2)
    for _ in range(10):
        state = hc.next_state(state, result(1), in_start_period=False, retries=2)
    assert len(state["log"]) == hc.KEPT_RESULTS
