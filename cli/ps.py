"""`k3c ps`, `k3c inspect` and `k3c info`: LocalContainers shown the way docker shows containers.

Why docker's shapes rather than the raw objects: scripts and fingers know `docker ps` columns,
`{{.Names}}`, `{{.State.Status}}` and `{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}`. The raw
object stays one `kubectl get lc NAME -o yaml` away, and k3c's own facts sit under the `K3c` key.
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from k3c import dockerid
from k3c.api import KUBECONFIG_FILE, VOLUMES
from k3c.cli.common import (
    Containers,
    Session,
    Subcommands,
    add_command,
    command,
    container_id,
    go_time,
    human_duration,
    print_inspected,
    session,
    short_id,
    since,
)
from k3c.cli.common import (
    parse_filters as common_parse_filters,
)
from k3c.cli.errors import CLIError, daemon_error
from k3c.dockerview import DOCKER_STATES, docker_inspect, docker_state, docker_volume, sort_newest_first

if TYPE_CHECKING:
    from k3c.cli.volumes import Volumes

PS_TABLE = "{{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}"
PS_HEADERS = {"ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND", "CreatedAt": "CREATED AT",
              "RunningFor": "CREATED", "Ports": "PORTS", "State": "STATE", "Status": "STATUS", "Size": "SIZE",
              "Names": "NAMES", "Labels": "LABELS", "Mounts": "MOUNTS", "Networks": "NETWORKS",
              "LocalVolumes": "LOCAL VOLUMES", "Label": "LABEL"}
FILTER_KEYS = ("id", "name", "label", "status", "ancestor", "exited", "volume", "network")


def register(sub: Subcommands) -> None:
    add_ps_command(sub)
    add_inspect_command(sub)
    add_port_command(sub)
    p = add_command(sub, "info", "Display system-wide information", usage="k3c info [OPTIONS]")
    p.add_argument("-f", "--format", metavar="string", help="Format output using a Go template (or 'json')")
    p.set_defaults(func=info_cmd)


def add_ps_command(sub: Subcommands, name: str = "ps", aliases: tuple[str, ...] = ()) -> None:
    """`k3c ps`, also `k3c container ls` (aliases `ps`, `list`) as docker has it."""
    prog = "k3c container" if aliases else "k3c"
    p = add_command(sub, name, "List containers", usage=f"{prog} {name} [OPTIONS]", aliases=list(aliases))
    p.add_argument("-a", "--all", action="store_true", help="Show all containers (default shows just running)")
    p.add_argument("-f", "--filter", action="append", default=[], metavar="filter",
                   help="Filter output based on conditions provided")
    p.add_argument("--format", metavar="string",
                   help="Format output: 'table', 'table TEMPLATE', 'json' or a Go TEMPLATE")
    p.add_argument("--last", type=int, default=-1, metavar="int",
                   help="Show n last created containers (includes all states)")
    p.add_argument("-l", "--latest", action="store_true",
                   help="Show the latest created container (includes all states)")
    p.add_argument("--no-trunc", action="store_true", help="Don't truncate output")
    p.add_argument("-q", "--quiet", action="store_true", help="Only display container IDs")
    p.set_defaults(func=ps_cmd)


def add_inspect_command(sub: Subcommands, containers_only: bool = False) -> None:
    """`k3c inspect`, and `k3c container inspect` (containers only)."""
    if containers_only:
        p = add_command(sub, "inspect", "Display detailed information on one or more containers",
                        usage="k3c container inspect [OPTIONS] CONTAINER [CONTAINER...]")
        p.set_defaults(type="container")
    else:
        p = add_command(sub, "inspect", "Return low-level information on k3c objects",
                        usage="k3c inspect [OPTIONS] NAME|ID [NAME|ID...]")
        p.add_argument("--type", choices=("container", "volume", "network"),
                       help="Only inspect objects of the given type")
    p.add_argument("-f", "--format", metavar="string", help="Format output using a Go template (or 'json')")
    p.add_argument("names", nargs="+", metavar="NAME|ID")
    p.set_defaults(func=inspect_cmd)


def add_port_command(sub: Subcommands, prog: str = "k3c") -> None:
    """`k3c port`, and `k3c container port`."""
    p = add_command(sub, "port", "List port mappings or a specific mapping for the container",
                    usage=f"{prog} port CONTAINER [PRIVATE_PORT[/PROTO]]")
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("port", nargs="?", metavar="PRIVATE_PORT[/PROTO]")
    p.set_defaults(func=port_cmd)


# ---- docker's view of a LocalContainer --------------------------------------------------------------
def command_line(obj: dict[str, Any]) -> str:
    st = obj.get("status") or {}
    if st.get("command"):
        command: str = st["command"]
        return command
    spec = obj.get("spec") or {}
    return " ".join([*(spec.get("command") or []), *(spec.get("args") or [])])


def ellipsis(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


def live_ports(obj: dict[str, Any]) -> list[dict[str, Any]]:
    """Published ports as they are bound now (status), else as asked (spec) - shown only while running."""
    st = obj.get("status") or {}
    if st.get("phase") != "Running" or (obj.get("spec") or {}).get("hostNetwork"):
        return []
    return st.get("ports") or (obj.get("spec") or {}).get("ports") or []


def format_ports(ports: list[dict[str, Any]]) -> str:
    """docker's DisplayablePorts: consecutive identical mappings grouped into ranges."""
    norm = sorted((int(p.get("containerPort", 0)), int(p.get("hostPort") or 0),
                    (p.get("protocol") or "TCP").lower(), p.get("hostIP") or "0.0.0.0") for p in ports)
    groups: dict[str, list[int]] = {}
    result: list[str] = []
    mappings: list[str] = []
    for cport, hport, proto, ip in norm:
        if hport != cport:
            host = f"[{ip}]" if ":" in ip else ip
            mappings.append(f"{host}:{hport}->{cport}/{proto}" if hport else f"{cport}/{proto}")
            continue
        key = f"{ip}/{proto}"
        group = groups.get(key)
        if group and cport == group[1] + 1:
            group[1] = cport
            continue
        if group:
            result.append(_port_group(key, *group))
        groups[key] = [cport, cport]
    result += [_port_group(key, *g) for key, g in groups.items()]
    return ", ".join(result + mappings)


def _port_group(key: str, first: int, last: int) -> str:
    ip, proto = key.split("/")
    span = str(first) if first == last else f"{first}-{last}"
    host = f"[{ip}]" if ":" in ip else ip
    return f"{host}:{span}->{span}/{proto}"


def all_labels(obj: dict[str, Any]) -> dict[str, str]:
    return {**(obj["metadata"].get("labels") or {}), **((obj.get("spec") or {}).get("labels") or {})}


#: a `docker ps` row's fields, alphabetical as docker's JSON: what templates can name
ROW_FIELDS = ("Command", "CreatedAt", "ID", "Image", "Labels", "LocalVolumes", "Mounts", "Names", "Networks",
              "Ports", "RunningFor", "Size", "State", "Status")


class ContainerRow:
    """One `docker ps` row. Each field is worked out when a template first names it: the default table
    shows 7 of the 14, `-q` one, and at hundreds of rows the rest is time `ps` would spend for nothing."""

    def __init__(self, obj: dict[str, Any], trunc: bool, now: float) -> None:
        self._obj = obj
        self._spec: dict[str, Any] = obj.get("spec") or {}
        self._trunc = trunc
        self._now = now

    def to_json(self) -> dict[str, str]:
        return {name: getattr(self, name) for name in ROW_FIELDS}

    def __str__(self) -> str:  # `{{.}}`: Go prints a struct's fields in braces
        return "{" + " ".join(getattr(self, name) for name in ROW_FIELDS) + "}"

    def Label(self, key: str) -> str:  # docker's template method name
        return self._labels.get(key, "")

    @functools.cached_property
    def _labels(self) -> dict[str, str]:
        return all_labels(self._obj)

    @functools.cached_property
    def _state(self) -> tuple[str, str]:
        return docker_state(self._obj, self._now)

    @functools.cached_property
    def Command(self) -> str:
        cmd = command_line(self._obj)
        return json.dumps(ellipsis(cmd, 20) if self._trunc else cmd, ensure_ascii=False)

    @functools.cached_property
    def CreatedAt(self) -> str:
        return go_time(self._obj["metadata"].get("creationTimestamp"))

    @functools.cached_property
    def ID(self) -> str:
        cid = container_id(self._obj)
        return short_id(cid) if self._trunc else cid

    @functools.cached_property
    def Image(self) -> str:
        return str(self._spec.get("image", ""))

    @functools.cached_property
    def Labels(self) -> str:
        return ",".join(f"{k}={v}" for k, v in sorted(self._labels.items()))

    @functools.cached_property
    def LocalVolumes(self) -> str:
        return str(sum(1 for m in self._spec.get("volumes") or [] if m.get("volume")))

    @functools.cached_property
    def Mounts(self) -> str:
        mounts = [m.get("volume") or m.get("hostPath") or "" for m in self._spec.get("volumes") or []]
        return ",".join(ellipsis(m, 15) if self._trunc else m for m in mounts)

    @functools.cached_property
    def Names(self) -> str:
        return dockerid.docker_name(self._obj)

    @functools.cached_property
    def Networks(self) -> str:
        return "host" if self._spec.get("hostNetwork") else "bridge"

    @functools.cached_property
    def Ports(self) -> str:
        return format_ports(live_ports(self._obj))

    @functools.cached_property
    def RunningFor(self) -> str:
        return human_duration(since(self._obj["metadata"].get("creationTimestamp"), self._now) or 0) + " ago"

    @property
    def Size(self) -> str:
        return "0B"

    @property
    def State(self) -> str:
        return self._state[0]

    @property
    def Status(self) -> str:
        return self._state[1]


# ---- filters ----------------------------------------------------------------------------------------
def parse_filters(values: list[str]) -> dict[str, list[str]]:
    filters = common_parse_filters(values, FILTER_KEYS)
    for val in filters.get("status", []):
        if val not in DOCKER_STATES:
            raise daemon_error(f"invalid filter 'status={val}'")
    return filters


def normalize_image(ref: str) -> str:
    """busybox → docker.io/library/busybox:latest, as docker's reference.ParseNormalizedNamed does."""
    name, digest = ref.split("@", 1) if "@" in ref else (ref, "")
    first = name.split("/", 1)[0]
    if "/" not in name or not ("." in first or ":" in first or first == "localhost"):
        name = ("docker.io/library/" if "/" not in name else "docker.io/") + name
    if digest:
        return f"{name}@{digest}"
    return name if re.search(r":[^/]+$", name) else name + ":latest"


def _ancestor(spec_image: str, want: str) -> bool:
    have = normalize_image(spec_image)
    if ":" in want.rsplit("/", 1)[-1] or "@" in want:
        return have == normalize_image(want)
    return have.rsplit(":", 1)[0] == normalize_image(want).rsplit(":", 1)[0]


def _label_match(labels: dict[str, str], want: str) -> bool:
    key, sep, val = want.partition("=")
    return key in labels and (not sep or labels[key] == val)


def _name_match(name: str, pattern: str) -> bool:
    try:
        return re.search(pattern, name) is not None
    except re.error:
        return pattern in name


def matches(obj: dict[str, Any], row: ContainerRow, filters: dict[str, list[str]]) -> bool:
    """docker's rule: values of one key are OR-ed, different keys AND-ed."""
    spec = obj.get("spec") or {}
    checks: dict[str, Callable[[str], bool]] = {
        "id": lambda v: container_id(obj).startswith(v),
        "name": lambda v: _name_match(dockerid.docker_name(obj), v),
        "label": lambda v: _label_match(row._labels, v),
        "status": lambda v: row.State == v,
        "ancestor": lambda v: _ancestor(spec.get("image", ""), v),
        "exited": lambda v: row.State == "exited" and str((obj.get("status") or {}).get("exitCode", 0)) == v,
        "volume": lambda v: any(m.get("volume") == dockerid.object_name(v)
                                or v in (m.get("hostPath"), m.get("mountPath")) for m in spec.get("volumes") or []),
        "network": lambda v: row.Networks == v,
    }
    return all(any(checks[key](v) for v in values) for key, values in filters.items())


# ---- ps ---------------------------------------------------------------------------------------------
@command()
def ps_cmd(args: argparse.Namespace) -> int:
    from k3c.cli.template import Format

    filters = parse_filters(args.filter)
    fmt = Format.parse("{{.ID}}" if args.quiet else args.format, PS_TABLE)
    s = session(args)
    items = sort_newest_first(s.client.get(s.path()).get("items", []))
    last = 1 if args.latest else args.last
    show_all = args.all or last > 0 or "status" in filters or "exited" in filters
    now = time.time()
    rows = []
    for obj in items[:last] if last > 0 else items:
        row = ContainerRow(obj, not args.no_trunc, now)
        if (show_all or row.State in ("running", "paused", "restarting", "removing")) and matches(obj, row, filters):
            rows.append(row)
    out = fmt.render(rows, PS_HEADERS)
    if args.quiet:
        out = "".join(line.split("\t")[0] + "\n" for line in out.splitlines())
    print(out, end="")
    return 0


# ---- inspect ----------------------------------------------------------------------------------------
def _find_object(cs: Containers, vs: Volumes, ref: str, kind: str | None) -> dict[str, Any] | None:

    if kind in (None, "container"):
        try:
            obj = cs.get(ref)
        except CLIError:
            pass
        else:
            named = any(m.get("volume") for m in (obj.get("spec") or {}).get("volumes") or [])
            return docker_inspect(obj, vs.names() if named else None, networks=_network_names(cs, obj))
    if kind in (None, "volume"):
        vol = vs.find(ref)
        if vol is not None:
            return docker_volume(vol)
    if kind in (None, "network"):
        from k3c.apierrors import NotFound
        from k3c.cli.networks import Networks

        try:
            return Networks(cs.s, with_containers=True).find(ref)[0]
        except CLIError:
            pass
        except NotFound as err:
            if err.details.get("name") or kind == "network":
                raise  # (a server without the Network kind has no networks to look through)
    return None


def _network_names(cs: Containers, obj: dict[str, Any]) -> dict[str, tuple[str, str]] | None:
    """The docker names and IDs of the Networks, for a container on networks of its own."""
    from k3c.api import NETWORKS
    from k3c.dockernetwork import network_names

    if not ((obj.get("spec") or {}).get("networks") or (obj.get("status") or {}).get("networks")):
        return None
    return network_names(cs.s.client.get(cs.s.path(NETWORKS)).get("items", []))


@command()
def inspect_cmd(args: argparse.Namespace) -> int:
    from k3c.cli.volumes import Volumes

    s = session(args)
    cs, vs = Containers(s), Volumes(s)
    found, missing = [], []
    for ref in args.names:
        obj = _find_object(cs, vs, ref, args.type)
        (found.append(obj) if obj is not None else missing.append(ref))
    return print_inspected(found, missing, args.format, args.type or "object")


# ---- info -------------------------------------------------------------------------------------------
def _root_dir(kubeconfig: str) -> str:
    """The daemon writes its admin kubeconfig to <root-dir>/kubeconfig.yaml, so that file names the root."""
    from pathlib import Path

    path = Path(kubeconfig)
    return str(path.parent) if path.name == KUBECONFIG_FILE else "unknown (not a local k3c kubeconfig)"


def info_data(s: Session, args: argparse.Namespace) -> dict[str, Any]:
    from k3c.kubeclient import kubeconfig_path

    items = s.client.get(s.path()).get("items", [])
    states = [docker_state(o)[0] for o in items]
    volumes = s.client.get(s.path(VOLUMES)).get("items", [])
    version = s.client.get("/version")
    nodes = sorted({node for o in items if (node := (o.get("status") or {}).get("node"))})
    kubeconfig = kubeconfig_path(args.kubeconfig or getattr(args, "top_kubeconfig", None))
    from k3c import __version__

    return {
        "ClientVersion": __version__, "Kubeconfig": kubeconfig, "Context": args.context or "(current)",
        "Containers": len(items), "ContainersRunning": states.count("running"), "ContainersPaused": states.count("paused"),
        "ContainersStopped": len(items) - states.count("running") - states.count("paused"), "Volumes": len(volumes),
        "ServerVersion": version.get("gitVersion", ""), "Server": s.server, "Namespace": s.namespace,
        "Nodes": nodes, "RootDir": _root_dir(kubeconfig), "Runtime": "containerd (CRI)",
    }


@command()
def info_cmd(args: argparse.Namespace) -> int:
    from k3c.cli.template import Template, unescape

    data = info_data(session(args), args)
    if args.format:
        text = json.dumps(data) if args.format == "json" else Template(unescape(args.format)).render(data)
        print(text)
        return 0
    print(f"""Client:
 Version:    {data['ClientVersion']}
 Context:    {data['Context']}
 Kubeconfig: {data['Kubeconfig']}

Server:
 Containers: {data['Containers']}
  Running: {data['ContainersRunning']}
  Paused: {data['ContainersPaused']}
  Stopped: {data['ContainersStopped']}
 Volumes: {data['Volumes']}
 Server Version: {data['ServerVersion']}
 API Server: {data['Server']}
 Namespace: {data['Namespace']}
 Nodes: {', '.join(data['Nodes']) or '(none reported yet)'}
 Runtime: {data['Runtime']}
 K3c Root Dir: {data['RootDir']}""")
    return 0



# ---- port --------------------------------------------------------------------------------------------
def port_lines(ports: list[dict[str, Any]], wanted: str | None, container: str) -> list[str]:
    """docker port's lines: ``80/tcp -> 0.0.0.0:8080`` for all, ``0.0.0.0:8080`` for one PORT[/PROTO]."""
    rows = sorted((int(p["containerPort"]), str(p.get("protocol") or "TCP").lower(),
                    f"{p.get('hostIP') or '0.0.0.0'}:{p['hostPort']}") for p in ports)
    if wanted is None:
        return [f"{port}/{proto} -> {host}" for port, proto, host in rows]
    number, _, proto = wanted.partition("/")
    proto = (proto or "tcp").lower()
    if not number.isdigit():
        raise CLIError(f"strconv.ParseUint: parsing {json.dumps(number)}: invalid syntax", 1)
    found = [host for port, p, host in rows if port == int(number) and p == proto]
    if not found:
        raise CLIError(f"Error: No public port '{number}/{proto}' published for {container}", 1)
    return found


@command()
def port_cmd(args: argparse.Namespace) -> int:
    s = session(args)
    obj = Containers(s).get(args.container)
    status = obj.get("status") or {}
    ports = list(status.get("ports") or []) if status.get("phase") == "Running" else []
    for line in port_lines(ports, args.port, args.container):
        print(line)
    return 0
