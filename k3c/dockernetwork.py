"""Docker's view of k3c's Networks: what `docker network inspect` and `ls` show, and the objects docker's writes make.

Why one module for the CLI and the Docker API: `k3c network inspect` and ``GET /networks/{id}`` must print
the same document, and docker-compose compares what it created (driver, options, labels, internal) with what
inspect returns, so the object a create writes and the document read back from it are defined here once.

- A Network's docker ID derives from its uid as a container's does (:func:`k3c.dockerid.object_id`).
- docker's predefined networks always show: ``bridge`` is a Network object the node makes (shown from a
  stand-in with k3c's bridge when the object is not there yet); ``host`` and ``none`` are pseudo-networks
  with no object (``spec.hostNetwork``; ``spec.networks: [{name: none}]``), shown with docker's drivers
  ``host`` and ``null`` and IDs derived from their names, as docker shows them.
- Labels: the valid Kubernetes ones become the object's labels (``kubectl get net -l``), and all of them, as
  given, are kept in :data:`~k3c.api.LABELS_ANNOTATION`, which inspect reads back.
- ``connect``/``disconnect`` are merge patches of the LocalContainer's ``spec.networks`` (absent means the
  default network only; ``none`` stands for "attached to nothing"); the operator makes them so on the node.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from k3c import dockerid
from k3c.api import ATTACHABLE_ANNOTATION, NAME_ANNOTATION, NETWORKS
from k3c.networkrules import DEFAULT_NETWORK, PREDEFINED, PSEUDO_NETWORKS, WEBHOOK, users_of
from k3c.prunefilters import label_matches

#: docker's driver names of the predefined networks.
PREDEFINED_DRIVERS = {DEFAULT_NETWORK: "bridge", "host": "host", "none": "null"}
#: `docker network ls --filter` keys.
LIST_FILTERS = ("dangling", "driver", "id", "label", "name", "scope", "type")
ZERO_TIME = "0001-01-01T00:00:00Z"
_DENIED = re.compile(r'^admission webhook "' + re.escape(WEBHOOK) + r'" denied the request: ')


class NetworkError(Exception):
    """A network request docker refuses; ``status`` is docker's HTTP status for it, ``message`` its words."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def daemon_message(message: str) -> str:
    """An API refusal as docker words it: the admission webhook's attribution dropped."""
    return _DENIED.sub("", message)


# ---- the object a create makes ----------------------------------------------------------------------
@dataclass
class NetworkRequest:
    """What `docker network create` asks for."""

    name: str
    driver: str = "bridge"
    subnet: str = ""
    gateway: str = ""
    ip_range: str = ""
    internal: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)
    #: docker's swarm flag (compose sets it): no effect, as any container may join; shown back as given
    attachable: bool = False


def request_problem(req: NetworkRequest) -> NetworkError | None:
    """What docker refuses before anything is written (addresses and names in use are the admission
    webhook's to judge, so that every writer, kubectl too, meets the same rules)."""
    if not dockerid.valid_docker_name(req.name):
        return NetworkError(400, f'invalid network name "{req.name}": only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed')
    if req.name == DEFAULT_NETWORK:
        return NetworkError(409, f"network with name {req.name} already exists")
    if req.name in PSEUDO_NETWORKS:
        return NetworkError(403, f"operation is not permitted on predefined {req.name} network")
    if req.driver != "bridge":
        return NetworkError(404, f'plugin "{req.driver}" not found (k3c networks use the bridge driver)')
    return None


def network_object(req: NetworkRequest) -> dict[str, Any]:
    """The Network object of a create (its namespace is the writer's)."""
    meta: dict[str, Any] = {"name": dockerid.object_name(req.name), "annotations": {NAME_ANNOTATION: req.name}}
    if req.attachable:
        meta["annotations"][ATTACHABLE_ANNOTATION] = "true"
    labelled = dockerid.label_metadata(req.labels)
    meta["annotations"].update(labelled.get("annotations") or {})
    if labelled.get("labels"):
        meta["labels"] = labelled["labels"]
    optional = {"subnet": req.subnet, "gateway": req.gateway, "ipRange": req.ip_range, "options": req.options}
    spec = {"driver": req.driver, "internal": req.internal, **{k: v for k, v in optional.items() if v}}
    return {"apiVersion": NETWORKS.api_version, "kind": NETWORKS.kind, "metadata": meta, "spec": spec}


def labels_of(obj: Mapping[str, Any]) -> dict[str, str]:
    """The docker labels a Network was created with (the object's own labels when no client kept them)."""
    return dockerid.docker_labels(obj.get("metadata") or {})


# ---- inspect ----------------------------------------------------------------------------------------
def _endpoint(c: Mapping[str, Any], ip: str, prefix: int | None, mac: str = "") -> tuple[str, dict[str, str]]:
    return dockerid.object_id(c), {"Name": dockerid.docker_name(c), "EndpointID": "", "MacAddress": mac,
                                   "IPv4Address": f"{ip}/{prefix if prefix is not None else 32}" if ip else "",
                                   "IPv6Address": ""}


def endpoints(object_name: str, containers: Iterable[Mapping[str, Any]], default_prefix: int | None = None,
              ) -> dict[str, dict[str, str]]:
    """The containers attached to the Network ``object_name`` as docker lists a network's endpoints: from
    their ``status.networks``; on the default network also those of before it (no ``status.networks``,
    just ``status.ip``)."""
    out: dict[str, dict[str, str]] = {}
    for c in containers:
        spec, st = c.get("spec") or {}, c.get("status") or {}
        attached = st.get("networks")
        if attached:
            for n in attached:
                if n.get("name") == object_name and n.get("ip"):
                    key, value = _endpoint(c, n["ip"], n.get("prefixLength", default_prefix), n.get("mac", ""))
                    out[key] = value
        elif (object_name == DEFAULT_NETWORK and st.get("ip") and not spec.get("hostNetwork")
              and not spec.get("networks")):
            key, value = _endpoint(c, st["ip"], default_prefix)
            out[key] = value
    return out


def _ipam(subnet: str, gateway: str, ip_range: str) -> list[dict[str, str]]:
    if not subnet:
        return []
    net = ipaddress.ip_network(subnet, strict=False)
    entry = {"Subnet": subnet, "Gateway": gateway or str(net.network_address + 1)}
    if ip_range:
        entry["IPRange"] = ip_range
    return [entry]


def _doc(name: str, net_id: str, created: str, driver: str, ipam: dict[str, Any], internal: bool,
         options: dict[str, str], labels: dict[str, str]) -> dict[str, Any]:
    return {"Name": name, "Id": net_id, "Created": created, "Scope": "local", "Driver": driver,
            "EnableIPv6": False, "IPAM": ipam, "Internal": internal, "Attachable": False, "Ingress": False,
            "ConfigFrom": {"Network": ""}, "ConfigOnly": False, "Containers": {}, "Options": options,
            "Labels": labels}


def docker_network(obj: Mapping[str, Any], containers: Iterable[Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """A Network as `docker network inspect` shows it; ``containers`` (the namespace's LocalContainers)
    fill ``Containers``, left empty without them (as `docker network ls` leaves it)."""
    meta, spec, st = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
    subnet, gateway = spec.get("subnet") or st.get("subnet") or "", spec.get("gateway") or st.get("gateway") or ""
    try:
        config = _ipam(subnet, gateway, spec.get("ipRange") or "")
    except ValueError:
        config = []
    options = dict(spec.get("options") or {})  # a user network's: exactly as given (compose compares them)
    if meta.get("name") == DEFAULT_NETWORK:  # the node's own, as dockerd shows docker0
        options = {"com.docker.network.bridge.default_bridge": "true",
                   **({"com.docker.network.bridge.name": st["bridge"]} if st.get("bridge") else {}), **options}
    doc = _doc(dockerid.docker_name(obj), dockerid.object_id(obj), meta.get("creationTimestamp") or ZERO_TIME,
               spec.get("driver") or "bridge", {"Driver": "default", "Options": {}, "Config": config},
               bool(spec.get("internal")), options, labels_of(obj))
    doc["Attachable"] = (meta.get("annotations") or {}).get(ATTACHABLE_ANNOTATION) == "true"
    if containers is not None:
        prefix = ipaddress.ip_network(subnet, strict=False).prefixlen if config else None
        doc["Containers"] = endpoints(str(meta.get("name") or ""), containers, prefix)
    return doc


def predefined(name: str, subnet: str = "", bridge: str = "",
               containers: Iterable[Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """A predefined network that has no object: ``host``, ``none``, and ``bridge`` before the node made its
    object (its subnet and bridge device when the caller knows them)."""
    options: dict[str, str] = {}
    ipam: dict[str, Any] = {"Driver": "default", "Options": None, "Config": []}
    if name == DEFAULT_NETWORK:
        options = {"com.docker.network.bridge.default_bridge": "true"}
        if bridge:
            options["com.docker.network.bridge.name"] = bridge
        ipam["Config"] = _ipam(subnet, "", "")
    doc = _doc(name, dockerid.network_id(name), ZERO_TIME, PREDEFINED_DRIVERS[name], ipam, False, options, {})
    if containers is not None and name == DEFAULT_NETWORK:
        prefix = ipaddress.ip_network(subnet, strict=False).prefixlen if subnet else None
        doc["Containers"] = endpoints(DEFAULT_NETWORK, containers, prefix)
    return doc


def all_networks(objects: Iterable[Mapping[str, Any]], subnet: str = "", bridge: str = "",
                 containers: Iterable[Mapping[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Every network docker would list: the predefined ones (from their object when there is one), then
    the namespace's Networks by name."""
    objs = sorted(objects, key=dockerid.docker_name)
    by_name = {dockerid.docker_name(o): o for o in objs}
    cs = list(containers) if containers is not None else None
    out = [docker_network(by_name[n], cs) if n in by_name else predefined(n, subnet, bridge, cs) for n in PREDEFINED]
    return out + [docker_network(o, cs) for o in objs if dockerid.docker_name(o) not in PREDEFINED]


def is_builtin(doc: Mapping[str, Any]) -> bool:
    return doc["Name"] in PREDEFINED


def lookup(docs: Iterable[dict[str, Any]], ref: str) -> list[dict[str, Any]]:
    """The networks ``ref`` designates in docker's order: full ID, name, then ID prefix (more than one
    result: an ambiguous prefix)."""
    items = list(docs)
    for key in ("Id", "Name"):
        found = [d for d in items if d[key] == ref]
        if found:
            return found[:1]
    return [d for d in items if ref and d["Id"].startswith(ref)] if re.fullmatch(r"[0-9a-f]+", ref) else []


def find(docs: Iterable[dict[str, Any]], ref: str) -> dict[str, Any]:
    """One network by ``ref``; docker's 404 when none, and its words for an ambiguous prefix."""
    found = lookup(docs, ref)
    if not found:
        raise NetworkError(404, f"network {ref} not found")
    if len(found) > 1:
        raise NetworkError(404, f"network {ref} is ambiguous ({len(found)} matches found based on ID prefix)")
    return found[0]


# ---- filters and prune ------------------------------------------------------------------------------
def _name_matches(pattern: str, name: str) -> bool:
    try:
        return re.search(pattern, name) is not None
    except re.error:
        return pattern in name


def matches(doc: Mapping[str, Any], filters: Mapping[str, list[str]], in_use: bool) -> bool:
    """docker's network filters (values of one key OR-ed, labels AND-ed, keys AND-ed); ``in_use``: a
    container names it."""
    def check(key: str, value: str) -> bool:
        if key == "dangling":
            return (value.lower() in ("1", "true")) == (not in_use and not is_builtin(doc))
        if key == "type":
            return (value == "builtin") == is_builtin(doc)
        return {"driver": lambda: doc["Driver"] == value, "id": lambda: doc["Id"].startswith(value),
                "label": lambda: label_matches(doc["Labels"], value), "name": lambda: _name_matches(value, doc["Name"]),
                "scope": lambda: value == "local"}[key]()

    return all((all if k == "label" else any)(check(k, v) for v in values) for k, values in filters.items() if values)


def filter_problem(filters: Mapping[str, list[str]]) -> NetworkError | None:
    """docker's refusal of filters it does not know."""
    for key in filters:
        if key not in LIST_FILTERS:
            return NetworkError(400, f"invalid filter '{key}'")
    for value in filters.get("type", []):
        if value not in ("custom", "builtin"):
            return NetworkError(400, f"invalid filter: 'type'='{value}'")
    for value in filters.get("dangling", []):
        if value.lower() not in ("1", "0", "true", "false"):
            return NetworkError(400, f"invalid filter 'dangling={value}'")
    return None


def in_use(obj: Mapping[str, Any], containers: Iterable[Mapping[str, Any]]) -> bool:
    return bool(users_of(str((obj.get("metadata") or {}).get("name") or ""), containers))


# ---- connect / disconnect ---------------------------------------------------------------------------
def attachments(container: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A container's ``spec.networks`` as a list of entries, the default network spelled out."""
    spec = container.get("spec") or {}
    current = [dict(n) for n in spec.get("networks") or []]
    return current or [{"name": DEFAULT_NETWORK}]


def connect_networks(container: Mapping[str, Any], network: Mapping[str, Any], aliases: list[str],
                     ) -> list[dict[str, Any]]:
    """``spec.networks`` once the container is connected to Network ``network`` with ``aliases``."""
    cname, nname = dockerid.docker_name(container), dockerid.docker_name(network)
    if (container.get("spec") or {}).get("hostNetwork"):
        raise NetworkError(400, "container cannot be disconnected from host network or connected to host network")
    current = [n for n in attachments(container) if n.get("name") != "none"]
    if any(n.get("name") == network["metadata"]["name"] for n in current):
        raise NetworkError(403, f"endpoint with name {cname} already exists in network {nname}")
    entry: dict[str, Any] = {"name": network["metadata"]["name"]}
    if aliases:
        entry["aliases"] = list(dict.fromkeys(aliases))
    return [*current, entry]


def disconnect_networks(container: Mapping[str, Any], network_object_name: str, network_name: str,
                        force: bool) -> list[dict[str, Any]] | None:
    """``spec.networks`` once the container left the network (``none`` when nothing is left); None when
    there is nothing to change and ``force`` says not to mind."""
    cname = dockerid.docker_name(container)
    if (container.get("spec") or {}).get("hostNetwork"):
        raise NetworkError(400, "container cannot be disconnected from host network or connected to host network")
    current = attachments(container)
    rest = [n for n in current if n.get("name") != network_object_name]
    if len(rest) == len(current):
        if force:
            return None
        raise NetworkError(403, f"container {cname} is not connected to network {network_name}")
    return rest or [{"name": "none"}]


@dataclass(frozen=True)
class ChangeWait:
    """What a connect or disconnect of a running container waits for: docker answers once the endpoint is
    joined; k3c recreates the sandbox (after the container's stop grace), so the answer waits until the
    operator started the container for this generation of its spec, or failed to."""

    generation: int
    timeout: float

    def done(self, obj: Mapping[str, Any] | None) -> bool:
        status = (obj or {}).get("status") or {}
        return obj is None or int(status.get("observedGeneration") or 0) >= self.generation

    @staticmethod
    def failure(obj: Mapping[str, Any] | None) -> str | None:
        """Why the start on the new networks failed, if it did."""
        status = (obj or {}).get("status") or {}
        return str(status.get("message") or "start failed") if status.get("phase") == "Failed" else None


def change_wait(patched: Mapping[str, Any]) -> ChangeWait | None:
    """For the API's answer to the patch; None for a container not running (its next start uses them)."""
    if ((patched.get("status") or {}).get("phase")) != "Running":
        return None
    grace = float((patched.get("spec") or {}).get("stopTimeout", 10))
    return ChangeWait(int((patched.get("metadata") or {}).get("generation") or 0), grace + 30.0)


def networks_patch(container: Mapping[str, Any], networks: list[dict[str, Any]]) -> dict[str, Any]:
    """The merge patch setting ``spec.networks`` (the list replaces the old one whole); the resourceVersion
    makes a concurrent connect fail instead of one of them being lost."""
    rv = (container.get("metadata") or {}).get("resourceVersion")
    return {"metadata": {"resourceVersion": rv}, "spec": {"networks": networks}}


# ---- the networks a new container asks for ------------------------------------------------------------
@dataclass
class Wanted:
    """One network a new container asks for (`run --network REF --network-alias A --ip IP`, a create body's
    endpoint): ``ref`` is a docker name, ID or ID prefix."""

    ref: str
    aliases: list[str] = field(default_factory=list)
    ipv4_address: str = ""


def spec_networks(objects: Iterable[Mapping[str, Any]], wanted: list[Wanted]) -> list[dict[str, Any]] | None:
    """``spec.networks`` for a container asking for ``wanted`` among the namespace's Networks ``objects``;
    None for the default network alone (absent keeps its warm sandboxes). docker's refusals: an unknown
    network (404 ``network X not found``), ``host`` among others, ``none`` not alone (400). A network named
    twice (by name and by ID) is one entry, its aliases joined."""
    objs = list(objects)
    docs = all_networks(objs)
    by_id = {docker_network(o)["Id"]: o for o in objs}
    out: dict[str, dict[str, Any]] = {}
    for want in wanted:
        doc = find(docs, want.ref)
        if doc["Name"] == "host":
            raise NetworkError(400, "conflicting options: host type networking can't be used with other networks")
        obj = by_id.get(doc["Id"])
        entry = out.setdefault(doc["Id"], {"name": obj["metadata"]["name"] if obj else doc["Name"]})
        aliases = list(dict.fromkeys([*entry.get("aliases", []), *want.aliases]))
        if aliases:
            entry["aliases"] = aliases
        if want.ipv4_address:
            entry["ipv4Address"] = want.ipv4_address
    entries = list(out.values())
    if any(e["name"] == "none" for e in entries) and len(entries) > 1:
        raise NetworkError(400, "container cannot be connected to multiple networks with one of the networks in "
                           "private (none) mode")
    return None if entries in ([], [{"name": DEFAULT_NETWORK}]) else entries


def predefined_connect_refusal(name: str) -> str:
    """docker's words when `network connect` names a network without an object (bridge, host, none)."""
    return (f"container cannot be connected to the pre-defined network {name} "
            "(k3c attaches bridge, host and none at create only)")


# ---- containers' view of their networks --------------------------------------------------------------
def network_names(objects: Iterable[Mapping[str, Any]]) -> dict[str, tuple[str, str]]:
    """Network object name → (docker name, docker ID), with the predefined ones that have no object."""
    out = {n: (n, dockerid.network_id(n)) for n in PREDEFINED}
    for o in objects:
        out[str(o["metadata"]["name"])] = (dockerid.docker_name(o), dockerid.object_id(o))
    return out
