"""The API server's stream subresources (logs now; attach and exec to come) reached from the event loop.

The same channel websocket the CLI speaks (:mod:`k3c.streams.protocol`), opened with aiohttp: over the local
k3c's unix socket when the kubeconfig is its own, else over HTTPS with the kubeconfig's credentials.
"""

from __future__ import annotations

import json
import ssl as ssl_module
from collections.abc import AsyncGenerator

import aiohttp

from k3c import apierrors, kubeclient
from k3c.api import LOCAL_CONTAINERS
from k3c.streams.protocol import ERROR, PROTOCOLS


async def frames(conn: kubeclient.Connection, name: str, sub: str,
                 query: list[tuple[str, str]]) -> AsyncGenerator[tuple[int, bytes], None]:
    """(channel, payload) of each frame the subresource sends until it closes; a refused upgrade raises the
    server's Status as its :mod:`k3c.apierrors` class, a failure Status on the error channel likewise."""
    path = LOCAL_CONTAINERS.path(conn.namespace, name, sub)
    headers = {"Authorization": f"Bearer {conn.token}"} if conn.token else {}
    ssl: ssl_module.SSLContext | bool
    if conn.socket_path:
        connector: aiohttp.BaseConnector = aiohttp.UnixConnector(path=conn.socket_path)
        url, ssl = "http://localhost" + path, False
    else:
        connector, url, ssl = aiohttp.TCPConnector(), conn.server + path, conn.ssl_context
    async with aiohttp.ClientSession(connector=connector) as session:
        try:
            ws = await session.ws_connect(url, params=query, headers=headers, protocols=PROTOCOLS, ssl=ssl,
                                          autoping=True, max_msg_size=0)
        except aiohttp.WSServerHandshakeError as err:
            raise apierrors.from_status(err.status, None, err.message) from None
        async with ws:
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.BINARY or not msg.data:
                    continue
                channel, payload = msg.data[0], bytes(msg.data[1:])
                if channel == ERROR:
                    _raise_failure(payload)
                    return
                yield channel, payload


def _raise_failure(payload: bytes) -> None:
    try:
        status = json.loads(payload or b"{}")
    except ValueError:
        status = {"status": "Failure", "message": payload.decode(errors="replace")}
    if isinstance(status, dict) and status.get("status") == "Failure":
        raise apierrors.from_status(int(status.get("code") or 500), status, str(status.get("message") or ""))
