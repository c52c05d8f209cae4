"""The image endpoints: list and inspect, from the Image objects the operator keeps for containerd's images.

An image is named by reference (``busybox``, ``k3c.test/busybox:latest``), image ID or unique ID prefix,
as docker resolves it; one list entry per image ID carries all its references as RepoTags.
"""

from __future__ import annotations

import fnmatch
from typing import Any

from aiohttp import web

from k3c.api import IMAGES
from k3c.dockerapi import bodies
from k3c.dockerapi.cluster import Cluster
from k3c.dockerapi.errors import BadParameter
from k3c.dockerapi.errors import NotFound as NoSuch
from k3c.dockerapi.replies import reply
from k3c.dockerview import docker_image, image_id, image_reference
from k3c.oci.reference import InvalidReference, parse
from k3c.pauseimage import PAUSE_IMAGE
from k3c.timefmt import parse_time


async def ready_images(cluster: Cluster) -> list[dict[str, Any]]:
    """The Image objects of images containerd has (k3c's own pause image left out, as docker has none)."""
    pause = _canonical(PAUSE_IMAGE)
    return [o for o in await cluster.list(IMAGES, namespaced=False)
            if (o.get("status") or {}).get("phase") == "Ready" and _canonical(image_reference(o)) != pause]


def _canonical(text: str) -> str:
    try:
        return str(parse(text))
    except InvalidReference:
        return text


def find(images: list[dict[str, Any]], ref: str) -> dict[str, Any]:
    """By reference, else by image ID or unique ID prefix; 404 "No such image"."""
    want = _canonical(ref)
    for obj in images:
        if _canonical(image_reference(obj)) == want:
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
