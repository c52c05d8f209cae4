"""A small asyncio Kubernetes client for the reconcilers: status writes, claims, finalizers, Events.

kopf delivers the watch events, but the reconcilers write on their own schedule (e.g. the moment containerd
reports an exit), so they need a client of their own. One kept-alive aiohttp session, JSON only, and just
the verbs the reconcilers use; kubeconfig parsing is :func:`k3c.kubeclient.load`'s (same rules as the CLI),
and a failure Status is raised as its :mod:`k3c.apierrors` class, as the CLI's client raises it.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from k3c import api, kubeclient
from k3c.apierrors import Conflict, NotFound, from_status
from k3c.timefmt import now_micro, now_rfc3339

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Ref:
    """Where an object lives: enough to build its URL."""

    resource: api.Resource
    namespace: str
    name: str

    def path(self, sub: str | None = None) -> str:
        return self.resource.path(self.namespace, self.name, sub)


def ref_of(resource: api.Resource, obj: dict[str, Any]) -> Ref:
    meta = obj["metadata"]
    return Ref(resource, meta.get("namespace", ""), meta["name"])


class Kube:
    """Async JSON client bound to one kubeconfig. Create inside the event loop that uses it."""

    def __init__(self, kubeconfig: str, timeout: float = 30.0) -> None:
        self.conn = kubeclient.load(kubeconfig)
        headers = {"Accept": "application/json", "User-Agent": "k3c-operator"}
        if self.conn.token:
            headers["Authorization"] = f"Bearer {self.conn.token}"
        self.session = aiohttp.ClientSession(
            base_url=self.conn.server,
            headers=headers,
            connector=aiohttp.TCPConnector(ssl=self.conn.ssl_context, limit=32),
            timeout=aiohttp.ClientTimeout(total=timeout),
            json_serialize=lambda o: orjson.dumps(o).decode(),
        )

    async def close(self) -> None:
        await self.session.close()

    async def request(self, method: str, path: str, body: Any = None, content_type: str = "application/json",
                      params: dict[str, str] | None = None) -> dict[str, Any]:
        data = None if body is None else orjson.dumps(body)
        headers = {"Content-Type": content_type} if data is not None else None
        async with self.session.request(method, path, data=data, headers=headers, params=params) as resp:
            raw = await resp.read()
        doc = orjson.loads(raw) if raw else {}
        if resp.status >= 400:
            raise from_status(resp.status, doc, raw.decode(errors="replace"))
        return doc

    async def get(self, ref: Ref) -> dict[str, Any] | None:
        try:
            return await self.request("GET", ref.path())
        except NotFound:
            return None

    async def list_objects(self, resource: api.Resource, namespace: str | None = None) -> list[dict[str, Any]]:
        doc = await self.request("GET", resource.path(namespace))
        return list(doc.get("items") or [])

    async def create(self, resource: api.Resource, namespace: str, obj: dict[str, Any]) -> dict[str, Any]:
        return await self.request("POST", resource.path(namespace), obj)

    async def merge_patch(self, ref: Ref, patch: dict[str, Any], sub: str | None = None) -> dict[str, Any]:
        """JSON merge patch; a ``metadata.resourceVersion`` in it makes it conditional (409 if stale)."""
        return await self.request("PATCH", ref.path(sub), patch, "application/merge-patch+json")

    async def patch_status(self, ref: Ref, status: Mapping[str, Any],
                           resource_version: str | None = None) -> dict[str, Any]:
        patch: dict[str, Any] = {"status": status}
        if resource_version:
            patch["metadata"] = {"resourceVersion": resource_version}
        return await self.merge_patch(ref, patch, "status")

    async def patch_status_if_present(self, ref: Ref, status: Mapping[str, Any]) -> dict[str, Any] | None:
        """:meth:`patch_status`, or None if the object is gone: a reconciler writing the outcome of work
        that outlived its object has nothing left to tell."""
        try:
            return await self.patch_status(ref, status)
        except NotFound:
            return None

    async def delete(self, ref: Ref, uid: str | None = None) -> None:
        """Delete, optionally only that incarnation (``uid`` precondition); gone already is fine."""
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": {"uid": uid}} if uid else None
        with contextlib.suppress(NotFound, Conflict):
            await self.request("DELETE", ref.path(), body)

    async def event(self, obj: dict[str, Any], reason: str, message: str, *, warning: bool = False,
                    component: str = "k3c-operator", host: str = "") -> None:
        """Record a core/v1 Event about ``obj`` (what `kubectl describe` and `k3c events` show)."""
        meta = obj["metadata"]
        ns = meta.get("namespace") or "default"
        stamp = now_rfc3339()
        event = {
            "apiVersion": api.EVENTS.api_version,
            "kind": api.EVENTS.kind,
            "metadata": {"name": f"{meta['name']}.{uuid.uuid4().hex[:16]}", "namespace": ns},
            "involvedObject": {
                "apiVersion": obj.get("apiVersion", api.GROUP_VERSION),
                "kind": obj.get("kind", ""),
                "name": meta["name"],
                "namespace": ns,
                "uid": meta.get("uid", ""),
                "resourceVersion": meta.get("resourceVersion", ""),
            },
            "reason": reason,
            "message": message,
            "type": "Warning" if warning else "Normal",
            "source": {"component": component, "host": host},
            "reportingComponent": component,
            "reportingInstance": host,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "eventTime": now_micro(),
            "action": reason,
            "count": 1,
        }
        await self.request("POST", api.EVENTS.path(ns), event)
