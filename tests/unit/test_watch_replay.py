"""A watch of one object by name replays that object's history alone (k3c.apiserver.watch, storage, rest).

Why it matters: `k3c rm -f` of 50 containers waits on 50 such watches at once; each used to decode every
write under the namespace since its resourceVersion (and each write's previous state), 50 × all.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from k3c.apiserver.resources import ResourceType
from k3c.apiserver.rest import ListOptions, _match_fn, watched_key
from k3c.apiserver.storage import Store
from k3c.apiserver.watch import WatchEvent, WatchHub

PREFIX = "/test.k3c.io/widgets/default/"


class CountingReads:
    """A storage transformer that counts the rows read back, per key."""

    def __init__(self) -> None:
        self.reads: Counter[str] = Counter()

    def to_storage(self, key: str, raw: bytes) -> bytes:
        return raw

    def from_storage(self, key: str, stored: bytes) -> bytes:
        self.reads[key] += 1
        return stored


def widget(name: str, size: int = 1) -> dict[str, Any]:
    return {"apiVersion": "test.k3c.io/v1", "kind": "Widget", "metadata": {"name": name, "namespace": "default"},
            "spec": {"size": size}}


def widgets() -> ResourceType:
    return ResourceType(group="test.k3c.io", version="v1", kind="Widget", plural="widgets", namespaced=True)


async def busy_namespace(store: Store) -> int:
    """web-1 and its neighbours (web-10 shares its key as a prefix) written in turn; returns the start rv."""
    start = store.revision
    for name in ("web-1", "web-10", "db"):
        await store.create(PREFIX + name, widget(name))
    for size in range(2, 6):
        for name in ("web-1", "web-10", "db"):
            await store.update(PREFIX + name, widget(name, size))
    await store.delete(PREFIX + "web-10")
    await store.delete(PREFIX + "web-1")
    return start


async def replay(hub: WatchHub, start: int, key: str | None, field_selector: str) -> list[WatchEvent]:
    match = _match_fn(widgets(), ListOptions(field_selector=field_selector))
    events = hub.watch(PREFIX, match, start, key=key)
    out: list[WatchEvent] = []
    try:
        while True:
            out.append(await asyncio.wait_for(anext(events), 0.2))
    except TimeoutError:
        pass
    finally:
        await events.aclose()
    return out


def test_a_name_pinned_watch_replays_its_own_rows_alone(tmp_path: Path) -> None:
    counting = CountingReads()

    async def run() -> tuple[list[WatchEvent], list[WatchEvent]]:
        store = Store(tmp_path / "state.db", transformer=counting)
        hub = WatchHub(store)
        try:
            start = await busy_namespace(store)
            everything = await replay(hub, start, None, "metadata.name=web-1")
            counting.reads.clear()
            pinned = await replay(hub, start, PREFIX + "web-1", "metadata.name=web-1")
            return everything, pinned
        finally:
            store.close()

    everything, pinned = asyncio.run(run())
    assert [(e.type, e.revision) for e in pinned] == [(e.type, e.revision) for e in everything]
    assert [e.type for e in pinned] == ["ADDED"] + ["MODIFIED"] * 4 + ["DELETED"]
    assert {e.obj["metadata"]["name"] for e in pinned} == {"web-1"}
    assert set(counting.reads) == {PREFIX + "web-1"}, counting.reads  # neither web-10 nor db was decoded


def test_a_name_pinned_watch_gets_its_objects_live_events_only(tmp_path: Path) -> None:
    async def run() -> list[tuple[str, str]]:
        store = Store(tmp_path / "state.db")
        hub = WatchHub(store)
        try:
            await store.create(PREFIX + "web-1", widget("web-1"))
            match = _match_fn(widgets(), ListOptions(field_selector="metadata.name=web-1"))
            events = hub.watch(PREFIX, match, store.committed, key=PREFIX + "web-1")
            first = asyncio.ensure_future(anext(events))
            await asyncio.sleep(0.05)  # the watch is subscribed before the writes
            await store.create(PREFIX + "web-10", widget("web-10"))
            await store.update(PREFIX + "web-1", widget("web-1", 2))
            await store.delete(PREFIX + "web-1")
            seen = [await asyncio.wait_for(first, 1), await asyncio.wait_for(anext(events), 1)]
            await events.aclose()
            return [(e.type, e.obj["metadata"]["name"]) for e in seen]
        finally:
            store.close()

    assert asyncio.run(run()) == [("MODIFIED", "web-1"), ("DELETED", "web-1")]


@pytest.mark.parametrize(("namespace", "selector", "key"), [
    ("default", "metadata.name=web-1", PREFIX + "web-1"),
    ("default", "metadata.name==web-1,spec.size=2", PREFIX + "web-1"),
    (None, "metadata.name=web-1", None),  # every namespace: one name, several keys
    ("default", "metadata.name!=web-1", None),
    ("default", "", None),
])
def test_watched_key(namespace: str | None, selector: str, key: str | None) -> None:
    assert watched_key(widgets(), namespace, ListOptions(field_selector=selector)) == key


def test_watched_key_of_a_cluster_scoped_kind() -> None:
    nodes = ResourceType(group="test.k3c.io", version="v1", kind="Gadget", plural="gadgets", namespaced=False)
    assert watched_key(nodes, None, ListOptions(field_selector="metadata.name=g")) == "/test.k3c.io/gadgets/g"
