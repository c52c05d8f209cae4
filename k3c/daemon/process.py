"""Stopping a child process we started: SIGTERM, a grace period, then SIGKILL — by its own PID only."""

from __future__ import annotations

import asyncio
import logging
import signal
import subprocess
import time
from typing import Any

log = logging.getLogger(__name__)


async def terminate(proc: subprocess.Popen[Any], timeout: float, name: str = "") -> int | None:
    """Stop ``proc`` without blocking the event loop; returns its exit status."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while proc.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        if proc.poll() is None:
            log.warning("%s did not stop within %.0f s; killing it", name or f"pid {proc.pid}", timeout)
            proc.kill()
            await asyncio.to_thread(proc.wait)
    return proc.returncode
