"""kopf wiring for Images, ImageTags and ImagePushes: every watch event goes to the image controller
(:class:`~k3c.reconcilers.imagecontroller.ImageController`, reached through the operator's assembly).

Only ``on.event`` handlers, like operator/handlers.py: the reconcilers are level-based and keep their own
finalizer (``k3c.io/image``), so kopf's per-handler progress annotations and finalizer would only cost
writes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf

from k3c.api import GROUP, IMAGE_PUSHES, IMAGE_TAGS, IMAGES, VERSION
from k3c.reconcilers.assembly import Assembly

PLURALS = (IMAGES.plural, IMAGE_TAGS.plural, IMAGE_PUSHES.plural)


def register(registry: kopf.OperatorRegistry, assembly: Assembly) -> None:
    """Add the image watch handlers to ``registry``."""
    for plural in PLURALS:
        _watch(registry, plural, assembly)


def _watch(registry: kopf.OperatorRegistry, plural: str, assembly: Assembly) -> None:
    @kopf.on.event(GROUP, VERSION, plural, id=f"k3c-{plural}", registry=registry)
    async def on_event(event: Mapping[str, Any], **_: Any) -> None:  # async: runs in the loop, not a thread
        assembly.images.observe(plural, event.get("type"), event["object"])
