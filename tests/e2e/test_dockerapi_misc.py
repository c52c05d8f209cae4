"""The Docker API's node operations (cp, top, stats, diff, export, pause), rename, prune, events, networks and
inspect without a type, driven by Debian's docker CLI with DOCKER_HOST and by docker-py; plus `k3c docker-env`
and `k3c context install`.

One daemon for the module; each test makes and removes its own containers.
"""

from __future__ import annotations

import base64
import io
import json
import os
import select
import subprocess
import sys
import tarfile
import time
from urllib.parse import quote

import docker
import pytest

from k3c import dockerid
from k3c.api import LOCAL_CONTAINERS, NAME_ANNOTATION
from tests.e2e.test_dockerapi import DOCKER_CLI, cli, ok, raw
from tests.support.daemon_harness import TEST_IMAGE


@pytest.fixture
def running(sock):
    """A running busybox container named for the test; removed afterwards."""
    names: list[str] = []

    def make(name: str, *cmd: str) -> str:
        names.append(name)
        return ok(sock, "run", "-d", "--name", name, TEST_IMAGE, *(cmd or ("sleep", "300"))).strip()

    yield make
    for name in names:
        cli(sock, "rm", "-f", name)


# ---- cp / archive -----------------------------------------------------------------------------------
def test_docker_cp_both_ways(sock, running, tmp_path):
    running("cp_box")
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "hello.txt").write_text("hello from the host\n")
    ok(sock, "cp", str(src), "cp_box:/tmp/copied")
    status, headers, _ = raw(sock, "HEAD", "/containers/cp_box/archive?path=/tmp/copied/sub/hello.txt")
    assert status == 200
    assert json.loads(base64.b64decode(headers["x-docker-container-path-stat"]))["size"] == 20
    back = tmp_path / "back"
    ok(sock, "cp", "cp_box:/tmp/copied", str(back))
    assert (back / "sub" / "hello.txt").read_text() == "hello from the host\n"
    ok(sock, "cp", "cp_box:/etc/hostname", str(tmp_path / "hostname"))
    assert (tmp_path / "hostname").read_text().strip()
    missing = cli(sock, "cp", "cp_box:/no/such/file", str(tmp_path / "x"))
    assert missing.returncode == 1
    assert "No such container:path" in missing.stderr or "Could not find the file" in missing.stderr


def test_archive_head_and_get_carry_the_path_stat(sock, running):
    cid = running("stat_box")
    for method in ("HEAD", "GET"):
        status, headers, body = raw(sock, method, f"/v1.41/containers/{cid}/archive?path=/etc/passwd")
        assert status == 200, body
        stat = json.loads(base64.b64decode(headers["x-docker-container-path-stat"]))
        assert stat["name"] == "passwd" and stat["size"] > 0 and not stat["mode"] & (1 << 31)
        if method == "GET":
            with tarfile.open(fileobj=io.BytesIO(body)) as tar:
                assert tar.getnames() == ["passwd"]
        else:
            assert body == b""
    status, _, body = raw(sock, "HEAD", f"/containers/{cid}/archive?path=/nope")
    assert status == 404
    status, _, body = raw(sock, "GET", f"/containers/{cid}/archive")
    assert status == 400 and "path" in json.loads(body)["message"]
    status, _, body = raw(sock, "GET", "/containers/no_such_box/archive?path=/")
    assert status == 404 and json.loads(body)["message"] == "No such container: no_such_box"


def test_docker_py_put_and_get_archive(dockerpy, running):
    running("py_arch")
    box = dockerpy.containers.get("py_arch")
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        payload = b"put by docker-py\n"
        info = tarfile.TarInfo("note.txt")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    assert box.put_archive("/tmp", data.getvalue()) is True
    stream, stat = box.get_archive("/tmp/note.txt")
    assert stat["name"] == "note.txt" and stat["size"] == len(payload)
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
        member = tar.extractfile("note.txt")
        assert member is not None and member.read() == payload
    with pytest.raises(docker.errors.NotFound):
        box.put_archive("/no/such/dir", data.getvalue())


def test_put_archive_with_no_overwrite_dir_non_dir_keeps_a_directory(sock, running):
    """docker cp always sends noOverwriteDirNonDir=true: a file member cannot replace a directory."""
    cid = running("keep_box", "sh", "-c", "mkdir -p /tmp/d/x && echo kept > /tmp/d/x/f && sleep 300")
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        info = tarfile.TarInfo("x")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"file"))
    deadline = time.monotonic() + 20
    while raw(sock, "HEAD", f"/containers/{cid}/archive?path=/tmp/d/x/f")[0] != 200:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    status, _, body = raw(sock, "PUT", f"/containers/{cid}/archive?path=/tmp/d&noOverwriteDirNonDir=true",
                          body=data.getvalue(), headers={"Content-Type": "application/x-tar"})
    assert status == 400 and 'cannot overwrite directory "tmp/d/x" with non-directory' in json.loads(body)["message"]
    status, _, _ = raw(sock, "HEAD", f"/containers/{cid}/archive?path=/tmp/d/x/f")
    assert status == 200  # still there
    status, _, body = raw(sock, "PUT", f"/containers/{cid}/archive?path=/tmp/d", body=data.getvalue(),
                          headers={"Content-Type": "application/x-tar"})
    assert status == 200, body  # without the flag the member replaces what is there, as docker's does
    status, headers, _ = raw(sock, "HEAD", f"/containers/{cid}/archive?path=/tmp/d/x")
    assert json.loads(base64.b64decode(headers["x-docker-container-path-stat"]))["size"] == 4


# ---- top / stats / diff / export ----------------------------------------------------------------------
def test_docker_top(sock, running):
    running("top_box", "sleep", "301")
    out = ok(sock, "top", "top_box").splitlines()
    assert out[0].split()[:3] == ["UID", "PID", "PPID"]
    assert any("sleep 301" in line for line in out[1:])
    custom = ok(sock, "top", "top_box", "-o", "pid,args").splitlines()
    assert custom[0].split() == ["PID", "COMMAND"]
    bad = cli(sock, "top", "top_box", "--no-such-ps-option")
    assert bad.returncode == 1 and "Error response from daemon" in bad.stderr


def test_docker_stats_no_stream(sock, dockerpy, running):
    cid = running("stats_box")
    out = ok(sock, "stats", "--no-stream", "--format", "{{.Name}} {{.ID}} {{.MemUsage}} {{.PIDs}}", "stats_box")
    name, short, *rest = out.split()
    assert (name, short) == ("stats_box", cid[:12])
    assert rest[-1] != "0" and "/" in " ".join(rest)
    doc = dockerpy.api.stats(cid, stream=False)
    assert doc["id"] == cid and doc["name"] == "/stats_box"
    assert doc["memory_stats"]["usage"] > 0 and doc["cpu_stats"]["cpu_usage"]["total_usage"] > 0
    assert doc["precpu_stats"]["cpu_usage"]["total_usage"] > 0  # the previous second's sample
    stream = dockerpy.api.stats(cid, stream=True, decode=True)
    first, second = next(stream), next(stream)
    assert first["id"] == cid and second["precpu_stats"] == first["cpu_stats"]
    stream.close()


def test_docker_diff_and_export(sock, running):
    running("fs_box", "sh", "-c", "mkdir /made && echo x > /made/file && rm /etc/group && sleep 300")
    deadline = time.monotonic() + 20
    changes = ""
    while time.monotonic() < deadline:
        changes = ok(sock, "diff", "fs_box")
        if "A /made/file" in changes:
            break
        time.sleep(0.2)
    lines = changes.splitlines()
    assert "A /made" in lines and "A /made/file" in lines and "D /etc/group" in lines
    assert "C /etc" in lines
    proc = subprocess.run(f"{DOCKER_CLI} export fs_box | tar t", shell=True, capture_output=True,
                          text=True, timeout=60, env={"DOCKER_HOST": f"unix://{sock}", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    names = {n.rstrip("/") for n in proc.stdout.split()}
    assert {"bin/busybox", "made/file", "etc/passwd"} <= names and "etc/group" not in names


# ---- pause / rename / prune ---------------------------------------------------------------------------
def test_docker_pause_unpause(sock, running):
    running("frozen_box")
    assert ok(sock, "pause", "frozen_box").strip() == "frozen_box"
    assert ok(sock, "inspect", "-f", "{{.State.Status}} {{.State.Paused}}", "frozen_box").split() == ["paused", "true"]
    again = cli(sock, "pause", "frozen_box")
    assert again.returncode == 1 and "is already paused" in again.stderr
    assert ok(sock, "unpause", "frozen_box").strip() == "frozen_box"
    assert ok(sock, "inspect", "-f", "{{.State.Status}}", "frozen_box").strip() == "running"
    not_paused = cli(sock, "unpause", "frozen_box")
    assert not_paused.returncode == 1 and "is not paused" in not_paused.stderr


def test_docker_kill_sends_any_signal(sock, running):
    """`docker kill -s` through the socket: a trap answers SIGHUP and the container goes on, a SIGTERM trap
    exits 143 (and, as docker's, is not restarted); a name that is no signal is docker's 400, a container
    not running its 409."""
    running("trapper", "sh", "-c", 'trap "echo got-hup" HUP; while true; do sleep 0.2; done')
    assert ok(sock, "kill", "-s", "HUP", "trapper").strip() == "trapper"
    deadline = time.monotonic() + 10
    while "got-hup" not in ok(sock, "logs", "trapper"):
        assert time.monotonic() < deadline, "the trap never ran"
        time.sleep(0.2)
    assert ok(sock, "inspect", "-f", "{{.State.Status}}", "trapper").strip() == "running"
    status, _, body = raw(sock, "POST", "/containers/trapper/kill?signal=NOPE")
    assert (status, json.loads(body)) == (400, {"message": "Invalid signal: NOPE"})
    ok(sock, "run", "-d", "--restart", "always", "--name", "termed_box", TEST_IMAGE, "sh", "-c",
       'trap "echo got-term; exit 143" TERM; while true; do sleep 0.2; done')
    try:
        assert raw(sock, "POST", "/containers/termed_box/kill?signal=SIGTERM")[0] == 204
        deadline = time.monotonic() + 10
        fmt = "{{.State.Status}} {{.State.ExitCode}} {{.RestartCount}}"
        while (state := ok(sock, "inspect", "-f", fmt, "termed_box").strip()) != "exited 143 0":
            assert time.monotonic() < deadline, state
            time.sleep(0.2)
        assert "got-term" in ok(sock, "logs", "termed_box")
        time.sleep(2)  # docker 20.10 does not restart what its kill ended, whatever the policy
        assert ok(sock, "inspect", "-f", fmt, "termed_box").strip() == "exited 143 0"
        again = cli(sock, "kill", "-s", "HUP", "termed_box")
        assert again.returncode == 1 and again.stderr.startswith(
            "Error response from daemon: Cannot kill container: termed_box: Container ") \
            and again.stderr.endswith(" is not running\n"), again.stderr
    finally:
        cli(sock, "rm", "-f", "termed_box")


def test_docker_rename(daemon, sock, running):
    cid = running("old_name")
    obj_name = dockerid.object_name("old_name")
    ok(sock, "rename", "old_name", "New.Name_2")
    assert ok(sock, "inspect", "-f", "{{.Name}} {{.Id}}", cid).split() == ["/New.Name_2", cid]
    obj = daemon.container(obj_name)
    assert obj is not None and obj["metadata"]["annotations"]["k3c.io/name"] == "New.Name_2"
    running("other_name")
    taken = cli(sock, "rename", "New.Name_2", "other_name")
    assert taken.returncode == 1 and "is already in use" in taken.stderr
    same = cli(sock, "rename", "New.Name_2", "New.Name_2")
    assert same.returncode == 1 and "same name" in same.stderr
    bad = cli(sock, "rename", "New.Name_2", "no/slash")
    assert bad.returncode == 1 and "Invalid container name" in bad.stderr
    ok(sock, "rename", "New.Name_2", "old_name")  # back: the fixture removes it by this name


def test_docker_ps_shows_another_clients_change_at_once(daemon, sock, running):
    """`docker ps` answers from its previous lists while nothing was written (k3c.dockerapi.cluster's
    snapshot): a write by another client, here a rename straight through the API server, shows in the
    very next list, and so does a container the k3c CLI made."""
    running("cached_one")
    before = ok(sock, "ps", "--format", "{{.Names}}").split()
    assert "cached_one" in before and before == ok(sock, "ps", "--format", "{{.Names}}").split()
    obj_name = dockerid.object_name("cached_one")
    daemon.api.merge_patch(LOCAL_CONTAINERS.path("default", obj_name),
                           {"metadata": {"annotations": {NAME_ANNOTATION: "renamed_elsewhere"}}})
    after = ok(sock, "ps", "--format", "{{.Names}}").split()
    assert "renamed_elsewhere" in after and "cached_one" not in after
    daemon.api.merge_patch(LOCAL_CONTAINERS.path("default", obj_name),
                           {"metadata": {"annotations": {NAME_ANNOTATION: "cached_one"}}})  # (the fixture's name)
    made = _k3c("run", "-d", "--kubeconfig", str(daemon.kubeconfig), "--name", "by_the_cli", TEST_IMAGE, "sleep", "300")
    assert made.returncode == 0, made.stderr
    try:
        assert "by_the_cli" in ok(sock, "ps", "--format", "{{.Names}}").split()
    finally:
        cli(sock, "rm", "-f", "by_the_cli")


def test_docker_container_and_volume_prune(daemon, sock, running):
    running("prune_keeps_running")
    stopped = ok(sock, "create", "--name", "prune_goes", TEST_IMAGE, "true").strip()
    labelled = ok(sock, "create", "--name", "prune_spared", "-l", "keep=yes", TEST_IMAGE, "true").strip()
    ok(sock, "volume", "create", "prune_vol")
    try:
        out = ok(sock, "container", "prune", "-f", "--filter", "label!=keep=yes")
        assert stopped in out.split() and labelled not in out and "Total reclaimed space: 0B" in out
        assert "prune_goes" not in ok(sock, "ps", "-a", "--format", "{{.Names}}").split()
        assert {"prune_keeps_running", "prune_spared"} <= set(ok(sock, "ps", "-a", "--format", "{{.Names}}").split())
        status, _, body = raw(sock, "POST", "/v1.41/containers/prune?filters=" + quote(json.dumps({"label": ["nothing=here"]})))
        assert status == 200 and json.loads(body) == {"ContainersDeleted": None, "SpaceReclaimed": 0}
        status, _, body = raw(sock, "POST", "/containers/prune?filters=" + quote(json.dumps({"bogus": ["x"]})))
        assert status == 400 and json.loads(body)["message"] == "invalid filter 'bogus'"
        out = ok(sock, "volume", "prune", "-f")
        assert "prune_vol" in out.split()
        assert "prune_vol" not in ok(sock, "volume", "ls", "-q").split()
    finally:
        cli(sock, "rm", "-f", "prune_spared", "prune_goes")
        cli(sock, "volume", "rm", "-f", "prune_vol")


# ---- events -------------------------------------------------------------------------------------------
def test_docker_events_since_until_replays_what_happened(sock, running):
    t0 = time.time() - 1
    cid = running("ev_past")
    t1 = time.time() + 1
    out = ok(sock, "events", "--since", f"{t0:.3f}", "--until", f"{t1:.3f}", "--filter", "container=ev_past",
             "--format", "{{.Type}} {{.Action}} {{.Actor.ID}} {{.Actor.Attributes.name}}")
    lines = out.splitlines()
    assert f"container create {cid} ev_past" in lines and f"container start {cid} ev_past" in lines
    assert lines.index(f"container create {cid} ev_past") < lines.index(f"container start {cid} ev_past")
    status, _, body = raw(sock, "GET", f"/v1.41/events?since={t0:.3f}&until={t1:.3f}&filters="
                          + quote(json.dumps({"event": ["create"], "container": ["ev_past"]})))
    assert status == 200
    docs = [json.loads(line) for line in body.decode().splitlines()]
    assert len(docs) == 1
    doc = docs[0]
    assert (doc["Type"], doc["Action"], doc["status"], doc["id"], doc["from"]) == (
        "container", "create", "create", cid, TEST_IMAGE)
    assert doc["Actor"]["ID"] == cid and doc["Actor"]["Attributes"]["name"] == "ev_past"
    assert doc["scope"] == "local" and doc["time"] == doc["timeNano"] // 10**9 and t0 <= doc["time"] <= t1
    status, _, body = raw(sock, "GET", "/events?since=later")
    assert status == 400
    status, _, body = raw(sock, "GET", f"/events?since={t1:.0f}&until={t0:.0f}")
    assert status == 400 and "cannot be after" in json.loads(body)["message"]


def test_docker_events_since_replays_a_removed_containers_life(sock):
    """docker replays a `run --rm`'s create, start, die and destroy for --since after it is gone; k3c has
    them from the operator's Events, its object being deleted."""
    t0 = time.time() - 1
    assert cli(sock, "run", "--rm", "--name", "ev_gone", TEST_IMAGE, "sh", "-c", "exit 3").returncode == 3
    t1 = time.time() + 1
    fmt = "{{.Action}} {{.Actor.Attributes.name}} {{.Actor.Attributes.exitCode}}"
    actions = ok(sock, "events", "--since", f"{t0:.3f}", "--until", f"{t1:.3f}", "--filter",
                 "container=ev_gone", "--format", fmt).splitlines()
    assert [a.split()[0] for a in actions if a.split()[0] in ("start", "die", "destroy")] == \
        ["start", "die", "destroy"], actions
    assert "die ev_gone 3" in actions


def test_docker_events_streams_a_start(sock, running):
    env = {"DOCKER_HOST": f"unix://{sock}", "PATH": "/usr/bin:/bin"}
    watcher = subprocess.Popen([DOCKER_CLI, "events", "--filter", "event=start", "--format", "{{json .}}"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        time.sleep(1.5)  # the stream has listed and is watching
        assert watcher.poll() is None, watcher.stderr.read() if watcher.stderr else ""
        cid = ok(sock, "create", "--name", "ev_live", TEST_IMAGE, "sleep", "300").strip()
        ok(sock, "start", "ev_live")
        assert watcher.stdout is not None
        ready, _, _ = select.select([watcher.stdout], [], [], 30)
        assert ready, "no start event within 30 s"
        doc = json.loads(watcher.stdout.readline())
        assert (doc["Type"], doc["Action"], doc["id"]) == ("container", "start", cid)
        assert doc["Actor"]["Attributes"]["name"] == "ev_live" and doc["Actor"]["Attributes"]["image"] == TEST_IMAGE
    finally:
        watcher.kill()
        watcher.wait(10)
        cli(sock, "rm", "-f", "ev_live")


# ---- networks and inspect without a type ---------------------------------------------------------------
def test_networks_list_and_inspect_the_default_bridge(daemon, sock, dockerpy, running):
    cid = running("net_box")
    rows = ok(sock, "network", "ls", "--format", "{{.Name}} {{.Driver}} {{.Scope}}").splitlines()
    assert rows == ["bridge bridge local", "host host local", "none null local"]  # docker's predefined three
    doc = json.loads(ok(sock, "network", "inspect", "bridge"))[0]
    assert doc["Name"] == "bridge" and doc["Driver"] == "bridge" and len(doc["Id"]) == 64
    assert doc["Options"]["com.docker.network.bridge.name"] == daemon.bridge
    subnet = daemon.subnet
    assert doc["IPAM"]["Config"][0]["Subnet"] == subnet
    ip = daemon.container(dockerid.object_name("net_box"))["status"]["ip"]
    assert doc["Containers"][cid]["Name"] == "net_box"
    assert doc["Containers"][cid]["IPv4Address"].split("/")[0] == ip
    assert json.loads(ok(sock, "network", "inspect", "-f", "{{json .Name}}", doc["Id"][:12])) == "bridge"
    assert [n.name for n in dockerpy.networks.list()] == ["bridge", "host", "none"]
    assert dockerpy.networks.get("bridge").attrs["IPAM"]["Config"][0]["Subnet"] == subnet
    assert ok(sock, "network", "ls", "-q", "--filter", "driver=overlay") == ""
    missing = cli(sock, "network", "inspect", "proj_default")
    assert missing.returncode == 1 and "No such network: proj_default" in missing.stderr
    status, _, body = raw(sock, "GET", "/networks/proj_default")
    assert status == 404 and json.loads(body) == {"message": "network proj_default not found"}
    status, _, body = raw(sock, "GET", "/networks?filters=" + quote(json.dumps({"bogus": ["x"]})))
    assert status == 400


def test_docker_inspect_without_a_type_tries_each_kind(sock, running):
    running("kind_box")
    assert json.loads(ok(sock, "inspect", "-f", "{{json .Name}}", "kind_box")) == "/kind_box"
    assert json.loads(ok(sock, "inspect", "-f", "{{json .Driver}}", "bridge")) == "bridge"  # a network
    assert TEST_IMAGE in ok(sock, "inspect", "-f", "{{json .RepoTags}}", TEST_IMAGE)  # an image
    ok(sock, "volume", "create", "kind_vol")
    try:
        assert ok(sock, "inspect", "-f", "{{.Name}} {{.Driver}} {{.Scope}}", "kind_vol").split() == [
            "kind_vol", "local", "local"]  # a volume
    finally:
        ok(sock, "volume", "rm", "kind_vol")
    missing = cli(sock, "inspect", "no_such_thing")
    assert missing.returncode == 1 and missing.stderr.strip() == "Error: No such object: no_such_thing"


# ---- k3c docker-env and k3c context install ---------------------------------------------------------------
def _k3c(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "k3c.cli.main", *args], capture_output=True, text=True,
                          timeout=60, env={**os.environ, **(env or {})})


def test_k3c_docker_env_prints_the_daemons_socket(daemon, sock, tmp_path):
    cp = _k3c("docker-env", "--state-dir", str(daemon.state_dir))
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout.splitlines()[0] == f"export DOCKER_HOST=unix://{sock}"
    shell = subprocess.run(["sh", "-c", f'eval "$({sys.executable} -m k3c.cli.main docker-env --state-dir '
                            f'{daemon.state_dir})" && {DOCKER_CLI} version --format "{{{{.Server.APIVersion}}}}"'],
                           capture_output=True, text=True, timeout=60,
                           env={"PATH": os.environ["PATH"], "DOCKER_CONFIG": str(tmp_path / "cfg")})
    assert (shell.returncode, shell.stdout.strip()) == (0, "1.41"), shell.stderr
    none = _k3c("docker-env", "--state-dir", str(tmp_path / "nothing"))
    assert none.returncode == 1 and "no k3c daemon is running" in none.stderr and none.stdout == ""


def test_k3c_context_install_creates_the_k3c_context_idempotently(daemon, sock, tmp_path):
    env = {"DOCKER_CONFIG": str(tmp_path / "docker-config")}
    for _ in range(2):  # installing again is harmless
        cp = _k3c("context", "install", "--state-dir", str(daemon.state_dir), env=env)
        assert cp.returncode == 0, cp.stderr
        assert cp.stdout.splitlines()[0] == "k3c"
    docker_env = {"PATH": os.environ["PATH"], **env}

    def docker(*args: str) -> str:
        run = subprocess.run([DOCKER_CLI, *args], capture_output=True, text=True, timeout=60, env=docker_env)
        assert run.returncode == 0, run.stderr
        return run.stdout

    names = docker("context", "ls", "--format", "{{.Name}}").split()
    assert names.count("k3c") == 1
    inspected = json.loads(docker("context", "inspect", "k3c"))[0]
    assert inspected["Endpoints"]["docker"]["Host"] == f"unix://{sock}"
    assert docker("--context", "k3c", "version", "--format", "{{.Server.APIVersion}}").strip() == "1.41"
    docker("context", "use", "k3c")
    assert docker("info", "--format", "{{.Swarm.LocalNodeState}}").strip() == "inactive"
