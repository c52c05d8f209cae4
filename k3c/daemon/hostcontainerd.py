"""``k3c agent``'s containerd: started as a host service would be, so containers outlive the agent.

In cluster mode the agent runs in a Pod, and whatever it starts as a child lives in the Pod's process tree
and cgroup: a DaemonSet rollout would kill containerd, its shims and so every container. So the agent
starts containerd (same generated config as ``k3c daemon``'s, :mod:`k3c.daemon.containerd`)

- in the host's namespaces: ``nsenter`` into those of the host's init (PID 1; the agent runs with
  hostPID) that differ from the agent's own. Run on the host itself (by hand, or by the tests) there is
  nothing to enter, and the same code starts it directly. A process that may not inspect PID 1's
  namespaces (these test machines: PID 1 holds capabilities the session lacks) is taken to be on the host;
- in a cgroup of its own, ``<cgroup>`` (``k3c-containerd``; not ``k3c``, the containers' parent) under the
  host init's cgroup in every hierarchy (under the root when that is PID 1), written by a small ``sh``
  program running in the host's mount namespace, where the host's cgroup file systems are; shims, and so
  containers' keepers, inherit it;
- in a session of its own and orphaned at once (that program starts it in the background and exits), so
  neither a parent-death signal nor a kill of the agent's process group reaches it;
- with its PID in ``<state>/containerd/containerd.pid``.

A starting agent adopts the containerd whose socket answers (the previous agent's), else starts one; while it
runs, a containerd that died is started again. A clean stop of the agent leaves containerd running (it is the
node's now); :meth:`HostContainerd.stop` (``k3c agent --cleanup``) ends it by the recorded PID.
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
from dataclasses import dataclass, replace
from pathlib import Path

from k3c.daemon.containerd import (
    ContainerdConfig,
    ContainerdStartError,
    containerd_env,
    log_tail,
    socket_answers,
    sync_host_rules,
    wait_serving,
    write_containerd_config,
)
from k3c.daemon.process import alive, terminate_pid

log = logging.getLogger(__name__)

#: Namespaces entered (when they differ from ours), with nsenter's flag for each.
NAMESPACES = (("mnt", "-m"), ("uts", "-u"), ("ipc", "-i"), ("net", "-n"), ("pid", "-p"), ("cgroup", "-C"))

#: Runs in the host's namespaces. ``start CGROUP INIT PIDFILE LOG ARGV...`` joins the cgroups, starts
#: containerd (ARGV) detached and records its PID; ``remove CGROUP INIT`` removes the (empty) cgroups.
#: CGROUP "" is none; INIT is the host init's PID, under whose cgroups CGROUP is (under the root for PID 1).
HOST_PROGRAM = r"""
set -e
mode=$1 cg=$2 init=$3
shift 3
cgroups() {
  while IFS=: read -r _id ctrls path; do
    case "$ctrls" in
      "") dir=/sys/fs/cgroup; [ -f "$dir/cgroup.controllers" ] || dir=/sys/fs/cgroup/unified ;;
      *) dir=/sys/fs/cgroup/${ctrls#name=} ;;
    esac
    [ -f "$dir/cgroup.procs" ] || continue
    if [ "$init" = 1 ]; then path=/; fi
    echo "$dir${path%/}/$cg"
  done < "/proc/$init/cgroup"
}
if [ "$mode" = remove ]; then
  if [ -n "$cg" ]; then for d in $(cgroups); do rmdir "$d" 2> /dev/null || true; done; fi
  exit 0
fi
pidfile=$1 log=$2
shift 2
if [ -n "$cg" ]; then
  for d in $(cgroups); do
    mkdir -p "$d"
    if [ -f "$d/cpuset.cpus" ] && [ -z "$(cat "$d/cpuset.cpus")" ]; then
      cat "$d/../cpuset.cpus" > "$d/cpuset.cpus"
      cat "$d/../cpuset.mems" > "$d/cpuset.mems"
    fi
    echo $$ > "$d/cgroup.procs"
  done
fi
setsid "$@" < /dev/null >> "$log" 2>&1 &
echo $! > "$pidfile.tmp"
mv "$pidfile.tmp" "$pidfile"
"""


def host_namespaces(init: int = 1) -> list[str]:
    """The ``nsenter`` prefix that enters ``init``'s namespaces where they differ from ours; [] when none
    differ, or when we may not look (then we are taken to be on the host)."""
    flags: list[str] = []
    for ns, flag in NAMESPACES:
        try:
            mine, theirs = os.stat(f"/proc/self/ns/{ns}"), os.stat(f"/proc/{init}/ns/{ns}")
        except FileNotFoundError:
            continue  # a kernel without this namespace type
        except PermissionError:
            log.info("cannot inspect the namespaces of pid %d: starting containerd in this process's own", init)
            return []
        if (mine.st_dev, mine.st_ino) != (theirs.st_dev, theirs.st_ino):
            flags.append(flag)
    return ["nsenter", "-t", str(init), *flags, "--"] if flags else []


#: Where a host's Python 3 is looked for, first found wins: ``k3c-cni`` (stdlib only) runs under it.
HOST_PYTHONS = ("/usr/bin/python3", "/usr/local/bin/python3", "/bin/python3")


def host_python(init: int = 1) -> str:
    """The host's Python for ``k3c-cni``, seen through ``init``'s root. containerd in the host's mount
    namespace runs CNI plugins there, where the agent image's own Python does not exist. None found: user
    networks cannot attach sandboxes (said once, here); the default network still works."""
    for path in HOST_PYTHONS:
        if os.access(f"/proc/{init}/root{path}", os.X_OK):
            return path
    log.warning("no python3 on the node (%s): containers cannot join user networks", ", ".join(HOST_PYTHONS))
    return HOST_PYTHONS[0]


@dataclass
class HostContainerd:
    """One node's containerd, started detached in the host's namespaces, found again by its socket.

    The same interface as :class:`~k3c.daemon.containerd.ContainerdProcess` where the supervisor needs it
    (``pid``, ``start``, ``stop``), but :meth:`stop` is for clean-up only: the agent never stops it otherwise.
    """

    config: ContainerdConfig
    #: the cgroup it gets, under the host init's cgroup ("" leaves it in the agent's)
    cgroup: str = "k3c-containerd"
    #: the host's init, whose namespaces and cgroups are the host's (a test names another process)
    init_pid: int = 1

    @property
    def pidfile(self) -> Path:
        return self.config.state_dir / "containerd.pid"

    @property
    def pid(self) -> int | None:
        """The PID of the running containerd of this config (from the pidfile), or None."""
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if alive(pid) and self._is_ours(pid) else None

    def _is_ours(self, pid: int) -> bool:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            return False
        return os.fsencode(str(self.config.config_path)) in argv

    async def start(self, timeout: float = 20.0) -> bool:
        """Adopt the containerd serving the socket, else start one; True if adopted. Raises
        :class:`~k3c.daemon.containerd.ContainerdStartError` when a new one exits or does not answer."""
        cfg = self.config
        if socket_answers(cfg.socket_path) and await wait_serving(cfg.socket_path, lambda: None, 5.0):
            if self.pid is None:
                self._record_found()
            log.info("adopting the running containerd on %s (pid %s)", cfg.socket_path, self.pid)
            return True
        if host_namespaces(self.init_pid):
            cfg = self.config = replace(cfg, cni_python=host_python(self.init_pid))
        write_containerd_config(cfg)
        sync_host_rules(cfg)
        self.pidfile.unlink(missing_ok=True)
        self._host("start", str(self.pidfile), str(cfg.log_path), cfg.containerd_binary, "--config",
                   str(cfg.config_path))
        try:
            version = await wait_serving(cfg.socket_path, lambda: None if self.pid is not None else -1, timeout)
        except ContainerdStartError as err:
            raise ContainerdStartError(f"{err}\n{log_tail(cfg)}") from None
        if version is None:
            await self.stop()
            raise ContainerdStartError(f"containerd did not answer within {timeout} s\n{log_tail(cfg)}")
        log.info("containerd started (pid %s) on %s", self.pid, cfg.socket_path)
        return False

    def _host(self, mode: str, *args: str) -> None:
        """Run :data:`HOST_PROGRAM` in the host's namespaces (it returns at once: containerd is detached)."""
        cfg = self.config
        if mode == "start":
            with open(cfg.log_path, "ab") as out:
                out.write(f"--- k3c agent: starting containerd at {time.strftime('%Y-%m-%dT%H:%M:%S%z')}\n".encode())
        argv = [*host_namespaces(self.init_pid), "sh", "-c", HOST_PROGRAM, "k3c-containerd", mode, self.cgroup,
                str(self.init_pid), *args]
        done = subprocess.run(argv, env=containerd_env(cfg), stdin=subprocess.DEVNULL, capture_output=True,
                              cwd="/", timeout=30)
        if done.returncode != 0:
            detail = (done.stderr or done.stdout).decode(errors="replace").strip().splitlines()
            raise ContainerdStartError(f"cannot {mode} containerd in the host's namespaces: "
                                       f"{detail[-1] if detail else f'exit status {done.returncode}'}")

    def _record_found(self) -> bool:
        """Write the pidfile of an adopted containerd that has none (found by its config path)."""
        for entry in os.scandir("/proc"):
            if entry.name.isdigit() and self._is_ours(int(entry.name)) and _is_containerd(int(entry.name)):
                self.pidfile.write_text(f"{entry.name}\n")
                return True
        return False

    async def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM containerd by its recorded PID, SIGKILL after ``timeout`` s (containers keep running
        under their shims); then the pidfile and the cgroups go."""
        pid = self.pid
        if pid is not None:
            await terminate_pid(pid, timeout, "containerd")
        self.pidfile.unlink(missing_ok=True)
        self._host("remove")

    def log_tail(self) -> str:
        return log_tail(self.config)


def _is_containerd(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip() == "containerd"
    except OSError:
        return False
