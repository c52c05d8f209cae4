"""Service addresses as kube-apiserver allocates them: ClusterIPs from a fixed range, NodePorts from theirs.

Why: nothing routes to a Service on k3c's embedded API server, but tools read its address (`kubectl get
svc`, Helm's notes, controllers that wait for `spec.clusterIP`), so every Service gets one the way a
cluster gives it: a free address of k3s's default service range 10.43.0.0/16 (`None` for a headless
Service), the single-stack IPv4 fields that go with it, and for NodePort and LoadBalancer Services a free
port of 30000-32767. An address or port the user asks for is checked against the range and the other
Services. On update the allocated values are kept when the new object omits them (kube's
`patchAllocatedValues`) and may not change; moving to a type that has no use for them drops them
(`dropTypeDependentFields`).

Pure functions over the Service and the other stored Services: the caller (`rest`) runs them and the
storage write without yielding to the event loop in between, so two writes never take the same value.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Iterable
from typing import Any

from k3c.apiserver.errors import Cause
from k3c.apiserver.goformat import quote

__all__ = ["SERVICE_CIDR", "NODE_PORTS", "allocate"]

Obj = dict[str, Any]

SERVICE_CIDR = ipaddress.IPv4Network("10.43.0.0/16")
NODE_PORTS = range(30000, 32768)
# The first address is the `kubernetes` Service's on a cluster; never handed out.
_FIRST = 2
_WITH_NODE_PORTS = ("NodePort", "LoadBalancer")


def _spec(obj: Obj) -> Obj:
    spec = obj.get("spec")
    return spec if isinstance(spec, dict) else {}


def _ports(spec: Obj) -> list[Obj]:
    ports = spec.get("ports")
    return [p for p in ports if isinstance(p, dict)] if isinstance(ports, list) else []


def _used(others: Iterable[Obj]) -> tuple[set[str], set[int]]:
    ips: set[str] = set()
    ports: set[int] = set()
    for other in others:
        spec = _spec(other)
        ips.update(ip for ip in spec.get("clusterIPs") or [spec.get("clusterIP")] if isinstance(ip, str))
        ports.update(p["nodePort"] for p in _ports(spec) if isinstance(p.get("nodePort"), int))
    return ips, ports


def _needs_node_ports(spec: Obj) -> bool:
    kind = spec.get("type")
    return kind == "NodePort" or (kind == "LoadBalancer" and spec.get("allocateLoadBalancerNodePorts") is not False)


def _go_strings(values: list[Any]) -> str:
    return "[]string{" + ", ".join(quote(str(v)) for v in values) + "}"


def _free_ip(used: set[str]) -> str:
    size = SERVICE_CIDR.num_addresses - 1  # the broadcast address is not handed out either
    for _ in range(64):
        candidate = str(SERVICE_CIDR.network_address + random.randrange(_FIRST, size))
        if candidate not in used:
            return candidate
    for offset in range(_FIRST, size):
        candidate = str(SERVICE_CIDR.network_address + offset)
        if candidate not in used:
            return candidate
    raise RuntimeError("no free address in the service range")


def _check_ip(ip: Any, used: set[str]) -> str:
    """Why a requested clusterIP cannot be had ("" when it can)."""
    try:
        addr = ipaddress.ip_address(str(ip))
    except ValueError:
        return "must be a valid IP address"
    if addr not in SERVICE_CIDR or addr in (SERVICE_CIDR.network_address, SERVICE_CIDR.broadcast_address):
        return (f"failed to allocate IP {ip}: the provided IP ({ip}) is not in the valid range. The range of valid "
                f"IPs is {SERVICE_CIDR}")
    if str(addr) in used:
        return f"failed to allocate IP {ip}: provided IP is already allocated"
    return ""


def _drop_type_dependent(spec: Obj, old_spec: Obj) -> None:
    """Values the old type needed and the new one cannot use go, unless the user changed them."""
    if not _needs_node_ports(spec) and _needs_node_ports(old_spec):
        old_ports = {(p.get("port"), p.get("protocol")): p.get("nodePort") for p in _ports(old_spec)}
        for p in _ports(spec):
            if p.get("nodePort") is not None and old_ports.get((p.get("port"), p.get("protocol"))) == p["nodePort"]:
                del p["nodePort"]
    if spec.get("type") == "ExternalName" and old_spec.get("type") != "ExternalName":
        for key in ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy", "internalTrafficPolicy"):
            if spec.get(key) == old_spec.get(key):
                spec.pop(key, None)


def _keep_allocated(spec: Obj, old_spec: Obj) -> list[Cause]:
    """An update keeps the addresses it does not mention, and may not change them."""
    if spec.get("type") == "ExternalName" or not old_spec.get("clusterIP"):
        return []
    if not spec.get("clusterIP") and not spec.get("clusterIPs"):
        spec["clusterIP"] = old_spec["clusterIP"]
        spec["clusterIPs"] = list(old_spec.get("clusterIPs") or [old_spec["clusterIP"]])
    elif spec.get("clusterIP", old_spec["clusterIP"]) != old_spec["clusterIP"]:
        return [Cause("spec.clusterIPs[0]", "FieldValueInvalid",
                      f"Invalid value: {_go_strings([spec.get('clusterIP')])}: may not change once set")]
    if _needs_node_ports(spec):
        old_ports = {(p.get("port"), p.get("protocol")): p.get("nodePort") for p in _ports(old_spec)}
        for p in _ports(spec):
            kept = old_ports.get((p.get("port"), p.get("protocol")))
            if p.get("nodePort") in (None, 0) and kept:
                p["nodePort"] = kept
    return []


def _cluster_ip(spec: Obj, used_ips: set[str]) -> list[Cause]:
    if spec.get("type") == "ExternalName":
        return []
    requested = spec.get("clusterIP") or next(iter(spec.get("clusterIPs") or []), "")
    if requested == "None":
        spec["clusterIP"], spec["clusterIPs"] = "None", ["None"]
    elif requested:
        problem = _check_ip(requested, used_ips)
        if problem:
            return [Cause("spec.clusterIPs", "FieldValueInvalid",
                          f"Invalid value: {_go_strings([requested])}: {problem}")]
        spec["clusterIP"], spec["clusterIPs"] = str(requested), [str(requested)]
    else:
        ip = _free_ip(used_ips)
        spec["clusterIP"], spec["clusterIPs"] = ip, [ip]
    if spec.get("ipFamilies") is None:
        spec["ipFamilies"] = ["IPv4"]
    if spec.get("ipFamilyPolicy") is None:
        spec["ipFamilyPolicy"] = "SingleStack"
    return []


def _node_ports(spec: Obj, used_ports: set[int]) -> list[Cause]:
    if not _needs_node_ports(spec):
        return []
    causes: list[Cause] = []
    taken = set(used_ports)
    for i, p in enumerate(spec.get("ports") or []):
        if not isinstance(p, dict):
            continue
        want = p.get("nodePort")
        if want in (None, 0):
            continue
        field = f"spec.ports[{i}].nodePort"
        if not isinstance(want, int) or want not in NODE_PORTS:
            causes.append(Cause(field, "FieldValueInvalid", f"Invalid value: {want}: provided port is not in the "
                                f"valid range. The range of valid ports is {NODE_PORTS.start}-{NODE_PORTS.stop - 1}"))
        elif want in taken:
            causes.append(Cause(field, "FieldValueInvalid", f"Invalid value: {want}: provided port is already allocated"))
        taken.add(want)
    free = [port for port in NODE_PORTS if port not in taken]
    random.shuffle(free)
    for p in _ports(spec):
        if p.get("nodePort") in (None, 0):
            if not free:
                causes.append(Cause("spec.ports", "FieldValueInvalid", "Invalid value: no free node port"))
                break
            p["nodePort"] = free.pop()
    return causes


def allocate(obj: Obj, old: Obj | None, others: Iterable[Obj]) -> list[Cause]:
    """Give a Service being created (`old` None) or updated its addresses, in place; the causes of a 422.

    `others` are the other stored Services (not this one), whose addresses and ports are taken.
    """
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return []
    used_ips, used_ports = _used(others)
    old_spec = _spec(old) if old is not None else {}
    _drop_type_dependent(spec, old_spec)
    causes = _keep_allocated(spec, old_spec)
    if causes:
        return causes
    return _cluster_ip(spec, used_ips) + _node_ports(spec, used_ports)
