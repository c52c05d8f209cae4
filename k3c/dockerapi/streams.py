"""The API server's stream subresources (logs, attach; exec to come) reached from the event loop.

The same channel websocket the CLI speaks (:mod:`k3c.streams.protocol`), opened with aiohttp: over the local
k3c's unix socket when the kubeconfig is its own, else over HTTPS with the kubeconfig's credentials.
"""

from __future__ import annotations

import contextlib
import ssl as ssl_module
from collections.abc import AsyncGenerator, AsyncIterator

import aiohttp

from k3c import apierrors, kubeclient
from k3c.api import LOCAL_CONTAINERS
from k3c.streams.protocol import ERROR, PROTOCOLS


def auth_headers(conn: kubeclient.Connection) -> dict[str, str]:
    token = conn.bearer()
    return {"Authorization": f"Bearer {token}"} if token else {}


@contextlib.asynccontextmanager
async def session_for(conn: kubeclient.Connection,
                      ) -> AsyncIterator[tuple[aiohttp.ClientSession, str, ssl_module.SSLContext | bool]]:
    """(a session, the base URL, the ssl argument) to reach the API server: its unix socket when the
    kubeconfig is the local k3c's, else HTTPS."""
    ssl: ssl_module.SSLContext | bool
    if conn.socket_path:
        connector: aiohttp.BaseConnector = aiohttp.UnixConnector(path=conn.socket_path)
        base, ssl = "http://localhost", False
    else:
        connector, base, ssl = aiohttp.TCPConnector(), conn.server, conn.ssl_context
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None)) as session:
        yield session, base, ssl


async def frames(conn: kubeclient.Connection, name: str, sub: str,
                 query: list[tuple[str, str]]) -> AsyncGenerator[tuple[int, bytes], None]:
    """(channel, payload) of each frame the subresource sends until it closes, the error channel's Status
    last; a refused upgrade raises the server's Status as its :mod:`k3c.apierrors` class."""
    path = LOCAL_CONTAINERS.path(conn.namespace, name, sub)
    async with session_for(conn) as (session, base, ssl):
        try:
            ws = await session.ws_connect(base + path, params=query, headers=auth_headers(conn),
                                          protocols=PROTOCOLS, ssl=ssl, autoping=True, max_msg_size=0)
        except aiohttp.WSServerHandshakeError as err:
            raise apierrors.from_status(err.status, None, err.message) from None
        async with ws:
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.BINARY or not msg.data:
                    continue
                channel, payload = msg.data[0], bytes(msg.data[1:])
                yield channel, payload
                if channel == ERROR:
                    return

