"""The API server's stream subresources (logs, attach, exec, a build's context and log) reached from the event loop.

The same channel websocket the CLI speaks (:mod:`k3c.streams.protocol`), opened with aiohttp: over the local
k3c's unix socket when the kubeconfig is its own, else over HTTPS with the kubeconfig's credentials.
:func:`frames` only reads (logs, an attach without stdin); :func:`open_stream` also writes: stdin, v5's
end-of-stdin and terminal sizes (exec, an attach with stdin).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl as ssl_module
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import aiohttp

from k3c import apierrors, kubeclient
from k3c.api import LOCAL_CONTAINERS
from k3c.streams.protocol import CLOSE, ERROR, PROTOCOLS, RESIZE, STDIN, V5, resize_payload


class Stream:
    """One open subresource stream: frames to read, stdin and sizes to send."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws

    async def frames(self) -> AsyncGenerator[tuple[int, bytes], None]:
        """(channel, payload) of each frame until the server closes, the error channel's Status last."""
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.BINARY or not msg.data:
                continue
            channel, payload = msg.data[0], bytes(msg.data[1:])
            yield channel, payload
            if channel == ERROR:
                return

    async def _send(self, channel: int, payload: bytes) -> None:
        if not self.ws.closed:
            with contextlib.suppress(ConnectionError):
                await self.ws.send_bytes(bytes((channel,)) + payload)

    async def stdin(self, data: bytes) -> None:
        await self._send(STDIN, data)

    async def close_stdin(self) -> None:
        """End of input (v5's close frame); an older server can only learn it from the stream's end."""
        if self.ws.protocol == V5:
            await self._send(CLOSE, bytes((STDIN,)))

    async def resize(self, width: int, height: int) -> None:
        await self._send(RESIZE, resize_payload(width, height))

    @contextlib.asynccontextmanager
    async def feeding(self, read: Callable[[], Awaitable[bytes]] | None) -> AsyncIterator[None]:
        """While the block runs, what ``read`` returns goes to stdin, and its ``b""`` (the client's
        end of input) closes stdin; None feeds nothing."""

        async def feed(read: Callable[[], Awaitable[bytes]]) -> None:
            while data := await read():
                await self.stdin(data)
            await self.close_stdin()

        task = asyncio.create_task(feed(read)) if read is not None else None
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task


@contextlib.asynccontextmanager
async def open_stream(conn: kubeclient.Connection, name: str, sub: str,
                      query: list[tuple[str, str]]) -> AsyncIterator[Stream]:
    """The container's ``sub`` stream, open for the ``with`` block; a refused upgrade raises the server's
    Status as its :mod:`k3c.apierrors` class."""
    path = LOCAL_CONTAINERS.path(conn.namespace, name, sub)
    async with api_session(conn) as api:
        try:
            ws = await api.session.ws_connect(api.base + path, params=query, headers=api.headers,
                                              protocols=PROTOCOLS, ssl=api.ssl, autoping=True, max_msg_size=0)
        except aiohttp.WSServerHandshakeError as err:
            raise await _refusal(api, path, query, err) from None
        async with ws:
            yield Stream(ws)


async def _refusal(api: APISession, path: str, query: list[tuple[str, str]],
                   err: aiohttp.WSServerHandshakeError) -> apierrors.APIError:
    """The API server's own Status for a refused upgrade: aiohttp keeps only the code (its message is
    "Invalid response status"). A log is also served without the upgrade, so that request is made once
    more as a plain GET, which the server refuses with its Status in the body. exec and attach are not:
    without the upgrade they are always refused ("Upgrade request required"), whatever refused the first."""
    sub = path.rsplit("/", 1)[-1]
    message = f"the API server refused the {sub} stream (HTTP {err.status})"
    if sub != "log":
        return apierrors.from_status(err.status, None, message)
    try:
        async with api.session.get(api.base + path, params=query, headers=api.headers, ssl=api.ssl,
                                   timeout=aiohttp.ClientTimeout(total=5)) as resp:
            doc = json.loads(await resp.read()) if resp.status == err.status else None
    except (aiohttp.ClientError, TimeoutError, ValueError):
        doc = None
    return apierrors.from_status(err.status, doc if isinstance(doc, dict) else None, message)


async def frames(conn: kubeclient.Connection, name: str, sub: str,
                 query: list[tuple[str, str]]) -> AsyncGenerator[tuple[int, bytes], None]:
    """(channel, payload) of each frame the subresource sends until it closes, the error channel's Status
    last; a refused upgrade raises the server's Status as its :mod:`k3c.apierrors` class."""
    async with open_stream(conn, name, sub, query) as stream:
        async for item in stream.frames():
            yield item

@dataclass
class APISession:
    """An aiohttp session to the API server: where paths go (``base``), with which TLS and credentials."""

    session: aiohttp.ClientSession
    base: str
    ssl: ssl_module.SSLContext | bool
    headers: dict[str, str]


@contextlib.asynccontextmanager
async def api_session(conn: kubeclient.Connection) -> AsyncIterator[APISession]:
    """A session over the local k3c's unix socket when the kubeconfig is its own, else HTTPS."""
    token = conn.bearer()  # read now: a rotated token file is picked up
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    ssl: ssl_module.SSLContext | bool
    if conn.socket_path:
        connector: aiohttp.BaseConnector = aiohttp.UnixConnector(path=conn.socket_path)
        base, ssl = "http://localhost", False
    else:
        connector, base, ssl = aiohttp.TCPConnector(), conn.server, conn.ssl_context
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None)) as session:
        yield APISession(session, base, ssl, headers)
