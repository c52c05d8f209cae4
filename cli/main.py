"""`k3c` entry point: builds the argument parser from the command modules and maps failures to exit codes.

Exit codes follow docker: 0 success, 1 general failure, 125 k3c's own failure, 2 for usage errors (argparse).
Heavy libraries are imported inside the commands that need them, so `k3c --help` stays instant.
"""

from __future__ import annotations

import argparse
import sys

from k3c import __version__
from k3c.cli import apiserver, build, completion, containers, daemon, events, info, ps, streams, volumes
from k3c.cli import images as image_commands
from k3c.cli.common import DockerArgumentParser
from k3c.cli.errors import CLIError

COMMAND_MODULES = (apiserver, daemon, info, containers, ps, volumes, events, completion, streams, build, image_commands)
__all__ = ["CLIError", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = DockerArgumentParser(
        prog="k3c", description="Classic Docker for a Kubernetes world.",
    )
    parser.add_argument("-v", "--version", action="version", version=f"k3c version {__version__}")
    # Global flags before the command too (`k3c -n dev ps`), as docker and kubectl take them; their own
    # dests keep a subcommand's defaults from overwriting them (see common.session).
    g = parser.add_argument_group("global options")
    g.add_argument("--kubeconfig", dest="top_kubeconfig", metavar="FILE", help="Kubeconfig to use")
    g.add_argument("--context", dest="top_context", help="Kubeconfig context to use")
    g.add_argument("-n", "--namespace", dest="top_namespace", help="Namespace")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except CLIError as err:
        print(f"k3c: {err}", file=sys.stderr)
        return err.code
    except KeyboardInterrupt:
        return 130
    except OSError as err:
        print(f"k3c: {err.strerror or err}: {err.filename or ''}".rstrip(": "), file=sys.stderr)
        return 125


if __name__ == "__main__":
    sys.exit(main())
