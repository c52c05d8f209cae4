"""Every tar reader that writes files keeps them inside its destination: crafted archives, made here with
tarfile, against ``k3c build --output`` (archives/unpack.py), ADD of a local tar (builder/rootfs.py) and
the uploaded build context (builder/context.py).

Each hostile archive tries to reach ``outside``, a directory beside the destination holding ``victim``
(a 0600 file, like /etc/shadow): a hard link to it, a symlink written through, ``../`` and absolute names,
and device nodes. Nothing outside may change, whatever the reader does.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import stat
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from k3c.archives.unpack import unpack_archive
from k3c.builder import rootfs
from k3c.builder.context import ContextError, prepare_context, upload_path

SECRET = b"root:$6$secret-hash:19000:0:99999:7:::\n"


@dataclass
class Entry:
    """One member of a crafted archive."""

    name: str
    type: bytes = tarfile.REGTYPE
    data: bytes = b""
    linkname: str = ""
    mode: int = 0o644
    uid: int = 0
    gid: int = 0


def make_tar(entries: list[Entry]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for e in entries:
            info = tarfile.TarInfo(e.name)
            info.type, info.linkname, info.mode, info.uid, info.gid = e.type, e.linkname, e.mode, e.uid, e.gid
            if e.type in (tarfile.CHRTYPE, tarfile.BLKTYPE):
                info.devmajor, info.devminor = 1, 3  # /dev/null's numbers
            info.size = len(e.data)
            tar.addfile(info, io.BytesIO(e.data) if e.data else None)
    return buf.getvalue()


# ------------------------------------------------------------------------------------------ the readers


@dataclass
class Reader:
    """Extract ``data`` (a tar) the way one k3c reader does, in a new directory under the base given; returns
    the directory the files went to."""

    name: str
    extract: Callable[[bytes, Path], Path]
    error: type[Exception]
    chowns: bool  #: whether the reader keeps the members' owners (ADD does, as docker's ADD)


def _unpack(data: bytes, base: Path) -> Path:
    """``k3c build -o``: an image archive whose one layer is ``data``."""
    base = Path(tempfile.mkdtemp(dir=base))
    archive = base / "image.tar"
    with tarfile.open(archive, "w") as outer:
        for name, blob in (("manifest.json", json.dumps([{"Layers": ["layer.tar"]}]).encode()),
                           ("layer.tar", data)):
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            outer.addfile(info, io.BytesIO(blob))
    dest = base / "dest"
    dest.mkdir()
    unpack_archive(archive, dest)
    return dest


def _add(data: bytes, base: Path) -> Path:
    """``ADD evil.tar /dst/`` in the native builder: extracted into the image root."""
    base = Path(tempfile.mkdtemp(dir=base))
    ctx, root = base / "ctx", base / "root"
    ctx.mkdir()
    root.mkdir()
    (ctx / "evil.tar").write_bytes(data)
    rootfs.copy_into(root, rootfs.CopySpec(ctx, ["evil.tar"], "/dst/", extract=True))
    return root / "dst"


def _upload(data: bytes, base: Path) -> Path:
    """The ``context`` subresource's upload, extracted by the build reconciler."""
    base = Path(tempfile.mkdtemp(dir=base))
    uploads, work = base / "uploads", base / "work"
    path = upload_path(uploads, "default", "b", "sha256:" + hashlib.sha256(data).hexdigest())
    path.parent.mkdir(parents=True)
    path.write_bytes(data)
    spec = {"context": {"upload": {"digest": "sha256:" + hashlib.sha256(data).hexdigest()}},
            "dockerfileInline": "FROM scratch\n"}
    prepared = asyncio.run(prepare_context(spec, work, uploads, "default", "b", lambda line: None))
    return prepared.dir  # (left for the test's tmp_path to remove)


READERS = [Reader("build-output", _unpack, ValueError, chowns=False),
           Reader("add", _add, ValueError, chowns=True),
           Reader("context-upload", _upload, ContextError, chowns=False)]


@pytest.fixture(params=READERS, ids=[r.name for r in READERS])
def reader(request: pytest.FixtureRequest) -> Reader:
    return request.param  # type: ignore[no-any-return]


@dataclass
class Host:
    """What lies outside the destination: ``outside/victim``, and a snapshot to compare with afterwards."""

    base: Path
    outside: Path
    victim: Path

    def snapshot(self) -> list[tuple[str, int, int, int, bytes]]:
        out = []
        for p in sorted(self.outside.rglob("*")):
            st = p.lstat()
            out.append((str(p), st.st_mode, st.st_nlink, st.st_uid, p.read_bytes() if p.is_file() else b""))
        return out


@pytest.fixture
def host(tmp_path: Path) -> Host:
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "victim"
    victim.write_bytes(SECRET)
    victim.chmod(0o600)
    base = tmp_path / "work"
    base.mkdir()
    return Host(base, outside, victim)


def _escape(host: Host) -> str:
    """A relative path from anywhere under tmp_path up to the root and down to ``outside``."""
    return "../" * 30 + str(host.outside).lstrip("/")


def _no_copy_of_the_secret(where: Path) -> None:
    for p in where.rglob("*"):
        if p.is_file() and not p.is_symlink():
            assert p.read_bytes() != SECRET, f"{p} holds the victim's content"


def _refused(reader: Reader, host: Host, entries: list[Entry], match: str) -> None:
    before = host.snapshot()
    with pytest.raises(reader.error, match=match):
        reader.extract(make_tar(entries), host.base)
    assert host.snapshot() == before, "a file outside the destination was touched"
    _no_copy_of_the_secret(host.base)


# ------------------------------------------------------------------------------------------ hard links


def test_hardlink_out_of_the_destination_is_refused(reader: Reader, host: Host) -> None:
    _refused(reader, host, [Entry("passwd", tarfile.LNKTYPE, linkname=_escape(host) + "/victim", mode=0o777)],
             "invalid hardlink")


def test_hardlink_to_an_absolute_path_stays_inside(reader: Reader, host: Host) -> None:
    """An absolute link name means the member of that name in the archive, never the host's file."""
    _refused(reader, host, [Entry("passwd", tarfile.LNKTYPE, linkname=str(host.victim), mode=0o777, uid=4242)],
             "invalid hardlink")


def test_hardlink_through_an_extracted_symlink_is_refused(reader: Reader, host: Host) -> None:
    _refused(reader, host, [Entry("etc", tarfile.SYMTYPE, linkname=str(host.outside)),
                            Entry("passwd", tarfile.LNKTYPE, linkname="etc/victim", mode=0o777)],
             "invalid hardlink")


# ------------------------------------------------------------------------------------------ symlinks, names


def test_relative_symlink_out_of_the_destination_is_refused(reader: Reader, host: Host) -> None:
    _refused(reader, host, [Entry("esc", tarfile.SYMTYPE, linkname=_escape(host)),
                            Entry("esc/pwned", data=b"written through a symlink")],
             "invalid symlink")


def test_write_through_an_absolute_symlink_stays_inside(reader: Reader, host: Host) -> None:
    """An absolute symlink is kept as written (images have them), but it means the destination's path when
    a later member is written through it, as in docker's chrooted extraction."""
    before = host.snapshot()
    dest = reader.extract(make_tar([Entry("abs", tarfile.SYMTYPE, linkname=str(host.outside)),
                                    Entry("abs/pwned", data=b"through"),
                                    Entry("abs/victim", data=b"replaced")]), host.base)
    assert host.snapshot() == before
    assert os.readlink(dest / "abs") == str(host.outside)
    inside = dest / str(host.outside).lstrip("/")
    assert (inside / "pwned").read_bytes() == b"through" and (inside / "victim").read_bytes() == b"replaced"


def test_dotdot_names_are_refused(reader: Reader, host: Host) -> None:
    _refused(reader, host, [Entry("ok", data=b"fine"), Entry("a/../../pwned", data=b"escaped")], "invalid path")
    _refused(reader, host, [Entry(_escape(host) + "/victim", data=b"overwritten")], "invalid path")


def test_absolute_names_stay_inside(reader: Reader, host: Host) -> None:
    before = host.snapshot()
    dest = reader.extract(make_tar([Entry(str(host.victim), data=b"overwritten")]), host.base)
    assert host.snapshot() == before
    assert (dest / str(host.victim).lstrip("/")).read_bytes() == b"overwritten"


# ------------------------------------------------------------------------------------------ devices, owners


def test_device_nodes_and_fifos_are_skipped(reader: Reader, host: Host) -> None:
    dest = reader.extract(make_tar([Entry("null", tarfile.CHRTYPE), Entry("disk", tarfile.BLKTYPE),
                                    Entry("pipe", tarfile.FIFOTYPE), Entry("file", data=b"kept")]), host.base)
    assert sorted(p.name for p in dest.iterdir()) == ["file"]
    assert (dest / "file").read_bytes() == b"kept"


def test_owners_are_kept_only_where_asked(reader: Reader, host: Host) -> None:
    dest = reader.extract(make_tar([Entry("d", tarfile.DIRTYPE, mode=0o750, uid=4242, gid=4343),
                                    Entry("d/f", data=b"x", mode=0o640, uid=4242, gid=4343),
                                    Entry("d/l", tarfile.SYMTYPE, linkname="f", uid=4242, gid=4343)]), host.base)
    want = (4242, 4343) if reader.chowns else (os.getuid(), os.getgid())
    for name in ("d", "d/f", "d/l"):
        st = (dest / name).lstat()
        assert (st.st_uid, st.st_gid) == want, name
    assert stat.S_IMODE((dest / "d" / "f").stat().st_mode) == 0o640
    assert stat.S_IMODE((dest / "d").stat().st_mode) == 0o750


# ------------------------------------------------------------------------------------------ k3c.untar itself


def test_what_real_layers_hold_is_extracted_faithfully(tmp_path: Path) -> None:
    from k3c.untar import extract_all

    archive = tmp_path / "layer.tar"
    archive.write_bytes(make_tar([
        Entry("usr/bin", tarfile.DIRTYPE, mode=0o555),  # read-only, yet its files arrive
        Entry("usr/bin/tool", data=b"#!/bin/sh\n", mode=0o755),
        Entry("usr/bin/alias", tarfile.LNKTYPE, linkname="/usr/bin/tool"),  # absolute: a member name
        Entry("bin", tarfile.SYMTYPE, linkname="usr/bin"),
        Entry("bin/via-link", data=b"through a relative symlink"),
        Entry("etc/alternatives/awk", tarfile.SYMTYPE, linkname="/usr/bin/tool"),
    ]))
    dest = tmp_path / "dest"
    dest.mkdir()
    extract_all(archive, dest)
    assert (dest / "usr/bin/tool").stat().st_ino == (dest / "usr/bin/alias").stat().st_ino
    assert (dest / "usr/bin/via-link").read_bytes() == b"through a relative symlink"
    assert os.readlink(dest / "etc/alternatives/awk") == "/usr/bin/tool"
    assert stat.S_IMODE((dest / "usr/bin").stat().st_mode) == 0o555


def test_a_member_replaces_what_is_there_without_writing_through_it(tmp_path: Path) -> None:
    """A file written over a hard link gets a new inode (the other name keeps its content); a file over a
    symlink replaces the link; a directory over a file replaces it; a directory meeting one merges."""
    from k3c.untar import Extractor, open_archive

    dest = tmp_path / "dest"
    dest.mkdir()
    outside = tmp_path / "outside"
    outside.write_bytes(b"untouched")
    first = tmp_path / "1.tar"
    first.write_bytes(make_tar([Entry("a", data=b"a"), Entry("b", tarfile.LNKTYPE, linkname="a"),
                                Entry("s", tarfile.SYMTYPE, linkname=str(outside)),
                                Entry("f", data=b"file"), Entry("d/old", data=b"old")]))
    second = tmp_path / "2.tar"
    second.write_bytes(make_tar([Entry("b", data=b"new b"), Entry("s", data=b"not a link"),
                                 Entry("f", tarfile.DIRTYPE), Entry("d", tarfile.DIRTYPE),
                                 Entry("d/new", data=b"new")]))
    with Extractor(dest) as out:
        for path in (first, second):
            with open_archive(path) as tar:
                for member in tar:
                    out.extract(tar, member)
    assert (dest / "a").read_bytes() == b"a" and (dest / "b").read_bytes() == b"new b"
    assert not (dest / "s").is_symlink() and outside.read_bytes() == b"untouched"
    assert (dest / "f").is_dir() and sorted(os.listdir(dest / "d")) == ["new", "old"]


@pytest.mark.parametrize(("there", "member", "words"), [
    ("dir", Entry("x", data=b"file"), 'cannot overwrite directory "x" with non-directory'),
    ("file", Entry("x", tarfile.DIRTYPE), 'cannot overwrite non-directory "x" with directory'),
])
def test_keep_dirs_and_files_refuses_a_directory_for_a_file_and_the_reverse(tmp_path: Path, there: str,
                                                                           member: Entry, words: str) -> None:
    """docker's noOverwriteDirNonDir (`docker cp`): what is there stays, the extraction fails."""
    from k3c.untar import Extractor, Options, UntarError, open_archive

    dest = tmp_path / "dest"
    dest.mkdir()
    if there == "dir":
        (dest / "x").mkdir()
        (dest / "x" / "kept").write_text("kept")
    else:
        (dest / "x").write_text("kept")
    archive = tmp_path / "a.tar"
    archive.write_bytes(make_tar([member]))
    with pytest.raises(UntarError, match=words), open_archive(archive) as tar, \
            Extractor(dest, Options(keep_dirs_and_files=True)) as out:
        for m in tar:
            out.extract(tar, m)
    kept = dest / "x" / "kept" if there == "dir" else dest / "x"
    assert kept.read_text() == "kept"


def test_symlink_loops_and_oversized_headers_are_refused(tmp_path: Path) -> None:
    from k3c.untar import MAX_HEADER, UntarError, extract_all

    dest = tmp_path / "dest"
    dest.mkdir()
    loop = tmp_path / "loop.tar"
    loop.write_bytes(make_tar([Entry("x", tarfile.SYMTYPE, linkname="y"), Entry("y", tarfile.SYMTYPE, linkname="x"),
                               Entry("x/file", data=b"")]))
    with pytest.raises(UntarError, match="too many levels of symbolic links"):
        extract_all(loop, dest)
    huge = tmp_path / "huge.tar"
    header = tarfile.TarInfo("././@PaxHeader")
    header.type, header.size = tarfile.XHDTYPE, MAX_HEADER + 1
    huge.write_bytes(header.tobuf(format=tarfile.USTAR_FORMAT) + b"\0" * (MAX_HEADER + 1024))
    with pytest.raises(UntarError, match="tar header of 1048577 bytes"):
        extract_all(huge, dest)


def test_whiteouts_remove_without_following_links(tmp_path: Path) -> None:
    """``.wh.`` names and opaque directories of later layers, applied by ``k3c build -o``."""
    from k3c.archives.unpack import apply_layer
    from k3c.untar import Extractor, UntarError, open_archive

    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_bytes(b"keep")
    dest = tmp_path / "real-dest"
    dest.mkdir()
    (tmp_path / "dest").symlink_to(dest)  # the destination itself may be a symlink: the caller chose it
    layers = [make_tar([Entry("etc/a", data=b"a"), Entry("etc/b", data=b"b"), Entry("opt/x", data=b"x"),
                        Entry("link", tarfile.SYMTYPE, linkname=str(outside))]),
              make_tar([Entry("etc/.wh.a"), Entry("opt/.wh..wh..opq"), Entry("opt/y", data=b"y"),
                        Entry("link/.wh.keep"), Entry("etc/.wh.never-there"), Entry("gone/.wh.x")])]
    with Extractor(tmp_path / "dest") as out:
        for data in layers:
            with open_archive(fileobj=io.BytesIO(data)) as tar:
                apply_layer(tar, out)
    assert sorted(os.listdir(dest / "etc")) == ["b"] and sorted(os.listdir(dest / "opt")) == ["y"]
    assert (outside / "keep").read_bytes() == b"keep", "a whiteout behind a symlink stays inside"
    with pytest.raises(UntarError, match="invalid path"), Extractor(dest) as out:
        with open_archive(fileobj=io.BytesIO(make_tar([Entry("../.wh.outside")]))) as tar:
            apply_layer(tar, out)
