"""dockerd and podman as private peers for side-by-side benchmarks (PLATFORM-NOTES.md, "Peers").

Each peer lives under its own base directory (data root, exec root, socket, configs) and its own bridge
and subnet, so it touches nothing of the host's own docker/podman set-up:

- :class:`DockerPeer`: Debian's dockerd 20.10 with ``--iptables=false --ip-masq=false --ip-forward=false``
  (it makes no iptables rules) on a bridge this module creates; driven with ``/usr/bin/docker -H``.
- :class:`PodmanPeer`: podman 4.3 with runc, cgroupfs, file events and file locks, its default network a
  CNI bridge conflist (bridge, portmap, firewall, tuning: the package's default) with a private name,
  bridge, subnet and lease dir.

``stop()`` ends what the peer started by PID, unmounts what is left under its base, and removes its
bridge, the iptables rules naming its bridge or subnet, and its base directory. It returns what it had
to clean up by force, so a caller can report leftovers.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from k3c.daemon.containerd import ContainerdConfig, cleanup_network

DOCKER = "/usr/bin/docker"  # Debian's client (a newer one may be first on PATH)
DOCKERD = "/usr/sbin/dockerd"
PODMAN = "/usr/bin/podman"
PACKAGE_CONFLIST = Path("/etc/cni/net.d/87-podman-bridge.conflist")


class PeerError(RuntimeError):
    """A peer could not be installed or started (the benchmark leaves its column out)."""


def ensure_packages(binaries: dict[str, str]) -> list[str]:
    """``apt-get install`` the packages of ``{binary path: package}`` whose binary is missing.

    Returns notes on what was done; raises PeerError if the install fails.
    """
    missing = sorted({pkg for path, pkg in binaries.items() if not Path(path).exists()})
    if not missing:
        return []
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cp = subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", *missing],
                        capture_output=True, text=True, env=env)
    if cp.returncode != 0:
        raise PeerError(f"apt-get install {' '.join(missing)} failed: {cp.stderr.strip()[-400:]}")
    return [f"installed {' '.join(missing)} with apt-get"]


def disable_package_conflist() -> str | None:
    """The podman package's conflist in /etc/cni/net.d is moved aside so no other CNI user picks it up."""
    if not PACKAGE_CONFLIST.exists():
        return None
    target = PACKAGE_CONFLIST.parent.parent / (PACKAGE_CONFLIST.name + ".disabled")
    PACKAGE_CONFLIST.rename(target)
    return f"moved {PACKAGE_CONFLIST} to {target}"


def run_checked(argv: Sequence[str], env: dict[str, str] | None = None, timeout: float = 120.0) -> str:
    """Run ``argv``; its stdout, or RuntimeError with its stderr."""
    cp = subprocess.run(list(argv), capture_output=True, text=True, env=env, timeout=timeout)
    if cp.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({cp.returncode}): {cp.stderr.strip() or cp.stdout.strip()}")
    return cp.stdout


def docker_archive(oci_archive: Path, dest: Path, name: str) -> Path:
    """The OCI archive as a docker-archive tagged ``name`` (what ``docker load`` wants)."""
    run_checked(["skopeo", "copy", "-q", f"oci-archive:{oci_archive}", f"docker-archive:{dest}:{name}"])
    return dest


def processes_under(path: Path) -> list[int]:
    """PIDs whose command line mentions ``path`` (a peer's containerd, shims or conmon left behind)."""
    want = os.fsencode(f"{path}/")
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            with contextlib.suppress(OSError), open(f"/proc/{entry.name}/cmdline", "rb") as f:
                if want in f.read():
                    found.append(int(entry.name))
    return sorted(found)


def unmount_under(path: Path) -> list[str]:
    prefix = str(path) + "/"
    with open("/proc/self/mountinfo") as f:
        mounts = [line.split()[4] for line in f]
    mine = sorted((m for m in mounts if m.startswith(prefix)), key=len, reverse=True)
    for m in mine:
        subprocess.run(["umount", "-l", m], capture_output=True)
    return [f"unmounted {m}" for m in mine]


def kill_pids(pids: Sequence[int], what: str) -> list[str]:
    done = []
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
            done.append(f"killed {what} pid {pid}")
    return done


class Peer:
    """What docker and podman share: a base dir, a bridge and subnet, and a forced clean-up."""

    name = "peer"
    force_rm: tuple[str, ...] = ("-f",)  # `rm` flags that remove a running container at once (SIGKILL)

    def __init__(self, base: Path, subnet: str) -> None:
        self.base = base.absolute()
        self.subnet = subnet
        tag = uuid.uuid4().hex[:6]
        self.bridge = f"kb{self.name[0]}{tag}"
        self.network_name = f"kbench{tag}"

    @property
    def gateway(self) -> str:
        prefix, _ = self.subnet.split("/")
        return prefix.rsplit(".", 1)[0] + ".1"

    @property
    def network(self) -> ContainerdConfig:
        """The peer's network in the shape k3c's clean-up of a CNI network understands."""
        return ContainerdConfig(root_dir=self.base / "net", state_dir=self.base / "net-state", bridge=self.bridge,
                                subnet=self.subnet, network_name=self.network_name)

    def cli(self, *args: str) -> list[str]:
        raise NotImplementedError

    @property
    def env(self) -> dict[str, str] | None:
        return None

    def run(self, *args: str, timeout: float = 120.0) -> str:
        return run_checked(self.cli(*args), env=self.env, timeout=timeout)

    def version(self) -> str:
        return self.run("version", "--format", "{{.Server.Version}}").strip()

    def remove_all(self) -> None:
        """Force-remove every container of this peer (its storage is private, so all are ours)."""
        ids = self.run("ps", "-aq").split()
        if ids:
            self.run("rm", *self.force_rm, *ids)

    def _force_clean(self) -> list[str]:
        done = kill_pids(processes_under(self.base), f"{self.name} process")
        done += unmount_under(self.base)
        done += cleanup_network(self.network)
        shutil.rmtree(self.base, ignore_errors=True)
        return done


class DockerPeer(Peer):
    """dockerd with private data root, exec root, socket, pidfile and bridge; no iptables rules."""

    name = "docker"

    def __init__(self, base: Path, subnet: str) -> None:
        super().__init__(base, subnet)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def socket(self) -> Path:
        return self.base / "docker.sock"

    def cli(self, *args: str) -> list[str]:
        return [DOCKER, "-H", f"unix://{self.socket}", *args]

    def start(self, timeout: float = 60.0) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        self._make_bridge()
        (self.base / "daemon.json").write_text("{}\n")
        cmd = [DOCKERD, "--data-root", str(self.base / "data"), "--exec-root", str(self.base / "exec"),
               "-H", f"unix://{self.socket}", "--pidfile", str(self.base / "docker.pid"),
               "--config-file", str(self.base / "daemon.json"), "--bridge", self.bridge,
               "--iptables=false", "--ip-masq=false", "--ip-forward=false", "--userland-proxy=false",
               "--oom-score-adjust", "0", "--log-level", "warn"]
        with open(self.base / "dockerd.log", "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self._wait_ready(timeout)

    def _make_bridge(self) -> None:
        prefix = self.subnet.split("/")[1]
        run_checked(["ip", "link", "add", self.bridge, "type", "bridge"])
        run_checked(["ip", "addr", "add", f"{self.gateway}/{prefix}", "dev", self.bridge])
        run_checked(["ip", "link", "set", self.bridge, "up"])

    def _wait_ready(self, timeout: float) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while subprocess.run(self.cli("version"), capture_output=True).returncode != 0:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                log = (self.base / "dockerd.log").read_text(errors="replace")[-1500:]
                raise PeerError(f"dockerd did not come up:\n{log}")
            time.sleep(0.1)

    def load(self, archive: Path) -> None:
        self.run("load", "-q", "-i", str(archive))

    def stop(self) -> list[str]:
        """SIGTERM dockerd (by PID), then remove whatever is left; returns what had to be forced."""
        done: list[str] = []
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                done.append("dockerd needed SIGKILL")
        return done + self._force_clean()


class PodmanPeer(Peer):
    """podman with private storage, tmp dir, configs and default CNI network."""

    name = "podman"
    force_rm = ("-f", "-t", "0")  # podman's rm -f would first wait the 10 s stop timeout

    @property
    def conf(self) -> Path:
        return self.base / "containers.conf"

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "CONTAINERS_CONF": str(self.conf),
                "CONTAINERS_STORAGE_CONF": str(self.base / "storage.conf")}

    def cli(self, *args: str) -> list[str]:
        return [PODMAN, "--root", str(self.base / "root"), "--runroot", str(self.base / "runroot"),
                "--tmpdir", str(self.base / "tmp"), "--storage-driver", "overlay", "--runtime", "runc",
                "--cgroup-manager", "cgroupfs", "--events-backend", "file",
                "--network-config-dir", str(self.base / "cni"), *args]

    def start(self) -> None:
        """Write the configs (podman has no daemon to start)."""
        (self.base / "cni").mkdir(parents=True, exist_ok=True)
        (self.base / "storage.conf").write_text(
            f'[storage]\ndriver = "overlay"\ngraphroot = "{self.base / "root"}"\nrunroot = "{self.base / "runroot"}"\n')
        self.conf.write_text(self._containers_conf())
        conflist = self.base / "cni" / f"{self.network_name}.conflist"
        conflist.write_text(json.dumps(self._conflist(), indent=2) + "\n")

    def _containers_conf(self) -> str:
        return "\n".join([
            "[containers]",
            'default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]',
            'log_driver = "k8s-file"',
            "[network]",
            'network_backend = "cni"',
            'cni_plugin_dirs = ["/usr/lib/cni"]',
            f'network_config_dir = "{self.base / "cni"}"',
            f'default_network = "{self.network_name}"',
            "[engine]",
            'runtime = "runc"',
            'cgroup_manager = "cgroupfs"',
            'events_logger = "file"',
            'lock_type = "file"',
            f'tmp_dir = "{self.base / "tmp"}"',
            "",
        ])

    def _conflist(self) -> dict[str, object]:
        """The package's default conflist, with this peer's name, bridge, subnet and lease dir."""
        ipam = {"type": "host-local", "routes": [{"dst": "0.0.0.0/0"}],
                "ranges": [[{"subnet": self.subnet, "gateway": self.gateway}]],
                "dataDir": str(self.network.cni_ipam_dir)}
        return {"cniVersion": "0.4.0", "name": self.network_name, "plugins": [
            {"type": "bridge", "bridge": self.bridge, "isGateway": True, "ipMasq": True, "hairpinMode": True,
             "ipam": ipam},
            {"type": "portmap", "capabilities": {"portMappings": True}},
            {"type": "firewall"},
            {"type": "tuning"},
        ]}

    def version(self) -> str:
        return self.run("version", "--format", "{{.Client.Version}}").strip()

    def load(self, archive: Path) -> None:
        self.run("load", "-q", "-i", str(archive))

    def stop(self) -> list[str]:
        """Nothing runs between commands; remove what is left (conmon, mounts, network, base dir)."""
        return self._force_clean()
