"""The docker-style CLI (cli/): flags → objects, output formats, addressing, errors and exit codes.

Runs against a bare API server with the k3c CRDs installed. Where a command waits for the operator
(run -d, stop, start, rm of a claimed object), a small in-process fake operator answers in status the way
the real one does (claim, start-request token, phases, exit codes, finalizer); containers themselves need
the daemon and are covered by the end-to-end suite. The pure parsing is tested in tests/unit/test_cli.py.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from k3c import crds
from tests.support.daemon_harness import TEST_IMAGE
from tests.support.harness import RawClient

G = "/apis/k3c.io/v1alpha1"
HEX64 = re.compile(r"^[0-9a-f]{64}$")
OP_NS = "op"  # the fake operator answers only here; elsewhere tests write status themselves


# ---- fixtures ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def api(apiserver):
    c = RawClient(apiserver)
    for path in crds.manifests():
        if path.name not in ("localcontainer.yaml", "volume.yaml"):  # the CRDs this suite is about
            continue
        doc = yaml.safe_load(path.read_text())
        r = c.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", doc)
        assert r.status_code in (201, 409), r.text
    deadline = time.monotonic() + 10
    while c.get(f"{G}/localcontainers").status_code != 200 or c.get(f"{G}/volumes").status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return c


@pytest.fixture
def ns(api, request):
    """A namespace of the test's own, so listings only show what the test made."""
    name = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:50].strip("-") + "-" + secrets.token_hex(2)
    r = api.post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    assert r.status_code == 201, r.text
    return name


@pytest.fixture(scope="module")
def operator(api, apiserver):
    r = api.post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": OP_NS}})
    assert r.status_code in (201, 409)
    op = FakeOperator(str(apiserver.kubeconfig))
    op.start()
    yield op
    op.stop()


def k3c(apiserver, *args: str, env: dict | None = None, input: str | None = None,
        timeout: float = 60) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "K3C_KUBECONFIG": str(apiserver.kubeconfig), "K3C_PICKUP_TIMEOUT": "10",
                "K3C_START_TIMEOUT": "20", "K3C_REMOVE_TIMEOUT": "10", **(env or {})}
    full_env.pop("K3C_DEBUG", None)
    cp = subprocess.run([sys.executable, "-m", "k3c.cli.main", *args], capture_output=True, text=True,
                        timeout=timeout, env=full_env, input=input)
    assert "Traceback" not in cp.stderr, cp.stderr
    return cp


def ok(apiserver, *args: str, **kw) -> str:
    cp = k3c(apiserver, *args, **kw)
    assert cp.returncode == 0, f"k3c {' '.join(args)} failed ({cp.returncode}): {cp.stderr}"
    return cp.stdout


def get_lc(api, ns: str, name: str) -> dict:
    r = api.get(f"{G}/namespaces/{ns}/localcontainers/{name}")
    assert r.status_code == 200, r.text
    return r.json()


def docker_id(obj: dict) -> str:
    """A container's docker ID: sha256 of its uid (docker-identity), never the CRI container's ID."""
    return hashlib.sha256(obj["metadata"]["uid"].encode()).hexdigest()


def rfc3339(delta: float = 0.0) -> str:
    return (datetime.now(UTC) + timedelta(seconds=delta)).strftime("%Y-%m-%dT%H:%M:%SZ")


def set_status(api, ns: str, name: str, status: dict) -> dict:
    r = api.patch(f"{G}/namespaces/{ns}/localcontainers/{name}/status", {"status": status},
                  "application/merge-patch+json")
    assert r.status_code == 200, r.text
    return r.json()


def lc(api, ns: str, name: str, image: str = "busybox", **spec) -> dict:
    body = {"apiVersion": "k3c.io/v1alpha1", "kind": "LocalContainer", "metadata": {"name": name},
            "spec": {"image": image, **spec}}
    r = api.post(f"{G}/namespaces/{ns}/localcontainers", body)
    assert r.status_code == 201, r.text
    return r.json()


# ---- a fake operator: the real one's status protocol, without containers ---------------------------
class FakeOperator:
    """Claims objects in OP_NS and answers like the operator: Running with a fresh containerID per start,
    Exited on stop, Failed for images named missing*/nocmd*, exit immediately for images named exit-N,
    a Pulling phase for images named pull*, autoRemove, and the finalizer on deletion."""

    def __init__(self, kubeconfig: str):
        from k3c import kubeclient

        self.client = kubeclient.Client(kubeclient.load(kubeconfig))
        self.path = f"{G}/namespaces/{OP_NS}/localcontainers"
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.errors: list[BaseException] = []
        self.started: set[tuple[str, int, str]] = set()  # (uid, generation, start-request) already acted on

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(10)
        assert not self.errors, self.errors

    def _run(self) -> None:
        try:
            doc = self.client.get(self.path)
            for obj in doc["items"]:
                self.reconcile(obj)
            rv = doc["metadata"]["resourceVersion"]
            while not self._stop.is_set():
                for ev in self.client.watch(self.path, timeout=10, resourceVersion=rv, timeoutSeconds=1):
                    rv = ev["object"]["metadata"]["resourceVersion"]
                    if ev["type"] in ("ADDED", "MODIFIED"):
                        self.reconcile(ev["object"])
        except BaseException as err:  # reported by stop()
            self.errors.append(err)

    def _status(self, obj: dict, status: dict) -> dict:
        from k3c.apierrors import NotFound

        try:
            return self.client.merge_patch(f"{self.path}/{obj['metadata']['name']}/status", {"status": status})
        except NotFound:
            return obj

    def reconcile(self, obj: dict) -> None:
        from k3c.apierrors import NotFound

        meta, spec, st = obj["metadata"], obj["spec"], obj.get("status") or {}
        name = meta["name"]
        if meta.get("deletionTimestamp"):
            if meta.get("finalizers"):
                with contextlib.suppress(NotFound):
                    self.client.merge_patch(f"{self.path}/{name}", {"metadata": {"finalizers": None}})
            return
        if not st.get("node"):
            obj = self._status(obj, {"node": "fake-node", "phase": "Pending", "summary": "Created"})
            st = obj.get("status") or {}
        token = (meta.get("annotations") or {}).get("k3c.io/start-request", "")
        gen = {"observedGeneration": meta["generation"], "startRequest": token}
        key = (meta["uid"], meta["generation"], token)
        want_run = spec.get("state") != "Stopped"
        phase = st.get("phase")
        if want_run and key not in self.started:
            self.started.add(key)
            self._start(obj, gen)
        elif not want_run and phase == "Running":
            code = 137 if spec.get("stopTimeout") == 0 else 0
            self._status(obj, {"phase": "Exited", "summary": f"Exited ({code})", "exitCode": code,
                               "finishedAt": rfc3339(), **gen})
        elif spec.get("autoRemove") and phase in ("Exited", "Failed"):
            self.client.delete(f"{self.path}/{name}")

    def _start(self, obj: dict, gen: dict) -> None:
        image = obj["spec"]["image"]
        if image.startswith("missing"):
            self._status(obj, {"phase": "Failed", "summary": "Failed", "exitCode": 125, **gen,
                               "message": f"image {image!r} is not on this node and pulling it failed: not found"})
            return
        if image.startswith("nocmd"):
            self._status(obj, {"phase": "Failed", "summary": "Failed", "exitCode": 127, **gen,
                               "message": 'exec: "nope": executable file not found in $PATH'})
            return
        if image.startswith("pull"):
            self._status(obj, {"phase": "Pulling", "summary": "Pulling", "message": f"pulling {image}"})
            time.sleep(0.2)
        ports = [{**p, "hostPort": p.get("hostPort") or 32768 + i, "hostIP": p.get("hostIP", "")}
                 for i, p in enumerate(obj["spec"].get("ports") or [])]
        running = {"phase": "Running", "summary": "Up", "containerID": secrets.token_hex(32), "startedAt": rfc3339(),
                   "ip": "10.88.0.5", "ports": ports, "exitCode": None, "finishedAt": None, "message": "", **gen}
        obj = self._status(obj, running)
        m = re.match(r"exit-(\d+)", image)
        if m:
            time.sleep(0.1)
            self._status(obj, {"phase": "Exited", "summary": f"Exited ({m.group(1)})", "exitCode": int(m.group(1)),
                               "finishedAt": rfc3339()})


# ---- run/create: docker flags → object ---------------------------------------------------------------
def test_create_maps_every_docker_flag_to_the_spec(apiserver, api, ns, tmp_path):
    envfile = tmp_path / "env"
    envfile.write_text("FROM_FILE=1\nSHARED=file\n")
    out = ok(apiserver, "create", "-n", ns, "--name", "web", "-p", "8080:80", "-p", "127.0.0.1::53/udp",
             "-v", "data:/data:ro", "-v", "/srv:/srv", "-e", "A=1", "-e", "FROM_HOST", "-e", "SHARED=flag",
             "--env-file", str(envfile), "--entrypoint", "/bin/sh", "-w", "/work", "-u", "1000:1000",
             "-l", "tier=web", "-l", "com.example.note=has spaces", "--restart", "on-failure:3", "-m", "64m",
             "--cpus", "1.5", "--privileged", "--read-only", "--net", "host", "--hostname", "box",
             "--cap-add", "net_admin", "--cap-drop", "CAP_CHOWN", "--dns", "1.1.1.1", "--stop-timeout", "3",
             "-i", "-t", "busybox", "-c", "echo hi", env={"FROM_HOST": "yes"})
    obj = get_lc(api, ns, "web")
    assert out.strip() == __import__("hashlib").sha256(obj["metadata"]["uid"].encode()).hexdigest()
    meta, spec = obj["metadata"], obj["spec"]
    assert meta["finalizers"] == ["k3c.io/container"] and meta["labels"] == {"tier": "web"}
    assert spec["nodeName"] == "" and spec["state"] == "Stopped" and spec["image"] == "busybox"
    assert spec["command"] == ["/bin/sh"] and spec["args"] == ["-c", "echo hi"]
    assert spec["ports"] == [{"containerPort": 80, "hostPort": 8080, "protocol": "TCP"},
                             {"containerPort": 53, "hostIP": "127.0.0.1", "protocol": "UDP"}]
    assert spec["volumes"] == [{"volume": "data", "mountPath": "/data", "readOnly": True},
                               {"hostPath": "/srv", "mountPath": "/srv"}]
    assert spec["env"] == [{"name": "FROM_FILE", "value": "1"}, {"name": "SHARED", "value": "flag"},
                           {"name": "A", "value": "1"}, {"name": "FROM_HOST", "value": "yes"}]
    assert spec["workingDir"] == "/work" and spec["user"] == "1000:1000"
    assert spec["labels"] == {"tier": "web", "com.example.note": "has spaces"}
    assert spec["restartPolicy"] == "on-failure:3" and spec["memory"] == str(64 * 1024 ** 2) and spec["cpus"] == "1.5"
    assert spec["privileged"] and spec["readOnlyRootFilesystem"] and spec["hostNetwork"]
    assert spec["hostname"] == "box" and spec["capAdd"] == ["NET_ADMIN"] and spec["capDrop"] == ["CHOWN"]
    assert spec["dns"] == ["1.1.1.1"] and spec["stopTimeout"] == 3 and spec["tty"] and spec["stdin"]
    assert spec["stdinOnce"]  # attached -i: stdin closes when the first attach ends, as in docker
    assert "autoRemove" not in spec


def test_run_detached_prints_the_container_id_and_generates_a_name(apiserver, api, operator):
    out = ok(apiserver, "run", "-n", OP_NS, "-d", "--rm", "-p", "80", "busybox", "sleep", "100")
    cid = out.strip()
    assert HEX64.match(cid)
    items = api.get(f"{G}/namespaces/{OP_NS}/localcontainers").json()["items"]
    obj = next(o for o in items if docker_id(o) == cid)
    assert obj["status"]["containerID"] != cid  # the CRI container's ID stays internal
    assert re.fullmatch(r"[a-z]+-[a-z]+[0-9]?", obj["metadata"]["name"])
    assert obj["spec"]["autoRemove"] is True and obj["spec"]["args"] == ["sleep", "100"]
    assert obj["spec"]["state"] == "Running" and obj["spec"]["nodeName"] == ""
    ps = ok(apiserver, "ps", "-n", OP_NS, "--no-trunc", "--format", "{{.ID}} {{.Status}} {{.Ports}}")
    assert re.search(rf"^{cid} Up (Less than a second|\d seconds?) 0.0.0.0:32768->80/tcp$", ps, re.M), ps
    ok(apiserver, "rm", "-n", OP_NS, "-f", cid[:10])


def test_run_with_a_taken_name_is_dockers_conflict(apiserver, api, ns):
    lc(api, ns, "taken")
    cp = k3c(apiserver, "run", "-n", ns, "-d", "--name", "taken", "busybox")
    assert cp.returncode == 125
    assert cp.stderr.startswith('k3c: Error response from daemon: Conflict. The container name "/taken" is already')
    assert cp.stderr.count("\n") == 1


def test_invalid_names_and_flag_combinations_exit_125(apiserver, ns):
    for args, text in ((["--name", "_app"], "Invalid container name (_app), only [a-zA-Z0-9][a-zA-Z0-9_.-] are"),
                       (["--rm", "--restart", "always"], "cannot specify both --restart and --rm"),
                       (["-m", "1k"], "Minimum memory limit allowed is 6MB"),
                       (["--network-alias", "db"], "network-scoped alias is supported only for containers in user"),
                       (["--net", "no/such"], "network no/such not found")):
        cp = k3c(apiserver, "run", "-n", ns, "-d", *args, "busybox")
        assert cp.returncode == 125 and text in cp.stderr and cp.stderr.count("\n") == 1, cp.stderr


def test_run_failures_report_the_operators_message_and_leave_nothing(apiserver, api, operator):
    before = len(api.get(f"{G}/namespaces/{OP_NS}/localcontainers").json()["items"])
    cp = k3c(apiserver, "run", "-n", OP_NS, "-d", "missing-image")
    assert cp.returncode == 125
    assert cp.stderr == ("k3c: Error response from daemon: image 'missing-image' is not on this node and pulling it "
                         "failed: not found\n")
    cp = k3c(apiserver, "run", "-n", OP_NS, "nocmd-image", "nope")
    assert cp.returncode == 127 and "executable file not found" in cp.stderr
    deadline = time.monotonic() + 5
    while len(api.get(f"{G}/namespaces/{OP_NS}/localcontainers").json()["items"]) != before:
        assert time.monotonic() < deadline, "run left an object behind"
        time.sleep(0.05)


def test_run_without_an_operator_fails_clearly_and_cleans_up(apiserver, api, ns):
    cp = k3c(apiserver, "run", "-n", ns, "-d", "busybox", env={"K3C_PICKUP_TIMEOUT": "0.5"})
    assert cp.returncode == 125
    assert "no k3c operator picked up container" in cp.stderr and cp.stderr.count("\n") == 1
    assert api.get(f"{G}/namespaces/{ns}/localcontainers").json()["items"] == []


def test_run_shows_pull_progress_then_runs(apiserver, operator):
    cp = k3c(apiserver, "run", "-n", OP_NS, "-d", "--name", "puller", "pull-image")
    assert cp.returncode == 0, cp.stderr
    assert cp.stderr.splitlines() == ["Unable to find image 'pull-image' locally", "pulling pull-image",
                                      "Status: Downloaded newer image for pull-image"]
    ok(apiserver, "rm", "-n", OP_NS, "-f", "puller")


def test_run_in_the_foreground_exits_with_the_containers_code_and_rm_removes_it(apiserver, api, operator):
    cp = k3c(apiserver, "run", "-n", OP_NS, "--rm", "--name", "fg3", "exit-3")
    assert cp.returncode == 3, cp.stderr
    deadline = time.monotonic() + 5
    while api.get(f"{G}/namespaces/{OP_NS}/localcontainers/fg3").status_code != 404:
        assert time.monotonic() < deadline
        time.sleep(0.05)


# ---- lifecycle against the fake operator ------------------------------------------------------------
def test_stop_start_restart_kill_wait_rm(apiserver, api, operator):
    cid = ok(apiserver, "run", "-n", OP_NS, "-d", "--name", "life", "busybox", "sleep", "1000").strip()
    first = get_lc(api, OP_NS, "life")["status"]["containerID"]
    assert cid == docker_id(get_lc(api, OP_NS, "life"))
    assert ok(apiserver, "stop", "-n", OP_NS, "-t", "2", "life") == "life\n"
    obj = get_lc(api, OP_NS, "life")
    assert obj["spec"]["state"] == "Stopped" and obj["spec"]["stopTimeout"] == 2
    assert obj["status"]["phase"] == "Exited"
    assert ok(apiserver, "wait", "-n", OP_NS, "life") == "0\n"
    assert ok(apiserver, "start", "-n", OP_NS, "life") == "life\n"
    second = get_lc(api, OP_NS, "life")["status"]["containerID"]
    assert second != first and get_lc(api, OP_NS, "life")["status"]["phase"] == "Running"
    assert ok(apiserver, "inspect", "-n", OP_NS, "-f", "{{.Id}}", "life") == f"{cid}\n"  # a new start, one ID
    assert ok(apiserver, "restart", "-n", OP_NS, cid[:12]) == f"{cid[:12]}\n"
    third = get_lc(api, OP_NS, "life")["status"]["containerID"]
    assert third not in (first, second)
    assert ok(apiserver, "ps", "-n", OP_NS, "-q", "--no-trunc", "-f", "name=life") == f"{cid}\n"
    cp = k3c(apiserver, "inspect", "-n", OP_NS, third[:12])  # the CRI container's ID is no docker ID
    assert cp.returncode == 1 and cp.stderr == f"Error: No such object: {third[:12]}\n"
    cp = k3c(apiserver, "rm", "-n", OP_NS, "life")
    assert cp.returncode == 1
    assert cp.stderr == (f"Error response from daemon: You cannot remove a running container {cid}. Stop the "
                         "container before attempting removal or force remove\n")
    assert ok(apiserver, "kill", "-n", OP_NS, "life") == "life\n"
    obj = get_lc(api, OP_NS, "life")
    assert obj["status"]["exitCode"] == 137 and obj["spec"]["stopTimeout"] == 2
    cp = k3c(apiserver, "kill", "-n", OP_NS, "life")
    assert cp.returncode == 1 and "is not running" in cp.stderr
    assert ok(apiserver, "rm", "-n", OP_NS, "life") == "life\n"
    assert api.get(f"{G}/namespaces/{OP_NS}/localcontainers/life").status_code == 404


def test_rm_force_removes_a_running_container_and_its_anonymous_volumes(apiserver, api, operator):
    ok(apiserver, "run", "-n", OP_NS, "-d", "--name", "anon", "-v", "/cache", "busybox")
    vol = get_lc(api, OP_NS, "anon")["spec"]["volumes"][0]["volume"]
    api.post(f"{G}/namespaces/{OP_NS}/volumes", {"apiVersion": "k3c.io/v1alpha1", "kind": "Volume",
                                                 "metadata": {"name": vol}})
    assert ok(apiserver, "rm", "-n", OP_NS, "-f", "-v", "anon") == "anon\n"
    assert api.get(f"{G}/namespaces/{OP_NS}/localcontainers/anon").status_code == 404
    assert api.get(f"{G}/namespaces/{OP_NS}/volumes/{vol}").status_code == 404


def test_rm_of_many_reports_each_in_order_and_fails_for_the_missing(apiserver, api, operator):
    for name in ("many-a", "many-b", "many-c"):
        ok(apiserver, "run", "-n", OP_NS, "-d", "--name", name, "busybox")
    cp = k3c(apiserver, "rm", "-n", OP_NS, "-f", "many-a", "many-b", "no-such-one", "many-c", "many-b")
    assert cp.returncode == 1
    assert cp.stdout == "many-a\nmany-b\nmany-c\n", "each removal is reported once it is done, in order, once"
    assert "No such container: no-such-one" in cp.stderr
    for name in ("many-a", "many-b", "many-c"):
        assert api.get(f"{G}/namespaces/{OP_NS}/localcontainers/{name}").status_code == 404


def test_rm_of_a_never_claimed_object_needs_no_operator(apiserver, api, ns):
    ok(apiserver, "create", "-n", ns, "--name", "lonely", "busybox")
    assert ok(apiserver, "rm", "-n", ns, "lonely") == "lonely\n"
    assert api.get(f"{G}/namespaces/{ns}/localcontainers/lonely").status_code == 404


# ---- addressing and errors --------------------------------------------------------------------------
def test_name_and_id_prefix_resolution(apiserver, api, ns):
    """docker's order: full ID, docker name, object name, then a unique prefix of the (uid-derived) ID."""
    ids: dict[str, str] = {}
    # until two IDs share a first digit (17 at most); names no ID prefix can be ("c2" could: a name wins)
    while len({i[0] for i in ids.values()}) == len(ids):
        ids[f"n{len(ids)}"] = docker_id(lc(api, ns, f"n{len(ids)}"))
    first = next(i[0] for i in ids.values() if sum(j[0] == i[0] for j in ids.values()) > 1)
    alpha, beta = [n for n, i in ids.items() if i[0] == first][:2]
    set_status(api, ns, alpha, {"phase": "Exited", "containerID": "abc123" + "0" * 58, "exitCode": 0})

    def unique_prefix(name: str) -> str:
        return next(ids[name][:n] for n in range(1, 65)
                    if not any(i.startswith(ids[name][:n]) for o, i in ids.items() if o != name))

    fmt = ["inspect", "-n", ns, "--format", "{{.Name}}"]
    assert ok(apiserver, *fmt, alpha) == f"/{alpha}\n"
    assert ok(apiserver, *fmt, unique_prefix(alpha)) == f"/{alpha}\n"
    assert ok(apiserver, *fmt, unique_prefix(beta), ids[beta]) == f"/{beta}\n/{beta}\n"
    cp = k3c(apiserver, "inspect", "-n", ns, "abc123")  # the CRI container's ID is not an address
    assert cp.returncode == 1 and cp.stderr == "Error: No such object: abc123\n"
    cp = k3c(apiserver, "rm", "-n", ns, first)
    assert cp.returncode == 1
    assert cp.stderr == f"Error response from daemon: multiple IDs found with provided prefix: {first}\n"
    cp = k3c(apiserver, "stop", "-n", ns, "nosuch")
    assert cp.returncode == 1 and cp.stderr == "Error response from daemon: No such container: nosuch\n"
    cp = k3c(apiserver, "rm", "-n", ns, "nosuch", alpha)
    assert cp.returncode == 1 and cp.stdout == f"{alpha}\n" and "No such container: nosuch" in cp.stderr
    cp = k3c(apiserver, "inspect", "-n", ns, "nosuch")
    assert cp.returncode == 1 and cp.stdout == "[]\n" and cp.stderr == "Error: No such object: nosuch\n"


def test_docker_names_map_onto_object_names(apiserver, api, ns):
    """compose's names (`proj_web_1`) are kept as given; the object gets the mapped name (docker-identity)."""
    cid = ok(apiserver, "create", "-n", ns, "--name", "Proj_web_1", "busybox").strip()
    (obj,) = api.get(f"{G}/namespaces/{ns}/localcontainers").json()["items"]
    assert docker_id(obj) == cid and obj["metadata"]["annotations"]["k3c.io/name"] == "Proj_web_1"
    assert re.fullmatch(r"proj-web-1-[0-9a-f]{6}", obj["metadata"]["name"])
    fmt = ["inspect", "-n", ns, "--format", "{{.Name}} {{.Id}}"]
    assert ok(apiserver, *fmt, "Proj_web_1") == ok(apiserver, *fmt, obj["metadata"]["name"]) == f"/Proj_web_1 {cid}\n"
    assert ok(apiserver, "ps", "-a", "-n", ns, "--format", "{{.Names}}", "-f", "name=web_1") == "Proj_web_1\n"
    cp = k3c(apiserver, "inspect", "-n", ns, "proj_web_1")  # names are case-sensitive, as in docker
    assert cp.returncode == 1
    cp = k3c(apiserver, "create", "-n", ns, "--name", "Proj_web_1", "busybox")
    assert cp.returncode == 125 and f'The container name "/Proj_web_1" is already in use by container "{cid}"' \
        in cp.stderr
    # an object renamed away from its name: the name is free for docker, the docker name wins over it
    lc(api, ns, "front", image="nginx")
    api.patch(f"{G}/namespaces/{ns}/localcontainers/front", {"metadata": {"annotations": {"k3c.io/name": "old"}}},
              "application/merge-patch+json")
    new = ok(apiserver, "create", "-n", ns, "--name", "front", "busybox").strip()
    assert ok(apiserver, "inspect", "-n", ns, "-f", "{{.Id}} {{.Config.Image}}", "front") == f"{new} busybox\n"
    assert ok(apiserver, "inspect", "-n", ns, "-f", "{{.Name}} {{.Config.Image}}", "old") == "/old nginx\n"
    assert ok(apiserver, "rm", "-n", ns, "Proj_web_1", "front") == "Proj_web_1\nfront\n"
    left = [o["metadata"]["name"] for o in api.get(f"{G}/namespaces/{ns}/localcontainers").json()["items"]]
    assert left == ["front"]


def test_usage_errors_are_one_line_with_dockers_exit_codes(apiserver):
    cp = k3c(apiserver, "run", "--bogus", "busybox")
    assert cp.returncode == 125 and cp.stderr == "k3c: unknown flag: --bogus. See 'k3c run --help'.\n"
    cp = k3c(apiserver, "run", "-p", "abc", "busybox")
    assert cp.returncode == 125 and cp.stderr == "k3c: invalid containerPort: abc. See 'k3c run --help'.\n"
    cp = k3c(apiserver, "stop", "-t", "x", "c")
    assert cp.returncode == 125 and cp.stderr.count("\n") == 1 and 'invalid argument "x"' in cp.stderr
    cp = k3c(apiserver, "run", "--cpus", "abc", "busybox")
    assert cp.returncode == 125 and "failed to parse abc as a rational number" in cp.stderr
    cp = k3c(apiserver, "stop")
    assert cp.returncode == 1 and cp.stderr == "k3c: 'k3c stop' requires at least 1 argument. See 'k3c stop --help'.\n"
    cp = k3c(apiserver, "ps", "extra")
    assert cp.returncode == 1 and cp.stderr.count("\n") == 1


def test_unreachable_api_and_missing_kubeconfig_are_one_line_125(apiserver, tmp_path):
    doc = yaml.safe_load(Path(apiserver.kubeconfig).read_text())
    doc["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:1"
    bad = tmp_path / "kubeconfig.yaml"
    bad.write_text(yaml.safe_dump(doc))
    cp = k3c(apiserver, "ps", "--kubeconfig", str(bad))
    assert cp.returncode == 125
    assert cp.stderr == "Cannot connect to the k3c daemon at https://127.0.0.1:1. Is the k3c daemon running?\n"
    cp = k3c(apiserver, "run", "-d", "busybox", env={"K3C_KUBECONFIG": str(tmp_path / "none.yaml")})
    assert cp.returncode == 125 and cp.stderr.count("\n") == 1 and "cannot read kubeconfig" in cp.stderr


# ---- ps -----------------------------------------------------------------------------------------------
@pytest.fixture
def listing(api, ns):
    """Three containers in docker's three common states, status written as the operator would."""
    lc(api, ns, "web", "nginx:1.25", args=["nginx", "-g", "daemon off;"], labels={"tier": "front"},
       ports=[{"containerPort": 80, "hostPort": 8080}])
    set_status(api, ns, "web", {"phase": "Running", "containerID": "a" * 64, "startedAt": rfc3339(-300),
                                "ports": [{"containerPort": 80, "hostPort": 8080, "protocol": "TCP"}],
                                "command": "/docker-entrypoint.sh nginx -g 'daemon off;'"})
    lc(api, ns, "job", "busybox", args=["false"], labels={"tier": "batch"})
    set_status(api, ns, "job", {"phase": "Exited", "containerID": "b" * 64, "exitCode": 3,
                                "startedAt": rfc3339(-10), "finishedAt": rfc3339(-3)})
    lc(api, ns, "fresh", "busybox", state="Stopped")
    return ns


def test_ps_table_like_docker(apiserver, api, listing):
    out = ok(apiserver, "ps", "-n", listing)
    lines = out.splitlines()
    assert re.match(r"CONTAINER ID\s{3}IMAGE\s+COMMAND\s+CREATED\s+STATUS\s+PORTS\s+NAMES$", lines[0])
    assert len(lines) == 2
    row = re.split(r"\s{3,}", lines[1])
    assert re.fullmatch(r"(Less than a second|\d+ seconds?) ago", row.pop(3))
    assert row == [docker_id(get_lc(api, listing, "web"))[:12], "nginx:1.25", '"/docker-entrypoint.…"', "Up 5 minutes", "0.0.0.0:8080->80/tcp",
                   "web"]
    everything = ok(apiserver, "ps", "-a", "-n", listing)
    assert re.search(r"Exited \(3\) \d+ seconds ago", everything) and "Created" in everything
    assert len(everything.splitlines()) == 4


def test_ps_quiet_no_trunc_json_and_templates(apiserver, api, listing):
    web_id = docker_id(get_lc(api, listing, "web"))
    assert ok(apiserver, "ps", "-q", "-n", listing) == f"{web_id[:12]}\n"
    assert ok(apiserver, "ps", "-aq", "--no-trunc", "-n", listing).splitlines()[:2] != []
    full = ok(apiserver, "ps", "--no-trunc", "-n", listing, "--format", "{{.ID}} {{.Command}}")
    assert full == f"{web_id} \"/docker-entrypoint.sh nginx -g 'daemon off;'\"\n"
    rows = [json.loads(line) for line in ok(apiserver, "ps", "-a", "-n", listing, "--format", "json").splitlines()]
    assert {r["Names"] for r in rows} == {"web", "job", "fresh"}
    web = next(r for r in rows if r["Names"] == "web")
    assert list(web) == sorted(web) and web["State"] == "running" and web["Labels"] == "tier=front"
    assert ok(apiserver, "ps", "-a", "-n", listing, "--format", "{{json .}}").splitlines()[0].startswith("{")
    assert sorted(ok(apiserver, "ps", "-a", "-n", listing, "--format", "{{.Names}}").split()) == ["fresh", "job", "web"]
    table = ok(apiserver, "ps", "-n", listing, "--format", "table {{.Names}}\\t{{.Image}}\\t{{.Label \"tier\"}}")
    assert table.splitlines() == ["NAMES     IMAGE        LABEL", "web       nginx:1.25   front"]


def test_ps_filters(apiserver, api, listing):
    def names(*filters: str) -> list[str]:
        args = [a for f in filters for a in ("-f", f)]
        return sorted(ok(apiserver, "ps", "-a", "-n", listing, *args, "--format", "{{.Names}}").split())

    assert names("name=we") == ["web"]
    assert names("label=tier") == ["job", "web"]
    assert names("label=tier=batch") == ["job"]
    assert names("status=exited") == ["job"] and names("status=created") == ["fresh"]
    assert names("status=running", "status=exited") == ["job", "web"]
    assert names(f"id={docker_id(get_lc(api, listing, 'job'))[:10]}") == ["job"]
    assert names("id=bbb") == []  # the CRI container's ID is not the docker ID
    assert names("ancestor=busybox") == ["fresh", "job"] and names("ancestor=nginx:1.25") == ["web"]
    assert names("exited=3") == ["job"]
    assert names("label=tier", "name=job") == ["job"]
    assert ok(apiserver, "ps", "-n", listing, "-f", "status=exited", "--format", "{{.Names}}") == "job\n"
    cp = k3c(apiserver, "ps", "-n", listing, "-f", "bogus=1")
    assert cp.returncode == 1 and cp.stderr == "Error response from daemon: invalid filter 'bogus'\n"


def test_inspect_is_docker_shaped(apiserver, api, listing):
    doc = json.loads(ok(apiserver, "inspect", "-n", listing, "web"))
    assert isinstance(doc, list) and len(doc) == 1
    web = doc[0]
    assert web["Id"] == docker_id(get_lc(api, listing, "web")) and web["Name"] == "/web" and web["State"]["Status"] == "running"
    assert web["Config"]["Image"] == "nginx:1.25" and web["Config"]["Cmd"] == ["nginx", "-g", "daemon off;"]
    assert web["HostConfig"]["PortBindings"] == {"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}
    assert web["NetworkSettings"]["Ports"] == {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]}
    assert web["K3c"]["Namespace"] == listing
    out = ok(apiserver, "inspect", "-n", listing, "-f", "{{.State.Status}} {{.State.ExitCode}}", "web", "job")
    assert out == "running 0\nexited 3\n"


def test_info(apiserver, listing):
    out = ok(apiserver, "info", "-n", listing)
    assert " Containers: 3\n  Running: 1\n  Paused: 0\n  Stopped: 2\n" in out
    assert "Server Version: v1.30" in out and f"Namespace: {listing}" in out
    assert json.loads(ok(apiserver, "info", "-n", listing, "-f", "json"))["ContainersRunning"] == 1


def test_ps_of_50_containers_lists_each_once(apiserver, api, ns):
    """(Its speed is bench/containers.py's and bench/scale.py's to measure, not a test's.)"""
    for i in range(50):
        lc(api, ns, f"c{i}")
        set_status(api, ns, f"c{i}", {"phase": "Running", "containerID": secrets.token_hex(32),
                                      "startedAt": rfc3339(-60)})
    names = ok(apiserver, "ps", "-n", ns, "--format", "{{.Names}}").split()
    assert sorted(names) == sorted(f"c{i}" for i in range(50))
    assert len(ok(apiserver, "ps", "-n", ns).splitlines()) == 51


# ---- volumes ----------------------------------------------------------------------------------------
def test_volume_commands(apiserver, api, ns):
    assert ok(apiserver, "volume", "create", "-n", ns, "-l", "env=dev", "data") == "data\n"
    assert ok(apiserver, "volume", "create", "-n", ns, "data") == "data\n"  # docker: existing is fine
    anon = ok(apiserver, "volume", "create", "-n", ns).strip()
    assert HEX64.match(anon)
    assert ok(apiserver, "volume", "ls", "-n", ns).splitlines() == ["DRIVER    VOLUME NAME"] + [
        f"local     {name}" for name in sorted([anon, "data"])]
    assert ok(apiserver, "volume", "ls", "-q", "-n", ns, "-f", "label=env=dev") == "data\n"
    rows = [json.loads(line) for line in ok(apiserver, "volume", "ls", "-n", ns, "--format", "json").splitlines()]
    row = next(r for r in rows if r["Name"] == "data")  # the anonymous volume's random name may sort first
    assert row["Name"] == "data" and row["Driver"] == "local" and row["Labels"] == "env=dev"
    doc = json.loads(ok(apiserver, "volume", "inspect", "-n", ns, "data"))
    assert doc[0]["Name"] == "data" and doc[0]["Labels"] == {"env": "dev"} and doc[0]["Scope"] == "local"
    assert ok(apiserver, "volume", "inspect", "-n", ns, "-f", "{{.Name}}:{{.Driver}}", "data") == "data:local\n"
    cp = k3c(apiserver, "volume", "inspect", "-n", ns, "nope")
    assert cp.returncode == 1 and cp.stderr == "Error: No such volume: nope\n"
    user = lc(api, ns, "user", volumes=[{"volume": "data", "mountPath": "/d"}])
    set_status(api, ns, "user", {"phase": "Running", "containerID": "c" * 64})
    assert ok(apiserver, "volume", "ls", "-q", "-n", ns, "-f", "dangling=true") == f"{anon}\n"
    cp = k3c(apiserver, "volume", "rm", "-n", ns, "data")
    assert cp.returncode == 1
    assert cp.stderr == f"Error response from daemon: remove data: volume is in use - [{docker_id(user)}]\n"
    assert ok(apiserver, "volume", "rm", "-n", ns, "-f", "data", anon) == f"data\n{anon}\n"
    assert api.get(f"{G}/namespaces/{ns}/volumes/data").status_code == 404
    cp = k3c(apiserver, "volume", "rm", "-n", ns, "data")
    assert cp.returncode == 1 and cp.stderr == "Error response from daemon: get data: no such volume\n"
    assert ok(apiserver, "volume", "rm", "-n", ns, "-f", "data") == "data\n"
    cp = k3c(apiserver, "volume", "create", "-n", ns, "_bad")
    assert cp.returncode == 1 and "includes invalid characters" in cp.stderr


def test_volumes_keep_docker_names(apiserver, api, ns):
    """docker's volume names (`proj_data`) are kept as given, the object name mapped (docker-identity)."""
    assert ok(apiserver, "volume", "create", "-n", ns, "Proj_data") == "Proj_data\n"
    (vol,) = api.get(f"{G}/namespaces/{ns}/volumes").json()["items"]
    assert re.fullmatch(r"proj-data-[0-9a-f]{6}", vol["metadata"]["name"])
    assert ok(apiserver, "volume", "ls", "-q", "-n", ns) == "Proj_data\n"
    assert ok(apiserver, "volume", "inspect", "-n", ns, "-f", "{{.Name}}", "Proj_data") == "Proj_data\n"
    ok(apiserver, "create", "-n", ns, "--name", "user", "-v", "Proj_data:/d", "-v", "Other_data:/o", "busybox")
    spec = get_lc(api, ns, "user")["spec"]
    assert spec["volumes"][0]["volume"] == vol["metadata"]["name"]
    other = api.get(f"{G}/namespaces/{ns}/volumes/{spec['volumes'][1]['volume']}").json()
    assert other["metadata"]["annotations"]["k3c.io/name"] == "Other_data"  # made by the CLI, named as given
    mounts = ok(apiserver, "inspect", "-n", ns, "-f", "{{range .Mounts}}{{.Name}} {{end}}{{.HostConfig.Binds}}",
                "user")
    assert mounts == "Proj_data Other_data [Proj_data:/d Other_data:/o]\n"
    assert ok(apiserver, "ps", "-a", "-q", "-n", ns, "-f", "volume=Proj_data") != ""
    ok(apiserver, "rm", "-n", ns, "user")
    assert ok(apiserver, "volume", "rm", "-n", ns, "Proj_data", "Other_data") == "Proj_data\nOther_data\n"
    assert api.get(f"{G}/namespaces/{ns}/volumes").json()["items"] == []


def test_volume_force_delete_sets_the_annotation_the_operator_honours(apiserver, api, ns):
    ok(apiserver, "volume", "create", "-n", ns, "held")
    r = api.patch(f"{G}/namespaces/{ns}/volumes/held", {"metadata": {"finalizers": ["k3c.io/volume"]}},
                  "application/merge-patch+json")
    assert r.status_code == 200
    proc = subprocess.Popen([sys.executable, "-m", "k3c.cli.main", "volume", "rm", "-f", "-n", ns, "held"],
                            env=dict(os.environ, K3C_KUBECONFIG=str(apiserver.kubeconfig)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 10
    while not api.get(f"{G}/namespaces/{ns}/volumes/held").json()["metadata"].get("deletionTimestamp"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    vol = api.get(f"{G}/namespaces/{ns}/volumes/held").json()
    assert vol["metadata"]["annotations"]["k3c.io/force-delete"] == "true"
    api.patch(f"{G}/namespaces/{ns}/volumes/held", {"metadata": {"finalizers": None}}, "application/merge-patch+json")
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0 and out == "held\n", err


# ---- events -----------------------------------------------------------------------------------------
class EventsReader:
    """`k3c events ARGS` (or docker's) in the background, its lines collected as they come; stopped with
    Ctrl-C."""

    def __init__(self, kubeconfig: Path | str | None, *args: str, argv: list[str] | None = None,
                 env: dict | None = None):
        self.proc = subprocess.Popen(argv or [sys.executable, "-m", "k3c.cli.main", "events", *args],
                                     env=env or dict(os.environ, K3C_KUBECONFIG=str(kubeconfig)),
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self.ends: tuple[int, ...] = (0,)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        time.sleep(1.5)  # its watches are open by then

    @classmethod
    def command(cls, argv: list[str], env: dict | None) -> EventsReader:
        reader = cls(None, argv=argv, env=env)
        reader.ends = (0, -signal.SIGINT)  # docker's CLI dies of the Ctrl-C
        return reader

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, text: str, timeout: float = 20) -> list[str]:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.lines):
            assert time.monotonic() < deadline, f"no {text!r} in:\n" + "\n".join(self.lines)
            time.sleep(0.05)
        return list(self.lines)

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGINT)
        _, err = self.proc.communicate(timeout=10)
        self.thread.join(5)
        assert self.proc.returncode in self.ends and err == "", (self.proc.returncode, err)
        return "\n".join(self.lines)


LINE = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}(?:Z|[+-]\d\d:\d\d)) (\w+) (.+?) (\S+)(?: \((.*)\))?$")


def parse_lines(lines: list[str]) -> list[tuple[str, str, str, str, str]]:
    """(time, type, action, actor ID, attributes) of docker's lines; each line must have docker's shape."""
    out = []
    for line in lines:
        m = LINE.fullmatch(line)
        assert m, f"not docker's line shape: {line!r}"
        out.append((m[1], m[2], m[3], m[4], m[5] or ""))
    return out


def test_events_one_line_per_action_in_order_with_the_containers_id(apiserver, api, operator):
    reader = EventsReader(apiserver.kubeconfig, "-n", OP_NS, "-f", "container=evt")
    cid = ok(apiserver, "run", "-n", OP_NS, "-d", "--name", "evt", "-l", "app=demo", "busybox").strip()
    ok(apiserver, "restart", "-n", OP_NS, "evt")
    ok(apiserver, "stop", "-n", OP_NS, "evt")
    ok(apiserver, "start", "-n", OP_NS, "evt")
    ok(apiserver, "kill", "-n", OP_NS, "evt")
    ok(apiserver, "rename", "-n", OP_NS, "evt", "evt2")
    ok(apiserver, "rm", "-n", OP_NS, "evt2")
    reader.wait_for(" container destroy ")
    events = parse_lines(reader.stop().splitlines())
    assert [(kind, action) for _, kind, action, _, _ in events] == [("container", a) for a in (
        "create", "start", "kill", "die", "stop", "start", "restart", "kill", "die", "stop", "start", "kill", "die",
        "rename", "destroy")]
    assert {actor for _, _, _, actor, _ in events} == {cid}  # one ID for all of it: run -d's
    times = [t for t, *_ in events]
    assert times == sorted(times) and len(set(times)) == len(times)
    attrs = [a for *_, a in events]
    assert attrs[0] == "app=demo, image=busybox, name=evt"
    assert attrs[2] == "app=demo, image=busybox, name=evt, signal=15"
    assert attrs[3] == "app=demo, exitCode=0, image=busybox, name=evt"
    assert attrs[11] == "app=demo, image=busybox, name=evt, signal=9"  # kill: SIGKILL, no stop after it
    assert attrs[12] == "app=demo, exitCode=137, image=busybox, name=evt"
    assert attrs[13:] == ["app=demo, image=busybox, name=evt2, oldName=/evt", "app=demo, image=busybox, name=evt2"]


def test_events_filters_since_until_and_formats(apiserver, api, ns):
    web = lc(api, ns, "web", "nginx:1.25", labels={"tier": "front"})
    set_status(api, ns, "web", {"phase": "Running", "containerID": "a" * 64, "startedAt": rfc3339(-20)})
    job = lc(api, ns, "job", "busybox", labels={"tier": "batch"}, state="Stopped", stopTimeout=5)
    set_status(api, ns, "job", {"phase": "Exited", "containerID": "b" * 64, "startedAt": rfc3339(-10),
                                "finishedAt": rfc3339(-5), "exitCode": 1})
    api.post(f"{G}/namespaces/{ns}/volumes", {"apiVersion": "k3c.io/v1alpha1", "kind": "Volume",
                                              "metadata": {"name": "store"}})
    until = f"{time.time() + 1:.3f}"

    names = {docker_id(web): "web", docker_id(job): "job"}

    def shown(*args: str) -> list[str]:
        out = ok(apiserver, "events", "-n", ns, "--since", "1h", "--until", until, *args,
                 "--format", "{{.Type}} {{.Action}} {{.Actor.ID}}")
        return [" ".join(w if i < 2 else names.get(w, w) for i, w in enumerate(line.split()))
                for line in out.splitlines()]

    everything = shown()  # in time order: the starts and the exit were written back-dated
    assert everything[:4] == ["container start web", "container start job", "container die job",
                              "container stop job"]
    assert sorted(everything[4:]) == ["container create job", "container create web", "volume create store"]
    assert shown("-f", "container=we") == ["container start web", "container create web"]
    assert shown("-f", f"container={docker_id(job)[:6]}", "-f", "event=create") == ["container create job"]
    assert shown("-f", "event=die", "-f", "event=stop") == ["container die job", "container stop job"]
    assert shown("-f", "type=volume") == ["volume create store"]
    # docker matches a prefix of the actor's ID or name, a container's too: "st" can begin no hex ID
    assert shown("-f", "volume=st") == ["volume create store"]
    assert shown("-f", "image=nginx", "-f", "event=start") == ["container start web"]
    assert shown("-f", "image=nginx:1.25", "-f", "event=start") == ["container start web"]
    assert shown("-f", "image=busybox:latest") == [], "docker matches the reference as the container names it"
    assert shown("-f", "label=tier=batch", "-f", "event=create") == ["container create job"]
    assert shown("-f", "label=tier", "-f", "label=nope") == [], "docker AND-s label filters"
    assert sorted(shown("-f", "type=container", "-f", "bogus=1", "-f", "event=create")) == [
        "container create job", "container create web"], "docker ignores keys it does not know"
    assert ok(apiserver, "events", "-n", ns, "--since", "1h", "--until", "30m") == ""  # a past window, then exit
    cp = k3c(apiserver, "events", "-n", ns, "--since", "1s", "--until", "10m")
    assert cp.returncode == 1 and cp.stderr.startswith("Error response from daemon: `since` time (")
    cp = k3c(apiserver, "events", "-n", ns, "-f", "container")
    assert cp.returncode == 125 and "bad format of filter (expected name=value)" in cp.stderr
    cp = k3c(apiserver, "events", "-n", ns, "--since", "yesterday")
    assert cp.returncode == 125 and cp.stderr.count("\n") == 1
    out = ok(apiserver, "events", "-n", ns, "--since", "1h", "--until", until, "-f", "event=die", "--format", "{{json .}}")
    (doc,) = [json.loads(line) for line in out.splitlines()]
    assert list(doc) == ["status", "id", "from", "Type", "Action", "Actor", "scope", "time", "timeNano"]
    assert doc["id"] == docker_id(job) and doc["from"] == "busybox" and doc["Actor"] == {
        "ID": docker_id(job), "Attributes": {"exitCode": "1", "image": "busybox", "name": "job", "tier": "batch"}}
    assert doc["time"] == doc["timeNano"] // 10**9
    out = ok(apiserver, "events", "-n", ns, "--since", "1h", "--until", until, "-f", "type=volume", "--format", "json")
    assert list(json.loads(out)) == ["Type", "Action", "Actor", "scope", "time", "timeNano"]  # no legacy fields
    fields = "{{.ID}}|{{.Status}}|{{.From}}|{{.Scope}}|{{.Time}}"
    out = ok(apiserver, "events", "-n", ns, "--since", "1h", "--until", until, "-f", "event=die", "--format", fields)
    assert re.fullmatch(rf"{docker_id(job)}\|die\|busybox\|local\|\d{{10}}\n", out)
    reader = EventsReader(apiserver.kubeconfig, "-n", ns)
    assert reader.stop() == ""  # Ctrl-C ends it quietly


# ---- completion -------------------------------------------------------------------------------------
def test_completion_scripts(apiserver, tmp_path):
    bash = ok(apiserver, "completion", "bash")
    script = tmp_path / "k3c.bash"
    script.write_text(bash)
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    for word in ("run)", "--publish", "volume/rm)", "k3c ps -a --format '{{.Names}}'", "complete -F _k3c k3c"):
        assert word in bash
    zsh = ok(apiserver, "completion", "zsh")
    assert zsh.startswith("#compdef k3c") and "compdef _k3c k3c" in zsh and "'run:Create and run" in zsh
    # bash completes a container name after `k3c rm ` (names come from a stubbed `k3c ps`)
    stub = tmp_path / "bin"
    stub.mkdir()
    (stub / "k3c").write_text("#!/bin/sh\necho alpha; echo beta\n")
    (stub / "k3c").chmod(0o755)
    probe = (f"source {script}; COMP_WORDS=(k3c rm -f a); COMP_CWORD=3; _k3c; echo \"${{COMPREPLY[@]}}\"; "
             "COMP_WORDS=(k3c volume ''); COMP_CWORD=2; _k3c; echo \"${COMPREPLY[@]}\"; "
             "COMP_WORDS=(k3c run --restart ''); COMP_CWORD=3; _k3c; echo \"[${COMPREPLY[@]}]\"")
    cp = subprocess.run(["bash", "-c", probe], capture_output=True, text=True,
                        env=dict(os.environ, PATH=f"{stub}:{os.environ['PATH']}"))
    assert cp.stdout.splitlines() == ["alpha", "create ls rm inspect prune", "[]"], cp.stderr
    if shutil.which("zsh"):
        zfile = tmp_path / "_k3c"
        zfile.write_text(zsh)
        assert subprocess.run(["zsh", "-n", str(zfile)], capture_output=True).returncode == 0
        driver = (  # stub zsh's completion builtins, then complete `k3c rm -f a` and `k3c volume `
            "compadd() { shift $(( ${@[(i)--]} )); print -l -- \"$@\"; }; "
            "_describe() { print -l -- \"${(@P)4}\"; }; compdef() { : }; "
            f"source {zfile}; words=(k3c rm -f a); CURRENT=4; PREFIX=a; _k3c; "
            "words=(k3c volume ''); CURRENT=3; PREFIX=''; _k3c")
        cp = subprocess.run(["zsh", "-f", "-c", driver], capture_output=True, text=True,
                            env=dict(os.environ, PATH=f"{stub}:{os.environ['PATH']}"))
        assert cp.stdout.splitlines()[:3] == ["alpha", "beta", "create:Create a volume"], cp.stderr


# ---- end to end: the real daemon (containerd, operator, streams) ------------------------------------
def dk3c(daemon, *args: str, input: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    """k3c against the daemon; a hang fails with every thread's stack (faulthandler dumps on SIGABRT)."""
    env = {**os.environ, "K3C_KUBECONFIG": str(daemon.kubeconfig), "PYTHONFAULTHANDLER": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "k3c.cli.main", *args], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        out, err = proc.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)
        out, err = proc.communicate()
        raise AssertionError(f"k3c {' '.join(args)} hung; its threads:\n{err[-6000:]}") from None
    assert "Traceback" not in err, err
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _gone(daemon, name: str) -> bool:
    from k3c.apierrors import NotFound

    try:
        daemon.api.get(f"{G}/namespaces/default/localcontainers/{name}")
    except NotFound:
        return True
    return False


def test_e2e_run_in_the_foreground_exits_with_the_containers_code(daemon):
    from tests.support.daemon_harness import TEST_IMAGE, wait_until

    cp = dk3c(daemon, "run", "--rm", "--name", "e2e-fg", TEST_IMAGE, "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (cp.returncode, cp.stdout, cp.stderr) == (3, "out\n", "err\n")
    wait_until(lambda: _gone(daemon, "e2e-fg"), 10, "the --rm container to be removed")
    cp = dk3c(daemon, "run", "--name", "e2e-env", "-e", "FOO=bar", "-w", "/tmp", "-u", "1000", TEST_IMAGE,
              "sh", "-c", "echo $FOO; pwd; id -u")
    assert (cp.returncode, cp.stdout) == (0, "bar\n/tmp\n1000\n"), cp.stderr
    assert "Exited (0)" in dk3c(daemon, "ps", "-a", "-f", "name=e2e-env").stdout
    assert dk3c(daemon, "rm", "e2e-env").returncode == 0


def test_e2e_foreground_rm_runs_under_load_print_their_output(daemon):
    """Issue 10 (a race seen under load): `run --rm` of a quick command, twelve at once. The CLI attaches
    after the POST; a container that is over by then must still show its output and exit code, not an
    empty 0 (its object and log removed already) nor a 404."""
    from concurrent.futures import ThreadPoolExecutor

    from tests.support.daemon_harness import TEST_IMAGE

    def run(i: int) -> tuple[int, str, str]:
        cp = dk3c(daemon, "run", "--rm", TEST_IMAGE, "sh", "-c", f"echo out{i}; exit {i % 4}", timeout=120)
        return cp.returncode, cp.stdout, cp.stderr

    with ThreadPoolExecutor(12) as pool:
        results = list(pool.map(run, range(48)))
    wrong = [(i, r) for i, r in enumerate(results) if r != (i % 4, f"out{i}\n", "")]
    assert not wrong, wrong


def test_e2e_run_detached_ps_stop_start_rm(daemon):
    from tests.support.daemon_harness import TEST_IMAGE

    cp = dk3c(daemon, "run", "-d", "--name", "e2e-bg", TEST_IMAGE, "sleep", "1000")
    cid = cp.stdout.strip()
    assert cp.returncode == 0 and HEX64.match(cid), cp.stderr
    ps = dk3c(daemon, "ps", "--format", "{{.ID}} {{.Names}} {{.State}}").stdout
    assert f"{cid[:12]} e2e-bg running" in ps.splitlines()
    assert dk3c(daemon, "stop", "-t", "1", "e2e-bg").stdout == "e2e-bg\n"
    assert dk3c(daemon, "ps", "-a", "-f", "name=e2e-bg", "--format", "{{.Status}}").stdout.startswith("Exited (137)")
    assert dk3c(daemon, "ps", "-q", "-f", "name=e2e-bg").stdout == ""
    assert dk3c(daemon, "start", "e2e-bg").stdout == "e2e-bg\n"
    new = dk3c(daemon, "inspect", "-f", "{{.Id}} {{.State.Status}}", "e2e-bg").stdout.split()
    assert new == [cid, "running"]  # the same container: its ID stays
    assert dk3c(daemon, "restart", "-t", "0", cid[:12]).stdout == f"{cid[:12]}\n"
    assert dk3c(daemon, "ps", "-q", "--no-trunc", "-f", "name=e2e-bg").stdout == f"{cid}\n"
    cp = dk3c(daemon, "rm", "e2e-bg")
    assert cp.returncode == 1 and "You cannot remove a running container" in cp.stderr
    assert dk3c(daemon, "rm", "-f", "e2e-bg").stdout == "e2e-bg\n"
    assert _gone(daemon, "e2e-bg")
    assert "e2e-bg" not in dk3c(daemon, "ps", "-a").stdout


def test_e2e_compose_style_names(daemon, kubectl):
    """`run --name proj_web_1` (compose's names): docker's surfaces use it, kubectl shows the mapped object."""
    from tests.support.daemon_harness import TEST_IMAGE, wait_until
    from tests.support.harness import run_kubectl

    cp = dk3c(daemon, "run", "-d", "--name", "proj_web_1", TEST_IMAGE, "sh", "-c", "echo hello; sleep 1000")
    cid = cp.stdout.strip()
    assert cp.returncode == 0 and HEX64.match(cid), cp.stderr
    assert f"{cid[:12]} proj_web_1" in dk3c(daemon, "ps", "--format", "{{.ID}} {{.Names}}").stdout.splitlines()
    assert dk3c(daemon, "inspect", "-f", "{{.Name}} {{.Id}}", "proj_web_1").stdout == f"/proj_web_1 {cid}\n"
    wait_until(lambda: dk3c(daemon, "logs", "proj_web_1").stdout == "hello\n", 10, "the container's output")
    names = run_kubectl(kubectl, daemon.kubeconfig, "get", "lc", "-o", "name").stdout.split()
    assert [n for n in names if "proj" in n] == [f"localcontainer.k3c.io/proj-web-1-{_hash6('proj_web_1')}"]
    assert dk3c(daemon, "rm", "-f", "proj_web_1").stdout == "proj_web_1\n"


def _hash6(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:6]


def test_e2e_events_follow_a_real_container_as_docker_does(daemon):
    """docker 20.10's sequence for the same commands (network events aside: k3c has no network objects)."""
    from tests.support.daemon_harness import TEST_IMAGE

    reader = EventsReader(daemon.kubeconfig, "-f", "type=container", "-f", "type=volume")
    assert dk3c(daemon, "volume", "create", "e2e-evvol").returncode == 0
    cid = dk3c(daemon, "run", "-d", "--name", "e2e-ev", "-v", "e2e-evvol:/data", TEST_IMAGE, "sleep", "1000").stdout.strip()
    assert HEX64.match(cid)
    assert dk3c(daemon, "stop", "-t", "1", "e2e-ev").returncode == 0  # sleep ignores SIGTERM: killed after 1 s
    assert dk3c(daemon, "restart", "-t", "1", "e2e-ev").returncode == 0  # not running: a start, then "restart"
    assert dk3c(daemon, "kill", "e2e-ev").returncode == 0
    assert dk3c(daemon, "rm", "e2e-ev").returncode == 0
    assert dk3c(daemon, "volume", "rm", "e2e-evvol").returncode == 0
    reader.wait_for(" volume destroy e2e-evvol")
    events = [(kind, action, actor, attrs) for _, kind, action, actor, attrs in parse_lines(reader.stop().splitlines())
              if actor in (cid, "e2e-evvol")]
    c = f"image={TEST_IMAGE}, name=e2e-ev"
    mount = ("volume", "mount", "e2e-evvol", f"container={cid}, destination=/data, driver=local, propagation=, "
                                             "read/write=true")
    unmount = ("volume", "unmount", "e2e-evvol", f"container={cid}, driver=local")
    assert events == [
        ("volume", "create", "e2e-evvol", "driver=local"),
        ("volume", "create", "e2e-evvol", "driver=local"),  # docker tells it again for the container
        ("container", "create", cid, c), mount, ("container", "start", cid, c),
        ("container", "kill", cid, f"{c}, signal=15"), ("container", "kill", cid, f"{c}, signal=9"),
        ("container", "die", cid, f"exitCode=137, {c}"), unmount, ("container", "stop", cid, c),
        mount, ("container", "start", cid, c), ("container", "restart", cid, c),
        ("container", "kill", cid, f"{c}, signal=9"), ("container", "die", cid, f"exitCode=137, {c}"), unmount,
        ("container", "destroy", cid, c),
        ("volume", "destroy", "e2e-evvol", "driver=local"),
    ], "\n".join(map(str, events))


def _events_of(argv: list[str], env: dict | None, run: Callable[..., subprocess.CompletedProcess]) -> list[str]:
    """The events one tool prints while the same commands run: volume, container lifecycle, rename."""
    reader = EventsReader.command(argv, env)
    assert run("volume", "create", "evvol").returncode == 0
    cp = run("run", "-d", "--name", "ev", "-l", "app=demo", "-v", "evvol:/data", TEST_IMAGE, "sleep", "1000")
    assert cp.returncode == 0, cp.stderr
    for args in (("stop", "-t", "1", "ev"), ("start", "ev"), ("restart", "-t", "1", "ev"), ("kill", "ev"),
                 ("rm", "ev"), ("volume", "rm", "evvol")):
        assert run(*args).returncode == 0, args
    reader.wait_for(" volume destroy evvol")
    return [_normalized(line, cp.stdout.strip()) for line in reader.stop().splitlines()
            if " network " not in line and " image " not in line]


def _normalized(line: str, cid: str) -> str:
    (t, kind, action, actor, attrs), = parse_lines([line])
    return f"{kind} {action} {actor} ({attrs})".replace(cid, "<ID>")


def test_e2e_events_match_docker_20_10(daemon, docker_peer):
    """The same commands against dockerd and k3c: the same lines (times and IDs aside; k3c has no networks)."""
    expected = _events_of(docker_peer.cli("events"), None,
                          lambda *a: subprocess.run(docker_peer.cli(*a), capture_output=True, text=True, timeout=60))
    ours = _events_of([sys.executable, "-m", "k3c.cli.main", "events"],
                      {**os.environ, "K3C_KUBECONFIG": str(daemon.kubeconfig)}, lambda *a: dk3c(daemon, *a))
    assert ours == expected, "\n".join(difflib.unified_diff(expected, ours, "docker", "k3c", lineterm=""))


def test_e2e_failures_are_one_line_with_dockers_codes_and_leave_nothing(daemon):
    from tests.support.daemon_harness import TEST_IMAGE

    cp = dk3c(daemon, "run", "-d", "--name", "e2e-noimg", "k3c.test/does-not-exist:1")
    assert cp.returncode == 125 and cp.stderr.splitlines()[-1].startswith("k3c: Error response from daemon: ")
    cp = dk3c(daemon, "run", "--name", "e2e-nocmd", TEST_IMAGE, "no-such-command")
    assert cp.returncode == 127 and "executable file not found" in cp.stderr and cp.stderr.count("\n") == 1
    cp = dk3c(daemon, "stop", "no-such-container")
    assert cp.returncode == 1 and cp.stderr == "Error response from daemon: No such container: no-such-container\n"
    from tests.support.daemon_harness import wait_until

    wait_until(lambda: _gone(daemon, "e2e-noimg") and _gone(daemon, "e2e-nocmd"), 10, "failed runs to be removed")


def test_e2e_named_volume_outlives_its_container(daemon):
    from tests.support.daemon_harness import TEST_IMAGE

    assert dk3c(daemon, "volume", "create", "e2e-data").stdout == "e2e-data\n"
    cp = dk3c(daemon, "run", "--rm", "-v", "e2e-data:/data", TEST_IMAGE, "sh", "-c", "echo kept > /data/f")
    assert cp.returncode == 0, cp.stderr
    cp = dk3c(daemon, "run", "--rm", "-v", "e2e-data:/data:ro", TEST_IMAGE, "cat", "/data/f")
    assert (cp.returncode, cp.stdout) == (0, "kept\n"), cp.stderr
    assert dk3c(daemon, "volume", "rm", "e2e-data").stdout == "e2e-data\n"


def test_global_flags_before_the_command(apiserver, api, ns):
    lc(api, ns, "early-flags")
    cp = k3c(apiserver, "--kubeconfig", str(apiserver.kubeconfig), "-n", ns, "ps", "-a", "--format", "{{.Names}}",
             env={"K3C_KUBECONFIG": "/nonexistent/kubeconfig.yaml"})
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout == "early-flags\n"
    bad = k3c(apiserver, "--bogus", "ps")
    assert bad.returncode == 125 and bad.stderr.count("\n") == 1
