"""`python -m k3c.operator`: k3c's kopf operator, as `k3c daemon` starts it (or one per node in a cluster).

It reconciles LocalContainers and Volumes (``containers``, with the resolvers of the node's networks), Images, ImageTags and ImagePushes (``images``),
and ImageBuilds with this node's BuildCache (``builds``): all three by default, or those ``--controllers``
names (the test harnesses and benchmarks run one part alone). The flags are read here and nowhere else,
into one :class:`~k3c.reconcilers.operatorconfig.OperatorConfig`.
"""

from __future__ import annotations

import argparse
import os
import socket
from pathlib import Path

from k3c.api import DEFAULT_KUBECONFIG, DEFAULT_ROOT_DIR
from k3c.builder.confinement import DEFAULT_PIDS_LIMIT
from k3c.operator import running
from k3c.operator.handlers import build_registry
from k3c.operator.running import run_registry
from k3c.reconcilers import webhooks
from k3c.reconcilers.assembly import Assembly
from k3c.reconcilers.kube import Kube
from k3c.reconcilers.operatorconfig import BUILD_ENGINES, CONTROLLERS, OperatorConfig


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m k3c.operator", description="k3c's operator")
    p.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG", DEFAULT_KUBECONFIG))
    p.add_argument("--containerd-address", default="/run/k3c/containerd/containerd.sock")
    p.add_argument("--node-name", default=socket.gethostname())
    p.add_argument("--root-dir", default=DEFAULT_ROOT_DIR, type=Path)
    p.add_argument("--controllers", default=",".join(CONTROLLERS), type=_controllers,
                   help=f"comma-separated, of {', '.join(CONTROLLERS)} (default: all)")
    p.add_argument("--pool-size", type=int, default=1, help="warm generic sandboxes to keep ready")
    p.add_argument("--ready-file", type=Path, help="written once the operator is watching")
    p.add_argument("--containerd-root", type=Path,
                   help="root dir of k3c's own containerd (enables sandbox reuse; its certs.d gets hosts.toml)")
    p.add_argument("--containerd-state", type=Path, help="state dir of k3c's own containerd")
    p.add_argument("--init-binary", type=Path,
                   help="static init mounted at /sbin/docker-init for containers with spec.init (docker --init)")
    p.add_argument("--build-engine", choices=BUILD_ENGINES, default=os.environ.get("K3C_BUILD_ENGINE", "native"),
                   help="native (buildah as its fallback) or buildah for every build (default $K3C_BUILD_ENGINE, "
                        "else native)")
    p.add_argument("--build-pids-limit", type=int,
                   default=int(os.environ.get("K3C_BUILD_PIDS_LIMIT", DEFAULT_PIDS_LIMIT)),
                   help="most processes a RUN step may have, 0 for no limit (default $K3C_BUILD_PIDS_LIMIT, "
                        f"else {DEFAULT_PIDS_LIMIT})")
    p.add_argument("--allow-local-git-contexts", action="store_true",
                   help="let ImageBuilds clone file:// URLs and paths on the node (they read the node's files)")
    p.add_argument("--webhook-listen", default="127.0.0.1:0", type=_listen, metavar="HOST:PORT",
                   help="where the admission webhooks listen (default %(default)s: a free port)")
    p.add_argument("--no-webhook-registration", dest="register_webhooks", action="store_false",
                   help="serve the admission webhooks but leave the ValidatingWebhookConfiguration k3c.io alone "
                        "(another process registers it)")
    p.add_argument("--webhooks-per-node", action="store_true",
                   help="register the webhooks as k3c.io.<node-name>, for this node's objects only, and remove "
                        "them at stop (a node sharing its API server with others)")
    p.add_argument("--node-policy", choices=("permissive", "restricted"), default="permissive",
                   help="this node's own policy (k3c.reconcilers.nodepolicy; default %(default)s)")
    p.add_argument("--node-policy-allow", action="append", default=[], metavar="KIND.FIELD",
                   help="a governed field the node policy allows all the same (repeatable, or comma-separated)")
    p.add_argument("--node-policy-host-path", action="append", default=[], metavar="DIR",
                   help="a node directory host paths and build contexts may name (repeatable)")
    p.add_argument("--credentials-namespace", default="kube-system",
                   help="where the registry credentials cluster-scoped objects may name live (default %(default)s)")
    p.add_argument("--images-per-node", action="store_true",
                   help="one Image object per (node, image), named and labelled with this node (cluster mode: "
                        "nodes holding the same image never share an object)")
    p.add_argument("--node-runtime-address", metavar="SOCK",
                   help="the node runtime's containerd (a kubelet's): images named here are shared into it at once")
    p.add_argument("--no-dns", dest="dns", action="store_false",
                   help="run no resolvers on the gateways of DNS-enabled networks (k3c.netdns)")
    p.add_argument("--dns-port", type=int, default=53, help="the resolvers' port (default %(default)s)")
    p.add_argument("--log-level", default="info")
    return p.parse_args(argv)


def _listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"{value!r}: expected HOST:PORT")
    return host.strip("[]"), int(port)


def _controllers(value: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(n.strip() for n in value.split(",") if n.strip()))
    unknown = [n for n in names if n not in CONTROLLERS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"{value!r}: choose from {', '.join(CONTROLLERS)}")
    return names


def config_from_args(args: argparse.Namespace) -> OperatorConfig:
    return OperatorConfig(
        kubeconfig=args.kubeconfig, containerd_address=args.containerd_address, node_name=args.node_name,
        root_dir=args.root_dir.absolute(), controllers=args.controllers, pool_size=args.pool_size,
        containerd_root=args.containerd_root, containerd_state=args.containerd_state,
        init_binary=args.init_binary, build_engine=args.build_engine, build_pids_limit=args.build_pids_limit,
        local_git_contexts=args.allow_local_git_contexts,
        webhook_host=args.webhook_listen[0], webhook_port=args.webhook_listen[1],
        register_webhooks=args.register_webhooks, webhooks_per_node=args.webhooks_per_node,
        node_policy=args.node_policy,
        node_policy_allow=tuple(f.strip() for v in args.node_policy_allow for f in v.split(",") if f.strip()),
        node_policy_host_paths=tuple(args.node_policy_host_path), credentials_namespace=args.credentials_namespace,
        images_per_node=args.images_per_node,
        runtime_address=args.node_runtime_address, dns=args.dns, dns_port=args.dns_port,
    )


async def run(args: argparse.Namespace) -> None:
    os.environ["KUBECONFIG"] = args.kubeconfig  # for kopf's own login
    config = config_from_args(args)
    kube = Kube(config.kubeconfig)  # the process's one API session: the webhooks' and the controllers'
    assembly = Assembly(config, kube)
    # The admission webhooks answer (and are registered) before kopf starts the controllers, whose own
    # writes may already need them (see k3c.reconcilers.webhooks).
    hooks = webhooks.for_process(config, assembly, kube)
    try:
        await hooks.start()
        await run_registry(build_registry(assembly, hooks), args.ready_file)
    finally:
        await hooks.stop()
        await kube.close()


def main(argv: list[str] | None = None) -> None:
    running.main(parse_args, run, argv)


if __name__ == "__main__":
    main()
