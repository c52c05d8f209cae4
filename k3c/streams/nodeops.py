"""The node-side operations of LocalContainer beyond its streams: ``pause``, ``unpause``, ``kill``, ``top``,
``stats``, ``archive``, ``changes``, ``export``.

Each needs the node the container runs on (containerd's Tasks service, the host's ``ps``, the container's
cgroups), so each is a subresource, served by the same provider seam as ``log``/``exec``/``attach``
(:mod:`k3c.apiserver.subresources`): the embedded API server mounts :class:`ContainerOperations`, and in
cluster mode the stream server hosting the providers routes them like the streams.

- ``POST .../localcontainers/NAME/pause`` and ``.../unpause``: the cgroup freezer through containerd's
  Tasks ``Pause``/``Resume`` (CRI has no pause). containerd publishes ``/tasks/paused``/``/tasks/resumed``,
  from which the operator writes ``status.paused``; the answer is a Success Status.
- ``POST .../kill?signal=HUP``: ``docker kill -s``, the signal delivered to the container's init through
  containerd's Tasks ``Kill``; docker's names and numbers (:mod:`k3c.signals`), 400 for another. What the
  signal does is the process's business. The CLI and the Docker API record the request on the object first
  (:func:`k3c.containerlife.kill_patch`: docker's ``kill`` event, and docker's rule that what it ends is not
  restarted), and send SIGKILL as the object's stop without grace instead, so the operator records the stop.
- ``GET .../top?ps_args=-ef``: docker's ``{"Titles": [...], "Processes": [[...]]}``, from ``ps`` run on the
  host and filtered to the container's pids (:mod:`k3c.streams.top`), as dockerd does.
- ``GET .../stats?stream=true|false&one-shot=``: docker's stats document (:mod:`k3c.streams.stats`), one
  per second as JSON lines while streaming.
- ``.../archive?path=`` (`cp`, :mod:`k3c.streams.archive`): ``HEAD`` answers docker's path stat in the
  ``X-Docker-Container-Path-Stat`` header (base64 JSON), ``GET`` adds a tar of the path, ``PUT`` extracts
  the tar it is sent into the directory ``path`` (``copyUIDGID=true`` keeps the owners,
  ``noOverwriteDirNonDir=true`` refuses to replace a directory by a file or the reverse), as docker's API.
- ``GET .../changes`` (`diff`, :mod:`k3c.streams.changes`): docker's ``[{"Path": …, "Kind": 0|1|2}]``.
- ``GET .../export``: the container's own filesystem as a tar (:func:`k3c.streams.archive.write_root_tar`).

``archive``, ``changes`` and ``export`` work on a stopped container too, as docker's do: on the snapshot
holding its writable layer (:mod:`k3c.streams.stoppedroots`), where what `cp` writes waits for its next start.

Refusals are docker's words in a 409 Status (``Container <ID> is not running``), one line.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any, cast

from aiohttp import web

from k3c import dockerid, signals
from k3c.api import LOCAL_CONTAINERS
from k3c.apiserver import errors
from k3c.apiserver.subresources import Route, SubresourceHandler, SubresourceRequest
from k3c.cri.errors import RuntimeCallError
from k3c.cri.imagestore import ContainerdImages
from k3c.cri.snapshots import Snapshots
from k3c.cri.writablelayers import WritableLayers, lower_dirs, upper_dir
from k3c.dockerid import object_id

from . import archive, stats, top
from . import changes as diffs
from .containers import RuntimeContainer, runtime_container
from .queries import flag
from .runtimeclients import RuntimeClients
from .stoppedroots import StoppedRoots

#: The subresources :class:`ContainerOperations` serves, for discovery.
SUBRESOURCES = ("pause", "unpause", "kill", "top", "stats", "archive", "changes", "export")
#: The header docker's archive endpoints describe the path in.
PATH_STAT_HEADER = "X-Docker-Container-Path-Stat"
#: Bytes per chunk of an archive streamed out.
CHUNK = 1 << 16
#: Seconds between two documents of a stats stream (docker's collector interval).
STATS_INTERVAL = 1.0


class ContainerOperations(RuntimeClients):
    """The node-side operations over one containerd; gRPC channels open on first use."""

    def __init__(self, cri_address: str, containerd_address: str) -> None:
        super().__init__(cri_address, containerd_address)
        self._store: ContainerdImages | None = None
        self._stopped: StoppedRoots | None = None

    def routes(self) -> Mapping[Route, SubresourceHandler]:
        group, plural = LOCAL_CONTAINERS.group, LOCAL_CONTAINERS.plural
        return {Route(group, plural, "pause"): self.pause, Route(group, plural, "unpause"): self.unpause,
                Route(group, plural, "kill"): self.kill,
                Route(group, plural, "top"): self.top, Route(group, plural, "stats"): self.stats,
                Route(group, plural, "archive"): self.archive, Route(group, plural, "changes"): self.changes,
                Route(group, plural, "export"): self.export}

    @property
    def stopped(self) -> StoppedRoots:
        if self._stopped is None:
            self._store = ContainerdImages(self.containerd_address)
            self._stopped = StoppedRoots(self.cri, WritableLayers(Snapshots(self._store)))
        return self._stopped

    async def close(self) -> None:
        await super().close()
        if self._store is not None:
            await self._store.close()
        self._store = None
        self._stopped = None

    async def _running(self, req: SubresourceRequest) -> tuple[dict[str, Any], RuntimeContainer]:
        """The object and its running container; docker's 409 otherwise."""
        obj = await req.parent()
        rc = await _call(runtime_container(self.cri, obj, verbose=True))
        if rc is None or not rc.running:
            raise errors.APIError(409, "Conflict", f"Container {object_id(obj)} is not running")
        return obj, rc

    # ---- pause / unpause ----

    async def pause(self, req: SubresourceRequest) -> web.StreamResponse:
        """docker pause: freeze the container's processes (``Container <ID> is already paused`` twice)."""
        _post_only(req)
        obj, rc = await self._running(req)
        if await _call(self.tasks.paused(rc.id)):
            raise errors.APIError(409, "Conflict", f"Container {object_id(obj)} is already paused")
        await _call(self.tasks.pause(rc.id))
        return _success()

    async def unpause(self, req: SubresourceRequest) -> web.StreamResponse:
        """docker unpause: thaw a paused container (``Container <ID> is not paused`` otherwise)."""
        _post_only(req)
        obj = await req.parent()
        rc = await _call(runtime_container(self.cri, obj))
        if rc is None or not rc.running or not await _call(self.tasks.paused(rc.id)):
            raise errors.APIError(409, "Conflict", f"Container {object_id(obj)} is not paused")
        await _call(self.tasks.resume(rc.id))
        return _success()

    # ---- kill ----

    async def kill(self, req: SubresourceRequest) -> web.StreamResponse:
        """docker kill -s: one signal to the container's init (docker's default, SIGKILL, when none is named)."""
        _post_only(req)
        text = req.http.query.get("signal", "") or "KILL"
        try:
            number = signals.signal_number(text)
        except ValueError as err:
            raise errors.bad_request(str(err)) from None
        _, rc = await self._running(req)
        await _call(self.tasks.kill(rc.id, number))
        return _success()

    # ---- top ----

    async def top(self, req: SubresourceRequest) -> web.StreamResponse:
        """docker top: ``ps`` on the node over the container's processes."""
        if req.http.method != "GET":
            raise errors.method_not_allowed()
        ps_args = req.http.query.get("ps_args", "") or top.DEFAULT_PS_ARGS
        try:
            args = top.parse_ps_args(ps_args)
        except top.TopError as err:
            raise errors.bad_request(str(err)) from None
        _, rc = await self._running(req)
        pids = await _call(self.tasks.list_pids(rc.id))
        try:
            listing = await top.run_ps(args, pids)
        except top.TopError as err:  # docker's words alone; ps refusing the caller's options is their bad input
            raise errors.bad_request(str(err)) from None
        return web.json_response(listing)

    # ---- stats ----

    async def stats(self, req: SubresourceRequest) -> web.StreamResponse:
        """docker stats: one document (``stream=false``), or one a second as JSON lines."""
        request = req.http
        if request.method != "GET":
            raise errors.method_not_allowed()
        stream = flag(request.query, "stream", True)
        one_shot = flag(request.query, "one-shot")
        obj = await req.parent()
        rc = await _call(runtime_container(self.cri, obj, verbose=True))
        running = rc is not None and rc.running and rc.pid > 0
        target = stats.Target.of(obj, rc.pid if running and rc is not None else 0)
        if not stream:
            doc = await asyncio.to_thread(stats.document, target, None)
            if running and not one_shot:  # docker's first answer carries the previous second's sample
                await asyncio.sleep(STATS_INTERVAL)
                doc = await asyncio.to_thread(stats.document, target, doc)
            return web.json_response(doc)
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        await resp.prepare(request)
        previous: dict[str, Any] | None = None
        with contextlib.suppress(ConnectionError):
            while request.transport is not None and not request.transport.is_closing():
                previous = await asyncio.to_thread(stats.document, target, previous)
                await resp.write(json.dumps(previous).encode() + b"\n")
                if not target.pid:
                    break  # a stopped container's zeros once, as docker's stream ends for it
                await asyncio.sleep(STATS_INTERVAL)
            await resp.write_eof()
        return resp

    # ---- archive ----

    async def archive(self, req: SubresourceRequest) -> web.StreamResponse:
        """docker's /containers/ID/archive: HEAD (stat), GET (stat and tar), PUT (extract)."""
        request = req.http
        path = request.query.get("path", "")
        if not path:
            raise errors.bad_request("path is required")
        if request.method not in ("GET", "HEAD", "PUT"):
            raise errors.method_not_allowed()
        obj = await req.parent()
        rc = await _call(runtime_container(self.cri, obj, verbose=True))
        if rc is not None and rc.running:
            return await self._archive_at(req, obj, Path(f"/proc/{rc.pid}/root"), path)
        async with self.stopped.mounted(obj, rc, writable=request.method == "PUT") as where:
            return await self._archive_at(req, obj, where, path)

    async def _archive_at(self, req: SubresourceRequest, obj: dict[str, Any], base: Path,
                          path: str) -> web.StreamResponse:
        """The archive request on the container root ``base`` (its init's root, or a stopped one mounted)."""
        request = req.http
        try:
            root = archive.open_root(base)
        except OSError as err:
            raise errors.internal(f"cannot reach the container's filesystem: {err.strerror}") from None
        try:
            if request.method == "PUT":
                await self._extract(req, base, root, path)
                return _success()
            stat_doc = await asyncio.to_thread(_stat, root, path, obj)
            header = {PATH_STAT_HEADER: base64.b64encode(json.dumps(stat_doc).encode()).decode()}
            if request.method == "HEAD":
                return web.Response(headers=header)
            return await self._send_tar(request, lambda out: archive.write_tar(root, path, out), header)
        finally:
            os.close(root)

    # ---- changes / export ----

    async def changes(self, req: SubresourceRequest) -> web.StreamResponse:
        """docker diff: the container's changes to its image's filesystem."""
        if req.http.method != "GET":
            raise errors.method_not_allowed()
        obj = await req.parent()
        rc = await _call(runtime_container(self.cri, obj, verbose=True))
        try:
            if rc is not None and rc.running:
                layers = await asyncio.to_thread(diffs.root_layers, rc.pid)
            else:
                mounts = await _call(self.stopped.mounts(obj, rc))
                layers = diffs.RootLayers(upper_dir(mounts), lower_dirs(mounts), self.stopped.mountpoints(rc))
            found = await asyncio.to_thread(diffs.changes, layers)
        except (diffs.NoOverlay, OSError) as err:
            raise errors.internal(str(err)) from None
        return web.json_response([{"Path": path, "Kind": diffs.KIND_NUMBER[kind]} for kind, path in found])

    async def export(self, req: SubresourceRequest) -> web.StreamResponse:
        """docker export: the container's filesystem, without what is mounted on it."""
        if req.http.method != "GET":
            raise errors.method_not_allowed()
        obj = await req.parent()
        rc = await _call(runtime_container(self.cri, obj, verbose=True))
        if rc is not None and rc.running:
            return await self._export_at(req, Path(f"/proc/{rc.pid}/root"))
        async with self.stopped.mounted(obj, rc, writable=False) as where:
            return await self._export_at(req, where)

    async def _export_at(self, req: SubresourceRequest, base: Path) -> web.StreamResponse:
        try:
            root = archive.open_root(base)
        except OSError as err:
            raise errors.internal(f"cannot reach the container's filesystem: {err.strerror}") from None
        try:
            return await self._send_tar(req.http, lambda out: archive.write_root_tar(root, out), {})
        finally:
            os.close(root)

    async def _extract(self, req: SubresourceRequest, base: Path, root: int, path: str) -> None:
        """The request's tar, spooled to a temporary file first (tarfile reads blocking), then extracted."""
        keep = flag(req.http.query, "copyUIDGID")
        no_replace = flag(req.http.query, "noOverwriteDirNonDir")
        with tempfile.TemporaryFile() as spool:
            async for chunk in req.http.content.iter_chunked(CHUNK):
                await asyncio.to_thread(spool.write, chunk)
            spool.seek(0)
            try:
                await asyncio.to_thread(archive.extract_tar, base, root, path, spool, keep, no_replace)
            except archive.PathError as err:
                raise _path_error(err, path, req.name or "") from None

    async def _send_tar(self, request: web.Request, write: Callable[[IO[bytes]], None],
                        header: dict[str, str]) -> web.StreamResponse:
        resp = web.StreamResponse(headers={**header, "Content-Type": "application/x-tar"})
        await resp.prepare(request)
        loop = asyncio.get_running_loop()
        chunks: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=16)
        pipe = _QueueWriter(loop, chunks)

        def produce() -> None:
            try:
                write(cast(IO[bytes], pipe))
            finally:
                pipe.close_queue()

        producer = loop.run_in_executor(None, produce)
        try:
            while (chunk := await chunks.get()) is not None:
                await resp.write(chunk)
            await producer
            await resp.write_eof()
        except ConnectionError:
            pipe.cancelled = True
            while not producer.done():  # let the thread finish on a full queue
                with contextlib.suppress(asyncio.QueueEmpty):
                    chunks.get_nowait()
                await asyncio.sleep(0.01)
        return resp


class _QueueWriter(io.RawIOBase):
    """A file for the tar writer's thread whose bytes go to the event loop's queue, a chunk at a time."""

    def __init__(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[bytes | None]) -> None:
        self.loop, self.queue, self.cancelled = loop, queue, False

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        if self.cancelled:
            raise BrokenPipeError("the client went away")
        asyncio.run_coroutine_threadsafe(self.queue.put(bytes(data)), self.loop).result()
        return len(data)

    def close_queue(self) -> None:
        asyncio.run_coroutine_threadsafe(self.queue.put(None), self.loop).result()


def _stat(root: int, path: str, obj: dict[str, Any]) -> dict[str, Any]:
    try:
        return archive.path_stat(root, path)
    except archive.PathError as err:
        raise _path_error(err, path, dockerid.docker_name(obj)) from None


def _path_error(err: archive.PathError, path: str, name: str) -> errors.APIError:
    """docker's words: 404 ``Could not find the file PATH in container NAME``, else 400."""
    if err.missing:
        return errors.APIError(404, "NotFound", f"Could not find the file {path} in container {name}")
    return errors.bad_request(str(err))


def _post_only(req: SubresourceRequest) -> None:
    if req.http.method not in ("POST", "PUT"):
        raise errors.method_not_allowed()


def _success() -> web.Response:
    return web.json_response({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"})


async def _call(coro: Any) -> Any:
    """A containerd call: its failure becomes a 500 Status, one line."""
    try:
        return await coro
    except RuntimeCallError as err:
        raise errors.internal(err.details or str(err)) from None
