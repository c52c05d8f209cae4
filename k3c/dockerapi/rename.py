"""``POST /containers/{id}/rename?name=``: a new docker name, the same object and ID (:func:`k3c.dockerid.rename_patch`).

The rules are `k3c rename`'s (:func:`k3c.dockerid.rename_refusal`): a valid docker name, not the current one,
not one another container has (409, docker's words).
"""

from __future__ import annotations

from aiohttp import web

from k3c import dockerid
from k3c.api import LOCAL_CONTAINERS
from k3c.dockerapi.cluster import Cluster
from k3c.dockerapi.containers import conflict, find
from k3c.dockerapi.errors import BadParameter


async def rename(request: web.Request) -> web.Response:
    cluster: Cluster = request.app["cluster"]
    new = request.query.get("name", "").strip().removeprefix("/")
    if not new:
        raise BadParameter("Neither old nor new names may be empty")
    obj = await find(cluster, request.match_info["id"])
    refusal = dockerid.rename_refusal(obj, new)
    if refusal:
        raise BadParameter(refusal)
    holder = next((o for o in await cluster.list(LOCAL_CONTAINERS) if dockerid.docker_name(o) == new), None)
    if holder is not None:
        raise conflict(new, holder)
    await cluster.merge_patch(LOCAL_CONTAINERS, obj["metadata"]["name"], dockerid.rename_patch(obj, new))
    return web.Response(status=204)
