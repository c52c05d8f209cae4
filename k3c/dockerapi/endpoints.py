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


def wanted(ref: str, config: dict[str, Any]) -> dn.Wanted:
    """What docker's EndpointSettings for network ``ref`` ask for (at create, and at connect)."""
    for key, value in config.items():
        if key not in ENDPOINT_FIELDS and not is_zero(value):
            raise BadParameter(f"EndpointSettings.{key} is not supported by k3c (got {value!r})")
    ipam = typed(config, "IPAMConfig", dict, "EndpointSettings") or {}
    for key, value in ipam.items():
        if key != "IPv4Address" and not is_zero(value):
            raise BadParameter(f"EndpointIPAMConfig.{key} is not supported by k3c (got {value!r})")
    return dn.Wanted(ref, strings(config, "Aliases", "EndpointSettings") or [], str(ipam.get("IPv4Address") or ""))


async def spec_networks(cluster: Cluster, mode: str, endpoints: dict[str, Any]) -> list[dict[str, Any]] | None:
    """``spec.networks`` for a create body (None: the default network alone, or the host's)."""
    if mode == "host":
        others = set(endpoints) - {"host"}
        if others:
            raise BadParameter("conflicting options: host type networking can't be used with other networks "
                               f"({', '.join(sorted(others))})")
        return None
    refs = (list(endpoints) or [DEFAULT_NETWORK]) if mode in ("", "default") else [mode, *endpoints]
    # "default" is dockerd's name for its default network: newer clients (docker 23+) send an endpoint of
    # that name for a plain `docker run`
    asked = [wanted(DEFAULT_NETWORK if ref == "default" else ref, endpoints.get(ref) or {}) for ref in refs]
    if all(w.ref == DEFAULT_NETWORK and not w.aliases and not w.ipv4_address for w in asked):
        return None  # (no need to list the networks)
    try:
        return dn.spec_networks(await cluster.list(NETWORKS), asked)
    except dn.NetworkError as err:
        raise (NoSuch if err.status == 404 else BadParameter)(err.message) from None
