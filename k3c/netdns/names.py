"""Which names answer with which address on which network: the table the per-network resolvers read.

Made from objects alone, as the operator writes them: a Network serves names when it has a gateway on this
node and DNS on (``spec.enableDNS``: absent means on, except for the default network ``bridge``, as docker
does); a LocalContainer is known on a network while it is Running and its ``status.networks`` has an
address there. Its names there are its docker name (the ``k3c.io/name`` annotation, else the object's
name), its short docker ID (as docker answers it), its ``--network-alias`` aliases for that network
(``spec.networks[].aliases``, and any the status carries), and its hostname (``spec.hostname``) with the
hostname's first label. Names compare case-insensitively (as :class:`dns.name.Name` compares them), and a
name is answered only on the networks its container is attached to: two networks never see each other's.
As docker's resolver does, a container asking sees the names of every network it is attached to (its
nameserver is one network's gateway, a compose service on two networks must still find the other's
services): the asking container is known by its source address on the network asked.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import dns.exception
import dns.name

from k3c.dockerid import docker_name, object_id

log = logging.getLogger(__name__)

#: The default network's name: DNS is off on it unless its spec turns it on (docker's default bridge).
DEFAULT_NETWORK = "bridge"
#: How many hex digits of the docker ID docker's resolver answers to (``docker ps``'s short ID).
SHORT_ID = 12

#: (namespace, name) of a Network: containers attach to networks of their own namespace.
NetKey = tuple[str, str]


@dataclass(frozen=True, slots=True)
class ServedNetwork:
    """A network whose resolver runs on this node, listening on its gateway."""

    key: NetKey
    gateway: ipaddress.IPv4Address


@dataclass(frozen=True, slots=True)
class Attachment:
    """A running container's names and address on one network."""

    network: NetKey
    ip: ipaddress.IPv4Address
    names: frozenset[dns.name.Name]


def key_of(obj: Mapping[str, Any]) -> NetKey:
    meta = obj.get("metadata") or {}
    return (str(meta.get("namespace") or ""), str(meta.get("name") or ""))


def dns_enabled(obj: Mapping[str, Any]) -> bool:
    """``spec.enableDNS``, defaulting to on, but off on the default network ``bridge``."""
    flag = (obj.get("spec") or {}).get("enableDNS")
    return bool(flag) if flag is not None else key_of(obj)[1] != DEFAULT_NETWORK


def served_network(obj: Mapping[str, Any], node: str) -> ServedNetwork | None:
    """The network as this node serves it, or None: DNS off, no gateway yet, on another node, being deleted."""
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    owner = str(status.get("node") or spec.get("nodeName") or "")
    if not dns_enabled(obj) or owner not in ("", node) or (obj.get("metadata") or {}).get("deletionTimestamp"):
        return None
    gateway = _ipv4(status.get("gateway"))
    return ServedNetwork(key_of(obj), gateway) if gateway is not None else None


def attachments(obj: Mapping[str, Any]) -> list[Attachment]:
    """A container's names and address on each network it is attached to; none unless it is Running."""
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    if status.get("phase") != "Running":
        return []
    namespace = key_of(obj)[0]
    spec_aliases = {str(n.get("name")): list(n.get("aliases") or []) for n in spec.get("networks") or []
                    if isinstance(n, Mapping)}
    hostname = str(spec.get("hostname") or "")
    common = [docker_name(obj), object_id(obj)[:SHORT_ID], hostname, hostname.split(".", 1)[0]]
    found = []
    for entry in status.get("networks") or []:
        if not isinstance(entry, Mapping) or (ip := _ipv4(entry.get("ip"))) is None:
            continue
        net = str(entry.get("name") or "")
        wanted = [*common, *spec_aliases.get(net, []), *(entry.get("aliases") or [])]
        found.append(Attachment((namespace, net), ip, _names(wanted)))
    return found


def _names(texts: Iterable[Any]) -> frozenset[dns.name.Name]:
    """Absolute DNS names of the texts that make one (an empty text, or a label over 63 bytes, does not)."""
    names = set()
    for text in texts:
        if not isinstance(text, str) or not text.strip("."):
            continue
        try:
            names.add(dns.name.from_text(text.rstrip("."), origin=dns.name.root))
        except dns.exception.DNSException:
            log.debug("not a DNS name, not served: %r", text)
    return frozenset(names)


def _ipv4(value: Any) -> ipaddress.IPv4Address | None:
    try:
        return ipaddress.IPv4Address(str(value).split("/", 1)[0]) if value else None
    except ValueError:
        return None


class NameTable:
    """Every known container's names per network, updated one container at a time (by ``metadata.uid``)."""

    def __init__(self) -> None:
        self._by_uid: dict[str, list[Attachment]] = {}
        #: network → name → uid → address (several containers may share an alias: all are answered)
        self._index: dict[NetKey, dict[dns.name.Name, dict[str, ipaddress.IPv4Address]]] = {}
        #: network → address → uid: who asks
        self._clients: dict[NetKey, dict[ipaddress.IPv4Address, str]] = {}

    def put(self, obj: Mapping[str, Any]) -> None:
        """The container as it is now (added, changed, stopped: a stopped one is known nowhere)."""
        uid = str((obj.get("metadata") or {}).get("uid") or "")
        self.remove(uid)
        found = attachments(obj)
        if not uid or not found:
            return
        self._by_uid[uid] = found
        for att in found:
            names = self._index.setdefault(att.network, {})
            for name in att.names:
                names.setdefault(name, {})[uid] = att.ip
            self._clients.setdefault(att.network, {})[att.ip] = uid

    def remove(self, uid: str) -> None:
        for att in self._by_uid.pop(uid, []):
            names = self._index.get(att.network, {})
            for name in att.names:
                holders = names.get(name, {})
                holders.pop(uid, None)
                if not holders:
                    names.pop(name, None)
            if not names:
                self._index.pop(att.network, None)
            clients = self._clients.get(att.network, {})
            if clients.get(att.ip) == uid:
                del clients[att.ip]
            if not clients:
                self._clients.pop(att.network, None)

    def replace(self, objs: Iterable[Mapping[str, Any]]) -> None:
        """Everything anew, from a fresh list of every container."""
        self._by_uid.clear()
        self._index.clear()
        self._clients.clear()
        for obj in objs:
            self.put(obj)

    def lookup(self, network: NetKey, name: dns.name.Name,
               client: ipaddress.IPv4Address | None = None) -> list[ipaddress.IPv4Address] | None:
        """The addresses ``name`` has on ``network``, sorted; None if it is no container's name there.

        With the ``client`` asking (its address on ``network``): if that is a container's, the names of its
        other networks too, ``network``'s first, then the others' in the order of its status."""
        for net in self._networks_of(network, client):
            holders = self._index.get(net, {}).get(name)
            if holders:
                return sorted(set(holders.values()))
        return None

    def _networks_of(self, network: NetKey, client: ipaddress.IPv4Address | None) -> list[NetKey]:
        uid = self._clients.get(network, {}).get(client) if client is not None else None
        others = [att.network for att in self._by_uid.get(uid, [])] if uid else []
        return [network, *(net for net in others if net != network)]
