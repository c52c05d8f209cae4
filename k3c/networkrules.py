"""What makes a Network acceptable: its addresses, its name among the others, and who still uses it.

Why a leaf of its own: the admission webhook (k3c.reconcilers.webhooks) refuses a bad Network before it is
stored, so that a bad CIDR, a gateway outside its subnet or two networks on one address range never reach
the node; the rules read only the objects involved, so they are plain functions of them, unit-tested alone.
Each refusal is one line, worded as docker words it where docker has words for it.

Beside the shared clients' helpers: ``ipaddress`` and the leaf k3c.dockerid only.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from k3c import dockerid

#: The admission webhook that applies these rules (k3c.reconcilers.webhooks serves it; clients drop its
#: name from the refusals they show, k3c.dockernetwork.daemon_message).
WEBHOOK = "networks.k3c.io"
#: The default network: always there (made by the node), never removed, never attached by name.
DEFAULT_NETWORK = "bridge"
#: docker's pseudo-networks: no objects, no bridges (``--network host``, ``--network none``).
PSEUDO_NETWORKS = ("host", "none")
#: What docker names its predefined networks; no user network may take these names.
PREDEFINED = (DEFAULT_NETWORK, *PSEUDO_NETWORKS)


@dataclass(frozen=True)
class Refusal:
    """Why a write is refused: the HTTP status to answer with, its reason word, and one line."""

    code: int
    reason: str
    message: str


def _bad(message: str) -> Refusal:
    return Refusal(400, "BadRequest", message)


def _network(text: str, what: str) -> ipaddress.IPv4Network | Refusal:
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        return _bad(f"invalid {what} {text!r}: not a CIDR such as 172.30.0.0/24")
    if not isinstance(net, ipaddress.IPv4Network) or "/" not in text:
        return _bad(f"invalid {what} {text!r}: k3c networks take an IPv4 CIDR such as 172.30.0.0/24")
    return net


def address_problem(spec: Mapping[str, Any]) -> Refusal | None:
    """The first thing wrong with a Network's subnet, gateway and ip range, or None."""
    subnet, gateway, ip_range = spec.get("subnet") or "", spec.get("gateway") or "", spec.get("ipRange") or ""
    if not subnet:
        return _bad("every ip-range or gateway must have a corresponding subnet") if gateway or ip_range else None
    net = _network(subnet, "subnet")
    if isinstance(net, Refusal):
        return net
    if net.prefixlen > 30:
        return _bad(f"invalid subnet {subnet!r}: too small for a gateway and containers (at most /30)")
    if gateway:
        try:
            gw = ipaddress.ip_address(gateway)
        except ValueError:
            return _bad(f"invalid gateway {gateway!r}: not an IPv4 address")
        if gw not in net or gw in (net.network_address, net.broadcast_address):
            return _bad(f"no matching subnet for gateway {gateway}: it is outside {subnet}'s host addresses")
    if ip_range:
        pool = _network(ip_range, "ip-range")
        if isinstance(pool, Refusal):
            return pool
        if not pool.subnet_of(net):
            return _bad(f"no matching subnet for range {ip_range}: it is not inside {subnet}")
    return None


def subnet_of(obj: Mapping[str, Any]) -> ipaddress.IPv4Network | None:
    """The range a Network takes: the one asked for, else the one the node chose (status)."""
    text = (obj.get("spec") or {}).get("subnet") or (obj.get("status") or {}).get("subnet") or ""
    try:
        net = ipaddress.ip_network(text, strict=False) if text else None
    except ValueError:
        return None
    return net if isinstance(net, ipaddress.IPv4Network) else None


def _same(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    ma, mb = a.get("metadata") or {}, b.get("metadata") or {}
    return bool(ma.get("name")) and ma.get("name") == mb.get("name") and ma.get("namespace") == mb.get("namespace")


def create_problem(obj: Mapping[str, Any], others: Iterable[Mapping[str, Any]]) -> Refusal | None:
    """Why a new (or changed) Network ``obj`` cannot join ``others`` (the namespace's Networks; ``obj``
    itself among them is skipped), or None: its addresses, a docker name taken or predefined, or a
    subnet overlapping another network's."""
    problem = address_problem(obj.get("spec") or {})
    if problem:
        return problem
    name = dockerid.docker_name(obj)
    if name in PSEUDO_NETWORKS:
        return Refusal(403, "Forbidden", f"operation is not permitted on predefined {name} network")
    if not dockerid.valid_docker_name(name):
        return _bad(f'invalid network name "{name}": only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed')
    rest = [o for o in others if not _same(o, obj)]
    if any(dockerid.docker_name(o) == name for o in rest):
        return Refusal(409, "Conflict", f"network with name {name} already exists")
    mine = subnet_of(obj)
    if mine is not None and name != DEFAULT_NETWORK:  # (the node's own is never refused: its node needs it)
        for other in rest:
            theirs = subnet_of(other)
            if theirs is not None and mine.overlaps(theirs):
                return _bad(f"invalid pool request: Pool overlaps with other one on this address space "
                            f"({mine} overlaps {theirs} of network {dockerid.docker_name(other)})")
    return None


def users_of(name: str, containers: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The LocalContainers whose ``spec.networks`` names the Network object ``name`` (those being deleted
    too: until they are gone, their sandboxes may still be attached)."""
    return [c for c in containers
            if any(n.get("name") == name for n in ((c.get("spec") or {}).get("networks") or []))]


def delete_problem(obj: Mapping[str, Any], containers: Iterable[Mapping[str, Any]]) -> Refusal | None:
    """Why Network ``obj`` cannot be removed now (the default one never; one containers name, while
    they do), or None."""
    name = dockerid.docker_name(obj)
    if name == DEFAULT_NETWORK:
        return Refusal(403, "Forbidden", f"{name} is a pre-defined network and cannot be removed")
    users = users_of(str((obj.get("metadata") or {}).get("name") or ""), containers)
    if not users:
        return None
    names = ", ".join(sorted(dockerid.docker_name(c) for c in users))
    return Refusal(409, "Conflict", f"error while removing network: network {name} id "
                   f"{dockerid.object_id(obj)[:12]} has active endpoints (containers: {names})")
