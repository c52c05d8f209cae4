"""The stream server's :class:`~k3c.apiserver.subresources.ParentReader`: parents read through a Kubernetes client.

The embedded server reads a subresource's parent from its own storage; a node agent has only the API server,
so each call is a request: ``get`` a GET, ``revision`` a one-item LIST's resourceVersion, ``changes`` a watch
of the one object. ``last_state`` (a ``--rm`` container's final object, after it is gone) is the object if
it was written after ``since``, else a watch from ``since`` replays its history, as far as the server still
has it, until the watch's short timeout ends it. A refusal of the API server (the agent's own permissions)
is answered as its Status, so the caller sees what the agent may not do.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from k3c import api, apierrors
from k3c.apiserver import errors
from k3c.apiserver.subresources import ParentReader
from k3c.kubeasync import AsyncKube

#: How long ``last_state`` lets a watch replay history (kube sends the replay at once).
REPLAY_SECONDS = 1


def status_error(err: apierrors.APIError) -> errors.APIError:
    """The API server's answer as this server's Status (same code, reason and message)."""
    return errors.APIError(err.code, err.reason or "InternalError", err.message, err.details or None)


class _WatchChanges:
    """:class:`~k3c.apiserver.subresources.Changes` set by a background watch of one object."""

    def __init__(self) -> None:
        self.event = asyncio.Event()

    async def wait(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self.event.wait(), timeout)
        except TimeoutError:
            return False
        self.event.clear()
        return True


class KubeReader(ParentReader):
    """Objects of one k3c resource type, read from the cluster's API server."""

    def __init__(self, kube: AsyncKube, resource: api.Resource) -> None:
        self.kube = kube
        self.resource = resource

    async def get(self, namespace: str | None, name: str) -> dict[str, Any]:
        try:
            obj = await self.kube.get_object(self.resource.path(namespace, name))
        except apierrors.APIError as err:
            raise status_error(err) from None
        if obj is None:
            raise errors.not_found(self.resource.plural, self.resource.group, name)
        return obj

    async def revision(self) -> str:
        try:
            doc = await self.kube.request("GET", self.resource.path(), params={"limit": "1"})
        except apierrors.APIError as err:
            raise status_error(err) from None
        return str((doc.get("metadata") or {}).get("resourceVersion") or "0")

    async def last_state(self, namespace: str | None, name: str, since: str) -> dict[str, Any] | None:
        with contextlib.suppress(errors.APIError):
            obj = await self.get(namespace, name)
            return obj if _after(obj, since) else None
        last = None
        params = {"resourceVersion": since, "fieldSelector": f"metadata.name={name}",
                  "timeoutSeconds": str(REPLAY_SECONDS)}
        try:
            async for event in self.kube.watch(self.resource.path(namespace), params):
                if event.get("type") in ("ADDED", "MODIFIED", "DELETED"):
                    last = event.get("object")
        except apierrors.APIError:  # (410: that history is gone)
            return None
        return last

    @contextlib.asynccontextmanager
    async def changes(self, namespace: str | None, name: str) -> AsyncIterator[_WatchChanges]:
        changes = _WatchChanges()
        since = await self.revision()

        async def watch() -> None:
            params = {"resourceVersion": since, "fieldSelector": f"metadata.name={name}"}
            while True:
                with contextlib.suppress(apierrors.APIError, OSError):
                    async for event in self.kube.watch(self.resource.path(namespace), params):
                        obj = event.get("object") or {}
                        if rv := (obj.get("metadata") or {}).get("resourceVersion"):
                            params["resourceVersion"] = str(rv)
                        if event.get("type") in ("ADDED", "MODIFIED", "DELETED"):
                            changes.event.set()
                await asyncio.sleep(1.0)

        task = asyncio.ensure_future(watch())
        try:
            yield changes
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _after(obj: dict[str, Any], since: str) -> bool:
    """Whether ``obj`` was written after resourceVersion ``since`` (resourceVersions compare as numbers on
    etcd and on k3c's server; anything else counts as written after)."""
    rv = str((obj.get("metadata") or {}).get("resourceVersion") or "")
    return not (rv.isdigit() and since.isdigit()) or int(rv) > int(since)
