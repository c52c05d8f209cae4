"""`python -m k3c.operator`: the kopf operator, as `k3c daemon` starts it (or one per node in a cluster)."""

from __future__ import annotations

import argparse
import os
import socket
from pathlib import Path

from k3c.api import DEFAULT_KUBECONFIG, DEFAULT_ROOT_DIR
from k3c.operator import running
from k3c.operator.handlers import build_registry
from k3c.operator.running import run_registry
from k3c.reconcilers.controller import Controller, OperatorConfig


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m k3c.operator", description="k3c's LocalContainer/Volume operator")
    p.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG", DEFAULT_KUBECONFIG))
    p.add_argument("--containerd-address", default="/run/k3c/containerd/containerd.sock")
    p.add_argument("--node-name", default=socket.gethostname())
    p.add_argument("--root-dir", default=DEFAULT_ROOT_DIR, type=Path)
    p.add_argument("--pool-size", type=int, default=1, help="warm generic sandboxes to keep ready")
    p.add_argument("--ready-file", type=Path, help="written once the operator is watching")
    p.add_argument("--containerd-root", type=Path, help="root dir of k3c's own containerd (enables sandbox reuse)")
    p.add_argument("--containerd-state", type=Path, help="state dir of k3c's own containerd")
    p.add_argument("--log-level", default="info")
    return p.parse_args(argv)


async def run(args: argparse.Namespace) -> None:
    os.environ["KUBECONFIG"] = args.kubeconfig  # for kopf's own login
    config = OperatorConfig(
        kubeconfig=args.kubeconfig, containerd_address=args.containerd_address, node_name=args.node_name,
        root_dir=args.root_dir.absolute(), pool_size=args.pool_size,
        containerd_root=args.containerd_root, containerd_state=args.containerd_state,
    )
    controller = Controller(config)
    await run_registry(build_registry(controller, config), args.ready_file)


def main(argv: list[str] | None = None) -> None:
    running.main(parse_args, run, argv)


if __name__ == "__main__":
    main()
