"""`k3c agent` on a cluster played by `k3c apiserver`: streams through the aggregator, authn, authz, peers.

The cluster is set up as an install leaves it (tests/support/agent_harness.py): the agents' ServiceAccount
and least-privilege role, the APIService ``v1alpha1.streams.k3c.io`` to the Service ``k3c-system/k3c-agent``,
whose Endpoints the test writes. Each agent runs with in-cluster config from a ServiceAccount directory and
its own containerd; the CLI talks to the API server only.
"""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from k3c import api, kubeclient, servingcerts
from k3c.oci.layout import busybox_image
from tests.support.agent_harness import AgentProcess, admin, prepare_cluster, write_endpoints
from tests.support.daemon_harness import TEST_IMAGE
from tests.support.harness import REPO, APIServerProcess, RawClient, wait_until

pytestmark = pytest.mark.containerd

STREAMS = f"/apis/{api.STREAMS_GROUP_VERSION}"


@dataclass
class Cluster:
    server: APIServerProcess
    tls: servingcerts.ServingMaterial
    agents: list[AgentProcess]
    base: Path

    def k3c(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "K3C_KUBECONFIG": str(self.server.kubeconfig)}
        cp = subprocess.run([sys.executable, "-m", "k3c.cli.main", *args], capture_output=True, text=True,
                            timeout=timeout, env=env, cwd=REPO)
        assert "Traceback" not in cp.stderr, cp.stderr
        return cp


def _available(server: APIServerProcess) -> str:
    obj = RawClient(server).get(f"/apis/apiregistration.k8s.io/v1/apiservices/{api.STREAMS_API_SERVICE}").json()
    return next((c["status"] for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == "Available"),
                "")


def _start_agent(base: Path, server: APIServerProcess, tls: servingcerts.ServingMaterial, node: str) -> AgentProcess:
    agent = AgentProcess(base / node, server, tls, node)
    agent.start()
    agent.import_image(TEST_IMAGE, busybox_image())
    return agent


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    base = Path(tempfile.mkdtemp(prefix="k3ca-", dir="/tmp"))  # short: containerd's socket paths
    server = APIServerProcess(base / "cluster")
    server.start()
    agents: list[AgentProcess] = []
    try:
        tls = prepare_cluster(server, base / "tls")
        agents = [_start_agent(base, server, tls, "node-a"), _start_agent(base, server, tls, "node-b")]
        write_endpoints(server, agents)  # node-a first: the API server calls it
        try:
            wait_until(lambda: _available(server) == "True", 30, "the streams' APIService to be Available")
        except AssertionError:
            path = f"/apis/apiregistration.k8s.io/v1/apiservices/{api.STREAMS_API_SERVICE}"
            raise AssertionError(f"{RawClient(server).get(path).text}\n{agents[0].log_tail()}") from None
        yield Cluster(server, tls, agents, base)
    finally:
        problems = [f"{a.node_name}: {p}" for a in agents for p in a.close()]
        server.stop()
        shutil.rmtree(base, ignore_errors=True)
    assert not problems, problems


def _run(cluster: Cluster, name: str, node: str, script: str) -> dict:
    a = cluster.agents[0]
    a.create_container(name, command=["sh", "-c", script], nodeName=node, stopTimeout=0)
    return a.wait_phase(name, "Running")


def test_discovery_lists_the_streams(cluster: Cluster) -> None:
    """(The availability check, as kube's, gives the agent 5 s; on a loaded machine one check can miss and
    answer 503 until the next: the test waits that out, and still needs the list itself.)"""
    c = admin(cluster.server)

    def discovery() -> dict | None:
        try:
            return c.get(STREAMS)
        except kubeclient.APIError as err:
            if err.code != 503:
                raise
            return None

    try:
        doc = wait_until(discovery, 30, "the streams' discovery document")
    finally:
        c.close()
    names = {r["name"] for r in doc["resources"]}
    assert {"localcontainers/log", "localcontainers/exec", "localcontainers/attach", "images/save",
            "imagebuilds/log"} <= names


def test_logs_and_exec_from_the_cli_through_the_aggregator(cluster: Cluster) -> None:
    obj = _run(cluster, "c1", "node-a", "echo hello from node-a; sleep 300")
    assert obj["status"]["node"] == "node-a"
    wait_until(lambda: "hello from node-a" in cluster.k3c("logs", "c1").stdout, 20, "the log through the streams")
    cp = cluster.k3c("exec", "c1", "sh", "-c", "echo exec-ok; hostname")
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout.splitlines()[0] == "exec-ok"
    # (`k3c apiserver` mounts no stream providers: only the agent could have answered)


def test_a_stream_for_another_nodes_container_is_passed_on(cluster: Cluster) -> None:
    _run(cluster, "c2", "node-b", "echo hello from node-b; sleep 300")
    wait_until(lambda: "hello from node-b" in cluster.k3c("logs", "c2").stdout, 20, "node-b's log via node-a")
    cp = cluster.k3c("exec", "c2", "cat", "/etc/hostname")
    assert cp.returncode == 0, cp.stderr


def test_node_side_commands_go_through_the_aggregator(cluster: Cluster) -> None:
    """top, stats, pause and kill -s are node-side subresources too: on a cluster the CLI finds them at the agents."""
    _run(cluster, "ops", "node-b", "sleep 300")
    top = cluster.k3c("top", "ops")
    assert top.returncode == 0 and top.stdout.split()[:2] == ["UID", "PID"] and "sleep 300" in top.stdout, top
    stats = cluster.k3c("stats", "--no-stream", "--format", "{{.Name}} {{.PIDs}}", "ops")
    assert (stats.returncode, stats.stdout) == (0, "ops 1\n"), stats
    assert cluster.k3c("pause", "ops").returncode == 0
    assert "(Paused)" in wait_until(lambda: (out := cluster.k3c("ps", "-f", "name=ops").stdout) and
                                    "(Paused)" in out and out, 20, "ps to show the pause")
    assert cluster.k3c("unpause", "ops").returncode == 0
    _run(cluster, "hupper", "node-b", 'trap "echo got-hup" HUP; while true; do sleep 0.2; done')
    killed = cluster.k3c("kill", "-s", "HUP", "hupper")
    assert (killed.returncode, killed.stdout) == (0, "hupper\n"), killed.stderr
    wait_until(lambda: "got-hup" in cluster.k3c("logs", "hupper").stdout, 20, "the trap to answer the HUP")


def test_run_attaches_wherever_the_container_lands(cluster: Cluster) -> None:
    """`k3c run --rm` of an unplaced container: the attach waits until an agent claims it and goes there;
    the exit code comes back through the aggregator."""
    for i in range(3):
        cp = cluster.k3c("run", "--rm", TEST_IMAGE, "sh", "-c", f"echo run-{i}; exit {i}")
        assert (cp.returncode, cp.stdout) == (i, f"run-{i}\n"), cp.stderr


def test_a_build_runs_on_the_node_that_took_its_context(cluster: Cluster, tmp_path: Path) -> None:
    """The upload lands on the agent the API server called (node-a): the build is placed there, and its log
    streams back through the aggregator."""
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {TEST_IMAGE}\nRUN echo built-on-the-cluster > /msg\n")
    cp = cluster.k3c("build", "-t", "k3c.test/cluster-built:1", str(ctx), timeout=180)
    assert cp.returncode == 0, cp.stderr
    assert "Successfully tagged k3c.test/cluster-built:1" in cp.stderr  # the log, followed through the streams
    c = admin(cluster.server)
    try:
        builds = [b for b in c.get(api.IMAGE_BUILDS.path("default"))["items"]
                  if "k3c.test/cluster-built:1" in (b["spec"].get("tags") or [])]
    finally:
        c.close()
    assert [(b["spec"].get("nodeName"), b["status"]["node"], b["status"]["phase"]) for b in builds] == \
        [("node-a", "node-a", "Succeeded")]


def test_an_agent_missing_a_permission_says_which(cluster: Cluster) -> None:
    """Without the manifests' rule to read its peers' Endpoints, node-a cannot pass node-b's stream on, and
    says why (the agents run with exactly the manifests' RBAC)."""
    from tests.support.agent_harness import apply_rbac, rbac_objects

    (endpoints_role,) = [o for o in rbac_objects() if o["kind"] == "Role"
                         and o["metadata"].get("namespace") == api.AGENT_NAMESPACE]
    assert {r["resources"][0] for r in endpoints_role["rules"]} == {"endpoints"}
    c = admin(cluster.server)
    try:
        apply_rbac(c, {**endpoints_role, "rules": []})
        _run(cluster, "c4", "node-b", "echo from-b; sleep 300")
        r = RawClient(cluster.server).get(f"{STREAMS}/namespaces/default/localcontainers/c4/log")
        assert r.status_code == 403, r.text
        assert 'User "system:serviceaccount:k3c-system:k3c-agent" cannot get resource "endpoints"' in \
            r.json()["message"]
    finally:
        apply_rbac(c, endpoints_role)
        c.close()


def _direct(cluster: Cluster, cert: tuple[Path, Path] | None) -> tuple[int, str]:
    ctx = ssl.create_default_context(cafile=str(cluster.tls.ca_cert))
    ctx.check_hostname = False
    if cert is not None:
        ctx.load_cert_chain(*cert)
    url = f"https://127.0.0.1:{cluster.agents[0].streams_port}{STREAMS}/namespaces/default/localcontainers/c1/log"
    req = urllib.request.Request(url, headers={"X-Remote-User": "admin", "X-Remote-Group": "system:masters"})
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def test_a_direct_call_without_the_front_proxy_certificate_is_refused(cluster: Cluster, tmp_path: Path) -> None:
    code, body = _direct(cluster, None)
    assert code == 401, body
    stranger = servingcerts.ensure(tmp_path / "stranger", ["stranger"], "stranger", client_auth=True)
    with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
        _direct(cluster, (stranger.cert, stranger.key))  # a certificate of no CA it trusts: no handshake


def test_the_agent_authorizes_the_parents_subresource(cluster: Cluster, tmp_path: Path) -> None:
    """A user allowed the aggregated ``streams.k3c.io`` exec but not ``k3c.io``'s is refused by the agent."""
    c = admin(cluster.server)
    try:
        c.create("/api/v1/namespaces/default/serviceaccounts", {"apiVersion": "v1", "kind": "ServiceAccount",
                                                                "metadata": {"name": "half"}})
        c.create("/apis/rbac.authorization.k8s.io/v1/namespaces/default/roles", {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "half"},
            "rules": [{"apiGroups": [api.STREAMS_GROUP], "resources": ["localcontainers/log", "localcontainers/exec"],
                       "verbs": ["get", "create"]},
                      {"apiGroups": [api.GROUP], "resources": ["localcontainers", "localcontainers/log"],
                       "verbs": ["get", "list"]}]})
        c.create("/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings", {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "half"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "half"},
            "subjects": [{"kind": "ServiceAccount", "name": "half", "namespace": "default"}]})
        token = c.create("/api/v1/namespaces/default/serviceaccounts/half/token", {
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}})["status"]["token"]
    finally:
        c.close()
    _run(cluster, "c3", "node-a", "echo visible; sleep 300")
    kc = tmp_path / "half.yaml"
    kc.write_text(kubeclient_config(cluster.server, token))
    env_kc = ["--kubeconfig", str(kc)]
    wait_until(lambda: "visible" in cluster.k3c(*env_kc, "logs", "c3").stdout, 20, "the log for a log reader")
    cp = cluster.k3c(*env_kc, "exec", "c3", "true")  # the agent's own Status, passed back by the aggregator
    assert cp.returncode != 0 and cp.stderr.count("\n") == 1, cp.stderr
    assert ('localcontainers.k3c.io "c3" is forbidden: User "system:serviceaccount:default:half" cannot create '
            'resource "localcontainers/exec" in API group "k3c.io"') in cp.stderr, cp.stderr
    # the same refusal as a plain request
    r = RawClient(cluster.server, token=token).get(f"{STREAMS}/namespaces/default/localcontainers/c3/exec?command=true")
    assert r.status_code == 403, r.text
    assert r.json()["message"] == (
        'localcontainers.k3c.io "c3" is forbidden: User "system:serviceaccount:default:half" cannot get resource '
        '"localcontainers/exec" in API group "k3c.io" in the namespace "default"')


def kubeclient_config(server: APIServerProcess, token: str) -> str:
    import yaml

    return yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "k", "cluster": {"server": server.url,
                                               "certificate-authority": str(server.data_dir / "tls" / "ca.crt")}}],
        "users": [{"name": "u", "user": {"token": token}}],
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u", "namespace": "default"}}],
    })


def test_the_cli_finds_the_streams_in_discovery(cluster: Cluster) -> None:
    client = kubeclient.Client(kubeclient.load(str(cluster.server.kubeconfig)))
    try:
        assert client.stream_path(api.LOCAL_CONTAINERS, "default", "c1", "log") == \
            f"{STREAMS}/namespaces/default/localcontainers/c1/log"
    finally:
        client.close()


def _running_in_containerd(agent: AgentProcess, uid: str) -> bool:
    from k3c.cri.runtime import pb

    return [c.state for c in agent.runtime_containers(uid)] == [pb.CONTAINER_RUNNING]


def test_containers_outlive_the_agent_and_are_readopted(cluster: Cluster) -> None:
    """A clean stop and a kill -9 of the agent leave containerd and the containers running; the next agent
    adopts that containerd (same PID) and its operator the containers (same container, streams work)."""
    from tests.support.daemon_harness import _alive

    a = cluster.agents[0]
    obj = _run(cluster, "survivor", "node-a", "echo before; sleep 300")
    uid, cid = obj["metadata"]["uid"], obj["status"]["containerID"]
    containerd = a.status()["containerdPid"]
    for stop in (a.stop, a.kill9):
        stop()
        assert _alive(containerd) and _running_in_containerd(a, uid)
        a.start()
        assert a.status()["containerdPid"] == containerd  # adopted, not started again
        now = a.wait_phase("survivor", "Running")
        assert now["status"]["containerID"] == cid and _running_in_containerd(a, uid)
        wait_until(lambda: cluster.k3c("exec", "survivor", "echo", "after").stdout == "after\n", 30,
                   "exec through the restarted agent")


def test_the_streams_openapi_comes_from_the_agents(cluster: Cluster) -> None:
    c = admin(cluster.server)
    try:
        index = c.get("/openapi/v3")["paths"]
        doc = c.get(f"/openapi/v3/apis/{api.STREAMS_GROUP_VERSION}")
    finally:
        c.close()
    assert f"apis/{api.STREAMS_GROUP_VERSION}" in index
    assert f"{STREAMS}/namespaces/{{namespace}}/localcontainers/{{name}}/exec" in doc["paths"]


def test_kubectl_reads_a_log_through_the_aggregation_path(cluster: Cluster) -> None:
    from tests.support.harness import run_kubectl

    if not shutil.which("kubectl"):
        pytest.skip("no kubectl on this machine")
    _run(cluster, "c5", "node-b", "echo via-kubectl; sleep 300")
    path = f"{STREAMS}/namespaces/default/localcontainers/c5/log"
    wait_until(lambda: "via-kubectl" in run_kubectl("kubectl", cluster.server.kubeconfig, "get", "--raw", path,
                                                    check=False).stdout, 20, "kubectl get --raw of the log")


def test_an_agent_without_the_streams_certificate_runs_containers_and_serves_once_it_comes(cluster: Cluster) -> None:
    """A bare `kubectl apply -k` has no TLS Secret yet: the node works, and its streams start when it appears."""
    later = cluster.base / "tls-later"
    material = servingcerts.ServingMaterial(later / "ca.crt", later / "tls.crt", later / "tls.key")
    agent = AgentProcess(cluster.base / "node-c", cluster.server, material, "node-c")
    try:
        agent.start()
        agent.import_image(TEST_IMAGE, busybox_image())
        assert agent.create_container("c6", command=["sleep", "300"], nodeName="node-c", stopTimeout=0)
        agent.wait_phase("c6", "Running")
        url = f"https://127.0.0.1:{agent.streams_port}/healthz"
        ctx = ssl.create_default_context(cafile=str(cluster.tls.ca_cert))
        ctx.check_hostname = False
        with pytest.raises(urllib.error.URLError):
            urllib.request.urlopen(url, context=ctx, timeout=5)
        shutil.copytree(cluster.base / "tls", later)
        wait_until(lambda: _healthy(url, ctx), 30, "the streams once the certificate exists")
    finally:
        problems = agent.close()
    assert not problems, problems


def _healthy(url: str, ctx: ssl.SSLContext) -> bool:
    try:
        with urllib.request.urlopen(url, context=ctx, timeout=5) as r:
            return r.status == 200
    except OSError:
        return False
