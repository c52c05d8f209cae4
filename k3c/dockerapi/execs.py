"""docker's exec instances: create, start (hijacked or detached), resize and inspect, over the exec stream.

An exec instance is a record in the socket server's memory, as dockerd keeps them (nothing in the API
server: an exec leaves no trace in an object); starting it opens the container's ``exec`` subresource, the
one `k3c exec` uses, so the process, its -e/-w/-u and its exit code are the CLI's. How long one lives:
while it runs, and for :data:`KEEP_SECONDS` after it was created or last finished (clients inspect it
right after the stream ends); beyond :data:`MAX_INSTANCES` the oldest idle ones go first. A detached
start keeps the stream open in the background with the output dropped, so inspect still learns the exit
code; it ends with the socket server, as dockerd's execs end with dockerd.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from k3c import apierrors, dockerid
from k3c.dockerapi import bodies, containers, streams
from k3c.dockerapi.cluster import Cluster
from k3c.dockerapi.errors import BadParameter, Conflict, NotFound
from k3c.dockerapi.hijack import Hijacked, hijack
from k3c.dockerapi.replies import reply
from k3c.dockerview import docker_state
from k3c.streams import protocol
from k3c.streams.protocol import ERROR, STDERR, STDOUT

log = logging.getLogger(__name__)

KEEP_SECONDS = 3600.0
MAX_INSTANCES = 1024
WHERE = "ExecConfig"


@dataclass
class ExecInstance:
    """One ``POST /containers/{id}/exec``: what to run, and what became of it."""

    id: str
    container: str  #: the LocalContainer's object name
    container_id: str  #: its docker ID
    command: list[str]
    env: list[str]
    workdir: str
    user: str
    tty: bool
    stdin: bool
    stdout: bool
    stderr: bool
    privileged: bool
    detach_keys: str
    started: bool = False
    running: bool = False
    exit_code: int | None = None
    touched: float = field(default_factory=time.monotonic)
    #: the terminal size asked for before the stream was open (sent once it is)
    size: tuple[int, int] | None = None
    stream: streams.Stream | None = None

    def query(self) -> list[tuple[str, str]]:
        """The exec subresource's query: a tty always takes stdin too (CRI loses output otherwise)."""
        q = [("command", c) for c in self.command] + [("env", e) for e in self.env]
        if self.workdir:
            q.append(("workingDir", self.workdir))
        if self.user:
            q.append(("user", self.user))
        stdout = self.stdout or not (self.stdin or self.stderr)  # a stream with no output still runs
        return [*q, ("stdin", _bool(self.stdin or self.tty)), ("stdout", _bool(stdout)),
                ("stderr", _bool(self.stderr and not self.tty)), ("tty", _bool(self.tty))]


def _bool(value: bool) -> str:
    return "true" if value else "false"


class ExecStore:
    """The socket server's exec instances by ID, pruned as the module docstring says."""

    def __init__(self) -> None:
        self._items: dict[str, ExecInstance] = {}

    def add(self, inst: ExecInstance) -> None:
        self._prune()
        self._items[inst.id] = inst

    def get(self, exec_id: str) -> ExecInstance:
        inst = self._items.get(exec_id)
        if inst is None:
            raise NotFound(f"No such exec instance: {exec_id}")
        return inst

    def _prune(self) -> None:
        now = time.monotonic()
        idle = sorted((i for i in self._items.values() if not i.running), key=lambda i: i.touched)
        excess = len(self._items) + 1 - MAX_INSTANCES
        for inst in idle:
            if now - inst.touched > KEEP_SECONDS or excess > 0:
                del self._items[inst.id]
                excess -= 1


def _store(request: web.Request) -> ExecStore:
    store: ExecStore = request.app["execs"]
    return store


def _cluster(request: web.Request) -> Cluster:
    cluster: Cluster = request.app["cluster"]
    return cluster


def _check_running(obj: dict[str, Any]) -> None:
    state = docker_state(obj)[0]
    if state == "paused":
        raise Conflict(f"Container {dockerid.object_id(obj)} is paused, unpause the container before exec")
    if state != "running":
        raise Conflict(f"Container {dockerid.object_id(obj)} is not running")


# ---- create -------------------------------------------------------------------------------------------
def _instance(obj: dict[str, Any], body: dict[str, Any]) -> ExecInstance:
    command = bodies.strings(body, "Cmd", WHERE) or []
    if not command:
        raise BadParameter("No exec command specified")
    workdir = bodies.typed(body, "WorkingDir", str, WHERE) or ""
    if workdir and not workdir.startswith("/"):
        raise BadParameter(f"the working directory '{workdir}' is invalid, it needs to be an absolute path")
    env = bodies.strings(body, "Env", WHERE) or []
    for item in env:
        if "=" not in item or not item.split("=", 1)[0]:
            raise BadParameter(f"invalid environment variable: {item!r} (want KEY=VALUE)")
    privileged = bool(bodies.typed(body, "Privileged", bool, WHERE))
    if privileged and not obj["spec"].get("privileged"):
        # an exec runs with its container's own process settings, as `k3c exec` does: it can be as
        # privileged as its container, never more
        raise BadParameter("k3c cannot run a privileged exec in a container that is not privileged "
                           "(run the container with --privileged)")
    return ExecInstance(
        id=secrets.token_hex(32), container=obj["metadata"]["name"], container_id=dockerid.object_id(obj),
        command=command, env=env, workdir=workdir, user=bodies.typed(body, "User", str, WHERE) or "",
        tty=bool(bodies.typed(body, "Tty", bool, WHERE)), stdin=bool(bodies.typed(body, "AttachStdin", bool, WHERE)),
        stdout=bool(bodies.typed(body, "AttachStdout", bool, WHERE)),
        stderr=bool(bodies.typed(body, "AttachStderr", bool, WHERE)), privileged=privileged,
        detach_keys=bodies.typed(body, "DetachKeys", str, WHERE) or "",
    )


async def create(request: web.Request) -> web.Response:
    body = await bodies.json_object(request)
    obj = await containers.find(_cluster(request), request.match_info["id"])
    inst = _instance(obj, body)
    _check_running(obj)
    _store(request).add(inst)
    return reply({"Id": inst.id}, status=201)


# ---- start --------------------------------------------------------------------------------------------
async def start(request: web.Request) -> web.StreamResponse:
    """Detached: 200 once the process is under way. Else the hijacked stream, closed at the exit (whose
    code inspect then reports), framed per stream unless Tty."""
    body = await bodies.json_object(request)
    detach = bool(bodies.typed(body, "Detach", bool, "ExecStartConfig"))
    inst = _store(request).get(request.match_info["id"])
    if inst.running:
        raise Conflict(f"Error: Exec command {inst.id} is already running")
    if inst.started:
        raise Conflict(f"Error: Exec command {inst.id} has already run")
    cluster = _cluster(request)
    obj = await containers.find(cluster, inst.container_id)
    _check_running(obj)
    inst.started = inst.running = True
    inst.touched = time.monotonic()
    if detach:
        opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(_run(cluster, inst, None, opened))
        request.app["exec_tasks"].add(task)
        task.add_done_callback(request.app["exec_tasks"].discard)
        await asyncio.shield(opened)
        return web.Response(status=200)
    conn = await hijack(request)
    try:
        await _run(cluster, inst, conn, None)
    finally:  # (a failure after the head cannot be an HTTP answer any more: the client sees the hang-up)
        conn.close()
    return conn.response


async def _run(cluster: Cluster, inst: ExecInstance, conn: Hijacked | None,
               opened: asyncio.Future[None] | None) -> None:
    """Run the exec to its end; ``conn`` is the client (None: detached, ``opened`` is told when it starts)."""
    try:
        async with streams.open_stream(cluster.connection(), inst.container, "exec", inst.query()) as stream:
            inst.stream = stream
            if opened is not None:
                opened.set_result(None)
            if inst.size is not None:
                await stream.resize(*inst.size)
            inst.exit_code = await _relay(inst, stream, conn)
    except (apierrors.APIError, OSError) as err:  # the stream was refused or broke: docker says 126
        log.info("exec %s in %s failed: %s", inst.id[:12], inst.container, err)
        if conn is not None:
            with contextlib.suppress(ConnectionError):
                await _out(conn, inst, STDOUT, f"{err}\r\n".encode())
        inst.exit_code = protocol.EXIT_CANNOT_INVOKE if inst.exit_code is None else inst.exit_code
    finally:
        inst.stream = None
        inst.running = False
        inst.touched = time.monotonic()
        if opened is not None and not opened.done():
            opened.set_result(None)


async def _out(conn: Hijacked, inst: ExecInstance, channel: int, data: bytes) -> None:
    await conn.write(data if inst.tty else containers.frame(channel, data))


async def _relay(inst: ExecInstance, stream: streams.Stream, conn: Hijacked | None) -> int | None:
    """Output to the client, the client's input to stdin; the exit code from the final Status."""
    status: dict[str, Any] | None = None
    async with stream.feeding(conn.read if conn is not None and inst.stdin else None):
        async for channel, payload in stream.frames():
            if channel == ERROR:
                status = protocol.decode_status(payload, stream.ws.protocol)
            elif conn is not None and channel in (STDOUT, STDERR):
                with contextlib.suppress(ConnectionError):
                    await _out(conn, inst, channel, payload)
    if status is None:
        return None
    code = protocol.exit_code_of(status)
    if code is None:  # it could not start: the runtime's message, and docker's 126 or 127
        message = str(status.get("message") or "exec failed")
        if conn is not None:
            with contextlib.suppress(ConnectionError):
                await _out(conn, inst, STDOUT, f"{message}\r\n".encode())
        code = protocol.start_failure_code(message, inst.command)
    return code


# ---- resize / inspect ---------------------------------------------------------------------------------
async def resize(request: web.Request) -> web.Response:
    size = bodies.terminal_size(request)
    inst = _store(request).get(request.match_info["id"])
    if inst.stream is not None:
        await inst.stream.resize(*size)
    else:
        inst.size = size
    return web.Response(status=200)


async def inspect(request: web.Request) -> web.Response:
    inst = _store(request).get(request.match_info["id"])
    return reply({
        "ID": inst.id, "Running": inst.running, "ExitCode": inst.exit_code, "CanRemove": False,
        "ContainerID": inst.container_id, "DetachKeys": inst.detach_keys, "OpenStdin": inst.stdin,
        "OpenStdout": inst.stdout, "OpenStderr": inst.stderr,
        "ProcessConfig": {"tty": inst.tty, "entrypoint": inst.command[0], "arguments": inst.command[1:],
                          "privileged": inst.privileged, "user": inst.user},
    })


def setup(app: web.Application) -> None:
    """The store and the detached execs' tasks, which the server's shutdown cancels."""
    app["execs"] = ExecStore()
    app["exec_tasks"] = set()

    async def stop_detached(app: web.Application) -> None:
        tasks: set[asyncio.Task[None]] = app["exec_tasks"]
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    app.on_shutdown.append(stop_detached)
