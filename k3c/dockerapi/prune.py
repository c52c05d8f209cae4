"""``POST /containers/prune`` and ``/volumes/prune``: docker's housekeeping, choosing as `k3c container|volume prune` do.

The choice is the CLI's own code (:mod:`k3c.prunefilters`, :func:`k3c.dockerview.active`).

What k3c keeps no size for counts as 0 bytes (a container's writable layer, a volume's directory), so
``SpaceReclaimed`` is 0, as the CLI reports ``0B``.
"""

from __future__ import annotations

from aiohttp import web

from k3c import dockerid
from k3c.api import LOCAL_CONTAINERS, VOLUMES
from k3c.dockerapi import bodies
from k3c.dockerapi.cluster import Cluster
from k3c.dockerapi.containers import remove_container
from k3c.dockerapi.errors import BadParameter
from k3c.dockerapi.replies import reply
from k3c.dockerapi.volumes import remove_volume
from k3c.dockerview import active, users_of
from k3c.prunefilters import FilterError, PruneFilters, object_labels

CONTAINER_FILTERS = ("until", "label", "label!")
VOLUME_FILTERS = ("label", "label!")


def _cluster(request: web.Request) -> Cluster:
    cluster: Cluster = request.app["cluster"]
    return cluster


def _filters(request: web.Request, allowed: tuple[str, ...]) -> PruneFilters:
    try:
        return PruneFilters.parse(bodies.filters(request), allowed)
    except FilterError as err:
        raise BadParameter(str(err)) from None


async def prune_containers(request: web.Request) -> web.Response:
    """Every container that is neither active nor being removed, unless the filters spare it."""
    filters = _filters(request, CONTAINER_FILTERS)
    cluster = _cluster(request)
    doomed = [o for o in await cluster.list(LOCAL_CONTAINERS)
              if not active(o) and not o["metadata"].get("deletionTimestamp")
              and not filters.keep(o["metadata"].get("creationTimestamp", ""), object_labels(o))]
    for obj in doomed:
        await remove_container(cluster, obj, force=False, volumes=False)
    return reply({"ContainersDeleted": [dockerid.object_id(o) for o in doomed] or None, "SpaceReclaimed": 0})


async def prune_volumes(request: web.Request) -> web.Response:
    """Every volume no container uses (docker 20.10's rule: named ones too), unless the filters spare it."""
    filters = _filters(request, VOLUME_FILTERS)
    cluster = _cluster(request)
    containers = await cluster.list(LOCAL_CONTAINERS)
    doomed = [v for v in await cluster.list(VOLUMES)
              if not users_of(v["metadata"]["name"], containers) and not v["metadata"].get("deletionTimestamp")
              and not filters.keep("", dockerid.docker_labels(v["metadata"]))]
    for vol in doomed:
        await remove_volume(cluster, vol, dockerid.docker_name(vol), force=False)
    return reply({"VolumesDeleted": [dockerid.docker_name(v) for v in doomed] or None, "SpaceReclaimed": 0})
