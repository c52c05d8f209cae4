"""``GET /events``: docker's event stream, derived from watches of k3c's objects as `k3c events` derives it.

The derivation (which change of which object is which docker action) and docker's filter matching are
:mod:`k3c.dockerevents`'; this is the endpoint around them. ``since`` replays what the current objects still
tell about the past; without ``until`` in the past the answer then follows one watch per resource (an
asyncio client: a watch must not hold one of the worker threads the other endpoints share) and writes one
JSON event per line, each stamped when handled, until ``until`` or until the client leaves.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any

from aiohttp import web

from k3c import apierrors
from k3c.api import EVENTS, Resource
from k3c.dockerapi import bodies
from k3c.dockerapi.cluster import Cluster
from k3c.dockerapi.errors import BadParameter
from k3c.dockerevents import NAMESPACED, Message, Tracker, event_matches, history, known_filters, watched
from k3c.kubeasync import AsyncKube

log = logging.getLogger(__name__)

#: How often an idle stream looks whether its client left or ``until`` passed (seconds)
TICK = 0.5
#: What a watch task hands the stream: (resource, watch event type, object)
Change = tuple[Resource, str, dict[str, Any]]


def _time(request: web.Request, name: str) -> float | None:
    """docker's ``since``/``until``: Unix seconds with an optional fraction (the CLI converts its forms)."""
    value = request.query.get(name, "")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        raise BadParameter(f"invalid value for {name}: {value!r}") from None


def _path(cluster: Cluster, resource: Resource) -> str:
    return resource.path(cluster.namespace if resource in NAMESPACED else None)


async def _lists(cluster: Cluster, resources: tuple[Resource, ...]) -> dict[Resource, dict[str, Any]]:
    """One list per resource: the base the stream compares with; a kind not served is left out."""
    lists = {}
    for resource in resources:
        try:
            lists[resource] = await cluster.raw(_path(cluster, resource))
        except apierrors.NotFound:
            continue
    return lists


async def _follow(kube: AsyncKube, path: str, resource: Resource, rv: str, out: asyncio.Queue[Change]) -> None:
    """One watch, re-opened from the last resourceVersion (relisted after a 410) until cancelled."""
    while True:
        params = {"resourceVersion": rv, "allowWatchBookmarks": "true", "timeoutSeconds": "60"}
        try:
            async for ev in kube.watch(path, params):
                obj = ev.get("object") or {}
                if ev.get("type") == "ERROR":
                    if obj.get("code") != 410:
                        raise apierrors.from_status(int(obj.get("code") or 500), obj)
                    rv = ""
                    break
                rv = (obj.get("metadata") or {}).get("resourceVersion", rv)
                if ev.get("type") != "BOOKMARK":
                    await out.put((resource, str(ev["type"]), obj))
        except apierrors.Gone:
            rv = ""
        if not rv:
            rv = (await kube.request("GET", path)).get("metadata", {}).get("resourceVersion", "")


def _line(ev: Message) -> bytes:
    return json.dumps(ev.to_json()).encode() + b"\n"


async def events(request: web.Request) -> web.StreamResponse:
    cluster: Cluster = request.app["cluster"]
    since, until = _time(request, "since"), _time(request, "until")
    if since is not None and until is not None and since > until:
        raise BadParameter(f"`since` time ({int(since)}) cannot be after `until` time ({int(until)})")
    filters = known_filters(bodies.filters(request))
    tracker = Tracker()
    lists = await _lists(cluster, watched(filters))
    for resource, doc in lists.items():
        for obj in doc.get("items", []):
            tracker.seed(resource, obj)
    response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
    await response.prepare(request)
    with contextlib.suppress(ConnectionError):
        if since is not None:
            for ev in history(tracker, lists.get(EVENTS, {}).get("items", [])):
                if ev.TimeNano >= since * 1e9 and (until is None or ev.TimeNano <= until * 1e9) \
                        and event_matches(ev, filters):
                    await response.write(_line(ev))
        if until is None or until > time.time():
            await _stream(request, response, cluster, lists, tracker, filters, until)
        await response.write_eof()
    return response


async def _stream(request: web.Request, response: web.StreamResponse, cluster: Cluster,
                  lists: dict[Resource, dict[str, Any]], tracker: Tracker, filters: dict[str, list[str]],
                  until: float | None) -> None:
    changes: asyncio.Queue[Change] = asyncio.Queue()
    kube = AsyncKube(str(cluster.kubeconfig), user_agent="k3c-docker-events")
    tasks = [asyncio.create_task(_follow(kube, _path(cluster, r), r,
                                         doc.get("metadata", {}).get("resourceVersion", ""), changes))
             for r, doc in lists.items()]
    try:
        while until is None or time.time() < until:
            if request.transport is None or request.transport.is_closing():
                return
            failed = next((t for t in tasks if t.done()), None)
            if failed is not None:  # a watch the server refused: the headers are out, so the stream just ends
                log.warning("events: a watch ended: %s", failed.exception())
                return
            wait = TICK if until is None else max(0.0, min(TICK, until - time.time()))
            try:
                resource, kind, obj = await asyncio.wait_for(changes.get(), wait)
            except TimeoutError:
                continue
            for ev in tracker.stamped(resource, kind, obj, time.time_ns()):
                if event_matches(ev, filters):
                    await response.write(_line(ev))
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await kube.close()
