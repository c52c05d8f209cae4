"""The ``log`` and ``context`` subresources of ImageBuild, served by k3c's API server.

The daemon calls :func:`register` once with its :class:`~k3c.apiserver.handlers.APIHandler` and k3c's root
dir. The operator (another process on the same node) and the API server share that directory:

- ``GET .../imagebuilds/NAME/log[?follow=true][&tailLines=N]`` answers ``text/plain``, like pods/log: the
  build's output, which the operator appends to ``<root>/builds/logs/<uid>.log`` line by line. Following
  polls the file for growth and ends once the object's ``Succeeded`` condition is no longer Unknown for
  its current generation (the operator writes the last line before the status), or when the object is
  deleted. A build restarted for a new generation truncates the file; a follower then starts over.
- ``POST .../imagebuilds/NAME/context`` with a tar (optionally gzip) body stores it as
  ``<root>/builds/uploads/<ns>/NAME/<sha256>.tar`` and answers ``{"digest": "sha256:…", "size": N}``.
  The client uploads *before* it creates the ImageBuild (whose ``spec.context.upload.digest`` names the
  upload), so the build never waits for bytes. The body is streamed to disk, never held in memory, so
  large contexts are fine (the API's JSON size limit does not apply). Uploads nobody built from are
  removed after :data:`STALE_UPLOAD` seconds; the operator removes an upload once its build is over.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aiohttp import web

from k3c.api import IMAGE_BUILDS
from k3c.apiserver import errors
from k3c.apiserver.handlers import APIHandler, Target

__all__ = ["BuildPaths", "BuildSubresources", "register"]

#: How often a follower looks for new output (and, when there is none, whether the build is over).
POLL_INTERVAL = 0.02
CHUNK = 256 * 1024
#: An upload whose ImageBuild never appeared is removed after this many seconds.
STALE_UPLOAD = 3600.0
#: gzip and the ustar magic at offset 257: what a context upload may start with.
_GZIP_MAGIC = b"\x1f\x8b"


class BuildPaths:
    """Where build logs, uploads and temporary contexts live under k3c's root dir (shared with the operator)."""

    def __init__(self, root_dir: str | os.PathLike[str]) -> None:
        self.root = Path(root_dir).absolute() / "builds"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def uploads(self) -> Path:
        return self.root / "uploads"

    @property
    def work(self) -> Path:
        return self.root / "work"

    def log_file(self, uid: str) -> Path:
        return self.logs / f"{uid}.log"

    def upload_dir(self, namespace: str, name: str) -> Path:
        return self.uploads / namespace / name


def register(handler: APIHandler, root_dir: str | os.PathLike[str]) -> BuildSubresources:
    """Serve ImageBuild's ``log`` and ``context`` subresources from ``handler`` (the daemon calls this)."""
    subs = BuildSubresources(handler, BuildPaths(root_dir))
    handler.subresources[(IMAGE_BUILDS.group, IMAGE_BUILDS.plural, "log")] = subs.log
    handler.subresources[(IMAGE_BUILDS.group, IMAGE_BUILDS.plural, "context")] = subs.context
    return subs


def _flag(query: Mapping[str, str], name: str) -> bool:
    value = query.get(name, "").strip().lower()
    if value in ("", "false", "0", "no"):
        return False
    if value in ("true", "1", "yes"):
        return True
    raise errors.bad_request(f"invalid value for {name}: {query[name]!r} (want true or false)")


def _int(query: Mapping[str, str], name: str) -> int | None:
    if name not in query:
        return None
    try:
        value = int(query[name])
    except ValueError:
        raise errors.bad_request(f"invalid value for {name}: {query[name]!r}") from None
    if value < 0:
        raise errors.bad_request(f"{name} must not be negative")
    return value


def build_finished(obj: dict[str, Any]) -> bool:
    """Whether the build of the object's current generation is over (Succeeded is True or False)."""
    status = obj.get("status") or {}
    if status.get("observedGeneration") != obj.get("metadata", {}).get("generation"):
        return False
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Succeeded":
            return cond.get("status") in ("True", "False")
    return False


class BuildSubresources:
    """The aiohttp side of the two subresources (see the module docstring)."""

    def __init__(self, handler: APIHandler, paths: BuildPaths) -> None:
        self.handler = handler
        self.paths = paths

    def _object(self, target: Target) -> dict[str, Any] | None:
        try:
            return self.handler.api.get(target.rtype, target.namespace, target.name or "").obj
        except errors.APIError as err:
            if err.code == 404:
                return None
            raise

    # ---- log ----

    async def log(self, request: web.Request, target: Target) -> web.StreamResponse:
        if request.method != "GET":
            raise errors.method_not_allowed()
        follow = _flag(request.query, "follow")
        tail = _int(request.query, "tailLines")
        obj = self._object(target)
        if obj is None:
            raise errors.not_found(IMAGE_BUILDS.plural, IMAGE_BUILDS.group, target.name or "")
        uid = obj["metadata"]["uid"]
        resp = web.StreamResponse(headers={"Content-Type": "text/plain; charset=utf-8"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        await self._stream(resp, target, uid, follow, tail)
        with contextlib.suppress(ConnectionResetError):
            await resp.write_eof()
        return resp

    async def _stream(self, resp: web.StreamResponse, target: Target, uid: str, follow: bool,
                      tail: int | None) -> None:
        """Copy the log file as it grows; with ``follow``, until the build is over.

        The end is noticed the moment the object changes (a subscription to its storage key wakes the
        loop: a build answered from cache is over in milliseconds, and the CLI waits for this stream);
        new log lines are picked up every :data:`POLL_INTERVAL`.
        """
        path = self.paths.log_file(uid)
        offset = _tail_offset(path, tail) if tail is not None else 0
        sub = self.handler.hub.subscribe(target.rtype.key(target.namespace, target.name or "")) if follow else None
        try:
            while True:
                offset, wrote = await self._copy_new(resp, path, offset)
                if sub is None:
                    return
                if not wrote:
                    obj = self._object(target)
                    if obj is None or obj["metadata"]["uid"] != uid or build_finished(obj):
                        await self._copy_new(resp, path, offset)  # the last lines precede the status
                        return
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(sub.queue.get(), POLL_INTERVAL)
        finally:
            if sub is not None:
                self.handler.hub.unsubscribe(sub)

    async def _copy_new(self, resp: web.StreamResponse, path: Path, offset: int) -> tuple[int, bool]:
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return 0, False
        if size < offset:  # the build restarted (new generation): its log starts over
            offset = 0
        wrote = False
        with open(path, "rb") as f:
            f.seek(offset)
            while chunk := f.read(CHUNK):
                await resp.write(chunk)
                offset += len(chunk)
                wrote = True
        return offset, wrote

    # ---- context upload ----

    async def context(self, request: web.Request, target: Target) -> web.Response:
        if request.method not in ("POST", "PUT"):
            raise errors.method_not_allowed()
        if not target.namespace or not target.name:
            raise errors.bad_request("a context upload needs a namespace and an ImageBuild name")
        dest_dir = self.paths.upload_dir(target.namespace, target.name)
        dest_dir.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(self._sweep_stale)
        tmp = dest_dir / f".upload-{uuid.uuid4().hex}"
        try:
            digest, size = await self._receive(request, tmp)
            final = dest_dir / f"{digest.split(':', 1)[1]}.tar"
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
        body = {"kind": "ContextUpload", "apiVersion": IMAGE_BUILDS.api_version, "digest": digest,
                "size": size}
        return web.json_response(body, status=201)

    async def _receive(self, request: web.Request, tmp: Path) -> tuple[str, int]:
        sha = hashlib.sha256()
        size = 0
        head = b""
        with open(tmp, "wb") as f:
            async for chunk in request.content.iter_chunked(CHUNK):
                if len(head) < 512:
                    head += chunk[: 512 - len(head)]
                sha.update(chunk)
                f.write(chunk)
                size += len(chunk)
        empty_tar = not head.strip(b"\0")  # a tar with no members is only zero blocks
        if not (head.startswith(_GZIP_MAGIC) or head[257:262] == b"ustar" or empty_tar):
            raise errors.bad_request("the context must be a tar archive (optionally gzip-compressed)")
        return "sha256:" + sha.hexdigest(), size

    def _sweep_stale(self) -> None:
        """Remove upload directories older than :data:`STALE_UPLOAD` whose ImageBuild does not exist."""
        now = time.time()
        if not self.paths.uploads.is_dir():
            return
        for ns_dir in self.paths.uploads.iterdir():
            for build_dir in ns_dir.iterdir() if ns_dir.is_dir() else []:
                with contextlib.suppress(FileNotFoundError):
                    if now - build_dir.stat().st_mtime > STALE_UPLOAD and not self._exists(ns_dir.name,
                                                                                          build_dir.name):
                        shutil.rmtree(build_dir, ignore_errors=True)

    def _exists(self, namespace: str, name: str) -> bool:
        rtype = self.handler.registry.lookup(IMAGE_BUILDS.group, IMAGE_BUILDS.version, IMAGE_BUILDS.plural)
        if rtype is None:
            return False
        try:
            self.handler.api.get(rtype, namespace, name)
        except errors.APIError:
            return False
        return True


def _tail_offset(path: Path, lines: int) -> int:
    """Byte offset where the last ``lines`` lines of the file start."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return 0
    if lines == 0:
        return len(data)
    end = len(data) - 1 if data.endswith(b"\n") else len(data)
    pos = end
    for _ in range(lines):
        pos = data.rfind(b"\n", 0, pos)
        if pos < 0:
            return 0
    return pos + 1
