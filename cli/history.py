"""`k3c history`: the steps that made an image, newest first, from its config's history as docker shows them.

The operator copies the image config's `history` into the Image object's status; each step that made a
layer gets that layer's size, in order. As for a pulled image in docker, only the newest step carries the
image's ID, the others show `<missing>`.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from k3c.cli.common import Subcommands, add_command, command, human_duration, session
from k3c.cli.errors import CLIError

HISTORY_TABLE = "{{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}"
#: with -H=false docker's table shows the time itself, under CREATED AT
HISTORY_TABLE_EXACT = "{{.ID}}\t{{.CreatedAt}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}"
HISTORY_HEADERS = {"ID": "IMAGE", "CreatedSince": "CREATED", "CreatedAt": "CREATED AT", "CreatedBy": "CREATED BY",
                   "Size": "SIZE", "Comment": "COMMENT"}
MISSING = "<missing>"


def add_history(sub: Subcommands, prog: str = "k3c") -> None:
    """`k3c history`, and `k3c image history`."""
    p = add_command(sub, "history", "Show the history of an image", usage=f"{prog} history [OPTIONS] IMAGE")
    p.add_argument("--format", metavar="string", help="Pretty-print images using a Go template")
    p.add_argument("-H", "--human", type=parse_bool, nargs="?", const=True, default=True, metavar="bool",
                   help="Print sizes and dates in human readable format (default true)")
    p.add_argument("--no-trunc", action="store_true", help="Don't truncate output")
    p.add_argument("-q", "--quiet", action="store_true", help="Only show image IDs")
    p.add_argument("image", metavar="IMAGE")
    p.set_defaults(func=history_cmd)


def register(sub: Subcommands) -> None:
    add_history(sub)


def parse_bool(value: str) -> bool:
    lowered = value.lower()
    if lowered in ("true", "1", "t"):
        return True
    if lowered in ("false", "0", "f"):
        return False
    raise argparse.ArgumentTypeError(f'invalid argument "{value}": strconv.ParseBool: parsing "{value}": invalid syntax')


@dataclass
class HistoryRow:
    """One line of `docker history`: its template fields."""

    ID: str
    CreatedSince: str
    CreatedAt: str
    CreatedBy: str
    Size: str
    Comment: str


def history_rows(status: dict[str, Any], human: bool, trunc: bool, now: float | None = None) -> list[HistoryRow]:
    """docker's rows for an Image's status: newest step first, layer sizes matched to the steps that made them."""
    from k3c.cli.common import parse_time
    from k3c.cli.ps import ellipsis
    from k3c.dockerview import history_steps
    from k3c.units import human_size

    now = time.time() if now is None else now
    steps = history_steps(status)
    image_id = str(status.get("id") or "")
    rows = []
    for i, (step, size) in enumerate(reversed(steps)):
        created = parse_time(step.get("created"))
        at = _rfc3339(created) if created else "0001-01-01T00:00:00Z"
        since = human_duration(max(0.0, now - created.timestamp())) + " ago" if created else "N/A"
        shown_id = (image_id.removeprefix("sha256:")[:12] if trunc else image_id) if i == 0 else MISSING
        created_by = str(step.get("created_by") or "").replace("\t", " ")
        rows.append(HistoryRow(
            ID=shown_id, CreatedSince=since if human else at, CreatedAt=at,
            CreatedBy=ellipsis(created_by, 45) if trunc else created_by,
            Size=human_size(size, 3) if human else str(size), Comment=str(step.get("comment") or "")))
    return rows


def _rfc3339(when: datetime) -> str:
    """Go's time.RFC3339 in local time: seconds, and `Z` for UTC."""
    text = when.astimezone().replace(microsecond=0).isoformat()
    return text.removesuffix("+00:00") + "Z" if text.endswith("+00:00") else text


@command()
def history_cmd(args: argparse.Namespace) -> int:
    from k3c.cli.images import find_image
    from k3c.cli.template import Format

    client = session(args).client
    obj = find_image(client, args.image)
    if obj is None:
        raise CLIError(f"Error response from daemon: No such image: {args.image}", 1)
    rows = history_rows(obj.get("status") or {}, args.human, not args.no_trunc)
    fmt = Format.parse("{{.ID}}" if args.quiet else args.format, HISTORY_TABLE if args.human else HISTORY_TABLE_EXACT)
    print(fmt.render(rows, HISTORY_HEADERS), end="")
    return 0
