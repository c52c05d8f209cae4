"""The names and the listeners kept current from the API server: one watch of LocalContainers and Networks.

The operator runs one :class:`NameFeed` (started by its assembly). It lists both kinds in every namespace,
fills the :class:`~k3c.netdns.names.NameTable` and starts a :class:`~k3c.netdns.server.NetworkResolver`
on the gateway of each network this node serves (:func:`~k3c.netdns.names.served_network`), then follows
both watches: a container's change (started, stopped, attached, removed) is in the table as soon as its
watch event arrives, a network's starts, moves or stops its listener. A listener that cannot bind (the
address taken by another DNS server) is logged and tried again every few seconds.

The loop is its own supervisor: a failed or refused watch (410 Gone after a long outage included), an
error in a handler, anything but cancellation, is logged, and the feed lists everything anew after a
back-off, rebuilding the table from scratch, so nothing missed meanwhile stays wrong. The listeners keep
answering from the last table while it does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from k3c import api
from k3c.kubeasync import AsyncKube
from k3c.netdns.names import NameTable, NetKey, ServedNetwork, key_of, served_network
from k3c.netdns.server import DNS_PORT, TTL, Answerer, NetworkResolver
from k3c.netdns.upstream import Upstream

log = logging.getLogger(__name__)

#: Seconds before each new list after a failure: 0.5 doubling to 8, back to the start once one succeeds.
RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0)
#: Seconds between attempts to bind a listener that could not bind.
BIND_RETRY = 5.0
#: The server ends each watch after this long (the feed watches again from where it was).
WATCH_SECONDS = 300

Handler = Callable[[str, dict[str, Any]], Awaitable[None]]


class NameFeed:
    """The table and the listeners of one node, fed by a watch (see the module docstring)."""

    def __init__(self, kube: AsyncKube, node: str, *, port: int = DNS_PORT, upstream: Upstream | None = None,
                 ttl: int = TTL, delays: Sequence[float] = RETRY_DELAYS) -> None:
        self.kube = kube
        self.node = node
        self.port = port
        self.upstream = upstream or Upstream()
        self.ttl = ttl
        self.delays = tuple(delays)
        self.table = NameTable()
        self.networks: dict[NetKey, dict[str, Any]] = {}
        self.listeners: dict[NetKey, tuple[ServedNetwork, NetworkResolver]] = {}
        self._unbound: set[NetKey] = set()
        self._task: asyncio.Task[None] | None = None
        self._listed = False  #: whether the last attempt got as far as watching (back-off starts over)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="netdns-feed")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for key in list(self.listeners):
            await self._stop_listener(key)

    async def _run(self) -> None:
        attempt = 0
        while True:
            self._listed = False
            try:
                await self._list_and_watch()
            except Exception as err:
                while isinstance(err, ExceptionGroup):  # (a watch of the task group failed: say which way)
                    err = err.exceptions[0]
                log.warning("DNS names: watch failed (%s: %s); listing again", type(err).__name__, err)
            attempt = 0 if self._listed else attempt + 1
            await asyncio.sleep(self.delays[min(attempt, len(self.delays) - 1)])

    async def _list_and_watch(self) -> None:
        containers = await self.kube.request("GET", api.LOCAL_CONTAINERS.path())
        networks = await self.kube.request("GET", api.NETWORKS.path())
        self.table.replace(containers.get("items") or [])
        self.networks = {key_of(n): n for n in networks.get("items") or []}
        await self.reconcile()
        self._listed = True
        async with asyncio.TaskGroup() as group:
            group.create_task(self._follow(api.LOCAL_CONTAINERS, _version(containers), self._on_container))
            group.create_task(self._follow(api.NETWORKS, _version(networks), self._on_network))
            group.create_task(self._retry_binds())

    async def _follow(self, resource: api.Resource, version: str, handle: Handler) -> None:
        """Watch from ``version`` on, again each time the server ends the watch; raises on an ERROR event."""
        while True:
            params = {"resourceVersion": version, "allowWatchBookmarks": "true",
                      "timeoutSeconds": str(WATCH_SECONDS)}
            async for event in self.kube.watch(resource.path(), params):
                kind, obj = str(event.get("type")), event.get("object") or {}
                if kind == "ERROR":
                    raise RuntimeError(f"{resource.plural} watch: {obj.get('message') or obj}")
                version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
                if kind != "BOOKMARK":
                    await handle(kind, obj)

    async def _on_container(self, kind: str, obj: dict[str, Any]) -> None:
        if kind == "DELETED":
            self.table.remove(str((obj.get("metadata") or {}).get("uid") or ""))
        else:
            self.table.put(obj)

    async def _on_network(self, kind: str, obj: dict[str, Any]) -> None:
        if kind == "DELETED":
            self.networks.pop(key_of(obj), None)
        else:
            self.networks[key_of(obj)] = obj
        await self.reconcile()

    async def _retry_binds(self) -> None:
        while True:
            await asyncio.sleep(BIND_RETRY)
            if self._unbound:
                await self.reconcile()

    async def reconcile(self) -> None:
        """A listener on each served network's gateway, and none elsewhere."""
        wanted = {k: s for k, s in ((k, served_network(n, self.node)) for k, n in self.networks.items()) if s}
        for key, (served, _) in list(self.listeners.items()):
            if wanted.get(key) != served:
                await self._stop_listener(key)
        self._unbound &= set(wanted)
        for key, served in wanted.items():
            if key not in self.listeners:
                await self._start_listener(served)

    async def _start_listener(self, served: ServedNetwork) -> None:
        answerer = Answerer(served.key, self.table, self.upstream, self.ttl)
        resolver = NetworkResolver(answerer, str(served.gateway), self.port)
        try:
            await resolver.start()
        except OSError as err:
            if served.key not in self._unbound:
                log.warning("DNS for network %s/%s: cannot listen on %s:%d (%s); trying again", *served.key,
                            served.gateway, self.port, err)
            self._unbound.add(served.key)
            return
        self._unbound.discard(served.key)
        self.listeners[served.key] = (served, resolver)
        log.info("DNS for network %s/%s on %s:%d", *served.key, served.gateway, self.port)

    async def _stop_listener(self, key: NetKey) -> None:
        _, resolver = self.listeners.pop(key)
        await resolver.close()
        log.info("DNS for network %s/%s stopped", *key)


def _version(listing: Mapping[str, Any]) -> str:
    return str((listing.get("metadata") or {}).get("resourceVersion") or "0")
