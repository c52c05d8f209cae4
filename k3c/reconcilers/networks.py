"""The Network reconciler: each Network of this node as a bridge, a conflist and host rules, level-based.

A Network is claimed by a node like a Volume (``spec.nodeName`` or the first operator to write ``status.node``)
and protected by the finalizer ``k3c.io/network``. The default network ``bridge`` is the node's own bridge,
which the daemon sets up with containerd: its status only reports it. Any other network gets, idempotently:

- a subnet: ``spec.subnet`` checked, or one from k3c's pool; never one overlapping the host's routes and
  addresses or another network's subnet (overlap or a bad CIDR: phase Failed, one line in ``message``,
  tried again every :data:`SETUP_RETRY` seconds);
  once set up, its subnet is what its conflist says (it overlaps its own bridge's route, of course);
- its conflist in the node's networks dir (:mod:`k3c.nodenet.conflists`), key and bridge ``k3c-<hash of uid>``;
- its bridge, up, with the gateway address (before any container: its resolver can listen there);
- the host's rules for every network set up here (:mod:`k3c.nodenet.hostrules`: isolation, forwarding, NAT).

On deletion it waits until no container names it, drops the finalizer, then waits until the sandboxes of
containers just removed have released their IP leases (their StopPodSandbox runs in the background) and
removes bridge, rules, conflist and leases. A network set up here whose object is gone (a daemon killed
during a deletion) is torn down by :meth:`NetworkReconciler.collect_orphans`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from k3c.api import (
    DEFAULT_NETWORK,
    LOCAL_CONTAINERS,
    NAME_ANNOTATION,
    NETWORK_FINALIZER,
    NETWORKS,
    NO_NETWORK,
)
from k3c.nodenet import bridges, conflists, hostrules, subnets
from k3c.nodenet.conflists import (
    USER_PREFIX,
    BridgeNetwork,
    NetworkDirs,
    read_default_key,
    read_network,
    render_conflist,
    user_key,
    write_json,
)
from k3c.reconcilers.cache import ObjectCache
from k3c.reconcilers.claims import NodeClaim
from k3c.reconcilers.kube import Kube, Ref
from k3c.reconcilers.statuses import AttachedContainer, Condition, NetworkStatus
from k3c.timefmt import now_rfc3339

log = logging.getLogger(__name__)

#: Seconds after which the isolation chains are rewritten even if no network changed (rules someone removed
#: come back).
RESYNC_INTERVAL = 30.0


class NetworkError(ValueError):
    """A container names a network it cannot be attached to; the message says why, in one line."""


class NetworkNotReady(NetworkError):
    """The network exists but is not set up yet (just created): the container waits for it, as compose's
    `network create` then `create` of a container expects."""


@dataclass(frozen=True)
class Attachable:
    """A network a container can join on this node."""

    name: str
    key: str
    gateway: str
    prefix_length: int
    dns: bool


#: How long a network waits to report its containers anew after one changed (seconds): a burst of starts on
#: the default network, whose list holds every container of the node, makes one status write, not one each.
USERS_REPORT_DELAY = 1.0
#: Seconds before a network whose set-up failed is tried again: what was in the way (a host route, the
#: pool's last free subnet, a bridge being removed) may be gone by then, and its spec need not change.
SETUP_RETRY = 10.0
#: How long the node side of a deleted network waits for the sandboxes of its last containers to release
#: their addresses before it goes regardless (a lease nobody releases is swept by the daemon, k3c.daemon.netgc).
LEASES_PATIENCE = 30.0


def _ref(obj: dict[str, Any]) -> Ref:
    meta = obj["metadata"]
    return Ref(NETWORKS, meta.get("namespace", "default"), meta["name"])


def network_names(container: dict[str, Any]) -> list[str]:
    """The networks a container's spec names, in order (none: the default network)."""
    return [str(n.get("name")) for n in container.get("spec", {}).get("networks") or [] if n.get("name")]


def uses_network(container: dict[str, Any], namespace: str, name: str) -> bool:
    return container["metadata"].get("namespace", "default") == namespace and name in network_names(container)


def _dns_enabled(obj: dict[str, Any]) -> bool:
    value = obj.get("spec", {}).get("enableDNS")
    return obj["metadata"]["name"] != DEFAULT_NETWORK if value is None else bool(value)


class NetworkReconciler:
    def __init__(self, kube: Kube, node: str, dirs: NetworkDirs | None, cache: ObjectCache,
                 containers: ObjectCache, schedule: Callable[[str, float], None],
                 sandboxes_removing: Callable[[], bool] = lambda: False) -> None:
        """``sandboxes_removing``: whether a sandbox removal is in flight (k3c.reconcilers.sandboxes
        SandboxPool.removing); a network leaves the node only once none is, see :meth:`_leases_released`."""
        self.kube = kube
        self.node = node
        self.dirs = dirs
        self.cache = cache
        self.containers = containers
        self.schedule = schedule
        self.sandboxes_removing = sandboxes_removing
        self.claims: NodeClaim[NetworkStatus] = NodeClaim(kube, cache, schedule, node, NETWORK_FINALIZER, _ref)
        self._lock = asyncio.Lock()  # subnet choice and the isolation chains: one network at a time
        self._leaving: dict[str, asyncio.Future[None]] = {}  # key → the node side of a deleted network going
        self._lease_waiters: set[asyncio.Event] = set()  # set by addresses_released
        self._synced: tuple[list[hostrules.Member], float] | None = None  # last isolation sync: members, when

    # ------------------------------------------------------------------ what containers ask

    def default(self) -> BridgeNetwork | None:
        """The node's default network, as the daemon set it up (None: not k3c's own containerd)."""
        key = read_default_key(self.dirs) if self.dirs else None
        return read_network(self.dirs, key) if self.dirs and key else None

    def attachable(self, namespace: str, name: str) -> Attachable:
        """Network ``name`` of ``namespace`` as a container joins it; :class:`NetworkError` if it cannot."""
        if name == DEFAULT_NETWORK:
            net = self.default()
            if net is None:
                raise NetworkError("network bridge: this node's containerd is not k3c's own")
            obj = self._find(namespace, name)
            return Attachable(name, net.key, net.gateway_address, net.prefix_length,
                              _dns_enabled(obj) if obj else False)
        obj = self._find(namespace, name)
        if obj is None:
            raise NetworkError(f"network {name} not found")
        status = obj.get("status") or {}
        if self.dirs is None or status.get("phase") == "Failed" or status.get("node") not in (None, "", self.node):
            why = status.get("message") or f"phase {status.get('phase')}, node {status.get('node') or '?'}"
            raise NetworkError(f"network {name} cannot be used on this node: {why}")
        net = read_network(self.dirs, user_key(obj["metadata"]["uid"]))
        if status.get("phase") != "Ready" or net is None:
            raise NetworkNotReady(f"network {name} is being set up")
        return Attachable(name, net.key, net.gateway_address, net.prefix_length, _dns_enabled(obj))

    def _find(self, namespace: str, name: str) -> dict[str, Any] | None:
        for obj in self.cache:
            meta = obj["metadata"]
            if meta["name"] == name and meta.get("namespace", "default") == namespace \
                    and not meta.get("deletionTimestamp"):
                return obj
        return None

    def users_changed(self, container: dict[str, Any]) -> None:
        """A container changed or went: the networks it names (or named) report their containers anew."""
        ns = container["metadata"].get("namespace", "default")
        names = set(network_names(container)) | {
            str(n.get("name")) for n in (container.get("status") or {}).get("networks") or []}
        if not names:
            names = {DEFAULT_NETWORK}
        for net in self.cache:
            if net["metadata"].get("namespace", "default") == ns and net["metadata"]["name"] in names:
                self.schedule(net["metadata"]["uid"], USERS_REPORT_DELAY)

    def addresses_released(self) -> None:
        """A sandbox was stopped, its addresses released: networks waiting to leave the node look again."""
        for released in self._lease_waiters:
            released.set()

    # ------------------------------------------------------------------ reconcile

    async def reconcile(self, uid: str) -> float | None:
        return await self.claims.reconcile(uid, self._ensure, self._finalize)

    async def _ensure(self, obj: dict[str, Any]) -> float | None:
        if self.dirs is None:
            await self.claims.write_status(obj, {"phase": "Failed", "node": self.node,
                                                 "message": "networks need k3c's own containerd on the node"})
            return None
        if obj["metadata"]["name"] == DEFAULT_NETWORK:
            net = self.default()
        else:
            try:
                net = await self._set_up(obj)
            except (subnets.SubnetError, bridges.BridgeError, hostrules.RulesError) as err:
                await self.claims.write_status(obj, {"phase": "Failed", "node": self.node, "message": str(err),
                                                     "conditions": [_condition(False, "SetupFailed", str(err))]})
                return SETUP_RETRY
        if net is None:
            await self.claims.write_status(obj, {"phase": "Failed", "node": self.node,
                                                 "message": "the node's default network is not set up"})
            return None
        async with self._lock:
            await asyncio.to_thread(self._sync_rules)
        status: NetworkStatus = {
            "phase": "Ready", "node": self.node, "bridge": net.bridge, "subnet": net.subnet,
            "gateway": net.gateway_address, "message": "", "containers": self._attached(obj),
            "conditions": [_condition(True, "Ready", "")]}
        await self.claims.write_status(obj, status)
        return None

    async def _set_up(self, obj: dict[str, Any]) -> BridgeNetwork:
        assert self.dirs is not None
        spec = obj.get("spec", {})
        if spec.get("driver") not in (None, "", "bridge"):
            raise subnets.SubnetError(f"driver {spec['driver']!r} is not supported: only bridge")
        key = user_key(obj["metadata"]["uid"])
        if self._leaving:
            await asyncio.wait(list(self._leaving.values()))
        async with self._lock:
            net = read_network(self.dirs, key)
            if net is None:
                net = await asyncio.to_thread(self._choose, obj, key)
                write_json(self.dirs.conflist(key), render_conflist(net, self.dirs.ipam))
                log.info("network %s/%s: %s on bridge %s", obj["metadata"].get("namespace"),
                         obj["metadata"]["name"], net.subnet, net.bridge)
            await asyncio.to_thread(bridges.ensure, net.bridge, net.gateway_address, net.prefix_length, net.mtu)
        return net

    def _choose(self, obj: dict[str, Any], key: str) -> BridgeNetwork:
        """The network's subnet and gateway, checked against everything in use (see the module docstring)."""
        assert self.dirs is not None
        spec = obj.get("spec", {})
        taken = subnets.host_networks()
        for other in self.dirs.keys():
            if other != key and (known := read_network(self.dirs, other)) is not None:
                taken.append(ipaddress.IPv4Network(known.subnet))
        for other_obj in self.cache:
            sub = (other_obj.get("status") or {}).get("subnet")
            if other_obj["metadata"]["uid"] != obj["metadata"]["uid"] and sub:
                with contextlib.suppress(ValueError):
                    taken.append(ipaddress.IPv4Network(sub, strict=False))
        given = str(spec.get("subnet") or "")
        if given:
            subnet = subnets.parse(given)
            subnets.check(subnet, taken, str(spec.get("gateway") or ""), str(spec.get("ipRange") or ""))
        else:
            if spec.get("gateway") or spec.get("ipRange"):
                raise subnets.SubnetError("gateway and ipRange need a subnet")
            subnet = subnets.allocate(taken)
        return BridgeNetwork(key=key, bridge=key, subnet=str(subnet), gateway=str(spec.get("gateway") or ""),
                             ip_range=str(spec.get("ipRange") or ""), internal=bool(spec.get("internal")))

    def _sync_rules(self, force: bool = False) -> None:
        """The host's rules for the networks set up here (:mod:`k3c.nodenet.hostrules`); the same members as
        at the last sync less than :data:`RESYNC_INTERVAL` ago are not written again (the default network is
        reconciled at every change of a container)."""
        assert self.dirs is not None
        default = self.default()
        if default is None:
            return
        members = conflists.members(self.dirs, default.key)
        now = time.monotonic()
        if not force and self._synced is not None and self._synced[0] == members \
                and now - self._synced[1] < RESYNC_INTERVAL:
            return
        hostrules.sync(default.bridge, members)
        self._synced = (members, now)

    def _attached(self, obj: dict[str, Any]) -> list[AttachedContainer]:
        ns, name = obj["metadata"].get("namespace", "default"), obj["metadata"]["name"]
        out: list[AttachedContainer] = []
        for c in self.containers:
            if c["metadata"].get("namespace", "default") != ns or c["metadata"].get("deletionTimestamp"):
                continue
            for att in (c.get("status") or {}).get("networks") or []:
                if att.get("name") == name and att.get("ip"):
                    docker_name = (c["metadata"].get("annotations") or {}).get(NAME_ANNOTATION) or c["metadata"]["name"]
                    out.append({"name": docker_name, "ip": att["ip"], "aliases": list(att.get("aliases") or [])})
        return sorted(out, key=lambda a: a["name"])

    # ------------------------------------------------------------------ delete

    async def _finalize(self, obj: dict[str, Any]) -> float | None:
        meta = obj["metadata"]
        ns, name = meta.get("namespace", "default"), meta["name"]
        if name != DEFAULT_NETWORK and self.dirs is not None:
            # The cache may not hold every container yet right after a start: ask the API server itself.
            users = sorted(c["metadata"]["name"] for c in await self.kube.list_objects(LOCAL_CONTAINERS, ns)
                           if uses_network(c, ns, name))
            key = user_key(meta["uid"])
            if users:
                await self.claims.write_status(obj, {"message": f"network is in use by {', '.join(users)}"})
                return 2.0
            return await self._remove(obj, key)
        return None if await self.claims.release(obj) else 0.1

    async def _remove(self, obj: dict[str, Any], key: str) -> float | None:
        """The object goes first, then the node's side.

        Once no container names the network, what still holds an address on it are sandboxes of containers
        just removed, stopped in the background (~0.3 s). The DELETE does not wait for them, nor for the
        host rules' sync (`docker-compose down` removes its networks right after its containers, one after
        the other). Set-ups wait for networks leaving (:meth:`_set_up`), so one made again at once with the
        same subnet finds this one's bridge and conflist gone. A crash meanwhile leaves an orphan for
        :meth:`collect_orphans`."""
        leaving = self._leaving[key] = asyncio.get_running_loop().create_future()
        try:
            if not await self.claims.release(obj):
                return 0.1
            await self._leases_released(key)
            async with self._lock:
                await asyncio.to_thread(self._tear_down, key)
            return None
        finally:
            del self._leaving[key]
            leaving.set_result(None)

    async def _leases_released(self, key: str) -> None:
        """Wait (:data:`LEASES_PATIENCE` at most) until no address of network ``key`` is leased and no
        sandbox removal is in flight, woken by :meth:`addresses_released`. A lease is released by the CNI
        DEL of StopPodSandbox, but RemovePodSandbox may run DEL once more, which would make the network's
        IPAM directory again if it were already torn down."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + LEASES_PATIENCE
        released = asyncio.Event()
        self._lease_waiters.add(released)
        try:
            while ((held := self._leases(key)) or self.sandboxes_removing()) and loop.time() < deadline:
                released.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(released.wait(), 0.5)
            if held:
                log.warning("network %s: addresses %s still leased after %.0f s; removing it regardless",
                            key, ", ".join(held), LEASES_PATIENCE)
        finally:
            self._lease_waiters.discard(released)

    def _leases(self, key: str) -> list[str]:
        assert self.dirs is not None
        d = self.dirs.ipam / key
        return [f.name for f in d.iterdir() if f.name[:1].isdigit()] if d.is_dir() else []

    def _tear_down(self, key: str) -> None:
        """Bridge, conflist, leases of network ``key``, then the isolation rules without it."""
        assert self.dirs is not None
        net = read_network(self.dirs, key)
        bridges.remove(net.bridge if net else key)
        self.dirs.conflist(key).unlink(missing_ok=True)
        shutil.rmtree(self.dirs.ipam / key, ignore_errors=True)
        self._sync_rules(force=True)
        log.info("network %s removed from the node", key)

    async def collect_orphans(self) -> list[str]:
        """Tear down user networks set up here whose object is gone and that nothing uses any more.

        Under the lock that set-ups take: a conflist on disk while the list is read belongs to an object the
        list shows (the object exists before its conflist is written), so a network being made is never taken
        for an orphan."""
        if self.dirs is None:
            return []
        done: list[str] = []
        async with self._lock:
            live = {user_key(o["metadata"]["uid"]) for o in await self.kube.list_objects(NETWORKS)}
            for key in self.dirs.keys():
                if key.startswith(USER_PREFIX) and key not in live and key not in self._leaving \
                        and not self._leases(key) and not self.sandboxes_removing():  # (one in flight finishes its own)
                    await asyncio.to_thread(self._tear_down, key)
                    done.append(key)
        return done


def _condition(ready: bool, reason: str, message: str) -> Condition:
    return {"type": "Ready", "status": "True" if ready else "False", "reason": reason, "message": message,
            "lastTransitionTime": now_rfc3339()}


def pseudo(names: list[str]) -> str | None:
    """``none`` (loopback only) when that is what a container asks for; :class:`NetworkError` if combined."""
    if NO_NETWORK in names:
        if names != [NO_NETWORK]:
            raise NetworkError("network none cannot be combined with other networks")
        return NO_NETWORK
    return None
