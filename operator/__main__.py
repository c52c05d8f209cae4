"""`python -m k3c.operator`: the kopf operator, as `k3c daemon` starts it (or one per node in a cluster)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
from pathlib import Path

import kopf

from k3c.operator.handlers import build_registry
from k3c.reconcilers.controller import Controller, OperatorConfig


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m k3c.operator", description="k3c's LocalContainer/Volume operator")
    p.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG", "/var/lib/k3c/kubeconfig.yaml"))
    p.add_argument("--containerd-address", default="/run/k3c/containerd/containerd.sock")
    p.add_argument("--node-name", default=socket.gethostname())
    p.add_argument("--root-dir", default="/var/lib/k3c", type=Path)
    p.add_argument("--pool-size", type=int, default=1, help="warm generic sandboxes to keep ready")
    p.add_argument("--ready-file", type=Path, help="written once the operator is watching")
    p.add_argument("--containerd-root", type=Path, help="root dir of k3c's own containerd (enables sandbox reuse)")
    p.add_argument("--containerd-state", type=Path, help="state dir of k3c's own containerd")
    p.add_argument("--log-level", default="info")
    return p.parse_args(argv)


def settings() -> kopf.OperatorSettings:
    s = kopf.OperatorSettings()
    s.posting.enabled = False  # the reconcilers post their own, meaningful Events
    s.watching.connect_timeout = 10
    s.watching.server_timeout = 300
    s.networking.request_timeout = 60
    s.scanning.disabled = True  # the resources are known; no need to scan namespaces and CRDs
    return s


async def run(args: argparse.Namespace) -> None:
    os.environ["KUBECONFIG"] = args.kubeconfig  # for kopf's own login
    config = OperatorConfig(
        kubeconfig=args.kubeconfig, containerd_address=args.containerd_address, node_name=args.node_name,
        root_dir=args.root_dir.absolute(), pool_size=args.pool_size,
        containerd_root=args.containerd_root, containerd_state=args.containerd_state,
    )
    controller = Controller(config)
    ready = asyncio.Event()
    operator = asyncio.create_task(kopf.operator(
        registry=build_registry(controller, config), settings=settings(), standalone=True, clusterwide=True,
        ready_flag=ready,
    ))
    waiter = asyncio.create_task(ready.wait())
    await asyncio.wait({operator, waiter}, return_when=asyncio.FIRST_COMPLETED)
    if ready.is_set() and args.ready_file is not None:
        args.ready_file.write_text(f"{os.getpid()}\n")
    waiter.cancel()
    await operator


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    level = getattr(logging, args.log_level.upper(), logging.INFO)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("kopf", "grpc", "asyncio", "aiohttp"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
