"""The image endpoints: list, inspect, tag, remove, prune and history, over the Image objects of containerd's images.

An image is named by reference (``busybox``, ``k3c.test/busybox:latest``), image ID or unique ID prefix,
as docker resolves it; one list entry per image ID carries all its references as RepoTags. Tag and remove
write what `k3c tag` and `k3c rmi` write (:mod:`k3c.imagelife`) and answer once the operator has done it.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from k3c import apierrors, imagelife
from k3c.api import FORCE_DELETE_ANNOTATION, IMAGE_TAGS, IMAGES, LOCAL_CONTAINERS
from k3c.dockerapi import bodies
from k3c.dockerapi.cluster import Cluster
from k3c.dockerapi.errors import BadParameter, Conflict, DockerError
from k3c.dockerapi.errors import NotFound as NoSuch
from k3c.dockerapi.replies import reply
from k3c.dockerview import docker_image, history_steps, image_id, image_reference
from k3c.oci.reference import InvalidReference, parse
from k3c.pauseimage import PAUSE_IMAGE
from k3c.timefmt import parse_time

#: how long a tag or a remove waits for the operator before answering 500 with the reason
OPERATOR_TIMEOUT = 60.0


async def ready_images(cluster: Cluster) -> list[dict[str, Any]]:
    """The Image objects of images containerd has (k3c's own pause image left out, as docker has none)."""
    return only_ready(await cluster.list(IMAGES, namespaced=False))


def only_ready(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Of Image objects, those :func:`ready_images` gives."""
    pause = canonical(PAUSE_IMAGE)
    return [o for o in objs
            if (o.get("status") or {}).get("phase") == "Ready" and canonical(image_reference(o)) != pause]


def canonical(text: str) -> str:
    try:
        return str(parse(text))
    except InvalidReference:
        return text


def find(images: list[dict[str, Any]], ref: str) -> dict[str, Any]:
    """By reference, else by image ID or unique ID prefix; 404 "No such image"."""
    want = canonical(ref)
    for obj in images:
        if canonical(image_reference(obj)) == want:
            return obj
    hexpart = ref.removeprefix("sha256:")
    if len(hexpart) >= 4 and all(c in "0123456789abcdef" for c in hexpart):
        hits = {image_id(o): o for o in images if image_id(o).removeprefix("sha256:").startswith(hexpart)}
        if len(hits) > 1:
            raise BadParameter(f"multiple IDs found with provided prefix: {ref}")
        if hits:
            return next(iter(hits.values()))
    raise NoSuch(f"No such image: {ref}")


def _summary(doc: dict[str, Any], labels: dict[str, str]) -> dict[str, Any]:
    created = parse_time(doc["Created"])
    return {"Id": doc["Id"], "ParentId": "", "RepoTags": doc["RepoTags"], "RepoDigests": doc["RepoDigests"],
            "Created": int(created.timestamp()) if created else 0, "Size": doc["Size"],
            "VirtualSize": doc["VirtualSize"], "SharedSize": -1, "Labels": labels, "Containers": -1}


async def list_images(request: web.Request) -> web.Response:
    filters = bodies.filters(request)
    unknown = sorted(set(filters) - {"reference", "label"})
    if unknown:
        raise BadParameter(f"invalid filter '{unknown[0]}'")
    cluster: Cluster = request.app["cluster"]
    images = await ready_images(cluster)
    out: dict[str, dict[str, Any]] = {}
    for obj in images:
        iid = image_id(obj)
        if iid in out:
            continue
        doc = docker_image(obj, images)
        labels = (doc["Config"] or {}).get("Labels") or {}
        if _matches(doc, labels, filters):
            out[iid] = _summary(doc, labels)
    return reply(sorted(out.values(), key=lambda d: d["Created"], reverse=True))


def _matches(doc: dict[str, Any], labels: dict[str, str], filters: dict[str, list[str]]) -> bool:
    for value in filters.get("reference", []):
        if not any(fnmatch.fnmatch(tag, value) or fnmatch.fnmatch(tag.partition(":")[0], value)
                   for tag in doc["RepoTags"]):
            return False
    for value in filters.get("label", []):
        key, eq, want = value.partition("=")
        if key not in labels or (eq and labels[key] != want):
            return False
    return True


async def inspect(request: web.Request) -> web.Response:
    cluster: Cluster = request.app["cluster"]
    images = await ready_images(cluster)
    doc = docker_image(find(images, request.match_info["name"]), images)
    doc.pop("K3c", None)
    return reply(doc)


async def image_object(cluster: Cluster, name: str) -> dict[str, Any] | None:
    """An Image object by object name (Images are cluster-scoped), None if there is none."""
    def run(c: Any) -> dict[str, Any] | None:
        try:
            obj: dict[str, Any] = c.get(IMAGES.path(name=name))
            return obj
        except apierrors.NotFound:
            return None

    return await cluster.call(run)


async def _wait(cluster: Cluster, name: str, done: Callable[[dict[str, Any] | None], bool],
                timeout: float = OPERATOR_TIMEOUT) -> dict[str, Any] | None:
    deadline = time.monotonic() + timeout
    while True:
        obj = await image_object(cluster, name)
        if done(obj):
            return obj
        if time.monotonic() > deadline:
            raise DockerError(((obj or {}).get("status") or {}).get("message") or "timed out waiting for the operator")
        await asyncio.sleep(0.05)


# ---- tag ----------------------------------------------------------------------------------------------
async def tag(request: web.Request) -> web.Response:
    """``docker tag SOURCE REPO[:TAG]``: an ImageTag, followed to its end and deleted; 201 once the new
    reference is an image `docker images` shows."""
    repo = request.query.get("repo", "")
    if not repo:
        raise BadParameter("repository name (repo) is required")
    text = repo + (":" + request.query["tag"] if request.query.get("tag") else "")
    try:
        target = str(parse(text))
    except InvalidReference as err:
        raise BadParameter(str(err)) from None
    cluster: Cluster = request.app["cluster"]
    source = find(await ready_images(cluster), request.match_info["name"])
    obj = await cluster.call(lambda c: c.create(IMAGE_TAGS.path(), imagelife.tag_object(source, [target])))
    name = obj["metadata"]["name"]

    async def current() -> dict[str, Any] | None:
        def run(c: Any) -> dict[str, Any] | None:
            try:
                got: dict[str, Any] = c.get(IMAGE_TAGS.path(name=name))
                return got
            except apierrors.NotFound:
                return None
        return await cluster.call(run)

    try:
        deadline = time.monotonic() + OPERATOR_TIMEOUT
        while (final := await current()) is not None and imagelife.phase(final) not in imagelife.TAG_DONE:
            if time.monotonic() > deadline:
                raise DockerError("timed out waiting for the operator to tag the image")
            await asyncio.sleep(0.05)
    finally:
        with contextlib.suppress(apierrors.APIError, OSError):
            await cluster.call(lambda c: c.delete(IMAGE_TAGS.path(name=name)))
    if final is None or imagelife.phase(final) == "Failed":
        raise DockerError(((final or {}).get("status") or {}).get("message") or "tag failed")
    if await wait_shown(cluster, [target], OPERATOR_TIMEOUT):  # as docker's tag returns: `docker images` shows it
        raise DockerError(f"timed out waiting for the image {text} to appear")
    return web.Response(status=201)


async def wait_shown(cluster: Cluster, refs: list[str], timeout: float = 10.0) -> set[str]:
    """Until each reference is an image `docker images` shows (its Image object Ready): the operator makes
    the object from containerd's event just after a tag, build or load. The references still missing."""
    want = {canonical(r) for r in refs}
    deadline = time.monotonic() + timeout
    while want:
        want -= {canonical(image_reference(o)) for o in await ready_images(cluster)}
        if not want or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    return want


# ---- remove -------------------------------------------------------------------------------------------
async def remove(request: web.Request) -> web.Response:
    """``docker rmi``: docker's ``[{"Untagged": …}, {"Deleted": …}]``; 409 when a container uses it."""
    cluster: Cluster = request.app["cluster"]
    force = bodies.flag(request, "force")
    text = request.match_info["name"]
    images = await ready_images(cluster)
    obj = find(images, text)
    try:
        plan = imagelife.plan_removal(images, obj, text, force)
        if not force:
            containers = await cluster.list(LOCAL_CONTAINERS)
            user = imagelife.container_using(containers, obj, plan.image_id, plan.last)
            if user:
                raise imagelife.in_use_conflict(obj, user)
    except imagelife.ImageConflict as err:
        raise Conflict(err.message) from None
    for doomed in plan.doomed:
        await delete_image(cluster, doomed, force)
    out: list[dict[str, str]] = [{"Untagged": name} for name in plan.untagged]
    if plan.last and plan.image_id:
        out.append({"Deleted": plan.image_id})
    return reply(out)


async def delete_image(cluster: Cluster, obj: dict[str, Any], force: bool) -> None:
    """Delete one Image object and wait until it is gone (the operator has removed the reference)."""
    name = obj["metadata"]["name"]
    if force:
        patch = {"metadata": {"annotations": {FORCE_DELETE_ANNOTATION: "true"}}}
        await cluster.call(lambda c: c.merge_patch(IMAGES.path(name=name), patch))
    try:
        await cluster.call(lambda c: c.delete(IMAGES.path(name=name)))
    except apierrors.NotFound:
        return
    await _wait(cluster, name, lambda o: o is None)


# ---- prune --------------------------------------------------------------------------------------------
async def prune(request: web.Request) -> web.Response:
    """``docker image prune [-a]``: dangling references (``dangling=false``: every one no container uses)."""
    filters = bodies.filters(request)
    unknown = sorted(set(filters) - {"dangling"})
    if unknown:
        raise BadParameter(f"invalid filter '{unknown[0]}'")
    dangling = filters.get("dangling", ["true"])
    if any(v.lower() not in ("true", "false", "1", "0") for v in dangling):
        raise BadParameter(f"invalid filter 'dangling={dangling[0]}'")
    everything = all(v.lower() in ("false", "0") for v in dangling)
    cluster: Cluster = request.app["cluster"]
    images = await ready_images(cluster)
    containers = await cluster.list(LOCAL_CONTAINERS)
    deleted: list[dict[str, str]] = []
    reclaimed = 0
    for obj in imagelife.prunable(images, everything):
        iid = imagelife.image_id_of(obj)
        last = sum(1 for o in images if imagelife.image_id_of(o) == iid) <= 1
        if imagelife.container_using(containers, obj, iid, True):
            continue
        await delete_image(cluster, obj, False)
        images = [o for o in images if o is not obj]
        deleted.append({"Untagged": imagelife.familiar(obj)})
        if last and iid:
            deleted.append({"Deleted": iid})
            reclaimed += int((obj.get("status") or {}).get("size") or 0)
    return reply({"ImagesDeleted": deleted or None, "SpaceReclaimed": reclaimed})


# ---- history ------------------------------------------------------------------------------------------
async def history(request: web.Request) -> web.Response:
    """``docker history``: newest step first; only the newest carries the image's ID and tags, as for a
    pulled image in docker."""
    cluster: Cluster = request.app["cluster"]
    images = await ready_images(cluster)
    obj = find(images, request.match_info["name"])
    doc = docker_image(obj, images)
    out = []
    for i, (step, size) in enumerate(reversed(history_steps(obj.get("status") or {}))):
        created = parse_time(step.get("created"))
        out.append({"Id": doc["Id"] if i == 0 else "<missing>",
                    "Created": int(created.timestamp()) if created else 0,
                    "CreatedBy": str(step.get("created_by") or ""), "Tags": doc["RepoTags"] if i == 0 else None,
                    "Size": size, "Comment": str(step.get("comment") or "")})
    return reply(out)
