"""The embedded API server's :class:`~k3c.apiserver.subresources.ParentReader`: its own storage, in-process.

Reads go straight to the store (no HTTP, no serialization), so a stream's checks cost microseconds;
changes come from the watch hub the moment a write commits. The methods are coroutines only because the
interface must also fit a reader over a Kubernetes client (see :mod:`k3c.apiserver.subresources`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from k3c.apiserver.resources import ResourceType
from k3c.apiserver.rest import ResourceAPI
from k3c.apiserver.storage import Compacted
from k3c.apiserver.subresources import ParentReader
from k3c.apiserver.watch import Subscription, WatchHub


class _SubscriptionChanges:
    """:class:`~k3c.apiserver.subresources.Changes` over a hub subscription to one object's key."""

    def __init__(self, sub: Subscription) -> None:
        self._sub = sub

    async def wait(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._sub.queue.get(), timeout)
        except TimeoutError:
            return False
        return True


class StoreReader(ParentReader):
    """Objects of one resource type, read from this server's storage and watch hub."""

    def __init__(self, api: ResourceAPI, hub: WatchHub, rtype: ResourceType) -> None:
        self.api = api
        self.hub = hub
        self.rtype = rtype

    async def get(self, namespace: str | None, name: str) -> dict[str, Any]:
        return self.api.get(self.rtype, namespace, name).obj

    async def revision(self) -> str:
        return str(self.api.store.committed)

    async def last_state(self, namespace: str | None, name: str, since: str) -> dict[str, Any] | None:
        store = self.api.store
        key = self.rtype.key(namespace, name)
        last = None
        try:
            for event in store.key_history(key, int(since), store.committed):
                last = event.obj
        except Compacted:
            return None
        return last

    @contextlib.asynccontextmanager
    async def changes(self, namespace: str | None, name: str) -> AsyncIterator[_SubscriptionChanges]:
        sub = self.hub.subscribe(self.rtype.key(namespace, name))
        try:
            yield _SubscriptionChanges(sub)
        finally:
            self.hub.unsubscribe(sub)
