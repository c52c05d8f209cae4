"""A hijacked connection, as dockerd answers attach and exec start: the HTTP head, then raw bytes both ways.

Clients ask with ``Upgrade: tcp`` and get ``101 UPGRADED``; from then on what they write is the process's
stdin, and a half-close (``CloseWrite``) is its end of input, while the output keeps flowing until the
server hangs up. aiohttp has no such mode (its parser knows only websocket upgrades, and it closes a
connection whose peer half-closed), so once the request is read the connection's protocol is wrapped in
one that hands the bytes to a reader here and keeps the connection open at the peer's EOF.
"""

from __future__ import annotations

import asyncio

from aiohttp import web
from aiohttp.http_writer import StreamWriter

RAW_STREAM = "application/vnd.docker.raw-stream"
#: how much unread client input is buffered before the socket stops being read
READ_LIMIT = 1 << 20


async def send_head(request: web.Request, response: web.StreamResponse) -> None:
    """Prepare and put the status line and headers on the wire now: clients act on them (a hijacked attach,
    a wait) before any body comes, while aiohttp would hold them back for the first body bytes."""
    await response.prepare(request)
    writer = request.writer
    if isinstance(writer, StreamWriter):
        writer.send_headers()


class Hijacked:
    """The taken-over connection: :meth:`read` the client's bytes, :meth:`write` the output, :meth:`close`."""

    def __init__(self, request: web.Request, response: web.StreamResponse, reader: asyncio.StreamReader) -> None:
        self.request = request
        self.response = response
        self._reader = reader

    async def read(self) -> bytes:
        """The client's next bytes; ``b""`` once it half-closed or went away."""
        try:
            return await self._reader.read(65536)
        except ConnectionError:
            return b""

    async def write(self, data: bytes) -> None:
        """Raises ConnectionError once the client is gone."""
        await self.response.write(data)

    @property
    def gone(self) -> bool:
        transport = self.request.transport
        return transport is None or transport.is_closing()

    def close(self) -> web.StreamResponse:
        """Hang up, the way dockerd ends a hijacked stream; the handler returns what this returns."""
        if self.request.transport is not None:
            self.request.transport.close()
        return self.response


async def hijack(request: web.Request) -> Hijacked:
    """Answer ``101 UPGRADED`` (or ``200`` with the raw stream to a client that did not ask to upgrade) and
    take the connection over. The request body must have been read already."""
    upgrade = request.headers.get("Upgrade", "").lower() == "tcp"
    headers = {"Content-Type": RAW_STREAM}
    if upgrade:
        headers.update({"Connection": "Upgrade", "Upgrade": "tcp"})
    response = web.StreamResponse(status=101 if upgrade else 200, reason="UPGRADED" if upgrade else None,
                                  headers=headers)
    response.force_close()
    reader = asyncio.StreamReader(limit=READ_LIMIT)
    transport, protocol = request.transport, request.protocol
    if transport is not None and protocol is not None:
        reader.set_transport(transport)
        transport.set_protocol(_Taken(protocol, reader))
    else:
        reader.feed_eof()
    await send_head(request, response)
    return Hijacked(request, response, reader)


class _Taken(asyncio.Protocol):
    """aiohttp's protocol for the connection, except that incoming bytes go to ``reader`` and the peer's
    EOF only ends the input: the connection stays open for the output."""

    def __init__(self, inner: asyncio.BaseProtocol, reader: asyncio.StreamReader) -> None:
        self.inner = inner
        self.reader = reader
        self._eof = False

    def data_received(self, data: bytes) -> None:
        if not self._eof:
            self.reader.feed_data(data)

    def eof_received(self) -> bool:
        self._end()
        return True

    def _end(self) -> None:
        if not self._eof:
            self._eof = True
            self.reader.feed_eof()

    def connection_lost(self, exc: Exception | None) -> None:
        self._end()
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()
