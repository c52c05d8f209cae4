"""Tar archives extracted into a directory that nothing in them can leave.

Every k3c reader that writes an untrusted tar to disk goes through here: an image's layers for
``k3c build --output`` (:mod:`k3c.archives.unpack`), ADD of a local tar and the uploaded build context
(:mod:`k3c.builder`). :mod:`tarfile` only parses; its extraction is not used, nor its filters: Python
3.11.7's ``tar`` filter does not check hard-link targets, and the fixes of CVE-2025-4517, -4330 and -4138
came later. The rules are docker's (moby's ``pkg/archive``), checked here:

- A member name is relative to the destination: a leading ``/`` is dropped, and a name whose ``..``
  leads out of it is refused (``invalid path``).
- A symlink is written as it is. A relative target that leads out of the destination from the link's
  directory is refused (``invalid symlink``); an absolute one is kept, as images have them (/etc/alternatives).
- A hard link's target is a member name, resolved as one; it must exist inside and not be a directory
  (``invalid hardlink``). The link gets no attributes of its own: the file it names already has them.
- Paths are walked one component at a time from a descriptor of the destination, never by name: a
  symlink met on the way is followed as in a chroot at the destination (an absolute target starts at the
  destination, ``..`` stops there) and the last component is opened with ``O_NOFOLLOW``, never followed:
  what is there is replaced, unless a directory meets a directory (``keep_dirs_and_files`` refuses a
  directory met by a non-directory and the reverse instead).
- Device nodes, FIFOs and unknown member types are skipped; owners are set only when asked, numerically.
- PAX and GNU long-name headers are capped at 1 MiB (Go's ``archive/tar`` limit), so a header cannot
  make the reader hold gigabytes.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Self

__all__ = ["MAX_HEADER", "Extractor", "Options", "UntarError", "extract_all", "open_archive"]

#: The largest PAX or GNU long-name header read (bytes), as Go's archive/tar.
MAX_HEADER = 1 << 20
#: Symlinks followed while walking one path, as Linux's own limit.
MAX_LINKS = 40
_LONG_HEADERS = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK)
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class UntarError(ValueError):
    """The archive is malformed or a member would leave the destination; the message says which."""


@dataclass(frozen=True, slots=True)
class Options:
    """What the members' metadata may set."""

    #: chown to the members' numeric uid/gid (ADD, as docker's); else files belong to whoever extracts
    owners: bool = False
    #: bits of the members' modes kept; tarfile's ``tar`` filter keeps 0o755 (no setuid, no group/other write)
    mode_mask: int = 0o755
    #: refuse (rather than replace) a directory met by a non-directory member or the reverse: docker's
    #: ``noOverwriteDirNonDir``, which `docker cp` asks for
    keep_dirs_and_files: bool = False


class _CappedInfo(tarfile.TarInfo):
    """A TarInfo that refuses an oversized PAX or GNU long-name header: tarfile parses each header block
    with :meth:`frombuf` before it reads the header's payload into memory."""

    @classmethod
    def frombuf(cls, buf: bytes | bytearray, encoding: str, errors: str) -> Self:
        info = super().frombuf(buf, encoding, errors)
        if info.type in _LONG_HEADERS and info.size > MAX_HEADER:
            raise UntarError(f"a tar header of {info.size} bytes (more than {MAX_HEADER})")
        return info


def open_archive(path: Path | None = None, fileobj: IO[bytes] | None = None) -> tarfile.TarFile:
    """A tar (plain or compressed) for reading, with header sizes capped."""
    try:
        return tarfile.open(path, mode="r:*", fileobj=fileobj, tarinfo=_CappedInfo)
    except tarfile.TarError as err:
        raise UntarError(f"not a tar archive ({err})") from None


def extract_all(archive: Path, dest: Path, options: Options = Options()) -> None:
    """Every member of the tar at ``archive`` into the existing directory ``dest``."""
    try:
        with open_archive(archive) as tar, Extractor(dest, options) as out:
            for member in tar:
                out.extract(tar, member)
    except tarfile.TarError as err:
        raise UntarError(str(err)) from None


def relative_parts(name: str) -> list[str]:
    """A member name's components below the destination (``invalid path`` if its ``..`` leads out)."""
    return _parts(name, "path")


def _parts(name: str, what: str, original: str | None = None) -> list[str]:
    """``name``'s components relative to the destination; ``..`` may not lead out of it."""
    parts: list[str] = []
    for p in name.split("/"):
        if p in ("", "."):
            continue
        if p == "..":
            if not parts:
                raise UntarError(f"invalid {what} {original or name!r}: outside the destination")
            parts.pop()
        else:
            parts.append(p)
    return parts


@dataclass
class _Dir:
    """A directory member whose attributes are set last, once nothing more is written into it."""

    parts: list[str]
    member: tarfile.TarInfo


@dataclass
class Extractor:
    """Extracts members one by one into ``dest`` (see the module doc for the rules); use as a context manager.

    Directory attributes are set on a clean exit, after every member, so a read-only directory can still
    receive its files and its mtime is the archive's.
    """

    dest: Path
    options: Options = Options()
    _root: int = -1
    _dirs: list[_Dir] = field(default_factory=list)

    def __enter__(self) -> Extractor:
        self._root = os.open(self.dest, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)  # (the caller's choice)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            if kind is None:
                self._finish_dirs()
        finally:
            os.close(self._root)
            self._root = -1

    # ---- members ----

    def extract(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        """One member; skipped if it is a device, a FIFO or of a type k3c does not write."""
        parts = _parts(member.name, "path")
        if not parts:
            return  # the destination itself ("./"): its attributes are the caller's
        if not (member.isreg() or member.isdir() or member.issym() or member.islnk()):
            return
        link: tuple[int, str] | None = self._link_source(member) if member.islnk() else None
        if member.issym():
            _check_symlink(parts, member)
        try:
            parent = self._walk(parts[:-1], create=True)
            try:
                self._place(tar, member, parent, parts, link)
            finally:
                os.close(parent)
        finally:
            if link is not None:
                os.close(link[0])

    def remove(self, name: str) -> None:
        """Remove what is at ``name`` (a whiteout), if anything; a symlink there is removed, not followed."""
        parts = _parts(name, "path")
        if not parts:
            return
        try:
            parent = self._walk(parts[:-1], create=False)
        except (FileNotFoundError, NotADirectoryError):
            return
        try:
            _remove_at(parent, parts[-1])
        except FileNotFoundError:
            pass
        finally:
            os.close(parent)

    def empty(self, name: str) -> None:
        """Remove everything in the directory ``name`` (an opaque whiteout); nothing if it is not a directory."""
        parts = _parts(name, "path")
        try:
            fd = self._open_dir(parts)
        except (FileNotFoundError, NotADirectoryError):
            return
        try:
            for child in os.listdir(fd):
                _remove_at(fd, child)
        finally:
            os.close(fd)

    # ---- paths ----

    def _walk(self, parts: list[str], create: bool) -> int:
        """A descriptor of the directory ``parts`` names, symlinks on the way followed as in a chroot at the
        destination; missing directories are made when ``create`` (else FileNotFoundError)."""
        stack = [os.dup(self._root)]
        todo = list(parts)
        links = 0
        try:
            while todo:
                part = todo.pop(0)
                if part == "..":
                    if len(stack) > 1:
                        os.close(stack.pop())
                    continue
                try:
                    stack.append(_open_child(stack[-1], part, create))
                    continue
                except OSError as err:
                    target = _symlink_at(stack[-1], part, err)
                links += 1
                if links > MAX_LINKS:
                    raise UntarError(f"too many levels of symbolic links in {'/'.join(parts)!r}")
                if target.startswith("/"):
                    while len(stack) > 1:
                        os.close(stack.pop())
                todo = [p for p in target.split("/") if p not in ("", ".")] + todo
            return stack.pop()
        finally:
            for fd in stack:
                os.close(fd)

    def _open_dir(self, parts: list[str]) -> int:
        """The directory ``parts`` names, its last component not followed."""
        if not parts:
            return os.dup(self._root)
        parent = self._walk(parts[:-1], create=False)
        try:
            return os.open(parts[-1], _DIR_FLAGS, dir_fd=parent)
        except OSError as err:
            if err.errno == errno.ELOOP:  # a symlink there: not followed
                raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), "/".join(parts)) from None
            raise
        finally:
            os.close(parent)

    def _link_source(self, member: tarfile.TarInfo) -> tuple[int, str]:
        """The directory descriptor and name of a hard link's target, checked to be a file inside."""
        def invalid(why: str) -> UntarError:
            return UntarError(f"invalid hardlink {member.name!r} -> {member.linkname!r}: {why}")

        try:
            parts = _parts(member.linkname, "hardlink", f"{member.name} -> {member.linkname}")
        except UntarError:
            raise invalid("outside the destination") from None
        if not parts:
            raise invalid("not a file")
        try:
            parent = self._walk(parts[:-1], create=False)
        except (FileNotFoundError, NotADirectoryError):
            raise invalid("no such file in the destination") from None
        try:
            st = os.stat(parts[-1], dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            os.close(parent)
            raise invalid("no such file in the destination") from None
        if stat.S_ISDIR(st.st_mode):
            os.close(parent)
            raise invalid("a directory")
        return parent, parts[-1]

    # ---- writing ----

    def _place(self, tar: tarfile.TarFile, member: tarfile.TarInfo, parent: int, parts: list[str],
               link: tuple[int, str] | None) -> None:
        base = parts[-1]
        try:
            present = os.stat(base, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            present = None
        if present is not None and not (member.isdir() and stat.S_ISDIR(present.st_mode)):
            if self.options.keep_dirs_and_files and member.isdir() != stat.S_ISDIR(present.st_mode):
                raise UntarError(f'cannot overwrite directory "{"/".join(parts)}" with non-directory'
                                 if not member.isdir() else
                                 f'cannot overwrite non-directory "{"/".join(parts)}" with directory')
            _remove_at(parent, base)  # what was there gives way, unless a directory meets one
        if member.isdir():
            if present is None or not stat.S_ISDIR(present.st_mode):
                os.mkdir(base, 0o700, dir_fd=parent)
            self._dirs.append(_Dir(parts, member))
        elif member.issym():
            os.symlink(member.linkname, base, dir_fd=parent)
            if self.options.owners:
                os.chown(base, member.uid, member.gid, dir_fd=parent, follow_symlinks=False)
            _utime(base, member, dir_fd=parent)
        elif link is not None:
            os.link(link[1], base, src_dir_fd=link[0], dst_dir_fd=parent, follow_symlinks=False)
        else:
            self._write_file(tar, member, parent, base)

    def _write_file(self, tar: tarfile.TarFile, member: tarfile.TarInfo, parent: int, base: str) -> None:
        fd = os.open(base, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                     dir_fd=parent)
        with os.fdopen(fd, "wb") as out:
            source = tar.extractfile(member)
            if source is not None:
                shutil.copyfileobj(source, out, 1 << 20)
            out.flush()
            self._attrs(out.fileno(), member)

    def _attrs(self, fd: int, member: tarfile.TarInfo) -> None:
        """Owner (if asked), then mode (a chown clears setuid bits), then times, all on the open descriptor."""
        if self.options.owners:
            os.fchown(fd, member.uid, member.gid)
        os.fchmod(fd, member.mode & self.options.mode_mask)
        _utime(fd, member)

    def _finish_dirs(self) -> None:
        for d in sorted(self._dirs, key=lambda d: len(d.parts), reverse=True):
            try:
                fd = self._open_dir(d.parts)
            except (FileNotFoundError, NotADirectoryError):
                continue  # replaced or removed by a later member
            try:
                self._attrs(fd, d.member)
            finally:
                os.close(fd)
        self._dirs.clear()


def _open_child(parent: int, name: str, create: bool) -> int:
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=parent)
    except FileNotFoundError:
        if not create:
            raise
    try:
        os.mkdir(name, 0o755, dir_fd=parent)
    except FileExistsError:
        pass
    return os.open(name, _DIR_FLAGS, dir_fd=parent)


def _symlink_at(parent: int, name: str, err: OSError) -> str:
    """The target of the symlink ``name`` that made opening it as a directory fail with ``err`` (Linux says
    ELOOP or ENOTDIR for a symlink under O_NOFOLLOW); ``err`` itself if ``name`` is no symlink."""
    if err.errno not in (errno.ELOOP, errno.ENOTDIR):
        raise err
    try:
        return os.readlink(name, dir_fd=parent)
    except OSError:
        raise err from None


def _check_symlink(parts: list[str], member: tarfile.TarInfo) -> None:
    """A relative target may not lead out of the destination from the link's directory (moby's rule)."""
    if member.linkname.startswith("/"):
        return
    depth = len(parts) - 1
    for p in member.linkname.split("/"):
        if p in ("", "."):
            continue
        depth += -1 if p == ".." else 1
        if depth < 0:
            raise UntarError(f"invalid symlink {member.name!r} -> {member.linkname!r}: outside the destination")


def _remove_at(parent: int, name: str) -> None:
    st = os.stat(name, dir_fd=parent, follow_symlinks=False)
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(name, dir_fd=parent)
    else:
        os.unlink(name, dir_fd=parent)


def _utime(target: int | str, member: tarfile.TarInfo, dir_fd: int | None = None) -> None:
    """The member's mtime (as atime too, as tar does); an out-of-range time is not worth failing over."""
    try:
        if isinstance(target, int):
            os.utime(target, (member.mtime, member.mtime))
        else:
            os.utime(target, (member.mtime, member.mtime), dir_fd=dir_fd, follow_symlinks=False)
    except (OverflowError, OSError, ValueError):
        pass
