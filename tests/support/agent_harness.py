"""`k3c agent`s on one machine, with a `k3c apiserver` playing the cluster, as the manifests would set it up.

:func:`prepare_cluster` writes what an install leaves on a cluster: the namespace ``k3c-system``, the agents'
ServiceAccount with the Roles and bindings of manifests/base (its least-privilege role and the two bindings
an aggregated API server needs), the CRDs, the Service and the APIService ``v1alpha1.streams.k3c.io`` whose caBundle is the
agents' CA. :func:`write_endpoints` writes the Service's Endpoints as the endpoints controller would (this
cluster has no Pods): one subset per agent, so the first agent listed is the one the API server calls.

:class:`AgentProcess` runs one agent the way the DaemonSet does: in-cluster config from a ServiceAccount
directory (``K3C_SERVICEACCOUNT_DIR``, a TokenRequest token, the cluster's CA, the namespace) and
``KUBERNETES_SERVICE_HOST``/``PORT``; everything else private to it, as :class:`DaemonProcess` makes it.
Its containerd outlives it: :meth:`AgentProcess.close` ends it after the objects are gone.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import sys
import uuid
from pathlib import Path
from typing import Any

import yaml

from k3c import api, kubeclient, servingcerts
from k3c.apierrors import NotFound
from k3c.daemon.containerd import ContainerdConfig
from k3c.daemon.hostcontainerd import HostContainerd
from k3c.daemon.supervisor import install_crds
from tests.support.daemon_harness import DaemonProcess
from tests.support.harness import APIServerProcess, free_port

NS, SA = api.AGENT_NAMESPACE, api.AGENT_NAME

#: The agents' RBAC as manifests/ installs it (least privilege: the tests exercise exactly those rules).
RBAC_MANIFESTS = ("rbac-agent.yaml", "rbac-aggregation.yaml")


def admin(server: APIServerProcess) -> kubeclient.Client:
    return kubeclient.Client(kubeclient.load(str(server.kubeconfig)))


def apply(client: kubeclient.Client, resource: api.Resource, obj: dict[str, Any]) -> dict[str, Any]:
    """Create ``obj``, or replace the one of its name."""
    meta = obj["metadata"]
    path = resource.path(meta.get("namespace"), meta["name"])
    try:
        live = client.get(path)
    except NotFound:
        return client.create(resource.path(meta.get("namespace")), obj)
    obj = {**obj, "metadata": {**meta, "resourceVersion": live["metadata"]["resourceVersion"]}}
    return client.request("PUT", path, obj)


NAMESPACES = api.Resource("", "v1", "namespaces", "Namespace")
SERVICE_ACCOUNTS = api.Resource("", "v1", "serviceaccounts", "ServiceAccount")
SERVICES = api.Resource("", "v1", "services", "Service")
CLUSTER_ROLES = api.Resource("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole")
CLUSTER_ROLE_BINDINGS = api.Resource("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding")
ROLE_BINDINGS = api.Resource("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding")
API_SERVICES = api.Resource("apiregistration.k8s.io", "v1", "apiservices", "APIService")


def rbac_objects() -> list[dict[str, Any]]:
    """The Roles, ClusterRoles and their bindings of manifests/base that concern the agents."""
    from k3c.manifests import DIR

    return [d for name in RBAC_MANIFESTS for d in yaml.safe_load_all((DIR / "base" / name).read_text()) if d]


def apply_rbac(client: kubeclient.Client, obj: dict[str, Any]) -> dict[str, Any]:
    plural = {"Role": "roles", "RoleBinding": "rolebindings", "ClusterRole": "clusterroles",
              "ClusterRoleBinding": "clusterrolebindings"}[obj["kind"]]
    return apply(client, api.Resource("rbac.authorization.k8s.io", "v1", plural, obj["kind"]), obj)


def prepare_cluster(server: APIServerProcess, tls_dir: Path) -> servingcerts.ServingMaterial:
    """What an install leaves on the cluster (see the module docstring); returns the agents' TLS material."""
    material = servingcerts.ensure(tls_dir, [f"{SA}.{NS}.svc"], "k3c-agent", client_auth=True)
    install_crds(server.kubeconfig)
    c = admin(server)
    try:
        apply(c, NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
        apply(c, SERVICE_ACCOUNTS, {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": SA, "namespace": NS}})
        for obj in rbac_objects():
            apply_rbac(c, obj)
        apply(c, SERVICES, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": SA, "namespace": NS},
                            "spec": {"ports": [{"name": "https", "port": 443, "targetPort": api.STREAMS_PORT}]}})
        apply(c, API_SERVICES, {
            "apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
            "metadata": {"name": api.STREAMS_API_SERVICE},
            "spec": {"group": api.STREAMS_GROUP, "version": api.STREAMS_VERSION, "groupPriorityMinimum": 1000,
                     "versionPriority": 15, "service": {"namespace": NS, "name": SA, "port": 443},
                     "caBundle": base64.b64encode(material.ca_pem).decode()}})
    finally:
        c.close()
    return material


def write_endpoints(server: APIServerProcess, agents: list[AgentProcess]) -> None:
    """The Service's Endpoints: one subset per agent (address 127.0.0.1, its node, its stream port)."""
    subsets = [{"addresses": [{"ip": "127.0.0.1", "nodeName": a.node_name}],
                "ports": [{"name": "https", "port": a.streams_port}]} for a in agents]
    c = admin(server)
    try:
        apply(c, api.ENDPOINTS, {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": SA, "namespace": NS},
                                 "subsets": subsets})
    finally:
        c.close()


def service_account_token(server: APIServerProcess, seconds: int = 3600) -> str:
    c = admin(server)
    try:
        review = c.create(f"{SERVICE_ACCOUNTS.path(NS, SA)}/token", {
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": seconds}})
    finally:
        c.close()
    return str(review["status"]["token"])


class AgentProcess(DaemonProcess):
    """One `k3c agent` child, in-cluster config from a ServiceAccount directory of its own."""

    def __init__(self, root: Path, server: APIServerProcess, tls: servingcerts.ServingMaterial, node_name: str,
                 extra_args: list[str] | None = None) -> None:
        super().__init__(root, extra_args)
        self.server = server
        self.tls = tls
        self.node_name = node_name
        self.streams_port = free_port()
        self.cgroup = f"k3c-test-{uuid.uuid4().hex[:6]}"

    @property
    def kubeconfig(self) -> Path:  # the tests' side (delete_all, api) acts as the cluster's admin
        return self.server.kubeconfig

    @property
    def sa_dir(self) -> Path:
        return self.base / "serviceaccount"

    def write_service_account(self) -> None:
        self.sa_dir.mkdir(parents=True, exist_ok=True)
        (self.sa_dir / "token").write_text(service_account_token(self.server))
        (self.sa_dir / "ca.crt").write_bytes((self.server.data_dir / "tls" / "ca.crt").read_bytes())
        (self.sa_dir / "namespace").write_text(NS)

    def one_host_args(self) -> list[str]:
        """What two agents on one host must not share: the stream port, containerd's cgroup, the bridge."""
        return ["--streams-listen", f"127.0.0.1:{self.streams_port}", "--containerd-cgroup", self.cgroup,
                "--bridge", self.bridge, "--subnet", self.subnet, "--network-name", self.network_name,
                "--log-level", os.environ.get("K3C_TEST_LOG_LEVEL", "info")]

    def argv(self) -> list[str]:
        return [sys.executable, "-m", "k3c.cli.main", "agent", "--root-dir", str(self.root_dir),
                "--state-dir", str(self.state_dir), "--stream-tls-cert", str(self.tls.cert),
                "--stream-tls-key", str(self.tls.key), "--stream-tls-ca", str(self.tls.ca_cert),
                *self.one_host_args(), *self.extra_args]

    def environ(self) -> dict[str, str]:
        """The environment a kubelet gives the agent's container: the API server's address, the node name;
        the ServiceAccount's directory moved to this agent's own."""
        return {**os.environ, "K3C_SERVICEACCOUNT_DIR": str(self.sa_dir), "KUBERNETES_SERVICE_HOST": "127.0.0.1",
                "KUBERNETES_SERVICE_PORT": str(self.server.port), "NODE_NAME": self.node_name}

    def start(self, timeout: float = 60.0) -> None:
        """Spawn the agent as the DaemonSet's container runs it and wait for its ``daemon.json`` to say ready."""
        assert self.pid is None, "agent already running"
        self.base.mkdir(parents=True, exist_ok=True)
        if not (self.sa_dir / "token").exists():
            self.write_service_account()
        (self.state_dir / "daemon.json").unlink(missing_ok=True)
        self._spawn(self.argv(), self.environ(), "agent", timeout)

    def _children(self) -> list[int]:
        """What dies with the agent: the operator only (containerd outlives it)."""
        return [p for p in (self.status().get("operatorPid"),) if p]

    @property
    def host_containerd(self) -> HostContainerd:
        cfg: ContainerdConfig = self.containerd_config
        return HostContainerd(cfg, cgroup=self.cgroup)

    def close(self) -> list[str]:
        """Delete the objects, stop the agent, then its containerd; report and clean what was left."""
        problems: list[str] = []
        if self.pid is not None:
            try:
                self.delete_all()
            except Exception as err:  # report, and clean up regardless
                problems.append(f"deleting objects failed: {err}")
            self.stop()
        asyncio.run(self.host_containerd.stop())
        problems += self.leftovers()
        self.clean()
        return problems


def _expand(text: str, env: dict[str, str]) -> str:
    """``$(VAR)`` of a container's args, as the kubelet expands them (unknown names stay as written)."""
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m[1], m[0]), text)


class DaemonSetAgent(AgentProcess):
    """An agent started exactly as a DaemonSet's container says: its command, args and env, with each
    hostPath mapped (``/var/lib/k3c`` and ``/run/k3c`` to this agent's directories, others as ``host_paths``
    says, the rest are this host's own) and each Secret volume written as the kubelet writes it. Only what
    two agents on one host cannot share is added (:meth:`AgentProcess.one_host_args`)."""

    def __init__(self, root: Path, server: APIServerProcess, node_name: str, daemonset: dict[str, Any],
                 host_paths: dict[str, Path], pod_ip: str = "127.0.0.1") -> None:
        secrets = Path(root).absolute() / "secrets"
        tls = servingcerts.ServingMaterial(secrets / "ca.crt", secrets / "tls.crt", secrets / "tls.key")
        super().__init__(root, server, tls, node_name)
        self.pod: dict[str, Any] = daemonset["spec"]["template"]["spec"]
        (self.spec_container,) = self.pod["containers"]
        self.host_paths = {"/var/lib/k3c": self.root_dir, "/run/k3c": self.state_dir, **host_paths}
        #: the pod's IP (hostNetwork: the node's), a loopback address of its own when agents share a host
        self.pod_ip = pod_ip

    def mounts(self) -> dict[str, Path]:
        """Each volumeMount's path in the container → where it is on this host."""
        volumes = {v["name"]: v for v in self.pod["volumes"]}
        out: dict[str, Path] = {}
        for m in self.spec_container["volumeMounts"]:
            v = volumes[m["name"]]
            if "hostPath" in v:
                out[m["mountPath"]] = Path(self.host_paths.get(v["hostPath"]["path"], v["hostPath"]["path"]))
            elif "secret" in v:
                out[m["mountPath"]] = self.tls.cert.parent
            else:
                raise AssertionError(f"volume {m['name']}: the harness maps hostPath and secret volumes only")
        return out

    def container_env(self) -> dict[str, str]:
        env: dict[str, str] = {}
        for e in self.spec_container.get("env") or []:
            field = ((e.get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath")
            if field is None:
                env[e["name"]] = _expand(e.get("value", ""), env)
            elif field in ("spec.nodeName", "status.podIP"):
                env[e["name"]] = self.node_name if field == "spec.nodeName" else self.pod_ip
            else:
                raise AssertionError(f"env {e['name']}: the harness knows spec.nodeName and status.podIP only")
        return env

    def _host_path(self, value: str) -> str:
        for path, host in sorted(self.mounts().items(), key=lambda kv: -len(kv[0])):
            if value == path or value.startswith(path + "/"):
                return str(host) + value[len(path):]
        return value

    def rendered_argv(self) -> list[str]:
        """The container's command and args with ``$(VAR)`` expanded and paths in the container mapped."""
        env = self.container_env()
        out = []
        for arg in [*self.spec_container["command"], *self.spec_container.get("args", [])]:
            arg = _expand(arg, env)
            flag, eq, value = arg.partition("=")
            out.append(f"{flag}={self._host_path(value)}" if eq and flag.startswith("--") else self._host_path(arg))
        return out

    def argv(self) -> list[str]:
        command, *args = self.rendered_argv()
        exe = Path(sys.executable).parent / command  # the image puts the installed console script on PATH
        assert exe.is_file(), f"no {command} beside {sys.executable}"
        return [str(exe), *args, *self.one_host_args()]

    def environ(self) -> dict[str, str]:
        env = super().environ()
        del env["NODE_NAME"]  # the container's own env must say it
        return {**env, **self.container_env()}

    def write_secret_volumes(self) -> None:
        """Each Secret volume's keys as files, as the kubelet writes them (a missing optional Secret: none)."""
        c = admin(self.server)
        try:
            for v in self.pod["volumes"]:
                if "secret" not in v:
                    continue
                try:
                    data = c.get(api.SECRETS.path(NS, v["secret"]["secretName"])).get("data") or {}
                except NotFound:
                    assert v["secret"].get("optional"), f"Secret {v['secret']['secretName']} is missing"
                    continue
                self.tls.cert.parent.mkdir(parents=True, exist_ok=True)
                for key, b64 in data.items():
                    path = self.tls.cert.parent / key
                    path.write_bytes(base64.b64decode(b64))
                    path.chmod(v["secret"].get("defaultMode", 0o644))
        finally:
            c.close()

    def start(self, timeout: float = 60.0) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        self.write_secret_volumes()
        super().start(timeout)
