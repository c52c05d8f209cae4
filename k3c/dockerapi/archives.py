"""``docker save`` and ``docker load``: image archives streamed through the Image ``save``/``load`` subresources.

The same subresources `k3c save` and `k3c load` use (:mod:`k3c.archives.subresource`): the archive is
docker's (``docker-archive``) and passes through as it streams, never held whole. Every name is resolved
before the first byte (an unknown one is docker's 404 "No such image"); a load answers docker's
``{"stream": "Loaded image: …"}`` lines once the loaded references are images `docker images` shows.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator

from aiohttp import web

from k3c import imagelife
from k3c.api import IMAGES
from k3c.dockerapi import bodies
from k3c.dockerapi.cluster import Cluster
from k3c.dockerapi.errors import BadParameter, DockerError
from k3c.dockerapi.errors import NotFound as NoSuch
from k3c.dockerapi.images import find, ready_images, wait_shown
from k3c.dockerapi.jsonstream import JSONStream
from k3c.dockerapi.streams import api_session
from k3c.oci.reference import InvalidReference, parse

CHUNK = 1 << 20
ANY = "-"  #: the subresources' "no particular object"


async def save_many(request: web.Request) -> web.StreamResponse:
    """``GET /images/get?names=…``: one archive of every image named."""
    return await _save(request, request.query.getall("names", []))


async def save_one(request: web.Request) -> web.StreamResponse:
    """``GET /images/{name}/get``."""
    return await _save(request, [request.match_info["name"]])


async def _save(request: web.Request, names: list[str]) -> web.StreamResponse:
    if not names:
        raise BadParameter("no images to save: give names")
    cluster: Cluster = request.app["cluster"]
    images = await ready_images(cluster)
    refs = [imagelife.reference_of(find(images, name)) for name in names]
    path = await cluster.call(lambda c: c.stream_path(IMAGES, None, ANY, "save"))
    query = [("format", "docker-archive")] + [("image", r) for r in refs]
    async with api_session(cluster.connection()) as api, \
            api.session.get(api.base + path, params=query, headers={**api.headers, "Accept": "*/*"},
                            ssl=api.ssl) as resp:
        if resp.status >= 400:
            raise _refused(resp.status, await resp.read(), "save")
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/x-tar"})
        await response.prepare(request)
        with contextlib.suppress(ConnectionError):  # the client left: the archive just ends
            async for chunk in resp.content.iter_chunked(CHUNK):
                await response.write(chunk)
            await response.write_eof()
        return response


async def load(request: web.Request) -> web.StreamResponse:
    """``POST /images/load``: the archive in the body; docker's "Loaded image" lines."""
    cluster: Cluster = request.app["cluster"]
    path = await cluster.call(lambda c: c.stream_path(IMAGES, None, ANY, "load"))

    async def body() -> AsyncIterator[bytes]:
        async for chunk in request.content.iter_chunked(CHUNK):
            yield chunk

    async with api_session(cluster.connection()) as api, \
            api.session.post(api.base + path, data=body(), ssl=api.ssl,
                             headers={**api.headers, "Content-Type": "application/x-tar", "Accept": "*/*"}) as resp:
        raw = await resp.read()
    if resp.status >= 400:
        raise _refused(resp.status, raw, "load")
    loaded = json.loads(raw).get("images") or []
    named = [i["name"] for i in loaded if not i["name"].startswith("sha256:")]
    await wait_shown(cluster, named)
    stream = JSONStream(request)
    for image in loaded:
        if image["name"].startswith("sha256:"):
            await stream.send({"stream": f"Loaded image ID: {image['id']}\n"})
        else:
            await stream.send({"stream": f"Loaded image: {_familiar(image['name'])}\n"})
    if not loaded and not bodies.flag(request, "quiet"):
        await stream.send({"stream": "No images were loaded\n"})
    return await stream.finish()


def _familiar(name: str) -> str:
    try:
        return parse(name).familiar()
    except InvalidReference:
        return name


def _refused(status: int, raw: bytes, what: str) -> DockerError:
    """The subresource's refusal (a Status) as docker's error: 400 for a bad archive, 404 for a missing image."""
    try:
        message = json.loads(raw).get("message") or raw.decode(errors="replace")
    except ValueError:
        message = raw.decode(errors="replace")
    message = message.strip() or f"{what} failed (HTTP {status})"
    return {400: BadParameter, 404: NoSuch}.get(status, DockerError)(message)
