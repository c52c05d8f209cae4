"""`k3c daemon` and `k3c agent`: run k3c on this node (as root), in the foreground — on its own embedded API
server, or as a node agent of a cluster."""

from __future__ import annotations

import argparse
import os
import socket
from pathlib import Path
from typing import Any

from k3c.api import DEFAULT_ROOT_DIR, STREAMS_PORT
from k3c.cli.apiserver import parse_listen, parse_ttl
from k3c.cli.common import Subcommands


def register(sub: Subcommands) -> None:
    p = sub.add_parser(
        "daemon", help="Run k3c on this node: API server, containerd and the operator",
        description="Run k3c on this node in the foreground: the embedded API server (or an existing cluster), "
        "containerd (or an existing one) and the operator. Containers keep running when it stops.",
    )
    _node_flags(p)
    p.add_argument("--listen", default="127.0.0.1:6443", type=parse_listen, metavar="HOST:PORT",
                   help="Address of the embedded API server (default %(default)s)")
    p.add_argument("--docker-socket", metavar="PATH",
                   help="Serve the Docker Engine API on this unix socket (default <state-dir>/docker.sock)")
    p.add_argument("--docker-namespace", metavar="NAME",
                   help="Namespace the Docker API works in (default: the kubeconfig context's, else default)")
    p.add_argument("--kubeconfig", metavar="FILE", help="Use this cluster instead of the embedded API server")
    p.add_argument("--group", metavar="NAME|GID",
                   help="Group allowed to use k3c: socket 0660 and kubeconfig 0640 owned by it")
    p.add_argument("--event-ttl", type=parse_ttl, default="1h0m0s", metavar="DURATION",
                   help="How long the embedded API server keeps Events (default %(default)s)")
    p.set_defaults(func=run)

    a = sub.add_parser(
        "agent", help="Run k3c on a node of a cluster: containerd, the operator and the node's streams",
        description="Run k3c's node agent in the foreground (the DaemonSet's command): its own containerd in the "
        "host's namespaces (containers outlive the agent), the operator for this node, and the node's stream "
        "server (streams.k3c.io, behind the cluster's API server). Uses the in-cluster config unless --kubeconfig "
        "is given.",
    )
    _node_flags(a)
    a.add_argument("--kubeconfig", metavar="FILE", help="The cluster to join (default: the in-cluster config)")
    a.add_argument("--streams-listen", default=f"0.0.0.0:{STREAMS_PORT}", type=parse_listen, metavar="HOST:PORT",
                   help="Address of the node's HTTPS stream server (default %(default)s)")
    a.add_argument("--stream-tls-cert", default="/etc/k3c/streams/tls.crt", metavar="FILE",
                   help="The streams' serving certificate, shared by the agents, made by k3c install; the streams "
                        "start once it exists (default %(default)s)")
    a.add_argument("--stream-tls-key", default="/etc/k3c/streams/tls.key", metavar="FILE",
                   help="Its key (default %(default)s)")
    a.add_argument("--stream-tls-ca", metavar="FILE",
                   help="The CA that signed it, the APIService's caBundle (default: ca.crt beside the certificate)")
    a.add_argument("--webhook-listen", type=parse_listen, metavar="HOST:PORT",
                   help="Where the operator's admission webhooks (node policy, images in use) listen: an address "
                        "the cluster's API server reaches, the pod's IP in the DaemonSet; they are then registered "
                        "for this node (k3c.io.<node>). Default: loopback, unregistered")
    a.add_argument("--register-webhooks", action="store_true",
                   help="Register the webhooks even on loopback (only where the API server runs on this host)")
    a.add_argument("--containerd-cgroup", default="k3c-containerd", metavar="NAME",
                   help="The cgroup containerd runs in, under the host init's (default %(default)s)")
    a.set_defaults(func=run_agent)


def _node_flags(p: argparse.ArgumentParser) -> None:
    """The flags of everything a node runs besides the API server, the same for the daemon and the agent."""
    p.add_argument("--root-dir", default=os.environ.get("K3C_ROOT", DEFAULT_ROOT_DIR),
                   help="Persistent state: API data, images, volumes, logs (default %(default)s)")
    p.add_argument("--state-dir", default="/run/k3c", help="Runtime state: sockets, pids (default %(default)s)")
    p.add_argument("--containerd-address", metavar="SOCK", help="Use this containerd instead of starting one")
    p.add_argument("--node-runtime-address", default="auto", metavar="SOCK|auto|none",
                   help="The node's Kubernetes runtime (a kubelet's containerd) to share every image into, at once: "
                        "its socket, auto (the one a kubelet on this host uses, e.g. k3s's) or none (default auto)")
    p.add_argument("--force-containerd-address", action="store_true",
                   help="Use --containerd-address even when a kubelet uses that containerd (its Pod cleanup removes "
                        "sandboxes it does not know: k3c's containers would be stopped)")
    p.add_argument("--node-name", default=os.environ.get("NODE_NAME") or socket.gethostname(),
                   help="This node's name (default: $NODE_NAME, else %(default)s)")
    p.add_argument("--bridge", default="k3c0", help="CNI bridge name (default %(default)s)")
    p.add_argument("--subnet", default="10.88.0.0/16", help="Container subnet (default %(default)s)")
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
    p.add_argument("--no-dns", dest="dns", action="store_false",
                   help="Run no name resolvers on the gateways of user networks (containers then resolve through "
                        "the host's resolvers only, and cannot find each other by name)")
    p.add_argument("--network-name", default="k3c", help=argparse.SUPPRESS)
    p.add_argument("--pool-size", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"],
                   help="Log verbosity (default %(default)s)")


def _node_config(args: argparse.Namespace) -> dict[str, Any]:
    return dict(
        root_dir=args.root_dir, state_dir=args.state_dir, kubeconfig=args.kubeconfig,
        containerd_address=args.containerd_address, node_name=args.node_name, bridge=args.bridge,
        subnet=args.subnet, network_name=args.network_name, pool_size=args.pool_size, log_level=args.log_level,
        node_policy=args.node_policy, node_policy_allow=list(args.node_policy_allow),
        node_policy_host_paths=list(args.node_policy_host_path), credentials_namespace=args.credentials_namespace,
        force_containerd_address=args.force_containerd_address, node_runtime=args.node_runtime_address,
        dns=args.dns,
    )


def _start_logging(args: argparse.Namespace, what: str) -> None:
    import logging

    from k3c.cli.errors import CLIError

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("grpc", "asyncio", "aiohttp"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    if os.geteuid() != 0:
        raise CLIError(f"k3c: k3c {what} must run as root")


def run(args: argparse.Namespace) -> int:
    import asyncio

    from k3c.cli.errors import CLIError
    from k3c.daemon.supervisor import Daemon, DaemonConfig, DaemonError, resolve_group
    from k3c.dockerapi.server import DockerAPIServer, DockerSocketConfig

    _start_logging(args, "daemon")
    host, port = args.listen
    try:
        config = DaemonConfig(**_node_config(args), listen_host=host, listen_port=port,
                              group=resolve_group(args.group) if args.group else None, event_ttl=args.event_ttl)
        config.containerd  # noqa: B018 - validates bridge/subnet/socket path before anything starts
        docker = DockerAPIServer(DockerSocketConfig(
            socket_path=Path(args.docker_socket or Path(config.state_dir) / "docker.sock").absolute(),
            kubeconfig=config.kubeconfig_path, node_name=config.node_name, root_dir=config.root_dir,
            group=config.group, namespace=args.docker_namespace, explicit=args.docker_socket is not None,
            subnet=config.containerd.subnet, bridge=config.containerd.bridge,
        ))
        asyncio.run(Daemon(config, frontends=[docker]).run())
    except (DaemonError, ValueError) as err:
        raise CLIError(f"k3c: {err}") from None
    return 0


def run_agent(args: argparse.Namespace) -> int:
    import asyncio

    from k3c.cli.errors import CLIError
    from k3c.daemon.agent import Agent, AgentConfig
    from k3c.daemon.supervisor import DaemonError

    _start_logging(args, "agent")
    host, port = args.streams_listen
    try:
        config = AgentConfig(**_node_config(args), streams_host=host, streams_port=port,
                             tls_cert=Path(args.stream_tls_cert), tls_key=Path(args.stream_tls_key),
                             tls_ca=Path(args.stream_tls_ca or Path(args.stream_tls_cert).parent / "ca.crt"),
                             containerd_cgroup=args.containerd_cgroup, webhook_listen=args.webhook_listen,
                             register_webhooks=args.register_webhooks or args.webhook_listen is not None)
        config.containerd  # noqa: B018 - validates bridge/subnet/socket path before anything starts
        asyncio.run(Agent(config).run())
    except (DaemonError, ValueError) as err:
        raise CLIError(f"k3c: {err}") from None
    return 0
