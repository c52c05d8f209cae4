"""``GET /networks`` and ``GET /networks/{id}``: k3c's one container network, shown as docker's default ``bridge``.

k3c has no network objects yet: every container not on the host's network is on the node's CNI bridge, so
that is the one network there is, named as docker names its default one, with k3c's subnet and the bridge's
first address as gateway (the CNI bridge plugin's ``isGateway``). Any other name is a 404, which is also
what `docker inspect NAME` without a type needs to go on to volumes.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

from aiohttp import web

from k3c import dockerid
from k3c.api import LOCAL_CONTAINERS
from k3c.dockerapi import bodies
from k3c.dockerapi.cluster import Cluster
from k3c.dockerapi.errors import BadParameter, NotFound
from k3c.dockerapi.replies import reply
from k3c.dockerapi.system import Host

NAME = "bridge"
FILTERS = ("name", "id", "driver", "type", "scope", "label")


def _ipam(host: Host) -> list[dict[str, str]]:
    if not host.subnet:
        return []
    net = ipaddress.ip_network(host.subnet, strict=False)
    return [{"Subnet": str(net), "Gateway": str(net.network_address + 1)}]


def _endpoints(host: Host, containers: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    """The running containers with an address on the bridge, as docker lists a network's endpoints."""
    prefix = ipaddress.ip_network(host.subnet, strict=False).prefixlen if host.subnet else 32
    out = {}
    for obj in containers:
        ip = (obj.get("status") or {}).get("ip")
        if not ip or (obj.get("spec") or {}).get("hostNetwork"):
            continue
        out[dockerid.object_id(obj)] = {"Name": dockerid.docker_name(obj), "EndpointID": "", "MacAddress": "",
                                        "IPv4Address": f"{ip}/{prefix}", "IPv6Address": ""}
    return out


def _network(host: Host, containers: list[dict[str, Any]] | None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "Name": NAME, "Id": dockerid.network_id(NAME), "Created": "0001-01-01T00:00:00Z", "Scope": "local",
        "Driver": "bridge", "EnableIPv6": False,
        "IPAM": {"Driver": "default", "Options": None, "Config": _ipam(host)},
        "Internal": False, "Attachable": False, "Ingress": False, "ConfigFrom": {"Network": ""},
        "ConfigOnly": False, "Containers": {}, "Labels": {},
        "Options": {"com.docker.network.bridge.default_bridge": "true",
                    "com.docker.network.bridge.name": host.bridge},
    }
    if containers is not None:
        doc["Containers"] = _endpoints(host, containers)
    return doc


def _matches(filters: dict[str, list[str]]) -> bool:
    """docker's network filters against the one network: values of a key OR-ed, keys AND-ed."""
    net_id = dockerid.network_id(NAME)
    checks: dict[str, Callable[[str], bool]] = {"name": lambda v: v in NAME, "id": lambda v: net_id.startswith(v), "driver": lambda v: v == "bridge",
              "type": lambda v: v == "builtin", "scope": lambda v: v == "local", "label": lambda v: False}
    return all(any(checks[key](v) for v in values) for key, values in filters.items() if values)


async def list_networks(request: web.Request) -> web.Response:
    filters = bodies.filters(request, FILTERS, "Invalid filter")
    for value in filters.get("type", []):
        if value not in ("custom", "builtin"):
            raise BadParameter(f"invalid filter: 'type'='{value}'")
    host: Host = request.app["host"]
    return reply([_network(host, None)] if _matches(filters) else [])


async def inspect(request: web.Request) -> web.Response:
    ref = request.match_info["id"]
    net_id = dockerid.network_id(NAME)
    if ref != NAME and not (ref and net_id.startswith(ref)):
        raise NotFound(f"network {ref} not found")
    cluster: Cluster = request.app["cluster"]
    return reply(_network(request.app["host"], await cluster.list(LOCAL_CONTAINERS)))
