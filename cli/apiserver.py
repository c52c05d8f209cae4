"""`k3c apiserver`: the embedded Kubernetes API server alone, in the foreground."""

from __future__ import annotations

import argparse
from pathlib import Path

from k3c.api import DEFAULT_ROOT_DIR
from k3c.cli.common import Subcommands


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise argparse.ArgumentTypeError(f"invalid --listen {value!r}: expected HOST:PORT")
    return host.strip("[]"), int(port)


def parse_ttl(value: str) -> float:
    """A Go duration (``1h``, ``30m``, ``90s``) → seconds, as kube-apiserver's ``--event-ttl`` takes it."""
    from k3c.timefmt import parse_duration_ns

    try:
        seconds = parse_duration_ns(value) / 1e9
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid --event-ttl {value!r}: expected a duration such as 1h") from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"invalid --event-ttl {value!r}: must be positive")
    return seconds


def register(sub: Subcommands) -> None:
    p = sub.add_parser("apiserver", help="Run the embedded Kubernetes API server in the foreground",
                       description="Run the embedded Kubernetes API server in the foreground.")
    p.add_argument("--data-dir", default=DEFAULT_ROOT_DIR, help="Where state, TLS material and the kubeconfig live "
                   "(default %(default)s)")
    p.add_argument("--listen", default="127.0.0.1:6443", type=parse_listen, metavar="HOST:PORT",
                   help="Address to listen on (default %(default)s)")
    p.add_argument("--retain-revisions", type=int, default=20000, help=argparse.SUPPRESS)
    p.add_argument("--compact-interval", type=float, default=300.0, help=argparse.SUPPRESS)
    p.add_argument("--bookmark-interval", type=float, default=60.0, help=argparse.SUPPRESS)
    p.add_argument("--event-ttl", type=parse_ttl, default="1h0m0s", metavar="DURATION",
                   help="How long Events are kept, as kube-apiserver's flag (default %(default)s)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import asyncio
    import logging

    from k3c.apiserver.server import ServerConfig, serve_forever

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    host, port = args.listen if isinstance(args.listen, tuple) else parse_listen(args.listen)
    config = ServerConfig(
        data_dir=Path(args.data_dir), host=host, port=port, retain_revisions=args.retain_revisions,
        compact_interval=args.compact_interval, bookmark_interval=args.bookmark_interval,
        event_ttl=args.event_ttl,
    )
    from k3c.apiserver.encryption import EncryptionConfigError
    from k3c.cli.errors import CLIError

    try:
        asyncio.run(serve_forever(config))
    except EncryptionConfigError as err:
        raise CLIError(f"Error: {err}", 1) from None
    return 0
