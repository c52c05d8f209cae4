"""BuildCache: this node's build cache as an object (``kubectl get buildcaches``, ``k3c builder prune``).

Level-based, one object per node, named after it:

- at start-up the operator creates it if missing, and writes the cache's size to status;
- after every build (:meth:`BuildCacheReconciler.refresh`, called by the ImageBuild reconciler) the size is
  written again, throttled;
- ``spec.pruneRequest`` differing from ``status.prunedRequest`` → the engine drops its whole cache (waiting
  for a running build to end first), then status gets the bytes freed and the request echoed. An operator
  restarted midway sees the request still pending and prunes again, which is harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from k3c.api import BUILD_CACHES
from k3c.apierrors import APIError, Conflict
from k3c.builder.engine import Engine
from k3c.reconcilers.kube import Kube, Ref
from k3c.reconcilers.statuses import BuildCacheStatus
from k3c.timefmt import now_rfc3339
from k3c.units import human_size

__all__ = ["BuildCacheReconciler"]

log = logging.getLogger(__name__)

#: Seconds between two size measurements after builds (a burst of builds measures once).
REFRESH_INTERVAL = 2.0


class BuildCacheReconciler:
    """See the module docstring; ``observe`` is fed by kopf, the rest runs in its own tasks."""

    def __init__(self, engine: Engine, node: str) -> None:
        self.engine = engine
        self.node = node
        self.kube: Kube | None = None
        self._prune: asyncio.Task[None] | None = None
        self._refresh: asyncio.Task[None] | None = None
        self._pending: str | None = None

    @property
    def ref(self) -> Ref:
        return Ref(BUILD_CACHES, "", self.node)

    async def start(self, kube: Kube) -> None:
        self.kube = kube
        try:
            if await kube.get(self.ref) is None:
                await kube.create(BUILD_CACHES, "", {
                    "apiVersion": BUILD_CACHES.api_version, "kind": BUILD_CACHES.kind,
                    "metadata": {"name": self.node}, "spec": {}})
            await self._write_usage()
        except Conflict:
            pass
        except APIError as err:
            log.warning("cannot set up BuildCache %s: %s", self.node, err.message)

    async def stop(self) -> None:
        for task in (self._prune, self._refresh):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    def observe(self, obj: dict[str, Any]) -> None:
        """A watch event: start a prune if this node's object asks for one that is not done yet."""
        if obj["metadata"]["name"] != self.node or self.kube is None:
            return
        wanted = (obj.get("spec") or {}).get("pruneRequest") or ""
        done = (obj.get("status") or {}).get("prunedRequest") or ""
        if not wanted or wanted == done or wanted == self._pending:
            return
        self._pending = wanted
        previous = self._prune
        self._prune = asyncio.get_running_loop().create_task(self._run_prune(wanted, previous))

    def refresh(self) -> None:
        """A build ended: measure the cache again soon (at most every :data:`REFRESH_INTERVAL`)."""
        if self.kube is None or (self._refresh is not None and not self._refresh.done()):
            return
        self._refresh = asyncio.get_running_loop().create_task(self._delayed_usage())

    async def _delayed_usage(self) -> None:
        await asyncio.sleep(REFRESH_INTERVAL)
        with contextlib.suppress(APIError, OSError):
            await self._write_usage()

    async def _run_prune(self, request: str, previous: asyncio.Task[None] | None) -> None:
        if previous is not None:
            with contextlib.suppress(Exception):
                await previous
        started = time.monotonic()
        status: BuildCacheStatus = {"prunedRequest": request, "lastPruned": now_rfc3339()}
        try:
            freed = await self.engine.prune()
            status.update({"reclaimed": freed, "reclaimedText": human_size(freed), "message": ""})
            log.info("build cache pruned in %.1f s: %s freed", time.monotonic() - started, human_size(freed))
        except Exception as err:  # the request must be answered, with the reason
            log.exception("build cache prune failed")
            status.update({"reclaimed": 0, "reclaimedText": "0B", "message": f"prune failed: {err}"})
        try:
            await self._write_usage(status)
        except APIError as err:
            log.warning("cannot report the build cache prune: %s", err.message)

    async def _write_usage(self, extra: BuildCacheStatus | None = None) -> None:
        assert self.kube is not None
        entries, size = await self.engine.usage()
        status: BuildCacheStatus = {"node": self.node, "entries": entries, "size": size, "sizeText": human_size(size),
                                    "updated": now_rfc3339(), **(extra or BuildCacheStatus())}
        await self.kube.patch_status(self.ref, status)
