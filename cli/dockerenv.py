"""`k3c docker-env` and `k3c context install`: pointing docker's own tools at the running daemon's Docker API.

The socket's address is the one the running daemon announces in its status file (``<state-dir>/daemon.json``,
``frontends.docker``), so `--docker-socket` and a state dir of its own are followed without repeating them.
`context install` writes the docker CLI's context store itself (``$DOCKER_CONFIG/contexts/meta/<sha256 of
the name>/meta.json``, the layout docker 19.03 on reads), as colima and Rancher Desktop install theirs: no
docker binary is needed to install it, and installing again updates the address in place.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from pathlib import Path

from k3c.cli.common import Subcommands
from k3c.cli.errors import CLIError

#: The docker CLI context k3c installs
CONTEXT_NAME = "k3c"
#: Where `k3c daemon` keeps its runtime state unless told (its ``--state-dir`` default)
DEFAULT_STATE_DIR = "/run/k3c"
#: The daemon's status file in its state dir (k3c.daemon.supervisor.STATUS_FILE)
STATUS_FILE = "daemon.json"


def register(sub: Subcommands) -> None:
    p = sub.add_parser("docker-env", help="Print the shell line that points docker's tools at k3c",
                       description="Print the shell line that points docker's tools at k3c's Docker API socket.")
    _state_dir_flag(p)
    p.set_defaults(func=docker_env_cmd)
    group = sub.add_parser("context", help="Manage the docker CLI context of k3c",
                           description="Manage the docker CLI context of k3c.")

    def show_help(_args: argparse.Namespace) -> int:
        group.print_help()
        return 0

    group.set_defaults(func=show_help)
    csub = group.add_subparsers(dest="context_command", metavar="COMMAND", title="commands")
    p = csub.add_parser("install", help=f"Create (or update) the docker CLI context named {CONTEXT_NAME}",
                        description=f"Create (or update) the docker CLI context named {CONTEXT_NAME}, for "
                                    f"`docker --context {CONTEXT_NAME}` and `docker context use {CONTEXT_NAME}`.")
    _state_dir_flag(p)
    p.set_defaults(func=context_install_cmd)


def _state_dir_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--state-dir", default=os.environ.get("K3C_STATE_DIR", DEFAULT_STATE_DIR),
                   help="The daemon's runtime state directory (default %(default)s)")


def docker_host(state_dir: str) -> str:
    """``unix://…`` of the running daemon's Docker API, from its status file."""
    path = Path(state_dir) / STATUS_FILE
    try:
        status = json.loads(path.read_text())
    except FileNotFoundError:
        raise CLIError(f"k3c: no k3c daemon is running with state dir {state_dir} (no {path}): start it with "
                       "`k3c daemon`", 1) from None
    except (OSError, ValueError) as err:
        raise CLIError(f"k3c: cannot read {path}: {err}", 1) from None
    address = (status.get("frontends") or {}).get("docker")
    if not isinstance(address, str) or not address:
        raise CLIError("k3c: the running k3c daemon serves no Docker API socket (see `k3c daemon --help`, "
                       "--docker-socket)", 1)
    return address


def docker_env_cmd(args: argparse.Namespace) -> int:
    host = docker_host(args.state_dir)
    print(f"export DOCKER_HOST={host}")
    print("# Run this command to configure your shell:")
    print('# eval "$(k3c docker-env)"')
    return 0


def docker_config_dir() -> Path:
    """The docker CLI's configuration directory: ``$DOCKER_CONFIG``, else ``~/.docker``."""
    return Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker")


def context_meta(host: str) -> dict[str, object]:
    """The context's ``meta.json`` as the docker CLI's context store writes it."""
    return {"Name": CONTEXT_NAME,
            "Metadata": {"Description": "k3c: classic Docker for a Kubernetes world"},
            "Endpoints": {"docker": {"Host": host, "SkipTLSVerify": False}}}


def context_install_cmd(args: argparse.Namespace) -> int:
    host = docker_host(args.state_dir)
    meta_dir = docker_config_dir() / "contexts" / "meta" / hashlib.sha256(CONTEXT_NAME.encode()).hexdigest()
    try:
        meta_dir.mkdir(parents=True, exist_ok=True)
        tmp = meta_dir / "meta.json.tmp"
        tmp.write_text(json.dumps(context_meta(host)))
        os.replace(tmp, meta_dir / "meta.json")
    except OSError as err:
        raise CLIError(f"k3c: cannot write the docker context: {err}", 1) from None
    print(CONTEXT_NAME)
    print(f"Docker context {CONTEXT_NAME} points at {host}: use it with `docker context use {CONTEXT_NAME}` "
          f"or `docker --context {CONTEXT_NAME} …`")
    return 0
