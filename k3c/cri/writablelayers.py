"""A stopped container's writable layer, kept in a containerd snapshot of its own until its next start or rm.

Why: every run of a LocalContainer is a new CRI container (pods are ephemeral), and CRI removes a container's
snapshot with the container. docker keeps a container's writable layer from create to rm: `cp`, `diff` and
`export` work on a stopped container, and what a run wrote (or `cp` put in) is there at the next start.
So before the operator removes an exited container, the entries of its overlay upper directory are moved
(renamed: one filesystem, nothing copied; owners, modes, times, xattrs and whiteouts kept) into the upper
directory of the snapshot ``k3c-rw-<object uid>``, prepared on the same parent (the image's top layer).
The next run's container gets them back between CreateContainer and StartContainer, before anything has
its root mounted; a container of another image starts empty (a new image is a new container in docker's
terms). rm removes the snapshot. A container that never ran gets one on its image's layers when `cp`
writes into it. The ``containerd.io/gc.root`` label keeps these snapshots from containerd's collector.

The mount points runc made in the upper directory for what the runtime mounts (/proc, /etc/hosts, a
volume's directory …) are not the container's changes (docker keeps them in a separate init layer): the
empty ones stay behind with the old container, and the next run's runc makes them again.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
from collections.abc import Iterable
from pathlib import Path

from .snapshots import Mount, Snapshots

__all__ = ["PREFIX", "WritableLayers", "key_of", "lower_dirs", "upper_dir"]

#: Names of the kept snapshots: this, then the LocalContainer's uid.
PREFIX = "k3c-rw-"
#: containerd's label that makes a snapshot a root of its garbage collector (kept until removed).
GC_ROOT_LABEL = "containerd.io/gc.root"


def key_of(uid: str) -> str:
    """The kept snapshot of the object ``uid``."""
    return PREFIX + uid


def _option(mounts: list[Mount], name: str) -> str:
    for m in mounts:
        for option in m.options:
            key, _, value = option.partition("=")
            if key == name:
                return value
    return ""


def upper_dir(mounts: list[Mount]) -> Path:
    """The directory a snapshot's changes land in: the overlay's upperdir, or the bind-mounted directory of a
    snapshot without parent."""
    upper = _option(mounts, "upperdir")
    if upper:
        return Path(upper)
    if len(mounts) == 1 and mounts[0].type == "bind":
        return Path(mounts[0].source)
    raise OSError(f"not a writable overlay snapshot: {mounts}")


def lower_dirs(mounts: list[Mount]) -> list[Path]:
    """The read-only layers below a snapshot, topmost first."""
    lowers = _option(mounts, "lowerdir")
    return [Path(p) for p in lowers.split(":")] if lowers else []


class WritableLayers:
    """The kept writable layers of one containerd's containers (a snapshotter's ``k3c-rw-*`` snapshots)."""

    def __init__(self, snapshots: Snapshots) -> None:
        self.snapshots = snapshots

    async def keep(self, uid: str, container_key: str, mountpoints: Iterable[str]) -> bool:
        """Move the changes of the container snapshot ``container_key`` into the object's kept snapshot;
        False if that snapshot is already gone."""
        parent = await self.snapshots.parent(container_key)
        if parent is None:
            return False
        source = await self.snapshots.mounts(container_key)
        held = await self._prepared(uid, parent)
        await asyncio.to_thread(_drop_mountpoints, upper_dir(source), lower_dirs(source), mountpoints)
        await asyncio.to_thread(_move_entries, upper_dir(source), upper_dir(held))
        return True

    async def restore(self, uid: str, container_key: str) -> bool:
        """Give the new container snapshot ``container_key`` the object's kept changes (then no longer kept);
        False if there were none, or none for this container's image (they are dropped)."""
        key = key_of(uid)
        parent = await self.snapshots.parent(key)
        if parent is None:
            return False
        if parent != await self.snapshots.parent(container_key):
            await self.snapshots.remove(key)
            return False
        held, target = await self.snapshots.mounts(key), await self.snapshots.mounts(container_key)
        await asyncio.to_thread(_move_entries, upper_dir(held), upper_dir(target))
        await self.snapshots.remove(key)
        return True

    async def mounts(self, uid: str) -> list[Mount] | None:
        """How to mount the object's kept layer (over its image's), or None if it has none."""
        key = key_of(uid)
        if await self.snapshots.parent(key) is None:
            return None
        return await self.snapshots.mounts(key)

    async def ensure(self, uid: str, parent: str) -> list[Mount]:
        """The object's kept layer, prepared empty on ``parent`` (its image's top layer) if it has none."""
        return await self._prepared(uid, parent)

    async def drop(self, uid: str) -> None:
        """Forget the object's kept layer (rm)."""
        await self.snapshots.remove(key_of(uid))

    async def sweep(self, uids: set[str]) -> list[str]:
        """Remove the kept layers of objects not in ``uids`` (gone while nothing watched); their uids."""
        gone = [key[len(PREFIX):] for key in await self.snapshots.keys(PREFIX)]
        gone = [uid for uid in gone if uid not in uids]
        for uid in gone:
            await self.drop(uid)
        return gone

    async def _prepared(self, uid: str, parent: str) -> list[Mount]:
        key = key_of(uid)
        current = await self.snapshots.parent(key)
        if current == parent:
            return await self.snapshots.mounts(key)
        if current is not None:  # kept for another image: a new container now
            await self.snapshots.remove(key)
        return await self.snapshots.prepare(key, parent, labels={GC_ROOT_LABEL: "k3c"})


def _in_lowers(lowers: list[Path], rel: str) -> bool:
    for lower in lowers:
        try:
            os.lstat(lower / rel)
            return True
        except (FileNotFoundError, NotADirectoryError):
            continue
    return False


def _drop_mountpoints(upper: Path, lowers: list[Path], mountpoints: Iterable[str]) -> None:
    """Remove the empty files and directories runc made in ``upper`` to mount the runtime's mounts on."""
    for point in sorted(set(mountpoints), key=len, reverse=True):  # the deepest first
        rel = os.path.normpath(point).strip("/")
        if not rel or rel.startswith("..") or _in_lowers(lowers, rel):
            continue
        path = upper / rel
        try:
            st = os.lstat(path)
            if stat.S_ISREG(st.st_mode) and st.st_size == 0:
                path.unlink()
            elif stat.S_ISDIR(st.st_mode) and not os.listdir(path):
                path.rmdir()
        except (FileNotFoundError, NotADirectoryError):
            continue


def _move_entries(source: Path, target: Path) -> None:
    """Every entry of the upper directory ``source`` renamed into ``target`` (one of the same parent); an entry
    ``target`` has already is replaced."""
    for name in os.listdir(source):
        there = target / name
        try:
            st = os.lstat(there)
        except FileNotFoundError:
            pass
        else:
            if stat.S_ISDIR(st.st_mode):
                shutil.rmtree(there)
            else:
                there.unlink()
        os.rename(source / name, there)
