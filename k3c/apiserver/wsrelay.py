"""Relaying a websocket: messages passed both ways between a client and an upstream server.

Why a module of its own: the aggregator (to an APIService's backend) and a node's stream server (to a peer
node's agent) both proxy exec/attach websockets, and they must end them the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import aiohttp
from aiohttp import web

__all__ = ["join_websockets"]


async def join_websockets(client: web.WebSocketResponse, upstream: aiohttp.ClientWebSocketResponse) -> None:
    """Pass messages both ways until either side closes, then close the other with its code."""

    async def pump(source: Any, sink: Any) -> None:
        async for msg in source:
            if msg.type == aiohttp.WSMsgType.BINARY:
                await sink.send_bytes(msg.data)
            elif msg.type == aiohttp.WSMsgType.TEXT:
                await sink.send_str(msg.data)
            else:
                break
        await sink.close(code=source.close_code or aiohttp.WSCloseCode.OK)

    tasks = [asyncio.ensure_future(pump(client, upstream)), asyncio.ensure_future(pump(upstream, client))]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
