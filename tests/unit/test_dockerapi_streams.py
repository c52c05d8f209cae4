"""A stream the API server refuses reaches a docker client with the server's own message.

The refusal is a fault the tests with a real daemon cannot cause at will (compose's `logs` met one once, as
"Invalid response status"), so a small aiohttp server on a unix socket plays the API server here.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiohttp import web

from k3c import apierrors, kubeclient
from k3c.dockerapi import streams

STATUS = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "BadRequest", "code": 400,
          "message": 'container "web" in pod "web" is waiting to start'}


async def _refuse(request: web.Request) -> web.Response:
    return web.json_response(STATUS, status=400)


def _connection(socket_path: Path) -> kubeclient.Connection:
    def no_tls() -> kubeclient.ssl.SSLContext:
        raise AssertionError("a unix socket needs no TLS")

    return kubeclient.Connection(server="https://127.0.0.1:6443", token=None, namespace="default", tls=no_tls,
                                 socket_path=str(socket_path))


async def _frames_of_a_refused_stream(socket_path: Path, sub: str = "log") -> None:
    app = web.Application()
    app.router.add_get(f"/apis/k3c.io/v1alpha1/namespaces/default/localcontainers/web/{sub}", _refuse)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.UnixSite(runner, str(socket_path)).start()
    try:
        async for _ in streams.frames(_connection(socket_path), "web", sub, [("follow", "true")]):
            raise AssertionError("no frame of a refused stream")
    finally:
        await runner.cleanup()


def test_a_refused_stream_carries_the_servers_status(tmp_path: Path) -> None:
    with pytest.raises(apierrors.APIError) as err:
        asyncio.run(_frames_of_a_refused_stream(tmp_path / "api.sock"))
    assert err.value.code == 400
    assert str(err.value.message) == STATUS["message"]


def test_a_refused_exec_is_not_asked_again(tmp_path: Path) -> None:
    """exec without the upgrade is always refused ("Upgrade request required"): asking again would only
    misname the first refusal, so its code is reported with a plain message."""
    with pytest.raises(apierrors.APIError) as err:
        asyncio.run(_frames_of_a_refused_stream(tmp_path / "api.sock", "exec"))
    assert err.value.code == 400
    assert str(err.value.message) == "the API server refused the exec stream (HTTP 400)"
