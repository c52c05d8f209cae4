"""What sandboxes containerd no longer knows leave in the runtime: shims, runc containers, task bundles
and CRI's sandbox directories; found and removed.

containerd 1.6 leaves a sandbox's ``containerd-shim-runc-v2`` running in two cases k3c meets when it is
killed with -9 (or containerd is), both seen in tests/e2e/test_daemon.py: a RunPodSandbox cut short
after the shim started but before the sandbox was recorded, which nothing will ever talk to again; and a
sandbox recovered NOTREADY after such a crash, whose RemovePodSandbox drops the record but never shuts
the shim down. Each holds a process (sometimes a ``runc init`` under it), a socket in /run/containerd/s,
its task bundle with the rootfs mounted, and the runc container's state and cgroups.

Which shims are this containerd's: those whose ``-address`` is its socket and whose working directory
(their bundle) lies under its state dir; no other shim is ever looked at. An orphan is one whose
``-namespace``/``-id`` names no sandbox or container CRI lists. CRI lists a sandbox only once
RunPodSandbox returns, a moment after its shim started; so something found unknown is ended only if it
predates the current containerd (``older_than``, at a (re)start) or was already unknown at the previous
sweep (:class:`Suspects`, when sweeping periodically): a sandbox being created is never touched. A CRI
container directory is given :data:`IN_FLIGHT_GRACE` besides: CreateContainer makes it first and lists the
container only when it returns, which with a large image on a busy node took 17 s, longer than two sweeps.

Ending an orphan: ``runc delete --force`` of its runc containers (kills ``runc init`` or the pause
process, removes the cgroups), SIGKILL of anything else left under the shim, SIGTERM of the shim (it
removes its socket), SIGKILL after a grace period; then its bundle: rootfs unmounted, directory removed.
CRI's own directories of a sandbox it never finished (hosts, resolv.conf, the mounted /dev/shm) and of
containers it does not list go the same way.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from k3c.daemon.containerd import ContainerdConfig

log = logging.getLogger(__name__)

SHIM_BINARY = "containerd-shim-runc-v2"
#: containerd's runc v2 runtime keeps a task's bundle in ``<state>/<this>/<namespace>/<id>`` (its work
#: dir is the same path under root); a bundle being deleted is renamed ``.<id>`` first.
TASKS_PLUGIN = "io.containerd.runtime.v2.task"
CRI_PLUGIN = "io.containerd.grpc.v1.cri"
#: how long a CreateContainer may still be making a CRI directory it has not yet listed (seen taking 17 s
#: under load); the runtime's other leftovers keep the two-sweep rule, which crash tests rely on
IN_FLIGHT_GRACE = 60.0
MNT_DETACH = 2


@dataclass(frozen=True)
class Shim:
    """One shim process of our containerd."""

    pid: int
    namespace: str
    id: str
    started: float  #: epoch seconds
    bundle: str  #: its working directory

    @property
    def key(self) -> str:
        return f"shim {self.pid} {self.started}"  # (a PID alone may be reused between two sweeps)


@dataclass(frozen=True)
class Leftover:
    """A directory on disk that belongs to one sandbox or container: its kind, id, path, when it appeared."""

    kind: str  #: "runc container", "task bundle", "CRI directory"
    id: str
    path: Path
    created: float

    @property
    def key(self) -> str:
        return f"{self.kind} {self.path}"


@dataclass
class Suspects:
    """What was unknown at the previous sweep: only what stays unknown a whole sweep later is an orphan."""

    keys: set[str] = field(default_factory=set)

    def confirm(self, unknown: dict[str, float], older_than: float | None,
                in_the_making: frozenset[str] = frozenset()) -> set[str]:
        """Of ``unknown`` (key → when it appeared), the orphans; the rest are remembered for next time.

        An orphan predates ``older_than``, or was unknown at the previous call too and is not one of
        ``in_the_making`` (what a call may still be creating: kept, and asked about again next time)."""
        orphans = {k for k, at in unknown.items()
                   if (k in self.keys and k not in in_the_making) or (older_than is not None and at < older_than)}
        self.keys = set(unknown) - orphans
        return orphans


def _arg(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1] if flag in argv[:-1] else ""


def find_shims(cfg: ContainerdConfig) -> list[Shim]:
    """The shims of this containerd (``-address`` its socket, bundle under its state dir)."""
    address, bundles = str(cfg.socket_path), str(cfg.state_dir / TASKS_PLUGIN) + "/"
    found = []
    for proc in psutil.process_iter(["cmdline", "create_time"]):
        argv = proc.info["cmdline"] or []
        if not argv or Path(argv[0]).name != SHIM_BINARY or _arg(argv, "-address") != address:
            continue
        with contextlib.suppress(psutil.Error):
            cwd = proc.cwd()
            if cwd.startswith(bundles):
                found.append(Shim(proc.pid, _arg(argv, "-namespace"), _arg(argv, "-id"),
                                  proc.info["create_time"], cwd))
    return found


def _entries(kind: str, parents: list[Path]) -> list[Leftover]:
    """The ``<parent>/<id>`` directories of each parent (``.<id>``: one being deleted)."""
    out = []
    for parent in parents:
        for entry in parent.iterdir() if parent.is_dir() else []:
            with contextlib.suppress(OSError):
                out.append(Leftover(kind, entry.name.lstrip("."), entry, entry.lstat().st_mtime))
    return out


def _namespaces(parent: Path) -> list[Path]:
    return [ns for ns in parent.iterdir() if ns.is_dir()] if parent.is_dir() else []


class RuntimeSweeper:
    """Ends this containerd's orphaned shims and removes what else of vanished sandboxes is on disk."""

    def __init__(self, cfg: ContainerdConfig, runc: str = "runc") -> None:
        self.cfg = cfg
        self.runc = runc
        self.suspects = Suspects()

    def leftovers(self) -> list[Leftover]:
        """runc containers, task bundles, CRI's sandbox and container directories (known ones included)."""
        cfg, cri_root, cri_state = self.cfg, self.cfg.root_dir / CRI_PLUGIN, self.cfg.state_dir / CRI_PLUGIN
        return (_entries("runc container", _namespaces(cfg.runc_root))
                + _entries("task bundle", _namespaces(cfg.state_dir / TASKS_PLUGIN))
                + _entries("CRI directory", [cri_root / "sandboxes", cri_state / "sandboxes",
                                             cri_root / "containers"]))

    def sweep(self, known: set[str], older_than: float | None = None) -> list[str]:
        """End what ``known`` (CRI's sandbox and container ids) does not account for; returns what was done.

        ``older_than``: anything that appeared before it (the current containerd's start) and is unknown
        is an orphan at once; otherwise only what was unknown at the previous sweep already.
        """
        shims = find_shims(self.cfg)
        found = self.leftovers()
        unknown = {s.key: s.started for s in shims if s.id not in known}
        unknown |= {e.key: e.created for e in found if e.id not in known}
        young = time.time() - IN_FLIGHT_GRACE
        making = frozenset(e.key for e in found if e.kind == "CRI directory" and e.created > young)
        orphans = self.suspects.confirm(unknown, older_than, making if older_than is None else frozenset())
        done: list[str] = []
        for e in found:  # runc containers first: their processes go before their shims
            if e.kind == "runc container" and e.key in orphans:
                self._delete_runc(e)
                done.append(f"deleted runc container {e.id[:12]} of a vanished sandbox")
        for s in shims:
            if s.key in orphans:
                end_shim(s.pid)
                done.append(f"ended shim {s.pid} of vanished sandbox {s.id[:12]}")
        for e in found:
            if e.kind != "runc container" and e.key in orphans:
                self._remove(e)
                done.append(f"removed {e.kind} {e.id[:12]}")
        for line in done:
            log.info("%s", line)
        return done

    def _delete_runc(self, e: Leftover) -> None:
        r = subprocess.run([self.runc, "--root", str(e.path.parent), "delete", "--force", e.id],
                           capture_output=True, text=True)
        if r.returncode != 0 and e.path.exists():
            log.warning("runc delete %s: %s", e.id[:12], r.stderr.strip() or r.returncode)

    def _remove(self, e: Leftover) -> None:
        """A task bundle (its rootfs mounted) or a CRI directory (a sandbox's /dev/shm mounted)."""
        for mount in (e.path / "rootfs", e.path / "shm"):
            if os.path.ismount(mount):
                unmount(mount)
        shutil.rmtree(e.path, ignore_errors=True)
        if e.kind == "task bundle":  # its work dir, the same path under root
            shutil.rmtree(self.cfg.root_dir / TASKS_PLUGIN / e.path.parent.name / e.id, ignore_errors=True)


def end_shim(pid: int, grace: float = 2.0) -> None:
    """SIGKILL what still runs under the shim, then SIGTERM it (it removes its socket), SIGKILL after
    ``grace`` s. Children first: a shim killed before them leaves them to init, running for ever."""
    try:
        shim = psutil.Process(pid)
        for child in shim.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                child.kill()
        shim.terminate()
        shim.wait(grace)
    except psutil.TimeoutExpired:
        with contextlib.suppress(psutil.Error):
            shim.kill()
    except psutil.Error:
        pass  # gone already


def unmount(path: Path) -> None:
    """Detach a mount (lazily: nothing uses an orphan's rootfs, but a busy one must not stop us)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.umount2(os.fsencode(path), MNT_DETACH) != 0:
        log.debug("umount %s: %s", path, os.strerror(ctypes.get_errno()))
