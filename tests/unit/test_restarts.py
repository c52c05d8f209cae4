"""k3c.cri.restarts: a call tried again while containerd does not answer (the real restart is in the chaos
test; here the fault is a function that fails the way the CRI client does while containerd is down)."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from k3c.cri.errors import NotFoundError, RuntimeCallError, RuntimeUnavailableError
from k3c.cri.restarts import while_unavailable

DOWN = RuntimeUnavailableError("Snapshots.Remove", grpc.StatusCode.UNAVAILABLE, "connection refused")


def _failing(times: int, error: Exception) -> tuple[list[int], object]:
    calls: list[int] = []

    async def call() -> str:
        calls.append(1)
        if len(calls) <= times:
            raise error
        return "answered"
    return calls, call


def test_tried_again_until_containerd_answers() -> None:
    calls, call = _failing(2, DOWN)
    assert asyncio.run(while_unavailable(call, patience=5, interval=0.01)) == "answered"  # type: ignore[arg-type]
    assert len(calls) == 3


def test_gives_up_after_its_patience_or_when_told() -> None:
    calls, call = _failing(1000, DOWN)
    with pytest.raises(RuntimeUnavailableError):
        asyncio.run(while_unavailable(call, patience=0.05, interval=0.01))  # type: ignore[arg-type]
    assert 2 <= len(calls) < 1000
    calls, call = _failing(1000, DOWN)
    with pytest.raises(RuntimeUnavailableError):
        asyncio.run(while_unavailable(call, patience=60, interval=0.01, give_up=lambda: True))  # type: ignore[arg-type]
    assert len(calls) == 1


def test_other_errors_are_not_retried() -> None:
    calls, call = _failing(1, NotFoundError("Snapshots.Remove", grpc.StatusCode.NOT_FOUND, "not found"))
    with pytest.raises(RuntimeCallError):
        asyncio.run(while_unavailable(call, patience=5, interval=0.01))  # type: ignore[arg-type]
    assert len(calls) == 1
