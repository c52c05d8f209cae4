"""Pod sandboxes for LocalContainers, and a warm pool of generic ones: the key to a fast `k3c run`.

A CRI sandbox (pause process + network namespace + CNI ADD) costs ~150 ms to make and ~400 ms to tear
down here, more than docker's whole `run --rm`. Most containers need nothing sandbox-specific (no ports,
host name, DNS, host network, privileges), so the pool keeps ``size`` such generic sandboxes READY: a start
then only costs CreateContainer + StartContainer in one of them. When its container is removed, a generic
sandbox goes back to the pool instead of being torn down (tearing down and making a new one costs the
node ~550 ms of work, which slowed back-to-back runs by half here). The next container gets a fresh root
filesystem, PID namespace and cgroup anyway; what the sandbox shares with its containers is scrubbed
first (:class:`Scrubber`): its /etc/hosts, /etc/resolv.conf and /etc/hostname are restored, /dev/shm
emptied and System V IPC objects removed. Only the network namespace (address, interface) is reused, as
docker reuses addresses. A sandbox that cannot be scrubbed, or ran a container with capabilities that
can change its namespaces, is torn down instead.

A refill runs a little after a spare was taken, and only if none came back meanwhile, so it never competes
with the start it served for the node's CPUs.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import shutil
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from k3c.api import CRI_SANDBOX_SPEC_ANNOTATION, NO_NETWORK
from k3c.cri.errors import NotFoundError, RuntimeCallError, RuntimeUnavailableError
from k3c.cri.restarts import while_unavailable
from k3c.cri.runtime import CRIClient, pb
from k3c.reconcilers.criconfig import (
    HOST_GATEWAY,
    SandboxSpec,
    SpecError,
    generic_sandbox_spec,
    sandbox_config,
)

log = logging.getLogger(__name__)

#: A recycled sandbox serves at most this many containers before it is replaced by a fresh one.
MAX_SANDBOX_USES = 200
#: Sandboxes torn down in the background at once (:meth:`SandboxPool.remove_later`).
LATER_AT_ONCE = 2
#: Seconds a closing pool waits for the removals in flight (the daemon gives the operator 50 s to stop).
CLOSE_PATIENCE = 40.0
#: tries of a background removal that fails other than by containerd being unavailable, the n-th after
#: n × REMOVE_RETRY_DELAY seconds
REMOVE_ATTEMPTS = 4
REMOVE_RETRY_DELAY = 1.0


@dataclass(frozen=True, slots=True)
class Interface:
    """One interface of a sandbox: its address, gateway and MAC, as CRI reports the CNI result."""

    ip: str
    gateway: str = ""
    mac: str = ""


def interfaces_of(info: str) -> dict[str, Interface]:
    """``eth*`` interfaces from CRI's verbose sandbox info (``cniResult``, go-cni's merged result)."""
    try:
        found = (json.loads(info).get("cniResult") or {}).get("Interfaces") or {}
    except (ValueError, AttributeError):
        return {}
    out: dict[str, Interface] = {}
    for name, conf in found.items():
        ips = [c for c in (conf or {}).get("IPConfigs") or [] if "." in str(c.get("IP", ""))]
        if name.startswith("eth") and ips and conf.get("Sandbox"):
            out[name] = Interface(str(ips[0]["IP"]), str(ips[0].get("Gateway") or ""), str(conf.get("Mac") or ""))
    return out


@dataclass(slots=True)
class Sandbox:
    """A READY sandbox k3c made: its id, what it was made with, its config (needed by CreateContainer)."""

    id: str
    spec: SandboxSpec
    config: pb.PodSandboxConfig
    ip: str = ""
    uses: int = 0
    tainted: bool = False  # ran a container that could have changed its network namespace
    pid: int = 0  # of its pause process
    files: dict[str, bytes] = field(default_factory=dict)  # pristine /etc files, restored on recycling
    #: its interfaces as CNI set them up (``eth0``, ``eth1``, … in the order of its networks)
    interfaces: dict[str, Interface] = field(default_factory=dict)

    @property
    def pooled(self) -> bool:
        return self.spec.pooled


#: Files containerd keeps per sandbox and bind-mounts read-write into every container of it.
SANDBOX_FILES = ("hosts", "resolv.conf", "hostname")


@dataclass
class Scrubber:
    """Resets what a generic sandbox shares with its containers (needs k3c's own containerd's dirs)."""

    containerd_root: Path
    containerd_state: Path

    def sandbox_dir(self, sandbox_id: str) -> Path:
        return self.containerd_root / "io.containerd.grpc.v1.cri" / "sandboxes" / sandbox_id

    def shm_dir(self, sandbox_id: str) -> Path:
        return self.containerd_state / "io.containerd.grpc.v1.cri" / "sandboxes" / sandbox_id / "shm"

    def capture(self, sandbox: Sandbox) -> bool:
        d = self.sandbox_dir(sandbox.id)
        try:
            sandbox.files = {name: (d / name).read_bytes() for name in SANDBOX_FILES}
        except OSError:
            return False
        return True

    async def scrub(self, sandbox: Sandbox) -> bool:
        """Restore the /etc files, empty /dev/shm, drop SysV IPC objects; False if any of it failed."""
        if not sandbox.files or not sandbox.pid:
            return False
        try:
            await asyncio.to_thread(self._reset_files, sandbox)
            proc = await asyncio.create_subprocess_exec(
                "nsenter", f"--ipc=/proc/{sandbox.pid}/ns/ipc", "ipcrm", "--all",
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
            return await proc.wait() == 0
        except OSError as err:
            log.debug("cannot scrub sandbox %s: %s", sandbox.id[:12], err)
            return False

    def _reset_files(self, sandbox: Sandbox) -> None:
        d = self.sandbox_dir(sandbox.id)
        for name, data in sandbox.files.items():
            (d / name).write_bytes(data)
        shm = self.shm_dir(sandbox.id)
        if shm.is_dir():
            for entry in shm.iterdir():
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()


class SandboxPool:
    """Creates, recycles and removes sandboxes; keeps ``size`` generic ones ready."""

    def __init__(self, cri: CRIClient, node: str, log_dir: Path, size: int = 1, refill_delay: float = 0.5,
                 scrubber: Scrubber | None = None, on_stopped: Callable[[], None] | None = None):
        """``on_stopped``: called after each sandbox's removal (done or failed), which released its IP
        addresses (a network being removed waits for exactly that). Not at StopPodSandbox: containerd's
        RemovePodSandbox may stop the sandbox once more, CNI DEL included, and a network torn down
        meanwhile would have its IPAM directory made again by that DEL."""
        self.cri = cri
        self.on_stopped = on_stopped
        self.scrubber = scrubber
        self.node = node
        self.log_dir = log_dir
        self.size = size
        self.refill_delay = refill_delay
        self.spares: list[Sandbox] = []
        self._refill: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._calls: set[asyncio.Future[str]] = set()  # RunPodSandbox calls in flight
        self._removals: dict[str, asyncio.Task[None]] = {}  # sandbox id → its removal in flight
        self._later: asyncio.Semaphore | None = None  # background removals at once (see remove_later)
        self._queued: set[str] = set()  # sandboxes waiting for their turn to be removed in the background
        self._closed = False
        self._making = False
        self._returning = 0  # generic sandboxes on their way back (see returning())
        self._wake = asyncio.Event()

    # ---- making and removing ----

    async def run(self, spec: SandboxSpec) -> Sandbox:
        """RunPodSandbox for ``spec``; returns it READY with its IP."""
        config = sandbox_config(spec, self.node, self.log_dir)
        # Never cancel RunPodSandbox midway: containerd would set up the network and then fail to tear it
        # down with the cancelled context, leaking a netns and an IP lease. If our caller is cancelled
        # meanwhile, the finished sandbox is removed in the background instead.
        call = asyncio.ensure_future(self.cri.run_pod_sandbox(config))
        self._calls.add(call)
        call.add_done_callback(self._calls.discard)
        try:
            sid = await asyncio.shield(call)
        except asyncio.CancelledError:
            call.add_done_callback(self._remove_orphan)
            raise
        except RuntimeUnavailableError:
            # containerd died during the call: it may have made the sandbox all the same (CRI recovers it
            # READY). Nobody would ever use or remove it; find it by its unique metadata once back.
            self._spawn(self._remove_unanswered(config.metadata.uid))
            raise
        sandbox = Sandbox(sid, spec, config)
        try:
            resp = await self.cri.pod_sandbox_status(sid, verbose=True)
            sandbox.ip = "" if spec.host_network or spec.networks == [NO_NETWORK] else resp.status.network.ip
            sandbox.interfaces = {} if spec.host_network else interfaces_of(resp.info.get("info", ""))
            if spec.extra_hosts:
                await asyncio.to_thread(self._add_hosts, sandbox, resp.info.get("info", ""))
        except (RuntimeCallError, SpecError):
            await self.remove(sid)
            raise
        if spec.pooled:
            self._prepare_recycling(sandbox, resp.info.get("info", ""))
        return sandbox

    def _add_hosts(self, sandbox: Sandbox, info: str) -> None:
        """docker's ``--add-host``: lines appended to the /etc/hosts containerd keeps in the sandbox's own
        directory (CRI has no field for them; the file goes with the sandbox)."""
        if self.scrubber is None:
            raise SpecError("extraHosts: needs k3c's own containerd (its sandbox directories)")
        pid = 0
        with contextlib.suppress(ValueError, TypeError):
            pid = int(json.loads(info).get("pid") or 0)
        gateway = "127.0.0.1" if sandbox.spec.host_network else default_gateway(pid)
        lines = "".join(f"{gateway if ip == HOST_GATEWAY else ip}\t{name}\n" for name, ip in sandbox.spec.extra_hosts)
        hosts = self.scrubber.sandbox_dir(sandbox.id) / "hosts"
        old = hosts.read_text() if hosts.exists() else ""
        hosts.write_text(old + ("" if not old or old.endswith("\n") else "\n") + lines)

    def _remove_orphan(self, call: asyncio.Future[str]) -> None:
        """A sandbox finished for a caller that was cancelled: nobody will use it."""
        if not call.cancelled() and call.exception() is None:
            self._spawn(self._remove_quietly(call.result()))

    def _prepare_recycling(self, sandbox: Sandbox, info: str) -> None:
        """Remember what :class:`Scrubber` needs; without it the sandbox is used once only."""
        with contextlib.suppress(ValueError, TypeError):
            sandbox.pid = int(json.loads(info).get("pid") or 0)
        if self.scrubber is None or not sandbox.pid or not self.scrubber.capture(sandbox):
            sandbox.tainted = True

    async def remove(self, sandbox_id: str) -> None:
        """Stop and remove a sandbox (its containers, netns, IP lease, port rules); gone already is fine.

        Never cut short, like RunPodSandbox: CRI runs CNI DEL under the call's context, so a cancelled
        StopPodSandbox kills the plugin and leaks the netns and the IP lease. If our caller is cancelled,
        the removal goes on in the background (and :meth:`close` waits for it).
        """
        removal = self._removals.get(sandbox_id)
        if removal is None:  # one at a time: concurrent ones of one sandbox only fail each other (CNI DEL twice)
            removal = self._removals[sandbox_id] = self._spawn(self._stop_and_remove(sandbox_id))
            removal.add_done_callback(lambda _: self._removed(sandbox_id))
        try:
            await asyncio.shield(removal)
        except asyncio.CancelledError:
            removal.add_done_callback(_log_failed_removal)
            raise

    async def _stop_and_remove(self, sandbox_id: str, patience: float = 60.0) -> None:
        """StopPodSandbox + RemovePodSandbox, waiting out a containerd being restarted (the daemon brings
        a dead one back within a second or two): a removal given up would leave a sandbox nobody knows."""
        async def once() -> None:
            with contextlib.suppress(NotFoundError):
                await self.cri.stop_pod_sandbox(sandbox_id)
            with contextlib.suppress(NotFoundError):
                await self.cri.remove_pod_sandbox(sandbox_id)

        await while_unavailable(once, patience, give_up=lambda: self._closed)

    def _removed(self, sandbox_id: str) -> None:
        self._removals.pop(sandbox_id, None)
        if self.on_stopped is not None:
            self.on_stopped()

    def removing(self) -> bool:
        """Whether a sandbox is being stopped or removed now: its CNI DEL may still run (see ``on_stopped``)."""
        return bool(self._removals)

    def removals_pending(self) -> bool:
        """Whether sandboxes are being removed or wait their turn (:meth:`remove_later`): IP addresses they
        hold are about to be free."""
        return bool(self._removals or self._queued)

    def remove_later(self, sandbox_id: str) -> None:
        """Tear down in the background: ~400 ms nobody needs to wait for.

        A few at a time (:data:`LATER_AT_ONCE`): StopPodSandbox runs CNI DEL and kills the pause process,
        CPU the containers still being stopped or started need more (an `rm -f` of fifty would otherwise
        wait for fifty teardowns sharing two cores)."""
        self._spawn(self._remove_in_turn(sandbox_id))

    async def _remove_in_turn(self, sandbox_id: str) -> None:
        if self._later is None:
            self._later = asyncio.Semaphore(LATER_AT_ONCE)
        self._queued.add(sandbox_id)
        try:
            async with self._later:
                if sandbox_id in self._queued:  # (not taken by close() meanwhile)
                    await self._remove_quietly(sandbox_id)
        finally:
            self._queued.discard(sandbox_id)

    async def _remove_unanswered(self, metadata_uid: str, patience: float = 60.0) -> None:
        """Remove the sandbox an unanswered RunPodSandbox of ``metadata_uid`` made, if it made one, as
        soon as containerd answers again (for ``patience`` s at most; a later start's adoption removes
        unused sandboxes anyway)."""
        try:
            listed = await while_unavailable(self.cri.list_pod_sandbox, patience, give_up=lambda: self._closed)
        except RuntimeUnavailableError:
            return
        for sid in [sb.id for sb in listed if sb.metadata.uid == metadata_uid]:
            log.info("removing sandbox %s: made by a call containerd's death cut short", sid[:12])
            await self._remove_quietly(sid)

    async def _remove_quietly(self, sandbox_id: str, attempts: int = REMOVE_ATTEMPTS) -> None:
        """:meth:`remove` for a caller that does not wait (a removal in the background, the close), tried
        again a few times on an error other than an unavailable containerd, which :meth:`remove` waits out
        itself: nobody else removes a sandbox whose container is gone until the operator starts again, and
        a containerd just restarted can fail a stop while it reconnects to the shims."""
        for attempt in range(1, attempts + 1):
            try:
                await self.remove(sandbox_id)
                return
            except RuntimeCallError as err:
                if attempt == attempts or self._closed:
                    log.warning("removing sandbox %s failed: %s", sandbox_id[:12], err)
                    return
                log.info("removing sandbox %s failed (%s), trying again", sandbox_id[:12], err)
                await asyncio.sleep(attempt * REMOVE_RETRY_DELAY)

    # ---- the pool ----

    async def take(self) -> Sandbox:
        """A READY generic sandbox: a spare if there is one (then refill later), one about to come back
        from its previous container (a few ms), else a new one now (~150 ms)."""
        await self._await_returning(timeout=0.5)
        while self.spares:
            sandbox = self.spares.pop()
            self.schedule_refill()
            if await self._still_ready(sandbox):
                sandbox.uses += 1
                return sandbox
            self.remove_later(sandbox.id)
        sandbox = await self.run(generic_sandbox_spec())
        sandbox.uses = 1
        self.schedule_refill()
        return sandbox

    async def _await_returning(self, timeout: float) -> None:
        """No spare, but a sandbox is on its way back (container being removed, scrub running): wait."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self.spares and self._returning > 0 and (remaining := deadline - loop.time()) > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), remaining)

    def _notify(self) -> None:
        self._wake.set()
        self._wake = asyncio.Event()

    def returning(self) -> None:
        """A generic sandbox's container is being removed: :meth:`give_back` (or :meth:`lost`) follows."""
        self._returning += 1

    def lost(self) -> None:
        """An announced return that will not happen after all."""
        self._returning = max(0, self._returning - 1)
        self._notify()

    async def _still_ready(self, sandbox: Sandbox) -> bool:
        """Spares sit idle; one whose pause process died must not be handed out."""
        try:
            status = await self.cri.pod_sandbox_status(sandbox.id)
        except RuntimeCallError:
            return False
        return status.status.state == pb.SANDBOX_READY

    def give_back(self, sandbox: Sandbox) -> None:
        """A generic sandbox whose container was removed: scrubbed into the pool, or torn down."""
        if (sandbox.pooled and not sandbox.tainted and not self._closed and len(self.spares) < self.size
                and sandbox.uses < MAX_SANDBOX_USES and self.scrubber is not None):
            self._spawn(self._recycle(sandbox))
            return
        log.debug("sandbox %s not reusable (pooled %s, tainted %s, %d spares)", sandbox.id[:12], sandbox.pooled,
                  sandbox.tainted, len(self.spares))
        self.lost()
        self.remove_later(sandbox.id)
        self.schedule_refill()

    async def _recycle(self, sandbox: Sandbox) -> None:
        assert self.scrubber is not None
        try:
            if await self.scrubber.scrub(sandbox) and not self._closed and len(self.spares) < self.size:
                self.spares.append(sandbox)
                return
        finally:
            self.lost()  # arrived, or not coming: either way waiters look again
        log.debug("not reusing sandbox %s", sandbox.id[:12])
        await self._remove_quietly(sandbox.id)
        self.schedule_refill()

    def adopt_spare(self, sandbox: Sandbox) -> bool:
        """A generic sandbox found at start-up with nothing in it; False if the pool is full."""
        if len(self.spares) >= self.size:
            return False
        self.spares.append(sandbox)
        return True

    def schedule_refill(self) -> None:
        if self._closed or self.size <= 0 or (self._refill is not None and not self._refill.done()):
            return
        self._refill = asyncio.get_running_loop().create_task(self._fill())

    async def _fill(self) -> None:
        await asyncio.sleep(self.refill_delay)
        while not self._closed and len(self.spares) < self.size:
            try:
                self._making = True
                try:
                    sandbox = await self.run(generic_sandbox_spec())
                finally:
                    self._making = False
            except RuntimeCallError as err:
                log.warning("cannot prepare a spare sandbox: %s", err)
                await asyncio.sleep(5.0)
                continue
            if self._closed or len(self.spares) >= self.size:
                await self.remove(sandbox.id)
                return
            log.debug("spare sandbox %s ready", sandbox.id[:12])
            self.spares.append(sandbox)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def close(self, remove_spares: bool = True) -> None:
        """Stop refilling; remove the spares (a clean stop leaves only user containers behind)."""
        self._closed = True
        if self._refill is not None:
            if not self._making:  # cancelling RunPodSandbox midway would leak the sandbox containerd makes
                self._refill.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refill
        # A RunPodSandbox whose caller was cancelled (a container stopping with the operator) still ends in
        # a sandbox, removed by a background task its completion starts: wait for both, or the netns and IP
        # lease of that sandbox would outlive us.
        # Removals still waiting for their turn all start now: a stop right after `rm -f` of hundreds would
        # otherwise outlast the time the daemon gives us, leaving their sandboxes behind.
        queued, self._queued = set(self._queued), set()
        for sandbox_id in queued:
            self._spawn(self._remove_quietly(sandbox_id))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CLOSE_PATIENCE
        while (self._calls or self._background) and loop.time() < deadline:
            await asyncio.wait(self._calls | self._background, timeout=deadline - loop.time())
            await asyncio.sleep(0)  # let done callbacks spawn their removals
        spares, self.spares = self.spares, []
        log.info("closing the sandbox pool: %d spare(s) to remove", len(spares) if remove_spares else 0)
        if remove_spares:
            await asyncio.gather(*(self._remove_quietly(s.id) for s in spares))


def _log_failed_removal(task: asyncio.Task[None]) -> None:
    """A removal whose caller was cancelled: nobody else hears of its failure."""
    if not task.cancelled() and task.exception() is not None:
        log.warning("removing a sandbox failed: %s", task.exception())


def default_gateway(pid: int) -> str:
    """The gateway of the default route in process ``pid``'s network namespace (the node, on k3c's bridge)."""
    try:
        rows = Path(f"/proc/{pid}/net/route").read_text().splitlines()[1:] if pid else []
    except OSError:
        rows = []
    for row in rows:
        fields = row.split()
        if len(fields) > 2 and fields[1] == "00000000":
            return str(ipaddress.IPv4Address(int(fields[2], 16).to_bytes(4, "little")))
    raise SpecError("extraHosts: host-gateway: the sandbox has no default route")


def sandbox_from_status(resp: pb.PodSandboxStatusResponse, node: str, log_dir: Path) -> Sandbox | None:
    """Rebuild a :class:`Sandbox` from CRI's (verbose) status after a restart (None if it is not k3c's).

    An adopted generic sandbox is not recycled: its pristine /etc files are not known any more.
    """
    status = resp.status
    text = status.annotations.get(CRI_SANDBOX_SPEC_ANNOTATION)
    if not text:
        return None
    spec = SandboxSpec.from_json(text)
    ip = "" if spec.host_network or spec.networks == [NO_NETWORK] else status.network.ip
    return Sandbox(status.id, spec, sandbox_config(spec, node, log_dir), ip=ip, tainted=True,
                   interfaces=interfaces_of(resp.info.get("info", "")))
