"""kopf wiring of ImageBuild (and of this node's BuildCache): every watch event goes to
:class:`~k3c.reconcilers.imagebuilds.ImageBuildReconciler` (or
:class:`~k3c.reconcilers.buildcaches.BuildCacheReconciler`), reached through the operator's assembly.

Like the other handler files, only ``on.event`` is used (no kopf progress annotations, no kopf finalizer:
the reconciler keeps its own, and only while a build runs).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf

from k3c.api import BUILD_CACHES, GROUP, IMAGE_BUILDS, VERSION
from k3c.reconcilers.assembly import Assembly


def register(registry: kopf.OperatorRegistry, assembly: Assembly) -> None:
    """Add the ImageBuild and BuildCache watch handlers to ``registry``."""

    @kopf.on.event(GROUP, VERSION, BUILD_CACHES.plural, registry=registry)
    async def buildcache_event(event: Mapping[str, Any], **_: Any) -> None:
        if event.get("type") != "DELETED":
            assembly.build_caches.observe(event["object"])

    @kopf.on.event(GROUP, VERSION, IMAGE_BUILDS.plural, registry=registry)
    async def imagebuild_event(event: Mapping[str, Any], **_: Any) -> None:
        assembly.builds.observe(event.get("type"), event["object"])
