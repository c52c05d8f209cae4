"""What a k3c node must not leave behind: one list of checks, shared by every test and teardown.

Two moments are checked:

- **stopped** (``live`` None): the daemon was stopped after all its objects were deleted. Nothing of its
  runtime may remain on the host: no shim, network namespace, IP lease, mount, runc container or bundle.
- **running** (``live`` given, see :func:`live_state`): the daemon runs and its objects converged. Every
  shim, netns, IP lease, mount, runc container, bundle, sandbox, container, containerd lease and active
  snapshot must belong to something containerd knows and an object owns (a stopped container's kept
  writable layer ``k3c-rw-<uid>`` belongs to its object), or be one of :data:`KEPT`.

Everything here looks at the host itself (/proc, the daemon's directories, containerd's API), never at
what k3c says about it, so a leak k3c does not know about is found. Later issues (networks, the cluster
agent) add their checks to :func:`host_leftovers` or :func:`runtime_leftovers`.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from k3c.api import CRI_MANAGED_LABEL, CRI_POOL_LABEL, CRI_UID_LABEL
from k3c.cri.writablelayers import PREFIX as KEPT_LAYER_PREFIX
from k3c.daemon.containerd import CRI_PLUGIN, ContainerdConfig, leased_ips
from k3c.nodenet import hostrules
from k3c.nodenet.conflists import USER_PREFIX, read_network

#: containerd's namespace for everything CRI (and so k3c) makes.
NAMESPACE = "k8s.io"
#: Where containerd's runc v2 runtime keeps one bundle per task (``<state>/<this>/<namespace>/<id>``).
TASKS_DIR = "io.containerd.runtime.v2.task"
#: The builder's network sandbox carries this label (k3c.builder.network.LABEL).
BUILDER_NETWORK_LABEL = "k3c.io/builder-network"

#: What k3c keeps on purpose while it runs, with no object owning it. Anything else is a leftover.
KEPT: dict[str, str] = {
    "sandbox labelled k3c.io/pool": "the warm pool's spare sandboxes (at most --pool-size), with their "
                                    "shim, netns, IP lease, /dev/shm and pause rootfs",
    f"sandbox labelled {BUILDER_NETWORK_LABEL}": "the builder's network sandbox, kept while the build "
                                                 "engine runs (k3c.builder.network)",
    "containerd lease k3c-build-cache": "the build cache's lease (k3c.builder.layercache.LEASE)",
    "committed snapshots": "image layers and the build cache's layers, owned by images or that lease "
                           "(containerd's garbage collector removes unreferenced ones)",
}
KEPT_LEASES = frozenset({"k3c-build-cache"})


@dataclass(frozen=True)
class Node:
    """Where one daemon keeps its runtime state (everything of it lives under ``base``)."""

    base: Path
    root_dir: Path
    containerd: ContainerdConfig
    address: str  #: containerd's socket: a shim serves the containerd named by its ``-address``

    @property
    def builder_dir(self) -> Path:
        return self.root_dir / "builder"


@dataclass
class Live:
    """containerd's live state and the objects that exist, for the *running* check."""

    sandboxes: dict[str, dict[str, str]] = field(default_factory=dict)  #: id → labels
    sandbox_netns: set[str] = field(default_factory=set)  #: netns paths of READY sandboxes
    not_ready: set[str] = field(default_factory=set)  #: sandboxes whose pause process is gone
    containers: dict[str, dict[str, str]] = field(default_factory=dict)  #: id → labels
    container_sandbox: dict[str, str] = field(default_factory=dict)  #: container id → its sandbox's
    leases: set[str] = field(default_factory=set)
    active_snapshots: set[str] = field(default_factory=set)  #: keys of active and view snapshots
    object_uids: set[str] = field(default_factory=set)  #: LocalContainers that exist
    pool_size: int = 1

    @property
    def ids(self) -> set[str]:
        return set(self.sandboxes) | set(self.containers)


def live_state(node: Node, object_uids: set[str], pool_size: int = 1) -> Live:
    """Ask containerd (CRI, leases, snapshots) what it knows now."""
    from k3c.cri.channel import dial, namespace_metadata
    from k3c.cri.proto import containerd_leases_pb2 as leases_pb
    from k3c.cri.proto import containerd_leases_pb2_grpc as leases_grpc
    from k3c.cri.proto import containerd_snapshots_pb2 as snap_pb
    from k3c.cri.proto import containerd_snapshots_pb2_grpc as snap_grpc
    from k3c.cri.runtime import CRIClient, pb

    async def ask() -> Live:
        live = Live(object_uids=set(object_uids), pool_size=pool_size)
        async with CRIClient(node.address) as cri:
            for sb in await cri.list_pod_sandbox():
                live.sandboxes[sb.id] = dict(sb.labels)
                if sb.state != pb.SANDBOX_READY:
                    live.not_ready.add(sb.id)
                else:
                    info = (await cri.pod_sandbox_status(sb.id, verbose=True)).info.get("info", "{}")
                    for ns in json.loads(info).get("runtimeSpec", {}).get("linux", {}).get("namespaces", []):
                        if ns.get("type") == "network" and ns.get("path"):
                            live.sandbox_netns.add(ns["path"])
            for c in await cri.list_containers():
                live.containers[c.id] = dict(c.labels)
                live.container_sandbox[c.id] = c.pod_sandbox_id
        channel = dial(node.address)
        try:
            md = namespace_metadata(NAMESPACE)
            resp = await leases_grpc.LeasesStub(channel).List(leases_pb.ListRequest(), metadata=md, timeout=10)
            live.leases = {lease.id for lease in resp.leases}
            snaps = snap_grpc.SnapshotsStub(channel)
            async for part in snaps.List(snap_pb.ListSnapshotsRequest(snapshotter="overlayfs"), metadata=md,
                                         timeout=10):
                live.active_snapshots |= {i.name for i in part.info if i.kind != snap_pb.COMMITTED}
        finally:
            await channel.close()
        return live

    return asyncio.run(ask())


# ------------------------------------------------------------------------------------------ host side


def shims(node: Node) -> list[psutil.Process]:
    """The ``containerd-shim-runc-v2`` processes serving this node's containerd (by their ``-address``)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        argv = proc.info["cmdline"] or []
        if argv and argv[0].endswith("containerd-shim-runc-v2") and node.address in argv:
            found.append(proc)
    return found


def _arg(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1] if flag in argv[:-1] else ""


def describe_shim(proc: psutil.Process) -> str:
    """Which task a shim serves and what still runs under it (to tell why it stayed)."""
    try:
        argv = proc.cmdline()
        kids = [c.name() for c in proc.children()]
    except psutil.Error:
        return f"shim pid {proc.pid} (gone)"
    return f"shim pid {proc.pid} (id {_arg(argv, '-id')[:12]}, children {kids})"


def mounts_under(base: Path) -> list[str]:
    """Mount points under ``base`` (this process's mount namespace is the host's)."""
    prefix = str(base) + "/"
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    return sorted(p for p in points if p.startswith(prefix))


def _owner_of_mount(node: Node, point: str) -> tuple[str, str] | None:
    """(kind, id) of a mount containerd makes for a task or a sandbox, else None."""
    state = node.containerd.state_dir
    parts = Path(point).parts
    for kind, prefix, depth in (("task", state / TASKS_DIR, 2), ("sandbox", state / CRI_PLUGIN / "sandboxes", 1)):
        pre = prefix.parts
        if parts[:len(pre)] == pre and len(parts) == len(pre) + depth + 1:
            return kind, parts[len(pre) + depth - 1]
    return None


def _lease_owner(path: Path) -> str:
    try:
        return path.read_text().split("\n", 1)[0].strip()
    except OSError:
        return ""


def host_leftovers(node: Node, live: Live | None) -> list[str]:
    """Shims, netns, IP leases, mounts, runc containers and bundles nothing accounts for (see the module doc)."""
    ids = live.ids if live is not None else set()
    found: list[str] = []
    for proc in shims(node):
        try:
            argv = proc.cmdline()
        except psutil.Error:
            continue
        if _arg(argv, "-namespace") != NAMESPACE or _arg(argv, "-id") not in ids:
            found.append(describe_shim(proc))
    netns_dir = node.containerd.netns_dir
    for ns in sorted(netns_dir.iterdir()) if netns_dir.is_dir() else []:
        if live is None or str(ns) not in live.sandbox_netns:
            found.append(f"netns {ns.name}")
    for lease in leased_ips(node.containerd, every_network=True):
        if live is None or _lease_owner(lease) not in live.sandboxes:
            found.append(f"IP lease {lease.parent.name}/{lease.name} (of {_lease_owner(lease)[:12] or '?'})")
    if live is None:  # (a running node has its networks; once stopped and cleaned, none may remain)
        found += network_leftovers(node)
    records = node.containerd.network_dirs.records
    for record in sorted(records.glob("*.json")) if records.is_dir() else []:
        if live is None or record.stem not in live.sandboxes:
            found.append(f"CNI attachment record of {record.stem[:12]}")
    netns = {str(p) for p in (live.sandbox_netns if live is not None else ())}
    for point in mounts_under(node.base):
        owner = _owner_of_mount(node, point)
        if point in netns or (owner is not None and owner[1] in ids):
            continue
        found.append(f"mount {point}")
    runc = node.containerd.runc_root / NAMESPACE
    for state in sorted(runc.iterdir()) if runc.is_dir() else []:
        if state.name not in ids:
            found.append(f"runc container {state.name[:12]}")
    bundles = node.containerd.state_dir / TASKS_DIR / NAMESPACE
    for bundle in sorted(bundles.iterdir()) if bundles.is_dir() else []:
        if bundle.name not in ids:
            found.append(f"task bundle {bundle.name[:13]}")
    builder_runc = node.builder_dir / "native" / "runc"
    for state in sorted(builder_runc.iterdir()) if builder_runc.is_dir() else []:
        found.append(f"build runc container {state.name}")
    return found


def network_leftovers(node: Node) -> list[str]:
    """User networks' conflists and bridges, and rules of k3c's chains beyond the default network's."""
    cfg = node.containerd
    found: list[str] = []
    for key in cfg.network_dirs.keys():
        if key == cfg.network_name:
            continue
        found.append(f"network conflist {key}")
        net = read_network(cfg.network_dirs, key)
        if net is not None and Path(f"/sys/class/net/{net.bridge}").exists():
            found.append(f"bridge {net.bridge}")
    for rule in hostrules.listed(cfg.bridge):
        if f" {USER_PREFIX}" in rule:
            found.append(f"iptables rule {rule}")
    return found


# ------------------------------------------------------------------------------------------ containerd side


def runtime_leftovers(live: Live) -> list[str]:
    """Sandboxes, containers, containerd leases and active snapshots no object owns and k3c does not keep."""
    found: list[str] = []
    spares: list[str] = []
    used = set(live.container_sandbox.values())
    for sid, labels in sorted(live.sandboxes.items()):
        if sid in live.not_ready:  # k3c removes broken sandboxes; one that stays is a leak
            found.append(f"sandbox {sid[:12]} NOTREADY (labels {labels})")
        elif labels.get(CRI_POOL_LABEL) == "true" and CRI_UID_LABEL not in labels:
            if sid not in used:  # a pooled sandbox serving a container: judged by that container
                spares.append(sid[:12])
        elif BUILDER_NETWORK_LABEL in labels:
            continue
        elif labels.get(CRI_UID_LABEL) not in live.object_uids:
            found.append(f"sandbox {sid[:12]} (labels {labels})")
    if len(spares) > live.pool_size:
        found.append(f"{len(spares)} spare sandboxes for a pool of {live.pool_size}: {spares}")
    for cid, labels in sorted(live.containers.items()):
        if labels.get(CRI_MANAGED_LABEL) != "true" or labels.get(CRI_UID_LABEL) not in live.object_uids:
            found.append(f"container {cid[:12]} (labels {labels})")
    found += [f"containerd lease {lease}" for lease in sorted(live.leases - KEPT_LEASES)]
    found += [f"active snapshot {key}" for key in sorted(live.active_snapshots - live.ids)
              if not _kept_layer_of(key, live.object_uids)]
    return found


def _kept_layer_of(key: str, uids: set[str]) -> bool:
    """A stopped container's kept writable layer (k3c.cri.writablelayers), owned by its existing object."""
    return key.startswith(KEPT_LAYER_PREFIX) and key[len(KEPT_LAYER_PREFIX):] in uids


def leftovers(node: Node, live: Live | None) -> list[str]:
    """Everything above: the host side, plus containerd's side when it runs."""
    return host_leftovers(node, live) + (runtime_leftovers(live) if live is not None else [])


def summary(items: list[str], limit: int = 20) -> str:
    """A readable assertion message."""
    more = f" … and {len(items) - limit} more" if len(items) > limit else ""
    return "; ".join(items[:limit]) + more

