"""Controllers inside the API server: level-based loops woken by writes to the kinds they watch.

kube-apiserver's own controllers (and the few of kube-controller-manager the embedded server stands in for:
ClusterRole aggregation, ServiceAccount token Secrets, APIService availability) look at the whole state each
time, so a missed or coalesced event costs nothing. A :class:`Trigger` hears every committed write whose
key is under one of its prefixes (a storage listener: a string compare per write) and wakes its loop; the
loop also runs every ``period`` seconds, for what changes without a write (a backend that went away).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from k3c.apiserver.storage import Event, Store

log = logging.getLogger(__name__)


class Controller(Protocol):
    """What a loop runs: the storage prefixes whose writes wake it, and one level-based round."""

    @property
    def prefixes(self) -> tuple[str, ...]: ...

    async def sync(self) -> None: ...


class Trigger:
    """Set when a write lands under one of ``prefixes`` (storage keys, e.g. ``/secrets/``)."""

    def __init__(self, store: Store, prefixes: tuple[str, ...]) -> None:
        self.prefixes = prefixes
        self.event = asyncio.Event()
        self.event.set()  # the first round runs at once
        store.listeners.append(self._heard)

    def _heard(self, event: Event) -> None:
        if event.key.startswith(self.prefixes):
            self.event.set()


async def run(name: str, trigger: Trigger, sync: Callable[[], Awaitable[None]], period: float) -> None:
    """Call ``sync`` whenever ``trigger`` fires, and at least every ``period`` seconds, until cancelled; a
    failing round is logged and retried a second later."""
    while True:
        try:
            await asyncio.wait_for(trigger.event.wait(), period)
        except TimeoutError:
            pass
        trigger.event.clear()
        try:
            await sync()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s controller failed; retrying", name)
            await asyncio.sleep(1.0)
            trigger.event.set()
