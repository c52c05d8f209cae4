"""`k3c` entry point: builds the argument parser from the command modules and maps failures to exit codes.

Exit codes follow docker: 0 success, 1 general failure, 125 k3c's own failure, 2 for usage errors (argparse).
Heavy libraries are imported inside the commands that need them, and only the module of the command being
run is imported at all (the others would add ~30 ms to every `k3c build` or `k3c ps`); `k3c --help` and
anything unrecognised get the full parser.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys

from k3c import __version__
from k3c.cli.common import DockerArgumentParser
from k3c.cli.errors import CLIError

#: The command modules under k3c.cli, in the order `k3c --help` lists their commands.
COMMAND_MODULES = ("apiserver", "daemon", "install", "info", "containers", "control", "ps", "stats", "volumes",
                   "events", "completion", "streams", "build", "images", "management", "prune",
                   "history", "cp", "filesystems", "dockerenv", "networks")
#: Which module registers each top-level command (tests/unit/test_cli.py checks it against the modules).
COMMANDS = {
    "apiserver": "apiserver", "daemon": "daemon", "agent": "daemon", "install": "install", "uninstall": "install",
    "kubeconfig": "info", "version": "info",
    **dict.fromkeys(("create", "kill", "restart", "rm", "run", "start", "stop", "wait"), "containers"),
    **dict.fromkeys(("info", "inspect", "port", "ps"), "ps"), "volume": "volumes", "network": "networks", "events": "events",
    "completion": "completion", **dict.fromkeys(("attach", "exec", "logs"), "streams"), "build": "build",
    "builder": "build", **dict.fromkeys(("pause", "rename", "unpause", "update"), "control"),
    **dict.fromkeys(("stats", "top"), "stats"), "container": "management", "system": "prune",
    "history": "history", "cp": "cp", **dict.fromkeys(("commit", "diff", "export", "import"), "filesystems"),
    **dict.fromkeys(("image", "images", "load", "login", "logout", "pull", "push", "rmi", "save", "tag"), "images"),
    **dict.fromkeys(("docker-env", "context"), "dockerenv"),
}
_VALUE_FLAGS = ("--kubeconfig", "--context", "-n", "--namespace")
__all__ = ["CLIError", "build_parser", "main"]


def command_module(argv: list[str]) -> str | None:
    """The module of the command ``argv`` runs, skipping global flags; None when unsure (help, typos)."""
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in _VALUE_FLAGS:
            i += 2
        elif arg.startswith(("--kubeconfig=", "--context=", "--namespace=")) or (arg.startswith("-n") and arg != "-n"):
            i += 1
        elif arg.startswith("-"):
            return None
        else:
            return COMMANDS.get(arg)
    return None


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser with every command, or with just those of the command module ``only``."""
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
    for name in [only] if only else COMMAND_MODULES:
        importlib.import_module(f"k3c.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser(command_module(sys.argv[1:] if argv is None else argv))
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except CLIError as err:
        print(err.message, file=sys.stderr)
        return err.code
    except KeyboardInterrupt:
        return 130
    except OSError as err:
        print(f"k3c: {err.strerror or err}: {err.filename or ''}".rstrip(": "), file=sys.stderr)
        return 125


def entry() -> None:
    """The ``k3c`` console script: :func:`main`, then exit without the interpreter's teardown.

    Why: tearing down the modules a command imported costs 10-15 ms, more than a cached ``k3c build``
    spends talking to the daemon. Every command has finished its own cleanup (``finally`` blocks, temp
    files, terminal modes) when :func:`main` returns, so only the output streams need flushing. The
    long-running ``daemon`` and ``apiserver`` exit normally.
    """
    code = main()
    if command_module(sys.argv[1:]) in ("daemon", "apiserver"):  # (the agent's module is the daemon's)
        sys.exit(code)
    import os

    if "logging" in sys.modules:  # flush log handlers a command may have set up
        sys.modules["logging"].shutdown()
    try:
        sys.stdout.flush()
    except (BrokenPipeError, ValueError):
        code = code or 1
    with contextlib.suppress(BrokenPipeError, ValueError):
        sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    entry()
