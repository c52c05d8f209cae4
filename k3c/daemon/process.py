"""Stopping a process we started: SIGTERM, a grace period, then SIGKILL — by its own PID only.

Either a child (a ``Popen``), or a process started detached whose PID we recorded (``k3c agent``'s
containerd, which is no child of ours on purpose).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
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


def alive(pid: int) -> bool:
    """Whether a process with this PID exists (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return False


async def terminate_pid(pid: int, timeout: float, name: str = "") -> None:
    """Stop the process ``pid`` (not a child of ours) without blocking the event loop."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while alive(pid) and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    if alive(pid):
        log.warning("%s did not stop within %.0f s; killing it", name or f"pid {pid}", timeout)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        while alive(pid):
            await asyncio.sleep(0.02)
