"""`k3c network create|ls|rm|inspect|prune|connect|disconnect` on Network objects, with docker's flags and output.

Why the CLI only writes objects here: what a network is on the node (its bridge, its addresses, its
resolver) is the operator's to make; what may be written is admission's to judge (the ``networks.k3c.io``
webhook: bad addresses, overlaps, duplicate names, removing one in use), so the CLI shows the refusal as
docker's daemon words it. ``connect``/``disconnect`` patch the container's ``spec.networks``. The documents
shown come from k3c.dockernetwork, as the Docker API's do.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from k3c import dockerid
from k3c import dockernetwork as dn
from k3c.api import LOCAL_CONTAINERS, NETWORKS
from k3c.cli.common import (
    Containers,
    Session,
    Subcommands,
    WaitTimeout,
    add_command,
    add_group,
    add_inspect,
    command,
    for_each,
    parse_filters,
    print_inspected,
    session,
    wait_for,
    wait_removed,
)
from k3c.cli.errors import CLIError, daemon_error

if TYPE_CHECKING:
    from k3c.prunefilters import PruneFilters

NETWORK_TABLE = "{{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}"
NETWORK_HEADERS = {"ID": "NETWORK ID", "Name": "NAME", "Driver": "DRIVER", "Scope": "SCOPE", "IPv6": "IPV6",
                   "Internal": "INTERNAL", "Labels": "LABELS", "CreatedAt": "CREATED AT", "Label": "LABEL"}
REMOVE_TIMEOUT = 60.0
PRUNE_WARNING = "WARNING! This will remove all custom networks not used by at least one container."


def register(sub: Subcommands) -> None:
    nsub = add_group(sub, "network", "Manage networks")
    _register_create(nsub)
    ls = add_command(nsub, "ls", "List networks", usage="k3c network ls [OPTIONS]", aliases=["list"])
    ls.add_argument("-f", "--filter", action="append", default=[], metavar="filter",
                    help='Provide filter values (e.g. "driver=bridge")')
    ls.add_argument("--format", metavar="string", help="Format output: 'table', 'table TEMPLATE', 'json' or TEMPLATE")
    ls.add_argument("--no-trunc", action="store_true", help="Do not truncate the output")
    ls.add_argument("-q", "--quiet", action="store_true", help="Only display network IDs")
    ls.set_defaults(func=ls_cmd)
    rm = add_command(nsub, "rm", "Remove one or more networks", usage="k3c network rm NETWORK [NETWORK...]",
                     aliases=["remove"])
    rm.add_argument("-f", "--force", action="store_true", help="Do not error if the network does not exist")
    rm.add_argument("names", nargs="+", metavar="NETWORK")
    rm.set_defaults(func=rm_cmd)
    add_inspect(nsub, "network", inspect_cmd)
    from k3c.cli.prune import add_prune

    add_prune(nsub, "network", "Remove all unused networks", "until=<timestamp>", prune_cmd)
    con = add_command(nsub, "connect", "Connect a container to a network",
                      usage="k3c network connect [OPTIONS] NETWORK CONTAINER")
    con.add_argument("--alias", action="append", default=[], metavar="strings",
                     help="Add network-scoped alias for the container")
    con.add_argument("--ip", metavar="string", help="IPv4 address (e.g., 172.30.100.104)")
    con.add_argument("network", metavar="NETWORK")
    con.add_argument("container", metavar="CONTAINER")
    con.set_defaults(func=connect_cmd)
    dis = add_command(nsub, "disconnect", "Disconnect a container from a network",
                      usage="k3c network disconnect [OPTIONS] NETWORK CONTAINER")
    dis.add_argument("-f", "--force", action="store_true", help="Force the container to disconnect from a network")
    dis.add_argument("network", metavar="NETWORK")
    dis.add_argument("container", metavar="CONTAINER")
    dis.set_defaults(func=disconnect_cmd)


def _register_create(nsub: Subcommands) -> None:
    c = add_command(nsub, "create", "Create a network", usage="k3c network create [OPTIONS] NETWORK")
    c.add_argument("-d", "--driver", default="bridge", metavar="string",
                   help='Driver to manage the Network (default "bridge")')
    c.add_argument("--subnet", action="append", default=[], metavar="strings",
                   help="Subnet in CIDR format that represents a network segment")
    c.add_argument("--gateway", action="append", default=[], metavar="strings",
                   help="IPv4 Gateway for the master subnet")
    c.add_argument("--ip-range", action="append", default=[], metavar="strings",
                   help="Allocate container ip from a sub-range")
    c.add_argument("--attachable", action="store_true", help="Enable manual container attachment")
    c.add_argument("--internal", action="store_true", help="Restrict external access to the network")
    c.add_argument("--label", action="append", default=[], metavar="list", help="Set metadata on a network")
    c.add_argument("-o", "--opt", action="append", default=[], metavar="map", help="Set driver specific options")
    c.add_argument("name", metavar="NETWORK")
    c.set_defaults(func=create_cmd)


# ---- addressing -------------------------------------------------------------------------------------
class Networks:
    """The namespace's Networks and docker's documents of them (the predefined ones included), read once."""

    def __init__(self, s: Session, with_containers: bool = False) -> None:
        self.s = s
        self.objects: list[dict[str, Any]] = s.client.get(s.path(NETWORKS)).get("items", [])
        self.containers: list[dict[str, Any]] = (
            s.client.get(s.path(LOCAL_CONTAINERS)).get("items", []) if with_containers else [])
        self.docs = dn.all_networks(self.objects, containers=self.containers if with_containers else None)
        self._by_id = {dn.docker_network(o)["Id"]: o for o in self.objects}

    def object_of(self, doc: dict[str, Any]) -> dict[str, Any] | None:
        return self._by_id.get(doc["Id"])

    def find(self, ref: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """docker's document of ``ref`` and its object (None for a predefined network without one)."""
        try:
            doc = dn.find(self.docs, ref)
        except dn.NetworkError as err:
            raise daemon_error(err.message) from None
        return doc, self.object_of(doc)


def _single(values: list[str], flag: str) -> str:
    if len(values) > 1:
        raise daemon_error(f"k3c networks take one {flag} (got {len(values)})")
    return values[0] if values else ""


def _pairs(values: list[str], what: str) -> dict[str, str]:
    out = {}
    for value in values:
        key, _, val = value.partition("=")
        if not key:
            raise CLIError(f'invalid argument "{value}" for "{what}" flag: empty key', 125)
        out[key] = val
    return out


# ---- create -----------------------------------------------------------------------------------------
@command()
def create_cmd(args: argparse.Namespace) -> int:
    req = dn.NetworkRequest(args.name, args.driver, _single(args.subnet, "--subnet"),
                            _single(args.gateway, "--gateway"), _single(args.ip_range, "--ip-range"),
                            args.internal, _pairs(args.label, "--label"), _pairs(args.opt, "-o, --opt"),
                            args.attachable)
    problem = dn.request_problem(req)
    if problem:
        raise daemon_error(problem.message)
    s = session(args)
    created = _write(lambda: s.client.create(s.path(NETWORKS), dn.network_object(req)), req.name)
    print(dn.docker_network(created)["Id"])
    return 0


def _write(call: Callable[[], dict[str, Any]], name: str) -> dict[str, Any]:
    """An API write, its refusals in docker's words (an object name taken is docker's duplicate name)."""
    from k3c.apierrors import AlreadyExists, APIError

    try:
        return call()
    except AlreadyExists:
        raise daemon_error(f"network with name {name} already exists") from None
    except APIError as err:
        raise daemon_error(dn.daemon_message(err.message)) from None


# ---- ls ---------------------------------------------------------------------------------------------
@dataclass
class NetworkRow:
    ID: str
    Name: str
    Driver: str
    Scope: str
    IPv6: str
    Internal: str
    Labels: str
    CreatedAt: str
    _labels: dict[str, str] = field(default_factory=dict)

    def Label(self, key: str) -> str:  # docker's template method name
        return self._labels.get(key, "")


def network_row(doc: dict[str, Any], no_trunc: bool) -> NetworkRow:
    from k3c.cli.common import go_time

    labels = doc["Labels"] or {}
    return NetworkRow(ID=doc["Id"] if no_trunc else doc["Id"][:12], Name=doc["Name"], Driver=doc["Driver"],
                      Scope=doc["Scope"], IPv6=str(doc["EnableIPv6"]).lower(), Internal=str(doc["Internal"]).lower(),
                      Labels=",".join(f"{k}={v}" for k, v in sorted(labels.items())),
                      CreatedAt=go_time(doc["Created"]) if doc["Created"] != dn.ZERO_TIME else "", _labels=labels)


@command()
def ls_cmd(args: argparse.Namespace) -> int:
    from k3c.cli.template import Format

    filters = parse_filters(args.filter, dn.LIST_FILTERS)
    problem = dn.filter_problem(filters)
    if problem:
        raise daemon_error(problem.message)
    fmt = Format.parse("{{.ID}}" if args.quiet else args.format, NETWORK_TABLE)
    s = session(args)
    nets = Networks(s, with_containers="dangling" in filters)
    used = {d["Id"] for d in nets.docs if (o := nets.object_of(d)) and dn.in_use(o, nets.containers)}
    rows = [network_row(d, args.no_trunc) for d in sorted(nets.docs, key=lambda d: d["Name"])
            if dn.matches(d, filters, d["Id"] in used)]
    print(fmt.render(rows, NETWORK_HEADERS), end="")
    return 0


# ---- rm / prune -------------------------------------------------------------------------------------
def remove_network(s: Session, obj: dict[str, Any]) -> None:
    """DELETE the object (admission refuses it while containers name it, said in docker's words) and wait
    while the operator tears its bridge down (a finalizer of its own holds the object until then)."""
    from k3c.apierrors import APIError, NotFound

    try:
        current = s.client.delete(s.path(NETWORKS, obj["metadata"]["name"]))
    except NotFound:
        return
    except APIError as err:
        raise daemon_error(dn.daemon_message(err.message)) from None
    wait_removed(s, current, NETWORKS, f"remove {dn.docker_network(obj)['Name']}", REMOVE_TIMEOUT)


@command()
def rm_cmd(args: argparse.Namespace) -> int:
    s = session(args)
    nets = Networks(s)

    def one(ref: str) -> None:
        try:
            doc, obj = nets.find(ref)
        except CLIError:
            if args.force:
                return
            raise
        if obj is None:
            raise daemon_error(f"{doc['Name']} is a pre-defined network and cannot be removed")
        remove_network(s, obj)
        print(ref, flush=True)

    return for_each(args.names, one)


def prune_networks(s: Session, filters: PruneFilters) -> tuple[int, str]:
    """Remove every custom network no container names, unless the filters spare it; (0 bytes, docker's
    output section), for `network prune` and `system prune`."""
    nets = Networks(s, with_containers=True)
    removed = []
    for obj in sorted(nets.objects, key=lambda o: dn.docker_network(o)["Name"]):
        doc = dn.docker_network(obj)
        if (dn.is_builtin(doc) or dn.in_use(obj, nets.containers) or obj["metadata"].get("deletionTimestamp")
                or filters.keep(obj["metadata"].get("creationTimestamp", ""), doc["Labels"])):
            continue
        try:
            remove_network(s, obj)
        except CLIError:
            continue  # taken into use meanwhile: docker's prune skips what it cannot remove
        removed.append(doc["Name"])
    return 0, "Deleted Networks:\n" + "".join(f"{name}\n" for name in removed) if removed else ""


@command()
def prune_cmd(args: argparse.Namespace) -> int:
    from k3c.cli.prune import confirmed, parse_prune_filters

    filters = parse_prune_filters(args.filter, ("until", "label", "label!"))
    if not args.force and not confirmed(PRUNE_WARNING):
        return 0
    _reclaimed, output = prune_networks(session(args), filters)
    if output:
        print(output)  # (docker's blank line after the section)
    return 0


# ---- inspect ----------------------------------------------------------------------------------------
@command()
def inspect_cmd(args: argparse.Namespace) -> int:
    nets = Networks(session(args), with_containers=True)
    found, missing = [], []
    for ref in args.names:
        try:
            found.append(nets.find(ref)[0])
        except CLIError:
            missing.append(ref)
    return print_inspected(found, missing, args.format, "network")


# ---- connect / disconnect ---------------------------------------------------------------------------
def _patch_networks(s: Session, container: dict[str, Any], networks: list[dict[str, Any]]) -> None:
    """Write the container's new networks; a running one is answered for once it runs on them."""
    from k3c.apierrors import APIError

    try:
        patched = s.client.merge_patch(s.path(LOCAL_CONTAINERS, container["metadata"]["name"]),
                                       dn.networks_patch(container, networks))
    except APIError as err:
        raise daemon_error(dn.daemon_message(err.message)) from None
    wait = dn.change_wait(patched)
    if wait is None:
        return
    try:
        last = wait_for(s, patched, wait.done, wait.timeout)
    except WaitTimeout:
        raise daemon_error(f"container {dockerid.docker_name(container)} was not restarted on its networks in "
                           f"{wait.timeout:.0f}s (is the k3c daemon running?)") from None
    if (why := wait.failure(last)) is not None:
        raise daemon_error(why)


@command()
def connect_cmd(args: argparse.Namespace) -> int:
    s = session(args)
    doc, obj = Networks(s).find(args.network)
    container = Containers(s).get(args.container)
    if obj is None:
        raise daemon_error(dn.predefined_connect_refusal(doc['Name']))
    try:
        networks = dn.connect_networks(container, obj, args.alias)
    except dn.NetworkError as err:
        raise daemon_error(err.message) from None
    if args.ip:
        networks[-1]["ipv4Address"] = args.ip
    _patch_networks(s, container, networks)
    return 0


@command()
def disconnect_cmd(args: argparse.Namespace) -> int:
    s = session(args)
    doc, obj = Networks(s).find(args.network)
    container = Containers(s).get(args.container)
    object_name = obj["metadata"]["name"] if obj is not None else doc["Name"]
    try:
        networks = dn.disconnect_networks(container, object_name, doc["Name"], args.force)
    except dn.NetworkError as err:
        raise daemon_error(err.message) from None
    if networks is not None:
        _patch_networks(s, container, networks)
    return 0
