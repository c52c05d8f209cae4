"""/etc/passwd and /etc/group read from an image's layers: untrusted input, streamed and bounded."""

from __future__ import annotations

import gzip
import io
import tarfile

import pytest

from k3c.reconcilers.imagepull import MAX_ACCOUNT_FILE, ImageError, _file_in_layer


def _layer(members: list[tuple[str, bytes | None, bytes]], gz: bool = False) -> io.BytesIO:
    """A layer tar of (name, content, type) members; content None for a symlink to /dev/zero."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, content, kind in members:
            info = tarfile.TarInfo(name)
            info.type = kind
            if kind == tarfile.SYMTYPE:
                info.linkname = "/dev/zero"
                tar.addfile(info)
            else:
                info.size = len(content or b"")
                tar.addfile(info, io.BytesIO(content or b""))
    data = gzip.compress(raw.getvalue()) if gz else raw.getvalue()
    return io.BytesIO(data)


def test_a_regular_file_is_read_from_a_gzipped_layer() -> None:
    layer = _layer([("etc/", b"", tarfile.DIRTYPE), ("./etc/passwd", b"root:x:0:0::/root:/bin/sh\n", tarfile.REGTYPE)],
                   gz=True)
    assert _file_in_layer(layer, "etc/passwd") == "root:x:0:0::/root:/bin/sh\n"


def test_whiteout_absence_and_links() -> None:
    assert _file_in_layer(_layer([("etc/.wh.passwd", b"", tarfile.REGTYPE)]), "etc/passwd") == ""
    assert _file_in_layer(_layer([("etc/group", b"x", tarfile.REGTYPE)]), "etc/passwd") is None
    # a symlink is never followed (it could name a device or a file of the node): the next layer is asked
    assert _file_in_layer(_layer([("etc/passwd", None, tarfile.SYMTYPE)]), "etc/passwd") is None


def test_an_oversized_file_is_refused_without_being_read() -> None:
    big = b"a" * (MAX_ACCOUNT_FILE + 1)
    with pytest.raises(ImageError, match="larger than"):
        _file_in_layer(_layer([("etc/passwd", big, tarfile.REGTYPE)], gz=True), "etc/passwd")
