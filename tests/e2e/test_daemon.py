"""`k3c daemon` as a whole: start-up, kubectl, restarts and crashes with containers re-adopted, clean-up of
what changed while it was down. Every process is started by the test (or by the daemon it started) and
stopped by PID.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from k3c import kubeclient
from k3c.api import LOCAL_CONTAINERS
from k3c.pauseimage import PAUSE_IMAGE
from tests.support import leftovers
from tests.support.daemon_harness import TEST_IMAGE, DaemonProcess, wait_until
from tests.support.harness import APIServerProcess, kubectl_versions, run_kubectl


def alive(pid: int) -> bool:
    """Running (a zombie waiting for init to reap it does not count)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def phase(obj: dict | None) -> str:
    return ((obj or {}).get("status") or {}).get("phase", "")


def test_ready_state_files_and_permissions(daemon: DaemonProcess) -> None:
    st = daemon.status()
    assert st["ready"] is True and st["pid"] == daemon.pid
    assert st["containerdAddress"] == daemon.containerd_address
    assert stat.S_IMODE(daemon.kubeconfig.stat().st_mode) == 0o600
    assert stat.S_IMODE(Path(daemon.containerd_address).stat().st_mode) == 0o660
    crds = daemon.api.get("/apis/apiextensions.k8s.io/v1/customresourcedefinitions")["items"]
    names = {c["metadata"]["name"] for c in crds}
    assert {"localcontainers.k3c.io", "volumes.k3c.io"} <= names
    assert daemon.cri(lambda c: c.image_status(PAUSE_IMAGE)) is not None


def test_kubectl_apply_get_describe_delete(daemon: DaemonProcess) -> None:
    kubectl = kubectl_versions().get("default")
    if kubectl is None:
        pytest.skip("no kubectl on this machine")
    manifest = f"""
apiVersion: k3c.io/v1alpha1
kind: LocalContainer
metadata:
  name: applied
spec:
  image: {TEST_IMAGE}
  command: [sleep, "300"]
  stopTimeout: 1
"""
    run_kubectl(kubectl, daemon.kubeconfig, "apply", "-f", "-", input=manifest)
    obj = daemon.wait_phase("applied", "Running", "Failed")
    assert phase(obj) == "Running", obj["status"]
    assert "k3c.io/container" in obj["metadata"]["finalizers"]  # added by the operator for kubectl's objects
    table = run_kubectl(kubectl, daemon.kubeconfig, "get", "lc", "-o", "wide").stdout
    header, row = table.splitlines()[:2]
    assert header.split()[:5] == ["NAME", "IMAGE", "STATUS", "PORTS", "AGE"]
    assert row.split()[:3] == ["applied", TEST_IMAGE, "Up"]
    assert obj["status"]["containerID"] in row
    wait_until(lambda: "Started" in run_kubectl(kubectl, daemon.kubeconfig, "describe", "lc", "applied").stdout,
               10, "kubectl describe to show the Started event")
    uid = obj["metadata"]["uid"]
    run_kubectl(kubectl, daemon.kubeconfig, "delete", "lc", "applied", "--wait=true", timeout=60)
    assert daemon.container("applied") is None
    wait_until(lambda: not daemon.runtime_sandboxes(uid) and not daemon.runtime_containers(uid), 10,
               "the runtime side to be gone")


def _wait_for_rest(daemon: DaemonProcess) -> None:
    """Only the pool's spare (if any) holds network state."""
    def idle() -> bool:
        sandboxes = daemon.runtime_sandboxes()
        return len(sandboxes) <= 1 and len(daemon.netns()) == len(sandboxes) == len(daemon.leases())

    wait_until(idle, 20, "only the spare sandbox to remain")


def test_sigterm_keeps_containers_running_and_restart_readopts(daemon: DaemonProcess) -> None:
    script = "while [ ! -f /tmp/stop ]; do sleep 0.1; done; exit 5"
    daemon.create_container("survivor", command=["sh", "-c", script], stopTimeout=0)
    before = daemon.wait_phase("survivor", "Running")["status"]
    # (its sandbox's shim: a spare sandbox the pool was still making at the stop is removed by its close)
    shims = [p.pid for p in leftovers.shims(daemon.node) if before["sandboxID"] in p.info["cmdline"]]
    daemon.stop()
    assert daemon.status() == {}
    assert shims and all(alive(p) for p in shims)  # the container lives on
    daemon.start()
    obj = daemon.wait_phase("survivor", "Running")
    assert obj["status"]["containerID"] == before["containerID"]
    assert obj["status"]["startedAt"] == before["startedAt"]
    # The re-adopted container's exit is still seen at once.
    assert daemon.exec(before["containerID"], ["touch", "/tmp/stop"])[0] == 0
    st = daemon.wait_phase("survivor", "Exited", timeout=10)["status"]
    assert (st["exitCode"], st["containerID"]) == (5, before["containerID"])
    daemon.delete_container("survivor")
    _wait_for_rest(daemon)


def test_kill9_then_restart_readopts_and_leaks_nothing(daemon: DaemonProcess) -> None:
    daemon.create_container("crashproof", command=["sleep", "300"], stopTimeout=0,
                            ports=[{"containerPort": 80}])
    before = daemon.wait_phase("crashproof", "Running")["status"]
    children = [daemon.status()["containerdPid"], daemon.status()["operatorPid"]]
    daemon.kill9()
    assert not any(alive(p) for p in children)  # containerd and operator went with it
    daemon.start()
    obj = daemon.wait_phase("crashproof", "Running")
    assert obj["status"]["containerID"] == before["containerID"]
    assert obj["status"]["ports"] == before["ports"]
    assert len(daemon.runtime_containers()) == 1
    daemon.delete_container("crashproof")
    _wait_for_rest(daemon)


def _k3c(d: DaemonProcess, *args: str) -> subprocess.Popen[bytes]:
    """The k3c CLI against ``d``, in the background."""
    env = {**os.environ, "K3C_KUBECONFIG": str(d.kubeconfig)}
    return subprocess.Popen([sys.executable, "-m", "k3c.cli.main", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _converged(d: DaemonProcess, timeout: float = 60.0) -> None:
    """Every LocalContainer Running (they all sleep) and none left half-deleted."""
    def done() -> bool:
        items = d.api.get(LOCAL_CONTAINERS.path()).get("items", [])
        return all(phase(o) == "Running" and not o["metadata"].get("deletionTimestamp") for o in items)

    wait_until(done, timeout, "every LocalContainer to be Running or gone")


@pytest.mark.containerd
def test_kill9_during_runs_and_removals_leaves_no_orphans(short_tmp: Path) -> None:
    """Issue 10 item 13: kill -9 of the daemon while 10 `run -d` and an `rm -f` are under way, three rounds;
    after each restart nothing may be left that containerd does not know: no shim, netns, IP lease,
    mount, runc container or task bundle (tests/support/leftovers.py)."""
    from k3c.oci.layout import busybox_image

    rnd = random.Random(1013)
    d = DaemonProcess(short_tmp / "k9")
    try:
        d.start()
        d.import_image(TEST_IMAGE, busybox_image())
        for r in range(3):
            names = [f"r{r}-{i}" for i in range(10)]
            clis = [_k3c(d, "run", "-d", "--name", n, TEST_IMAGE, "sleep", "300") for n in names]
            time.sleep(rnd.uniform(0.5, 3.0))
            clis.append(_k3c(d, "rm", "-f", *names[::2]))
            time.sleep(rnd.uniform(0.0, 1.0))
            d.kill9()
            for cli in clis:
                try:
                    cli.wait(20)
                except subprocess.TimeoutExpired:
                    cli.kill()
                    cli.wait()
            d.start()
            _converged(d)
            d.wait_no_leftovers()
    finally:
        problems = d.close()
    assert not problems, f"after the last round's clean stop: {problems}"


@pytest.mark.containerd
def test_stop_right_after_a_mass_removal_leaves_nothing(short_tmp: Path) -> None:
    """A removed container's sandbox goes in the background, a few at a time
    (k3c.reconcilers.sandboxes.LATER_AT_ONCE). A daemon stopped the moment dozens of removals have answered
    must still finish them all: no shim, pause process, netns, IP lease or mount may be left."""
    from k3c.oci.layout import busybox_image

    count = 40
    d = DaemonProcess(short_tmp / "mass")
    try:
        d.start()
        d.import_image(TEST_IMAGE, busybox_image())
        d.wait_image_object(TEST_IMAGE)
        names = [f"m{i}" for i in range(count)]
        for name in names:
            d.create_container(name, command=["sleep", "300"], stopTimeout=0)
        for name in names:
            d.wait_phase(name, "Running", timeout=120)
        assert len(d.shims()) >= count
        for name in names:
            d.delete_container(name, wait=False)
        wait_until(lambda: not d.api.get(LOCAL_CONTAINERS.path()).get("items"), 120, "all removals to answer")
        queued = len(d.runtime_sandboxes())
        started = time.monotonic()
        assert d.stop() == 0
        took = time.monotonic() - started
        found = d.leftovers()
    finally:
        found_at_close = d.close()
    assert not found, f"{queued} sandboxes were still there at the stop ({took:.1f} s): {leftovers.summary(found)}"
    assert not found_at_close


@pytest.mark.containerd
def test_a_full_network_refuses_a_run_at_once_as_docker_does(short_tmp: Path) -> None:
    """A /28 holds 13 sandboxes (the pool's spares among them). The run that finds no address left fails at
    once with docker's words and exit 125, instead of waiting for an address nobody frees; a run right
    after an `rm -f`, while the removed sandboxes still wait their turn, gets one of their addresses."""
    import ipaddress

    from k3c.oci.layout import busybox_image

    d = DaemonProcess(short_tmp / "full")
    d.subnet = str(next(ipaddress.ip_network(d.subnet).subnets(new_prefix=28)))
    env = {**os.environ, "K3C_KUBECONFIG": str(d.kubeconfig)}

    def run(name: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "k3c.cli.main", "run", "-d", "--name", name, TEST_IMAGE,
                               "sleep", "300"], env=env, capture_output=True, text=True, timeout=120)

    try:
        d.start()
        d.import_image(TEST_IMAGE, busybox_image())
        d.wait_image_object(TEST_IMAGE)
        started: list[str] = []
        for name in (f"n{i}" for i in range(16)):
            cp = run(name)
            if cp.returncode != 0:
                break
            started.append(name)
        assert cp.returncode == 125 and len(started) >= 11, (started, cp.stderr)
        assert cp.stderr.strip().endswith("no available IPv4 addresses on this network's address pools: bridge")
        cp = subprocess.run([sys.executable, "-m", "k3c.cli.main", "rm", "-f", *started[:3]], env=env,
                            capture_output=True, text=True, timeout=60)
        assert cp.returncode == 0, cp.stderr
        for name in ("again1", "again2", "again3"):
            cp = run(name)
            assert cp.returncode == 0, (name, cp.stderr)
    finally:
        problems = d.close()
    assert not problems


def test_exit_while_down_is_reported_at_start(daemon: DaemonProcess) -> None:
    daemon.create_container("shortlived", command=["sh", "-c", "sleep 1.5; exit 4"])
    daemon.wait_phase("shortlived", "Running")
    daemon.stop()
    time.sleep(2.0)
    daemon.start()
    st = daemon.wait_phase("shortlived", "Exited", timeout=10)["status"]
    assert st["exitCode"] == 4
    daemon.delete_container("shortlived")
    _wait_for_rest(daemon)


def test_container_of_object_deleted_while_down_is_removed(daemon: DaemonProcess, tmp_path: Path) -> None:
    obj = daemon.create_container("orphan", command=["sleep", "300"], hostname="orphan")
    daemon.wait_phase("orphan", "Running")
    uid = obj["metadata"]["uid"]
    daemon.stop()
    # Delete the object with only the API server running (the operator cannot see it go).
    api_only = APIServerProcess(daemon.root_dir)
    api_only.start()
    try:
        client = kubeclient.Client(kubeclient.load(str(api_only.kubeconfig)))
        path = LOCAL_CONTAINERS.path("default", "orphan")
        client.merge_patch(path, {"metadata": {"finalizers": None}})
        client.delete(path)
        client.close()
    finally:
        api_only.stop()
    daemon.start()
    assert daemon.container("orphan") is None
    assert daemon.runtime_containers(uid) == [] and daemon.runtime_sandboxes(uid) == []
    _wait_for_rest(daemon)


def test_containerd_is_restarted_when_it_dies(daemon: DaemonProcess) -> None:
    daemon.create_container("steady", command=["sh", "-c", "while [ ! -f /tmp/stop ]; do sleep 0.1; done; exit 6"],
                            stopTimeout=0)
    cid = daemon.wait_phase("steady", "Running")["status"]["containerID"]
    old = daemon.status()["containerdPid"]
    os.kill(old, signal.SIGKILL)  # the containerd the daemon started for this test
    new = wait_until(lambda: (p := daemon.status().get("containerdPid")) != old and p, 20, "a new containerd")
    daemon.started_pids.add(new)
    wait_until(lambda: daemon.exec(cid, ["touch", "/tmp/stop"])[0] == 0, 20, "exec after containerd restart")
    st = daemon.wait_phase("steady", "Exited", timeout=15)["status"]
    assert (st["containerID"], st["exitCode"]) == (cid, 6)
    daemon.delete_container("steady")
    _wait_for_rest(daemon)


def test_operator_is_restarted_when_it_dies(daemon: DaemonProcess) -> None:
    daemon.create_container("kept", command=["sleep", "300"], stopTimeout=0)
    cid = daemon.wait_phase("kept", "Running")["status"]["containerID"]
    old = daemon.status()["operatorPid"]
    os.kill(old, signal.SIGKILL)  # the operator the daemon started for this test
    new = wait_until(lambda: (p := daemon.status().get("operatorPid")) != old and p, 20, "a new operator")
    daemon.started_pids.add(new)
    daemon.create_container("after", command=["true"])
    assert daemon.wait_phase("after", "Exited", timeout=20)["status"]["exitCode"] == 0
    assert daemon.container("kept")["status"]["containerID"] == cid  # adopted, not restarted
    daemon.delete_container("kept")
    daemon.delete_container("after")
    _wait_for_rest(daemon)


@pytest.mark.containerd
def test_group_permissions(short_tmp: Path) -> None:
    gid = 65534  # nogroup on Debian
    d = DaemonProcess(short_tmp / "grp", ["--group", str(gid)])
    try:
        d.start()
        for path, mode in ((d.kubeconfig, 0o640), (Path(d.containerd_address), 0o660)):
            st = path.stat()
            assert (stat.S_IMODE(st.st_mode), st.st_gid) == (mode, gid), path
    finally:
        leftovers = d.close()
    assert not leftovers


@pytest.mark.containerd
def test_event_ttl_reaches_the_embedded_api_server(short_tmp: Path) -> None:
    """`k3c daemon --event-ttl` is the embedded API server's: an Event goes once it has passed."""
    from datetime import UTC, datetime

    d = DaemonProcess(short_tmp / "ttl", ["--event-ttl", "2s"])
    try:
        d.start()
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        d.api.create("/api/v1/namespaces/default/events", {
            "apiVersion": "v1", "kind": "Event", "metadata": {"name": "short-lived"}, "reason": "Test",
            "involvedObject": {"kind": "ConfigMap", "name": "x", "namespace": "default"},
            "firstTimestamp": stamp, "lastTimestamp": stamp, "message": "m", "type": "Normal"})
        wait_until(lambda: not [e for e in d.api.get("/api/v1/namespaces/default/events")["items"]
                                if e["metadata"]["name"] == "short-lived"], 15, "the Event to expire")
    finally:
        leftovers = d.close()
    assert not leftovers


def test_bad_flags_are_one_line_errors(tmp_path_factory: pytest.TempPathFactory) -> None:
    base = tmp_path_factory.mktemp("flags")  # short: a state dir too long for containerd's socket fails first
    cp = subprocess.run(
        [sys.executable, "-m", "k3c.cli.main", "daemon", "--root-dir", str(base / "r"),
         "--state-dir", str(base / "s"), "--subnet", "not-a-subnet"],
        capture_output=True, text=True, timeout=60,
    )
    assert cp.returncode == 125
    assert len(cp.stderr.strip().splitlines()) == 1 and cp.stderr.startswith("k3c: "), cp.stderr
    assert "not-a-subnet" in cp.stderr, cp.stderr


# ------------------------------------------------------------------------------------------------ topologies


def _start_node(base: Path, name: str, cluster: APIServerProcess) -> DaemonProcess:
    from k3c.oci.layout import busybox_image

    node = DaemonProcess(base / name, ["--kubeconfig", str(cluster.kubeconfig), "--node-name", name])
    node.start()
    node.import_image(TEST_IMAGE, busybox_image())
    return node


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A short private directory: containerd's socket paths must stay under 104 bytes."""
    path = Path(tempfile.mkdtemp(prefix="k3cd-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.containerd
def test_two_nodes_share_one_cluster(short_tmp: Path) -> None:
    """Two daemons on one (external) API server: each runs its own node's objects, unclaimed ones once."""
    cluster = APIServerProcess(short_tmp / "cluster")
    cluster.start()
    nodes: list[DaemonProcess] = []
    try:
        nodes = [_start_node(short_tmp, "node-a", cluster), _start_node(short_tmp, "node-b", cluster)]
        a, b = nodes
        assert not (a.root_dir / "kubeconfig.yaml").exists()  # no embedded API server with --kubeconfig
        a.create_container("pinned", command=["sleep", "300"], nodeName="node-b", stopTimeout=0)
        for i in range(4):
            a.create_container(f"free{i}", command=["sleep", "300"], stopTimeout=0)
        for name in ["pinned"] + [f"free{i}" for i in range(4)]:
            obj = a.wait_phase(name, "Running")
            node = {"node-a": a, "node-b": b}[obj["status"]["node"]]
            other = b if node is a else a
            uid = obj["metadata"]["uid"]
            assert len(node.runtime_containers(uid)) == 1 and other.runtime_containers(uid) == [], name
            if name == "pinned":
                assert node is b
    finally:
        problems = [f"{n.base.name}: {p}" for n in nodes for p in n.close()]
        cluster.stop()
    # the operator logs (kept beside each node's base dir) say which sandbox a leftover was, and why
    logs = [f"--- {f}:\n{f.read_text(errors='replace')[-4000:]}" for n in nodes
            for f in sorted(n.base.parent.glob(f"{n.base.name}-logs/operator.log"))] if problems else []
    assert not problems, "\n".join(problems + logs)


@pytest.mark.containerd
def test_admission_on_an_external_api_server(short_tmp: Path) -> None:
    """The one admission path in cluster mode: a node's operator registers its webhooks on the API server it
    was given, which calls them as it does in embedded mode (node policy 403, image in use 409)."""
    from k3c.apierrors import Conflict, Forbidden
    from k3c.oci.layout import busybox_image
    from k3c.oci.reference import normalize

    cluster = APIServerProcess(short_tmp / "cluster")
    cluster.start()
    node = DaemonProcess(short_tmp / "node", ["--kubeconfig", str(cluster.kubeconfig), "--node-name", "node-a",
                                              "--node-policy", "restricted"])
    try:
        node.start()
        node.import_image(TEST_IMAGE, busybox_image())
        api = kubeclient.Client(kubeclient.load(str(cluster.kubeconfig)))  # the cluster's, not the node's
        with pytest.raises(Forbidden) as refused:
            api.create(LOCAL_CONTAINERS.path("default"), {
                "apiVersion": "k3c.io/v1alpha1", "kind": "LocalContainer", "metadata": {"name": "priv"},
                "spec": {"image": TEST_IMAGE, "privileged": True}})
        assert 'admission webhook "nodepolicy.k3c.io" denied the request' in refused.value.message
        assert "spec.privileged" in refused.value.message
        elsewhere = api.request("POST", LOCAL_CONTAINERS.path("default") + "?dryRun=All", {  # another node's call
            "apiVersion": "k3c.io/v1alpha1", "kind": "LocalContainer", "metadata": {"name": "priv"},
            "spec": {"image": TEST_IMAGE, "privileged": True, "nodeName": "node-b"}})
        assert elsewhere["spec"]["privileged"] is True
        node.create_container("inuse", command=["sleep", "300"], stopTimeout=0)
        node.wait_phase("inuse", "Running")
        images = wait_until(lambda: {o["spec"]["reference"]: o for o in
                                     api.get("/apis/k3c.io/v1alpha1/images")["items"]}.get(normalize(TEST_IMAGE)),
                            20, "the test image's Image object")
        with pytest.raises(Conflict) as conflict:
            api.delete(f"/apis/k3c.io/v1alpha1/images/{images['metadata']['name']}")
        assert 'admission webhook "images.k3c.io" denied the request: conflict: unable to remove' in \
            conflict.value.message
        node.delete_container("inuse")
        assert api.get("/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/k3c.io.node-a")
        node.stop()
        configurations = api.get("/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations")
        assert [c["metadata"]["name"] for c in configurations["items"]] == []  # removed by the node at stop
    finally:
        problems = node.close()
        cluster.stop()
    assert not problems, problems


@pytest.mark.containerd
def test_existing_containerd(short_tmp: Path) -> None:
    """--containerd-address: the daemon uses a containerd it did not start, and leaves it running."""
    import asyncio

    from k3c.daemon.containerd import ContainerdConfig, ContainerdProcess, cleanup_network
    from k3c.oci.layout import busybox_image
    from tests.support.daemon_harness import pick_subnet

    bridge = f"k3cx{uuid.uuid4().hex[:6]}"  # private, as the harness's are: other runs may be going on
    cfg = ContainerdConfig(root_dir=short_tmp / "ctd-root", state_dir=short_tmp / "ctd-state", bridge=bridge,
                           network_name=bridge, subnet=pick_subnet())
    ctd = ContainerdProcess(cfg)
    asyncio.run(ctd.start())
    d = DaemonProcess(short_tmp / "d", ["--containerd-address", str(cfg.socket_path)])
    try:
        d.start()
        assert d.status()["containerdPid"] is None
        d.import_image(TEST_IMAGE, busybox_image())
        obj = d.create_container("ext", command=["sh", "-c", "echo via-existing-containerd"])
        st = d.wait_phase("ext", "Exited", "Failed")["status"]
        assert st["exitCode"] == 0 and st["ip"].startswith(cfg.subnet.rsplit(".", 1)[0])
        d.delete_container("ext")
        assert d.runtime_sandboxes(obj["metadata"]["uid"]) == []
        d.stop()
        assert ctd.pid is not None  # not ours to stop
        assert d.runtime_sandboxes() == []  # the spare went with the clean stop
    finally:
        d.close()
        asyncio.run(ctd.stop())
        cleanup_network(cfg)
