"""The network endpoints: list, inspect, create, remove, connect, disconnect and prune, on Network objects.

The documents and the objects are k3c.dockernetwork's, as `k3c network` shows and writes them, so that
docker-compose reads back exactly the driver, options, labels and internal flag it created. What may be
written is admission's to judge (the ``networks.k3c.io`` webhook: bad addresses, overlaps, duplicate names,
removing a network in use or ``bridge``); its refusals reach the client with their status and docker's
words. ``bridge`` before the node made its object, ``host`` and ``none`` are shown without objects, with
this node's bridge and subnet.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from k3c import dockerid
from k3c import dockernetwork as dn
from k3c.api import LOCAL_CONTAINERS, NETWORKS
from k3c.apierrors import AlreadyExists, APIError, NotFound
from k3c.dockerapi import bodies
from k3c.dockerapi.bodies import typed
from k3c.dockerapi.cluster import Cluster
from k3c.dockerapi.containers import find as find_container
from k3c.dockerapi.createbody import is_zero
from k3c.dockerapi.endpoints import wanted as endpoint_wanted
from k3c.dockerapi.errors import BadParameter, Conflict, DockerError, Forbidden
from k3c.dockerapi.errors import NotFound as NoSuch
from k3c.dockerapi.replies import reply
from k3c.dockerapi.system import Host
from k3c.prunefilters import FilterError, PruneFilters

#: create body fields that are read; any other must be zero (Go's zero, what clients send when unset)
CREATE_FIELDS = frozenset({"Name", "CheckDuplicate", "Driver", "Internal", "IPAM", "Options", "Labels", "Scope",
                           "Attachable"})
PRUNE_FILTERS = ("until", "label", "label!")
REMOVE_TIMEOUT = 60.0
_STATUS: dict[int, type[DockerError]] = {400: BadParameter, 403: Forbidden, 404: NoSuch, 409: Conflict}


def _cluster(request: web.Request) -> Cluster:
    cluster: Cluster = request.app["cluster"]
    return cluster


def docker_error(status: int, message: str) -> DockerError:
    """A refusal with its status (4xx kept, anything else a 500 with its words)."""
    cls = _STATUS.get(status)
    if cls is not None:
        return cls(message)
    err = DockerError(message)
    err.status = status if 400 <= status < 600 else 500
    return err


def _refused(err: dn.NetworkError | APIError) -> DockerError:
    if isinstance(err, dn.NetworkError):
        return docker_error(err.status, err.message)
    return docker_error(err.code, dn.daemon_message(err.message))


async def _docs(request: web.Request, containers: list[dict[str, Any]] | None,
                ) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """Every network's document, and the objects by docker ID."""
    host: Host = request.app["host"]
    objects = await _cluster(request).list(NETWORKS)
    docs = dn.all_networks(objects, host.subnet, host.bridge, containers)
    return docs, {dn.docker_network(o)["Id"]: o for o in objects}


async def find(request: web.Request, ref: str, with_containers: bool = False,
               ) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """docker's document of the network ``ref`` (name, ID or ID prefix) and its object, if it has one."""
    containers = await _cluster(request).list(LOCAL_CONTAINERS) if with_containers else None
    docs, objects = await _docs(request, containers)
    try:
        doc = dn.find(docs, ref)
    except dn.NetworkError as err:
        raise _refused(err) from None
    return doc, objects.get(doc["Id"])


# ---- list / inspect -----------------------------------------------------------------------------------
async def list_networks(request: web.Request) -> web.Response:
    filters = bodies.filters(request)
    problem = dn.filter_problem(filters)
    if problem:
        raise _refused(problem)
    cluster = _cluster(request)
    containers = await cluster.list(LOCAL_CONTAINERS) if filters.get("dangling") else []
    docs, objects = await _docs(request, None)
    used = {i for i, o in objects.items() if dn.in_use(o, containers)}
    return reply([d for d in docs if dn.matches(d, filters, d["Id"] in used)])


async def inspect(request: web.Request) -> web.Response:
    doc, _obj = await find(request, request.match_info["id"], with_containers=True)
    return reply(doc)


# ---- create -------------------------------------------------------------------------------------------
def _strings_map(body: dict[str, Any], key: str) -> dict[str, str]:
    value = typed(body, key, dict, "NetworkCreateRequest") or {}
    if not all(isinstance(v, str) for v in value.values()):
        raise BadParameter(f"json: cannot unmarshal NetworkCreateRequest.{key}: want an object of strings")
    return {str(k): str(v) for k, v in value.items()}


def _ipam(body: dict[str, Any]) -> dict[str, str]:
    ipam = typed(body, "IPAM", dict, "NetworkCreateRequest") or {}
    if (ipam.get("Driver") or "default") != "default":
        raise BadParameter(f'IPAM driver "{ipam["Driver"]}" is not supported by k3c (only "default")')
    if not is_zero(ipam.get("Options")):
        raise BadParameter("IPAM.Options are not supported by k3c")
    configs = typed(ipam, "Config", list, "IPAM") or []
    if len(configs) > 1:
        raise BadParameter("k3c networks take one IPAM.Config (one IPv4 subnet)")
    config = configs[0] if configs else {}
    if not isinstance(config, dict):
        raise BadParameter("json: cannot unmarshal IPAM.Config: want a list of objects")
    if not is_zero(config.get("AuxiliaryAddresses")):
        raise BadParameter("IPAM.Config.AuxiliaryAddresses are not supported by k3c")
    return {k: str(typed(config, k, str, "IPAM.Config") or "") for k in ("Subnet", "Gateway", "IPRange")}


def create_request(body: dict[str, Any]) -> dn.NetworkRequest:
    """A create body as a request; 400 for a wrong type or a field k3c does not honour."""
    for key, value in body.items():
        if key not in CREATE_FIELDS and not is_zero(value):
            raise BadParameter(f"NetworkCreateRequest.{key} is not supported by k3c (got {value!r})")
    name = typed(body, "Name", str, "NetworkCreateRequest") or ""
    if not name:
        raise BadParameter("network name cannot be empty")
    ipam = _ipam(body)
    return dn.NetworkRequest(name, typed(body, "Driver", str, "NetworkCreateRequest") or "bridge", ipam["Subnet"],
                             ipam["Gateway"], ipam["IPRange"],
                             bool(typed(body, "Internal", bool, "NetworkCreateRequest")),
                             _strings_map(body, "Labels"), _strings_map(body, "Options"),
                             bool(typed(body, "Attachable", bool, "NetworkCreateRequest")))


async def create(request: web.Request) -> web.Response:
    req = create_request(await bodies.json_object(request))
    problem = dn.request_problem(req)
    if problem:
        raise _refused(problem)
    try:
        created = await _cluster(request).create(NETWORKS, dn.network_object(req))
    except AlreadyExists:
        raise Conflict(f"network with name {req.name} already exists") from None
    except APIError as err:
        raise _refused(err) from None
    return reply({"Id": dn.docker_network(created)["Id"], "Warning": ""}, status=201)


# ---- remove / prune -----------------------------------------------------------------------------------
async def remove_network(cluster: Cluster, obj: dict[str, Any]) -> None:
    """DELETE the object (admission refuses it while in use) and wait while the operator tears it down."""
    name = obj["metadata"]["name"]
    try:
        current = await cluster.delete(NETWORKS, name)
    except NotFound:
        return
    except APIError as err:
        raise _refused(err) from None
    if current.get("kind") == NETWORKS.kind and current["metadata"].get("finalizers"):
        try:
            await cluster.wait_for(NETWORKS, name, lambda o: o is None, REMOVE_TIMEOUT)
        except TimeoutError:
            raise Conflict(f"remove {dn.docker_network(obj)['Name']}: still being removed after "
                           f"{REMOVE_TIMEOUT:g}s") from None


async def remove(request: web.Request) -> web.Response:
    doc, obj = await find(request, request.match_info["id"])
    if obj is None:
        raise Forbidden(f"{doc['Name']} is a pre-defined network and cannot be removed")
    await remove_network(_cluster(request), obj)
    return web.Response(status=204)


async def prune(request: web.Request) -> web.Response:
    """Every custom network no container names, unless the filters spare it."""
    try:
        filters = PruneFilters.parse(bodies.filters(request), PRUNE_FILTERS)
    except FilterError as err:
        raise BadParameter(str(err)) from None
    cluster = _cluster(request)
    containers = await cluster.list(LOCAL_CONTAINERS)
    deleted = []
    for obj in sorted(await cluster.list(NETWORKS), key=lambda o: dn.docker_network(o)["Name"]):
        doc = dn.docker_network(obj)
        if (dn.is_builtin(doc) or dn.in_use(obj, containers) or obj["metadata"].get("deletionTimestamp")
                or filters.keep(obj["metadata"].get("creationTimestamp", ""), doc["Labels"])):
            continue
        try:
            await remove_network(cluster, obj)
        except DockerError:
            continue  # taken into use meanwhile: prune skips what it cannot remove
        deleted.append(doc["Name"])
    return reply({"NetworksDeleted": deleted or None})


# ---- connect / disconnect -----------------------------------------------------------------------------
async def _patch(cluster: Cluster, container: dict[str, Any], networks: list[dict[str, Any]]) -> None:
    """Write the container's new networks; a running one is answered for once it runs on them."""
    name = container["metadata"]["name"]
    try:
        patched = await cluster.merge_patch(LOCAL_CONTAINERS, name, dn.networks_patch(container, networks))
    except APIError as err:
        raise _refused(err) from None
    wait = dn.change_wait(patched)
    if wait is None:
        return
    try:
        last = await cluster.wait_for(LOCAL_CONTAINERS, name, wait.done, wait.timeout)
    except TimeoutError:
        raise DockerError(f"container {dockerid.docker_name(container)} was not restarted on its networks in "
                          f"{wait.timeout:.0f}s") from None
    if (why := wait.failure(last)) is not None:
        raise DockerError(why)


async def connect(request: web.Request) -> web.Response:
    body = await bodies.json_object(request)
    ref = typed(body, "Container", str, "NetworkConnectRequest") or ""
    wanted = endpoint_wanted("", typed(body, "EndpointConfig", dict, "NetworkConnectRequest") or {})
    doc, obj = await find(request, request.match_info["id"])
    cluster = _cluster(request)
    container = await find_container(cluster, ref)
    if obj is None:
        raise Forbidden(dn.predefined_connect_refusal(doc['Name']))
    try:
        networks = dn.connect_networks(container, obj, wanted.aliases)
    except dn.NetworkError as err:
        raise _refused(err) from None
    if wanted.ipv4_address:
        networks[-1]["ipv4Address"] = wanted.ipv4_address
    await _patch(cluster, container, networks)
    return web.Response(status=200)


async def disconnect(request: web.Request) -> web.Response:
    body = await bodies.json_object(request)
    ref = typed(body, "Container", str, "NetworkDisconnectRequest") or ""
    force = bool(typed(body, "Force", bool, "NetworkDisconnectRequest"))
    doc, obj = await find(request, request.match_info["id"])
    cluster = _cluster(request)
    container = await find_container(cluster, ref)
    try:
        networks = dn.disconnect_networks(container, obj["metadata"]["name"] if obj else doc["Name"], doc["Name"],
                                          force)
    except dn.NetworkError as err:
        raise _refused(err) from None
    if networks is not None:
        await _patch(cluster, container, networks)
    return web.Response(status=200)

