"""The API server as the Docker API reaches it: one namespace, the CLI's REST client, calls off the event loop.

Why the CLI's blocking client in threads rather than an async one: it already speaks everything k3c's
objects need (the local unix socket, kubeconfig rules, :mod:`k3c.apierrors`), and a docker request makes
a handful of calls at most. Each worker thread keeps its own connection, as ``http.client`` wants.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from k3c import kubeclient
from k3c.api import Resource

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
