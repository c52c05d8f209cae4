"""``RUN --mount``: what each type becomes on the host for one RUN step, and undoing it afterwards.

- ``secret``: a private copy of the secret (owned ``uid:gid``, mode ``0400`` by default), bound read-only;
- ``cache``: a directory per ``id`` under the engine's root, kept between builds and never in a layer;
- ``tmpfs``: a fresh tmpfs;
- ``bind``: a path of the context (only what .dockerignore keeps, so a filtered copy for a directory), or
  of another stage or image (``from=``, a read-only ``nodev,nosuid`` snapshot view); read-only unless
  ``rw``, and then the RUN writes to a throw-away copy, as BuildKit discards them. The copy holds regular
  files, directories and symlinks only: a device node of a stage is skipped (copying it would read the
  host device its numbers name), and a device, FIFO or socket as the whole source is refused.

None of these targets ends up in the layer: they are mount points, and the ones runc had to create are
removed again after the RUN (:func:`k3c.builder.rootfs.remove_created`).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import posixpath
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from k3c.builder import rootfs
from k3c.builder.engine import BuildFailed, finish_anyway
from k3c.builder.instructions import Instruction
from k3c.cri.snapshots import Snapshots
from k3c.units import ram_in_bytes

__all__ = ["Prepared", "RunMount", "RunMounts", "mounts_of"]


@dataclass(frozen=True)
class RunMount:
    """One ``--mount=type=…,k=v,…`` of a RUN, its target made absolute against the WORKDIR."""

    type: str
    target: str
    opts: dict[str, str]

    def opt(self, *names: str, default: str = "") -> str:
        return next((self.opts[n] for n in names if n in self.opts), default)

    def flag(self, *names: str) -> bool:
        """A boolean option: present alone (``ro``) or with true/1."""
        return any(n in self.opts and self.opts[n].lower() in ("", "true", "1") for n in names)

    @property
    def source(self) -> str:
        return self.opt("source", "src", default=".")


def mounts_of(ins: Instruction, workdir: str) -> list[RunMount]:
    out = []
    for text in ins.flags.get("mount", []):
        opts = dict(kv.partition("=")[::2] for kv in text.split(","))
        kind = opts.get("type", "bind")
        target = opts.get("target") or opts.get("dst") or opts.get("destination") or ""
        if kind == "secret" and not target:
            target = f"/run/secrets/{opts.get('id') or ''}"
        if not target:
            raise ValueError(f"--mount={text}: a target is required")
        out.append(RunMount(kind, posixpath.normpath(posixpath.join(workdir, target)), opts))
    return out


@dataclass
class Prepared:
    """What runc mounts for one RUN (see :class:`k3c.builder.sandbox.RunSpec`)."""

    secrets: dict[str, Path] = field(default_factory=dict)
    binds: dict[str, tuple[Path, bool]] = field(default_factory=dict)  #: target -> (host path, read-only)
    tmpfs: dict[str, int] = field(default_factory=dict)


class RunMounts:
    """Makes the host side of one RUN's mounts under ``work``; :meth:`release` undoes what needs undoing."""

    def __init__(self, work: Path, snaps: Snapshots, lease: str, cache_root: Path, context: Path,
                 kept: set[str] | None, secrets: dict[str, Path], new_key: Callable[[], str], active: set[str]):
        self.work = work
        self.snaps = snaps
        self.lease = lease
        self.cache_root = cache_root
        self.context = context
        self.kept = kept
        self.secret_files = secrets
        self.new_key = new_key
        self.active = active  #: the build's uncommitted snapshot keys (removed on failure)
        self._views: list[tuple[str, Path]] = []

    async def prepare(self, mounts: list[RunMount], chains: dict[str, str]) -> Prepared:
        """``chains``: the snapshot chain of each ``from=`` stage or image."""
        out = Prepared()
        for m in mounts:
            if m.type == "secret":
                path = self._secret(m)
                if path is not None:
                    out.secrets[m.target] = path
            elif m.type == "cache":
                out.binds[m.target] = (self._cache_dir(m), m.flag("readonly", "ro"))
            elif m.type == "tmpfs":
                out.tmpfs[m.target] = _tmpfs_size(m)
            elif m.type == "bind":
                out.binds[m.target] = await self._bind(m, chains)
        return out

    async def release(self) -> None:
        for key, root in reversed(self._views):
            await finish_anyway(_unmount(root))
            await finish_anyway(self.snaps.remove(key))
            self.active.discard(key)
        self._views.clear()

    def _secret(self, m: RunMount) -> Path | None:
        sid = m.opt("id") or posixpath.basename(m.target)
        src = self.secret_files.get(sid)
        if src is None:
            if m.opt("required", default="false").lower() in ("true", "1", ""):
                raise BuildFailed(f"secret {sid} not found")
            return None
        dest = self.work / f"secret-{self.new_key()}"
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(src.read_bytes())
        os.chown(dest, int(m.opt("uid") or 0), int(m.opt("gid") or 0))
        os.chmod(dest, int(m.opt("mode") or "0400", 8))
        return dest

    def _cache_dir(self, m: RunMount) -> Path:
        path = self.cache_root / hashlib.sha256((m.opt("id") or m.target).encode()).hexdigest()[:32]
        if not path.exists():
            mode = int(m.opt("mode") or "0755", 8)
            path.mkdir(parents=True, mode=mode)
            os.chmod(path, mode)
            os.chown(path, int(m.opt("uid") or 0), int(m.opt("gid") or 0))
        return path

    async def _bind(self, m: RunMount, chains: dict[str, str]) -> tuple[Path, bool]:
        rw = m.flag("rw", "readwrite")
        if m.opt("from"):
            key = self.new_key()
            self.active.add(key)
            root = self.work / key
            root.mkdir()
            mounts = await self.snaps.view(key, chains[m.opt("from")], self.lease)
            self._views.append((key, root))
            await asyncio.to_thread(rootfs.mount, mounts, root, True)
            path = rootfs.resolve(root, m.source)
            if not os.path.lexists(path):
                raise ValueError(f"--mount from={m.opt('from')}: {m.source} not found")
            if rw and not (path.is_dir() or path.is_file()):  # (resolved: no symlink left to follow)
                raise ValueError(f"--mount from={m.opt('from')}: {m.source} is not a regular file, a directory "
                                 "or a symlink")
            return (await asyncio.to_thread(self._copy, path) if rw else path), not rw
        rel = posixpath.normpath("/" + m.source).lstrip("/")
        # a symlink in the context leads where it would inside the context, never to a host file
        path = rootfs.resolve(self.context, "/" + rel) if rel else self.context
        spec = rootfs.CopySpec(self.context, [rel or "."], "/", kept=self.kept)
        if rel and not spec.visible(rel) or not os.path.lexists(path):
            raise ValueError(f"--mount source {m.source}: not found in the build context")
        if path.is_file() and not rw:
            return path, True
        copy = self.work / f"bind-{self.new_key()}"
        copy.mkdir()
        if path.is_file():
            await asyncio.to_thread(rootfs.copy_plain, path, copy / path.name)
            return copy / path.name, not rw
        await asyncio.to_thread(rootfs.copy_into, copy, spec)  # only what .dockerignore keeps (off the loop)
        return copy, not rw

    def _copy(self, path: Path) -> Path:
        """A throw-away copy of a stage's file or directory for a ``rw`` bind: regular files, directories
        and symlinks only (:func:`k3c.builder.rootfs.copy_plain`)."""
        dest = self.work / f"bind-{self.new_key()}"
        if not path.is_dir():
            dest.mkdir()
            dest = dest / path.name
        rootfs.copy_plain(path, dest)
        return dest


def _tmpfs_size(m: RunMount) -> int:
    """``size=`` of a tmpfs mount, in docker's units (``64m``) as BuildKit takes it; 0: the kernel's default."""
    text = m.opt("size", default="0") or "0"
    try:
        return ram_in_bytes(text)
    except ValueError:
        raise ValueError(f"--mount=type=tmpfs: invalid size={text}") from None


async def _unmount(root: Path) -> None:
    await asyncio.to_thread(rootfs.unmount, root)
