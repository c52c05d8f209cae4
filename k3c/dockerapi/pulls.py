"""Pull (``POST /images/create``) and push (``POST /images/{name}/push``) as docker's JSON progress streams.

The same objects `k3c pull` and `k3c push` write (:mod:`k3c.imagelife`): a pull creates the reference's
Image object, or asks an existing one to pull again with a new ``spec.pullRequest``; a push is an
ImagePush, deleted once over. The operator's per-layer progress in their status becomes docker's layer
messages, polled rather than watched so that no worker thread waits on a long pull. A failure after the
200 is said in the stream (``errorDetail``), as dockerd does; ``X-Registry-Auth`` is used for the one call
(:mod:`k3c.dockerapi.registryauth`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable
from typing import Any

from aiohttp import web

from k3c import apierrors, imagelife
from k3c.api import IMAGE_PUSHES, IMAGES
from k3c.dockerapi import registryauth
from k3c.dockerapi.cluster import Cluster
from k3c.dockerapi.errors import BadParameter, DockerError
from k3c.dockerapi.errors import NotFound as NoSuch
from k3c.dockerapi.images import canonical, delete_image, find, image_object, ready_images
from k3c.dockerapi.jsonstream import JSONStream, LayerChanges
from k3c.oci.reference import InvalidReference, Reference, parse

PULL_TIMEOUT = 3600.0
POLL = 0.1


def _reference(text: str, tag: str) -> Reference:
    """``fromImage`` + ``tag`` (or a digest in ``tag``), as docker joins them; 400 if it is no reference."""
    if tag:
        text += ("@" if tag.startswith("sha256:") else ":") + tag
    try:
        return parse(text)
    except InvalidReference as err:
        raise BadParameter(str(err)) from None


async def _poll(get: Callable[[], Any], on_update: Callable[[dict[str, Any]], Any],
                done: Callable[[dict[str, Any]], bool], timeout: float) -> dict[str, Any] | None:
    """Read the object until ``done`` (None once it is gone); ``on_update`` sees each reading."""
    deadline = time.monotonic() + timeout
    while True:
        obj = await get()
        if obj is None:
            return None
        await on_update(obj)
        if done(obj):
            return dict(obj)
        if time.monotonic() > deadline:
            raise DockerError("timed out waiting for the operator")
        await asyncio.sleep(POLL)


# ---- pull ---------------------------------------------------------------------------------------------
async def create(request: web.Request) -> web.StreamResponse:
    """``docker pull``: ``fromImage`` and ``tag``; importing (``fromSrc``) is not served."""
    if request.query.get("fromSrc"):
        raise BadParameter("importing an image (fromSrc) is not supported by k3c's Docker API: use k3c import")
    if not request.query.get("fromImage"):
        raise BadParameter("fromImage is required")
    ref = _reference(request.query["fromImage"], request.query.get("tag", ""))
    cluster: Cluster = request.app["cluster"]
    stream = JSONStream(request)
    async with registryauth.call_secret(cluster, request, ref.domain) as auth:
        await _pull(cluster, ref, auth, stream)
    return await stream.finish()


async def _pull(cluster: Cluster, ref: Reference, auth: dict[str, str] | None, stream: JSONStream) -> None:
    existing = next((o for o in await cluster.list(IMAGES, namespaced=False)
                     if canonical(imagelife.reference_of(o)) == str(ref)), None)
    before = ((existing or {}).get("status") or {}).get("digest", "")
    request = uuid.uuid4().hex
    if existing is None:
        obj = await _create_or_request(cluster, imagelife.pull_object(ref, request, auth=auth), request, auth)
    else:
        name = existing["metadata"]["name"]
        obj = await cluster.call(lambda c: c.merge_patch(IMAGES.path(name=name), imagelife.pull_patch(request, auth)))
    name = obj["metadata"]["name"]
    await stream.status(f"Pulling from {ref.path}", ref.tag or ref.digest)
    changes = LayerChanges()

    async def show(o: dict[str, Any]) -> None:
        for message in changes.new(imagelife.pull_layers(o, request)):
            await stream.send(message)

    try:
        final = await _poll(lambda: image_object(cluster, name), show,
                            lambda o: imagelife.pull_finished(o, request), PULL_TIMEOUT)
    finally:
        if auth:  # the call's Secret goes away: the object must not keep naming it
            with contextlib.suppress(apierrors.APIError, OSError):
                await cluster.call(lambda c: c.merge_patch(IMAGES.path(name=name), {"spec": {"authSecret": None}}))
    failure = "the image object was deleted during the pull" if final is None \
        else imagelife.pull_failure(final, request)
    if failure:
        if existing is None and imagelife.phase(final) != "Ready":  # never remove a present image
            with contextlib.suppress(apierrors.APIError, OSError, DockerError):
                await delete_image(cluster, final or obj, False)
        await stream.error(failure)
        return
    digest = ((final or {}).get("status") or {}).get("digest", "")
    await stream.status(f"Digest: {digest}")
    what = "Image is up to date for" if before and before == digest else "Downloaded newer image for"
    await stream.status(f"Status: {what} {ref.familiar()}")


async def _create_or_request(cluster: Cluster, body: dict[str, Any], request: str,
                             auth: dict[str, str] | None) -> dict[str, Any]:
    try:
        created: dict[str, Any] = await cluster.call(lambda c: c.create(IMAGES.path(), body))
        return created
    except apierrors.AlreadyExists:
        name = body["metadata"]["name"]
        patched: dict[str, Any] = await cluster.call(
            lambda c: c.merge_patch(IMAGES.path(name=name), imagelife.pull_patch(request, auth)))
        return patched


# ---- push ---------------------------------------------------------------------------------------------
async def push(request: web.Request) -> web.StreamResponse:
    """``docker push NAME[:TAG]``: the tag in ``tag`` (``latest`` when empty, as the CLI sends it)."""
    ref = _reference(request.match_info["name"], request.query.get("tag", ""))
    if not ref.tag and not ref.digest:
        ref = ref.with_tag("latest")
    cluster: Cluster = request.app["cluster"]
    try:
        find(await ready_images(cluster), str(ref))
    except NoSuch:
        raise NoSuch(f"An image does not exist locally with the tag: {ref.familiar_repository}") from None
    stream = JSONStream(request)
    async with registryauth.call_secret(cluster, request, ref.domain) as auth:
        await _push(cluster, ref, auth, stream)
    return await stream.finish()


async def _push(cluster: Cluster, ref: Reference, auth: dict[str, str] | None, stream: JSONStream) -> None:
    obj = await cluster.call(lambda c: c.create(IMAGE_PUSHES.path(), imagelife.push_object(ref, auth)))
    name = obj["metadata"]["name"]
    await stream.status(f"The push refers to repository [{ref.repository}]")
    changes = LayerChanges()

    async def get() -> dict[str, Any] | None:
        def run(c: Any) -> dict[str, Any] | None:
            try:
                current: dict[str, Any] = c.get(IMAGE_PUSHES.path(name=name))
                return current
            except apierrors.NotFound:
                return None

        return await cluster.call(run)

    async def show(o: dict[str, Any]) -> None:
        for message in changes.new((o.get("status") or {}).get("layers") or []):
            await stream.send(message)

    try:
        final = await _poll(get, show, lambda o: imagelife.phase(o) in imagelife.PUSH_DONE, PULL_TIMEOUT)
    finally:
        with contextlib.suppress(apierrors.APIError, OSError):
            await cluster.call(lambda c: c.delete(IMAGE_PUSHES.path(name=name)))
    st = (final or {}).get("status") or {}
    if imagelife.phase(final) != "Succeeded":
        await stream.error(st.get("message") or "push failed")
        return
    tag = ref.tag or "latest"
    await stream.status(f"{tag}: digest: {st.get('digest')} size: {st.get('size')}")
    await stream.send({"progressDetail": {}, "aux": {"Tag": tag, "Digest": st.get("digest"), "Size": st.get("size")}})
