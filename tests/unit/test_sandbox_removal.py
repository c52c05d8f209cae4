"""A sandbox removed in the background is tried again when containerd fails the stop for a moment.

The fault, a containerd that answers StopPodSandbox with an error while it reconnects to its shims after a
restart, cannot be caused at will with a real containerd, so a stand-in for the two CRI calls plays it.
Nobody else removes such a sandbox until the operator starts again (the chaos test found one left).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import grpc
import pytest

from k3c.cri.errors import RuntimeCallError
from k3c.reconcilers import sandboxes
from k3c.reconcilers.sandboxes import REMOVE_ATTEMPTS, SandboxPool


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandboxes, "REMOVE_RETRY_DELAY", 0.01)


class FlakyStops:
    """StopPodSandbox fails ``failures`` times (gRPC UNKNOWN, as CRI reports a shim's "ttrpc: closed")."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.stops = 0
        self.removed: list[str] = []

    async def stop_pod_sandbox(self, sandbox_id: str) -> None:
        self.stops += 1
        if self.failures:
            self.failures -= 1
            raise RuntimeCallError("StopPodSandbox", grpc.StatusCode.UNKNOWN, "ttrpc: closed")

    async def remove_pod_sandbox(self, sandbox_id: str) -> None:
        self.removed.append(sandbox_id)


async def _remove_later(cri: Any, tmp_path: Path) -> None:
    pool = SandboxPool(cri, "node", tmp_path, size=0)
    pool.remove_later("sb1")
    await asyncio.sleep(0)
    assert pool.removals_pending()
    for _ in range(500):  # (the removal is the pool's own background task)
        if not pool.removals_pending():
            break
        await asyncio.sleep(0.01)
    assert not pool.removals_pending()
    await pool.close(remove_spares=False)


def test_a_failed_background_removal_is_tried_again(tmp_path: Path) -> None:
    cri = FlakyStops(failures=2)
    asyncio.run(_remove_later(cri, tmp_path))
    assert cri.removed == ["sb1"]
    assert cri.stops == 3


def test_a_removal_that_keeps_failing_is_given_up(tmp_path: Path) -> None:
    cri = FlakyStops(failures=REMOVE_ATTEMPTS)
    asyncio.run(_remove_later(cri, tmp_path))
    assert cri.removed == []
    assert cri.stops == REMOVE_ATTEMPTS
