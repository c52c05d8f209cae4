"""The ``log`` and ``context`` subresources of ImageBuild, served by k3c's API server.

The daemon mounts :class:`BuildSubresources` on its API server (:mod:`k3c.apiserver.subresources`) with
k3c's root dir. The operator (another process on the same node) and the API server share that directory:

- ``GET .../imagebuilds/NAME/log[?follow=true][&tailLines=N]`` answers ``text/plain``, like pods/log: the
  build's output, which the operator appends to ``<root>/builds/logs/<uid>.log`` line by line. Following
  polls the file for growth and ends once the object's ``Succeeded`` condition is no longer Unknown for
  its current generation (the operator writes the last line before the status), or when the object is
  deleted. A build restarted for a new generation truncates the file; a follower then starts over.
- ``POST .../imagebuilds/NAME/context`` with a tar (optionally gzip) body stores it as
  ``<root>/builds/uploads/<ns>/NAME/<sha256>.tar`` and answers ``{"digest": "sha256:…", "size": N}``, plus
  ``"node"`` on a cluster (a node agent's stream server took it: the build must run on that node).
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
from k3c.apiserver.subresources import ParentReader, Route, SubresourceHandler, SubresourceRequest
from k3c.builder.paths import BuildPaths

__all__ = ["BuildSubresources"]

#: How often a follower looks for new output (and, when there is none, whether the build is over).
POLL_INTERVAL = 0.02
CHUNK = 256 * 1024
#: An upload whose ImageBuild never appeared is removed after this many seconds.
STALE_UPLOAD = 3600.0
#: gzip and the ustar magic at offset 257: what a context upload may start with.
_GZIP_MAGIC = b"\x1f\x8b"


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
    """The aiohttp side of the two subresources (see the module docstring); a subresource provider."""

    def __init__(self, paths: BuildPaths, node: str = "") -> None:
        self.paths = paths
        #: the node the uploads are on, said in the answer when the node is one of a cluster's
        self.node = node

    def routes(self) -> Mapping[Route, SubresourceHandler]:
        """ImageBuild's ``log`` and ``context``."""
        group, plural = IMAGE_BUILDS.group, IMAGE_BUILDS.plural
        return {Route(group, plural, "log"): self.log, Route(group, plural, "context"): self.context}

    @staticmethod
    async def _object(req: SubresourceRequest) -> dict[str, Any] | None:
        try:
            return await req.parent()
        except errors.APIError as err:
            if err.code == 404:
                return None
            raise

    # ---- log ----

    async def log(self, req: SubresourceRequest) -> web.StreamResponse:
        request = req.http
        if request.method != "GET":
            raise errors.method_not_allowed()
        follow = _flag(request.query, "follow")
        tail = _int(request.query, "tailLines")
        obj = await self._object(req)
        if obj is None:
            raise errors.not_found(IMAGE_BUILDS.plural, IMAGE_BUILDS.group, req.name or "")
        uid = obj["metadata"]["uid"]
        resp = web.StreamResponse(headers={"Content-Type": "text/plain; charset=utf-8"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        path = self.paths.log_file(uid)
        offset = _tail_offset(path, tail) if tail is not None else 0
        if follow:
            await self._follow(resp, req, uid, path, offset)
        else:
            await self._copy_new(resp, path, offset)
        with contextlib.suppress(ConnectionResetError):
            await resp.write_eof()
        return resp

    async def _follow(self, resp: web.StreamResponse, req: SubresourceRequest, uid: str, path: Path,
                      offset: int) -> None:
        """Copy the log file as it grows, until the build is over.

        The end is noticed the moment the object changes (a change subscription wakes the loop: a build
        answered from cache is over in milliseconds, and the CLI waits for this stream); new log lines are
        picked up every :data:`POLL_INTERVAL`.
        """
        async with req.parents.changes(req.namespace, req.name or "") as changes:
            while True:
                offset, wrote = await self._copy_new(resp, path, offset)
                if not wrote:
                    obj = await self._object(req)
                    if obj is None or obj["metadata"]["uid"] != uid or build_finished(obj):
                        await self._copy_new(resp, path, offset)  # the last lines precede the status
                        return
                    await changes.wait(POLL_INTERVAL)

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

    async def context(self, req: SubresourceRequest) -> web.Response:
        request = req.http
        if request.method not in ("POST", "PUT"):
            raise errors.method_not_allowed()
        if not req.namespace or not req.name:
            raise errors.bad_request("a context upload needs a namespace and an ImageBuild name")
        dest_dir = self.paths.upload_dir(req.namespace, req.name)
        dest_dir.mkdir(parents=True, exist_ok=True)
        await self._sweep_stale(req.parents)
        tmp = dest_dir / f".upload-{uuid.uuid4().hex}"
        try:
            digest, size = await self._receive(request, tmp)
            final = dest_dir / f"{digest.split(':', 1)[1]}.tar"
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
        body = {"kind": "ContextUpload", "apiVersion": IMAGE_BUILDS.api_version, "digest": digest,
                "size": size, **({"node": self.node} if self.node else {})}
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

    async def _sweep_stale(self, builds: ParentReader) -> None:
        """Remove upload directories older than :data:`STALE_UPLOAD` whose ImageBuild does not exist."""
        for build_dir in await asyncio.to_thread(self._old_uploads):
            try:
                await builds.get(build_dir.parent.name, build_dir.name)
            except errors.APIError:
                await asyncio.to_thread(shutil.rmtree, build_dir, ignore_errors=True)

    def _old_uploads(self) -> list[Path]:
        """Upload directories (``<ns>/<name>``) last touched more than :data:`STALE_UPLOAD` seconds ago."""
        now = time.time()
        if not self.paths.uploads.is_dir():
            return []
        old = []
        for ns_dir in self.paths.uploads.iterdir():
            for build_dir in ns_dir.iterdir() if ns_dir.is_dir() else []:
                with contextlib.suppress(FileNotFoundError):
                    if now - build_dir.stat().st_mtime > STALE_UPLOAD:
                        old.append(build_dir)
        return old


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
