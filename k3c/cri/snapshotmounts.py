"""A containerd snapshot's mounts made and unmade on the host, where k3c reads or writes a filesystem itself.

The builder mounts its steps' snapshots here, and the node's container operations mount a stopped
container's writable layer (:mod:`k3c.cri.writablelayers`) to copy files in and out of it. mount(2) is
called directly (through libc): the snapshotter describes exactly one mount, and its options are passed
on as they are, with ``nodev`` always added.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
from pathlib import Path

from .snapshots import Mount

__all__ = ["mount", "unmount"]

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND = 1, 2, 4, 32, 4096
MNT_DETACH = 2


def mount(mounts: list[Mount], target: Path, readonly: bool = False, *, setuid: bool = False) -> None:
    """Mount a snapshot's mounts (one overlay or bind mount, as containerd's overlayfs snapshotter gives).

    Always ``nodev``: a device node of an image or a stage is never opened through our mounts, whatever
    numbers it carries (runc's bind of a RUN's root keeps the flag, so not by a RUN either). ``nosuid``
    too, unless ``setuid``: a RUN's own root, where ``sudo`` and other setuid programs must work as they do
    in a container (the operator never executes a file of a mount).
    """
    if len(mounts) != 1:
        raise OSError(errno.EINVAL, f"expected one mount, got {len(mounts)}")
    m = mounts[0]
    flags = MS_NODEV | (0 if setuid else MS_NOSUID) | (MS_RDONLY if readonly or "ro" in m.options else 0)
    data = ",".join(o for o in m.options if o not in ("ro", "rw", "rbind", "bind"))
    if m.type == "bind":  # the flags of a bind mount are set by a remount
        _mount(m.source, target, m.type, MS_BIND, "")
        try:
            _mount("none", target, None, MS_BIND | MS_REMOUNT | flags, "")
        except OSError:
            unmount(target)
            raise
        return
    _mount(m.source, target, m.type, flags, data)


def _mount(source: str, target: Path, fstype: str | None, flags: int, data: str) -> None:
    if _libc.mount(source.encode(), str(target).encode(), fstype.encode() if fstype else None, flags,
                   data.encode() if data else None) != 0:
        err = ctypes.get_errno()
        what = f"remount {target}" if flags & MS_REMOUNT else f"mount {fstype} on {target}"
        raise OSError(err, f"{what}: {os.strerror(err)}")


def unmount(target: Path | str, lazy: bool = False) -> None:
    """Unmount ``target`` (lazily at once with ``lazy``, else lazily only if busy); not mounted is fine."""
    if not lazy and _libc.umount2(str(target).encode(), 0) == 0:
        return
    if not lazy and ctypes.get_errno() in (errno.EINVAL, errno.ENOENT):
        return
    if _libc.umount2(str(target).encode(), MNT_DETACH) != 0:
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOENT):
            raise OSError(err, f"umount {target}: {os.strerror(err)}")
