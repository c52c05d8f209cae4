"""ImagePush objects: one push per generation of the object, like a Job, with per-layer progress in status.

Level-based: a reconcile compares ``metadata.generation`` with ``status.observedGeneration`` and the phase;
a generation that has not Succeeded or Failed gets a push (re-running a push after an operator restart is
harmless: the registry already has what was sent, so those blobs are skipped). The push runs as a task so
that deleting the object cancels it. Progress is written at most every :data:`PROGRESS_INTERVAL` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from k3c.api import IMAGE_PUSHES
from k3c.cri.errors import RuntimeCallError
from k3c.cri.imagestore import ContainerdImages
from k3c.distribution.errors import RegistryError
from k3c.distribution.push import BlobProgress, push_image
from k3c.oci.reference import InvalidReference, parse
from k3c.reconcilers.cache import observe_by_name
from k3c.reconcilers.kube import Kube, Ref
from k3c.reconcilers.registryaccess import RegistryAccess, SecretRef
from k3c.reconcilers.statuses import ImagePushStatus, LayerProgress
from k3c.timefmt import now_rfc3339
from k3c.units import human_size

log = logging.getLogger(__name__)

#: Seconds between progress writes: often enough for a live bar, rare enough to leave the CPU to the push.
PROGRESS_INTERVAL = 0.5
DONE = ("Succeeded", "Failed")


@dataclass
class PushEnv:
    kube: Kube
    store: ContainerdImages
    access: RegistryAccess
    node: str
    on_finished: Callable[[dict[str, Any]], None] = lambda obj: None


class ImagePushes:
    """The ImagePush reconciler; ``objects`` is the watch cache by name."""

    def __init__(self, env: PushEnv) -> None:
        self.env = env
        self.objects: dict[str, dict[str, Any]] = {}
        self._tasks: dict[str, tuple[int, asyncio.Task[None]]] = {}

    def observe(self, event_type: str | None, obj: dict[str, Any]) -> str:
        return observe_by_name(self.objects, event_type, obj)

    async def reconcile(self, name: str) -> float | None:
        obj = self.objects.get(name)
        running = self._tasks.get(name)
        if obj is None or obj["metadata"].get("deletionTimestamp"):
            if running is not None:
                running[1].cancel()
            return None
        spec, st = obj.get("spec") or {}, obj.get("status") or {}
        node = self.env.node
        if (spec.get("nodeName") or node) != node or (st.get("node") or node) != node:
            return None
        gen = int(obj["metadata"].get("generation") or 1)
        if st.get("observedGeneration") == gen and st.get("phase") in DONE:
            return None
        if running is not None:
            if running[0] == gen:
                return None
            running[1].cancel()
        task = asyncio.get_running_loop().create_task(self._push(obj, gen), name=f"push:{name}")
        self._tasks[name] = (gen, task)
        task.add_done_callback(lambda t: self._forget(name, t))
        return None

    def _forget(self, name: str, task: asyncio.Task[None]) -> None:
        current = self._tasks.get(name)
        if current is not None and current[1] is task:
            del self._tasks[name]

    async def close(self) -> None:
        for _, task in list(self._tasks.values()):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _patch(self, name: str, status: ImagePushStatus) -> None:
        new = await self.env.kube.patch_status_if_present(Ref(IMAGE_PUSHES, "", name), status)
        if new is not None:
            self.observe("MODIFIED", new)

    async def _push(self, obj: dict[str, Any], gen: int) -> None:
        name, spec = obj["metadata"]["name"], obj.get("spec") or {}
        status: ImagePushStatus = {"phase": "Pushing", "node": self.env.node, "observedGeneration": gen,
                                   "startTime": now_rfc3339(), "completionTime": None, "message": "",
                                   "digest": "", "layers": [], "progress": ""}
        try:
            source = parse(spec["image"])
            dest = parse(spec.get("destination") or spec["image"])
        except InvalidReference as err:
            await self._patch(name, {**status, "phase": "Failed", "message": str(err),
                                     "completionTime": now_rfc3339()})
            return
        status["destination"] = str(dest)
        await self._patch(name, status)
        tracker = _Tracker()
        writer = asyncio.get_running_loop().create_task(self._progress_loop(name, tracker))
        try:
            client = await self.env.access.client(dest.domain, SecretRef.of(spec))
            try:
                result = await push_image(self.env.store, client, str(source), dest, report=tracker.update,
                                          chunk_size=spec.get("chunkSize") or None)
            finally:
                await client.close()
        except Exception as err:  # any failure must end in a Failed status, never a hang
            if not isinstance(err, RegistryError | RuntimeCallError | OSError):
                log.exception("push %s failed unexpectedly", name)
            status.update({"phase": "Failed", "message": _message(dest.familiar_repository, err)})
        else:
            status.update({"phase": "Succeeded", "digest": result.digest, "mediaType": result.media_type,
                           "size": result.size})
        finally:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
        status.update(tracker.fields())
        status["completionTime"] = now_rfc3339()
        await self._patch(name, status)
        log.info("push %s of %s: %s %s", name, dest, status["phase"], status.get("message", ""))
        self.env.on_finished(self.objects.get(name) or obj)

    async def _progress_loop(self, name: str, tracker: _Tracker) -> None:
        sent = ImagePushStatus()
        while True:
            await asyncio.sleep(PROGRESS_INTERVAL)
            fields = tracker.fields()
            if fields != sent:
                sent = fields
                await self._patch(name, fields)


class _Tracker:
    """Collects blob progress reports (synchronous callbacks) for the periodic status write."""

    def __init__(self) -> None:
        self.blobs: dict[str, BlobProgress] = {}

    def update(self, b: BlobProgress) -> None:
        self.blobs[b.digest] = b

    def fields(self) -> ImagePushStatus:
        layers: list[LayerProgress] = [{"digest": b.digest, "size": b.size, "current": b.current, "state": b.state}
                                       for b in self.blobs.values()]
        current, total = sum(x["current"] for x in layers), sum(x["size"] for x in layers)
        return {"layers": layers, "current": current, "total": total,
                "progress": f"{human_size(current)}/{human_size(total)}" if total else ""}


def _message(repo: str, err: BaseException) -> str:
    if isinstance(err, RegistryError) and err.code == "UNAUTHORIZED":
        return f"unauthorized: authentication required (push to {repo}: run `k3c login`)"
    if isinstance(err, RuntimeCallError):
        return err.details
    return str(err)
