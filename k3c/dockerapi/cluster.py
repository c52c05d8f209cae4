"""The API server as the Docker API reaches it: one namespace, the CLI's REST client, calls off the event loop.

Why the CLI's blocking client in threads rather than an async one: it already speaks everything k3c's
objects need (the local unix socket, kubeconfig rules, :mod:`k3c.apierrors`), and a docker request makes
a handful of calls at most. Each worker thread keeps its own connection, as ``http.client`` wants.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from k3c import kubeclient
from k3c.api import Resource
from k3c.apierrors import APIError, NotFound

T = TypeVar("T")


class Cluster:
    """The objects of one namespace (the kubeconfig context's, unless told), reached from async handlers."""

    def __init__(self, kubeconfig: Path, namespace: str | None = None) -> None:
        self.kubeconfig = kubeconfig
        self._namespace = namespace
        self._local = threading.local()

    def _client(self) -> kubeclient.Client:
        client: kubeclient.Client | None = getattr(self._local, "client", None)
        if client is None:
            client = kubeclient.Client(kubeclient.load(str(self.kubeconfig), namespace=self._namespace))
            self._local.client = client
        return client

    def connection(self) -> kubeclient.Connection:
        """Where the API server is, for the stream subresources (:mod:`k3c.dockerapi.streams`)."""
        return kubeclient.load(str(self.kubeconfig), namespace=self._namespace)

    @property
    def namespace(self) -> str:
        return self._namespace or kubeclient.load(str(self.kubeconfig)).namespace

    async def call(self, fn: Callable[[kubeclient.Client], T]) -> T:
        """``fn(client)`` in a worker thread, with that thread's client."""
        return await asyncio.to_thread(lambda: fn(self._client()))

    async def list(self, resource: Resource, namespaced: bool = True, **query: Any) -> list[dict[str, Any]]:
        """The namespace's objects of ``resource``, or all of them for a cluster-scoped one (Images)."""
        def run(c: kubeclient.Client) -> list[dict[str, Any]]:
            path = resource.path(c.conn.namespace if namespaced else None)
            items: list[dict[str, Any]] = c.get(path, **query).get("items", [])
            return items

        return await self.call(run)

    async def raw(self, path: str) -> dict[str, Any]:
        """A GET of a path that is not a namespaced resource (``/version``)."""
        return await self.call(lambda c: c.get(path))

    async def get(self, resource: Resource, name: str) -> dict[str, Any] | None:
        """The object, or None when it does not exist."""
        def run(c: kubeclient.Client) -> dict[str, Any] | None:
            try:
                return c.get(resource.path(c.conn.namespace, name))
            except NotFound as err:
                if err.details.get("name"):
                    return None
                raise

        return await self.call(run)

    async def create(self, resource: Resource, obj: dict[str, Any]) -> dict[str, Any]:
        return await self.call(lambda c: c.create(resource.path(c.conn.namespace), obj))

    async def merge_patch(self, resource: Resource, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        return await self.call(lambda c: c.merge_patch(resource.path(c.conn.namespace, name), patch))

    async def delete(self, resource: Resource, name: str) -> dict[str, Any]:
        """The API's answer to the DELETE: the object while finalizers hold it, else a Status."""
        return await self.call(lambda c: c.delete(resource.path(c.conn.namespace, name)))

    async def deleted_state(self, resource: Resource, name: str, since: str, timeout: int = 2) -> dict[str, Any] | None:
        """The object as it was when deleted: the DELETED event of a watch from resourceVersion ``since``.

        A poll can miss the last states of an object removed quickly (a `run --rm` container's exit code);
        the watch replays them. None if the watch cannot tell within ``timeout`` seconds."""
        def run(c: kubeclient.Client) -> dict[str, Any] | None:
            try:
                for event in c.watch(resource.path(c.conn.namespace), timeout=timeout + 5, resourceVersion=since,
                                     fieldSelector=f"metadata.name={name}", timeoutSeconds=timeout):
                    if event.get("type") == "DELETED":
                        obj: dict[str, Any] | None = event.get("object")
                        return obj
            except (APIError, OSError, ValueError):
                return None
            return None

        return await self.call(run)

    async def wait_for(self, resource: Resource, name: str, done: Callable[[dict[str, Any] | None], bool],
                       timeout: float) -> dict[str, Any] | None:
        """Poll the object (None once gone) until ``done`` says so; TimeoutError after ``timeout`` s.

        Polling rather than a watch keeps no worker thread blocked while a client waits."""
        deadline = time.monotonic() + timeout
        delay = 0.02
        while True:
            obj = await self.get(resource, name)
            if done(obj):
                return obj
            if time.monotonic() > deadline:
                raise TimeoutError
            await asyncio.sleep(delay)
            delay = min(0.2, delay * 1.5)
