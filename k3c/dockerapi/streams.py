"""The API server's stream subresources (logs, attach, a build's context and log) reached from the event loop.

The same channel websocket the CLI speaks (:mod:`k3c.streams.protocol`), opened with aiohttp: over the local
k3c's unix socket when the kubeconfig is its own, else over HTTPS with the kubeconfig's credentials.
"""

from __future__ import annotations

import contextlib
import ssl as ssl_module
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass

import aiohttp

from k3c import apierrors, kubeclient
from k3c.api import LOCAL_CONTAINERS
from k3c.streams.protocol import ERROR, PROTOCOLS


async def frames(conn: kubeclient.Connection, name: str, sub: str,
                 query: list[tuple[str, str]]) -> AsyncGenerator[tuple[int, bytes], None]:
    """(channel, payload) of each frame the subresource sends until it closes, the error channel's Status
    last; a refused upgrade raises the server's Status as its :mod:`k3c.apierrors` class."""
    path = LOCAL_CONTAINERS.path(conn.namespace, name, sub)
    async with api_session(conn) as api:
        try:
            ws = await api.session.ws_connect(api.base + path, params=query, headers=api.headers,
                                              protocols=PROTOCOLS, ssl=api.ssl, autoping=True, max_msg_size=0)
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
    headers = {"Authorization": f"Bearer {conn.token}"} if conn.token else {}
    ssl: ssl_module.SSLContext | bool
    if conn.socket_path:
        connector: aiohttp.BaseConnector = aiohttp.UnixConnector(path=conn.socket_path)
        base, ssl = "http://localhost", False
    else:
        connector, base, ssl = aiohttp.TCPConnector(), conn.server, conn.ssl_context
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None)) as session:
        yield APISession(session, base, ssl, headers)
