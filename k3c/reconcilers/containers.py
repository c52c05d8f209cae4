"""The LocalContainer reconciler: one object ⇄ one CRI container in a sandbox, level-based and idempotent.

Every call of :meth:`ContainerReconciler.reconcile` reads the desired spec, compares it with what this
operator knows of the runtime (an :class:`Instance` per object, learned from its own actions, containerd's
event stream and, at start-up, CRI's lists) and does the next thing needed:

- not this node's object → nothing; unclaimed → claim it (a resourceVersion-preconditioned status write,
  so of several operators exactly one wins) and add the finalizer if the client did not;
- being deleted → stop (``stopTimeout``) and remove container and sandbox, then drop the finalizer;
- desired Running and never started, stopped by request before, changed in what shapes the container,
  or a new ``k3c.io/start-request`` annotation → a fresh container (pods are ephemeral: every start is
  a new CRI container);
- desired Stopped → stop it;
- the container exited → report it at once (phase Exited, exit code), then the restart policy decides
  between a new start (after docker's back-off) and releasing the sandbox (and deleting the object if
  ``autoRemove``).

Start failures that retrying cannot fix (missing image, port taken, bad user, command not found) end in
phase Failed with one clear message and nothing left behind; runtime hiccups are retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from k3c.api import (
    ATTACHED_RUN_ANNOTATION,
    CONTAINER_FINALIZER,
    CONTAINER_LOGS_DIR,
    CRI_NODE_LABEL,
    CRI_SPEC_HASH_ANNOTATION,
    CRI_UID_LABEL,
    DEFAULT_NETWORK,
    LOCAL_CONTAINERS,
    NO_NETWORK,
    START_REQUEST_ANNOTATION,
)
from k3c.apierrors import Conflict, NotFound
from k3c.containerlife import exits_for_good
from k3c.cri.containerspecs import SpecClient
from k3c.cri.errors import NotFoundError, RuntimeCallError
from k3c.cri.runtime import CRIClient, pb
from k3c.cri.tasks import TasksClient
from k3c.cri.writablelayers import WritableLayers
from k3c.reconcilers import criconfig, healthchecks, logrotation, ociamend
from k3c.reconcilers.cache import ObjectCache
from k3c.reconcilers.criconfig import RestartPolicy, SpecError, spec_hash
from k3c.reconcilers.imagepull import ImageError, ImageInfo, ImageResolver
from k3c.reconcilers.kube import Kube, Ref
from k3c.reconcilers.networks import NetworkError, NetworkNotReady, NetworkReconciler, network_names, pseudo
from k3c.reconcilers.ports import PortInUseError, PortReservations
from k3c.reconcilers.sandboxes import Sandbox, SandboxPool
from k3c.reconcilers.statuses import (
    Condition,
    ConditionStatus,
    HealthStatus,
    LocalContainerStatus,
    NetworkAttachment,
    PortStatus,
)
from k3c.signals import signal_number
from k3c.timefmt import NS, format_micro_ns, now_micro, now_rfc3339, parse_rfc3339_ns

log = logging.getLogger(__name__)

#: Capabilities that let a container change its network namespace: its sandbox is not recycled.
_NET_CAPS = {"NET_ADMIN", "NET_RAW", "SYS_ADMIN", "ALL"}
#: A container that ran this long resets docker's restart back-off.
BACKOFF_RESET_SECONDS = 10.0
#: How long after its exit ``autoRemove`` waits for the CLI of a foreground `run --rm` to show the output and
#: remove the object itself (:data:`ATTACHED_RUN_ANNOTATION`); only a CLI that died takes that long.
ATTACHED_RUN_GRACE = 60.0


class StartError(Exception):
    """A start that cannot succeed as specified; ``exit_code`` follows docker (125/126/127)."""

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class Instance:
    """What this operator knows of one object's runtime side (one per object uid)."""

    uid: str
    namespace: str
    name: str
    sandbox: Sandbox | None = None
    container_id: str = ""
    running: bool = False
    image: str = ""
    image_id: str = ""
    command: str = ""
    ports: list[PortStatus] = field(default_factory=list)
    started_at: str = ""
    started_mono: float = 0.0
    finished_at: str = ""
    exit_code: int | None = None
    exit_reported: bool = True
    oom: bool = False
    #: frozen by `k3c pause` (containerd's /tasks/paused), until /tasks/resumed or the container's end
    paused: bool = False
    vanished: bool = False
    stop_reason: str = ""  # "", "stop" (desired Stopped), "replace" (restart/spec change), "remove"
    restart_count: int = 0
    restart_at: float | None = None  # loop time of a pending policy restart
    spec_hash: str = ""
    #: criconfig.frame_hash of the spec it runs ('' unknown: a resource change then replaces it)
    frame_hash: str = ""
    sandbox_key: str = ""
    #: a CreateContainer went unanswered (containerd died): it may have made a container we never heard of
    unsure: bool = False
    #: its health check (if any) runs: started with it, or resumed after an adoption
    health_known: bool = False
    #: its writable layer is kept when its container goes (not for ``autoRemove``: the object goes too)
    keeps_layer: bool = True
    #: status.networks of its sandbox: one entry per network, in interface order
    networks: list[NetworkAttachment] = field(default_factory=list)
    # observedGeneration/startRequest it was started for
    origin: LocalContainerStatus = field(default_factory=LocalContainerStatus)


@dataclass
class Env:
    """What the reconciler works with (built by :class:`k3c.reconcilers.controller.Controller`)."""

    kube: Kube
    cri: CRIClient
    specs: SpecClient
    tasks: TasksClient
    layers: WritableLayers  #: stopped containers' writable layers, kept between runs
    images: ImageResolver
    pool: SandboxPool
    ports: PortReservations
    node: str
    root_dir: Path
    init_binary: Path | None
    cache: ObjectCache
    schedule: Callable[[str, float], None]
    record_event: Callable[[dict[str, Any], str, str, bool], None]
    ensure_volume: Callable[[str, str, str | None], Any]
    volume_users_changed: Callable[[dict[str, Any]], None]
    networks: NetworkReconciler


class ContainerReconciler:
    def __init__(self, env: Env) -> None:
        self.env = env
        self.instances: dict[str, Instance] = {}
        self.by_container: dict[str, str] = {}
        self.health = healthchecks.HealthProbes(env.cri, self._write_health, env.record_event)

    # ------------------------------------------------------------------ entry points

    async def reconcile(self, uid: str) -> float | None:
        """Converge one object (by uid); returns seconds until it wants to run again, or None."""
        obj = self.env.cache.get(uid)
        inst = self.instances.get(uid)
        if obj is None:
            if inst is not None:  # deleted without our finalizer (or it was removed by hand)
                await self._teardown(inst, grace=0)
            return None
        if not self._mine(obj):
            return None
        if obj["metadata"].get("deletionTimestamp"):
            return await self._finalize(obj, inst)
        claimed = await self._claim(obj)
        if claimed is None:
            return None
        return await self._converge(claimed, inst)

    def task_exited(self, container_id: str, exit_code: int, exited_at: str) -> str | None:
        """containerd reported the main process of ``container_id`` exited; returns the uid to reconcile."""
        uid = self.by_container.get(container_id)
        inst = self.instances.get(uid) if uid else None
        if inst is None or inst.container_id != container_id or not inst.running:
            return None
        self._mark_exited(inst, exit_code, exited_at)
        return uid

    def task_paused(self, container_id: str, paused: bool) -> str | None:
        """containerd froze (or thawed) the container's processes; returns the uid whose status says so."""
        uid = self.by_container.get(container_id)
        inst = self.instances.get(uid) if uid else None
        if inst is None or inst.container_id != container_id or not inst.running:
            return None
        inst.paused = paused
        return uid

    def task_oom(self, container_id: str) -> None:
        uid = self.by_container.get(container_id)
        if uid and uid in self.instances:
            self.instances[uid].oom = True

    # ------------------------------------------------------------------ ownership

    def _mine(self, obj: dict[str, Any]) -> bool:
        node = self.env.node
        wanted = obj.get("spec", {}).get("nodeName") or ""
        claimed = (obj.get("status") or {}).get("node") or ""
        return (not wanted or wanted == node) and (not claimed or claimed == node)

    async def _claim(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        """Make the object ours (status.node) and protected (finalizer); None if another node won."""
        meta = obj["metadata"]
        ref = _ref(obj)
        try:
            # Claimed by a status write only one operator can win; an object addressed to this node by
            # spec.nodeName is ours already (status.node comes with the first status write).
            if not (obj.get("status") or {}).get("node") and obj.get("spec", {}).get("nodeName") != self.env.node:
                obj = await self.env.kube.patch_status(
                    ref, LocalContainerStatus(node=self.env.node, phase="Pending", summary="Created"),
                    resource_version=meta["resourceVersion"])
                self.env.cache.put(obj)
            if CONTAINER_FINALIZER not in (obj["metadata"].get("finalizers") or []):
                fins = [*(obj["metadata"].get("finalizers") or []), CONTAINER_FINALIZER]
                obj = await self.env.kube.merge_patch(
                    ref, {"metadata": {"finalizers": fins, "resourceVersion": obj["metadata"]["resourceVersion"]}})
                self.env.cache.put(obj)
        except (NotFound, Conflict):
            await self._refresh(obj)  # lost a race: look again with the newest version
            return None
        return obj if self._mine(obj) else None

    async def _refresh(self, obj: dict[str, Any]) -> None:
        fresh = await self.env.kube.get(_ref(obj))
        if fresh is not None and fresh["metadata"]["uid"] == obj["metadata"]["uid"]:
            self.env.cache.put(fresh)
            self.env.schedule(fresh["metadata"]["uid"], 0.0)

    # ------------------------------------------------------------------ convergence

    async def _converge(self, obj: dict[str, Any], inst: Instance | None) -> float | None:
        spec, status, meta = obj.get("spec", {}), obj.get("status") or {}, obj["metadata"]
        want_run = spec.get("state", "Running") != "Stopped"
        shape = spec_hash(spec)
        start_request = (meta.get("annotations") or {}).get(START_REQUEST_ANNOTATION, "")
        restart_requested = start_request != status.get("startRequest", "")
        if inst is None and status.get("phase") == "Running":
            inst = self._vanished(obj)
        if inst is not None and inst.running:
            if not want_run:
                await self._stop(obj, inst, "stop")
            elif not restart_requested and inst.spec_hash != shape and \
                    (failure := await self._resize(obj, inst, shape)) is not None:
                inst.origin = {**self._origin_fields(obj), "specHash": inst.spec_hash}
                await self._write_running(obj, inst, failure)
                return None
            elif restart_requested or inst.spec_hash != shape:
                await self._stop(obj, inst, "replace")
            else:  # the running container satisfies this spec (what changed, if anything, does not shape it)
                inst.origin = self._origin_fields(obj)
                await self._write_running(obj, inst)
                await self._resume_health(obj, inst)
                return None
        if inst is not None and not inst.exit_reported:
            obj = await self._report_exit(obj, inst)
            status = obj.get("status") or {}
        if not want_run and status.get("phase") == "Exited" and (
                status.get("observedState") != "Stopped" or status.get("observedGeneration") != meta.get("generation")):
            obj = await self._stopped_between_runs(obj, inst)
            status = obj.get("status") or {}
        if want_run and self._start_wanted(status, shape, restart_requested):
            return await self._start(obj, inst, restart=False)
        if want_run and status.get("phase") == "Exited" and inst is not None and inst.restart_at is not None:
            delay = inst.restart_at - asyncio.get_running_loop().time()
            return delay if delay > 0 else await self._start(obj, inst, restart=True)
        if inst is not None and (inst.container_id or inst.sandbox):
            await self._release(inst, wait=False)
        if spec.get("autoRemove") and status.get("phase") in ("Exited", "Failed"):
            held = _held_for_its_cli(obj)
            if held > 0:
                return held
            await self.env.kube.delete(_ref(obj), meta["uid"])
        return None

    async def _resize(self, obj: dict[str, Any], inst: Instance, shape: str) -> str | None:
        """`docker update`: when only resource fields changed, apply them to the running container.

        None if that cannot be done in place (the caller replaces the container); '' once applied; else
        why the runtime refused (the container keeps its limits, the status says why, a later reconcile
        tries again).
        """
        spec = obj.get("spec", {})
        if not inst.frame_hash or criconfig.frame_hash(spec) != inst.frame_hash:
            return None
        try:
            resources = criconfig.resources(spec)
            # first into containerd's record: CRI's update gives the task the record's resources, pids too
            await self.env.specs.amend(inst.container_id, lambda oci: ociamend.set_pids_limit(oci, spec.get("pidsLimit")))
            await self.env.cri.update_container_resources(inst.container_id, resources)
        except SpecError:
            return None  # the replacement reports it
        except RuntimeCallError as err:
            message = f"cannot update the container's resources: {err.details or err}"
            self.env.record_event(obj, "UpdateFailed", message, True)
            return message
        inst.spec_hash = shape
        self.env.record_event(obj, "Updated", f"Updated the resources of container {inst.container_id[:12]}", False)
        return ""

    @staticmethod
    def _start_wanted(status: dict[str, Any], shape: str, restart_requested: bool) -> bool:
        """With desired state Running and no container running: does that call for a new start?

        Yes if it never started (or a start was cut short), a start was requested, it was stopped by
        request (desired state flipped back), or what shapes the container changed since its last start
        (`kubectl apply` of an edited manifest). A plain exit, a failure, or a change of stopTimeout,
        restart policy and the like do not.
        """
        if status.get("phase", "") in ("", "Pending", "Pulling", "Creating") or restart_requested:
            return True
        if status.get("observedState") == "Stopped":
            return True
        return bool(status.get("specHash")) and status["specHash"] != shape

    def _vanished(self, obj: dict[str, Any]) -> Instance:
        """Status says Running but the runtime has no such container (gone while k3c was down)."""
        meta, status = obj["metadata"], obj.get("status") or {}
        inst = Instance(meta["uid"], meta.get("namespace", ""), meta["name"], vanished=True,
                        exit_reported=False, restart_count=int(status.get("restartCount") or 0),
                        container_id="", started_at=status.get("startedAt", ""), finished_at=now_micro())
        _copy_status_details(inst, status)
        self.instances[inst.uid] = inst
        return inst

    # ------------------------------------------------------------------ starting

    async def _start(self, obj: dict[str, Any], inst: Instance | None, restart: bool) -> float | None:
        meta, spec = obj["metadata"], obj.get("spec", {})
        t0 = time.monotonic()
        if inst is None:
            inst = Instance(meta["uid"], meta.get("namespace", ""), meta["name"],
                            restart_count=int((obj.get("status") or {}).get("restartCount") or 0))
            self.instances[inst.uid] = inst
        await self._remove_container(inst)
        await self._remove_unheard_of(inst)
        if inst.sandbox is not None and (not restart or inst.sandbox_key != _sandbox_key(spec)):
            await self._release(inst, wait=True)
        if restart:
            inst.restart_count += 1
        inst.restart_at = None
        inst.stop_reason, inst.vanished, inst.oom, inst.paused = "", False, False, False
        try:
            await self._create_and_start(obj, inst)
        except NetworkNotReady as err:
            await self._release(inst, wait=True)
            await self._write_status(obj, {"phase": "Pending", "summary": "Created", "message": str(err)})
            return 0.2
        except (StartError, ImageError, PortInUseError, SpecError, NetworkError, ociamend.AmendError,
                healthchecks.HealthCheckError, logrotation.LogOptionsError) as err:
            await self._fail(obj, inst, str(err), getattr(err, "exit_code", None))
            return None
        except RuntimeCallError as err:
            await self._release(inst, wait=True)
            exhausted = _addresses_exhausted(err)
            if exhausted and not self.env.pool.removals_pending():
                # docker refuses at once; a retry would wait for a removal nobody has asked for (while
                # sandboxes are still being removed, their addresses are about to be free: retried soon)
                await self._fail(obj, inst, _exhausted_message(spec), 125)
                return None
            log.warning("starting %s/%s failed, will retry: %s", inst.namespace, inst.name, err)
            await self._write_status(obj, {"phase": "Pending", "summary": "Created",
                                           "message": f"runtime error, retrying: {err.details or err}"})
            return 0.5 if exhausted else 2.0
        log.debug("%s/%s started in %.0f ms", inst.namespace, inst.name, 1000 * (time.monotonic() - t0))
        if inst.running:
            await self._write_running(obj, inst)
        else:  # exited already (the event came while we were busy): one write says it all
            await self._report_exit(self.env.cache.get(inst.uid) or obj, inst)
            self.env.schedule(inst.uid, 0.0)
        return None

    async def _create_and_start(self, obj: dict[str, Any], inst: Instance) -> None:
        spec = obj.get("spec", {})
        criconfig.check_platform(spec)
        if spec.get("apparmorProfile") not in (None, "", "unconfined") and not _apparmor_enabled():
            raise SpecError(f"apparmorProfile {spec['apparmorProfile']}: AppArmor is not enabled on this node")
        policy = str(spec.get("pullPolicy") or "missing")
        if policy == "always" and inst.restart_count > 0:
            policy = "missing"  # docker pulls before the first start only
        image = await self.env.images.ensure(spec["image"], lambda: self._pulling(obj), policy)
        user = await self.env.images.resolve_user(image, spec.get("user") or "")
        groups = await self.env.images.resolve_groups(image, spec.get("groupAdd") or [])
        check = healthchecks.resolve(spec, image.config)
        logrotation.rotation(spec)  # refused before the start, not at the first rotation
        mounts = await self._mounts(obj)
        if inst.sandbox is None:
            inst.sandbox = await self._sandbox_for(obj, image)
            inst.sandbox_key = _sandbox_key(spec)
        if spec.get("init"):
            mounts.append(self._init_mount())
        config = criconfig.container_config(obj, image=image.id, node=self.env.node,
                                            attempt=inst.restart_count, mounts=mounts, user=user,
                                            image_config=image.config, groups=groups)
        try:
            cid = await self.env.cri.create_container(inst.sandbox.id, config, inst.sandbox.config)
        except RuntimeCallError as err:
            if _permanent(err):
                raise _start_error(err) from None
            inst.unsure = True  # (its name stays reserved until that container goes)
            raise
        self._record_start(obj, inst, cid, image)
        try:
            await self._restore_layer(inst, cid)
            if ociamend.needs_amendment(spec):
                await self.env.specs.amend(cid, lambda oci: ociamend.amend(oci, spec))
            await self.env.cri.start_container(cid)
        except RuntimeCallError as err:
            inst.running = False
            await self._remove_container(inst)
            if _permanent(err):
                raise _start_error(err) from None
            raise
        inst.started_at, inst.started_mono = now_micro(), time.monotonic()
        self.env.record_event(obj, "Started", f"Started container {cid[:12]}", False)
        inst.health_known = True
        if check is not None:
            self.health.start(obj, cid, check)
        elif (obj.get("status") or {}).get("health"):
            await self._write_health(obj, None)

    def _record_start(self, obj: dict[str, Any], inst: Instance, cid: str, image: ImageInfo) -> None:
        """Map the new container before it starts, so even an instant exit event finds its object."""
        spec = obj.get("spec", {})
        assert inst.sandbox is not None
        inst.container_id, inst.running, inst.exit_reported = cid, True, True
        inst.exit_code, inst.finished_at, inst.started_at = None, "", now_micro()
        inst.image, inst.image_id = spec["image"], image.id
        inst.command = criconfig.command_line(spec, image.config)
        inst.ports = [p.to_status() for p in inst.sandbox.spec.ports]
        inst.networks = self._network_status(obj, inst.sandbox)
        inst.spec_hash, inst.frame_hash = spec_hash(spec), criconfig.frame_hash(spec)
        inst.keeps_layer = not spec.get("autoRemove")
        inst.origin = self._origin_fields(obj)
        if {criconfig.normalize_capability(c) for c in spec.get("capAdd") or []} & _NET_CAPS:
            inst.sandbox.tainted = True
        self.by_container[cid] = inst.uid
        self.env.record_event(obj, "Created", f"Created container {cid[:12]} from image {spec['image']}", False)

    async def _pulling(self, obj: dict[str, Any]) -> None:
        image = obj["spec"]["image"]
        self.env.record_event(obj, "Pulling", f"Pulling image {image}", False)
        await self._write_status(obj, {"phase": "Pulling", "summary": "Pulling", "message": f"pulling {image}"})

    async def _sandbox_for(self, obj: dict[str, Any], image: ImageInfo) -> Sandbox:
        spec = obj.get("spec", {})
        if not criconfig.needs_own_sandbox(spec):
            return await self.env.pool.take()
        keys, nameservers = self._networks_for(obj)
        owner = f"obj:{obj['metadata']['uid']}"
        published = criconfig.published_ports(spec, image.config)
        ports = [] if spec.get("hostNetwork") else self.env.ports.reserve(owner, published)
        try:
            sandbox = await self.env.pool.run(criconfig.own_sandbox_spec(obj, ports, keys, nameservers))
        except BaseException:
            self.env.ports.release(owner)
            raise
        self.env.ports.held[sandbox.id] = self.env.ports.held.pop(owner, [])
        return sandbox

    def _networks_for(self, obj: dict[str, Any]) -> tuple[list[str], list[str]]:
        """The node's keys of the networks ``obj`` joins and, for a DNS-enabled one, its resolver (the first
        such network's gateway); ``([], [])`` for the default network alone."""
        spec = obj.get("spec", {})
        names = network_names(obj)
        if spec.get("hostNetwork") or criconfig.on_default_network(spec):
            return [], []
        if pseudo(names) == NO_NETWORK:
            return [NO_NETWORK], []
        ns = obj["metadata"].get("namespace", "default")
        joined = [self.env.networks.attachable(ns, name) for name in names]
        return [a.key for a in joined], [a.gateway for a in joined if a.dns][:1]

    def _network_status(self, obj: dict[str, Any], sandbox: Sandbox) -> list[NetworkAttachment]:
        """``status.networks``: each network's interface as CNI made it (none for host and none)."""
        spec = obj.get("spec", {})
        if spec.get("hostNetwork") or sandbox.spec.networks == [NO_NETWORK]:
            return []
        ns = obj["metadata"].get("namespace", "default")
        out: list[NetworkAttachment] = []
        for i, entry in enumerate(spec.get("networks") or [{"name": DEFAULT_NETWORK}]):
            iface = sandbox.interfaces.get(f"eth{i}")
            try:
                joined = self.env.networks.attachable(ns, str(entry.get("name")))
                prefix, gateway = joined.prefix_length, joined.gateway
            except NetworkError:
                prefix, gateway = 0, ""
            out.append({"name": str(entry.get("name")), "interface": f"eth{i}",
                        "ip": iface.ip if iface else (sandbox.ip if i == 0 else ""), "prefixLength": prefix,
                        "gateway": (iface.gateway if iface else "") or gateway, "mac": iface.mac if iface else "",
                        "aliases": list(entry.get("aliases") or [])})
        return out

    async def _mounts(self, obj: dict[str, Any]) -> list[pb.Mount]:
        mounts = []
        ns = obj["metadata"].get("namespace", "default")
        for v in obj.get("spec", {}).get("volumes") or []:
            if v.get("volume") and v.get("hostPath"):
                raise SpecError(f"volume for {v['mountPath']}: give either volume or hostPath, not both")
            if v.get("volume"):
                host = str(await self.env.ensure_volume(ns, v["volume"], obj["metadata"].get("creationTimestamp")))
            elif v.get("hostPath"):
                host = v["hostPath"]
                if not host.startswith("/"):
                    raise SpecError(f"hostPath {host!r} must be an absolute path")
            else:
                raise SpecError(f"volume for {v['mountPath']}: give a volume name or a hostPath")
            if not str(v["mountPath"]).startswith("/"):
                raise SpecError(f"mountPath {v['mountPath']!r} must be an absolute path")
            mounts.append(pb.Mount(container_path=v["mountPath"], host_path=host, readonly=bool(v.get("readOnly")),
                                   propagation=criconfig.PROPAGATIONS[v.get("propagation") or "rprivate"]))
        return mounts

    async def rotate_logs(self) -> None:
        """Rotate the full log files of running containers with ``logOptions`` (:mod:`logrotation`)."""
        for uid, inst in list(self.instances.items()):
            obj = self.env.cache.get(uid)
            if obj is None or not (inst.running and inst.container_id):
                continue
            try:
                rule = logrotation.rotation(obj.get("spec", {}))
            except logrotation.LogOptionsError:
                continue
            if rule is not None:
                path = self.env.root_dir / CONTAINER_LOGS_DIR / criconfig.log_file_name(obj)
                await logrotation.rotate_if_full(self.env.cri, path, inst.container_id, rule)

    async def _resume_health(self, obj: dict[str, Any], inst: Instance) -> None:
        """An adopted running container (the operator restarted): its health check loop starts again."""
        if inst.health_known or not inst.container_id:
            return
        inst.health_known = True
        try:
            image = await self.env.images.ensure(obj["spec"]["image"], lambda: self._pulling(obj), "never")
            check = healthchecks.resolve(obj.get("spec", {}), image.config)
        except (ImageError, healthchecks.HealthCheckError, RuntimeCallError) as err:
            log.debug("no health check for %s/%s: %s", inst.namespace, inst.name, err)
            return
        if check is not None:
            self.health.start(obj, inst.container_id, check)

    def _init_mount(self) -> pb.Mount:
        """``spec.init``: the node's static init, read-only at :data:`criconfig.INIT_PATH`."""
        if self.env.init_binary is None or not self.env.init_binary.is_file():
            raise SpecError("init: this node has no init binary (the operator was started without --init-binary)")
        return pb.Mount(container_path=criconfig.INIT_PATH, host_path=str(self.env.init_binary), readonly=True)

    async def _fail(self, obj: dict[str, Any], inst: Instance, message: str, exit_code: int | None) -> None:
        """A start that cannot work: clean up everything it made, say why, and stay Failed."""
        await self._release(inst, wait=True)
        inst.running, inst.exit_reported = False, True
        status: LocalContainerStatus = {
            "phase": "Failed", "summary": "Failed", "message": message, "containerID": "", "sandboxID": "", "ip": "",
            "ports": [], "portSummary": "", "networks": [], "finishedAt": now_micro(),
            "exitCode": exit_code if exit_code is not None else 125,
            **self._origin_fields(obj), "conditions": _ready_condition(obj, False, "StartFailed", message)}
        self.env.record_event(obj, "Failed", message, True)
        await self._write_status(obj, status)

    # ------------------------------------------------------------------ stopping and exits

    async def _stop(self, obj: dict[str, Any], inst: Instance, reason: str, grace: int | None = None) -> None:
        """StopContainer (SIGTERM, SIGKILL after the grace period) and record the exit it caused."""
        if grace is None:
            grace = int(obj.get("spec", {}).get("stopTimeout", 10))
        inst.stop_reason = reason
        try:
            await self._stop_container(obj, inst.container_id, grace)
            st = (await self.env.cri.container_status(inst.container_id)).status
            code, finished = st.exit_code, format_micro_ns(st.finished_at)
        except NotFoundError:
            code, finished = 137, now_micro()
        if inst.running:
            self._mark_exited(inst, code, finished)
        self.env.record_event(obj, "Killed", f"Stopped container {inst.container_id[:12]}", False)

    async def _stop_container(self, obj: dict[str, Any], cid: str, grace: int) -> None:
        """CRI's StopContainer sends the image's STOPSIGNAL (else SIGTERM); a ``stopSignal`` of the spec, which
        CRI cannot carry, is sent through containerd's Tasks service, and StopContainer kills what is left
        once the grace period is over."""
        stop_signal = str(obj.get("spec", {}).get("stopSignal") or "")
        if stop_signal and grace > 0:
            try:
                await self.env.tasks.kill(cid, signal_number(stop_signal))
            except NotFoundError:
                return
            except RuntimeCallError as err:  # not running (any more): StopContainer below settles it
                log.debug("stop signal to %s not sent: %s", cid[:12], err)
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline:
                if (await self.env.cri.container_status(cid)).status.state == pb.CONTAINER_EXITED:
                    break
                await asyncio.sleep(0.1)
            grace = 0
        await self.env.cri.stop_container(cid, grace)

    async def _stopped_between_runs(self, obj: dict[str, Any], inst: Instance | None) -> dict[str, Any]:
        """A stop asked while the container waits to be restarted by its policy: no restart, and status says
        so ("Exited", not "Restarting"; the stop observed, which `k3c stop` and the Docker API wait for)."""
        if inst is not None:
            inst.restart_at = None
        code = (obj.get("status") or {}).get("exitCode", 0)
        return await self._write_status(obj, {"summary": f"Exited ({code})", "observedState": "Stopped",
                                              "observedGeneration": obj["metadata"].get("generation")})

    def _mark_exited(self, inst: Instance, exit_code: int, finished_at: str) -> None:
        self.health.stop(inst.uid)
        inst.running, inst.exit_code, inst.finished_at, inst.exit_reported = False, exit_code, finished_at, False
        inst.paused = False

    async def _report_exit(self, obj: dict[str, Any], inst: Instance) -> dict[str, Any]:
        """Write the exit to status right away; decide here whether the restart policy starts it again."""
        spec = obj.get("spec", {})
        code = inst.exit_code if inst.exit_code is not None else 255
        want_run = spec.get("state", "Running") != "Stopped"
        restart = (want_run and not inst.stop_reason and not exits_for_good(obj, inst.container_id)
                   and RestartPolicy.parse(spec.get("restartPolicy")).should_restart(code, inst.restart_count))
        inst.exit_reported = True
        message = "out of memory (OOM killed)" if inst.oom else ""
        if inst.vanished:
            message = "the container disappeared while k3c was down"
        status: LocalContainerStatus = {
            "phase": "Exited", "summary": f"Restarting ({code})" if restart else f"Exited ({code})",
            "exitCode": code, "finishedAt": inst.finished_at or now_micro(), "message": message, "paused": False,
            "conditions": _ready_condition(obj, False, "Exited", f"exited with code {code}"),
        }
        if inst.container_id:
            status.update(self._running_fields(inst))
        status.update(inst.origin)
        if inst.stop_reason == "stop":
            status.update({"observedGeneration": obj["metadata"].get("generation"), "observedState": "Stopped"})
        if restart:
            ran = time.monotonic() - inst.started_mono if inst.started_mono else 0.0
            delay = 0.1 if ran >= BACKOFF_RESET_SECONDS else criconfig.restart_delay(inst.restart_count)
            inst.restart_at = asyncio.get_running_loop().time() + delay
            self.env.schedule(inst.uid, delay)
        if not inst.stop_reason:
            self.env.record_event(obj, "Died", f"Container exited with code {code}{'; ' + message if message else ''}",
                                  code != 0)
        return await self._write_status(obj, status)

    # ------------------------------------------------------------------ status

    def _running_fields(self, inst: Instance) -> LocalContainerStatus:
        sandbox = inst.sandbox
        return {
            "containerID": inst.container_id, "sandboxID": sandbox.id if sandbox else "",
            "imageID": inst.image_id, "ip": sandbox.ip if sandbox else "", "ports": inst.ports,
            "networks": inst.networks,
            "portSummary": criconfig.port_summary(inst.ports), "command": inst.command,
            "startedAt": inst.started_at, "restartCount": inst.restart_count, "node": self.env.node,
            "logPath": str(self.env.root_dir / CONTAINER_LOGS_DIR / criconfig.log_file_name(
                {"metadata": {"namespace": inst.namespace, "name": inst.name, "uid": inst.uid}})),
        }

    def _origin_fields(self, obj: dict[str, Any]) -> LocalContainerStatus:
        """What a start acted on: echoed in status so clients (and the next reconcile) can tell."""
        meta = obj["metadata"]
        return {"observedGeneration": meta.get("generation"), "observedState": "Running",
                "specHash": spec_hash(obj.get("spec", {})),
                "startRequest": (meta.get("annotations") or {}).get(START_REQUEST_ANNOTATION, "")}

    async def _write_running(self, obj: dict[str, Any], inst: Instance, message: str = "") -> None:
        status: LocalContainerStatus = {
            "phase": "Running", "summary": "Up (Paused)" if inst.paused else "Up", "message": message,
            "exitCode": None,
            "finishedAt": None, "paused": inst.paused,
            **self._running_fields(inst), **(inst.origin or self._origin_fields(obj)),
            "conditions": _ready_condition(obj, True, "Started", "")}
        await self._write_status(obj, status)

    async def _write_health(self, obj: dict[str, Any], health: HealthStatus | None) -> bool:
        """``status.health`` (from the probe loop); False once the object is gone."""
        return await self.env.kube.patch_status_if_present(_ref(obj), {"health": health}) is not None

    async def _write_status(self, obj: dict[str, Any], status: LocalContainerStatus) -> dict[str, Any]:
        """Merge-patch only the fields that differ; the answer becomes the cached object."""
        current = obj.get("status") or {}
        status = {"node": self.env.node, **status}
        diff = {k: v for k, v in status.items() if current.get(k) != v}
        if not diff:
            return obj
        fresh = await self.env.kube.patch_status_if_present(_ref(obj), diff)
        if fresh is None:
            return obj
        self.env.cache.put(fresh)
        return fresh

    # ------------------------------------------------------------------ removal

    async def _finalize(self, obj: dict[str, Any], inst: Instance | None) -> float | None:
        if CONTAINER_FINALIZER not in (obj["metadata"].get("finalizers") or []):
            return None
        if inst is not None:
            await self._teardown(inst, grace=int(obj.get("spec", {}).get("stopTimeout", 10)), obj=obj)
        await self._drop_layer(obj["metadata"]["uid"])
        with contextlib.suppress(OSError):
            log_file = self.env.root_dir / CONTAINER_LOGS_DIR / criconfig.log_file_name(obj)
            log_file.unlink(missing_ok=True)
            logrotation.remove_rotated(log_file)
        self.env.record_event(obj, "Removed", "Removed container", False)
        meta = obj["metadata"]
        fins = [f for f in meta.get("finalizers") or [] if f != CONTAINER_FINALIZER]
        try:
            fresh = await self.env.kube.merge_patch(
                _ref(obj), {"metadata": {"finalizers": fins or None, "resourceVersion": meta["resourceVersion"]}})
            self.env.cache.put(fresh)
        except Conflict:
            await self._refresh(obj)
        except NotFound:
            pass
        self.env.volume_users_changed(obj)
        return None

    async def _teardown(self, inst: Instance, grace: int, obj: dict[str, Any] | None = None) -> None:
        """Stop (if running) and remove the container; its sandbox goes in the background, as at a stop
        (StopPodSandbox and RemovePodSandbox take ~0.4 s nobody needs to wait for: the object may go, its
        name is free; one with published ports is removed first, see :meth:`_release`). A clean stop of the
        operator waits for these removals; after a crash the start-up sweep removes what is left."""
        if inst.running and inst.container_id:
            if obj is not None:
                await self._stop(obj, inst, "remove", grace)
            else:
                with contextlib.suppress(NotFoundError):
                    await self.env.cri.stop_container(inst.container_id, grace)
                inst.running = False
        await self._remove_unheard_of(inst)
        await self._release(inst, wait=False, keep_layer=False)
        await self._drop_layer(inst.uid)
        self.health.stop(inst.uid)
        self.instances.pop(inst.uid, None)

    async def _remove_unheard_of(self, inst: Instance) -> None:
        """After an unanswered CreateContainer: remove the object's containers we do not track (the one
        containerd made before it died would hold the container's name and outlive the object)."""
        if not inst.unsure:
            return
        mine = pb.ContainerFilter(label_selector={CRI_UID_LABEL: inst.uid, CRI_NODE_LABEL: self.env.node})
        for c in await self.env.cri.list_containers(mine):
            if c.id != inst.container_id:
                log.info("removing container %s of %s/%s: made by a call containerd's death cut short",
                         c.id[:12], inst.namespace, inst.name)
                with contextlib.suppress(NotFoundError):
                    await self.env.cri.stop_container(c.id, 0)
                    await self.env.cri.remove_container(c.id)
        inst.unsure = False

    async def _remove_container(self, inst: Instance, keep_layer: bool = True) -> None:
        """RemoveContainer, patient with CRI: the exit event reaches us before CRI's own state says exited.

        Its writable layer is kept for the object's next run (docker's stopped container), unless the
        object goes (``keep_layer`` False, or ``autoRemove``)."""
        if not inst.container_id:
            return
        cid = inst.container_id
        if keep_layer and inst.keeps_layer:
            await self._keep_layer(inst, cid)
        for attempt in range(50):
            try:
                await self.env.cri.remove_container(cid)
                break
            except NotFoundError:
                break
            except RuntimeCallError:
                # "still running" / "failed to kill ... ttrpc: closed": CRI has not processed the exit yet.
                if attempt == 49:  # it really runs: we only remove what must go, so stop it first
                    with contextlib.suppress(NotFoundError):
                        await self.env.cri.stop_container(cid, 0)
                        await self.env.cri.remove_container(cid)
                    break
                await asyncio.sleep(0.02)
        self.by_container.pop(cid, None)
        inst.container_id = ""

    async def _keep_layer(self, inst: Instance, cid: str) -> None:
        """The exited container's changes into the object's kept layer (:mod:`k3c.cri.writablelayers`); a
        failure loses them, as before, and is logged: the container goes regardless."""
        try:
            for _ in range(50):  # CRI says exited (its root unmounted) a moment after containerd's exit event
                resp = await self.env.cri.container_status(cid, verbose=True)
                if resp.status.state != pb.CONTAINER_RUNNING:
                    break
                await asyncio.sleep(0.02)
            else:
                return  # it really runs (a forced removal): nothing is moved from under a live root
            details = json.loads(resp.info.get("info") or "{}")
            key = str(details.get("snapshotKey") or cid)
            points = [str(m.get("destination") or "") for m in (details.get("runtimeSpec") or {}).get("mounts") or []]
            await self.env.layers.keep(inst.uid, key, points)
        except NotFoundError:
            return
        except (RuntimeCallError, OSError, ValueError) as err:
            log.warning("the writable layer of %s/%s is lost: %s", inst.namespace, inst.name, err)

    async def _restore_layer(self, inst: Instance, cid: str) -> None:
        """A new run's container gets what the previous runs (and `cp`) left in the object's kept layer."""
        try:
            if await self.env.layers.restore(inst.uid, cid):
                log.debug("%s/%s: the kept writable layer is back in %s", inst.namespace, inst.name, cid[:12])
        except OSError as err:
            log.warning("the kept writable layer of %s/%s could not be restored: %s", inst.namespace, inst.name, err)

    async def _drop_layer(self, uid: str) -> None:
        with contextlib.suppress(RuntimeCallError):
            await self.env.layers.drop(uid)

    async def _release(self, inst: Instance, wait: bool, keep_layer: bool = True) -> None:
        """Remove the container; recycle a generic sandbox or remove the container's own one."""
        pooled = inst.sandbox is not None and inst.sandbox.pooled
        if pooled:
            self.env.pool.returning()  # a start meanwhile waits for it rather than making a new one
        try:
            await self._remove_container(inst, keep_layer)
        except BaseException:
            if pooled:
                self.env.pool.lost()
            raise
        sandbox, inst.sandbox = inst.sandbox, None
        if sandbox is None:
            return
        if sandbox.pooled:
            self.env.pool.give_back(sandbox)
            return
        if wait or sandbox.spec.ports:
            # a published port is free again only once the sandbox's forwarding rules are gone: a container
            # started at once on the same port (`rm -f web; run -p 8080:80 web`) would be shadowed by them
            await self.env.pool.remove(sandbox.id)
            self.env.ports.release(sandbox.id)
        else:
            self.env.ports.release(sandbox.id)
            self.env.pool.remove_later(sandbox.id)

    # ------------------------------------------------------------------ start-up adoption

    def adopt(self, obj: dict[str, Any], container: pb.Container, status: pb.ContainerStatus,
              sandbox: Sandbox | None) -> None:
        """Take over a container found at start-up that belongs to an existing object."""
        meta = obj["metadata"]
        inst = Instance(meta["uid"], meta.get("namespace", ""), meta["name"], sandbox=sandbox,
                        container_id=container.id, running=container.state == pb.CONTAINER_RUNNING,
                        image=obj.get("spec", {}).get("image", ""), image_id=container.image_ref,
                        spec_hash=container.annotations.get(CRI_SPEC_HASH_ANNOTATION, ""),
                        sandbox_key=_sandbox_key(obj.get("spec", {})))
        current = obj.get("status") or {}
        _copy_status_details(inst, current)
        if current.get("containerID") == container.id and current.get("specHash"):
            inst.spec_hash = current["specHash"]  # what it runs after an in-place update (see _resize)
        spec = obj.get("spec", {})
        inst.frame_hash = criconfig.frame_hash(spec) if inst.spec_hash == spec_hash(spec) else ""
        if current.get("containerID") != container.id:  # started, but the status was never written
            inst.started_at = format_micro_ns(status.started_at) or inst.started_at
        inst.started_mono = time.monotonic() - max(0.0, time.time() - status.started_at / 1e9)
        if sandbox is not None:
            inst.ports = [p.to_status() for p in sandbox.spec.ports]
        if not inst.running:
            self._mark_exited(inst, status.exit_code, format_micro_ns(status.finished_at) or now_micro())
            reported = (obj.get("status") or {}).get("containerID") == container.id and \
                (obj.get("status") or {}).get("phase") in ("Exited", "Failed")
            inst.exit_reported = reported
        self.instances[inst.uid] = inst
        self.by_container[container.id] = inst.uid


# ---------------------------------------------------------------------------------------------- helpers



def _apparmor_enabled() -> bool:
    """Whether the node's kernel runs AppArmor (a named profile can only be loaded then)."""
    try:
        return Path("/sys/module/apparmor/parameters/enabled").read_text().strip() == "Y"
    except OSError:
        return False


def _held_for_its_cli(obj: dict[str, Any]) -> float:
    """Seconds ``autoRemove`` still waits for the CLI of a foreground `run --rm` (0: remove now).

    That CLI attaches right after creating the object, but under load the container may be over first;
    removing the object would delete the log the attach replays, and the CLI would show nothing.
    """
    if (obj["metadata"].get("annotations") or {}).get(ATTACHED_RUN_ANNOTATION) != "true":
        return 0.0
    try:
        finished = parse_rfc3339_ns(str((obj.get("status") or {}).get("finishedAt") or "")) / NS
    except ValueError:
        return 0.0
    return max(0.0, finished + ATTACHED_RUN_GRACE - time.time())


def _ref(obj: dict[str, Any]) -> Ref:
    meta = obj["metadata"]
    return Ref(LOCAL_CONTAINERS, meta.get("namespace", "default"), meta["name"])


def _sandbox_key(spec: dict[str, Any]) -> str:
    return repr([spec.get(k) for k in criconfig.SANDBOX_FIELDS])


def _copy_status_details(inst: Instance, status: dict[str, Any]) -> None:
    inst.image_id = inst.image_id or status.get("imageID", "")
    inst.command = status.get("command", "")
    inst.ports = list(status.get("ports") or [])
    inst.networks = list(status.get("networks") or [])
    inst.started_at = status.get("startedAt", "")
    inst.restart_count = int(status.get("restartCount") or 0)
    inst.paused = bool(status.get("paused"))


def _ready_condition(obj: dict[str, Any], ready: bool, reason: str, message: str) -> list[Condition]:
    """``status.conditions``: the Ready condition, the stored one as it is if it says the same."""
    value: ConditionStatus = "True" if ready else "False"
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready" and c.get("status") == value and c.get("reason") == reason:
            return [c]
    return [{"type": "Ready", "status": value, "reason": reason, "message": message,
             "lastTransitionTime": now_rfc3339()}]


_NOT_FOUND = re.compile(r"executable file not found|no such file or directory", re.I)
_NOT_EXECUTABLE = re.compile(r"permission denied|exec format error", re.I)


def _addresses_exhausted(err: RuntimeCallError) -> bool:
    """host-local IPAM's refusal when every address of the network's range is leased."""
    return "no IP addresses available in range set" in (err.details or str(err))


def _exhausted_message(spec: dict[str, Any]) -> str:
    """docker's words for a network with no address left."""
    names = [str(n.get("name")) for n in spec.get("networks") or [] if n.get("name")] or ["bridge"]
    return f"no available IPv4 addresses on this network's address pools: {', '.join(names)}"


def _permanent(err: RuntimeCallError) -> bool:
    """Errors that a retry will not fix (bad command, bad spec); others (unavailable) are retried."""
    from k3c.cri.errors import RuntimeUnavailableError

    return not isinstance(err, RuntimeUnavailableError)


def _start_error(err: RuntimeCallError) -> StartError:
    """CRI's nested error text, reduced to docker's message and exit code for an unrunnable command."""
    details = err.details or str(err)
    m = re.search(r'exec: "([^"]+)": ([^:"]+)', details)
    if m:
        code = 127 if _NOT_FOUND.search(m.group(2)) else 126
        return StartError(f'cannot run "{m.group(1)}": {m.group(2).strip()}', code)
    if _NOT_FOUND.search(details) and "exec" in details:
        return StartError(f"cannot run the command: {details.rsplit(': ', 1)[-1]}", 127)
    if _NOT_EXECUTABLE.search(details) and "exec" in details:
        return StartError(f"cannot run the command: {details.rsplit(': ', 1)[-1]}", 126)
    return StartError(f"the runtime refused the container: {details.splitlines()[0]}", 125)
