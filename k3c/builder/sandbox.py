"""RUN steps: one runc container on the step's mounted root filesystem, output streamed line by line.

Why runc directly (not containerd's Tasks API): a build step needs no shim, no log plumbing and no
restart handling, and ``runc run`` in the foreground starts in ~50 ms where a shim-managed task takes a
few hundred. The container gets Docker's default capabilities, masked /proc paths, fresh pid/ipc/uts/
mount namespaces, and the confinement containers get (:mod:`k3c.builder.confinement`: containerd's
seccomp profile, AppArmor where available, the device rule, a pids limit). Its network is the builder's pod sandbox (:mod:`k3c.builder.network`: k3c's CNI bridge,
NAT to the outside), as a container's would be; ``RUN --network=none`` gets a namespace of its own with
only loopback. ``RUN --network=host`` (allowed by the ``network.host`` entitlement) shares the host's, and
then gets no network capabilities there (no ``CAP_NET_RAW`` to sniff or forge host traffic, no
``CAP_NET_BIND_SERVICE`` for the host's privileged ports).

Build secrets are bind-mounted read-only at their target; they, /etc/resolv.conf and /etc/hosts are
mount points that runc creates when the image lacks them, and the caller removes those again
(:func:`k3c.builder.rootfs.remove_created`) so no layer ever holds them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from k3c.builder.confinement import Confinement
from k3c.builder.rootfs import Owner

__all__ = ["RunSpec", "run"]

CAPS = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID",
        "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL",
        "CAP_AUDIT_WRITE"]
MASKED = ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
          "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware"]
READONLY = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
HOSTNAME = "k3c-build"


@dataclass
class RunSpec:
    """What one RUN executes, and with what."""

    container_id: str
    rootfs: Path  #: the step's mounted root
    bundle: Path  #: a private directory for config.json and the generated /etc files
    args: list[str]
    env: list[str]
    cwd: str
    owner: Owner
    secrets: dict[str, Path] = field(default_factory=dict)  #: target path in the image -> file
    #: ``--mount=type=cache`` and ``type=bind``: target -> (host path, read-only)
    binds: dict[str, tuple[Path, bool]] = field(default_factory=dict)
    tmpfs: dict[str, int] = field(default_factory=dict)  #: ``--mount=type=tmpfs``: target -> size (bytes, 0: default)
    network: str = "default"  #: ``RUN --network``: default (``netns``), host, or none (loopback only)
    netns: str | None = None  #: the builder's network namespace for ``default``; None: the host's
    confinement: Confinement = field(kw_only=True)  #: seccomp, AppArmor, devices, pids

    @property
    def host_network(self) -> bool:
        return self.network == "host"

    def bind_targets(self) -> list[str]:
        """Image paths runc mounts onto (and creates when missing)."""
        return ["/etc/resolv.conf", "/etc/hosts", *self.secrets, *self.binds, *self.tmpfs]


def _mounts(spec: RunSpec) -> list[dict[str, Any]]:
    binds = {"/etc/resolv.conf": spec.bundle / "resolv.conf", "/etc/hosts": spec.bundle / "hosts",
             **{target: path for target, path in spec.secrets.items()}}
    return [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}
        if not spec.host_network else  # sysfs can only be mounted in a network namespace other than the host's
        {"destination": "/sys", "type": "bind", "source": "/sys", "options": ["rbind", "ro", "nosuid", "noexec", "nodev"]},
        *({"destination": dest, "type": "bind", "source": str(src), "options": ["rbind", "ro", "nosuid", "nodev"]}
          for dest, src in binds.items()),
        *({"destination": dest, "type": "bind", "source": str(src),
           "options": ["rbind", "ro" if ro else "rw", "nosuid", "nodev"]} for dest, (src, ro) in spec.binds.items()),
        *({"destination": dest, "type": "tmpfs", "source": "tmpfs",
           "options": ["nosuid", "nodev", *([f"size={size}"] if size else [])]} for dest, size in spec.tmpfs.items()),
    ]


#: What a RUN in the host's network namespace must not have there.
HOST_NETWORK_DENIED = ("CAP_NET_RAW", "CAP_NET_BIND_SERVICE")


def capabilities(host_network: bool) -> list[str]:
    """Docker's default capabilities, minus the network ones when the RUN shares the host's namespace."""
    return [c for c in CAPS if c not in HOST_NETWORK_DENIED] if host_network else CAPS


def _namespaces(spec: RunSpec) -> list[dict[str, str]]:
    out = [{"type": t} for t in ("pid", "ipc", "uts", "mount")]
    if spec.network == "none":
        out.append({"type": "network"})
    elif not spec.host_network:
        if not spec.netns:  # never the host's for want of the sandbox's
            raise ValueError("a RUN on the default network needs the build sandbox's network namespace")
        out.append({"type": "network", "path": spec.netns})
    return out


def oci_spec(spec: RunSpec) -> dict[str, Any]:
    """The runc config.json of a RUN step."""
    config = {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": spec.owner.uid, "gid": spec.owner.gid, "additionalGids": list(spec.owner.groups)},
            "args": spec.args, "env": spec.env, "cwd": spec.cwd,
            "capabilities": {k: capabilities(spec.host_network) for k in ("bounding", "effective", "permitted")},
            "noNewPrivileges": False,
        },
        "root": {"path": str(spec.rootfs), "readonly": False},
        "hostname": HOSTNAME,
        "mounts": _mounts(spec),
        "linux": {
            "namespaces": _namespaces(spec),
            "cgroupsPath": f"/k3c-build/{spec.container_id}",
            "maskedPaths": MASKED,
            "readonlyPaths": READONLY,
        },
    }
    spec.confinement.apply(config)
    return config


def resolv_conf(host_network: bool) -> str:
    """The host's resolv.conf; outside the host's network namespace a loopback resolver (systemd-resolved's
    127.0.0.53) is unreachable, so its upstream list is used instead, as docker does."""
    try:
        text = Path("/etc/resolv.conf").read_text()
    except OSError:
        return ""
    servers = [line.split()[1] for line in text.splitlines() if line.startswith("nameserver") and len(line.split()) > 1]
    if not host_network and servers and all(s.startswith("127.") or s == "::1" for s in servers):
        with contextlib.suppress(OSError):
            return Path("/run/systemd/resolve/resolv.conf").read_text()
    return text


def write_bundle(spec: RunSpec) -> None:
    spec.bundle.mkdir(parents=True, exist_ok=True)
    (spec.bundle / "resolv.conf").write_text(resolv_conf(spec.host_network))
    (spec.bundle / "hosts").write_text(f"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n127.0.1.1\t{HOSTNAME}\n")
    (spec.bundle / "config.json").write_text(json.dumps(oci_spec(spec)))


async def run(spec: RunSpec, runc_root: Path, on_line: Callable[[str], None], runc: str = "runc") -> int:
    """Run the step to its end; its exit code. Cancelling kills the container and deletes it."""
    await asyncio.to_thread(write_bundle, spec)
    proc = await asyncio.create_subprocess_exec(
        runc, "--root", str(runc_root), "run", "--bundle", str(spec.bundle), spec.container_id,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        start_new_session=True, limit=1 << 20)
    try:
        assert proc.stdout is not None
        async for raw in proc.stdout:
            on_line(raw.decode(errors="replace").rstrip("\r\n"))
        return await proc.wait()
    finally:
        if proc.returncode is None:
            await asyncio.shield(_kill(proc, spec.container_id, runc_root, runc))


async def _kill(proc: asyncio.subprocess.Process, cid: str, runc_root: Path, runc: str) -> None:
    killer = await asyncio.create_subprocess_exec(
        runc, "--root", str(runc_root), "delete", "--force", cid,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    await killer.wait()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    await proc.wait()


async def delete_all(runc_root: Path, runc: str = "runc") -> list[str]:
    """Force-delete every container in our runc state directory (left by a crash); their IDs."""
    ids = [p.name for p in runc_root.iterdir()] if runc_root.is_dir() else []
    for cid in ids:
        proc = await asyncio.create_subprocess_exec(
            runc, "--root", str(runc_root), "delete", "--force", cid,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        await proc.wait()
    return ids
