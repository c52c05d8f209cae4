"""A small asyncio Kubernetes client for the reconcilers: status writes, claims, finalizers, Events.

kopf delivers the watch events, but the reconcilers write on their own schedule (e.g. the moment containerd
reports an exit), so they need a client of their own. One kept-alive aiohttp session, JSON only, and just
the verbs the reconcilers use, on :class:`k3c.kubeasync.AsyncKube` (kubeconfig rules as the CLI's, a failure
Status raised as its :mod:`k3c.apierrors` class).
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from k3c import api
from k3c.apierrors import Conflict, NotFound
from k3c.kubeasync import AsyncKube
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


class Kube(AsyncKube):
    """The reconcilers' verbs on one kubeconfig's API session. Create inside the event loop that uses it."""

    def __init__(self, kubeconfig: str, timeout: float = 30.0) -> None:
        super().__init__(kubeconfig, timeout, user_agent="k3c-operator")

    async def get(self, ref: Ref) -> dict[str, Any] | None:
        return await self.get_object(ref.path())

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
            "metadata": {"name": f"{meta['name']}.{uuid.uuid4().hex[:16]}", "namespace": ns,
                         **_event_annotations(obj)},
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


def _event_annotations(obj: dict[str, Any]) -> dict[str, Any]:
    """The object's docker name and image on its Event: what `docker events --since` shows of a container
    whose object is gone by then (a `run --rm`), when only its Events are left."""
    notes = {api.NAME_ANNOTATION: (obj["metadata"].get("annotations") or {}).get(api.NAME_ANNOTATION),
             api.EVENT_IMAGE_ANNOTATION: (obj.get("spec") or {}).get("image")}
    kept = {k: str(v) for k, v in notes.items() if v}
    return {"annotations": kept} if kept else {}
