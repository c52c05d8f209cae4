"""Relaying a websocket: the upgrade passed on to an upstream server, then messages passed both ways.

Why a module of its own: the aggregator (to an APIService's backend) and a node's stream server (to a peer
node's agent) both proxy exec/attach/log websockets, and they must open and end them the same way.

An upstream that refuses the upgrade (any answer but 101) is passed on as it answered, status, content type
and body, as kube-apiserver's upgrade-aware proxy copies a backend's refusal: the client reads the backend's
own Status ("forbidden", "no such container", "node X's agent cannot be reached") instead of a proxy's
guess. That is why the upstream side is the ``websockets`` client, which keeps a refused handshake's
response, where aiohttp's drops its body.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Iterable
from typing import Any

import aiohttp
from aiohttp import web
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.typing import Subprotocol

__all__ = ["UpgradeRefused", "join_websockets", "open_upstream", "refusal", "relay"]

#: Close codes a websocket may send (RFC 6455 7.4; 1005, 1006 and 1015 are only ever reported).
_SENDABLE = frozenset({1000, 1001, 1002, 1003, *range(1007, 1015), *range(3000, 5000)})
#: Headers the upgrade sets itself, never copied from the client's request.
_OWN = ("host", "upgrade", "connection", "sec-websocket-")


class UpgradeRefused(Exception):
    """The upstream answered the upgrade with ``status`` (not 101): its response, to pass on."""

    def __init__(self, status: int, content_type: str, body: bytes) -> None:
        super().__init__(f"upgrade refused with {status}")
        self.status, self.content_type, self.body = status, content_type, body


def offered(request: web.Request) -> list[str]:
    """The subprotocols the client offered."""
    return [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]


async def open_upstream(host: str, port: int, server_name: str, path_qs: str, *, tls: ssl.SSLContext,
                        headers: Iterable[tuple[str, str]], protocols: list[str],
                        connect_timeout: float = 10.0) -> ClientConnection:
    """The websocket at ``https://host:port/path_qs``, the server's certificate checked for ``server_name``
    (also the Host header). A refusal raises :class:`UpgradeRefused`; no connection, or a broken handshake,
    OSError (ConnectionError) or TimeoutError.

    Only the TCP connection has a deadline: a server may answer the upgrade late on purpose (an attach
    waits for its container to start), as a proxy's own client would wait for it."""
    extra = [(k, v) for k, v in headers if not k.lower().startswith(_OWN)]
    sock = await _connected(host, port, connect_timeout)
    try:
        return await connect(f"wss://{server_name}:{port}{path_qs}", sock=sock, ssl=tls,
                             additional_headers=extra, user_agent_header=None, proxy=None, compression=None,
                             subprotocols=[Subprotocol(p) for p in protocols], max_size=None,
                             ping_interval=None, open_timeout=None)
    except InvalidStatus as err:
        sock.close()
        response = err.response
        raise UpgradeRefused(response.status_code, response.headers.get("Content-Type", "text/plain"),
                             bytes(response.body or b"")) from None
    except InvalidHandshake as err:
        sock.close()
        raise ConnectionError(f"websocket handshake failed: {err}") from None
    except BaseException:
        sock.close()
        raise


async def _connected(host: str, port: int, timeout: float) -> socket.socket:
    """A TCP connection to ``host:port``, made within ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    family, kind, proto, _, address = (await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM))[0]
    sock = socket.socket(family, kind, proto)
    sock.setblocking(False)
    try:
        await asyncio.wait_for(loop.sock_connect(sock, address), timeout)
    except BaseException:
        sock.close()
        raise
    return sock


def refusal(err: UpgradeRefused) -> web.Response:
    """The upstream's refusal, as the client's answer."""
    return web.Response(status=err.status, body=err.body, headers={"Content-Type": err.content_type})


async def relay(request: web.Request, upstream: ClientConnection) -> web.WebSocketResponse:
    """The client's websocket, accepted with the subprotocol the upstream chose, joined to ``upstream`` until
    either closes (:func:`join_websockets`); the upstream is closed if the client's side cannot be opened."""
    client = web.WebSocketResponse(protocols=[upstream.subprotocol] if upstream.subprotocol else (), max_msg_size=0)
    try:
        await client.prepare(request)
    except BaseException:
        await upstream.close()
        raise
    await join_websockets(client, upstream)
    return client


async def join_websockets(client: web.WebSocketResponse, upstream: ClientConnection) -> None:
    """Pass messages both ways until either side closes, then close the other with its code."""

    async def down() -> None:
        with contextlib.suppress(ConnectionClosed):
            async for message in upstream:
                if isinstance(message, bytes):
                    await client.send_bytes(message)
                else:
                    await client.send_str(message)
        await client.close(code=_sendable(upstream.close_code))

    async def up() -> None:
        async for msg in client:
            if msg.type in (aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.TEXT):
                await upstream.send(msg.data)
            else:
                break
        await upstream.close(code=_sendable(client.close_code))

    tasks: list[asyncio.Future[Any]] = [asyncio.ensure_future(down()), asyncio.ensure_future(up())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(Exception):
            await upstream.close()


def _sendable(code: int | None) -> int:
    return code if code is not None and code in _SENDABLE else 1000
