"""Server side of the channel websocket (see :mod:`k3c.streams.protocol`) on top of aiohttp.

:class:`ChannelSocket` hides the per-version details: the one-byte channel prefix, text frames of lenient
clients, the Status channel's JSON-or-text form, and v5's close frames. Incoming frames are decoded into
:class:`Frame` values; a stream handler only sees channels and bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from aiohttp import WSMsgType, web

from . import protocol

log = logging.getLogger(__name__)

#: Larger payloads are split: a peer's frame size limit (websockets defaults to 1 MiB) must never bite.
MAX_FRAME = 256 * 1024


@dataclass(frozen=True)
class Frame:
    """One client frame: its channel and payload."""

    channel: int
    data: bytes

    def resize(self) -> tuple[int, int] | None:
        """(width, height) of a resize frame, None if malformed."""
        try:
            doc = json.loads(self.data)
            width, height = int(doc["Width"]), int(doc["Height"])
        except (ValueError, KeyError, TypeError):
            return None
        return (width, height) if width > 0 and height > 0 else None


def wants_websocket(request: web.Request) -> bool:
    """Whether the request asks to upgrade to a websocket."""
    return request.headers.get("Upgrade", "").lower() == "websocket"


class ChannelSocket:
    """An accepted channel websocket.

    One task reads the client's frames into a queue from the first :meth:`frames` / :meth:`start_reading`
    on, so nothing the client sends early is lost while the server is still getting ready (e.g. stdin
    piped into ``k3c run -i`` before the container runs), and :attr:`client_closed` tells at any time
    whether the client is gone.
    """

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self.protocol = ws.ws_protocol
        self._inbox: asyncio.Queue[Frame | None] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None

    @property
    def closed(self) -> bool:
        return self.ws.closed

    @property
    def client_closed(self) -> bool:
        """True once the client closed its side (only known after reading started)."""
        return self.ws.closed or (self._reader is not None and self._reader.done())

    async def send(self, channel: int, data: bytes) -> None:
        """Send ``data`` on ``channel`` (in pieces if large); raises ConnectionError once the client left."""
        for start in range(0, max(len(data), 1), MAX_FRAME):
            await self.ws.send_bytes(bytes((channel,)) + data[start : start + MAX_FRAME])

    async def send_status(self, status: dict[str, Any]) -> None:
        """Report the outcome on channel 3 in the negotiated protocol's form."""
        payload = protocol.encode_status(status, self.protocol)
        if payload is not None and not self.closed:
            await self.send(protocol.ERROR, payload)

    def start_reading(self) -> None:
        """Start queueing client frames (idempotent)."""
        if self._reader is None:
            self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for msg in self.ws:
                if msg.type == WSMsgType.BINARY:
                    data = msg.data
                elif msg.type == WSMsgType.TEXT:
                    data = msg.data.encode()
                else:
                    break
                if data:
                    self._inbox.put_nowait(Frame(data[0], data[1:]))
        finally:
            self._inbox.put_nowait(None)

    async def frames(self) -> AsyncIterator[Frame]:
        """Client frames, in order, until the client closes."""
        self.start_reading()
        while (frame := await self._inbox.get()) is not None:
            yield frame
        self._inbox.put_nowait(None)  # later readers end at once too

    async def close(self) -> None:
        if self._reader is not None and not self._reader.done():
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if not self.closed:
            await self.ws.close()


async def accept(request: web.Request) -> ChannelSocket:
    """Upgrade the request; the client's best protocol among :data:`protocol.PROTOCOLS` is chosen."""
    ws = web.WebSocketResponse(protocols=protocol.PROTOCOLS, heartbeat=30.0, max_msg_size=4 * 1024 * 1024)
    await ws.prepare(request)
    return ChannelSocket(ws)
