"""`k3c volume create|ls|rm|inspect` on Volume objects (named volumes: directories the operator keeps).

Why the CLI checks "in use" itself: docker refuses `volume rm` of a volume a container uses with a precise
message listing the containers; the containers are objects here, so the CLI can say exactly that. Forcing
sets the k3c.io/force-delete annotation the operator honours, then deletes.
"""

from __future__ import annotations

import argparse
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from k3c import dockerid
from k3c.api import FORCE_DELETE_ANNOTATION, LOCAL_CONTAINERS, NAME_ANNOTATION, VOLUMES
from k3c.cli.common import (
    Session,
    Subcommands,
    add_command,
    add_group,
    add_inspect,
    command,
    container_id,
    for_each,
    parse_filters,
    print_inspected,
    session,
    wait_removed,
)
from k3c.cli.errors import CLIError, daemon_error
from k3c.dockerview import docker_volume, users_of

VOLUME_TABLE = "{{.Driver}}\t{{.Name}}"
VOLUME_HEADERS = {"Driver": "DRIVER", "Name": "VOLUME NAME", "Scope": "SCOPE", "Mountpoint": "MOUNTPOINT",
                  "Labels": "LABELS", "Links": "LINKS", "Size": "SIZE", "Label": "LABEL"}
REMOVE_TIMEOUT = 60.0


def register(sub: Subcommands) -> None:
    vsub = add_group(sub, "volume", "Manage volumes")
    c = add_command(vsub, "create", "Create a volume", usage="k3c volume create [OPTIONS] [VOLUME]")
    c.add_argument("-d", "--driver", default="local", help='Specify volume driver name (default "local")')
    c.add_argument("-l", "--label", action="append", default=[], metavar="list", help="Set metadata for a volume")
    c.add_argument("name", nargs="?", metavar="VOLUME")
    c.set_defaults(func=create_cmd)
    ls = add_command(vsub, "ls", "List volumes", usage="k3c volume ls [OPTIONS]", aliases=["list"])
    ls.add_argument("-f", "--filter", action="append", default=[], metavar="filter",
                    help='Provide filter values (e.g. "dangling=true")')
    ls.add_argument("--format", metavar="string", help="Format output: 'table', 'table TEMPLATE', 'json' or TEMPLATE")
    ls.add_argument("-q", "--quiet", action="store_true", help="Only display volume names")
    ls.set_defaults(func=ls_cmd)
    rm = add_command(vsub, "rm", "Remove one or more volumes. You cannot remove a volume that is in use by a "
                     "container", usage="k3c volume rm [OPTIONS] VOLUME [VOLUME...]", aliases=["remove"])
    rm.add_argument("-f", "--force", action="store_true", help="Force the removal of one or more volumes")
    rm.add_argument("names", nargs="+", metavar="VOLUME")
    rm.set_defaults(func=rm_cmd)
    add_inspect(vsub, "volume", inspect_cmd)
    from k3c.cli.prune import add_volume_prune

    add_volume_prune(vsub)


# ---- addressing -------------------------------------------------------------------------------------
class Volumes:
    """Volumes by docker name (k3c.dockerid), else by object name: one GET in the common case, else one list."""

    def __init__(self, s: Session) -> None:
        self.s = s
        self._all: list[dict[str, Any]] | None = None

    def all(self) -> list[dict[str, Any]]:
        if self._all is None:
            self._all = self.s.client.get(self.s.path(VOLUMES)).get("items", [])
        return self._all

    def find(self, ref: str) -> dict[str, Any] | None:
        from k3c.apierrors import NotFound

        if dockerid.valid_docker_name(ref):
            try:
                obj = self.s.client.get(self.s.path(VOLUMES, dockerid.object_name(ref)))
            except NotFound as err:
                if not err.details.get("name"):
                    raise
            else:
                if dockerid.docker_name(obj) == ref:
                    return obj
        by_docker = [o for o in self.all() if dockerid.docker_name(o) == ref]
        by_object = [o for o in self.all() if o["metadata"]["name"] == ref]
        return next(iter(by_docker or by_object), None)

    def names(self) -> dict[str, str]:
        """object name → docker name of every volume."""
        return {o["metadata"]["name"]: dockerid.docker_name(o) for o in self.all()}


# ---- shapes -----------------------------------------------------------------------------------------
@dataclass
class VolumeRow:
    Driver: str
    Labels: str
    Links: str
    Mountpoint: str
    Name: str
    Scope: str
    Size: str
    _labels: dict[str, str] = field(default_factory=dict)

    def Label(self, key: str) -> str:  # docker's template method name
        return self._labels.get(key, "")


def volume_row(obj: dict[str, Any], links: int | None) -> VolumeRow:
    labels = dockerid.docker_labels(obj["metadata"])
    return VolumeRow(Driver=(obj.get("spec") or {}).get("driver", "local"),
                     Labels=",".join(f"{k}={v}" for k, v in sorted(labels.items())),
                     Links="N/A" if links is None else str(links),
                     Mountpoint=(obj.get("status") or {}).get("mountpoint", ""), Name=dockerid.docker_name(obj),
                     Scope="local", Size="N/A", _labels=labels)


# ---- create -----------------------------------------------------------------------------------------
def _labels(values: list[str]) -> dict[str, str]:
    from k3c.dockerid import kubernetes_label_ok as k8s_label_ok

    out = {}
    for value in values:
        key, _, val = value.partition("=")
        if not k8s_label_ok(key, val):
            raise CLIError(f'invalid label "{value}": volume labels follow Kubernetes label rules', 125)
        out[key] = val
    return out


@command()
def create_cmd(args: argparse.Namespace) -> int:
    from k3c.apierrors import AlreadyExists

    name = args.name or secrets.token_hex(32)
    if not dockerid.valid_docker_name(name):
        raise daemon_error(f'create {name}: "{name}" includes invalid characters for a local volume name, only '
                           '"[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host directory, '
                           "use absolute path")
    if args.driver != "local":
        raise daemon_error(f'create {name}: error looking up volume plugin {args.driver}: plugin "{args.driver}" '
                           "not found")
    s = session(args)
    meta: dict[str, Any] = {"name": dockerid.object_name(name), "namespace": s.namespace,
                            "annotations": {NAME_ANNOTATION: name}}
    if args.label:
        meta["labels"] = _labels(args.label)
    obj = {"apiVersion": VOLUMES.api_version, "kind": VOLUMES.kind, "metadata": meta,
           "spec": {"driver": "local"}}
    try:
        s.client.create(s.path(VOLUMES), obj)
    except AlreadyExists:
        pass  # docker: creating an existing volume is a no-op that prints its name
    print(name)
    return 0


# ---- ls ---------------------------------------------------------------------------------------------
def _volume_filters(values: list[str]) -> dict[str, list[str]]:
    return parse_filters(values, ("dangling", "driver", "label", "name"))


def _matches(row: VolumeRow, users: int | None, filters: dict[str, list[str]]) -> bool:
    checks: dict[str, Callable[[str], bool]] = {
        "dangling": lambda v: (users == 0) == (v.lower() in ("true", "1")),
        "driver": lambda v: row.Driver == v,
        "label": lambda v: v.partition("=")[0] in row._labels and (
            "=" not in v or row._labels[v.partition("=")[0]] == v.partition("=")[2]),
        "name": lambda v: v in row.Name,
    }
    return all(any(checks[k](v) for v in vals) for k, vals in filters.items())


@command()
def ls_cmd(args: argparse.Namespace) -> int:
    from k3c.cli.template import Format

    filters = _volume_filters(args.filter)
    fmt = Format.parse("{{.Name}}" if args.quiet else args.format, VOLUME_TABLE)
    s = session(args)
    volumes = sorted(s.client.get(s.path(VOLUMES)).get("items", []), key=dockerid.docker_name)
    need_users = "dangling" in filters or "Links" in (args.format or "")
    containers = s.client.get(s.path(LOCAL_CONTAINERS)).get("items", []) if need_users else []
    rows = []
    for obj in volumes:
        users = len(users_of(obj["metadata"]["name"], containers)) if need_users else None
        row = volume_row(obj, users)
        if _matches(row, users, filters):
            rows.append(row)
    print(fmt.render(rows, VOLUME_HEADERS), end="")
    return 0


# ---- rm ---------------------------------------------------------------------------------------------
def remove_volume(vs: Volumes, ref: str, force: bool, containers: list[dict[str, Any]]) -> None:
    from k3c.apierrors import NotFound

    s, obj = vs.s, vs.find(ref)
    if obj is None:
        if force:
            return
        raise daemon_error(f"get {ref}: no such volume")
    name = obj["metadata"]["name"]
    path = s.path(VOLUMES, name)
    users = [c for c in users_of(name, containers) if not c["metadata"].get("deletionTimestamp")]
    if users and not force:
        raise daemon_error(f"remove {ref}: volume is in use - [{', '.join(container_id(c) for c in users)}]")
    if force:
        obj = s.client.merge_patch(path, {"metadata": {"annotations": {FORCE_DELETE_ANNOTATION: "true"}}})
    try:
        obj = s.client.delete(path)
    except NotFound:
        return
    wait_removed(s, obj, VOLUMES, f"remove {ref}", REMOVE_TIMEOUT)  # the operator removes its directory


@command()
def rm_cmd(args: argparse.Namespace) -> int:
    s = session(args)
    vs = Volumes(s)
    containers = s.client.get(s.path(LOCAL_CONTAINERS)).get("items", [])

    def one(name: str) -> None:
        remove_volume(vs, name, args.force, containers)
        print(name, flush=True)

    return for_each(args.names, one)


# ---- inspect ----------------------------------------------------------------------------------------
@command()
def inspect_cmd(args: argparse.Namespace) -> int:
    vs = Volumes(session(args))
    found, missing = [], []
    for name in args.names:
        obj = vs.find(name)
        (found.append(docker_volume(obj)) if obj is not None else missing.append(name))
    return print_inspected(found, missing, args.format, "volume")
