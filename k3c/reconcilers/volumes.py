"""The Volume reconciler: a named volume is a directory under ``<root-dir>/volumes/<namespace>/<name>``.

A Volume is claimed by a node like a LocalContainer (``spec.nodeName`` or first operator to write
``status.node``) and protected by the finalizer ``k3c.io/volume``. Deleting one that a LocalContainer
still mounts is refused, as `docker volume rm` refuses: the object waits (phase InUse, a message naming
the users) until they are gone, unless annotated ``k3c.io/force-delete: "true"``. Then the directory goes.
Containers that mount a volume name that does not exist create the Volume themselves
(:meth:`VolumeReconciler.ensure`), like `docker run -v name:/path`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from k3c.api import FORCE_DELETE_ANNOTATION, LOCAL_CONTAINERS, VOLUME_FINALIZER, VOLUMES
from k3c.apierrors import AlreadyExists
from k3c.reconcilers.cache import ObjectCache
from k3c.reconcilers.claims import NodeClaim
from k3c.reconcilers.kube import Kube, Ref
from k3c.reconcilers.statuses import VolumeStatus
from k3c.timefmt import parse_time

log = logging.getLogger(__name__)

#: How long a new container waits for a Volume it mounts to be created by whoever applies it (seconds).
APPLY_GRACE = 2.0


def volume_dir(root_dir: Path, namespace: str, name: str) -> Path:
    return root_dir / "volumes" / namespace / name


def _ref(obj: dict[str, Any]) -> Ref:
    meta = obj["metadata"]
    return Ref(VOLUMES, meta.get("namespace", "default"), meta["name"])


def mounts_volume(container: dict[str, Any], namespace: str, name: str) -> bool:
    if container["metadata"].get("namespace", "default") != namespace:
        return False
    return any(v.get("volume") == name for v in container.get("spec", {}).get("volumes") or [])


class VolumeReconciler:
    def __init__(self, kube: Kube, node: str, root_dir: Path, cache: ObjectCache, containers: ObjectCache,
                 schedule: Callable[[str, float], None]) -> None:
        self.kube = kube
        self.node = node
        self.root_dir = root_dir
        self.cache = cache
        self.containers = containers
        self.schedule = schedule
        self.claims: NodeClaim[VolumeStatus] = NodeClaim(kube, cache, schedule, node, VOLUME_FINALIZER, _ref)

    async def ensure(self, namespace: str, name: str, user_created: str | None = None) -> Path:
        """The directory of volume ``name``, creating the Volume object (ours) if there is none.

        ``user_created``: the creationTimestamp of the container that mounts it. A container younger than
        :data:`APPLY_GRACE` waits that long for its Volume to appear first: ``kubectl apply`` of a directory
        creates the objects one by one, in name order, and a Volume made here meanwhile would make its own
        create fail with AlreadyExists. (k3c's CLI and Docker API create the Volume before the container.)"""
        path = volume_dir(self.root_dir, namespace, name)
        path.mkdir(parents=True, exist_ok=True)
        if not self._known(namespace, name) and not await self._appears(namespace, name, user_created):
            obj = {"apiVersion": VOLUMES.api_version, "kind": VOLUMES.kind,
                   "metadata": {"name": name, "namespace": namespace, "finalizers": [VOLUME_FINALIZER]},
                   "spec": {"driver": "local", "nodeName": self.node}}
            with contextlib.suppress(AlreadyExists):
                self.cache.put(await self.kube.create(VOLUMES, namespace, obj))
        return path

    def _known(self, namespace: str, name: str) -> bool:
        return any(v["metadata"]["name"] == name and v["metadata"].get("namespace") == namespace for v in self.cache)

    async def _appears(self, namespace: str, name: str, user_created: str | None) -> bool:
        """Whether the Volume exists, or is created before the young container's grace ends."""
        born = parse_time(user_created)
        # creationTimestamp has whole seconds: the container may be up to 1 s older than it says
        deadline = (born.timestamp() + 1.0 if born else 0.0) + APPLY_GRACE
        while True:
            if self._known(namespace, name) or await self.kube.get(Ref(VOLUMES, namespace, name)) is not None:
                return True
            if time.time() >= deadline:
                return False
            await asyncio.sleep(min(0.2, max(0.0, deadline - time.time())))

    def users_changed(self, container: dict[str, Any]) -> None:
        """A container that mounts volumes changed or went: their in-use state may have changed."""
        ns = container["metadata"].get("namespace", "default")
        names = {v.get("volume") for v in container.get("spec", {}).get("volumes") or [] if v.get("volume")}
        for vol in self.cache:
            if vol["metadata"].get("namespace", "default") == ns and vol["metadata"]["name"] in names:
                self.schedule(vol["metadata"]["uid"], 0.0)

    async def reconcile(self, uid: str) -> float | None:
        return await self.claims.reconcile(uid, self._ensure, self._finalize)

    async def _ensure(self, obj: dict[str, Any]) -> float | None:
        meta = obj["metadata"]
        path = volume_dir(self.root_dir, meta.get("namespace", "default"), meta["name"])
        await asyncio.to_thread(path.mkdir, parents=True, exist_ok=True)
        users = self._users(obj)
        status: VolumeStatus = {"mountpoint": str(path), "node": self.node, "phase": "InUse" if users else "Ready",
                                "usedBy": users, "message": ""}
        await self.claims.write_status(obj, status)
        return None

    def _users(self, obj: dict[str, Any]) -> list[str]:
        ns, name = obj["metadata"].get("namespace", "default"), obj["metadata"]["name"]
        return sorted(c["metadata"]["name"] for c in self.containers if mounts_volume(c, ns, name))

    async def _finalize(self, obj: dict[str, Any]) -> float | None:
        meta = obj["metadata"]
        ns, name = meta.get("namespace", "default"), meta["name"]
        force = (meta.get("annotations") or {}).get(FORCE_DELETE_ANNOTATION) == "true"
        # The cache may not hold every container yet right after a start: ask the API server itself.
        users = sorted(c["metadata"]["name"] for c in await self.kube.list_objects(LOCAL_CONTAINERS, ns)
                       if mounts_volume(c, ns, name))
        if users and not force:
            await self.claims.write_status(obj, {"phase": "InUse", "usedBy": users,
                                                 "message": f"volume is in use by {', '.join(users)}: remove "
                                                            f"them first or annotate {FORCE_DELETE_ANNOTATION}=true"})
            return 30.0
        path = volume_dir(self.root_dir, ns, name)
        await asyncio.to_thread(shutil.rmtree, path, True)
        return None if await self.claims.release(obj) else 0.1
