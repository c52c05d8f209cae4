"""Attach and container resize: the container's stdio on a hijacked connection, both ways.

Output comes from the container's ``attach`` subresource (the one `k3c attach` and `k3c run` use), framed
per stream unless Tty; what the client writes goes to the container's stdin, and its half-close ends that
input (CRI then closes the stdin of a ``StdinOnce`` container, as dockerd does for ``docker run -i``).
docker attaches before the start and CRI cannot, so an attach made before the start waits for it and
shows the output from the first line on. Resizes go to the container's terminal through the attaches
open on it (dockerd resizes the runtime's console; k3c's only way to a container's terminal is CRI's
attach), and one that arrives before an attach's stream is open is applied as it opens. In a terminal's
input the detach keys (``detachKeys``, Ctrl-P Ctrl-Q unless told) end the attach and leave the container
running, as with dockerd.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from k3c import apierrors, containerlife, dockerid
from k3c.api import ATTACHED_RUN_ANNOTATION, LOCAL_CONTAINERS
from k3c.apierrors import NotFound
from k3c.dockerapi import bodies, containers, streams
from k3c.dockerapi.cluster import Cluster
from k3c.dockerapi.errors import BadParameter, Conflict
from k3c.dockerapi.hijack import Hijacked, hijack
from k3c.streams import detachkeys
from k3c.streams.protocol import STDERR, STDOUT

log = logging.getLogger(__name__)


@dataclass(eq=False)  # (kept in sets: one per attach)
class _Terminal:
    """One attach's way to its container's terminal: the open stream, or the size to send once it is."""

    stream: streams.Stream | None = None
    size: tuple[int, int] | None = None
    detached: bool = False

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


@dataclass
class _Wanted:
    """What one attach relays: which output streams, whether stdin, and the detach keys of a terminal."""

    tty: bool
    stdin: bool
    output: dict[int, bool]
    #: spotted in a terminal's input, as dockerd does; None without a terminal or stdin
    detach_keys: bytes | None


def _wanted(request: web.Request, obj: dict[str, Any]) -> _Wanted:
    tty = bool(obj["spec"].get("tty"))
    stdin = bodies.flag(request, "stdin") and bool(obj["spec"].get("stdin"))
    output = {STDOUT: bodies.flag(request, "stdout"), STDERR: bodies.flag(request, "stderr") and not tty}
    spec = request.query.get("detachKeys") or ""
    try:
        keys = detachkeys.parse(spec) if spec else detachkeys.DEFAULT
    except ValueError as err:
        raise BadParameter(f"Invalid detach keys ({spec}) provided: {err}") from None
    return _Wanted(tty, stdin, output, keys if tty and stdin else None)


async def attach(request: web.Request) -> web.StreamResponse:
    """The hijacked attach (``101 UPGRADED``, ``Upgrade: tcp``); stdin only for a container that keeps
    it open (``OpenStdin``), as dockerd ignores it otherwise."""
    cluster = _cluster(request)
    obj = await containers.find(cluster, request.match_info["id"])
    wanted = _wanted(request, obj)
    held = await _hold_for_attach(cluster, obj)
    conn = await hijack(request)
    terminal = _Terminal()
    _terminals(request).setdefault(_name(obj), set()).add(terminal)
    try:
        detached = False
        if (any(wanted.output.values()) or wanted.stdin) and await _started_since(cluster, obj):
            from_start = not containerlife.is_running(obj) or bodies.flag(request, "logs")
            detached = await _relay(cluster, obj, conn, terminal, wanted, from_start)
        else:
            log.info("attach to %s: nothing to relay (%s)", _name(obj), wanted)
        if held:
            await (_release(cluster, obj) if detached else _remove_quietly(cluster, obj))
    finally:  # (a failure after the head cannot be an HTTP answer any more: the client sees the hang-up)
        _terminals(request)[_name(obj)].discard(terminal)
        if not _terminals(request)[_name(obj)]:
            del _terminals(request)[_name(obj)]
        conn.close()
    return conn.response


async def _relay(cluster: Cluster, obj: dict[str, Any], conn: Hijacked, terminal: _Terminal, wanted: _Wanted,
                 from_start: bool) -> bool:
    """Relay until the container's output ends or the client leaves; True if it left by the detach keys."""
    query = [("stdout", "true"), ("stderr", "false" if wanted.tty else "true"),
             ("stdin", "true" if wanted.stdin else "false")]
    if from_start:
        query.append(("logs", "true"))
    spotter = detachkeys.DetachKeys(wanted.detach_keys) if wanted.detach_keys else None
    try:
        async with streams.open_stream(cluster.connection(), _name(obj), "attach", query) as stream:
            terminal.stream = stream

            async def typed() -> bytes:
                """The client's input, up to the detach keys (which end the stream: the container runs on)."""
                while data := await conn.read():
                    if spotter is None:
                        return data
                    data, done = spotter.feed(data)
                    if done:
                        terminal.detached = True
                        await stream.ws.close()
                        return data  # (what preceded the keys; the next read ends the input)
                    if data:
                        return data
                return b""

            if terminal.size is not None and wanted.tty:
                await stream.resize(*terminal.size)
            async with stream.feeding(typed if wanted.stdin else None):
                async for channel, payload in stream.frames():
                    if wanted.output.get(channel):
                        await conn.write(payload if wanted.tty else containers.frame(channel, payload))
    except (ConnectionError, apierrors.APIError) as err:  # the client left, or the container went away
        log.info("attach to %s ended: %s", _name(obj), err)
    finally:
        terminal.stream = None
    return terminal.detached


async def _hold_for_attach(cluster: Cluster, obj: dict[str, Any]) -> bool:
    """A `run --rm` attached before its start: the operator's autoRemove waits for this attach (as for the
    CLI's foreground run), which removes the object itself once the output is out. True if so held."""
    if not obj["spec"].get("autoRemove") or containerlife.is_running(obj):
        return False
    await cluster.merge_patch(LOCAL_CONTAINERS, _name(obj),
                              {"metadata": {"annotations": {ATTACHED_RUN_ANNOTATION: "true"}}})
    return True


async def _release(cluster: Cluster, obj: dict[str, Any]) -> None:
    """A held `--rm` container the client detached from: the operator removes it when it exits."""
    with contextlib.suppress(NotFound):
        await cluster.merge_patch(LOCAL_CONTAINERS, _name(obj),
                                  {"metadata": {"annotations": {ATTACHED_RUN_ANNOTATION: None}}})


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
