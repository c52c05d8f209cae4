"""`container prune`, `volume prune`, `system df` and `system prune`: docker's housekeeping, on k3c's objects.

Prompts, section titles and the "Total reclaimed space" line are docker 20.10's. What k3c keeps no size
for counts as 0B: a container's writable layer (the operator records none) and a volume's directory
(likewise), so only images and the build cache add reclaimed space. Images and the build cache are pruned
by the code of `k3c image prune` and `k3c builder prune`, so `system prune` does exactly what they do.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from k3c import dockerid
from k3c.api import BUILD_CACHES, LOCAL_CONTAINERS, VOLUMES
from k3c.cli.common import (
    Session,
    Subcommands,
    add_command,
    add_group,
    command,
    container_id,
    parse_filters,
    session,
)
from k3c.cli.errors import CLIError
from k3c.dockerview import active
from k3c.prunefilters import PruneFilters, object_labels
from k3c.units import human_size

DF_TABLE = "{{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}"
DF_HEADERS = {"Type": "TYPE", "TotalCount": "TOTAL", "Active": "ACTIVE", "Size": "SIZE", "Reclaimable": "RECLAIMABLE"}
CONTAINER_WARNING = "WARNING! This will remove all stopped containers."
VOLUME_WARNING = "WARNING! This will remove all local volumes not used by at least one container."


def register(sub: Subcommands) -> None:
    """`k3c system df|prune`."""
    ssub = add_group(sub, "system", "Manage k3c")
    p = add_command(ssub, "df", "Show k3c disk usage", usage="k3c system df [OPTIONS]")
    p.add_argument("--format", metavar="string", help="Pretty-print images using a Go template")
    p.add_argument("-v", "--verbose", action="store_true", help="Show detailed information on space usage")
    p.set_defaults(func=df_cmd)
    p = add_command(ssub, "prune", "Remove unused data", usage="k3c system prune [OPTIONS]")
    p.add_argument("-a", "--all", action="store_true", help="Remove all unused images not just dangling ones")
    p.add_argument("--filter", action="append", default=[], metavar="filter",
                   help="Provide filter values (e.g. 'label=<key>=<value>')")
    p.add_argument("-f", "--force", action="store_true", help="Do not prompt for confirmation")
    p.add_argument("--volumes", action="store_true", help="Prune volumes")
    p.set_defaults(func=system_prune_cmd)


def add_prune(sub: Subcommands, group: str, help: str, example: str,
              func: Callable[[argparse.Namespace], int]) -> None:
    """`k3c GROUP prune [--filter F] [-f]` with docker's flags; ``example``: the filter its help shows."""
    p = add_command(sub, "prune", help, usage=f"k3c {group} prune [OPTIONS]")
    p.add_argument("--filter", action="append", default=[], metavar="filter",
                   help=f"Provide filter values (e.g. '{example}')")
    p.add_argument("-f", "--force", action="store_true", help="Do not prompt for confirmation")
    p.set_defaults(func=func)


def add_container_prune(sub: Subcommands) -> None:
    add_prune(sub, "container", "Remove all stopped containers", "until=<timestamp>", container_prune_cmd)


def add_volume_prune(sub: Subcommands) -> None:
    add_prune(sub, "volume", "Remove all unused local volumes", "label=<label>", volume_prune_cmd)


# ---- shared -----------------------------------------------------------------------------------------
def confirmed(warning: str) -> bool:
    """docker's PromptForConfirmation: the warning, ` [y/N] `, and only y or Y goes on."""
    sys.stdout.write(f"{warning}\nAre you sure you want to continue? [y/N] ")
    sys.stdout.flush()
    return sys.stdin.readline().strip() in ("y", "Y")


def parse_prune_filters(values: list[str], allowed: tuple[str, ...]) -> PruneFilters:
    """`--filter` values as docker's prune reads them (k3c.prunefilters); a refusal is the daemon's error."""
    from k3c.prunefilters import FilterError

    try:
        return PruneFilters.parse(parse_filters(values, allowed), allowed)
    except FilterError as err:
        raise CLIError(f"Error response from daemon: {err}", 1) from None


def _prune(args: argparse.Namespace, allowed: tuple[str, ...], warning: str,
           prune: Callable[[Session, PruneFilters], tuple[int, str]]) -> int:
    """`container prune` and `volume prune`: confirmed (or forced), then the removed and the space reclaimed."""
    filters = parse_prune_filters(args.filter, allowed)
    reclaimed, output = 0, ""
    if args.force or confirmed(warning):
        reclaimed, output = prune(session(args), filters)
    if output:
        print(output)
    print(f"Total reclaimed space: {human_size(reclaimed)}")
    return 0


# ---- container prune --------------------------------------------------------------------------------
def prune_containers(s: Session, filters: PruneFilters) -> tuple[int, str]:
    """Remove every stopped container the filters allow; (space reclaimed, docker's output section)."""
    from k3c.cli.containers import begin_remove, finish_remove

    items = s.client.get(s.path(LOCAL_CONTAINERS)).get("items", [])
    doomed = [o for o in items if not active(o) and not o["metadata"].get("deletionTimestamp")
              and not filters.keep(o["metadata"].get("creationTimestamp", ""), object_labels(o))]
    pending = [(o, begin_remove(s, o, False)) for o in doomed]
    for obj, current in pending:
        finish_remove(s, obj, current, False)
    if not doomed:
        return 0, ""
    return 0, "Deleted Containers:\n" + "".join(container_id(o) + "\n" for o in doomed)


@command()
def container_prune_cmd(args: argparse.Namespace) -> int:
    return _prune(args, ("until", "label", "label!"), CONTAINER_WARNING, prune_containers)


# ---- volume prune -----------------------------------------------------------------------------------
def prune_volumes(s: Session, filters: PruneFilters) -> tuple[int, str]:
    """Remove every volume no container uses (docker 20.10: named ones too); (space, output section)."""
    from k3c.cli.volumes import Volumes, remove_volume
    from k3c.dockerview import users_of

    containers = s.client.get(s.path(LOCAL_CONTAINERS)).get("items", [])
    vs = Volumes(s)
    volumes = vs.all()
    doomed = [v for v in volumes if not users_of(v["metadata"]["name"], containers)
              and not v["metadata"].get("deletionTimestamp")
              and not filters.keep("", dockerid.docker_labels(v["metadata"]))]
    for v in doomed:
        remove_volume(vs, dockerid.docker_name(v), False, containers)
    if not doomed:
        return 0, ""
    return 0, "Deleted Volumes:\n" + "".join(dockerid.docker_name(v) + "\n" for v in doomed)


@command()
def volume_prune_cmd(args: argparse.Namespace) -> int:
    return _prune(args, ("label", "label!"), VOLUME_WARNING, prune_volumes)


# ---- system prune -----------------------------------------------------------------------------------
def system_warning(args: argparse.Namespace) -> str:
    items = ["all stopped containers", "all networks not used by at least one container"]
    if args.volumes:
        items.append("all volumes not used by at least one container")
    items.append("all images without at least one container associated to them" if args.all else "all dangling images")
    items.append("all build cache" if args.all else "all dangling build cache")
    text = "WARNING! This will remove:\n" + "".join(f"  - {item}\n" for item in items)
    if args.filter:
        text += "\n  Items to be pruned will be filtered with:\n" + "".join(f"  - {f}\n" for f in args.filter)
    return text


@command()
def system_prune_cmd(args: argparse.Namespace) -> int:
    from k3c.cli.build import prune_build_cache
    from k3c.cli.images import prune_images
    from k3c.cli.networks import prune_networks

    filters = parse_prune_filters(args.filter, ("until", "label", "label!"))
    if not args.force and not confirmed(system_warning(args)):
        return 0
    s = session(args)
    total = 0
    sections: list[Callable[[], tuple[int, str]]] = [lambda: prune_containers(s, filters),
                                                     lambda: prune_networks(s, filters)]
    if args.volumes:
        sections.append(lambda: prune_volumes(s, filters))
    sections.append(lambda: prune_images(s.client, args.all))
    for section in sections:
        reclaimed, output = section()
        total += reclaimed
        if output:
            print(output)
    if s.client.get(BUILD_CACHES.path()).get("items"):
        total += prune_build_cache(s.client)
    print(f"Total reclaimed space: {human_size(total)}")
    return 0


# ---- system df --------------------------------------------------------------------------------------
@dataclass
class UsageRow:
    """One line of `docker system df`: its template fields."""

    Type: str
    TotalCount: str
    Active: str
    Size: str
    Reclaimable: str


def _reclaimable(reclaimable: int, total: int) -> str:
    if total > 0:
        return f"{human_size(reclaimable)} ({reclaimable * 100 // total}%)"
    return human_size(reclaimable)


def usage_rows(containers: list[dict[str, Any]], volumes: list[dict[str, Any]], images: list[dict[str, Any]],
               caches: list[dict[str, Any]]) -> list[UsageRow]:
    """docker's four rows from k3c's objects (an image counts once per ID, active while a container runs it)."""
    by_id: dict[str, int] = {}
    for image in images:
        st = image.get("status") or {}
        if st.get("id"):
            by_id[st["id"]] = int(st.get("size") or 0)
    used_ids = {(c.get("status") or {}).get("imageID") for c in containers}
    image_size = sum(by_id.values())
    active_images = [i for i in by_id if i in used_ids]
    image_used = sum(by_id[i] for i in active_images)
    active_containers = sum(1 for c in containers if active(c))
    from k3c.dockerview import users_of

    active_volumes = sum(1 for v in volumes if users_of(v["metadata"]["name"], containers))
    cache_size = sum(int((c.get("status") or {}).get("size") or 0) for c in caches)
    cache_entries = sum(int((c.get("status") or {}).get("entries") or 0) for c in caches)
    return [
        UsageRow("Images", str(len(by_id)), str(len(active_images)), human_size(image_size),
                 _reclaimable(image_size - image_used, image_size)),
        UsageRow("Containers", str(len(containers)), str(active_containers), human_size(0), human_size(0)),
        UsageRow("Local Volumes", str(len(volumes)), str(active_volumes), human_size(0), human_size(0)),
        UsageRow("Build Cache", str(cache_entries), "0", human_size(cache_size), human_size(cache_size)),
    ]


@command()
def df_cmd(args: argparse.Namespace) -> int:
    from k3c.api import IMAGES
    from k3c.cli.template import Format

    if args.verbose:
        raise CLIError("k3c: system df -v is not supported: k3c records no per-container or per-volume sizes", 125)
    s = session(args)
    containers = s.client.get(s.path(LOCAL_CONTAINERS)).get("items", [])
    volumes = s.client.get(s.path(VOLUMES)).get("items", [])
    images = s.client.get(IMAGES.path()).get("items", [])
    caches = s.client.get(BUILD_CACHES.path()).get("items", [])
    rows = usage_rows(containers, volumes, _without_pause(images), caches)
    print(Format.parse(args.format, DF_TABLE).render(rows, DF_HEADERS), end="")
    return 0


def _without_pause(images: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """k3c's own sandbox image is not the user's (`k3c images` hides it too)."""
    from k3c.oci.reference import normalize
    from k3c.pauseimage import PAUSE_IMAGE

    pause = normalize(PAUSE_IMAGE)
    return [i for i in images if (i.get("spec") or {}).get("reference") != pause]

