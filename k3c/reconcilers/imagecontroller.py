"""The image side of the operator: Image, ImageTag and ImagePush reconcilers, their queues, containerd's
image events.

kopf (``operator/images.py``) hands every watch event to :meth:`ImageController.observe`; the process's
one containerd event subscription (:mod:`k3c.reconcilers.eventfeed`) hands it every ``/images/…`` event
(:meth:`ImageController.handle_event`), which reaches :meth:`ImageObjects.record_changed`. Both only
schedule reconciles (one work queue per kind, keyed by object name), so reconciles of one object never
overlap. The subscription is live before :meth:`ImageController.start` lists containerd's images, so no
image can appear unseen in between; when containerd restarts, the feed subscribes again and
:meth:`ImageController.catch_up` reads the list again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from k3c import api
from k3c.cri.events import ContainerdEvent
from k3c.reconcilers.connections import Connections
from k3c.reconcilers.imageobjects import ImageEnv, ImageObjects
from k3c.reconcilers.imagepushes import ImagePushes, PushEnv
from k3c.reconcilers.imagetags import ImageTags, TagEnv
from k3c.reconcilers.operatorconfig import OperatorConfig
from k3c.reconcilers.registryaccess import RegistryAccess
from k3c.reconcilers.workqueue import WorkQueue

log = logging.getLogger(__name__)


class ImageController:
    #: containerd topics this controller consumes (see EventFeed)
    event_topics: tuple[str, ...] = ("/images/",)

    def __init__(self, config: OperatorConfig, conns: Connections) -> None:
        self.config = config
        self.kube = conns.kube
        self.cri = conns.cri
        self.store = conns.images
        self.started = asyncio.Event()

    async def start(self) -> None:
        """List containerd's images; call it once the event subscription is live."""
        cfg = self.config
        access = RegistryAccess(self.kube, cfg.certs_dir)
        self.image_queue = WorkQueue(self._reconcile_image, "image")
        self.tag_queue = WorkQueue(self._reconcile_tag, "imagetag")
        self.push_queue = WorkQueue(self._reconcile_push, "imagepush")
        self.images = ImageObjects(ImageEnv(
            kube=self.kube, cri=self.cri, store=self.store, access=access, node=cfg.node_name,
            schedule=self.image_queue.schedule, protected=_protected(), per_node=cfg.images_per_node))
        self.pushes = ImagePushes(PushEnv(kube=self.kube, store=self.store, access=access, node=cfg.node_name,
                                          on_finished=self._push_finished))
        self.tags = ImageTags(TagEnv(kube=self.kube, store=self.store, node=cfg.node_name),
                              self.images.objects, self.pushes.objects)
        await self.catch_up()
        self.started.set()

    async def stop(self) -> None:
        """Let reconciles in flight finish, cancel pulls and pushes (the connections are not ours)."""
        if not self.started.is_set():
            return
        for q in (self.image_queue, self.tag_queue, self.push_queue):
            await q.drain(timeout=5.0)
        await self.pushes.close()
        pulls = list(self.images._pulls.values())
        for task in pulls:
            task.cancel()
        for task in pulls:  # let cancelled CRI calls unwind before the channel closes
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # ---- watch events (from kopf) ------------------------------------------------------------

    def observe(self, plural: str, event_type: str | None, obj: dict[str, Any]) -> None:
        if not obj.get("metadata", {}).get("name"):
            return
        if plural == api.IMAGES.plural:
            name = self.images.observe(event_type, obj)
            if name is not None:
                self.image_queue.schedule(name)
        elif plural == api.IMAGE_TAGS.plural:
            self.tag_queue.schedule(self.tags.observe(event_type, obj))
        elif plural == api.IMAGE_PUSHES.plural:
            self.push_queue.schedule(self.pushes.observe(event_type, obj))
            owner = self.tags.owner_of_push(obj)
            if owner:
                self.tag_queue.schedule(owner)

    def _push_finished(self, obj: dict[str, Any]) -> None:
        owner = self.tags.owner_of_push(obj)
        if owner:
            self.tag_queue.schedule(owner)

    async def _reconcile_image(self, name: str) -> float | None:
        return await self.images.reconcile(name)

    async def _reconcile_tag(self, name: str) -> float | None:
        return await self.tags.reconcile(name)

    async def _reconcile_push(self, name: str) -> float | None:
        return await self.pushes.reconcile(name)

    # ---- containerd events (from EventFeed) ----------------------------------------------------

    async def handle_event(self, event: ContainerdEvent) -> None:
        name = getattr(event.payload, "name", "")
        if name:
            for obj_name in await self.images.record_changed(name):
                self.image_queue.schedule(obj_name)

    async def catch_up(self) -> None:
        """Read every containerd image again (start-up, containerd restarted) and reconcile them all."""
        for name in await self.images.relist():
            self.image_queue.schedule(name)


def _protected() -> frozenset[str]:
    """The sandbox image: removing it would make every new container pull (and fail) its pause image."""
    from k3c.oci.reference import normalize
    from k3c.pauseimage import PAUSE_IMAGE

    return frozenset({normalize(PAUSE_IMAGE)})
