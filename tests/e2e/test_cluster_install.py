"""k3c installed the Kubernetes way on a cluster played by `k3c apiserver`, end to end.

`kubectl apply -k manifests/` and `k3c install` set the cluster up (no hand-written objects: the Nodes are
registered as their kubelets would, the Endpoints written as the endpoints controller would). Two agents,
node-a and node-b, start exactly as the rendered DaemonSet's container says
(:class:`~tests.support.agent_harness.DaemonSetAgent`: its command, args and env, hostPaths mapped to temp
directories, the install's TLS Secret written as the kubelet would, a TokenRequest token). Each has its own
containerd, and beside it a stand-in node runtime: a containerd serving CRI in ``k8s.io``, as k3s's does,
which the DaemonSet's ``node-runtime`` hostPath points to. The CLI talks to the API server only.

What tests/e2e/test_agent.py already shows for agents set up by hand (refusing a direct call without the
front-proxy certificate, an agent missing a permission, re-adoption after a clean stop) is not repeated.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from k3c import api
from k3c.cli.install import DEFAULT_IMAGE as AGENT_IMAGE
from k3c.cri.imagestore import ContainerdImages
from k3c.daemon.containerd import ContainerdConfig, ContainerdProcess, cleanup_network
from k3c.manifests import DIR as MANIFESTS
from k3c.oci.layout import busybox_image
from tests.support.agent_harness import DaemonSetAgent, admin, write_endpoints
from tests.support.daemon_harness import TEST_IMAGE, pick_subnet
from tests.support.harness import REPO, APIServerProcess, RawClient, run_kubectl, wait_until

pytestmark = pytest.mark.containerd

NODES = ("node-a", "node-b")
STREAMS = f"/apis/{api.STREAMS_GROUP_VERSION}"


@dataclass
class Node:
    agent: DaemonSetAgent
    runtime: ContainerdConfig  # the stand-in node runtime (k3s's containerd)

    def runtime_image(self, name: str) -> tuple[dict[str, Any], float] | None:
        """The config of the node runtime's image ``name`` and when its record was last written; None if
        it has no such image."""
        return asyncio.run(_runtime_image(self.runtime.socket_path, name))

    def runtime_images(self) -> set[str]:
        """`ctr -n k8s.io images ls -q` on the node runtime."""
        out = subprocess.run(["ctr", "-a", str(self.runtime.socket_path), "-n", "k8s.io", "images", "ls", "-q"],
                             capture_output=True, text=True, check=True, timeout=30).stdout
        return set(out.split())


async def _runtime_image(socket: Path, name: str) -> tuple[dict[str, Any], float] | None:
    import json

    async with ContainerdImages(socket) as store:
        record = await store.get(name)
        if record is None:
            return None
        manifest = json.loads(await store.read(record.target.digest))
        config = json.loads(await store.read(manifest["config"]["digest"]))
        return config, record.updated_at.ToNanoseconds() / 1e9


@dataclass
class Cluster:
    server: APIServerProcess
    nodes: dict[str, Node]
    daemonset: dict[str, Any]
    install: subprocess.CompletedProcess[str]
    agent_image_before_install: bool  # whether node-a's runtime had the agents' image then

    def k3c(self, *args: str, kubeconfig: Path | None = None, timeout: float = 90,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "K3C_KUBECONFIG": str(kubeconfig or self.server.kubeconfig)}
        cp = subprocess.run([sys.executable, "-m", "k3c.cli.main", *args], capture_output=True, text=True,
                            timeout=timeout, env=env, cwd=REPO, input=input)
        assert "Traceback" not in cp.stderr, cp.stderr
        return cp

    def kubectl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run_kubectl("kubectl", self.server.kubeconfig, *args, check=check)


def _register_node(server: APIServerProcess, name: str) -> None:
    """A Node as its kubelet registers it, running stock containerd (`k3c install --runtime auto` reads it)."""
    import json

    run_kubectl("kubectl", server.kubeconfig, "create", "-f", "-",
                input=json.dumps({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}}))
    status = {"status": {"nodeInfo": {"containerRuntimeVersion": "containerd://1.7.24"}}}
    run_kubectl("kubectl", server.kubeconfig, "patch", "node", name, "--subresource=status", "--type=merge",
                "-p", json.dumps(status))


def _rendered_daemonset() -> dict[str, Any]:
    out = subprocess.run(["kubectl", "kustomize", str(MANIFESTS)], capture_output=True, text=True, check=True,
                         timeout=60).stdout
    (ds,) = [d for d in yaml.safe_load_all(out) if d and d["kind"] == "DaemonSet"]
    return ds


def _available(server: APIServerProcess) -> bool:
    obj = RawClient(server).get(f"/apis/apiregistration.k8s.io/v1/apiservices/{api.STREAMS_API_SERVICE}").json()
    return any(c["type"] == "Available" and c["status"] == "True"
               for c in (obj.get("status") or {}).get("conditions") or [])


def _loopback_address() -> str:
    """A pod IP of its own for an agent (hostNetwork on one host: the DaemonSet's ports would clash)."""
    import random

    return f"127.{random.randint(1, 254)}.{random.randint(0, 255)}.{random.randint(1, 254)}"


def _stand_in_runtime(base: Path) -> ContainerdProcess:
    """The node's runtime as k3s runs it: a containerd of its own, kept as the process object that started it
    (only that object may stop it: it stops the PID it started)."""
    bridge = f"k3cr{uuid.uuid4().hex[:6]}"
    cfg = ContainerdConfig(root_dir=base / "rt-root", state_dir=base / "rt", bridge=bridge, network_name=bridge,
                           subnet=pick_subnet())
    process = ContainerdProcess(cfg)
    asyncio.run(process.start())
    return process


def _install(server: APIServerProcess, runtime: Path) -> subprocess.CompletedProcess[str]:
    """`k3c install` run on node-a: its node runtime is the stand-in at ``runtime``."""
    return subprocess.run([sys.executable, "-m", "k3c.cli.main", "--kubeconfig", str(server.kubeconfig), "install",
                           "--timeout", "0", "--node-runtime-address", str(runtime)],
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    if not shutil.which("kubectl"):
        pytest.skip("no kubectl on this machine")
    base = Path(tempfile.mkdtemp(prefix="k3ci-", dir="/tmp"))  # short: containerd's socket paths
    server = APIServerProcess(base / "cluster")
    server.start()
    runtimes: list[ContainerdProcess] = []
    nodes: dict[str, Node] = {}
    problems: list[str] = []
    try:
        for name in NODES:
            _register_node(server, name)
        run_kubectl("kubectl", server.kubeconfig, "apply", "-k", str(MANIFESTS))
        for name in NODES:
            runtimes.append(_stand_in_runtime(base / name))
        node_a_runtime = runtimes[0].config.socket_path  # the runtime of the node install runs on
        before = asyncio.run(_runtime_image(node_a_runtime, AGENT_IMAGE)) is not None
        install = _install(server, node_a_runtime)
        assert install.returncode == 0, install.stderr
        daemonset = _rendered_daemonset()
        for name, process in zip(NODES, runtimes, strict=True):
            runtime = process.config
            agent = DaemonSetAgent(base / name / "agent", server, name, daemonset,
                                   {"/run/containerd": runtime.socket_path.parent}, _loopback_address())
            nodes[name] = Node(agent, runtime)
            agent.start()
            agent.import_image(TEST_IMAGE, busybox_image())  # both nodes load the same image
        write_endpoints(server, [n.agent for n in nodes.values()])  # node-a first: the API server calls it
        wait_until(lambda: _available(server), 30, "the streams' APIService to be Available")
        yield Cluster(server, nodes, daemonset, install, before)
    finally:
        problems = [f"{name}: {p}" for name, n in nodes.items() for p in n.agent.close()]
        for process in runtimes:
            pid = process.pid
            asyncio.run(process.stop())
            cleanup_network(process.config)
            if pid is not None and Path(f"/proc/{pid}").exists():
                problems.append(f"the stand-in runtime's containerd {pid} is still running")
        server.stop()
        shutil.rmtree(base, ignore_errors=True)
    assert not problems, problems


def test_the_agents_run_what_was_installed(cluster: Cluster) -> None:
    """The DaemonSet on the cluster is the rendered one (install sets only the image), and each agent runs
    its container's very args: with only the one-host flags added, paths mapped."""
    assert "k3c installed for containerd nodes" in cluster.install.stdout, cluster.install.stdout
    live = cluster.kubectl("get", "daemonset", api.AGENT_NAME, "-n", api.AGENT_NAMESPACE, "-o", "yaml").stdout
    (live_c,), (rendered_c,) = yaml.safe_load(live)["spec"]["template"]["spec"]["containers"], \
        cluster.daemonset["spec"]["template"]["spec"]["containers"]
    assert (live_c["command"], live_c["args"]) == (rendered_c["command"], rendered_c["args"])
    assert [(e["name"], e["valueFrom"]["fieldRef"]["fieldPath"]) for e in live_c["env"]] == \
        [(e["name"], e["valueFrom"]["fieldRef"]["fieldPath"]) for e in rendered_c["env"]] == [("NODE_NAME", "spec.nodeName"), ("POD_IP", "status.podIP")]
    a = cluster.nodes["node-a"]
    argv = a.agent.argv()
    assert argv[1:len(rendered_c["args"]) + 2] == [
        "agent", "--node-name=node-a", f"--root-dir={a.agent.root_dir}", f"--state-dir={a.agent.state_dir}",
        f"--node-runtime-address={a.runtime.socket_path}", f"--stream-tls-cert={a.agent.tls.cert}",
        f"--stream-tls-key={a.agent.tls.key}", f"--webhook-listen={a.agent.pod_ip}:6445"]


def test_install_imports_the_agents_image_into_the_node_runtime_once(cluster: Cluster) -> None:
    """node-a's runtime lacked the DaemonSet's image; install assembled and imported it (the agents' very
    image: `k3c agent`), said that node-b's runtime is not this machine's, and a second install finds it
    there and leaves it alone. A runtime not on this machine is said so, in one line, not failed."""
    a, b = cluster.nodes["node-a"], cluster.nodes["node-b"]
    assert not cluster.agent_image_before_install
    assert f"agents' image {AGENT_IMAGE} imported into the node runtime at {a.runtime.socket_path}" in \
        cluster.install.stdout, cluster.install.stdout
    assert "is in this machine's runtime only: on each of the other 1 nodes" in cluster.install.stderr, \
        cluster.install.stderr
    imported = a.runtime_image(AGENT_IMAGE)
    assert imported is not None
    config, written = imported
    assert config["config"]["Cmd"] == ["k3c", "agent"] and len(config["rootfs"]["diff_ids"]) == 3, config
    assert b.runtime_image(AGENT_IMAGE) is None

    again = _install(cluster.server, a.runtime.socket_path)
    assert again.returncode == 0, again.stderr
    assert f"agents' image {AGENT_IMAGE} already in the node runtime" in again.stdout, again.stdout
    assert "imported" not in again.stdout, again.stdout
    assert a.runtime_image(AGENT_IMAGE) == (config, written)  # the record was not written again

    elsewhere = _install(cluster.server, cluster.server.data_dir / "no-runtime.sock")
    assert elsewhere.returncode == 0, elsewhere.stderr
    (line,) = [ln for ln in elsewhere.stderr.splitlines() if "no-runtime.sock" in ln]
    assert f"no node runtime at {cluster.server.data_dir / 'no-runtime.sock'} on this machine" in line, line
    assert "scripts/build-agent-image" in line, line


def test_run_on_a_node_then_logs_and_exec_from_the_cli_and_kubectl(cluster: Cluster) -> None:
    cp = cluster.k3c("run", "-d", "--name", "web", "--node", "node-b", "--stop-timeout", "0", TEST_IMAGE,
                     "sh", "-c", "echo hello from node-b; sleep 300")
    assert cp.returncode == 0, cp.stderr
    obj = cluster.nodes["node-b"].agent.wait_phase("web", "Running")
    assert (obj["spec"]["nodeName"], obj["status"]["node"]) == ("node-b", "node-b")  # placed, not claimed
    wait_until(lambda: "hello from node-b" in cluster.k3c("logs", "web").stdout, 20, "the log, through node-a")
    cp = cluster.k3c("exec", "web", "sh", "-c", "echo exec-ok")
    assert (cp.returncode, cp.stdout) == (0, "exec-ok\n"), cp.stderr
    path = f"{STREAMS}/namespaces/default/localcontainers/web/log"
    assert "hello from node-b" in cluster.kubectl("get", "--raw", path).stdout


def test_attach_from_the_cli_to_a_container_on_another_node(cluster: Cluster) -> None:
    """`k3c attach` to node-b's container, through node-a's agent (the API server calls node-a): its output
    comes back live, the CLI's signal goes to it, and its exit code is the CLI's."""
    cp = cluster.k3c("run", "-d", "--name", "ticker", "--node", "node-b", TEST_IMAGE,
                     "sh", "-c", 'trap "echo got INT; exit 9" INT; while true; do echo tick; sleep 0.2; done')
    assert cp.returncode == 0, cp.stderr
    cluster.nodes["node-b"].agent.wait_phase("ticker", "Running")
    env = {**os.environ, "K3C_KUBECONFIG": str(cluster.server.kubeconfig)}
    proc = subprocess.Popen([sys.executable, "-m", "k3c.cli.main", "attach", "ticker"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, cwd=REPO)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        assert proc.stdout.readline() == b"tick\n"  # attached: the CLI relays output, its handlers are set
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
        out, err = proc.stdout.read(), proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 9, err
    assert out.endswith(b"got INT\n"), out
    assert cluster.k3c("rm", "ticker").returncode == 0


def test_run_interactive_on_another_node_takes_the_input(cluster: Cluster) -> None:
    """`k3c run -i` attaches to node-b's container from its start (through node-a): input in, output and
    exit code out."""
    cp = cluster.k3c("run", "--rm", "-i", "--node", "node-b", TEST_IMAGE, "sh", "-c",
                     "read x; echo got $x; echo bye >&2; exit 5", input="hi\n")
    assert (cp.returncode, cp.stdout, cp.stderr) == (5, "got hi\n", "bye\n")


def test_a_build_on_node_a_is_in_its_runtime_when_the_command_returns(cluster: Cluster, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {TEST_IMAGE}\nRUN echo built > /msg\n")
    cp = cluster.k3c("build", "-q", "-t", "k3c.test/on-node-a:1", str(ctx), timeout=180)
    assert cp.returncode == 0, cp.stderr
    assert "k3c.test/on-node-a:1" in cluster.nodes["node-a"].runtime_images()  # no waiting
    assert "k3c.test/on-node-a:1" not in cluster.nodes["node-b"].runtime_images()


def test_a_k3c_view_user_lists_containers_but_may_not_exec(cluster: Cluster, tmp_path: Path) -> None:
    c = admin(cluster.server)
    try:
        c.create("/api/v1/namespaces/default/serviceaccounts", {"apiVersion": "v1", "kind": "ServiceAccount",
                                                                "metadata": {"name": "viewer"}})
        c.create("/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings", {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "viewer"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "k3c-view"},
            "subjects": [{"kind": "ServiceAccount", "name": "viewer", "namespace": "default"}]})
        token = c.create("/api/v1/namespaces/default/serviceaccounts/viewer/token", {
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}})["status"]["token"]
    finally:
        c.close()
    from tests.e2e.test_agent import kubeclient_config

    kc = tmp_path / "viewer.yaml"
    kc.write_text(kubeclient_config(cluster.server, token))
    cp = cluster.k3c("ps", "-a", "--format", "{{.Names}}", kubeconfig=kc)
    assert cp.returncode == 0 and "web" in cp.stdout.split(), cp.stderr
    cp = cluster.k3c("exec", "web", "true", kubeconfig=kc)
    assert cp.returncode != 0 and "forbidden" in cp.stderr.lower(), cp.stderr
    r = RawClient(cluster.server, token=token).get(f"{STREAMS}/namespaces/default/localcontainers/web/exec?command=true")
    assert r.status_code == 403, r.text
    cp = cluster.k3c("top", "web", kubeconfig=kc)
    assert cp.returncode == 0 and "PID" in cp.stdout, f"a viewer sees a container's processes: {cp.stderr}"
    for args in (("pause", "web"), ("kill", "-s", "USR1", "web")):
        cp = cluster.k3c(*args, kubeconfig=kc)
        assert cp.returncode != 0 and "forbidden" in cp.stderr.lower(), (args, cp.stderr)


def test_both_nodes_hold_one_image_and_each_shows_its_own(cluster: Cluster) -> None:
    """The same reference loaded on both nodes (the fixture): one Image object per node, each Ready, each in
    its node runtime."""
    def ready_nodes() -> set[str]:
        c = admin(cluster.server)
        try:
            items = c.get(api.IMAGES.path())["items"]
        finally:
            c.close()
        return {o["status"]["node"] for o in items if o["spec"]["reference"] == TEST_IMAGE
                and (o.get("status") or {}).get("phase") == "Ready"}

    wait_until(lambda: ready_nodes() == set(NODES), 30, "an Image object per node, Ready")
    cp = cluster.k3c("images", "--format", "{{.Repository}}:{{.Tag}} {{.Node}}")
    assert cp.returncode == 0, cp.stderr
    assert {f"{TEST_IMAGE} {n}" for n in NODES} <= set(cp.stdout.splitlines()), cp.stdout
    assert all(TEST_IMAGE in n.runtime_images() for n in cluster.nodes.values())


def test_each_nodes_admission_webhooks_are_reached_at_its_pod_ip(cluster: Cluster) -> None:
    """Each agent registers ``k3c.io.<node>`` at its pod's address, which the API server calls: deleting
    node-b's Image object of the image its container ``web`` runs is refused by node-b's webhook."""
    for name, node in cluster.nodes.items():
        config = yaml.safe_load(cluster.kubectl("get", "validatingwebhookconfiguration", f"k3c.io.{name}",
                                                "-o", "yaml").stdout)
        assert {w["clientConfig"]["url"].split("/")[2] for w in config["webhooks"]} == {f"{node.agent.pod_ip}:6445"}
    b = cluster.nodes["node-b"].agent
    b.wait_phase("web", "Running")
    c = admin(cluster.server)
    try:
        (obj,) = [o for o in c.get(api.IMAGES.path())["items"]
                  if o["spec"]["reference"] == TEST_IMAGE and o["status"].get("node") == "node-b"]
    finally:
        c.close()
    cp = cluster.kubectl("delete", "images.k3c.io", obj["metadata"]["name"], "--wait=false", check=False)
    assert cp.returncode != 0 and "images.k3c.io" in cp.stderr and "is using" in cp.stderr, cp.stderr


def test_kill9_of_an_agent_then_restart_readopts_its_containers(cluster: Cluster) -> None:
    b = cluster.nodes["node-b"].agent
    before = b.wait_phase("web", "Running")
    b.kill9()
    try:  # node-a cannot reach node-b's agent now: the client is told so in one line, node-a's log names the peer
        for args in (("logs", "web"), ("exec", "web", "true")):
            cp = cluster.k3c(*args)
            lines = cp.stderr.splitlines()
            assert cp.returncode != 0 and cp.stdout == "" and len(lines) == 1, cp
            assert 'the k3c agent of node "node-b"' in lines[0], lines
            assert "cannot be reached: Connection refused" in lines[0], lines
        cp = cluster.kubectl("get", "--raw", f"{STREAMS}/namespaces/default/localcontainers/web/log", check=False)
        assert cp.returncode != 0 and 'the k3c agent of node "node-b"' in cp.stderr, cp.stderr
        log = cluster.nodes["node-a"].agent.log_path.read_text(errors="replace")
        assert re.search(r"WARNING k3c\.aggregated\.peers: peer call to the k3c agent of node node-b at \S+ failed: "
                         r"cannot be reached: Connection refused", log), log[-3000:]
    finally:
        b.start()
    after = b.wait_phase("web", "Running")
    assert after["status"]["containerID"] == before["status"]["containerID"]
    wait_until(lambda: cluster.k3c("exec", "web", "echo", "again").stdout == "again\n", 30,
               "exec through the restarted agent")
