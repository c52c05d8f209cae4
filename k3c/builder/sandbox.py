"""RUN steps: one runc container on the step's mounted root filesystem, output streamed line by line.

Why runc directly (not containerd's Tasks API): a build step needs no shim, no log plumbing and no
restart handling, and ``runc run`` in the foreground starts in ~50 ms where a shim-managed task takes a
few hundred. The container gets Docker's default capabilities, masked /proc paths and fresh pid/ipc/uts/
mount namespaces; it shares the host's network namespace, as buildah's chroot isolation (which k3c's
buildah engine uses) and BuildKit without CNI do, so ``RUN apt-get …`` reaches the network. Because that
namespace is the host's, such a RUN gets no network capabilities (no ``CAP_NET_RAW`` to sniff or forge
host traffic, no ``CAP_NET_BIND_SERVICE`` for the host's privileged ports); ``RUN --network=none`` gets a
namespace of its own (loopback only) and Docker's full default set.

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
    network: str = "default"  #: ``RUN --network``: default/host share the host's; none gets only loopback

    def bind_targets(self) -> list[str]:
        """Image paths runc bind-mounts files onto (and creates when missing)."""
        return ["/etc/resolv.conf", "/etc/hosts", *self.secrets]


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
        if spec.network == "none" else  # sysfs can only be mounted in a network namespace of one's own
        {"destination": "/sys", "type": "bind", "source": "/sys", "options": ["rbind", "ro", "nosuid", "noexec", "nodev"]},
        *({"destination": dest, "type": "bind", "source": str(src), "options": ["rbind", "ro", "nosuid", "nodev"]}
          for dest, src in binds.items()),
    ]


#: What a RUN in the host's network namespace must not have there.
HOST_NETWORK_DENIED = ("CAP_NET_RAW", "CAP_NET_BIND_SERVICE")


def capabilities(network: str) -> list[str]:
    """Docker's default capabilities, minus the network ones when the RUN shares the host's namespace."""
    return CAPS if network == "none" else [c for c in CAPS if c not in HOST_NETWORK_DENIED]


def oci_spec(spec: RunSpec) -> dict[str, Any]:
    """The runc config.json of a RUN step."""
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": spec.owner.uid, "gid": spec.owner.gid, "additionalGids": list(spec.owner.groups)},
            "args": spec.args, "env": spec.env, "cwd": spec.cwd,
            "capabilities": {k: capabilities(spec.network) for k in ("bounding", "effective", "permitted")},
            "noNewPrivileges": False,
        },
        "root": {"path": str(spec.rootfs), "readonly": False},
        "hostname": HOSTNAME,
        "mounts": _mounts(spec),
        "linux": {
            "namespaces": [{"type": t} for t in ("pid", "ipc", "uts", "mount",
                                                 *(("network",) if spec.network == "none" else ()))],
            "cgroupsPath": f"/k3c-build/{spec.container_id}",
            "maskedPaths": MASKED,
            "readonlyPaths": READONLY,
        },
    }


def write_bundle(spec: RunSpec) -> None:
    spec.bundle.mkdir(parents=True, exist_ok=True)
    try:
        resolv = Path("/etc/resolv.conf").read_text()
    except OSError:
        resolv = ""
    (spec.bundle / "resolv.conf").write_text(resolv)
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
