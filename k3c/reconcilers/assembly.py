"""One operator process put together: its connections, its containerd event feed, the controllers it runs.

``python -m k3c.operator`` makes one :class:`Assembly` from its :class:`OperatorConfig`; kopf's start-up
handler calls :meth:`Assembly.start`, its clean-up handler :meth:`Assembly.stop`, and the watch handlers
reach the controllers through it (kopf delivers no watch event before start-up is over).

Start, in an order that lets nothing slip through: open the :class:`Connections`; make the one containerd
event subscription live; let each controller list what exists (containers are adopted, images listed,
builds' old logs swept); only then deliver containerd's events, and start the networks' resolvers (their
own watch, :mod:`k3c.netdns.feed`). Stop in reverse: the controllers finish
(events still flow meanwhile, a stop may wait for an exit), then the feed, then the connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from pathlib import Path

import grpc

from k3c.builder.buildah import BuildahConfig, BuildahEngine
from k3c.builder.engine import Engine
from k3c.builder.native import NativeConfig, NativeEngine
from k3c.builder.network import BuildNetwork
from k3c.netdns.feed import NameFeed
from k3c.reconcilers.buildcaches import BuildCacheReconciler
from k3c.reconcilers.connections import Connections
from k3c.reconcilers.controller import Controller
from k3c.reconcilers.eventfeed import EventConsumer, EventFeed
from k3c.reconcilers.imagebuilds import ImageBuildReconciler
from k3c.reconcilers.imagecontroller import ImageController
from k3c.reconcilers.kube import Kube
from k3c.reconcilers.operatorconfig import OperatorConfig


def build_engine(config: OperatorConfig, channel: grpc.aio.Channel | None = None) -> Engine:
    """The native engine (``<root dir>/builder/native``), handing what it does not support to buildah
    (storage under ``<root dir>/builder``) when buildah is installed; ``build_engine="buildah"`` uses
    buildah for every build (if installed)."""
    native_root = Path(config.root_dir) / "builder" / "native"
    # one build sandbox for both engines: their RUN steps join the same network namespace
    network = BuildNetwork(config.containerd_address, str(native_root), channel=channel)
    buildah = None
    if shutil.which("buildah"):
        buildah = BuildahEngine(BuildahConfig(root=Path(config.root_dir) / "builder",
                                              containerd_address=config.containerd_address),
                                channel=channel, network=network)
    if config.build_engine == "buildah" and buildah is not None:
        return buildah
    return NativeEngine(NativeConfig(root=native_root, containerd_address=config.containerd_address,
                                     pids_limit=config.build_pids_limit),
                        fallback=buildah, channel=channel, network=network)


class Assembly:
    def __init__(self, config: OperatorConfig, kube: Kube | None = None) -> None:
        """``kube``: the process's API session, when it made one before (for its webhooks)."""
        self.config = config
        self.kube = kube
        self.conns: Connections | None = None
        self.feed: EventFeed | None = None
        self._containers: Controller | None = None
        self._images: ImageController | None = None
        self._builds: ImageBuildReconciler | None = None
        self._caches: BuildCacheReconciler | None = None
        self._names: NameFeed | None = None
        self._stopped = False
        self._images_ready = asyncio.Event()

    # ---- the controllers, for kopf's watch handlers (only after start) ----

    @property
    def containers(self) -> Controller:
        assert self._containers is not None, "containers controller not started"
        return self._containers

    @property
    def images(self) -> ImageController:
        assert self._images is not None, "images controller not started"
        return self._images

    async def image_controller(self, wait: float) -> ImageController | None:
        """The image controller once it has listed containerd (waiting up to ``wait`` s for that), for the
        admission webhook; None if it is not running by then."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._images_ready.wait(), wait)
        return self._images if self._images_ready.is_set() else None

    @property
    def builds(self) -> ImageBuildReconciler:
        assert self._builds is not None, "builds controller not started"
        return self._builds

    @property
    def build_caches(self) -> BuildCacheReconciler:
        assert self._caches is not None, "builds controller not started"
        return self._caches

    # ---- life cycle ----

    async def start(self) -> None:
        """Everything, in order (see the module docstring); on failure what was made is stopped again, so
        kopf may simply retry."""
        self._stopped = False
        self.conns = await Connections.open(self.config, self.kube)
        try:
            await self._start_parts(self.conns)
        except BaseException:
            await self.stop()
            raise

    async def _start_parts(self, conns: Connections) -> None:
        cfg = self.config
        consumers: list[EventConsumer] = []
        if cfg.runs("containers"):
            self._containers = Controller(cfg, conns)
            consumers.append(self._containers)
        if cfg.runs("images"):
            self._images = ImageController(cfg, conns)
            consumers.append(self._images)
        if consumers:
            self.feed = EventFeed(conns.events, consumers, conns.wait_ready)
            await self.feed.open()
        if self._containers is not None:
            await self._containers.start()
        if self._images is not None:
            await self._images.start()
            self._images_ready.set()
        if cfg.runs("builds"):
            await self._start_builds(conns)
        if self.feed is not None:
            self.feed.start()
        if cfg.runs("containers") and cfg.dns:
            self._names = NameFeed(conns.kube, cfg.node_name, port=cfg.dns_port)
            self._names.start()

    async def _start_builds(self, conns: Connections) -> None:
        engine = build_engine(self.config, conns.channel)
        builds = self._builds = ImageBuildReconciler(self.config, engine, conns.kube, conns.images)
        caches = self._caches = BuildCacheReconciler(engine, self.config.node_name)
        builds.on_build_done = caches.refresh
        await builds.start()
        await caches.start(conns.kube)

    async def stop(self) -> None:
        """Stop what was made (each part's stop is safe when its start did not get far), then the feed,
        then the connections; a second call does nothing. The controllers stop in the order kopf ran their
        clean-up handlers when each had its own: containers, images, build cache, builds (which closes the
        engine)."""
        if self._stopped:
            return
        self._stopped = True
        self._images_ready.clear()
        if self._names is not None:
            await self._names.stop()
        for part in (self._containers, self._images, self._caches, self._builds):
            if part is not None:
                await part.stop()
        if self.feed is not None:
            await self.feed.close()
        if self.conns is not None:
            await self.conns.close()
