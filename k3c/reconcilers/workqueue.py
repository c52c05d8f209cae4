"""Per-key serialized reconciling: at most one reconcile per object at a time, later events coalesced.

Two sources wake an object up — kopf's watch events and containerd's events (an exit) — and neither may
reconcile it while the other is halfway through. Each key gets its own worker task while it has work:
scheduling a key that is being reconciled just marks it dirty, and the worker runs once more afterwards
with the newest state. A reconcile can ask to run again later (a restart back-off, a retry), which is a
timer, not a loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

#: A reconcile function: returns None when done, or seconds after which to run again.
Reconcile = Callable[[str], Awaitable[float | None]]

#: Back-off after a reconcile raised unexpectedly: 1 s doubling to a minute.
ERROR_DELAYS = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0)


class WorkQueue:
    """Runs ``reconcile(key)`` for scheduled keys, one at a time per key, all keys concurrently."""

    def __init__(self, reconcile: Reconcile, name: str = "reconcile") -> None:
        self.reconcile = reconcile
        self.name = name
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._dirty: set[str] = set()
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._errors: dict[str, int] = {}
        self._closed = False

    def schedule(self, key: str, delay: float = 0.0) -> None:
        """Reconcile ``key`` now (or after ``delay`` s); an earlier pending timer wins over a later one."""
        if self._closed:
            return
        loop = asyncio.get_running_loop()
        if delay > 0:
            timer = self._timers.get(key)
            when = loop.time() + delay
            if timer is not None and timer.when() <= when:
                return
            if timer is not None:
                timer.cancel()
            self._timers[key] = loop.call_at(when, self._fire, key)
            return
        if key in self._workers:
            self._dirty.add(key)
            return
        self._workers[key] = loop.create_task(self._work(key), name=f"{self.name}:{key}")

    def _fire(self, key: str) -> None:
        self._timers.pop(key, None)
        self.schedule(key)

    async def _work(self, key: str) -> None:
        try:
            while True:
                self._dirty.discard(key)
                again = await self._run_once(key)
                if again is not None:
                    self.schedule(key, again)
                if key not in self._dirty or self._closed:
                    return
        finally:
            self._workers.pop(key, None)

    async def _run_once(self, key: str) -> float | None:
        try:
            again = await self.reconcile(key)
        except asyncio.CancelledError:
            raise
        except Exception:
            n = self._errors.get(key, 0)
            self._errors[key] = n + 1
            delay = ERROR_DELAYS[min(n, len(ERROR_DELAYS) - 1)]
            log.exception("%s %s failed; retrying in %.0f s", self.name, key, delay)
            return delay
        self._errors.pop(key, None)
        return again

    def busy(self, key: str) -> bool:
        return key in self._workers

    async def drain(self, timeout: float) -> None:
        """Let in-flight reconciles finish (up to ``timeout`` s), then cancel what is left."""
        self._closed = True
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        tasks = list(self._workers.values())
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=timeout)
            for t in pending:
                t.cancel()
            for t in pending:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
