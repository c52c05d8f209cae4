"""The image side of the operator: Image, ImageTag and ImagePush reconcilers, their queues, containerd's
image events.

kopf (``operator/images.py``) hands every watch event to :meth:`ImageController.observe`; containerd's
``/images/*`` events reach :meth:`ImageObjects.record_changed`. Both only schedule reconciles (one work
queue per kind, keyed by object name), so reconciles of one object never overlap. At start the image
event subscription is made live first (:meth:`~k3c.cri.events.EventStream.ready`) and containerd's images
are listed after, so no image can appear unseen in between; when containerd restarts, the stream is
opened again and the list read again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from k3c import api
from k3c.cri.errors import RuntimeCallError
from k3c.cri.events import EventStream, EventSubscriber
from k3c.cri.images import ContainerdImages
from k3c.cri.runtime import CRIClient
from k3c.reconcilers.imageobjects import ImageEnv, ImageObjects
from k3c.reconcilers.imagepushes import ImagePushes, PushEnv
from k3c.reconcilers.imagetags import ImageTags, TagEnv
from k3c.reconcilers.kube import Kube
from k3c.reconcilers.registryaccess import RegistryAccess
from k3c.reconcilers.workqueue import WorkQueue

log = logging.getLogger(__name__)

IMAGE_TOPICS = ['topic~="^/images/"']


@dataclass
class ImageControllerConfig:
    kubeconfig: str
    containerd_address: str
    node_name: str
    root_dir: Path
    #: containerd's registry ``config_path`` for hosts.toml; default: k3c's own containerd's, if it exists.
    certs_dir: Path | None = None

    def effective_certs_dir(self) -> Path | None:
        if self.certs_dir is not None:
            return self.certs_dir
        default = self.root_dir / "containerd" / "certs.d"
        return default if default.parent.is_dir() else None


class ImageController:
    def __init__(self, config: ImageControllerConfig) -> None:
        self.config = config
        self.started = asyncio.Event()
        self._stream_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        cfg = self.config
        self.kube = Kube(cfg.kubeconfig)
        self.cri = CRIClient(cfg.containerd_address, timeout=30.0, pull_timeout=None)
        self.store = ContainerdImages(cfg.containerd_address)
        self.subscriber = EventSubscriber(cfg.containerd_address)
        await self.cri.wait_ready(timeout=30.0)
        access = RegistryAccess(self.kube, cfg.effective_certs_dir())
        self.image_queue = WorkQueue(self._reconcile_image, "image")
        self.tag_queue = WorkQueue(self._reconcile_tag, "imagetag")
        self.push_queue = WorkQueue(self._reconcile_push, "imagepush")
        self.images = ImageObjects(ImageEnv(
            kube=self.kube, cri=self.cri, store=self.store, access=access, node=cfg.node_name,
            schedule=self.image_queue.schedule, protected=_protected()))
        self.pushes = ImagePushes(PushEnv(kube=self.kube, store=self.store, access=access, node=cfg.node_name,
                                          on_finished=self._push_finished))
        self.tags = ImageTags(TagEnv(kube=self.kube, store=self.store, node=cfg.node_name),
                              self.images.objects, self.pushes.objects)
        stream = self.subscriber.subscribe(IMAGE_TOPICS)
        await stream.ready()
        for name in await self.images.relist():
            self.image_queue.schedule(name)
        self._stream_task = asyncio.get_running_loop().create_task(self._consume(stream))
        self.started.set()

    async def stop(self) -> None:
        if not self.started.is_set():
            return
        for q in (self.image_queue, self.tag_queue, self.push_queue):
            await q.drain(timeout=5.0)
        await self.pushes.close()
        pulls = list(self.images._pulls.values())
        for task in pulls:
            task.cancel()
        for task in pulls:  # let cancelled CRI calls unwind before the channels close
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._stream_task is not None:
            self._stream_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._stream_task
        await self.subscriber.close()
        await self.store.close()
        await self.cri.close()
        await self.kube.close()

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

    # ---- containerd events -------------------------------------------------------------------

    async def _consume(self, stream: EventStream) -> None:
        while True:
            try:
                async for event in stream:
                    name = getattr(event.payload, "name", "")
                    if name:
                        for obj_name in await self.images.record_changed(name):
                            self.image_queue.schedule(obj_name)
            except RuntimeCallError as err:
                log.warning("containerd image event stream ended (%s); resubscribing", err)
            with contextlib.suppress(Exception):
                await stream.close()
            stream = await self._resubscribe()

    async def _resubscribe(self) -> EventStream:
        while True:
            await asyncio.sleep(0.5)
            try:
                await self.cri.wait_ready(timeout=30.0)
                stream = self.subscriber.subscribe(IMAGE_TOPICS)
                await stream.ready()
                for name in await self.images.relist():
                    self.image_queue.schedule(name)
            except (RuntimeCallError, TimeoutError, ConnectionError) as err:
                log.warning("containerd not back yet: %s", err)
                continue
            return stream


def _protected() -> frozenset[str]:
    """The sandbox image: removing it would make every new container pull (and fail) its pause image."""
    from k3c.daemon.pause import PAUSE_IMAGE
    from k3c.registry.reference import normalize

    return frozenset({normalize(PAUSE_IMAGE)})
