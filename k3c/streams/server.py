"""The ``log``, ``exec`` and ``attach`` subresources of LocalContainer, served by k3c's API server.

They follow pods/log, pods/exec and pods/attach, so the CLI (and kubectl-style clients) reach a
container's streams through the API endpoint and its kubeconfig alone, never the containerd socket:

- ``GET .../localcontainers/NAME/log?follow=&tailLines=&sinceSeconds=&sinceTime=&timestamps=&limitBytes=``
  answers ``text/plain`` with stdout and stderr merged, as pods/log does (kube's ``stream=Stdout|Stderr``
  picks one). ``k3c logs`` must keep the two apart, so the same URL also accepts a websocket upgrade
  (``v4.channel.k8s.io``/``v5``): stdout on channel 1, stderr on channel 2, the outcome on channel 3.
- ``exec`` (websocket only): ``command`` (repeated), ``stdin``, ``stdout``, ``stderr``, ``tty``, plus
  k3c's ``env=K=V`` (repeated), ``workingDir``, ``user`` and ``detach``; see :mod:`k3c.streams.exec`.
- ``attach`` (websocket only): ``stdin``, ``stdout``, ``stderr``, and docker's ``logs`` (replay the output
  from the container's start; also accepted once it exited); see :mod:`k3c.streams.attach`.

Errors before a stream starts are one-line ``metav1.Status`` answers: 404 for a missing object, 409 for a
container that is not running, 400 for a bad query; after the upgrade they arrive on channel 3.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

from k3c.api import LOCAL_CONTAINERS
from k3c.apiserver import errors
from k3c.apiserver.subresources import Route, SubresourceHandler, SubresourceRequest
from k3c.cri.errors import NotFoundError, RuntimeCallError
from k3c.cri.runtime import pb

from . import protocol
from .attach import AttachSession
from .channels import ChannelSocket, accept, wants_websocket
from .containers import (
    RuntimeContainer,
    container_id_of,
    finished_from_status,
    is_starting,
    log_path_of,
    not_running,
    recorded_exit,
    running_container,
    runtime_container,
)
from .exec import ExecError, ExecRequest, ExecSession, build_process
from .logs import LogOptions, read_log
from .queries import flag, parse_exec_request, parse_log_options
from .runtimeclients import RuntimeClients

log = logging.getLogger(__name__)

T = TypeVar("T")

#: How often a follower waiting for the container to be created looks again.
CREATE_POLL = 0.25
#: How often an attach waiting for the container to start looks again (``k3c run`` waits on this).
START_POLL = 0.02


# ---- the service --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _LogSource:
    """Where a container's log is, and the runtime container that may still be writing it."""

    path: str
    container_id: str


class StreamService(RuntimeClients):
    """The three subresource handlers over one containerd; gRPC channels open on first use.

    A subresource provider (:mod:`k3c.apiserver.subresources`): the daemon mounts it on its API server
    with its containerd socket for both addresses (CRI is a plugin of the same containerd);
    :meth:`close` stops detached execs' reapers and the gRPC channels.
    """

    def __init__(self, cri_address: str, containerd_address: str, fifo_dir: str | None = None,
                 log_dir: Path | None = None) -> None:
        super().__init__(cri_address, containerd_address)
        self.fifo_dir = fifo_dir
        #: The node's container log dir (the daemon's); without it, logs are where CRI says.
        self.log_dir = log_dir
        self._background: set[asyncio.Task[None]] = set()

    def routes(self) -> Mapping[Route, SubresourceHandler]:
        """``log``, ``exec`` and ``attach`` of k3c.io/localcontainers."""
        group, plural = LOCAL_CONTAINERS.group, LOCAL_CONTAINERS.plural
        return {Route(group, plural, "log"): self.log, Route(group, plural, "exec"): self.exec,
                Route(group, plural, "attach"): self.attach}

    async def close(self) -> None:
        """Stop background reapers of detached execs and close the gRPC channels."""
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await super().close()

    # ---- log ----

    async def log(self, req: SubresourceRequest) -> web.StreamResponse:
        """pods/log: text/plain (merged) over HTTP, channels 1/2 over a websocket."""
        request = req.http
        if request.method != "GET":
            raise errors.method_not_allowed()
        options = parse_log_options(request.query)
        obj = await req.parent()
        rc = await _runtime_call(runtime_container(self.cri, obj))
        source = _LogSource(log_path_of(obj, rc, self.log_dir), container_id_of(obj))
        if not source.path and source.container_id:
            raise errors.bad_request(f'container "{req.name}" has no logs: its runtime container is gone')
        if wants_websocket(request):
            sock = await accept(request)
            await _guarded(sock, self._log_to_socket(sock, req, source, options))
            return sock.ws
        resp = web.StreamResponse(headers={"Content-Type": "text/plain; charset=utf-8"})
        await resp.prepare(request)

        def alive() -> bool:
            return request.transport is not None and not request.transport.is_closing()

        async def emit(_channel: int, data: bytes) -> None:
            await resp.write(data)

        with contextlib.suppress(ConnectionError, RuntimeCallError):
            await self._stream_log(req, source, options, emit, alive)
        with contextlib.suppress(ConnectionError):
            await resp.write_eof()
        return resp

    async def _log_to_socket(self, sock: ChannelSocket, req: SubresourceRequest, source: _LogSource,
                             options: LogOptions) -> None:
        sock.start_reading()  # notices the client closing while we wait for output
        await self._stream_log(req, source, options, sock.send, lambda: not sock.client_closed)
        await _finish(sock, protocol.success())

    async def _stream_log(
        self, req: SubresourceRequest, source: _LogSource, options: LogOptions,
        emit: Callable[[int, bytes], Awaitable[None]], alive: Callable[[], bool],
    ) -> None:
        """Send the log; with no container yet a follower waits for one, others get nothing."""
        if not source.path and options.follow:
            source = await self._wait_for_log(req, alive) or source
        if not source.path:
            return
        cid = source.container_id

        async def running() -> bool:
            try:
                state = (await self.cri.container_status(cid)).status.state
            except RuntimeCallError:  # (removed by the operator after its exit, too)
                return False
            return state in (pb.CONTAINER_CREATED, pb.CONTAINER_RUNNING)

        async for channel, data in read_log(source.path, options, running, alive):
            await emit(channel, data)

    async def _wait_for_log(self, req: SubresourceRequest, alive: Callable[[], bool]) -> _LogSource | None:
        """For ``logs -f`` of a container not created yet: wait until the operator records one."""
        while alive():
            await asyncio.sleep(CREATE_POLL)
            try:
                obj = await req.parent()
            except errors.APIError:
                return None
            rc = await runtime_container(self.cri, obj)
            if rc is not None:
                return _LogSource(log_path_of(obj, rc, self.log_dir), rc.id)
        return None

    # ---- exec ----

    async def exec(self, req: SubresourceRequest) -> web.StreamResponse:
        """pods/exec over a websocket, with docker exec's -e/-w/-u."""
        request = req.http
        if not wants_websocket(request):
            raise errors.bad_request("Upgrade request required")
        exec_req, detach = parse_exec_request(request.query)
        rc = await _runtime_call(running_container(req, self.cri, "exec into"))
        sock = await accept(request)
        if detach:
            await _guarded(sock, self._exec_detached(sock, rc, exec_req))
        else:
            await _guarded(sock, ExecSession(self.tasks, rc, exec_req, sock, self.fifo_dir).run())
        return sock.ws

    async def _exec_detached(self, sock: ChannelSocket, rc: RuntimeContainer, req: ExecRequest) -> None:
        """``exec -d``: start without stdio, answer at once, reap the process when it exits."""
        exec_id = "k3c-exec-" + secrets.token_hex(8)
        try:
            process = build_process(rc, req, None)
        except ExecError as err:
            await _finish(sock, protocol.failure(str(err)))
            return
        await self.tasks.exec(rc.id, exec_id, process)
        try:
            await self.tasks.start(rc.id, exec_id)
        except RuntimeCallError as err:
            with contextlib.suppress(RuntimeCallError):
                await self.tasks.delete_process(rc.id, exec_id)
            await _finish(sock, protocol.failure(err.details or str(err)))
            return
        task = asyncio.create_task(self._reap(rc.id, exec_id))
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        await _finish(sock, protocol.success())

    async def _reap(self, container_id: str, exec_id: str) -> None:
        with contextlib.suppress(RuntimeCallError):
            await self.tasks.wait(container_id, exec_id)
            await self.tasks.delete_process(container_id, exec_id)

    # ---- attach ----

    async def attach(self, req: SubresourceRequest) -> web.StreamResponse:
        """pods/attach over a websocket; the final Status carries the container's exit code.

        A container still being created is waited for (``k3c run`` attaches right after creating it).
        """
        request = req.http
        if not wants_websocket(request):
            raise errors.bad_request("Upgrade request required")
        q = request.query
        streams = {"stdin": flag(q, "stdin"), "stdout": flag(q, "stdout", True), "stderr": flag(q, "stderr", True)}
        if not any(streams.values()):
            raise errors.bad_request("you must specify at least 1 of stdin, stdout, stderr")
        from_start = flag(q, "logs")  # docker's attach?logs=1: replay the output from the start
        since = await req.parents.revision()
        obj = await req.parent()
        rc = await _runtime_call(runtime_container(self.cri, obj, verbose=True)) or finished_from_status(obj)
        starting = is_starting(obj, rc)
        finished = rc is not None and rc.state == pb.CONTAINER_EXITED
        if not starting and not (rc is not None and (rc.running or (from_start and finished))):
            raise not_running(req.name or "", "attach to", obj, rc)
        sock = await accept(request)
        sock.start_reading()  # keep early stdin while waiting for the container
        found = None if starting or rc is None else (rc, obj)  # (not starting: rc is there, see above)
        await _guarded(sock, self._attach(sock, req, found, streams, from_start, since))
        return sock.ws

    async def _attach(self, sock: ChannelSocket, req: SubresourceRequest,
                      found: tuple[RuntimeContainer, Any] | None, streams: dict[str, bool], from_start: bool,
                      since: str) -> None:
        """Attach; a container still starting is waited for, and then always replayed from its start.

        If the object disappears meanwhile (``--rm``), the stream ends without a Status: the caller
        learns the outcome from the object's last state.
        """
        replay = from_start or found is None
        if found is None:
            found = await self._wait_started(req, sock, since)
            if found is None:
                return
        rc, obj = found
        session = AttachSession(self.cri, self.tasks, rc, sock, log_path=log_path_of(obj, rc, self.log_dir),
                                exit_code=self._exit_code(req, rc.id, since), replay=replay, **streams)
        await session.run()

    async def _wait_started(self, req: SubresourceRequest, sock: ChannelSocket,
                            since: str) -> tuple[RuntimeContainer, Any] | None:
        """Wait until the operator has started (or finished) the container; None if it or the client left.

        A ``--rm`` container can be over and its object gone between two looks: its last state still
        tells the container, the log path and the exit code.
        """
        while not sock.client_closed:
            try:
                obj = await req.parent()
            except errors.APIError:
                last = await req.parents.last_state(req.namespace, req.name or "", since)
                done = finished_from_status(last) if last is not None else None
                return (done, last) if done is not None else None
            rc = await runtime_container(self.cri, obj, verbose=True)
            if rc is not None and rc.state == pb.CONTAINER_RUNNING:
                return rc, obj
            if not is_starting(obj, rc):  # (an exited container is the new one only once the phase moved on)
                done = rc if rc is not None and rc.state == pb.CONTAINER_EXITED else finished_from_status(obj)
                if done is not None:
                    return done, obj
                message = (obj.get("status") or {}).get("message") or "it is not running"
                raise _StreamFailure(f'cannot attach to container "{req.name}": {message}')
            await asyncio.sleep(START_POLL)
        return None

    def _exit_code(self, req: SubresourceRequest, cid: str,
                   since: str) -> Callable[[], Awaitable[int | None]]:
        """Where an attach learns the exit code: containerd, else (container removed) the object, else
        (object removed too, ``--rm``) its last state in the store's log after revision ``since``.

        The function returns None while unknown and raises LookupError once it cannot be known.
        """

        async def exit_code() -> int | None:
            try:
                st = (await self.cri.container_status(cid)).status
            except NotFoundError:
                st = None
            if st is not None:
                return st.exit_code if st.state == pb.CONTAINER_EXITED else None
            try:
                return recorded_exit(await req.parent(), cid)
            except errors.APIError:
                pass
            last = await req.parents.last_state(req.namespace, req.name or "", since)
            code = recorded_exit(last, cid) if last is not None else None
            if code is None:
                raise LookupError(cid)
            return code

        return exit_code


class _StreamFailure(Exception):
    """A stream cannot go on; the message is for the user (channel 3, one line)."""


async def _runtime_call(coro: Awaitable[T]) -> T:
    """Await a containerd call before the upgrade: its failure becomes a 500 Status, one line."""
    try:
        return await coro
    except RuntimeCallError as err:
        raise errors.internal(err.details or str(err)) from None


async def _finish(sock: ChannelSocket, status: dict[str, Any]) -> None:
    with contextlib.suppress(ConnectionError):
        await sock.send_status(status)
    await sock.close()


async def _guarded(sock: ChannelSocket, coro: Awaitable[None]) -> None:
    """Run a stream; any failure after the upgrade is reported on channel 3, one line, never raised."""
    try:
        await coro
    except ConnectionError:
        pass
    except _StreamFailure as err:
        await _finish(sock, protocol.failure(str(err), "BadRequest", 400))
    except RuntimeCallError as err:
        await _finish(sock, protocol.failure(err.details or str(err)))
    except Exception as err:  # the server keeps serving; the client gets one line
        log.exception("stream failed")
        await _finish(sock, protocol.failure(str(err)))
    finally:
        await sock.close()

