"""A create body's networks (``HostConfig.NetworkMode``, ``NetworkingConfig.EndpointsConfig``) as ``spec.networks``.

Why at create and not in admission: docker refuses ``docker run --network nosuch`` with "network nosuch not
found" before anything exists, and only a client that lists the Networks can map docker names and IDs onto
object names; so the Docker API resolves them here, and a name it cannot find is that 404.

``bridge`` alone (or nothing) leaves ``spec.networks`` absent: the default network and its warm sandboxes.
``host`` is ``spec.hostNetwork``; ``none`` is ``[{name: none}]`` and must be alone. Each endpoint's
``Aliases`` and ``IPAMConfig.IPv4Address`` are kept; any other non-zero endpoint field is refused (400).
"""

from __future__ import annotations

from typing import Any

from k3c import dockernetwork as dn
from k3c.api import NETWORKS
from k3c.dockerapi.bodies import strings, typed
from k3c.dockerapi.cluster import Cluster
from k3c.dockerapi.createbody import is_zero
from k3c.dockerapi.errors import BadParameter
from k3c.dockerapi.errors import NotFound as NoSuch
from k3c.networkrules import DEFAULT_NETWORK

#: EndpointSettings fields that are read; the output-only ones clients echo back are ignored when zero
ENDPOINT_FIELDS = frozenset({"Aliases", "IPAMConfig"})


def entry(name: str, config: dict[str, Any]) -> dict[str, Any]:
    """One ``spec.networks`` entry from docker's EndpointSettings (at create, and at connect)."""
    for key, value in config.items():
        if key not in ENDPOINT_FIELDS and not is_zero(value):
            raise BadParameter(f"EndpointSettings.{key} is not supported by k3c (got {value!r})")
    ipam = typed(config, "IPAMConfig", dict, "EndpointSettings") or {}
    for key, value in ipam.items():
        if key != "IPv4Address" and not is_zero(value):
            raise BadParameter(f"EndpointIPAMConfig.{key} is not supported by k3c (got {value!r})")
    entry: dict[str, Any] = {"name": name}
    aliases = strings(config, "Aliases", "EndpointSettings")
    if aliases:
        entry["aliases"] = list(dict.fromkeys(aliases))
    if ipam.get("IPv4Address"):
        entry["ipv4Address"] = str(ipam["IPv4Address"])
    return entry


async def spec_networks(cluster: Cluster, mode: str, endpoints: dict[str, Any]) -> list[dict[str, Any]] | None:
    """``spec.networks`` for a create body (None: the default network alone, or the host's)."""
    if mode == "host":
        others = set(endpoints) - {"host"}
        if others:
            raise BadParameter("conflicting options: host type networking can't be used with other networks "
                               f"({', '.join(sorted(others))})")
        return None
    refs = (list(endpoints) or [DEFAULT_NETWORK]) if mode in ("", "default") else [mode, *endpoints]
    if all(r == DEFAULT_NETWORK and is_zero(endpoints.get(r)) for r in refs):
        return None
    if "none" in refs and len(refs) > 1:
        raise BadParameter("container cannot be connected to multiple networks with one of the networks in "
                           "private (none) mode")
    objects = await cluster.list(NETWORKS)
    docs = dn.all_networks(objects)
    by_id = {dn.docker_network(o)["Id"]: o for o in objects}
    out: dict[str, dict[str, Any]] = {}
    for ref in refs:
        try:
            doc = dn.find(docs, ref)
        except dn.NetworkError as err:
            raise NoSuch(err.message) from None
        if doc["Name"] == "host":
            raise BadParameter("conflicting options: host type networking can't be used with other networks")
        obj = by_id.get(doc["Id"])
        config = endpoints.get(ref) or endpoints.get(doc["Name"]) or {}
        if doc["Id"] not in out or config:
            out[doc["Id"]] = entry(obj["metadata"]["name"] if obj else doc["Name"], config)
    return list(out.values())
