"""The container side of the operator: object caches, work queues, containerd's task events, adoption.

kopf (operator/handlers.py) hands every LocalContainer and Volume watch event to :meth:`Controller.observe`;
the process's one containerd event subscription (:mod:`k3c.reconcilers.eventfeed`) hands it every task
exit, OOM, pause and resume (:meth:`Controller.handle_event`). Both only *schedule* a reconcile of the
object concerned, so the per-object work queue keeps reconciles of one object strictly sequential while
different objects proceed in parallel.

At start the event subscription is already live (so no exit can slip between listing and watching):
:meth:`Controller.start` lists the sandboxes and containers this node's k3c made, and matches them by the
object uid in their labels against the LocalContainers that exist: matches are adopted (running containers
keep running), the rest are removed, idle generic sandboxes become the pool's spares. When containerd
comes back after a restart, :meth:`Controller.catch_up` looks for the exits missed meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from k3c import api
from k3c.cri.errors import NotFoundError
from k3c.cri.events import ContainerdEvent
from k3c.cri.imagestore import ContainerdImages
from k3c.cri.runtime import pb
from k3c.cri.snapshots import Snapshots
from k3c.cri.writablelayers import WritableLayers
from k3c.nodenet.conflists import NetworkDirs
from k3c.reconcilers import logrotation
from k3c.reconcilers.cache import ObjectCache
from k3c.reconcilers.connections import Connections
from k3c.reconcilers.containers import ContainerReconciler, Env
from k3c.reconcilers.imagepull import ImageResolver
from k3c.reconcilers.networks import NetworkReconciler
from k3c.reconcilers.operatorconfig import OperatorConfig
from k3c.reconcilers.ports import PortReservations
from k3c.reconcilers.sandboxes import Sandbox, SandboxPool, Scrubber, sandbox_from_status
from k3c.reconcilers.volumes import VolumeReconciler
from k3c.reconcilers.workqueue import WorkQueue
from k3c.timefmt import format_micro_ns

log = logging.getLogger(__name__)


class Controller:
    #: containerd topics this controller consumes (see EventFeed)
    event_topics: tuple[str, ...] = ("/tasks/exit", "/tasks/oom", "/tasks/paused", "/tasks/resumed")

    def __init__(self, config: OperatorConfig, conns: Connections) -> None:
        self.config = config
        self.kube = conns.kube
        self.conns = conns
        self.cri = conns.cri
        self.store = conns.images
        self.containers_cache = ObjectCache()
        self.volumes_cache = ObjectCache()
        self.networks_cache = ObjectCache()
        self._events: set[asyncio.Task[None]] = set()
        self.started = asyncio.Event()

    # ------------------------------------------------------------------ life cycle

    async def start(self) -> None:
        """Adopt what exists; call it once the event subscription is live, before events are delivered."""
        cfg = self.config
        self.log_dir = cfg.root_dir / api.CONTAINER_LOGS_DIR
        self.log_dir.mkdir(parents=True, exist_ok=True)
        scrubber = (Scrubber(cfg.containerd_root, cfg.containerd_state)
                    if cfg.containerd_root and cfg.containerd_state else None)
        self.container_queue = WorkQueue(self._reconcile_container, "container")
        self.volume_queue = WorkQueue(self._reconcile_volume, "volume")
        self.network_queue = WorkQueue(self._reconcile_network, "network")
        dirs = (NetworkDirs(cfg.containerd_root, cfg.containerd_state)
                if cfg.containerd_root and cfg.containerd_state else None)
        self.networks = NetworkReconciler(self.kube, cfg.node_name, dirs, self.networks_cache,
                                          self.containers_cache, self.network_queue.schedule,
                                          sandboxes_removing=lambda: self.pool.removing())
        self.pool = SandboxPool(self.cri, cfg.node_name, self.log_dir, cfg.pool_size, scrubber=scrubber,
                                on_stopped=self.networks.addresses_released)
        self.ports = PortReservations()
        self.volumes = VolumeReconciler(self.kube, cfg.node_name, cfg.root_dir, self.volumes_cache,
                                        self.containers_cache, self.volume_queue.schedule)
        self.containers = ContainerReconciler(Env(
            kube=self.kube, cri=self.cri, specs=self.conns.specs, tasks=self.conns.tasks, layers=self._layers(),
            images=ImageResolver(self.cri, self.store), pool=self.pool,
            ports=self.ports, node=cfg.node_name, root_dir=cfg.root_dir, init_binary=cfg.init_binary, cache=self.containers_cache,
            schedule=self.container_queue.schedule, record_event=self.record_event,
            ensure_volume=self.volumes.ensure, volume_users_changed=self.volumes.users_changed,
            networks=self.networks,
        ))
        await self._adopt()
        await self._collect_network_orphans()
        self._spawn(self._catch_up_later(1.0))  # containerd may still be digesting exits of its downtime
        self.pool.schedule_refill()
        self._rotation = asyncio.get_running_loop().create_task(self._rotate_logs_forever())
        self._orphans = asyncio.get_running_loop().create_task(self._collect_network_orphans_forever())
        self.started.set()

    async def stop(self) -> None:
        """Let reconciles in flight finish, remove the spare sandboxes (the connections are not ours).

        Containers keep running: a clean stop of the operator is not a stop of the containers.
        """
        if not self.started.is_set():
            return
        await self.container_queue.drain(timeout=15.0)
        await self.volume_queue.drain(timeout=5.0)
        await self.network_queue.drain(timeout=5.0)
        for task in (self._rotation, self._orphans):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.containers.health.close()
        await self.pool.close(remove_spares=True)
        if self._events:
            await asyncio.wait(self._events, timeout=5)
        self.ports.close()

    # ------------------------------------------------------------------ watch events (from kopf)

    def observe(self, plural: str, event_type: str | None, obj: dict[str, Any]) -> None:
        """A watch event: cache the object (DELETED drops it) and schedule its reconcile."""
        uid = obj.get("metadata", {}).get("uid")
        if not uid:
            return
        if plural == api.LOCAL_CONTAINERS.plural:
            cache, queue = self.containers_cache, self.container_queue
        elif plural == api.VOLUMES.plural:
            cache, queue = self.volumes_cache, self.volume_queue
        elif plural == api.NETWORKS.plural:
            cache, queue = self.networks_cache, self.network_queue
        else:
            return
        if event_type == "DELETED":
            cache.pop(uid)
            if plural == api.LOCAL_CONTAINERS.plural:
                self.volumes.users_changed(obj)
                self.networks.users_changed(obj)
        elif not cache.put(obj):
            return
        elif plural == api.LOCAL_CONTAINERS.plural:
            self.networks.users_changed(obj)
        queue.schedule(uid)

    async def _reconcile_container(self, uid: str) -> float | None:
        return await self.containers.reconcile(uid)

    async def _reconcile_volume(self, uid: str) -> float | None:
        return await self.volumes.reconcile(uid)

    async def _reconcile_network(self, uid: str) -> float | None:
        return await self.networks.reconcile(uid)

    async def _collect_network_orphans(self) -> None:
        """Networks set up here whose object went while no operator ran, or before the node side of its
        removal was done (see NetworkReconciler): at the start, then now and then."""
        try:
            await self.networks.collect_orphans()
        except Exception as err:  # the next round tries again
            log.warning("collecting removed networks failed: %s", err)

    async def _collect_network_orphans_forever(self, interval: float = 60.0) -> None:
        while True:
            await asyncio.sleep(interval)
            await self._collect_network_orphans()

    # ------------------------------------------------------------------ containerd events (from EventFeed)

    async def handle_event(self, event: ContainerdEvent) -> None:
        self._on_event(event)

    async def catch_up(self) -> None:
        """The event stream was resubscribed: a look at every container that may have exited meanwhile."""
        await self._catch_up()
        # An exit published just before the subscription went live reaches CRI's own state a moment
        # later than our first look: look once more when it has surely settled.
        self._spawn(self._catch_up_later(1.0))

    async def _rotate_logs_forever(self) -> None:
        while True:
            await asyncio.sleep(logrotation.CHECK_INTERVAL)
            try:
                await self.containers.rotate_logs()
            except Exception as err:  # a failed look is retried at the next tick
                log.warning("log rotation failed: %s", err)

    async def _catch_up_later(self, delay: float) -> None:
        await asyncio.sleep(delay)
        try:
            await self._catch_up()
        except Exception as err:
            log.warning("checking for missed exits failed: %s", err)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._events.add(task)
        task.add_done_callback(self._events.discard)

    async def _catch_up(self) -> None:
        """After containerd came back: exits missed meanwhile, and sandboxes a crash left NOTREADY."""
        for uid, inst in list(self.containers.instances.items()):
            if not (inst.running and inst.container_id):
                continue
            try:
                st = (await self.cri.container_status(inst.container_id)).status
            except NotFoundError:
                if await self.cri.list_containers(pb.ContainerFilter(id=inst.container_id)):
                    continue  # still being recovered: its exit will come as an event
                self.containers.task_exited(inst.container_id, 255, "")
                self.container_queue.schedule(uid)
                continue
            if st.state == pb.CONTAINER_EXITED:
                self.containers.task_exited(inst.container_id, st.exit_code, format_micro_ns(st.finished_at))
                self.container_queue.schedule(uid)
        await self._remove_broken_sandboxes()

    async def _remove_broken_sandboxes(self) -> None:
        """NOTREADY sandboxes no object uses (e.g. one being made when containerd died) only hold an IP."""
        in_use = {i.sandbox.id for i in self.containers.instances.values() if i.sandbox is not None}
        labels = {api.CRI_MANAGED_LABEL: "true", api.CRI_NODE_LABEL: self.config.node_name}
        for sb in await self.cri.list_pod_sandbox(pb.PodSandboxFilter(label_selector=labels)):
            if sb.state != pb.SANDBOX_READY and sb.id not in in_use:
                log.info("removing broken sandbox %s", sb.id[:12])
                self.pool.remove_later(sb.id)

    def _on_event(self, event: ContainerdEvent) -> None:
        payload: Any = event.payload
        if event.topic == "/tasks/oom":
            self.containers.task_oom(payload.container_id)
            return
        if event.topic in ("/tasks/paused", "/tasks/resumed"):  # still running: status says Paused
            paused_uid = self.containers.task_paused(payload.container_id, event.topic == "/tasks/paused")
            if paused_uid is not None:
                self.container_queue.schedule(paused_uid)
            return
        if event.topic != "/tasks/exit" or payload.id != payload.container_id:
            return  # an exec'd process ended, not the container's main process
        exited = format_micro_ns(payload.exited_at.ToNanoseconds())
        uid = self.containers.task_exited(payload.container_id, payload.exit_status, exited)
        if uid is not None:
            self.container_queue.schedule(uid)

    # ------------------------------------------------------------------ Kubernetes Events

    def record_event(self, obj: dict[str, Any], reason: str, message: str, warning: bool) -> None:
        """Post a core/v1 Event in the background: never on the path of a start or an exit."""
        self._spawn(self._post_event(obj, reason, message, warning))

    async def _post_event(self, obj: dict[str, Any], reason: str, message: str, warning: bool) -> None:
        try:
            await self.kube.event(obj, reason, message, warning=warning, host=self.config.node_name)
        except Exception as err:  # an Event is a nicety; losing one must not disturb anything
            log.debug("posting event %s failed: %s", reason, err)

    def _layers(self) -> WritableLayers:
        """Kept writable layers live in this node's own containerd (where CRI runs the containers)."""
        own = ContainerdImages(self.config.containerd_address, channel=self.conns.channel)
        return WritableLayers(Snapshots(own))

    # ------------------------------------------------------------------ adoption at start-up

    async def _adopt(self) -> None:
        node = self.config.node_name
        labels = {api.CRI_MANAGED_LABEL: "true", api.CRI_NODE_LABEL: node}
        sandboxes = await self.cri.list_pod_sandbox(pb.PodSandboxFilter(label_selector=labels))
        containers = await self.cri.list_containers(pb.ContainerFilter(label_selector=labels))
        objects = {o["metadata"]["uid"]: o for o in await self.kube.list_objects(api.LOCAL_CONTAINERS)}
        for listed in objects.values():
            self.containers_cache.put(listed)
        for uid in await self.containers.env.layers.sweep(set(objects)):
            log.info("removed the kept writable layer of %s: its LocalContainer no longer exists", uid)
        by_sandbox: dict[str, Sandbox] = {}
        for sb in sandboxes:
            if sb.state == pb.SANDBOX_READY:
                sandbox = sandbox_from_status(await self.cri.pod_sandbox_status(sb.id, verbose=True), node,
                                              self.log_dir)
                if sandbox is not None:
                    by_sandbox[sb.id] = sandbox
        used: set[str] = set()
        dirty: set[str] = set()  # sandboxes an orphan ran in: never a spare
        for c in sorted(containers, key=lambda c: c.created_at, reverse=True):
            uid = c.labels.get(api.CRI_UID_LABEL, "")
            obj = objects.get(uid)
            if obj is None or uid in self.containers.instances or c.pod_sandbox_id not in by_sandbox:
                await self._remove_orphan(c)
                dirty.add(c.pod_sandbox_id)
                continue
            status = (await self.cri.container_status(c.id)).status
            sandbox = by_sandbox[c.pod_sandbox_id]
            self.containers.adopt(obj, c, status, sandbox)
            used.add(sandbox.id)
            if not sandbox.pooled and sandbox.spec.ports:
                self.ports.adopt(sandbox.id, sandbox.spec.ports)
            log.info("adopted container %s of %s/%s", c.id[:12], obj["metadata"].get("namespace"),
                     obj["metadata"]["name"])
        await self._sweep_sandboxes(sandboxes, by_sandbox, used, dirty)

    async def _remove_orphan(self, c: pb.Container) -> None:
        log.info("removing container %s: its LocalContainer no longer exists", c.id[:12])
        with contextlib.suppress(NotFoundError):
            if c.state == pb.CONTAINER_RUNNING:
                await self.cri.stop_container(c.id, 0)
            await self.cri.remove_container(c.id)

    async def _sweep_sandboxes(self, sandboxes: list[pb.PodSandbox], ready: dict[str, Sandbox],
                               used: set[str], dirty: set[str]) -> None:
        """Sandboxes nobody uses: idle generic ones become spares (if an orphan never ran in them), the
        rest go."""
        doomed = []
        for sb in sandboxes:
            if sb.id in used:
                continue
            sandbox = ready.get(sb.id)
            idle = (sandbox is not None and sandbox.pooled and sb.id not in dirty
                    and not await self._has_containers(sb.id))
            if idle and sandbox is not None and self.pool.adopt_spare(sandbox):
                continue
            doomed.append(sb.id)
        for sid in doomed:
            log.info("removing unused sandbox %s", sid[:12])
        await asyncio.gather(*(self.pool.remove(sid) for sid in doomed), return_exceptions=True)

    async def _has_containers(self, sandbox_id: str) -> bool:
        return bool(await self.cri.list_containers(pb.ContainerFilter(pod_sandbox_id=sandbox_id)))
