"""k3c's private containerd: its config, and a supervisor that runs it as a child process.

k3c does not share the system's containerd: it starts its own with a generated config, so the root/state
directories, the socket, the CNI network and the sandbox image are all k3c's and nothing in /etc is needed.
The config is version 2 and mirrors ``containerd config default`` where it matters, explicitly:

- ``root``/``state`` under the directories given, gRPC socket ``<state>/containerd.sock`` (containerd
  makes it 0660; ``grpc.gid`` picks the group allowed to use it);
- CRI plugin: runc through ``io.containerd.runc.v2`` with cgroupfs (``SystemdCgroup = false``) and a runc
  root under the state dir; ``restrict_oom_score_adj`` when this process lacks CAP_SYS_RESOURCE (runc
  cannot lower its oom_score_adj otherwise, and every sandbox fails with "can't get final child's PID from
  pipe: EOF"); ``sandbox_image`` = k3c's locally built pause image (nothing is ever pulled for it);
  ``netns_mounts_under_state_dir`` so network namespaces live under the state dir; unprivileged ports and
  ICMP inside pods like docker does; ``discard_unpacked_layers = false`` so images can be pushed/saved;
- CNI: k3c's own bin dir (``k3c-cni`` beside links to the plugins of ``/usr/lib/cni``, Debian's) and conf
  dir with one conflist, the ``k3c-cni`` dispatcher (:mod:`k3c.nodenet.dispatcher`), which delegates each
  sandbox to its networks' conflists; the default network's is written here: ``bridge`` (gateway,
  masquerade, hairpin) + ``host-local`` IPAM (leases under the state dir) + ``portmap`` (hostPort) +
  ``firewall``;
- snapshotters k3c never uses (aufs, btrfs, zfs, devmapper) disabled: less probing at start-up.

Containers survive containerd: each runs under its own ``containerd-shim-runc-v2``, which is re-parented
away from containerd, so :meth:`ContainerdProcess.stop` leaves running containers running and a restarted
containerd reconnects to their shims (tests/e2e/test_runtime.py checks this). Stop or remove sandboxes first
if they must go; :meth:`ContainerdProcess.shim_pids` lists what is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import json
import logging
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from k3c.api import CRI_NETWORKS_ANNOTATION
from k3c.cri.errors import RuntimeCallError
from k3c.cri.runtime import CRIClient, pb
from k3c.daemon.process import terminate
from k3c.distribution.hosts import registry_config_path
from k3c.nodenet import hostrules
from k3c.nodenet.conflists import (
    BridgeNetwork,
    NetworkDirs,
    install_plugins,
    members,
    read_network,
    render_conflist,
    render_dispatcher_conflist,
    write_json,
)
from k3c.pauseimage import PAUSE_IMAGE

__all__ = [
    "ContainerdConfig",
    "ContainerdProcess",
    "ContainerdStartError",
    "cleanup_network",
    "has_cap_sys_resource",
    "with_parent_death_signal",
    "render_cni_conflist",
    "render_dispatcher",
    "render_containerd_config",
    "sync_host_rules",
    "write_containerd_config",
]

log = logging.getLogger(__name__)

CRI_PLUGIN = "io.containerd.grpc.v1.cri"
CAP_SYS_RESOURCE = 24

#: Plugins k3c never needs; disabling them spares containerd probing filesystems at every start.
DEFAULT_DISABLED_PLUGINS: tuple[str, ...] = (
    "io.containerd.snapshotter.v1.aufs",
    "io.containerd.snapshotter.v1.btrfs",
    "io.containerd.snapshotter.v1.devmapper",
    "io.containerd.snapshotter.v1.zfs",
)

#: libcni's cache of ADD results, keyed by network name and sandbox id.
CNI_CACHE_DIR = Path("/var/lib/cni/results")

_UNIX_PATH_MAX = 104  # containerd refuses longer socket paths (the portable sun_path limit)


def has_cap_sys_resource(status_path: str = "/proc/self/status") -> bool:
    """Whether this process has CAP_SYS_RESOURCE in its effective set (bit 24 of ``CapEff``)."""
    with open(status_path) as f:
        for line in f:
            if line.startswith("CapEff:"):
                return bool((int(line.split()[1], 16) >> CAP_SYS_RESOURCE) & 1)
    return False


@dataclass(slots=True)
class ContainerdConfig:
    """Everything k3c chooses for its containerd. Paths must be absolute.

    ``subnet``/``bridge``/``network_name`` identify k3c's CNI network; tests pick private values so they
    never collide with a running k3c (default bridge ``k3c0`` on 10.88.0.0/16).
    ``restrict_oom_score_adj`` None means "detect": true when the process lacks CAP_SYS_RESOURCE.
    """

    root_dir: Path
    state_dir: Path
    socket_gid: int = 0
    sandbox_image: str = PAUSE_IMAGE
    network_name: str = "k3c"
    bridge: str = "k3c0"
    subnet: str = "10.88.0.0/16"
    mtu: int | None = None
    cni_bin_dir: Path = Path("/usr/lib/cni")
    #: the Python that runs ``k3c-cni`` where containerd runs (k3c's own, unless an agent in a Pod starts
    #: containerd in the host's namespaces: then the host's, see k3c.daemon.hostcontainerd)
    cni_python: str = sys.executable
    restrict_oom_score_adj: bool | None = None
    snapshotter: str = "overlayfs"
    log_level: str = "info"
    containerd_binary: str = "containerd"
    stream_server_address: str = "127.0.0.1"
    unprivileged_ports_and_icmp: bool = True
    disabled_plugins: tuple[str, ...] = DEFAULT_DISABLED_PLUGINS
    extra_env: Mapping[str, str] = field(default_factory=dict)
    #: host:port of containerd's Prometheus endpoint (``/v1/metrics``); None: not served.
    metrics_address: str | None = None

    def __post_init__(self) -> None:
        self.root_dir = Path(self.root_dir)
        self.state_dir = Path(self.state_dir)
        self.cni_bin_dir = Path(self.cni_bin_dir)
        if not (self.root_dir.is_absolute() and self.state_dir.is_absolute()):
            raise ValueError("containerd root_dir and state_dir must be absolute")
        net = ipaddress.ip_network(self.subnet)  # raises on a bad subnet
        if net.version != 4 or net.prefixlen > 30:
            raise ValueError(f"subnet {self.subnet}: need an IPv4 network of at least 4 addresses")
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,15}", self.bridge):
            raise ValueError(f"bridge name {self.bridge!r}: 1-15 characters of [A-Za-z0-9_.-]")
        if len(os.fsencode(self.socket_path)) + len(".ttrpc") > _UNIX_PATH_MAX:
            raise ValueError(f"state dir too long for a unix socket path: {self.socket_path}")

    # ---- derived paths ----

    @property
    def socket_path(self) -> Path:
        """containerd's gRPC socket (CRI and containerd API)."""
        return self.state_dir / "containerd.sock"

    @property
    def config_path(self) -> Path:
        return self.root_dir / "config.toml"

    @property
    def network_dirs(self) -> NetworkDirs:
        """The node's network configuration and state (conflists, leases, the dispatcher's records)."""
        return NetworkDirs(self.root_dir, self.state_dir)

    @property
    def cni_conf_dir(self) -> Path:
        return self.network_dirs.conf

    @property
    def cni_ipam_dir(self) -> Path:
        """host-local's lease files (one file per allocated IP, under ``<network key>/``)."""
        return self.network_dirs.ipam

    @property
    def default_network(self) -> BridgeNetwork:
        """The default network (docker's ``bridge``): key ``network_name``, bridge ``bridge``."""
        return BridgeNetwork(key=self.network_name, bridge=self.bridge, subnet=self.subnet, mtu=self.mtu)

    @property
    def netns_dir(self) -> Path:
        """Where CRI bind-mounts pod network namespaces (``netns_mounts_under_state_dir``)."""
        return self.state_dir / CRI_PLUGIN / "netns"

    @property
    def runc_root(self) -> Path:
        return self.state_dir / "runc"

    @property
    def log_path(self) -> Path:
        return self.state_dir / "containerd.log"

    @property
    def registry_config_path(self) -> Path:
        """``hosts.toml`` per registry host goes in ``<this>/<host>/`` (insecure registries, mirrors)."""
        return registry_config_path(self.root_dir)

    def effective_restrict_oom_score_adj(self) -> bool:
        if self.restrict_oom_score_adj is not None:
            return self.restrict_oom_score_adj
        return not has_cap_sys_resource()


# ------------------------------------------------------------------------------------------- rendering


def render_containerd_config(cfg: ContainerdConfig) -> dict[str, Any]:
    """The containerd config (version 2) as a dict; see the module docstring for the reasons."""
    runc_options: dict[str, Any] = {"SystemdCgroup": False, "Root": str(cfg.runc_root)}
    cri: dict[str, Any] = {
        "sandbox_image": cfg.sandbox_image,
        "restrict_oom_score_adj": cfg.effective_restrict_oom_score_adj(),
        "netns_mounts_under_state_dir": True,
        "disable_tcp_service": True,
        "stream_server_address": cfg.stream_server_address,
        "stream_server_port": "0",
        "enable_selinux": False,
        "enable_unprivileged_ports": cfg.unprivileged_ports_and_icmp,
        "enable_unprivileged_icmp": cfg.unprivileged_ports_and_icmp,
        "max_container_log_line_size": 16384,
        "tolerate_missing_hugetlb_controller": True,
        "disable_hugetlb_controller": True,
        "containerd": {
            "snapshotter": cfg.snapshotter,
            "default_runtime_name": "runc",
            "discard_unpacked_layers": False,
            "runtimes": {"runc": {"runtime_type": "io.containerd.runc.v2", "options": runc_options}},
        },
        "cni": {"bin_dir": str(cfg.network_dirs.plugins), "conf_dir": str(cfg.cni_conf_dir), "max_conf_num": 1},
        "registry": {"config_path": str(cfg.registry_config_path)},
    }
    config: dict[str, Any] = {
        "version": 2,
        "root": str(cfg.root_dir),
        "state": str(cfg.state_dir),
        "disabled_plugins": list(cfg.disabled_plugins),
        "grpc": {"address": str(cfg.socket_path), "uid": 0, "gid": cfg.socket_gid},
        "debug": {"level": cfg.log_level},
        "plugins": {
            CRI_PLUGIN: cri,
            "io.containerd.internal.v1.opt": {"path": str(cfg.root_dir / "opt")},
        },
        # A second containerd on the same root would otherwise block forever on the metadata DB lock.
        "timeouts": {"io.containerd.timeout.bolt.open": "10s"},
    }
    if cfg.metrics_address:
        config["metrics"] = {"address": cfg.metrics_address}
    return config


def render_cni_conflist(cfg: ContainerdConfig) -> dict[str, Any]:
    """The default network's conflist: bridge + host-local IPAM + portmap."""
    return render_conflist(cfg.default_network, cfg.cni_ipam_dir)


def render_dispatcher(cfg: ContainerdConfig) -> dict[str, Any]:
    """The one conflist containerd loads: the ``k3c-cni`` dispatcher, named like the default network."""
    return render_dispatcher_conflist(cfg.network_name, cfg.network_dirs, cfg.network_name, CRI_NETWORKS_ANNOTATION)


def write_containerd_config(cfg: ContainerdConfig) -> Path:
    """Create the directories and write ``config.toml`` plus the CNI conflist; returns the config path."""
    for d in (cfg.root_dir, cfg.state_dir, cfg.cni_conf_dir, cfg.cni_ipam_dir, cfg.registry_config_path):
        d.mkdir(parents=True, exist_ok=True)
    _write_atomic(cfg.config_path, to_toml(render_containerd_config(cfg)))
    conflist = cfg.cni_conf_dir / f"10-{cfg.network_name}.conflist"
    for stale in cfg.cni_conf_dir.glob("*.conflist"):
        if stale != conflist:
            stale.unlink()
    _write_atomic(conflist, json.dumps(render_dispatcher(cfg), indent=2) + "\n")
    write_json(cfg.network_dirs.conflist(cfg.network_name), render_cni_conflist(cfg))
    install_plugins(cfg.network_dirs, cfg.cni_bin_dir, cfg.cni_python)
    return cfg.config_path


def sync_host_rules(cfg: ContainerdConfig) -> None:
    """The host's rules for the networks on disk (masquerade, forwarding, isolation), before any sandbox
    starts: the operator keeps them afterwards, but a container must not wait for it to reach the world."""
    try:
        hostrules.sync(cfg.bridge, members(cfg.network_dirs, cfg.network_name))
    except hostrules.RulesError as err:
        log.warning("cannot write the networks' iptables rules (the operator will retry): %s", err)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def to_toml(doc: Mapping[str, Any]) -> str:
    """Serialise nested dicts of str/bool/int/float/list-of-scalars as TOML (enough for containerd)."""
    lines: list[str] = []
    _toml_table(doc, [], lines)
    return "\n".join(lines).strip() + "\n"


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # JSON string escapes are valid TOML basic-string escapes
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} as TOML")


def _toml_table(doc: Mapping[str, Any], path: list[str], lines: list[str]) -> None:
    scalars = [(k, v) for k, v in doc.items() if not isinstance(v, Mapping)]
    tables = [(k, v) for k, v in doc.items() if isinstance(v, Mapping)]
    if path and (scalars or not tables):
        lines.append("")
        lines.append("[" + ".".join(_toml_key(p) for p in path) + "]")
    for k, v in scalars:
        lines.append(f"{_toml_key(k)} = {_toml_value(v)}")
    for k, v in tables:
        _toml_table(v, [*path, k], lines)


# ------------------------------------------------------------------------------------------- supervisor


class ContainerdStartError(RuntimeError):
    """containerd exited or did not answer in time; the message ends with the tail of its log."""


class ContainerdProcess:
    """Runs ``containerd --config <root>/config.toml`` as a child process and stops it by PID.

    Only the process this object started is ever signalled. :meth:`start` may be called again after
    :meth:`stop` (same config, containers that kept running are recovered by containerd).
    """

    def __init__(self, config: ContainerdConfig, *, die_with_parent: bool = False) -> None:
        self.config = config
        #: Have the kernel SIGKILL containerd if its parent dies (``k3c daemon`` killed with -9): a new
        #: daemon could not start its own containerd while the orphan still held the socket and metadata DB.
        self.die_with_parent = die_with_parent
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """PID of the running containerd, or None."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    @property
    def socket_path(self) -> Path:
        return self.config.socket_path

    async def start(self, timeout: float = 20.0) -> pb.VersionResponse:
        """Write the config, spawn containerd and wait until CRI answers Version; returns that answer.

        Raises :class:`ContainerdStartError` if something else already serves the socket, if containerd
        exits, or if it does not answer within ``timeout`` seconds (then it is stopped again).
        """
        if self.pid is not None:
            raise ContainerdStartError(f"containerd already running as pid {self.pid}")
        cfg = self.config
        if socket_answers(cfg.socket_path):
            raise ContainerdStartError(f"{cfg.socket_path} is served by another process; refusing to start")
        write_containerd_config(cfg)
        sync_host_rules(cfg)
        env = containerd_env(cfg)
        with open(cfg.log_path, "ab") as log:
            log.write(f"--- k3c: starting containerd at {time.strftime('%Y-%m-%dT%H:%M:%S%z')}\n".encode())
            log.flush()
            argv = [cfg.containerd_binary, "--config", str(cfg.config_path)]
            self._proc = subprocess.Popen(
                with_parent_death_signal(argv) if self.die_with_parent else argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                # Own session: a Ctrl-C meant for k3c must not kill the runtime before k3c winds it down.
                start_new_session=True,
                close_fds=True,
            )

        def exited() -> int | None:
            return self._proc.poll() if self._proc is not None else -1

        try:
            version = await wait_serving(cfg.socket_path, exited, timeout)
        except ContainerdStartError as err:
            self._proc = None
            raise ContainerdStartError(f"{err}\n{self.log_tail()}") from None
        if version is None:
            await self.stop()
            raise ContainerdStartError(f"containerd did not answer within {timeout} s\n{self.log_tail()}")
        return version

    async def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM our containerd, SIGKILL it after ``timeout`` s; returns its exit status (None if not running).

        Running containers are not affected (their shims outlive containerd).
        """
        proc = self._proc
        if proc is None:
            return None
        self._proc = None
        return await terminate(proc, timeout, "containerd")

    def shim_pids(self) -> list[int]:
        """PIDs of ``containerd-shim-runc-v2`` processes serving this containerd (by its socket address)."""
        return find_shim_pids(self.config.socket_path)

    def log_tail(self, max_bytes: int = 4000) -> str:
        """The end of containerd's log file (for error messages)."""
        return log_tail(self.config, max_bytes)


def log_tail(cfg: ContainerdConfig, max_bytes: int = 4000) -> str:
    """The end of containerd's log file (for error messages)."""
    try:
        with open(cfg.log_path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - max_bytes))
            return f.read().decode(errors="replace")
    except OSError:
        return ""


async def wait_serving(socket_path: Path, exited: Callable[[], int | None],
                       timeout: float) -> pb.VersionResponse | None:
    """Wait until the containerd on ``socket_path`` answers CRI's Version; None if it did not within
    ``timeout`` s. ``exited`` says whether the process ended meanwhile (its exit status, else None):
    then :class:`ContainerdStartError` is raised at once."""
    deadline = time.monotonic() + timeout
    async with CRIClient(socket_path, timeout=1.0) as cri:
        while True:
            code = exited()
            if code is not None:
                raise ContainerdStartError(f"containerd exited with {code} during start-up")
            if socket_path.exists():
                try:
                    return await cri.version()
                except RuntimeCallError:
                    pass
            if time.monotonic() > deadline:
                return None
            await asyncio.sleep(0.02)


def with_parent_death_signal(argv: list[str]) -> list[str]:
    """``argv`` wrapped so the kernel SIGKILLs the process when its parent (thread) exits.

    Children of ``k3c daemon`` use it so a daemon killed with -9 takes containerd and the operator along;
    the containers themselves live on under their shims, which are not its children. util-linux's
    ``setpriv --pdeathsig`` sets it and execs, so the child keeps its PID and no Python code has to run
    between fork and exec (unsafe in a process with threads, as the daemon is).
    """
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return argv
    return [setpriv, "--pdeathsig", "KILL", "--", *argv]


def find_shim_pids(socket_path: Path) -> list[int]:
    """Shim processes whose ``-address`` is ``socket_path``: the containers' keepers of that containerd."""
    want = os.fsencode(str(socket_path))
    pids: list[int] = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"containerd-shim-runc-v2") and want in argv:
            pids.append(int(entry.name))
    return sorted(pids)


def socket_answers(path: Path) -> bool:
    """Whether something accepts connections on the unix socket ``path`` (a containerd, presumably)."""
    if not path.exists():
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        try:
            s.connect(str(path))
        except OSError:
            return False
    return True


def containerd_env(cfg: ContainerdConfig) -> dict[str, str]:
    """containerd's environment: ours, with the system's binary dirs on PATH (runc, CNI's iptables)."""
    env = dict(os.environ)
    env["PATH"] = _with_system_path(env.get("PATH", ""))
    env.update(cfg.extra_env)
    return env


def _with_system_path(path: str) -> str:
    parts = [p for p in path.split(":") if p]
    for p in ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"):
        if p not in parts:
            parts.append(p)
    return ":".join(parts)


# ------------------------------------------------------------------------------------------- cleanup


def cleanup_network(cfg: ContainerdConfig) -> list[str]:
    """Remove what k3c's CNI network leaves on the host once no pod uses it; returns what was done.

    Deletes the bridge, iptables rules naming the bridge, the subnet or the network (and the per-pod
    ``CNI-*`` chains they jump to), unmounts leftover netns files under the state dir, drops stale
    host-local leases and libcni's cached results for the network. The shared top-level ``CNI-HOSTPORT-*``/``CNI-FORWARD`` chains stay: other CNI
    users may need them, and empty they cost nothing. The node's user networks go the same way (bridge,
    rules, conflist), and so do the isolation chains. Call it only with containerd stopped or no pods.
    """
    done: list[str] = []
    for key in cfg.network_dirs.keys():
        net = read_network(cfg.network_dirs, key)
        if key != cfg.network_name and net is not None:
            done += _cleanup_one(dataclasses.replace(cfg, network_name=key, bridge=net.bridge, subnet=net.subnet))
            cfg.network_dirs.conflist(key).unlink(missing_ok=True)
    done += hostrules.remove(cfg.bridge)
    if cfg.netns_dir.is_dir():
        for ns in cfg.netns_dir.iterdir():
            subprocess.run(["umount", str(ns)], check=False, capture_output=True)
            with contextlib.suppress(OSError):
                ns.unlink()
            done.append(f"removed netns {ns.name}")
    return done + _cleanup_one(cfg)


def _cleanup_one(cfg: ContainerdConfig) -> list[str]:
    """One network's bridge, iptables rules, libcni cache entries and leases (``cfg`` names it)."""
    done: list[str] = []
    if Path(f"/sys/class/net/{cfg.bridge}").exists():
        subprocess.run(["ip", "link", "del", cfg.bridge], check=False, capture_output=True)
        done.append(f"deleted bridge {cfg.bridge}")
    done += _cleanup_iptables(cfg)
    # libcni's result cache (not configurable in containerd 1.6): `<network>-<sandbox>-eth0` and the
    # matching `cni-loopback-<sandbox>-lo` are normally dropped on CNI DEL.
    if CNI_CACHE_DIR.is_dir():
        for f in CNI_CACHE_DIR.glob(f"{cfg.network_name}-*-eth0"):
            sandbox = f.name[len(cfg.network_name) + 1 : -len("-eth0")]
            for g in (f, CNI_CACHE_DIR / f"cni-loopback-{sandbox}-lo"):
                with contextlib.suppress(FileNotFoundError):
                    g.unlink()
            done.append(f"removed CNI cache of sandbox {sandbox}")
    for f in leased_ips(cfg):
        f.unlink()
        done.append(f"released lease {f.name}")
    return done


def leased_ips(cfg: ContainerdConfig, every_network: bool = False) -> list[Path]:
    """host-local's lease files of this network (one per allocated IP, named by it), sorted; its other
    files (the last reserved IP, the lock) are not leases. ``every_network``: those of all the node's
    networks."""
    dirs = ([d for d in cfg.cni_ipam_dir.iterdir() if d.is_dir()] if cfg.cni_ipam_dir.is_dir() else []) \
        if every_network else [cfg.cni_ipam_dir / cfg.network_name]
    return sorted(f for d in dirs if d.is_dir() for f in d.iterdir() if _is_ip(f.name))


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


_SHARED_CNI_CHAINS = {
    "CNI-HOSTPORT-DNAT",
    "CNI-HOSTPORT-SETMARK",
    "CNI-HOSTPORT-MASQ",
    "CNI-FORWARD",
    "CNI-ADMIN",
}


def _cleanup_iptables(cfg: ContainerdConfig) -> list[str]:
    try:
        dump = subprocess.run(["iptables-save"], check=True, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return []
    # Rules CNI made for this network name the bridge or the subnet, or carry the network's name in a
    # comment (iptables-save prints it as `--comment "name: \"<network>\" id: \"<container>\""`).
    markers = [cfg.subnet, f" {cfg.bridge} ", f'name: \\"{cfg.network_name}\\"']
    net = ipaddress.ip_network(cfg.subnet)
    done: list[str] = []
    table = ""
    rules: list[tuple[str, str]] = []  # (table, rule text after -A)
    for line in dump.splitlines():
        if line.startswith("*"):
            table = line[1:]
        elif line.startswith("-A "):
            rules.append((table, line[3:]))

    def mine(rule: str) -> bool:
        text = f" {rule} "
        if any(m in text for m in markers):
            return True
        for m in re.finditer(r"(?:-s|-d) (\d+\.\d+\.\d+\.\d+)(?:/32)?\b", rule):
            if ipaddress.ip_address(m.group(1)) in net:
                return True
        return False

    doomed_chains: set[tuple[str, str]] = set()
    for tbl, rule in rules:
        if mine(rule):
            jump = re.search(r"-j (CNI-[A-Za-z0-9-]+)", rule)
            if jump and jump.group(1) not in _SHARED_CNI_CHAINS:
                doomed_chains.add((tbl, jump.group(1)))
    for tbl, rule in rules:
        chain = rule.split(" ", 1)[0]
        jump = re.search(r"-j (CNI-[A-Za-z0-9-]+)", rule)
        if mine(rule) or (jump and (tbl, jump.group(1)) in doomed_chains) or (tbl, chain) in doomed_chains:
            if (tbl, chain) in doomed_chains:
                continue  # flushed with the chain below
            r = subprocess.run(["iptables", "-t", tbl, "-D", *shlex.split(rule)], capture_output=True)
            if r.returncode == 0:
                done.append(f"iptables -t {tbl} -D {rule}")
    for tbl, chain in sorted(doomed_chains):
        subprocess.run(["iptables", "-t", tbl, "-F", chain], capture_output=True)
        if subprocess.run(["iptables", "-t", tbl, "-X", chain], capture_output=True).returncode == 0:
            done.append(f"iptables -t {tbl} -X {chain}")
    return done
