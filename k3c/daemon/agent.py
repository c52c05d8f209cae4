"""`k3c agent`: a node of a cluster — `k3c daemon` without the embedded API server, plus the node's streams.

The same supervisor as :class:`~k3c.daemon.supervisor.Daemon`, for a node of a cluster it does not run:

- the cluster is reached with the Pod's in-cluster config (the ServiceAccount's token, rotated by the
  kubelet and read again as it changes, its CA and namespace, and ``KUBERNETES_SERVICE_HOST``/``PORT``),
  written once as ``<state-dir>/kubeconfig.yaml`` for the operator; or with ``--kubeconfig``. The in-cluster
  files' directory can be moved (``K3C_SERVICEACCOUNT_DIR``) for tests, which cannot write /var/run/secrets;
- containerd is started detached in the host's namespaces (:mod:`k3c.daemon.hostcontainerd`), so it and
  every container outlive the agent; a new agent adopts it, and its operator the running containers;
- the CRDs are not installed: the manifests bring them, and the agent's ServiceAccount may not write them;
- the operator runs for this node (``--node-name``); its admission webhooks listen on ``--webhook-listen``
  (the pod's IP, which the cluster's API server reaches) and are registered as ``k3c.io.<node>``;
- this node's stream server (:mod:`k3c.aggregated.server`) listens on ``--streams-listen`` with the serving
  certificate ``k3c install`` made (``--stream-tls-cert``, ``--stream-tls-key``, and its CA, which the
  APIService's caBundle holds too: ``ca.crt`` beside them); until those exist (a bare ``kubectl apply -k``)
  the node runs containers and its streams start as soon as they appear.

A clean stop stops the operator and the stream server, and leaves containerd and its containers running.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from k3c import api
from k3c.aggregated.peers import AgentIdentity
from k3c.aggregated.server import StreamServer, StreamServerConfig
from k3c.apierrors import APIError
from k3c.daemon.containerd import ContainerdProcess
from k3c.daemon.hostcontainerd import HostContainerd
from k3c.daemon.supervisor import Daemon, DaemonConfig, DaemonError
from k3c.kubeasync import AsyncKube

log = logging.getLogger("k3c.agent")

#: Where a Pod finds its ServiceAccount's token, CA and namespace.
SERVICEACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
#: The environment variable that moves it (tests), same code path otherwise.
SERVICEACCOUNT_DIR_ENV = "K3C_SERVICEACCOUNT_DIR"
#: How often a node without the streams' TLS files looks for them.
TLS_POLL = 5.0


@dataclass
class AgentConfig(DaemonConfig):
    """`k3c daemon`'s configuration plus the agent's own; see :mod:`k3c.cli.agent` for the flags."""

    serviceaccount_dir: Path = field(
        default_factory=lambda: Path(os.environ.get(SERVICEACCOUNT_DIR_ENV) or SERVICEACCOUNT_DIR))
    streams_host: str = "0.0.0.0"
    streams_port: int = api.STREAMS_PORT
    tls_cert: Path = Path("/etc/k3c/streams/tls.crt")
    tls_key: Path = Path("/etc/k3c/streams/tls.key")
    tls_ca: Path = Path("/etc/k3c/streams/ca.crt")
    #: the cgroup containerd gets under the host init's ("" leaves it in the agent's)
    containerd_cgroup: str = "k3c-containerd"
    #: where the operator's admission webhooks listen (None: a free loopback port), an address the cluster's
    #: API server reaches: the DaemonSet gives the pod's IP
    webhook_listen: tuple[str, int] | None = None
    #: whether the operator registers its admission webhooks (for this node): on loopback only where the
    #: cluster's API server runs on the same host (the tests' embedded one)
    register_webhooks: bool = False


def in_cluster_kubeconfig(sa_dir: Path, environ: dict[str, str] | os._Environ[str] = os.environ) -> dict[str, object]:
    """The kubeconfig equivalent of the in-cluster config: the token as a ``tokenFile`` (read again when
    the kubelet rotates it), the CA by path, the namespace the Pod runs in."""
    host, port = environ.get("KUBERNETES_SERVICE_HOST"), environ.get("KUBERNETES_SERVICE_PORT")
    if not host or not port:
        raise DaemonError("not in a cluster: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set "
                          "(give --kubeconfig)")
    token = sa_dir / "token"
    if not token.is_file():
        raise DaemonError(f"no ServiceAccount token at {token} (give --kubeconfig)")
    host = f"[{host}]" if ":" in host else host
    namespace_file = sa_dir / "namespace"
    namespace = namespace_file.read_text().strip() if namespace_file.is_file() else api.AGENT_NAMESPACE
    cluster: dict[str, object] = {"server": f"https://{host}:{port}"}
    if (sa_dir / "ca.crt").is_file():
        cluster["certificate-authority"] = str(sa_dir / "ca.crt")
    return {
        "apiVersion": "v1", "kind": "Config", "current-context": "in-cluster",
        "clusters": [{"name": "in-cluster", "cluster": cluster}],
        "users": [{"name": "serviceaccount", "user": {"tokenFile": str(token)}}],
        "contexts": [{"name": "in-cluster",
                      "context": {"cluster": "in-cluster", "user": "serviceaccount", "namespace": namespace}}],
    }


class Agent(Daemon):
    """The running agent (see the module docstring)."""

    config: AgentConfig

    def __init__(self, config: AgentConfig) -> None:
        super().__init__(config)
        self.streams: StreamServer | None = None
        self._kube: AsyncKube | None = None
        self._waiting: asyncio.Future[None] | None = None

    async def start(self) -> None:
        cfg = self.config
        self._prepare_dirs()
        if cfg.kubeconfig is None:
            cfg.kubeconfig = self._write_in_cluster_kubeconfig()
        elif not cfg.kubeconfig.exists():
            raise DaemonError(f"kubeconfig {cfg.kubeconfig} not found")
        if cfg.containerd_address is None:
            await self._start_containerd()
        else:
            await self._check_containerd_address()
        await self._ensure_pause()
        await self._start_streams()
        await self._start_operator()
        self._write_status(ready=True)

    def _write_in_cluster_kubeconfig(self) -> Path:
        path = self.config.state_dir / api.KUBECONFIG_FILE
        doc = in_cluster_kubeconfig(self.config.serviceaccount_dir)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump(doc))
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
        return path

    def _operator_argv(self) -> list[str]:
        argv = super()._operator_argv()
        listen = self.config.webhook_listen
        if listen is not None:
            host = f"[{listen[0]}]" if ":" in listen[0] else listen[0]
            argv += ["--webhook-listen", f"{host}:{listen[1]}"]
        return argv if self.config.register_webhooks else [*argv, "--no-webhook-registration"]

    def _new_containerd(self) -> ContainerdProcess | HostContainerd:
        return HostContainerd(self.config.containerd, cgroup=self.config.containerd_cgroup)

    async def _start_streams(self) -> None:
        cfg = self.config
        missing = [p for p in (cfg.tls_cert, cfg.tls_key, cfg.tls_ca) if not p.is_file()]
        if missing:
            log.warning("no streams until %s exist%s (made by k3c install)", ", ".join(map(str, missing)),
                        "s" if len(missing) == 1 else "")
            self._waiting = asyncio.ensure_future(self._streams_when_ready())
            return
        kube = AsyncKube(str(cfg.kubeconfig_path), user_agent="k3c-agent")
        self._kube = kube
        server = StreamServer(kube, StreamServerConfig(cfg.node_name, cfg.streams_host, cfg.streams_port,
                                                       AgentIdentity(cfg.tls_cert, cfg.tls_key, cfg.tls_ca)),
                              self._providers(cfg.node_name))
        try:
            await server.start()
        except APIError as err:
            raise DaemonError(f"cannot serve the streams: {err.message}") from None
        except OSError as err:
            raise DaemonError(f"cannot serve the streams on {cfg.streams_host}:{cfg.streams_port}: {err}") from None
        self.streams = server

    async def _streams_when_ready(self) -> None:
        """Start the streams once their TLS files exist (a failure to is logged and tried again)."""
        cfg = self.config
        while self.streams is None:
            await asyncio.sleep(TLS_POLL)
            if all(p.is_file() for p in (cfg.tls_cert, cfg.tls_key, cfg.tls_ca)):
                try:
                    await self._start_streams()
                except DaemonError as err:
                    log.error("%s", err)

    async def stop(self) -> None:
        """The operator, then the stream server; containerd and the containers keep running."""
        if self._waiting is not None:
            self._waiting.cancel()
        self.config.status_path.unlink(missing_ok=True)
        if self.operator is not None:
            await self.operator.stop()
            self.operator = None
        if self.streams is not None:
            await self.streams.stop()
        self.streams = None
        if self._kube is not None:
            await self._kube.close()
        self._kube = None
        log.info("k3c agent stopped (containerd pid %s keeps running)", self.containerd.pid if self.containerd else None)
