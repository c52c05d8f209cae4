"""A build step's root filesystem on the host: mounting snapshots, paths inside it, users, and COPY.

Every path written during a build is resolved *inside* the mounted root (:func:`resolve`): symlinks in the
image are followed as the container would see them, never onto the host. That matters because a base
image may hold ``/app -> /etc`` or ``/x -> ../../..``: ``COPY file /app/`` must land in the image's /etc.

An image (or a stage a RUN made) may also hold device nodes with any numbers, FIFOs and huge files. So
every mount made here is ``nodev`` (and ``nosuid`` but for a RUN's own root), only regular files,
directories and symlinks are ever copied (:func:`copy_plain`, COPY), and the few files the operator reads
from an image (/etc/passwd, /etc/group) are opened without following a link, only if regular, and only
up to :data:`PASSWD_MAX` bytes.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import posixpath
import shutil
import stat
import tarfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from k3c import untar
from k3c.cri.snapshotmounts import mount, unmount

__all__ = ["PASSWD_MAX", "CopySpec", "copy_into", "copy_plain", "ensure_dir", "mount", "resolve", "unmount",
           "unmount_under", "user_ids"]

#: How deep symlinks may chain inside an image before a path counts as a loop (as Linux: 40).
MAX_LINKS = 40
#: Largest /etc/passwd or /etc/group read from an image (real ones hold a few KiB).
PASSWD_MAX = 4 << 20


def resolve(root: Path, path: str, follow_last: bool = True) -> Path:
    """Host path of the image path ``path`` under ``root``, following the image's symlinks inside it."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    done: list[str] = []
    links = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if done:
                done.pop()
            continue
        candidate = root.joinpath(*done, part)
        if (parts or follow_last) and candidate.is_symlink():
            links += 1
            if links > MAX_LINKS:
                raise OSError(errno.ELOOP, f"too many symlinks resolving {path}")
            target = os.readlink(candidate)
            if target.startswith("/"):
                done = []
            parts = [p for p in target.split("/") if p not in ("", ".")] + parts
            continue
        done.append(part)
    return root.joinpath(*done)


@dataclass(frozen=True)
class Owner:
    uid: int
    gid: int
    groups: tuple[int, ...] = ()


def _db(root: Path, name: str) -> Iterator[list[str]]:
    text = image_file(root, f"/etc/{name}")
    for line in (text or "").splitlines():
        if line and not line.startswith("#"):
            yield line.split(":")


def image_file(root: Path, path: str) -> str | None:
    """The text of a small regular file of the image (/etc/passwd), or None when the image has none.

    The path is resolved inside ``root``; the file is read only if it is a regular file (a FIFO would block
    the operator for ever, a device node would be read on the host), opened without following a link (so
    nothing put there meanwhile leads out), and only up to :data:`PASSWD_MAX` bytes; else ValueError.
    """
    try:
        host = resolve(root, path)
        st = os.lstat(host)
    except OSError:  # missing, a dangling link, a symlink loop: no such file, as before
        return None
    if not stat.S_ISREG(st.st_mode):
        raise ValueError(f"cannot read {path} of the image: not a regular file")
    try:
        fd = os.open(host, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise ValueError(f"cannot read {path} of the image: not a regular file") from None
        raise
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError(f"cannot read {path} of the image: not a regular file")
        data = f.read(PASSWD_MAX + 1)
    if len(data) > PASSWD_MAX:
        raise ValueError(f"cannot read {path} of the image: larger than {PASSWD_MAX} bytes")
    return data.decode(errors="replace")


def user_ids(root: Path, spec: str, *, supplementary: bool = False) -> Owner:
    """``user[:group]`` (names or numbers) to ids, looked up in the image's /etc/passwd and /etc/group."""
    user, _, group = (spec or "0").partition(":")
    uid = gid = None
    if user.isdigit():
        uid = int(user)
    for fields in _db(root, "passwd"):
        if len(fields) >= 4 and (fields[0] == user or (uid is not None and fields[2] == str(uid))):
            uid, gid = int(fields[2]), int(fields[3])
            user = fields[0]
            break
    if uid is None:
        raise ValueError(f"unable to find user {user}: no matching entries in passwd file")
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            gid = next((int(f[2]) for f in _db(root, "group") if len(f) >= 3 and f[0] == group), None)
            if gid is None:
                raise ValueError(f"unable to find group {group}: no matching entries in group file")
    groups: tuple[int, ...] = ()
    if supplementary and not group:
        groups = tuple(int(f[2]) for f in _db(root, "group")
                       if len(f) >= 4 and user in f[3].split(",") and f[2].isdigit())
    return Owner(uid, gid if gid is not None else 0, groups)


def chown_owner(root: Path, spec: str) -> Owner:
    """COPY/ADD ``--chown`` as BuildKit reads it: a numeric user (or ``root``) is also the group unless one
    is given; a user name takes its group from the image's /etc/passwd."""
    user, _, group = spec.partition(":")
    if user.isdigit() or user == "root":
        uid = gid = 0 if user == "root" else int(user)
    else:
        named = user_ids(root, user)
        uid, gid = named.uid, named.gid
    if group:
        gid = user_ids(root, f"0:{group}").gid
    return Owner(uid, gid)


# ------------------------------------------------------------------------------------------------ COPY


@dataclass
class CopySpec:
    """One COPY/ADD: where sources are read from and how the copies are owned."""

    source_root: Path  #: the context directory, or the mounted root of a stage/image (``--from``)
    sources: list[str]
    dest: str  #: absolute image path (WORKDIR applied)
    owner: Owner | None = None  #: ``--chown``; None keeps root
    mode: int | None = None  #: ``--chmod``
    kept: set[str] | None = None  #: context paths .dockerignore keeps (None: all, for ``--from``)
    extract: bool = False  #: ADD: unpack local tar archives
    #: directories .dockerignore excludes but with kept paths below (``build`` for ``!build/keep.txt``)
    kept_parents: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        for path in self.kept or ():
            parent = posixpath.dirname(path)
            while parent and parent not in self.kept_parents:
                self.kept_parents.add(parent)
                parent = posixpath.dirname(parent)

    def visible(self, rel: str) -> bool:
        return self.kept is None or rel == "" or rel in self.kept or rel in self.kept_parents


class CopyError(Exception):
    """A source is missing or a destination cannot be written; the message is Docker's wording."""


def _has_magic(s: str) -> bool:
    return any(c in s for c in "*?[")


def _matches(root: Path, pattern: str, visible: Callable[[str], bool]) -> list[str]:
    """Context-relative paths matching a source (glob per path segment, like Go's filepath.Match)."""
    clean = posixpath.normpath("/" + pattern).lstrip("/")
    if clean in ("", "."):
        return [""]
    if not _has_magic(clean):
        return [clean]
    segs = clean.split("/")
    found: list[str] = []

    def walk(rel: str, i: int) -> None:
        base = root / rel if rel else root
        try:
            names = sorted(os.listdir(base))
        except OSError:
            return
        for name in names:
            if not fnmatch.fnmatchcase(name, segs[i]):
                continue
            path = f"{rel}/{name}" if rel else name
            if not visible(path):
                continue
            if i == len(segs) - 1:
                found.append(path)
            elif (base / name).is_dir() and not (base / name).is_symlink():
                walk(path, i + 1)

    walk("", 0)
    return found


def _source_path(spec: CopySpec, rel: str) -> Path:
    """A source as COPY names it: a symlink is followed, as Docker does, but inside the context or
    image it belongs to, so a link to /etc/shadow in the context never reaches the host's."""
    return resolve(spec.source_root, "/" + rel) if rel else spec.source_root


def copy_into(root: Path, spec: CopySpec) -> None:
    """Copy the sources into the mounted ``root`` with Docker's rules (see the COPY reference)."""
    matched: list[str] = []
    for src in spec.sources:
        found = _matches(spec.source_root, src, spec.visible)
        for rel in found:
            path = _source_path(spec, rel)
            if not spec.visible(rel) or not os.path.lexists(path):
                raise CopyError(f"failed to compute cache key: \"/{rel}\": not found")
        if not found:
            raise CopyError(f"no source files were specified matching {src!r}")
        matched += found
    into_dir = spec.dest.endswith("/") or len(matched) > 1
    for rel in matched:
        path = _source_path(spec, rel)
        if path.is_dir():
            ensure_dir(root, spec.dest, spec.owner)
            _copy_tree(root, spec, rel, path, spec.dest)
            continue
        if spec.extract and _is_archive(path):
            _extract(path, ensure_dir(root, spec.dest, spec.owner))
            continue
        dest_path = resolve(root, spec.dest)
        if into_dir or (dest_path.is_dir() and not spec.dest.endswith("/.")):
            parent = ensure_dir(root, spec.dest, spec.owner)
            target = parent / posixpath.basename(rel or path.name)
        else:
            parent = ensure_dir(root, posixpath.dirname(spec.dest) or "/", None)
            target = parent / posixpath.basename(spec.dest)
        _copy_entry(path, target, spec)


def ensure_dir(root: Path, image_path: str, owner: Owner | None) -> Path:
    """The host path of directory ``image_path`` in ``root``, created (0755, root or ``owner``) if missing."""
    parts = [p for p in image_path.split("/") if p]
    current = "/"
    for part in parts:
        current = posixpath.join(current, part)
        host = resolve(root, current)
        if not os.path.lexists(host):
            # the resolved path has no symlinks left, so creating its missing parents stays in the root
            host.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            host.mkdir(mode=0o755)
            os.chmod(host, 0o755)
            if owner is not None:
                os.lchown(host, owner.uid, owner.gid)
        elif not host.is_dir():
            raise CopyError(f"cannot copy to {image_path}: {current} is not a directory")
    return resolve(root, image_path or "/")


def _copy_tree(root: Path, spec: CopySpec, rel: str, src: Path, dest: str) -> None:
    """``src``'s entries into the image directory ``dest``. Each target is resolved inside ``root``: a
    symlink the image already has there is followed as a container would follow it, never onto the host."""
    for entry in sorted(os.scandir(src), key=lambda e: e.name):
        child_rel = f"{rel}/{entry.name}" if rel else entry.name
        if not spec.visible(child_rel):
            continue
        child = posixpath.join(dest, entry.name)
        target = resolve(root, child, follow_last=entry.is_dir(follow_symlinks=False))
        # (a symlink may lead to a directory the image lacks: the resolved path has no links left, so
        # creating its parents stays inside the root)
        target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        if entry.is_dir(follow_symlinks=False):
            if os.path.lexists(target) and not target.is_dir():
                os.unlink(target)
            if not os.path.lexists(target):
                target.mkdir()
            _set_meta(Path(entry.path), target, spec, entry.stat(follow_symlinks=False))
            _copy_tree(root, spec, child_rel, Path(entry.path), child)
        else:
            _copy_entry(Path(entry.path), target, spec)


def _copy_entry(src: Path, target: Path, spec: CopySpec) -> None:
    st = src.lstat()
    if os.path.lexists(target) and (not target.is_dir() or target.is_symlink()):
        os.unlink(target)
    elif target.is_dir():
        raise CopyError(f"cannot replace directory {target.name} with a file")
    if stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(src), target)
    elif stat.S_ISREG(st.st_mode):
        shutil.copyfile(src, target, follow_symlinks=False)
    else:
        return  # sockets, devices and fifos of a context are not copied
    _set_meta(src, target, spec, st)


def _set_meta(src: Path, target: Path, spec: CopySpec, st: os.stat_result) -> None:
    owner = spec.owner
    uid, gid = (owner.uid, owner.gid) if owner is not None else ((0, 0) if spec.kept is not None
                                                               else (st.st_uid, st.st_gid))
    os.lchown(target, uid, gid)
    if not stat.S_ISLNK(st.st_mode):
        os.chmod(target, spec.mode if spec.mode is not None else stat.S_IMODE(st.st_mode))
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def _plain(mode: int) -> bool:
    return stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISLNK(mode)


def copy_plain(src: Path, dest: Path) -> None:
    """``src`` (a regular file, a symlink or a directory tree) copied to the new ``dest`` with owners, modes
    and times: the throw-away copy a ``rw`` bind mount gets.

    Only regular files, directories and symlinks are copied; device nodes, FIFOs and sockets in a tree are
    skipped, as COPY skips them (reading a device node of a stage would copy the host device its numbers
    name, a FIFO would block, and making either would put it on the host's filesystem). A lone one is
    refused (:class:`CopyError`). Files are opened without following links; the walk is iterative, so a
    deep tree cannot exhaust Python's stack.
    """
    st = src.lstat()
    if not _plain(st.st_mode):
        raise CopyError(f"{src.name}: not a regular file, a directory or a symlink")
    dirs: list[tuple[Path, os.stat_result]] = []
    todo = [(src, dest, st)]
    while todo:
        source, target, st = todo.pop()
        if stat.S_ISDIR(st.st_mode):
            target.mkdir(mode=0o700)
            dirs.append((target, st))
            with os.scandir(source) as entries:
                for entry in entries:
                    est = entry.stat(follow_symlinks=False)
                    if _plain(est.st_mode):
                        todo.append((Path(entry.path), target / entry.name, est))
        elif stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(source), target)
            _keep_meta(target, st)
        else:
            _copy_regular(source, target, st)
            _keep_meta(target, st)
    for target, st in reversed(dirs):  # (children first: writing them changed the directory's times)
        _keep_meta(target, st)


def _copy_regular(src: Path, dest: Path, st: os.stat_result) -> None:
    fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as fin:
        now = os.fstat(fd)
        if not stat.S_ISREG(now.st_mode) or (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
            raise CopyError(f"{src.name}: changed while being copied")
        out = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(out, "wb") as fout:
            shutil.copyfileobj(fin, fout, 1 << 20)


def _keep_meta(target: Path, st: os.stat_result) -> None:
    os.lchown(target, st.st_uid, st.st_gid)
    if not stat.S_ISLNK(st.st_mode):
        os.chmod(target, stat.S_IMODE(st.st_mode))  # (after chown, which clears setuid bits)
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def _is_archive(path: Path) -> bool:
    try:
        return path.is_file() and tarfile.is_tarfile(path)
    except OSError:
        return False


def _extract(archive: Path, dest: Path) -> None:
    """ADD of a local archive: unpacked by :mod:`k3c.untar` (nothing may leave ``dest``), with the members'
    owners, as docker's ADD keeps them."""
    untar.extract_all(archive, dest, untar.Options(owners=True))


def mountpoints_missing(root: Path, paths: Iterable[str]) -> list[str]:
    """The image paths (mount points and their parents) that do not exist in ``root``: runc would create
    them for a RUN, and they must not end up in the layer."""
    missing: set[str] = set()
    for path in paths:
        current = posixpath.normpath("/" + path.lstrip("/"))
        while current != "/" and not os.path.lexists(resolve(root, current, follow_last=False)):
            missing.add(current)
            current = posixpath.dirname(current)
    return sorted(missing)


def remove_created(root: Path, paths: Iterable[str]) -> None:
    """Remove what :func:`mountpoints_missing` listed (deepest first) if still an empty dir or file."""
    for p in sorted(paths, key=len, reverse=True):
        host = resolve(root, p, follow_last=False)
        try:
            if host.is_dir() and not host.is_symlink():
                host.rmdir()
            elif host.is_file() and host.stat().st_size == 0:
                host.unlink()
        except OSError:
            continue  # the RUN put something there: it belongs to the layer


def unmount_under(root: Path) -> list[str]:
    """Unmount (lazily, deepest first) every mount point under ``root``; returns them."""
    prefix = str(root).rstrip("/") + "/"
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    mine = sorted({p for p in points if p.startswith(prefix)}, key=len, reverse=True)
    for point in mine:
        unmount(point, lazy=True)
    return mine
