"""``POST /build`` (docker's classic builder API): the tar in the body becomes an ImageBuild, its log docker's lines.

As `k3c build` does it with an uploaded context (:mod:`k3c.buildlife`): the body is streamed to the
ImageBuild's ``context`` subresource, which stores it on the node's disk with its own checks (a tar,
optionally gzip; the builder extracts it with :mod:`k3c.untar`, so no member escapes), then the ImageBuild
names the upload by digest and its ``log`` subresource is followed. Each log line becomes docker's
``{"stream": …}`` (``STEP 1/3: FROM …`` as ``Step 1/3 : FROM …``); a success ends with
``{"aux": {"ID": …}}`` and ``Successfully built/tagged``, a failure with ``errorDetail``. A client that
goes away cancels the build (the ImageBuild is deleted).

Query parameters outside :data:`HONOURED` are refused with 400 when set to anything but a zero value, as
create's HostConfig is: a build must not silently ignore what it was asked. BuildKit's session API
(``/session``, ``/grpc``, ``version=2``) is refused with an error that names the classic path.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from aiohttp.http_writer import StreamWriter

from k3c import apierrors
from k3c.api import IMAGE_BUILDS
from k3c.buildlife import (
    FAILED_LINE,
    NETWORKS,
    STEP_RE,
    BuildRequest,
    failure,
    finished,
    imagebuild_object,
    step_instruction,
)
from k3c.dockerapi import bodies
from k3c.dockerapi.cluster import Cluster
from k3c.dockerapi.errors import BadParameter, DockerError
from k3c.dockerapi.images import wait_shown
from k3c.dockerapi.jsonstream import JSONStream
from k3c.dockerapi.streams import APISession, api_session
from k3c.oci.reference import InvalidReference, parse

BUILDKIT_REFUSED = ("BuildKit is not supported by k3c's Docker API: build with the classic builder "
                    "(DOCKER_BUILDKIT=0 docker build …), or with `k3c build`")
#: what ``POST /build`` honours; ``rm``/``forcerm`` are accepted (k3c keeps no intermediate containers)
HONOURED = frozenset({"t", "dockerfile", "buildargs", "labels", "target", "nocache", "pull", "q", "rm",
                      "forcerm", "platform", "networkmode", "version"})
#: what clients send as "not set" for the parameters k3c does not honour
ZERO_VALUES = frozenset({"", "0", "false", "null", "[]", "{}"})
CHUNK = 1 << 20
#: how long a BuildKit session connection is held open for a client that never hangs up
SESSION_HOLD = 60.0
#: how long, once the log has ended, the object may take to say the build is over
FINISH_TIMEOUT = 30.0


async def buildkit_session(request: web.Request) -> web.StreamResponse:
    """``/session`` and ``/grpc``: BuildKit's, which k3c does not serve.

    The docker CLI opens the session (an ``h2c`` upgrade) before it posts the build and, when the upgrade
    is refused, says only "unable to upgrade to h2c, received 400". So the upgrade is granted and the
    connection held, silent, until the client hangs up: the CLI goes on to ``POST /build?version=2``,
    whose refusal it prints (:data:`BUILDKIT_REFUSED`)."""
    if request.headers.get("Upgrade", "").lower() != "h2c":
        raise BadParameter(BUILDKIT_REFUSED)
    response = web.StreamResponse(status=101, reason="Switching Protocols",
                                  headers={"Connection": "Upgrade", "Upgrade": "h2c"})
    response.force_close()
    await response.prepare(request)
    if isinstance(request.writer, StreamWriter):
        request.writer.send_headers()  # now: the client waits for them before it sends its build
    with contextlib.suppress(TimeoutError, ConnectionError):
        async with asyncio.timeout(SESSION_HOLD):
            while await request.content.read(CHUNK):
                pass
    if request.transport is not None:
        request.transport.close()
    return response


def _json_map(request: web.Request, name: str) -> dict[str, str]:
    """``buildargs``/``labels``: a JSON object of strings (a null value is left out, as docker does)."""
    raw = request.query.get(name, "")
    if raw in ("", "null"):
        return {}
    try:
        doc = json.loads(raw)
    except ValueError as err:
        raise BadParameter(f"invalid {name}: {err}") from None
    if not isinstance(doc, dict) or not all(isinstance(v, str | None) for v in doc.values()):
        raise BadParameter(f"invalid {name}: want a JSON object of strings")
    return {str(k): v for k, v in doc.items() if v is not None}


def build_request(request: web.Request) -> tuple[BuildRequest, bool]:
    """(what to build, quiet) from the query; 400 for what k3c cannot honour."""
    query = request.query
    if query.get("version") == "2":
        raise BadParameter(BUILDKIT_REFUSED)
    if query.get("remote"):
        raise BadParameter("remote build contexts are not supported by k3c's Docker API: send the context as a tar")
    for key in query:
        if key not in HONOURED and query[key].strip() not in ZERO_VALUES:
            raise BadParameter(f"k3c does not support the build parameter {key}={query[key]!r}")
    tags = query.getall("t", [])
    for tag in tags:
        try:
            parse(tag)
        except InvalidReference as err:
            raise BadParameter(f"invalid reference format: {tag!r}: {err}") from None
    network = query.get("networkmode", "") or "default"
    if network not in NETWORKS:
        raise BadParameter(f'network mode "{network}" not supported by k3c build ({", ".join(NETWORKS)})')
    req = BuildRequest({}, dockerfile=query.get("dockerfile", ""), build_args=_json_map(request, "buildargs"),
                       labels=_json_map(request, "labels"), tags=list(tags), target=query.get("target", ""),
                       no_cache=bodies.flag(request, "nocache"), pull=bodies.flag(request, "pull"),
                       platform=query.get("platform", ""), network=network)
    return req, bodies.flag(request, "q")


async def build(request: web.Request) -> web.StreamResponse:
    req, quiet = build_request(request)
    cluster: Cluster = request.app["cluster"]
    name = "build-" + os.urandom(5).hex()
    namespace = cluster.namespace
    paths = await cluster.call(lambda c: {sub: c.stream_path(IMAGE_BUILDS, namespace, name, sub)
                                          for sub in ("context", "log")})
    stream = JSONStream(request)
    async with api_session(cluster.connection()) as api:
        digest, req.node = await _upload(api, paths["context"], request)
        req.context = {"upload": {"digest": digest}}
        await cluster.create(IMAGE_BUILDS, imagebuild_object(name, req, "k3c-docker-api"))
        try:
            async for line in _log(api, paths["log"]):
                message = docker_line(line)
                if message is not None and not quiet:
                    await stream.send({"stream": message})
            obj = await _finished(cluster, name)
        except BaseException:  # the client left (or we failed): the build is canceled, not left running
            with contextlib.suppress(apierrors.APIError, OSError):
                await asyncio.shield(cluster.delete(IMAGE_BUILDS, name))
            raise
    await _report(cluster, obj, req, quiet, stream)
    return await stream.finish()


async def _upload(api: APISession, path: str, request: web.Request) -> tuple[str, str]:
    """The body to the ``context`` subresource: (its digest, the node that keeps it on a cluster)."""
    async def body() -> AsyncIterator[bytes]:
        async for chunk in request.content.iter_chunked(CHUNK):
            yield chunk

    headers = {**api.headers, "Content-Type": "application/x-tar", "Accept": "application/json"}
    async with api.session.post(api.base + path, data=body(), headers=headers, ssl=api.ssl) as resp:
        raw = await resp.read()
    try:
        doc = json.loads(raw or b"{}")
    except ValueError:
        doc = {}
    if resp.status >= 400:
        message = doc.get("message") or raw.decode(errors="replace") or f"HTTP {resp.status}"
        raise (BadParameter if resp.status == 400 else DockerError)(f"the build context was refused: {message}")
    return str(doc["digest"]), str(doc.get("node") or "")


async def _log(api: APISession, path: str) -> AsyncIterator[str]:
    """The build's log lines until the build is over."""
    async with api.session.get(api.base + path, params={"follow": "true"},
                               headers={**api.headers, "Accept": "text/plain, */*"}, ssl=api.ssl) as resp:
        if resp.status >= 400:
            raw = await resp.read()
            raise DockerError(f"the build log could not be read: {raw.decode(errors='replace')}")
        async for raw_line in resp.content:
            yield raw_line.decode(errors="replace").rstrip("\n")


def docker_line(line: str) -> str | None:
    """A builder's log line as docker's classic builder prints it (None: not shown)."""
    if line.startswith(FAILED_LINE):
        return None  # the closing line: the failure is said once more, as errorDetail
    step = STEP_RE.match(line)
    if step:
        return f"Step {step['n']}/{step['total']} : {step['text']}\n"
    if line.startswith("--> Using cache"):
        return " ---> Using cache\n"
    return line + "\n"


async def _finished(cluster: Cluster, name: str) -> dict[str, Any]:
    """The object once its build is over (the log ends just before the status says so)."""
    deadline = time.monotonic() + FINISH_TIMEOUT
    while True:
        obj = await cluster.get(IMAGE_BUILDS, name)
        if obj is None:
            raise DockerError("the build was canceled (its ImageBuild was deleted)")
        if finished(obj):
            return obj
        if time.monotonic() > deadline:
            raise DockerError(f"build {name} did not finish: {(obj.get('status') or {}).get('message', '')}")
        await asyncio.sleep(0.1)


async def _report(cluster: Cluster, obj: dict[str, Any], req: BuildRequest, quiet: bool,
                  stream: JSONStream) -> None:
    status = obj.get("status") or {}
    if status.get("phase") != "Succeeded":
        step, code, message = failure(status)
        instruction = step_instruction(step)
        if instruction.upper().startswith("RUN ") and code is not None:  # docker's words for a failed RUN
            args = instruction[4:].strip()
            cmd = args if args.startswith("[") else f"/bin/sh -c {args}"
            message = f"The command '{cmd}' returned a non-zero code: {code}"
        elif step and code is not None:
            message = f'build failed at step "{instruction}": exit code {code}'
        await stream.error(message)
        return
    image_id = str(status.get("imageID") or "")
    await wait_shown(cluster, req.tags)
    await stream.send({"aux": {"ID": image_id}})
    if quiet:
        await stream.send({"stream": image_id + "\n"})
        return
    await stream.send({"stream": f"Successfully built {image_id.removeprefix('sha256:')[:12]}\n"})
    for tag in req.tags:
        await stream.send({"stream": f"Successfully tagged {parse(tag).familiar()}\n"})

