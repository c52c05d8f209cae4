"""The API server as the Docker API reaches it: one namespace, an asyncio client on the local socket.

The verbs every docker request makes (get, list, create, patch, delete, waiting for the operator) go through
:class:`k3c.kubeasync.AsyncKube` on the API server's unix socket, as the CLI's client goes: no thread per
call, and waiting for the operator is a watch, so a reply leaves as soon as the object changes (a poll with
backoff added up to 0.2 s to every `docker run`). The few rarer calls written against the CLI's blocking
client (pull and push progress, image tags) still run it in a worker thread through :meth:`Cluster.call`.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncGenerator, Callable
from pathlib import Path
from typing import Any, TypeAlias, TypeVar

import aiohttp

from k3c import dockerid, kubeclient
from k3c.api import LOCAL_CONTAINERS, Resource
from k3c.apierrors import APIError, Gone, NotFound
from k3c.kubeasync import AsyncKube

T = TypeVar("T")
Objects: TypeAlias = list[dict[str, Any]]  # (the class's own `list` method shadows the builtin in its body)

MERGE_PATCH = "application/merge-patch+json"
#: connections to the API server at once: every client waiting for the operator holds one (a watch), and
#: `docker rm -f` of many sends its removals all together
CONNECTIONS = 512
#: a wait longer than this re-reads the object and watches again
WATCH_SECONDS = 300.0


class Cluster:
    """The objects of one namespace (the kubeconfig context's, unless told), reached from async handlers."""

    def __init__(self, kubeconfig: Path, namespace: str | None = None,
                 store_revision: Callable[[], int] | None = None) -> None:
        """``store_revision``: the embedded API server's current revision where `k3c daemon` runs it in this
        process, what :meth:`revision` would otherwise ask it for (objects are still only read through it)."""
        self.kubeconfig = kubeconfig
        self._store_revision = store_revision
        self._namespace = namespace
        self._local = threading.local()
        self._async: AsyncKube | None = None
        #: docker IDs of the containers seen in answers, to their object names: a lookup by ID (what the docker
        #: CLI sends after `create`, or `ps -q` gives) is one GET instead of a list of every container
        self.container_names: dict[str, str] = {}
        #: the last full list of each collection path, with the store's revision it was taken at (snapshot())
        self._snapshots: dict[str, tuple[str, list[dict[str, Any]]]] = {}

    def _client(self) -> kubeclient.Client:
        client: kubeclient.Client | None = getattr(self._local, "client", None)
        if client is None:
            client = kubeclient.Client(kubeclient.load(str(self.kubeconfig), namespace=self._namespace))
            self._local.client = client
        return client

    def _kube(self) -> AsyncKube:
        """The asyncio client, made on first use inside the serving event loop (aiohttp wants that)."""
        if self._async is None:
            self._async = AsyncKube(str(self.kubeconfig), user_agent="k3c-docker-api", namespace=self._namespace,
                                    local_socket=True, connections=CONNECTIONS)
        return self._async

    async def close(self) -> None:
        kube, self._async = self._async, None
        if kube is not None:
            await kube.close()

    def connection(self) -> kubeclient.Connection:
        """Where the API server is, for the stream subresources (:mod:`k3c.dockerapi.streams`)."""
        return kubeclient.load(str(self.kubeconfig), namespace=self._namespace)

    @property
    def namespace(self) -> str:
        return self._namespace or self._kube().conn.namespace

    def _path(self, resource: Resource, name: str | None = None, namespaced: bool = True) -> str:
        return resource.path(self.namespace if namespaced else None, name)

    async def call(self, fn: Callable[[kubeclient.Client], T]) -> T:
        """``fn(client)`` in a worker thread, with that thread's blocking client."""
        return await asyncio.to_thread(lambda: fn(self._client()))

    async def list(self, resource: Resource, namespaced: bool = True, **query: Any) -> list[dict[str, Any]]:
        """The namespace's objects of ``resource``, or all of them for a cluster-scoped one (Images)."""
        params = {k: str(v) for k, v in query.items()}
        doc = await self._kube().request("GET", self._path(resource, namespaced=namespaced), params=params or None)
        items: list[dict[str, Any]] = doc.get("items", [])
        if resource == LOCAL_CONTAINERS and not query:
            self.container_names = {dockerid.object_id(o): o["metadata"]["name"] for o in items}
        return items

    async def revision(self) -> str:
        """The store's revision now: the resourceVersion of a LIST of one container, which the API server
        gives for the whole store (kube-apiserver: etcd's), so the same answer means nothing was written in
        between. Asked after a request arrived, it covers every write acknowledged before."""
        if self._store_revision is not None:
            return str(self._store_revision())
        doc = await self._kube().request("GET", self._path(LOCAL_CONTAINERS), params={"limit": "1"})
        return str((doc.get("metadata") or {}).get("resourceVersion") or "")

    async def snapshot(self, resource: Resource, revision: str, namespaced: bool = True) -> Objects:
        """All objects of ``resource``, as :meth:`list`: the previous full list again while the store is
        still at the revision it was taken at (``revision`` from :meth:`revision`), else a new one. `docker
        ps` asks this on every call, and the list of every container was most of its time (the JSON of
        50 containers is ~130 KB). The items are shared between calls: read them, never change them."""
        path = self._path(resource, namespaced=namespaced)
        kept = self._snapshots.get(path)
        if kept is not None and revision and kept[0] == revision:
            return kept[1]
        doc = await self._kube().request("GET", path)
        items: Objects = doc.get("items", [])
        self._snapshots[path] = (str((doc.get("metadata") or {}).get("resourceVersion") or ""), items)
        if resource == LOCAL_CONTAINERS:
            self.container_names = {dockerid.object_id(o): o["metadata"]["name"] for o in items}
        return items

    async def raw(self, path: str) -> dict[str, Any]:
        """A GET of a path that is not a namespaced resource (``/version``)."""
        return await self._kube().request("GET", path)

    async def get(self, resource: Resource, name: str) -> dict[str, Any] | None:
        """The object, or None when it does not exist."""
        try:
            return await self._kube().request("GET", self._path(resource, name))
        except NotFound as err:
            if err.details.get("name"):
                return None
            raise

    async def create(self, resource: Resource, obj: dict[str, Any]) -> dict[str, Any]:
        created = await self._kube().request("POST", self._path(resource), obj)
        if resource == LOCAL_CONTAINERS:
            self.container_names[dockerid.object_id(created)] = created["metadata"]["name"]
        return created

    async def merge_patch(self, resource: Resource, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        return await self._kube().request("PATCH", self._path(resource, name), patch, MERGE_PATCH)

    async def delete(self, resource: Resource, name: str) -> dict[str, Any]:
        """The API's answer to the DELETE: the object while finalizers hold it, else a Status."""
        return await self._kube().request("DELETE", self._path(resource, name))

    async def wait_for(self, resource: Resource, name: str, done: Callable[[dict[str, Any] | None], bool],
                       timeout: float) -> dict[str, Any] | None:
        """The object (None once gone) as soon as ``done`` says so; TimeoutError after ``timeout`` s.

        A GET, then a watch of that one object from the GET's resourceVersion, so no change is missed and
        none is waited for longer than the API server takes to send it."""
        deadline = time.monotonic() + timeout
        async with asyncio.timeout(None if timeout == float("inf") else timeout):
            while True:
                obj = await self.get(resource, name)
                if done(obj):
                    return obj
                if obj is None:  # gone, and the caller waits for it to come back: look again shortly
                    await asyncio.sleep(0.1)
                    continue
                # closed at once when done: an abandoned watch would hold its connection until collected
                seconds = min(WATCH_SECONDS, deadline - time.monotonic())
                async with contextlib.aclosing(self._changes(resource, obj, seconds)) as changes:
                    async for now in changes:
                        if done(now):
                            return now

    async def _changes(self, resource: Resource, obj: dict[str, Any],
                       seconds: float) -> AsyncGenerator[dict[str, Any] | None, None]:
        """The object's states after ``obj`` (None once deleted) for about ``seconds``; it ends early when
        the watch expires or is refused, for the caller to read the object again."""
        name = obj["metadata"]["name"]
        params = {"fieldSelector": f"metadata.name={name}", "timeoutSeconds": str(max(1, int(seconds) + 1)),
                  "resourceVersion": obj["metadata"]["resourceVersion"]}
        try:
            async with contextlib.aclosing(self._kube().watch(self._path(resource), params)) as events:
                async for event in events:
                    kind, now = event.get("type"), event.get("object")
                    if kind == "DELETED":
                        yield None
                    elif kind in ("ADDED", "MODIFIED") and isinstance(now, dict):
                        yield now
                    elif kind == "ERROR":
                        return
        except Gone:
            return

    async def deleted_state(self, resource: Resource, name: str, since: str, timeout: int = 2) -> dict[str, Any] | None:
        """The object as it was when deleted: the DELETED event of a watch from resourceVersion ``since``.

        A GET can miss the last states of an object removed quickly (a `run --rm` container's exit code);
        the watch replays them. None if the watch cannot tell within ``timeout`` seconds."""
        params = {"fieldSelector": f"metadata.name={name}", "timeoutSeconds": str(timeout), "resourceVersion": since}
        try:
            async with asyncio.timeout(timeout + 5), \
                    contextlib.aclosing(self._kube().watch(self._path(resource), params)) as events:
                async for event in events:
                    if event.get("type") == "DELETED":
                        obj: dict[str, Any] | None = event.get("object")
                        return obj
        except (APIError, OSError, ValueError, TimeoutError, aiohttp.ClientError):
            return None
        return None
