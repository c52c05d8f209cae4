"""`k3c install` and `k3c uninstall` against k3c's own API server playing the cluster.

Nothing runs the DaemonSet here, so the tests do what a cluster's controllers would: they write Nodes with
the runtime their kubelet reports, the DaemonSet's status as its controller would, and, for uninstall, act
as the agents running their finalizers, noting what still existed at that moment (the order is the point).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.support.harness import APIServerProcess, run_kubectl

K3S = "containerd://1.7.23-k3s2"
CONTAINERD = "containerd://1.7.24"
DS = ("daemonset", "k3c-agent", "-n", "k3c-system")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[APIServerProcess]:
    srv = APIServerProcess(tmp_path / "data")
    srv.start()
    yield srv
    srv.stop()


def kubectl(cluster: APIServerProcess, *args: str, input: str | None = None, check: bool = True) -> str:
    return run_kubectl("kubectl", cluster.kubeconfig, *args, input=input, check=check).stdout


def get(cluster: APIServerProcess, *args: str) -> dict[str, Any] | None:
    out = run_kubectl("kubectl", cluster.kubeconfig, "get", *args, "-o", "json", check=False)
    return json.loads(out.stdout) if out.returncode == 0 else None


def k3c_cmd(cluster: APIServerProcess, *args: str) -> list[str]:
    return [sys.executable, "-m", "k3c.cli.main", "--kubeconfig", str(cluster.kubeconfig), *args]


def k3c(cluster: APIServerProcess, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    cp = subprocess.run(k3c_cmd(cluster, *args), capture_output=True, text=True, timeout=timeout,
                        env={**os.environ, "KUBECACHEDIR": str(cluster.kubeconfig.parent / "kubecache")})
    assert "Traceback" not in cp.stderr, cp.stderr
    return cp


def add_node(cluster: APIServerProcess, name: str, runtime: str, **labels: str) -> None:
    """A Node as a kubelet registers it: its runtime in status.nodeInfo."""
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels}}
    kubectl(cluster, "apply", "-f", "-", input=json.dumps(node))
    status = {"status": {"nodeInfo": {"containerRuntimeVersion": runtime}}}
    kubectl(cluster, "patch", "node", name, "--subresource=status", "--type=merge", "-p", json.dumps(status))


def report_agents_ready(cluster: APIServerProcess, count: int) -> None:
    """What the DaemonSet controller writes once ``count`` agents of the current spec run and are ready."""
    ds = get(cluster, *DS)
    assert ds is not None
    n = {k: count for k in ("desiredNumberScheduled", "currentNumberScheduled", "numberReady",
                            "updatedNumberScheduled", "numberAvailable")}
    status = {"status": {"observedGeneration": ds["metadata"]["generation"], "numberMisscheduled": 0, **n}}
    kubectl(cluster, "patch", *DS, "--subresource=status", "--type=merge", "-p", json.dumps(status))


def wait_for(what, timeout: float = 30, step: float = 0.1):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while (value := what()) is None or value is False:
        assert time.monotonic() < deadline, "timed out"
        time.sleep(step)
    return value


def test_install_auto_k3s_waits_until_the_agents_are_ready(cluster: APIServerProcess) -> None:
    add_node(cluster, "n1", K3S)
    add_node(cluster, "n2", K3S)
    proc = subprocess.Popen(k3c_cmd(cluster, "install", "--timeout", "60"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: get(cluster, *DS))
        time.sleep(1.5)
        assert proc.poll() is None, "install returned before any agent was ready"
        report_agents_ready(cluster, 2)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "k3c installed for k3s nodes" in out and "2/2 agents ready" in out, out

    ds = get(cluster, *DS)
    assert ds is not None
    pod = ds["spec"]["template"]["spec"]
    assert {v["name"]: v for v in pod["volumes"]}["node-runtime"]["hostPath"]["path"] == "/run/k3s/containerd"
    assert pod["containers"][0]["image"] == "k3c.local/k3c-agent:0.1.0" and "nodeSelector" not in pod
    secret = get(cluster, "secret", "k3c-agent-tls", "-n", "k3c-system")
    api = get(cluster, "apiservice", "v1alpha1.streams.k3c.io")
    assert secret is not None and api is not None
    ca_pem = base64.b64decode(secret["data"]["ca.crt"])
    assert base64.b64decode(api["spec"]["caBundle"]) == ca_pem
    cert = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate(ca_pem))
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName)
    assert "k3c-agent.k3c-system.svc" in names
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CLIENT_AUTH in usages  # an agent presents it to the agent of another node

    again = k3c(cluster, "install", "--timeout", "5")  # agents still ready: returns at once, same CA
    assert again.returncode == 0, again.stderr
    api = get(cluster, "apiservice", "v1alpha1.streams.k3c.io")
    assert api is not None and base64.b64decode(api["spec"]["caBundle"]) == ca_pem


def test_install_replaces_a_serving_only_certificate(cluster: APIServerProcess, tmp_path: Path) -> None:
    """An earlier install's certificate could not authenticate an agent to its peers: a new one, new CA."""
    from k3c import servingcerts

    add_node(cluster, "n1", K3S)
    old = servingcerts.ensure(tmp_path, ["k3c-agent.k3c-system.svc"], "k3c-agent")
    kubectl(cluster, "create", "namespace", "k3c-system")
    kubectl(cluster, "create", "secret", "generic", "k3c-agent-tls", "-n", "k3c-system",
            f"--from-file=ca.crt={old.ca_cert}", f"--from-file=tls.crt={old.cert}", f"--from-file=tls.key={old.key}")
    cp = k3c(cluster, "install", "--timeout", "0")
    assert cp.returncode == 0, cp.stderr
    secret, api = get(cluster, "secret", "k3c-agent-tls", "-n", "k3c-system"), get(cluster, "apiservice",
                                                                                   "v1alpha1.streams.k3c.io")
    assert secret is not None and api is not None
    ca_pem = base64.b64decode(secret["data"]["ca.crt"])
    assert ca_pem != old.ca_pem and base64.b64decode(api["spec"]["caBundle"]) == ca_pem
    cert = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))
    assert ExtendedKeyUsageOID.CLIENT_AUTH in cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value


def test_install_chooses_a_runtime_per_kind_of_node(cluster: APIServerProcess) -> None:
    cp = k3c(cluster, "install", "--timeout", "0")
    assert cp.returncode == 125 and "no nodes" in cp.stderr, cp.stderr
    add_node(cluster, "k1", K3S, pool="k3s")
    add_node(cluster, "c1", CONTAINERD, pool="plain")
    cp = k3c(cluster, "install", "--timeout", "0")
    assert cp.returncode == 125, cp.stderr
    assert "different runtimes (containerd: c1; k3s: k1)" in cp.stderr and get(cluster, *DS) is None
    cp = k3c(cluster, "install", "--node-selector", "pool=plain", "--image", "reg.example/k3c-agent:t",
             "--timeout", "0")
    assert cp.returncode == 0 and "for containerd nodes" in cp.stdout, cp.stderr
    ds = get(cluster, *DS)
    assert ds is not None
    pod = ds["spec"]["template"]["spec"]
    assert {v["name"]: v for v in pod["volumes"]}["node-runtime"]["hostPath"]["path"] == "/run/containerd"
    assert pod["nodeSelector"] == {"pool": "plain"} and pod["containers"][0]["image"] == "reg.example/k3c-agent:t"
    add_node(cluster, "o1", "cri-o://1.30.0", pool="crio")
    cp = k3c(cluster, "install", "--node-selector", "pool=crio", "--timeout", "0")
    assert cp.returncode == 125 and "o1 runs cri-o://1.30.0" in cp.stderr, cp.stderr


def test_install_says_why_the_agents_are_not_ready(cluster: APIServerProcess) -> None:
    add_node(cluster, "n1", CONTAINERD)
    cp = k3c(cluster, "install", "--timeout", "2")
    assert cp.returncode == 1, cp.stderr
    assert "the agents are not ready after 2s: the DaemonSet controller has not seen" in cp.stderr, cp.stderr


# --------------------------------------------------------------------------------------------- uninstall


def _k3c_objects(cluster: APIServerProcess) -> None:
    kubectl(cluster, "create", "namespace", "apps")
    docs = [
        {"apiVersion": "k3c.io/v1alpha1", "kind": "LocalContainer",
         "metadata": {"name": "web", "namespace": "apps", "finalizers": ["k3c.io/container"]},
         "spec": {"image": "busybox"}},
        {"apiVersion": "k3c.io/v1alpha1", "kind": "Volume",
         "metadata": {"name": "data", "namespace": "apps", "finalizers": ["k3c.io/volume"]}, "spec": {}},
        {"apiVersion": "k3c.io/v1alpha1", "kind": "Image",
         "metadata": {"name": "busybox.latest-0", "finalizers": ["k3c.io/image"]},
         "spec": {"reference": "docker.io/library/busybox:latest"}},
    ]
    kubectl(cluster, "apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": docs}))


class FakeAgents(threading.Thread):
    """The agents' side of deletion: runs the finalizers of deleted LocalContainers and Volumes (never an
    Image's: that would remove the image from the node) and notes what existed when each object went."""

    def __init__(self, cluster: APIServerProcess) -> None:
        super().__init__(daemon=True)
        self.cluster = cluster
        self.seen: dict[str, dict[str, bool]] = {}
        self.stop = threading.Event()

    def _state(self) -> dict[str, bool]:
        return {"daemonset": get(self.cluster, *DS) is not None,
                "crd": get(self.cluster, "crd", "localcontainers.k3c.io") is not None}

    def run(self) -> None:
        while not self.stop.is_set():
            for kind, ns in (("localcontainers", "apps"), ("volumes", "apps")):
                for obj in (get(self.cluster, kind, "-n", ns) or {}).get("items", []):
                    if obj["metadata"].get("deletionTimestamp") and kind not in self.seen:
                        self.seen[kind] = self._state()
                        kubectl(self.cluster, "patch", kind, obj["metadata"]["name"], "-n", ns, "--type=merge",
                                "-p", '{"metadata":{"finalizers":null}}', check=False)
            image = get(self.cluster, "images.k3c.io", "busybox.latest-0")
            if "images" not in self.seen and (image is None or image["metadata"].get("deletionTimestamp")):
                self.seen["images"] = self._state()
            time.sleep(0.1)


def test_uninstall_removes_k3c_objects_then_agents_then_crds_and_leaves_images(cluster: APIServerProcess) -> None:
    add_node(cluster, "n1", K3S)
    assert k3c(cluster, "install", "--timeout", "0").returncode == 0
    _k3c_objects(cluster)
    agents = FakeAgents(cluster)
    agents.start()
    try:
        cp = k3c(cluster, "uninstall", "--timeout", "30")
    finally:
        agents.stop.set()
        agents.join(10)
    assert cp.returncode == 0, cp.stderr
    assert agents.seen["localcontainers"] == {"daemonset": True, "crd": True}  # the agents could clean up
    assert agents.seen["volumes"] == {"daemonset": True, "crd": True}
    assert agents.seen["images"]["daemonset"] is False  # the Image's finalizer never ran on a node
    assert get(cluster, *DS) is None and get(cluster, "apiservice", "v1alpha1.streams.k3c.io") is None
    assert get(cluster, "crd", "localcontainers.k3c.io") is None and get(cluster, "crd", "images.k3c.io") is None
    assert get(cluster, "clusterrole", "k3c-agent") is None and get(cluster, "clusterrole", "k3c-view") is None
    ns = get(cluster, "namespace", "k3c-system")
    assert ns is None or ns["metadata"].get("deletionTimestamp")
    assert "the nodes' images are still there" in cp.stdout


def test_uninstall_without_agents_stops_and_says_so_unless_forced(cluster: APIServerProcess) -> None:
    add_node(cluster, "n1", K3S)
    assert k3c(cluster, "install", "--timeout", "0").returncode == 0
    _k3c_objects(cluster)
    cp = k3c(cluster, "uninstall", "--timeout", "1")
    assert cp.returncode == 1, cp.stderr
    assert "localcontainers are still being removed after 1s: apps/web" in cp.stderr, cp.stderr
    assert get(cluster, *DS) is not None  # nothing past the stuck step was removed
    cp = k3c(cluster, "uninstall", "--timeout", "1", "--force")
    assert cp.returncode == 0, cp.stderr
    assert get(cluster, "crd", "localcontainers.k3c.io") is None and get(cluster, *DS) is None
