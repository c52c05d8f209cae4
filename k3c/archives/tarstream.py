"""Tar archives as async byte streams, read and written member by member without buffering whole files.

Why not :mod:`tarfile` directly: image archives carry layers of hundreds of MB that arrive over HTTP (an
``aiohttp`` request body) and must flow on into containerd's content store; :mod:`tarfile` wants a
blocking file object. The format itself is simple: 512-byte headers (parsed and built by
:class:`tarfile.TarInfo`, including PAX and GNU long names), data padded to 512 bytes, two zero blocks.
A gzip-compressed archive (``docker save | gzip``) is recognised by its magic bytes and inflated on the fly.

Archives come from anyone, so what this reader holds is bounded: a PAX or GNU long-name header is read
whole, and more than 1 MiB of one is refused (:data:`k3c.untar.MAX_HEADER`, Go's archive/tar limit); gzip
is inflated a bounded step at a time, and may not grow past :data:`INFLATE_RATIO` times what came in
(plus :data:`INFLATE_FLOOR`): deflate itself tops out near 1032:1, so this stops a decompression bomb
long before the disk fills, while real image archives inflate 2 to 4 times.
"""

from __future__ import annotations

import tarfile
import zlib
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass

from k3c.untar import MAX_HEADER

__all__ = ["BLOCK", "INFLATE_FLOOR", "INFLATE_RATIO", "Member", "TarReader", "end_of_archive", "file_header",
           "padding"]

BLOCK = 512
_GZIP_MAGIC = b"\x1f\x8b"
#: gzip may inflate to this many times the compressed bytes read so far, plus :data:`INFLATE_FLOOR`.
INFLATE_RATIO = 100
INFLATE_FLOOR = 256 << 20
#: Most bytes one inflate step produces, so one small chunk of a bomb never becomes gigabytes at once.
_INFLATE_STEP = 1 << 20


def file_header(name: str, size: int, mode: int = 0o644, mtime: int = 0) -> bytes:
    """The header block(s) of a regular file (a PAX header first when the name is long)."""
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = mode
    info.mtime = mtime
    info.type = tarfile.REGTYPE
    info.uname = info.gname = ""
    return info.tobuf(format=tarfile.PAX_FORMAT)


def dir_header(name: str, mode: int = 0o755) -> bytes:
    info = tarfile.TarInfo(name.rstrip("/") + "/")
    info.type = tarfile.DIRTYPE
    info.mode = mode
    info.uname = info.gname = ""
    return info.tobuf(format=tarfile.PAX_FORMAT)


def padding(size: int) -> bytes:
    return b"\0" * (-size % BLOCK)


def end_of_archive() -> bytes:
    return b"\0" * (2 * BLOCK)


@dataclass(slots=True)
class Member:
    """One archive entry; read its data with :meth:`TarReader.data` before asking for the next entry."""

    name: str
    size: int
    type: bytes
    linkname: str = ""

    @property
    def is_file(self) -> bool:
        return self.type in (tarfile.REGTYPE, tarfile.AREGTYPE)

    @property
    def is_link(self) -> bool:
        return self.type in (tarfile.SYMTYPE, tarfile.LNKTYPE)


_LONG_HEADERS = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK)


class _Bytes:
    """Exact-size reads over an async iterator of arbitrary chunks."""

    def __init__(self, source: AsyncIterable[bytes]) -> None:
        self._it = source.__aiter__()
        self._buf = bytearray()
        self._eof = False

    async def _fill(self, n: int) -> None:
        while len(self._buf) < n and not self._eof:
            try:
                self._buf += await self._it.__anext__()
            except StopAsyncIteration:
                self._eof = True

    async def peek(self, n: int) -> bytes:
        await self._fill(n)
        return bytes(self._buf[:n])

    async def read(self, n: int) -> bytes:
        await self._fill(n)
        if len(self._buf) < n:
            raise ValueError("archive ended in the middle of an entry (truncated?)")
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    async def chunks(self, n: int, max_chunk: int = 1 << 20) -> AsyncIterator[bytes]:
        """Exactly ``n`` bytes, as they arrive (no more than ``max_chunk`` per piece)."""
        left = n
        while left:
            if not self._buf:
                await self._fill(1)
                if not self._buf:
                    raise ValueError("archive ended in the middle of an entry (truncated?)")
            take = min(left, len(self._buf), max_chunk)
            out = bytes(self._buf[:take])
            del self._buf[:take]
            left -= take
            yield out


async def _gunzip(source: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    """Inflate in steps of at most :data:`_INFLATE_STEP`, within the ratio bound (see the module doc)."""
    z = zlib.decompressobj(wbits=31)
    taken = given = 0
    try:
        async for chunk in source:
            taken += len(chunk)
            while chunk:
                out = z.decompress(chunk, _INFLATE_STEP)
                chunk = z.unconsumed_tail
                given += len(out)
                if given > INFLATE_FLOOR + INFLATE_RATIO * taken:
                    raise ValueError(f"gzip data inflates to more than {INFLATE_RATIO} times its size (a "
                                     "decompression bomb?): load the uncompressed archive instead")
                if out:
                    yield out
        tail = z.flush()
    except zlib.error as err:
        raise ValueError(f"not valid gzip data ({err})") from None
    if tail:
        yield tail


class TarReader:
    """Iterate the members of a tar stream (plain or gzip); each member's data via :meth:`data`."""

    def __init__(self, source: AsyncIterable[bytes]) -> None:
        self._raw = _Bytes(source)
        self._src: _Bytes | None = None
        self._pending = 0  # unread data + padding of the current member

    async def _stream(self) -> _Bytes:
        if self._src is None:
            head = await self._raw.peek(2)
            self._src = _Bytes(_gunzip(_passthrough(self._raw))) if head == _GZIP_MAGIC else self._raw
        return self._src

    async def members(self) -> AsyncIterator[Member]:
        src = await self._stream()
        pax: dict[str, str] = {}
        long_name: str | None = None
        long_link: str | None = None
        while True:
            await self._skip_pending(src)
            block = await src.peek(BLOCK)
            if len(block) < BLOCK or block == b"\0" * BLOCK:
                return
            await src.read(BLOCK)
            try:
                info = tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
            except tarfile.HeaderError as err:
                raise ValueError(f"not a tar archive ({err})") from None
            if info.size < 0:
                raise ValueError(f"{info.name!r} has a negative size")
            if info.type in _LONG_HEADERS and info.size > MAX_HEADER:
                raise ValueError(f"a tar header of {info.size} bytes (more than {MAX_HEADER})")
            if info.type in (tarfile.XHDTYPE, tarfile.XGLTYPE):
                records = await src.read(info.size + len(padding(info.size)))
                if info.type == tarfile.XHDTYPE:
                    pax = _parse_pax(records[: info.size])
                continue
            if info.type in (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK):
                data = await src.read(info.size + len(padding(info.size)))
                text = data[: info.size].rstrip(b"\0").decode("utf-8", "surrogateescape")
                if info.type == tarfile.GNUTYPE_LONGNAME:
                    long_name = text
                else:
                    long_link = text
                continue
            name = pax.get("path") or long_name or info.name
            size = int(pax.get("size", info.size)) if info.type in (tarfile.REGTYPE, tarfile.AREGTYPE) else 0
            if size < 0:
                raise ValueError(f"{name!r} has a negative size")
            link = pax.get("linkpath") or long_link or info.linkname
            pax, long_name, long_link = {}, None, None
            self._pending = size + len(padding(size))
            yield Member(_clean(name), size, info.type, link)

    async def data(self, member: Member) -> AsyncIterator[bytes]:
        """The current member's bytes, streamed."""
        src = await self._stream()
        async for chunk in src.chunks(member.size):
            yield chunk
        self._pending = len(padding(member.size))

    async def read_all(self, member: Member) -> bytes:
        return b"".join([c async for c in self.data(member)])

    async def _skip_pending(self, src: _Bytes) -> None:
        async for _ in src.chunks(self._pending):
            pass
        self._pending = 0


async def _passthrough(b: _Bytes) -> AsyncIterator[bytes]:
    while True:
        chunk = await b.peek(1 << 20)
        if not chunk:
            return
        yield await b.read(len(chunk))


def _parse_pax(raw: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    pos = 0
    while pos < len(raw):
        space = raw.find(b" ", pos)
        if space < 0:
            break
        length = int(raw[pos:space])
        if length <= 0:
            break
        record = raw[space + 1: pos + length - 1]
        key, _, value = record.partition(b"=")
        out[key.decode()] = value.decode("utf-8", "surrogateescape")
        pos += length
    return out


def _clean(name: str) -> str:
    while name.startswith("./"):
        name = name[2:]
    return name.lstrip("/")
