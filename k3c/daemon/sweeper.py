"""What a crash leaves behind, released: at each start of k3c's containerd, and every little while.

``kill -9`` of ``k3c daemon`` (containerd dies with it) or of containerd alone cuts sandbox creations and
removals short. What containerd no longer records is then nobody's to release: shims and their runc
containers, task bundles and CRI directories (:mod:`k3c.daemon.runtimegc`), IP leases, network
namespaces and libcni's cache (:mod:`k3c.daemon.netgc`), and leases containerd's clients took for a
while (a pull's, an unpack's). Whether something is still in use is decided against CRI's lists: its
sandboxes (with their network namespaces) and containers.

- :meth:`Sweeper.after_start`, once containerd answers after k3c started it: everything that predates
  it and is not live goes. When the whole daemon starts (``fresh``) nothing of k3c runs yet, so every
  expiring lease from before is stale; when containerd alone was restarted, the operator and the API
  server live on and may still hold their own (``k3c-…``) leases: only containerd's own go.
- :meth:`Sweeper.periodic`, every :data:`SWEEP_INTERVAL` seconds: what is unknown at two sweeps in a row
  (a sandbox CRI recovered NOTREADY after the crash leaves its shim, and at times its mounted netns,
  behind only when the operator removes it, after the start); network state only once older than
  :data:`NETWORK_GRACE`, since a sandbox being created holds its netns and IP before CRI lists it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass, field

from k3c.cri.errors import RuntimeCallError
from k3c.cri.imagestore import LEASE_EXPIRE_LABEL, TEMPORARY_LEASE_PREFIX, ContainerdImages
from k3c.cri.runtime import CRIClient, pb
from k3c.daemon import netgc
from k3c.daemon.containerd import ContainerdConfig
from k3c.daemon.runtimegc import RuntimeSweeper, Suspects

log = logging.getLogger(__name__)

#: Seconds between periodic sweeps; an orphan found in one is ended in the next.
SWEEP_INTERVAL = 10.0
#: Network state younger than this is never swept periodically: a RunPodSandbox holds its netns and IP
#: before CRI lists the sandbox, for as long as CNI takes.
NETWORK_GRACE = 30.0


@dataclass
class Known:
    """What CRI lists: sandbox ids, their network namespaces, container ids."""

    sandboxes: set[str] = field(default_factory=set)
    netns: set[str] = field(default_factory=set)
    containers: set[str] = field(default_factory=set)

    @property
    def ids(self) -> set[str]:
        return self.sandboxes | self.containers


async def known(address: str, netns_of: dict[str, str] | None = None) -> Known:
    """Ask CRI (raises :class:`RuntimeCallError` if it does not answer).

    A sandbox's network namespace is only in its verbose status (its whole runtime spec, ~10 KB to encode
    and parse): ``netns_of`` remembers it by sandbox id between calls, as it never changes, so a periodic
    sweep asks only about sandboxes new since the last (one call per sandbox every 10 s was the sweep's
    cost with hundreds running)."""
    found = Known()
    netns_of = {} if netns_of is None else netns_of
    async with CRIClient(address, timeout=10.0) as cri:
        for sb in await cri.list_pod_sandbox():
            found.sandboxes.add(sb.id)
            if sb.id not in netns_of:
                with contextlib.suppress(RuntimeCallError, ValueError, KeyError, TypeError):
                    netns_of[sb.id] = _netns_path(await cri.pod_sandbox_status(sb.id, verbose=True))
            if netns_of.get(sb.id):
                found.netns.add(netns_of[sb.id])
        found.containers = {c.id for c in await cri.list_containers()}
    for gone in netns_of.keys() - found.sandboxes:
        del netns_of[gone]
    return found


def _netns_path(status: pb.PodSandboxStatusResponse) -> str:
    """The network namespace in a verbose PodSandboxStatus ("" if it has none)."""
    info = json.loads(status.info["info"])
    for ns in info["runtimeSpec"]["linux"]["namespaces"]:
        if ns.get("type") == "network" and ns.get("path"):
            return str(ns["path"])
    return ""


class Sweeper:
    """Releases what vanished sandboxes left, for k3c's own containerd (see the module docstring)."""

    def __init__(self, cfg: ContainerdConfig) -> None:
        self.cfg = cfg
        self.runtime = RuntimeSweeper(cfg)
        self.network_suspects = Suspects()
        self._netns_of: dict[str, str] = {}  # sandbox id → its network namespace (see known())

    @property
    def address(self) -> str:
        return str(self.cfg.socket_path)

    async def after_start(self, older_than: float, fresh: bool) -> None:
        """containerd came up at ``older_than``: release everything from before that it does not know."""
        try:
            live = await known(self.address)
        except RuntimeCallError as err:
            log.warning("cannot check for what crashed sandboxes left: %s", err)
            return
        try:
            await asyncio.to_thread(self.runtime.sweep, live.ids, older_than)
            await asyncio.to_thread(netgc.sweep, self.cfg, live.sandboxes, live.netns, older_than)
        except Exception:  # a leftover must never keep the node from starting
            log.exception("releasing what crashed sandboxes left failed")
        await self._drop_stale_leases(older_than, fresh)

    async def periodic(self) -> None:
        """End runtime leftovers unknown at this sweep and the previous one, and release network state
        older than :data:`NETWORK_GRACE` unknown at both (a failure is only logged: the next sweep tries
        again, and nothing here may stop the daemon)."""
        try:
            live = await known(self.address, self._netns_of)
            await asyncio.to_thread(self.runtime.sweep, live.ids)
            await asyncio.to_thread(self._sweep_network, live)
        except RuntimeCallError as err:
            log.debug("periodic sweep skipped: %s", err)
        except Exception:
            log.exception("periodic sweep failed")

    def _sweep_network(self, live: Known) -> None:
        found = netgc.find(self.cfg, live.sandboxes, live.netns, time.time() - NETWORK_GRACE)
        orphans = self.network_suspects.confirm(dict.fromkeys(found.keys(), 0.0), None)
        if orphans:
            netgc.release(self.cfg, found.only(orphans))

    async def _drop_stale_leases(self, older_than: float, fresh: bool) -> None:
        """Expiring leases from before ``older_than`` whose holder died (see the module docstring)."""
        try:
            async with ContainerdImages(self.address) as store:
                for lease in await store.list_leases():
                    ours = lease.id.startswith(TEMPORARY_LEASE_PREFIX)
                    if (LEASE_EXPIRE_LABEL in lease.labels and lease.created_at.ToSeconds() < older_than
                            and (fresh or not ours)):
                        await store.delete_lease(lease.id)
                        log.info("dropped lease %s of a client that died", lease.id)
        except RuntimeCallError as err:
            log.warning("cannot check containerd's leases: %s", err)
