"""Subnets of user networks: chosen from a pool, or checked when given, never overlapping the host's
routes and addresses or another network's subnet (docker's rule for `network create`)."""

from __future__ import annotations

import ipaddress
import json
import subprocess
from collections.abc import Iterable

IPv4Net = ipaddress.IPv4Network

#: Where automatic subnets come from, one /24 at a time (podman's pool: clear of docker's 172.17+/16s and of
#: k3c's default 10.88.0.0/16).
POOL = ipaddress.IPv4Network("10.89.0.0/16")
POOL_PREFIX = 24


class SubnetError(ValueError):
    """A subnet that cannot be used; the message is one line for the Network's status."""


def parse(subnet: str) -> IPv4Net:
    """An IPv4 CIDR with room for a gateway and a container (a bad one raises :class:`SubnetError`)."""
    try:
        net = ipaddress.ip_network(subnet.strip(), strict=False)
    except ValueError:
        raise SubnetError(f"invalid subnet {subnet!r}: expected an IPv4 CIDR such as 172.30.0.0/24") from None
    if not isinstance(net, IPv4Net):
        raise SubnetError(f"subnet {subnet}: only IPv4 networks are supported")
    if net.prefixlen > 30:
        raise SubnetError(f"subnet {subnet}: too small, at most /30")
    return net


def host_networks() -> list[IPv4Net]:
    """Networks of the host's IPv4 routes (every table) and addresses: a subnet there is taken."""
    nets: list[IPv4Net] = []
    for cmd in (["ip", "-4", "-j", "addr"], ["ip", "-4", "-j", "route", "show", "table", "all"]):
        try:
            items = json.loads(subprocess.run(cmd, capture_output=True, text=True).stdout or "[]")
        except (OSError, ValueError):
            continue
        for item in items:
            for a in item.get("addr_info", []):
                nets.append(ipaddress.IPv4Network(f"{a['local']}/{a['prefixlen']}", strict=False))
            dst = item.get("dst")
            if dst and dst != "default" and item.get("type", "unicast") == "unicast":
                try:
                    nets.append(ipaddress.IPv4Network(dst if "/" in dst else f"{dst}/32", strict=False))
                except ValueError:
                    continue
    return nets


def check(subnet: IPv4Net, taken: Iterable[IPv4Net], gateway: str = "", ip_range: str = "") -> None:
    """Raise :class:`SubnetError` if ``subnet`` overlaps one of ``taken``, or gateway/ipRange lie outside."""
    for other in taken:
        if subnet.overlaps(other):
            raise SubnetError(f"subnet {subnet} overlaps {other}, already in use on this node")
    if gateway:
        try:
            gw = ipaddress.ip_address(gateway)
        except ValueError:
            raise SubnetError(f"invalid gateway {gateway!r}") from None
        if gw not in subnet or gw in (subnet.network_address, subnet.broadcast_address):
            raise SubnetError(f"gateway {gateway} is not a host address of subnet {subnet}")
    if ip_range:
        try:
            r = ipaddress.ip_network(ip_range, strict=False)
        except ValueError:
            raise SubnetError(f"invalid ipRange {ip_range!r}") from None
        if not (isinstance(r, IPv4Net) and r.subnet_of(subnet)):
            raise SubnetError(f"ipRange {ip_range} is not inside subnet {subnet}")


def allocate(taken: Iterable[IPv4Net], pool: IPv4Net = POOL, prefix: int = POOL_PREFIX) -> IPv4Net:
    """The first ``/prefix`` of ``pool`` that overlaps nothing ``taken``."""
    used = list(taken)
    for candidate in pool.subnets(new_prefix=prefix):
        if not any(candidate.overlaps(u) for u in used):
            return candidate
    raise SubnetError(f"no free /{prefix} left in k3c's pool {pool}: give the network a subnet")
