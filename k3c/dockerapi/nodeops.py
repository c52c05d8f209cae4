"""Container endpoints a node answers (cp's archive, top, stats, diff, export, pause, kill), forwarded to the CLI's subresources.

They are the LocalContainer subresources of :mod:`k3c.streams.nodeops`, which the CLI's `cp`, `top`, `stats`,
`diff`, `export`, `pause`, `unpause` and `kill -s` use.

Why forwarded rather than done here: the subresources already speak docker's shapes (the path stat header,
``{"Titles", "Processes"}``, the stats document, ``[{"Path", "Kind"}]``) and reach the node wherever the
container runs; the Docker API only finds the container by docker's references and relays bytes both ways,
a tar never held whole. A refusal comes back as the API server's Status and is answered as docker's
``{"message": …}`` with the same status (404 for a path that is not there, 409 for a container not running).
"""

from __future__ import annotations

import contextlib
import json
import signal
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
from aiohttp import web

from k3c import apierrors, containerlife, dockerid, signals
from k3c.api import LOCAL_CONTAINERS
from k3c.dockerapi import bodies, streams
from k3c.dockerapi.cluster import Cluster
from k3c.dockerapi.containers import find, kill_by_stop
from k3c.dockerapi.errors import BadParameter, Conflict
from k3c.dockerapi.replies import reply

#: Bytes per chunk relayed
CHUNK = 1 << 16
#: The header docker's archive endpoints describe the path in (base64 JSON)
PATH_STAT_HEADER = "X-Docker-Container-Path-Stat"
#: How long pause/unpause wait for the operator's status to follow containerd's event
FREEZE_STATUS_WAIT = 10.0


def _cluster(request: web.Request) -> Cluster:
    cluster: Cluster = request.app["cluster"]
    return cluster


@contextlib.asynccontextmanager
async def _forward(request: web.Request, sub: str, method: str, query: Mapping[str, str],
                   data: Any = None, content_type: str | None = None) -> AsyncIterator[aiohttp.ClientResponse]:
    """The subresource's answer to ``method`` for the container the path names; a failure Status is raised
    as its :mod:`k3c.apierrors` class (the error middleware answers it in docker's shape)."""
    cluster = _cluster(request)
    obj = await find(cluster, request.match_info["id"])
    conn = cluster.connection()
    path = LOCAL_CONTAINERS.path(conn.namespace, obj["metadata"]["name"], sub)
    async with streams.api_session(conn) as api:
        headers = {**api.headers, **({"Content-Type": content_type} if content_type else {})}
        async with api.session.request(method, api.base + path, params=dict(query), data=data, headers=headers,
                                       ssl=api.ssl) as resp:
            if resp.status >= 400:
                raw = await resp.read()
                try:
                    doc = json.loads(raw) if raw else {}
                except ValueError:
                    doc = {}
                raise apierrors.from_status(resp.status, doc if isinstance(doc, dict) else {},
                                            raw.decode(errors="replace"))
            yield resp


async def _relay(request: web.Request, upstream: aiohttp.ClientResponse,
                 headers: Mapping[str, str]) -> web.StreamResponse:
    """The upstream body, chunk by chunk, as this answer's; a client that leaves just ends it."""
    response = web.StreamResponse(status=200, headers=headers)
    await response.prepare(request)
    with contextlib.suppress(ConnectionError):
        async for chunk in upstream.content.iter_chunked(CHUNK):
            await response.write(chunk)
        await response.write_eof()
    return response


async def _json(request: web.Request, sub: str, query: Mapping[str, str]) -> web.Response:
    async with _forward(request, sub, "GET", query) as resp:
        return reply(await resp.json(content_type=None))


# ---- archive (docker cp) ------------------------------------------------------------------------------
def _archive_query(request: web.Request, *extra: str) -> dict[str, str]:
    path = request.query.get("path", "")
    if not path:
        raise BadParameter("bad parameter: path cannot be empty")
    query = {"path": path}
    for name in extra:
        if name in request.query:
            query[name] = "true" if bodies.flag(request, name) else "false"
    return query


async def get_archive(request: web.Request) -> web.StreamResponse:
    """HEAD: the path's stat in ``X-Docker-Container-Path-Stat``; GET: that and a tar of the path."""
    query = _archive_query(request)
    head = request.method == "HEAD"
    async with _forward(request, "archive", request.method, query) as resp:
        stat = {PATH_STAT_HEADER: resp.headers.get(PATH_STAT_HEADER, "")}
        if head:
            return web.Response(status=200, headers={**stat, "Content-Type": "application/x-tar"})
        return await _relay(request, resp, {**stat, "Content-Type": "application/x-tar"})


async def put_archive(request: web.Request) -> web.Response:
    """A tar extracted into the directory ``path``; ``copyUIDGID`` keeps the owners, ``noOverwriteDirNonDir``
    (which `docker cp` always sends) refuses to replace a directory by a file or the reverse."""
    query = _archive_query(request, "copyUIDGID", "noOverwriteDirNonDir")
    body = request.content.iter_chunked(CHUNK)
    async with _forward(request, "archive", "PUT", query, data=body, content_type="application/x-tar"):
        return web.Response(status=200)


# ---- top / stats / changes / export -------------------------------------------------------------------
async def top(request: web.Request) -> web.Response:
    ps_args = request.query.get("ps_args", "")
    return await _json(request, "top", {"ps_args": ps_args} if ps_args else {})


async def stats(request: web.Request) -> web.StreamResponse:
    """One document (``stream=false``, ``one-shot`` without the previous sample), or one a second as JSON
    lines for as long as the client reads."""
    stream = request.query.get("stream", "true").lower() not in ("0", "false", "no")
    query = {"stream": "true" if stream else "false"}
    if bodies.flag(request, "one-shot"):
        query["one-shot"] = "true"
    if not stream:
        return await _json(request, "stats", query)
    async with _forward(request, "stats", "GET", query) as resp:
        return await _relay(request, resp, {"Content-Type": "application/json"})


async def changes(request: web.Request) -> web.Response:
    return await _json(request, "changes", {})


async def export(request: web.Request) -> web.StreamResponse:
    async with _forward(request, "export", "GET", {}) as resp:
        return await _relay(request, resp, {"Content-Type": "application/x-tar"})


# ---- pause / unpause ----------------------------------------------------------------------------------
async def _freeze(request: web.Request, sub: str, paused: bool) -> web.Response:
    """Freeze or thaw on the node, then wait (briefly) for the operator's status, so that an inspect or
    ps right after shows ``paused`` as docker's would."""
    async with _forward(request, sub, "POST", {}):
        pass
    cluster = _cluster(request)
    obj = await find(cluster, request.match_info["id"])
    with contextlib.suppress(TimeoutError):
        await cluster.wait_for(LOCAL_CONTAINERS, obj["metadata"]["name"],
                               lambda o: containerlife.freeze_settled(o, paused), FREEZE_STATUS_WAIT)
    return web.Response(status=204)


async def pause(request: web.Request) -> web.Response:
    return await _freeze(request, "pause", paused=True)


async def unpause(request: web.Request) -> web.Response:
    return await _freeze(request, "unpause", paused=False)


# ---- kill ---------------------------------------------------------------------------------------------
async def kill(request: web.Request) -> web.Response:
    """docker kill: SIGKILL (the default) as the object's stop without grace, any other signal delivered by
    the node's ``kill`` subresource; docker's 400 for a name that is no signal, 409 when not running."""
    try:
        number = signals.signal_number(request.query.get("signal") or "KILL")
    except ValueError as err:
        raise BadParameter(str(err)) from None
    cluster = _cluster(request)
    ref = request.match_info["id"]
    obj = await find(cluster, ref)
    if not containerlife.is_running(obj):
        raise Conflict(f"Cannot kill container: {ref}: Container {dockerid.object_id(obj)} is not running")
    if number == signal.SIGKILL:
        await kill_by_stop(cluster, obj)
    else:  # recorded first: docker's kill event, and no restart of what it ends (containerlife)
        await cluster.merge_patch(LOCAL_CONTAINERS, obj["metadata"]["name"], containerlife.kill_patch(obj, number))
        async with _forward(request, "kill", "POST", {"signal": str(number)}):
            pass
    return web.Response(status=204)
