"""`k3c daemon`: run the API server, containerd and the operator on this node (as root), in the foreground."""

from __future__ import annotations

import argparse
import os
import socket
from pathlib import Path

from k3c.api import DEFAULT_ROOT_DIR
from k3c.cli.apiserver import parse_listen, parse_ttl
from k3c.cli.common import Subcommands


def register(sub: Subcommands) -> None:
    p = sub.add_parser(
        "daemon", help="Run k3c on this node: API server, containerd and the operator",
        description="Run k3c on this node in the foreground: the embedded API server (or an existing cluster), "
        "containerd (or an existing one) and the operator. Containers keep running when it stops.",
    )
    p.add_argument("--root-dir", default=os.environ.get("K3C_ROOT", DEFAULT_ROOT_DIR),
                   help="Persistent state: API data, images, volumes, logs (default %(default)s)")
    p.add_argument("--state-dir", default="/run/k3c", help="Runtime state: sockets, pids (default %(default)s)")
    p.add_argument("--listen", default="127.0.0.1:6443", type=parse_listen, metavar="HOST:PORT",
                   help="Address of the embedded API server (default %(default)s)")
    p.add_argument("--docker-socket", metavar="PATH",
                   help="Serve the Docker Engine API on this unix socket (default <state-dir>/docker.sock)")
    p.add_argument("--docker-namespace", metavar="NAME",
                   help="Namespace the Docker API works in (default: the kubeconfig context's, else default)")
    p.add_argument("--kubeconfig", metavar="FILE", help="Use this cluster instead of the embedded API server")
    p.add_argument("--containerd-address", metavar="SOCK", help="Use this containerd instead of starting one")
    p.add_argument("--group", metavar="NAME|GID",
                   help="Group allowed to use k3c: socket 0660 and kubeconfig 0640 owned by it")
    p.add_argument("--node-name", default=socket.gethostname(), help="This node's name (default %(default)s)")
    p.add_argument("--bridge", default="k3c0", help="CNI bridge name (default %(default)s)")
    p.add_argument("--subnet", default="10.88.0.0/16", help="Container subnet (default %(default)s)")
    p.add_argument("--event-ttl", type=parse_ttl, default="1h0m0s", metavar="DURATION",
                   help="How long the embedded API server keeps Events (default %(default)s)")
    p.add_argument("--node-policy", choices=("permissive", "restricted"), default="permissive",
                   help="What writers of k3c objects may do to this node: permissive (default, like docker.sock: "
                        "API access is root on the node) or restricted (privileged containers, host paths and "
                        "network, added capabilities, build contexts from the node are refused unless allowed)")
    p.add_argument("--node-policy-allow", action="append", default=[], metavar="KIND.FIELD",
                   help="A governed field the restricted policy allows, e.g. LocalContainer.spec.capAdd (repeatable)")
    p.add_argument("--node-policy-host-path", action="append", default=[], metavar="DIR",
                   help="A node directory that host paths and build contexts may name (repeatable)")
    p.add_argument("--credentials-namespace", default="kube-system",
                   help="Namespace of the registry credentials Images, ImageTags and ImagePushes may name "
                        "(default %(default)s)")
    p.add_argument("--network-name", default="k3c", help=argparse.SUPPRESS)
    p.add_argument("--pool-size", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"],
                   help="Log verbosity (default %(default)s)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import asyncio
    import logging

    from k3c.cli.errors import CLIError
    from k3c.daemon.supervisor import Daemon, DaemonConfig, DaemonError, resolve_group
    from k3c.dockerapi.server import DockerAPIServer, DockerSocketConfig

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("grpc", "asyncio", "aiohttp"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    if os.geteuid() != 0:
        raise CLIError("k3c: k3c daemon must run as root")
    host, port = args.listen
    try:
        config = DaemonConfig(
            root_dir=args.root_dir, state_dir=args.state_dir, listen_host=host, listen_port=port,
            kubeconfig=args.kubeconfig, containerd_address=args.containerd_address,
            group=resolve_group(args.group) if args.group else None, node_name=args.node_name,
            bridge=args.bridge, subnet=args.subnet, network_name=args.network_name, pool_size=args.pool_size,
            log_level=args.log_level, event_ttl=args.event_ttl, node_policy=args.node_policy,
            node_policy_allow=list(args.node_policy_allow), node_policy_host_paths=list(args.node_policy_host_path),
            credentials_namespace=args.credentials_namespace,
        )
        config.containerd  # noqa: B018 - validates bridge/subnet/socket path before anything starts
        docker = DockerAPIServer(DockerSocketConfig(
            socket_path=Path(args.docker_socket or Path(config.state_dir) / "docker.sock").absolute(),
            kubeconfig=config.kubeconfig_path, node_name=config.node_name, root_dir=config.root_dir,
            group=config.group, namespace=args.docker_namespace, explicit=args.docker_socket is not None,
        ))
        asyncio.run(Daemon(config, frontends=[docker]).run())
    except (DaemonError, ValueError) as err:
        raise CLIError(f"k3c: {err}") from None
    return 0
