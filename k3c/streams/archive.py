"""`cp`'s node side: a path in a container's filesystem as a tar, a tar extracted into it, and docker's path stat.

The container's filesystem is reached through ``/proc/PID/root`` of its init process: its root as the
container sees it, its volumes and other mounts included, so what is written lands where the container
would see it. Paths are never resolved by the host: every walk starts from a descriptor of that root and
goes one component at a time, a symlink met on the way followed as in a chroot at the container's root
(an absolute target starts there again, ``..`` stops there), so neither a link in the container nor a name
in the request can lead outside. Extraction is :class:`k3c.untar.Extractor` (the project's safe extractor)
rooted there, with the destination path put in front of every member name, so the same rules hold for
what the tar carries. As docker, a trailing ``/`` or ``/.`` follows a final symlink; otherwise the link
itself is what is copied.
"""

from __future__ import annotations

import errno
import os
import stat
import tarfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from k3c.untar import MAX_LINKS, Extractor, Options, UntarError, open_archive, relative_parts

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
#: Go's os.FileMode bits for the file types, as docker's path stat reports them.
_GO_TYPES = ((stat.S_ISDIR, 1 << 31), (stat.S_ISLNK, 1 << 27), (stat.S_ISFIFO, 1 << 25),
             (stat.S_ISSOCK, 1 << 24), (stat.S_ISBLK, 1 << 26), (stat.S_ISCHR, (1 << 26) | (1 << 21)))


class PathError(Exception):
    """A path in the container that cannot be used; ``missing`` when it does not exist."""

    def __init__(self, message: str, missing: bool = False) -> None:
        super().__init__(message)
        self.missing = missing


@dataclass
class Resolved:
    """A path resolved in the container: its parent directory's descriptor, its last name ('.': the root
    itself), and the absolute path it came to (every symlink but the unfollowed last one resolved)."""

    parent: int
    name: str
    absolute: str

    def close(self) -> None:
        os.close(self.parent)


def open_root(base: Path) -> int:
    """A descriptor of a container's root directory: ``/proc/PID/root``, or where a stopped one is mounted."""
    return os.open(base, _DIR)


def follows_last(path: str) -> bool:
    """docker's rule: ``dir/`` and ``dir/.`` name what a final symlink points to, ``dir`` the link itself."""
    return path.endswith(("/", "/."))


def resolve(root: int, path: str, follow_last: bool | None = None) -> Resolved:
    """Walk ``path`` from the container's root; the last component is not followed unless asked."""
    follow = follows_last(path) if follow_last is None else follow_last
    todo = [p for p in path.split("/") if p not in ("", ".")]
    stack: list[tuple[int, str]] = [(os.dup(root), "")]
    links = 0
    try:
        while todo:
            part = todo.pop(0)
            if part == "..":
                if len(stack) > 1:
                    os.close(stack.pop()[0])
                continue
            parent = stack[-1][0]
            if not todo and not follow:
                break_out = _last(parent, part, stack)
                if break_out is not None:
                    return break_out
            try:
                st = os.stat(part, dir_fd=parent, follow_symlinks=False)
            except FileNotFoundError:
                raise PathError(f"no such file or directory: {path}", missing=True) from None
            if stat.S_ISLNK(st.st_mode):
                links += 1
                if links > MAX_LINKS:
                    raise PathError(f"too many levels of symbolic links: {path}")
                target = os.readlink(part, dir_fd=parent)
                if target.startswith("/"):
                    while len(stack) > 1:
                        os.close(stack.pop()[0])
                todo = [p for p in target.split("/") if p not in ("", ".")] + todo
                continue
            if not todo:
                return _resolved(stack, part)
            if not stat.S_ISDIR(st.st_mode):
                raise PathError(f"not a directory: {path}")
            stack.append((os.open(part, _DIR | os.O_NOFOLLOW, dir_fd=parent), part))
        # the path named a directory reached through the walk (or the root): its parent is one up
        if len(stack) == 1:
            return Resolved(os.dup(stack[0][0]), ".", "/")
        fd, name = stack.pop()
        os.close(fd)
        return _resolved(stack, name)
    finally:
        for fd, _ in stack:
            os.close(fd)


def _last(parent: int, part: str, stack: list[tuple[int, str]]) -> Resolved | None:
    """The unfollowed last component, if it exists (else the walk reports it missing)."""
    try:
        os.stat(part, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        return None
    return _resolved(stack, part)


def _resolved(stack: list[tuple[int, str]], name: str) -> Resolved:
    absolute = "/" + "/".join([n for _, n in stack[1:]] + [name])
    return Resolved(os.dup(stack[-1][0]), name, absolute)


# ---- stat -------------------------------------------------------------------------------------------
def path_stat(root: int, path: str) -> dict[str, Any]:
    """docker's ContainerPathStat of ``path``: name, size, Go file mode, mtime and (for a link) its target."""
    where = resolve(root, path)
    try:
        st = os.stat(where.name, dir_fd=where.parent, follow_symlinks=False)
        link = ""
        if stat.S_ISLNK(st.st_mode):
            try:
                target = resolve(root, where.absolute, follow_last=True)
                link = target.absolute
                target.close()
            except PathError:
                link = os.readlink(where.name, dir_fd=where.parent)
    finally:
        where.close()
    name = "/" if where.absolute == "/" and not path.strip("/.") else os.path.basename(path.rstrip("/")) or "/"
    if path.endswith("/."):
        name = "."
    return {"name": name, "size": st.st_size, "mode": go_mode(st.st_mode),
            "mtime": datetime.fromtimestamp(st.st_mtime, UTC).isoformat().replace("+00:00", "Z"),
            "linkTarget": link}


def go_mode(mode: int) -> int:
    """A Unix st_mode as Go's os.FileMode (type bits high, setuid/setgid/sticky as Go numbers them)."""
    out = mode & 0o777
    for test, bit in _GO_TYPES:
        if test(mode):
            out |= bit
            break
    if mode & stat.S_ISUID:
        out |= 1 << 23
    if mode & stat.S_ISGID:
        out |= 1 << 22
    if mode & stat.S_ISVTX:
        out |= 1 << 20
    return out


# ---- archive out ------------------------------------------------------------------------------------
def write_tar(root: int, path: str, out: IO[bytes]) -> None:
    """A tar of ``path`` to ``out``, its entries under the requested base name (``.`` for ``dir/.``)."""
    where = resolve(root, path)
    base = "." if path.endswith("/.") else (os.path.basename(path.rstrip("/")) or ".")
    try:
        with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            _add(tar, where.parent, where.name, base)
    finally:
        where.close()


def write_root_tar(root: int, out: IO[bytes]) -> None:
    """`docker export`: the container's own filesystem, names relative to its root; what is mounted on it
    (/proc, /sys, volumes, the runtime's /etc/hosts …) is there as an empty directory or file only."""
    device = os.fstat(root).st_dev
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for child in sorted(os.listdir(root)):
            _add(tar, root, child, child, device)


def _add(tar: tarfile.TarFile, parent: int, name: str, arcname: str, device: int | None = None) -> None:
    """``name`` (and below it) into ``tar``; with ``device``, other filesystems stay empty."""
    st = os.stat(name, dir_fd=parent, follow_symlinks=False)
    info = tarfile.TarInfo(arcname)
    info.mode, info.uid, info.gid, info.mtime = st.st_mode & 0o7777, st.st_uid, st.st_gid, int(st.st_mtime)
    foreign = device is not None and st.st_dev != device
    if stat.S_ISDIR(st.st_mode):
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
        if foreign:
            return
        fd = os.open(name, _DIR | os.O_NOFOLLOW, dir_fd=parent)
        try:
            for child in sorted(os.listdir(fd)):
                _add(tar, fd, child, f"{arcname}/{child}", device)
        finally:
            os.close(fd)
    elif stat.S_ISREG(st.st_mode) and foreign:
        tar.addfile(info)  # a file the runtime mounted there: its place, not its content
    elif stat.S_ISREG(st.st_mode):
        info.size = st.st_size
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
        with os.fdopen(fd, "rb") as f:
            tar.addfile(info, f)
    elif stat.S_ISLNK(st.st_mode):
        info.type, info.linkname = tarfile.SYMTYPE, os.readlink(name, dir_fd=parent)
        tar.addfile(info)
    elif stat.S_ISFIFO(st.st_mode):
        info.type = tarfile.FIFOTYPE
        tar.addfile(info)
    elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        info.type = tarfile.CHRTYPE if stat.S_ISCHR(st.st_mode) else tarfile.BLKTYPE
        info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        tar.addfile(info)
    # (sockets are not archived, as docker's tar does not)


# ---- archive in -------------------------------------------------------------------------------------
def extract_tar(base: Path, root: int, path: str, source: IO[bytes], keep_owners: bool,
                keep_dirs_and_files: bool = False) -> None:
    """Extract the tar ``source`` into the directory ``path`` of the container (it must exist).

    ``keep_owners`` (`cp -a`) keeps the members' uid/gid; otherwise files belong to the container's root.
    ``keep_dirs_and_files`` (docker's ``noOverwriteDirNonDir``) refuses to replace a directory by a file or
    a file by a directory.
    """
    where = resolve(root, path, follow_last=True)
    try:
        st = os.stat(where.name, dir_fd=where.parent, follow_symlinks=True) if where.name != "." else os.fstat(root)
    finally:
        where.close()
    if not stat.S_ISDIR(st.st_mode):
        raise PathError("extraction point is not a directory")
    prefix = where.absolute.strip("/")
    try:
        with open_archive(fileobj=source) as tar, \
                Extractor(base, Options(owners=keep_owners, mode_mask=0o7777,
                                        keep_dirs_and_files=keep_dirs_and_files)) as out:
            for member in tar:
                member.name = _under(prefix, member.name)
                if member.islnk():
                    member.linkname = _under(prefix, member.linkname)
                out.extract(tar, member)
    except (tarfile.TarError, UntarError) as err:
        raise PathError(f"invalid archive: {err}") from None
    except OSError as err:
        if err.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            raise PathError(f"cannot write to the container: {err.strerror}") from None
        raise


def _under(prefix: str, name: str) -> str:
    """``name`` below the destination; its own ``..`` cannot climb above it (the extractor's rule)."""
    parts = relative_parts(name)
    return "/".join([prefix, *parts] if prefix else parts)
