"""The volume endpoints: create, list, inspect and remove, as Volume objects carrying their docker names.

A volume a container uses is refused with docker's 409 unless forced; a forced removal marks the object
so the operator lets it go (k3c.io/force-delete), as `k3c volume rm -f` does.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

from aiohttp import web

from k3c import dockerid
from k3c.api import FORCE_DELETE_ANNOTATION, LOCAL_CONTAINERS, NAME_ANNOTATION, VOLUMES
from k3c.apierrors import AlreadyExists, NotFound
from k3c.dockerapi import bodies
from k3c.dockerapi.cluster import Cluster
from k3c.dockerapi.errors import BadParameter, Conflict
from k3c.dockerapi.errors import NotFound as NoSuch
from k3c.dockerapi.replies import reply
from k3c.dockerview import docker_volume, users_of

REMOVE_TIMEOUT = 60.0


def _cluster(request: web.Request) -> Cluster:
    cluster: Cluster = request.app["cluster"]
    return cluster


def _shape(obj: dict[str, Any]) -> dict[str, Any]:
    """docker's volume document (the CLI's, without k3c's extras key, which docker-py would not expect)."""
    doc = docker_volume(obj)
    doc.pop("K3c", None)
    return doc


async def find(cluster: Cluster, ref: str) -> dict[str, Any]:
    """A volume by docker name, else by object name; 404 "no such volume"."""
    if dockerid.valid_docker_name(ref):
        obj = await cluster.get(VOLUMES, dockerid.object_name(ref))
        if obj is not None and dockerid.docker_name(obj) == ref:
            return obj
    items = await cluster.list(VOLUMES)
    by_docker = [o for o in items if dockerid.docker_name(o) == ref]
    by_object = [o for o in items if o["metadata"]["name"] == ref]
    found = next(iter(by_docker or by_object), None)
    if found is None:
        raise NoSuch(f"get {ref}: no such volume")
    return found


async def create(request: web.Request) -> web.Response:
    body = await bodies.json_object(request)
    name = body.get("Name") or secrets.token_hex(32)
    driver = body.get("Driver") or "local"
    labels = body.get("Labels") or {}
    if not isinstance(name, str) or not isinstance(driver, str) or not isinstance(labels, dict):
        raise BadParameter("json: cannot unmarshal the volume create body: Name, Driver and Labels have docker's types")
    if not dockerid.valid_docker_name(name):
        raise BadParameter(f'create {name}: "{name}" includes invalid characters for a local volume name, only '
                           '"[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host directory, '
                           "use absolute path")
    if driver != "local":
        raise NoSuch(f'create {name}: error looking up volume plugin {driver}: plugin "{driver}" not found')
    if body.get("DriverOpts"):
        raise BadParameter("DriverOpts are not supported by k3c's local volumes")
    meta: dict[str, Any] = {"name": dockerid.object_name(name), "annotations": {NAME_ANNOTATION: name}}
    labelled = dockerid.label_metadata({str(k): str(v) for k, v in labels.items()})
    meta["annotations"].update(labelled.get("annotations") or {})
    if labelled.get("labels"):
        meta["labels"] = labelled["labels"]
    obj = {"apiVersion": VOLUMES.api_version, "kind": VOLUMES.kind, "metadata": meta, "spec": {"driver": "local"}}
    cluster = _cluster(request)
    try:
        created = await cluster.create(VOLUMES, obj)
    except AlreadyExists:  # docker: creating an existing volume answers it
        created = await find(cluster, name)
    return reply(_shape(created), status=201)


def _label_match(labels: dict[str, str], want: str) -> bool:
    key, eq, value = want.partition("=")
    return key in labels and (not eq or labels[key] == value)


def _matches(obj: dict[str, Any], containers: list[dict[str, Any]], filters: dict[str, list[str]]) -> bool:
    labels = dockerid.docker_labels(obj["metadata"])

    def dangling(v: str) -> bool:
        return (not users_of(obj["metadata"]["name"], containers)) == (v.lower() in ("1", "true"))

    checks: dict[str, Callable[[str], bool]] = {
        "name": lambda v: v in dockerid.docker_name(obj), "label": lambda v: _label_match(labels, v),
        "driver": lambda v: v == "local", "dangling": dangling,
    }
    return all(any(checks[k](v) for v in values) for k, values in filters.items() if values)


async def list_volumes(request: web.Request) -> web.Response:
    filters = bodies.filters(request)
    unknown = sorted(set(filters) - {"name", "label", "dangling", "driver"})
    if unknown:
        raise BadParameter(f"invalid filter '{unknown[0]}'")
    cluster = _cluster(request)
    items = await cluster.list(VOLUMES)
    containers = await cluster.list(LOCAL_CONTAINERS) if filters.get("dangling") else []
    out = [_shape(obj) for obj in items if _matches(obj, containers, filters)]
    return reply({"Volumes": out, "Warnings": []})


async def inspect(request: web.Request) -> web.Response:
    return reply(_shape(await find(_cluster(request), request.match_info["name"])))


async def remove(request: web.Request) -> web.Response:
    cluster = _cluster(request)
    ref = request.match_info["name"]
    force = bodies.flag(request, "force")
    try:
        obj = await find(cluster, ref)
    except NoSuch:
        if force:
            return web.Response(status=204)
        raise
    await remove_volume(cluster, obj, ref, force)
    return web.Response(status=204)


async def remove_volume(cluster: Cluster, obj: dict[str, Any], ref: str, force: bool) -> None:
    """DELETE the volume (409 while a container uses it, unless ``force``) and wait for the operator to
    remove its directory."""
    name = obj["metadata"]["name"]
    users = [c for c in users_of(name, await cluster.list(LOCAL_CONTAINERS))
             if not c["metadata"].get("deletionTimestamp")]
    if users and not force:
        raise Conflict(f"remove {ref}: volume is in use - [{', '.join(dockerid.object_id(c) for c in users)}]")
    try:
        if force:
            await cluster.merge_patch(VOLUMES, name, {"metadata": {"annotations": {FORCE_DELETE_ANNOTATION: "true"}}})
        current = await cluster.delete(VOLUMES, name)
    except NotFound:
        return
    if current.get("kind") == VOLUMES.kind and current["metadata"].get("finalizers"):
        try:  # the operator removes its directory
            await cluster.wait_for(VOLUMES, name, lambda o: o is None, REMOVE_TIMEOUT)
        except TimeoutError:
            raise Conflict(f"remove {ref}: still being removed after {REMOVE_TIMEOUT:g}s") from None
