"""`k3c diff` and `export`: a container's filesystem as docker's changes, or as a tar.

Both read the node through the LocalContainer's `changes` and `export` subresources (k3c.streams.nodeops).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from k3c.api import LOCAL_CONTAINERS
from k3c.cli.common import Containers, Subcommands, add_command, command, session
from k3c.cli.errors import CLIError


def register(sub: Subcommands) -> None:
    p = add_command(sub, "diff", "Inspect changes to files or directories on a container's filesystem",
                    usage="k3c diff CONTAINER")
    p.add_argument("container", metavar="CONTAINER")
    p.set_defaults(func=diff_cmd)
    p = add_command(sub, "export", "Export a container's filesystem as a tar archive",
                    usage="k3c export [OPTIONS] CONTAINER")
    p.add_argument("-o", "--output", metavar="string", help="Write to a file, instead of STDOUT")
    p.add_argument("container", metavar="CONTAINER")
    p.set_defaults(func=export_cmd)


@command()
def diff_cmd(args: argparse.Namespace) -> int:
    kinds = {0: "C", 1: "A", 2: "D"}
    s = session(args)
    obj = Containers(s).get(args.container)
    found: Any = s.client.request("GET", s.path(LOCAL_CONTAINERS, obj["metadata"]["name"], "changes"))
    for change in found or []:
        print(f"{kinds.get(change.get('Kind'), '?')} {change.get('Path')}")
    return 0


@command()
def export_cmd(args: argparse.Namespace) -> int:
    from k3c.cli.cp import raw_request

    if not args.output and sys.stdout.isatty():
        raise CLIError("cowardly refusing to save to a terminal. Use the -o flag or redirect", 1)
    s = session(args)
    obj = Containers(s).get(args.container)
    url = s.path(LOCAL_CONTAINERS, obj["metadata"]["name"], "export")
    out = open(args.output, "wb") if args.output else sys.stdout.buffer  # closed below
    try:
        status, _, body = raw_request(s, "GET", url, out=out)
    finally:
        if args.output:
            out.close()
    if status >= 400:
        from k3c.cli.cp import error_message

        raise CLIError(f"Error response from daemon: {error_message(body)}", 1)
    return 0
