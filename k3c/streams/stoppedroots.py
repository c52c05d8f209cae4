"""A stopped container's filesystem for `cp`, `diff` and `export`: the snapshot its changes are in, on the host.

docker's `cp`, `diff` and `export` work on a container that is not running. A running container's root is
reached through its init process (:mod:`k3c.streams.archive`); a stopped one has none, so its files are read
from the containerd snapshot holding its writable layer over its image's layers: the exited CRI container's
own while the operator has not removed it yet, else the object's kept layer
(:mod:`k3c.cri.writablelayers`), prepared empty on the image's layers for a container that never ran.
:meth:`StoppedRoots.mounted` mounts it (overlay, ``nodev``/``nosuid``) on a private directory for the
request's duration; what `cp` writes there is in the container at its next start, as in docker.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from k3c.apiserver import errors
from k3c.cri.runtime import CRIClient
from k3c.cri.snapshotmounts import mount, unmount
from k3c.cri.snapshots import Mount
from k3c.cri.writablelayers import WritableLayers
from k3c.dockerid import object_id

from .containers import RuntimeContainer


class StoppedRoots:
    """Stopped containers' snapshots, found and mounted one request at a time per container."""

    def __init__(self, cri: CRIClient, layers: WritableLayers) -> None:
        self.cri = cri
        self.layers = layers
        self._locks: dict[str, asyncio.Lock] = {}  #: one per container ever mounted here (a few bytes each)

    async def mounts(self, obj: dict[str, Any], rc: RuntimeContainer | None) -> list[Mount]:
        """How the stopped container's root is mounted (its writable layer over its image's layers)."""
        if rc is not None and rc.snapshot_key:  # its exited container is still there
            return await self.layers.snapshots.mounts(rc.snapshot_key)
        uid = obj["metadata"]["uid"]
        kept = await self.layers.mounts(uid)
        if kept is not None:
            return kept
        return await self.layers.ensure(uid, await self._image_layers(obj))

    @staticmethod
    def mountpoints(rc: RuntimeContainer | None) -> frozenset[str]:
        """Where the runtime mounted things into the exited container (its empty mount points are no change)."""
        if rc is None:
            return frozenset()
        return frozenset(str(m.get("destination") or "") for m in rc.spec.get("mounts") or [])

    @contextlib.asynccontextmanager
    async def mounted(self, obj: dict[str, Any], rc: RuntimeContainer | None, writable: bool) -> AsyncIterator[Path]:
        """The stopped container's root, mounted on a private directory while the block runs."""
        uid = obj["metadata"]["uid"]
        async with self._locks.setdefault(uid, asyncio.Lock()):
            mounts = await self.mounts(obj, rc)
            where = Path(tempfile.mkdtemp(prefix="k3c-stopped-"))
            try:
                try:
                    await asyncio.to_thread(mount, mounts, where, not writable)
                except OSError as err:
                    raise errors.internal(f"cannot reach the container's filesystem: {err}") from None
                try:
                    yield where
                finally:
                    await asyncio.to_thread(unmount, where)
            finally:
                with contextlib.suppress(OSError):
                    os.rmdir(where)

    async def _image_layers(self, obj: dict[str, Any]) -> str:
        """The top layer (chain ID) of the image the container was made from; a 409 if it is not here."""
        image = str((obj.get("status") or {}).get("imageID") or (obj.get("spec") or {}).get("image") or "")
        chain = await self.cri.image_chain_id(image) if image else None
        if not chain:
            raise errors.APIError(409, "Conflict", f"Container {object_id(obj)} has no filesystem yet: its image "
                                                   f"{image or '(none)'} is not on this node")
        return chain
