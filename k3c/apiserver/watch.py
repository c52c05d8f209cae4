"""Watches: fan committed writes out to subscribers, and replay history from a resourceVersion.

A subscription is registered *before* the replay (or initial snapshot) is read, and everything at or
below the replay's revision is skipped from the live queue, so a watcher sees every write exactly once
and in revision order. Selector transitions are translated as kube-apiserver does: an object that stops
matching arrives as DELETED, one that starts matching as ADDED.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from k3c.apiserver.storage import Entry, Event, Store

QUEUE_LIMIT = 10000  # a watcher this far behind is cut off; the client re-lists, as with kube-apiserver


@dataclass(frozen=True)
class WatchEvent:
    type: str  # ADDED, MODIFIED, DELETED, or BOOKMARK (raw and obj empty)
    revision: int
    raw: bytes = b""
    obj: dict[str, Any] = field(default_factory=dict)
    initial_end: bool = False  # a BOOKMARK closing the initial events of sendInitialEvents


class Overflow(Exception):
    """The subscriber fell too far behind."""


@dataclass(eq=False)
class Subscription:
    prefix: str
    queue: asyncio.Queue[Event | None] = field(default_factory=asyncio.Queue)
    overflowed: bool = False


class WatchHub:
    """Receives every committed event from the Store and hands it to matching subscriptions."""

    def __init__(self, store: Store):
        self.store = store
        self.subs: set[Subscription] = set()
        store.listeners.append(self._dispatch)

    def _dispatch(self, event: Event) -> None:
        for sub in self.subs:
            if not event.key.startswith(sub.prefix) or sub.overflowed:
                continue
            if sub.queue.qsize() >= QUEUE_LIMIT:
                sub.overflowed = True
                sub.queue.put_nowait(None)
                continue
            sub.queue.put_nowait(event)

    def subscribe(self, prefix: str) -> Subscription:
        """Raw events under ``prefix`` as they commit (for in-process waiters; :meth:`unsubscribe` after)."""
        sub = Subscription(prefix)
        self.subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self.subs.discard(sub)

    def close_all(self) -> None:
        for sub in self.subs:
            sub.queue.put_nowait(None)

    async def watch(
        self, prefix: str, match: Callable[[dict[str, Any]], bool], start: int | None,
        initial: bool = False, bookmark_every: float | None = None, key: str | None = None,
    ) -> AsyncGenerator[WatchEvent, None]:
        """Yield events under prefix. `start=None` means "now, with every current object as ADDED".

        With `bookmark_every`, an idle watch yields a BOOKMARK carrying the latest committed revision.
        `key`: the one key `match` can accept (a watch of one object by name); the replay then reads that
        key's history alone, not every write under the prefix since `start` (many such watches at once,
        as `k3c rm` of many containers makes, would each decode all the others' writes).
        """
        sub = Subscription(key or prefix)
        self.subs.add(sub)
        try:
            if start is None or initial:
                floor = self.store.revision
                for _key, entry in self._current(prefix, key):
                    if match(entry.obj):
                        yield WatchEvent("ADDED", entry.revision, entry.raw, entry.obj)
                if initial:
                    yield WatchEvent("BOOKMARK", floor, initial_end=True)
            else:
                floor = max(start, self.store.committed)
                replay = (self.store.key_history(key, start, self.store.committed) if key is not None
                          else self.store.history(prefix, start, self.store.committed))
                for past in replay:
                    out = translate(past, match)
                    if out is not None:
                        yield out
                    await asyncio.sleep(0)
            while True:
                try:
                    ev = await asyncio.wait_for(sub.queue.get(), bookmark_every)
                except TimeoutError:
                    yield WatchEvent("BOOKMARK", max(floor, self.store.committed))
                    continue
                if ev is None:
                    if sub.overflowed:
                        raise Overflow()
                    return
                if ev.revision <= floor:
                    continue
                out = translate(ev, match)
                if out is not None:
                    yield out
        finally:
            self.subs.discard(sub)

    def _current(self, prefix: str, key: str | None) -> Iterator[tuple[str, Entry]]:
        if key is None:
            yield from self.store.list_current(prefix)
        elif (entry := self.store.get(key)) is not None:
            yield key, entry


def translate(ev: Event, match: Callable[[dict[str, Any]], bool]) -> WatchEvent | None:
    now = match(ev.obj)
    if ev.type == "ADDED":
        return WatchEvent("ADDED", ev.revision, ev.raw, ev.obj) if now else None
    if ev.type == "DELETED":
        return WatchEvent("DELETED", ev.revision, ev.raw, ev.obj) if now else None
    before = ev.prev is not None and match(ev.prev)
    if now and before:
        return WatchEvent("MODIFIED", ev.revision, ev.raw, ev.obj)
    if now:
        return WatchEvent("ADDED", ev.revision, ev.raw, ev.obj)
    if before:
        return WatchEvent("DELETED", ev.revision, ev.raw, ev.obj)
    return None
