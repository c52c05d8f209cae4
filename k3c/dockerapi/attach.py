"""Attach and container resize: the container's stdio on a hijacked connection, both ways.

Output comes from the container's ``attach`` subresource (the one `k3c attach` and `k3c run` use), framed
per stream unless Tty; what the client writes goes to the container's stdin, and its half-close ends that
input (CRI then closes the stdin of a ``StdinOnce`` container, as dockerd does for ``docker run -i``).
docker attaches before the start and CRI cannot, so an attach made before the start waits for it and
shows the output from the first line on. Resizes go to the container's terminal through the attaches
open on it (dockerd resizes the runtime's console; k3c's only way to a container's terminal is CRI's
attach), and one that arrives before an attach's stream is open is applied as it opens.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from k3c import apierrors, containerlife, dockerid
from k3c.api import ATTACHED_RUN_ANNOTATION, LOCAL_CONTAINERS
from k3c.apierrors import NotFound
from k3c.dockerapi import bodies, containers, streams
from k3c.dockerapi.cluster import Cluster
from k3c.dockerapi.errors import Conflict
from k3c.dockerapi.hijack import Hijacked, hijack
from k3c.streams.protocol import STDERR, STDOUT

log = logging.getLogger(__name__)


@dataclass(eq=False)  # (kept in sets: one per attach)
class _Terminal:
    """One attach's way to its container's terminal: the open stream, or the size to send once it is."""

    stream: streams.Stream | None = None
    size: tuple[int, int] | None = None

    async def resize(self, width: int, height: int) -> None:
        self.size = (width, height)
        if self.stream is not None:
            await self.stream.resize(width, height)


def _terminals(request: web.Request) -> dict[str, set[_Terminal]]:
    found: dict[str, set[_Terminal]] = request.app["terminals"]
    return found


def _cluster(request: web.Request) -> Cluster:
    cluster: Cluster = request.app["cluster"]
    return cluster


def _name(obj: dict[str, Any]) -> str:
    return str(obj["metadata"]["name"])


async def _started_since(cluster: Cluster, obj: dict[str, Any]) -> bool:
    """Wait until the container runs or ran since ``obj`` (docker attaches before the start; CRI cannot):
    True once it has, False if it is gone."""
    if containerlife.is_running(obj) and (obj.get("status") or {}).get("phase") == "Running":
        return True
    before = containers.exit_mark(obj)

    def started(o: dict[str, Any] | None) -> bool:
        if o is None:
            return True
        st = o.get("status") or {}
        return st.get("phase") == "Running" or (containers.exited(o) and containers.exit_mark(o) != before)

    now = await cluster.wait_for(LOCAL_CONTAINERS, _name(obj), started, float("inf"))
    return now is not None


async def attach(request: web.Request) -> web.StreamResponse:
    """The hijacked attach (``101 UPGRADED``, ``Upgrade: tcp``); stdin only for a container that keeps
    it open (``OpenStdin``), as dockerd ignores it otherwise."""
    cluster = _cluster(request)
    obj = await containers.find(cluster, request.match_info["id"])
    tty = bool(obj["spec"].get("tty"))
    stdin = bodies.flag(request, "stdin") and bool(obj["spec"].get("stdin"))
    want = {STDOUT: bodies.flag(request, "stdout"), STDERR: bodies.flag(request, "stderr") and not tty}
    held = await _hold_for_attach(cluster, obj)
    conn = await hijack(request)
    terminal = _Terminal()
    _terminals(request).setdefault(_name(obj), set()).add(terminal)
    try:
        if (any(want.values()) or stdin) and await _started_since(cluster, obj):
            from_start = not containerlife.is_running(obj) or bodies.flag(request, "logs")
            await _relay(cluster, obj, conn, terminal, want, stdin, from_start)
        else:
            log.info("attach to %s: nothing to relay (streams %s, stdin %s)", _name(obj), want, stdin)
        if held:
            await _remove_quietly(cluster, obj)
    finally:  # (a failure after the head cannot be an HTTP answer any more: the client sees the hang-up)
        _terminals(request)[_name(obj)].discard(terminal)
        if not _terminals(request)[_name(obj)]:
            del _terminals(request)[_name(obj)]
        conn.close()
    return conn.response


async def _relay(cluster: Cluster, obj: dict[str, Any], conn: Hijacked, terminal: _Terminal,
                 want: dict[int, bool], stdin: bool, from_start: bool) -> None:
    tty = bool(obj["spec"].get("tty"))
    query = [("stdout", "true"), ("stderr", "false" if tty else "true"), ("stdin", "true" if stdin else "false")]
    if from_start:
        query.append(("logs", "true"))
    try:
        async with streams.open_stream(cluster.connection(), _name(obj), "attach", query) as stream:
            terminal.stream = stream
            if terminal.size is not None and tty:
                await stream.resize(*terminal.size)
            async with stream.feeding(conn.read if stdin else None):
                async for channel, payload in stream.frames():
                    if want.get(channel):
                        await conn.write(payload if tty else containers.frame(channel, payload))
    except (ConnectionError, apierrors.APIError) as err:  # the client left, or the container went away
        log.info("attach to %s ended: %s", _name(obj), err)
    finally:
        terminal.stream = None


async def _hold_for_attach(cluster: Cluster, obj: dict[str, Any]) -> bool:
    """A `run --rm` attached before its start: the operator's autoRemove waits for this attach (as for the
    CLI's foreground run), which removes the object itself once the output is out. True if so held."""
    if not obj["spec"].get("autoRemove") or containerlife.is_running(obj):
        return False
    await cluster.merge_patch(LOCAL_CONTAINERS, _name(obj),
                              {"metadata": {"annotations": {ATTACHED_RUN_ANNOTATION: "true"}}})
    return True


async def _remove_quietly(cluster: Cluster, obj: dict[str, Any]) -> None:
    """The held `--rm` container, removed once its attach is over (the operator's finalizer tears down)."""
    try:
        await cluster.wait_for(LOCAL_CONTAINERS, _name(obj), lambda o: o is None or not containerlife.is_running(o),
                               containers.OPERATOR_TIMEOUT)
        await cluster.delete(LOCAL_CONTAINERS, _name(obj))
    except (NotFound, TimeoutError):
        pass


async def resize(request: web.Request) -> web.Response:
    """The container's terminal size, through the attaches open on it (none: nothing to resize)."""
    size = bodies.terminal_size(request)
    obj = await containers.find(_cluster(request), request.match_info["id"])
    if not containerlife.is_running(obj):
        raise Conflict(f"Container {dockerid.object_id(obj)} is not running")
    for terminal in list(_terminals(request).get(_name(obj), ())):
        await terminal.resize(*size)
    return web.Response(status=200)


def setup(app: web.Application) -> None:
    app["terminals"] = {}
