"""`k3c logs`, `k3c exec` and `k3c attach`: docker's stream commands over the LocalContainer subresources.

The work is in :mod:`k3c.streams.client`; here are docker's flags, help texts and exit codes: exec exits
with the command's code (126 if it cannot be invoked, 127 if it does not exist), 125 for k3c's own
failures, 1 for an unknown container or an API refusal.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from k3c.cli.common import Containers, Subcommands, add_command, command, session
from k3c.cli.errors import CLIError


def register(sub: Subcommands) -> None:
    _register_logs(sub)
    _register_exec(sub)
    _register_attach(sub)


def _register_logs(sub: Subcommands) -> None:
    # docker's -n is --tail, so this command spells the namespace --namespace only. (The shared global
    # flags cannot be reused with -n overridden: argparse would drop -n from every command's --namespace.)
    p = add_command(sub, "logs", "Fetch the logs of a container", usage="k3c logs [OPTIONS] CONTAINER",
                    global_flags=False)
    g = p.add_argument_group("global options")
    g.add_argument("--kubeconfig", metavar="FILE", default=None,
                   help="Kubeconfig to use (default $K3C_KUBECONFIG, else the local k3c's)")
    g.add_argument("--context", default=None, help="Kubeconfig context to use")
    g.add_argument("--namespace", default=None, help="Namespace (default: the context's, else default)")
    p.add_argument("-f", "--follow", action="store_true", help="Follow log output")
    p.add_argument("--since", metavar="string",
                   help='Show logs since timestamp (e.g. "2013-01-02T13:23:37Z") or relative (e.g. "42m" for 42 '
                        "minutes)")
    p.add_argument("-n", "--tail", default="all", metavar="string",
                   help='Number of lines to show from the end of the logs (default "all")')
    p.add_argument("-t", "--timestamps", action="store_true", help="Show timestamps")
    p.add_argument("container", metavar="CONTAINER")
    p.set_defaults(func=logs_cmd)


def _register_exec(sub: Subcommands) -> None:
    p = add_command(sub, "exec", "Execute a command in a running container",
                    usage="k3c exec [OPTIONS] CONTAINER COMMAND [ARG...]")
    p.add_argument("-d", "--detach", action="store_true", help="Detached mode: run command in the background")
    p.add_argument("-e", "--env", action="append", default=[], metavar="list", help="Set environment variables")
    p.add_argument("-i", "--interactive", action="store_true", help="Keep STDIN open even if not attached")
    p.add_argument("-t", "--tty", action="store_true", help="Allocate a pseudo-TTY")
    p.add_argument("-u", "--user", metavar="string", help='Username or UID (format: "<name|uid>[:<group|gid>]")')
    p.add_argument("-w", "--workdir", metavar="string", help="Working directory inside the container")
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="COMMAND [ARG...]")
    p.set_defaults(func=exec_cmd)


def _register_attach(sub: Subcommands) -> None:
    p = add_command(sub, "attach", "Attach local standard input, output, and error streams to a running container",
                    usage="k3c attach [OPTIONS] CONTAINER")
    p.add_argument("--no-stdin", action="store_true", help="Do not attach STDIN")
    p.add_argument("--sig-proxy", type=_parse_bool, nargs="?", const=True, default=True, metavar="bool",
                   help="Proxy all received signals to the process (default true)")
    p.add_argument("container", metavar="CONTAINER")
    p.set_defaults(func=attach_cmd)


def _parse_bool(value: str) -> bool:
    lowered = value.lower()
    if lowered in ("true", "1", "t", "yes"):
        return True
    if lowered in ("false", "0", "f", "no"):
        return False
    raise argparse.ArgumentTypeError(f'invalid argument "{value}": strconv.ParseBool: parsing "{value}": invalid syntax')


def _resolve(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    s = session(args)
    return s, Containers(s).get(args.container)


def _stream_failure(err: Exception) -> CLIError:
    from k3c.streams.client import StreamError

    if isinstance(err, StreamError):
        return CLIError(err.message, err.exit_code)
    return CLIError(str(err), 1)


def _require_terminal(tty: bool, stdin: bool) -> None:
    """docker refuses an interactive tty on a stdin that is not a terminal."""
    if tty and stdin and not os.isatty(sys.stdin.fileno()):
        raise CLIError("the input device is not a TTY", 1)


@command()
def logs_cmd(args: argparse.Namespace) -> int:
    from k3c.streams.client import StreamError, logs

    tail = None if args.tail in ("all", "") else _parse_tail(args.tail)
    s, obj = _resolve(args)
    try:
        logs(s.client, s.namespace, obj["metadata"]["name"], follow=args.follow, tail=tail, since=args.since,
             timestamps=args.timestamps, stdout=sys.stdout.buffer, stderr=sys.stderr.buffer)
    except (StreamError, ValueError) as err:
        raise _stream_failure(err) from None
    return 0


def _parse_tail(value: str) -> int | None:
    try:
        n = int(value)
    except ValueError:
        raise CLIError(f'invalid value for "tail": {value}', 1) from None
    return None if n < 0 else n


@command()
def exec_cmd(args: argparse.Namespace) -> int:
    from k3c.streams.client import StreamError, exec_, exec_detached

    if not args.command:
        raise CLIError('"k3c exec" requires at least 2 arguments.', 1)
    if not args.detach:
        _require_terminal(args.tty, args.interactive)
    s, obj = _resolve(args)
    name = obj["metadata"]["name"]
    try:
        if args.detach:
            exec_detached(s.client, s.namespace, name, args.command, env=args.env, workdir=args.workdir,
                          user=args.user)
            return 0
        return exec_(s.client, s.namespace, name, args.command, stdin=args.interactive, tty=args.tty,
                     env=args.env, workdir=args.workdir, user=args.user)
    except StreamError as err:
        raise _stream_failure(err) from None


@command()
def attach_cmd(args: argparse.Namespace) -> int:
    from k3c.streams.client import StreamError, attach

    s, obj = _resolve(args)
    spec = obj.get("spec") or {}
    tty = bool(spec.get("tty"))
    stdin = bool(spec.get("stdin")) and not args.no_stdin
    _require_terminal(tty, stdin)
    try:
        code = attach(s.client, s.namespace, obj["metadata"]["name"], stdin=stdin, tty=tty, sig_proxy=args.sig_proxy)
    except StreamError as err:
        raise _stream_failure(err) from None
    return 0 if code is None else code
