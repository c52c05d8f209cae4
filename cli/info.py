"""`k3c kubeconfig` and `k3c version`: where to reach k3c, and what it is."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from k3c import __version__
from k3c.api import DEFAULT_ROOT_DIR, KUBECONFIG_FILE
from k3c.cli.common import Subcommands
from k3c.cli.errors import CLIError


def register(sub: Subcommands) -> None:
    p = sub.add_parser("kubeconfig", help="Print the admin kubeconfig of the local k3c",
                       description="Print the admin kubeconfig of the local k3c.")
    p.add_argument("--data-dir", "--root-dir", dest="data_dir",
                   default=os.environ.get("K3C_ROOT", DEFAULT_ROOT_DIR),
                   help="k3c's root/data directory (default %(default)s)")
    p.set_defaults(func=print_kubeconfig)
    v = sub.add_parser("version", help="Show the k3c version information",
                       description="Show the k3c version information.")
    v.set_defaults(func=print_version)


def print_kubeconfig(args: argparse.Namespace) -> int:
    path = Path(args.data_dir) / KUBECONFIG_FILE
    try:
        sys.stdout.write(path.read_text())
    except FileNotFoundError:
        raise CLIError(f"k3c: no kubeconfig at {path}: is k3c running? "
                       "(start it with `k3c daemon` or `k3c apiserver`)", 1) from None
    return 0


def print_version(_args: argparse.Namespace) -> int:
    print(f"k3c version {__version__}")
    return 0
