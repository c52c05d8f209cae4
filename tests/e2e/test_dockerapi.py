"""The Docker Engine API on `k3c daemon`'s socket, driven by real clients: Debian's docker CLI (20.10) with
DOCKER_HOST, docker-py from PyPI, and raw HTTP for the error cases the clients never send.

One daemon for the module (the ``daemon`` fixture); every test starts from whatever the others left.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import stat
import subprocess
from pathlib import Path

import docker
import pytest

from k3c import dockerid
from tests.support.daemon_harness import TEST_IMAGE
from tests.support.harness import first_line, free_port

DOCKER_CLI = "/usr/bin/docker"  # Debian's docker.io client (the one the issue names)


class UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=30)
        self.socket_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(30)
        self.sock.connect(self.socket_path)


def raw(sock: str, method: str, path: str, body: bytes | None = None,
        headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    conn = UnixHTTP(sock)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def cli_env(sock: str) -> dict[str, str]:
    if not os.access(DOCKER_CLI, os.X_OK):
        pytest.fail(f"{DOCKER_CLI} is missing: install Debian's docker.io (client only)")
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/root"),
            "DOCKER_HOST": f"unix://{sock}", "DOCKER_CONFIG": str(Path(sock).parent / "docker-config")}


def cli(sock: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([DOCKER_CLI, *args], capture_output=True, text=True, timeout=timeout, env=cli_env(sock))


def ok(sock: str, *args: str, **kw) -> str:
    cp = cli(sock, *args, **kw)
    assert cp.returncode == 0, f"docker {' '.join(args)} failed ({cp.returncode}): {cp.stderr}"
    return cp.stdout


# ---- the socket and the system endpoints -----------------------------------------------------------
def test_socket_is_private_and_announced(daemon, sock):
    st = os.stat(sock)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert daemon.status()["frontends"] == {"docker": f"unix://{sock}"}
    assert not [p for p in daemon.state_dir.iterdir() if p.name.startswith(".docker-sock-")]


def test_ping_headers_on_get_and_head(sock):
    for method in ("GET", "HEAD"):
        for path in ("/_ping", "/v1.41/_ping", "/v1.24/_ping"):
            status, headers, body = raw(sock, method, path)
            assert status == 200, (method, path, body)
            assert headers["api-version"] == "1.41"
            assert headers["ostype"] == "linux"
            assert headers["builder-version"] == "1"
            assert body == (b"OK" if method == "GET" else b"")


def test_version_and_info_json(sock):
    for path in ("/version", "/v1.41/version"):
        status, _, body = raw(sock, "GET", path)
        assert status == 200
        doc = json.loads(body)
        assert (doc["ApiVersion"], doc["MinAPIVersion"], doc["Os"]) == ("1.41", "1.24", "linux")
        assert doc["Components"][0]["Name"] == "Engine"
    status, _, body = raw(sock, "GET", "/v1.41/info")
    assert status == 200
    doc = json.loads(body)
    assert doc["Swarm"]["LocalNodeState"] == "inactive"
    assert doc["OSType"] == "linux" and doc["NCPU"] >= 1 and doc["MemTotal"] > 0
    assert isinstance(doc["Containers"], int) and isinstance(doc["Images"], int) and doc["Images"] >= 1


def test_docker_cli_version_and_info(sock):
    out = ok(sock, "version", "--format", "{{json .Server}}")
    server = json.loads(out)
    assert server["ApiVersion"] == "1.41" and server["MinAPIVersion"] == "1.24"
    out = ok(sock, "info", "--format", "{{json .}}")
    info = json.loads(out)
    assert info["Swarm"]["LocalNodeState"] == "inactive"
    assert info["OSType"] == "linux"
    text = ok(sock, "info")  # the human form renders every section without complaint
    assert "Swarm: inactive" in text
    assert "ERROR" not in text.upper().replace("ERRORS", "")


def test_docker_py_ping_version_info(dockerpy):
    assert dockerpy.ping() is True
    assert dockerpy.api.api_version == "1.41"  # negotiated from /version
    assert dockerpy.version()["ApiVersion"] == "1.41"
    assert dockerpy.info()["Swarm"]["LocalNodeState"] == "inactive"


# ---- bad requests get docker's 4xx and the server keeps serving --------------------------------------
@pytest.mark.parametrize(("method", "path", "want", "words"), [
    ("GET", "/no/such/endpoint", 404, "page not found"),
    ("GET", "/v1.41/no/such/endpoint", 404, "page not found"),
    ("GET", "/v1.99/version", 400, "client version 1.99 is too new. Maximum supported API version is 1.41"),
    ("GET", "/v1.12/_ping", 400, "client version 1.12 is too old. Minimum supported API version is 1.24"),
    ("POST", "/version", 405, "Method Not Allowed"),
    ("DELETE", "/v1.41/info", 405, "Method Not Allowed"),
])
def test_bad_requests_answer_docker_errors(sock, method, path, want, words):
    status, headers, body = raw(sock, method, path, body=b"{not json" if method == "POST" else None)
    assert status == want, body
    assert headers["content-type"].startswith("application/json")
    assert words in json.loads(body)["message"]
    status, _, _ = raw(sock, "GET", "/_ping")
    assert status == 200


def test_docker_socket_flag_puts_it_elsewhere_and_stop_removes_it(tmp_path_factory):
    """`--docker-socket PATH` serves there (not in the state dir); stopping the daemon removes the socket."""
    from tests.support.daemon_harness import DaemonProcess

    base = tmp_path_factory.mktemp("sockflag")  # short: containerd's socket path limit (tmp_path has the test's name)
    elsewhere = base / "run" / "docker.sock"
    d = DaemonProcess(base / "d", extra_args=["--docker-socket", str(elsewhere)])
    try:
        d.start()
        assert d.status()["frontends"] == {"docker": f"unix://{elsewhere}"}
        assert not (d.state_dir / "docker.sock").exists()
        assert stat.S_IMODE(os.stat(elsewhere).st_mode) == 0o600
        assert json.loads(ok(str(elsewhere), "version", "--format", "{{json .Server.APIVersion}}")) == "1.41"
        assert d.stop() == 0
        assert not elsewhere.exists()
    finally:
        leftovers = d.close()
    assert not leftovers, leftovers


# ---- containers -------------------------------------------------------------------------------------
def _ps(sock: str, *args: str) -> list[str]:
    return ok(sock, "ps", "--format", "{{.Names}}", *args).split()


def test_docker_cli_container_lifecycle(daemon, sock):
    """run -d, ps with filters, inspect, stop, start, restart, kill, rm -f: the objects k3c writes, one ID."""
    port = free_port()
    cid = ok(sock, "run", "-d", "--name", "proj_web_1", "-l", "app=web", "-p", f"{port}:80",
             TEST_IMAGE, "sleep", "300").strip()
    assert len(cid) == 64 and all(c in "0123456789abcdef" for c in cid)
    obj = daemon.container(dockerid.object_name("proj_web_1"))
    assert obj is not None and dockerid.object_id(obj) == cid  # kubectl sees what docker made, same ID
    assert obj["metadata"]["annotations"]["k3c.io/name"] == "proj_web_1"
    assert obj["spec"]["labels"] == {"app": "web"}
    assert obj["spec"]["ports"] == [{"containerPort": 80, "hostPort": port, "protocol": "TCP"}]
    assert "proj_web_1" in _ps(sock)
    assert _ps(sock, "--filter", "label=app=web") == ["proj_web_1"]
    assert _ps(sock, "--filter", "label=app=other") == []
    assert _ps(sock, "--filter", "name=web_1", "--filter", "status=running") == ["proj_web_1"]
    assert _ps(sock, "--filter", f"id={cid[:10]}") == ["proj_web_1"]
    assert _ps(sock, "--filter", f"ancestor={TEST_IMAGE}") == ["proj_web_1"]
    doc = json.loads(ok(sock, "inspect", "proj_web_1"))[0]
    assert doc["Id"] == cid and doc["Name"] == "/proj_web_1" and doc["State"]["Running"] is True
    assert doc["Config"]["Tty"] is False and doc["Config"]["Labels"] == {"app": "web"}
    assert doc["NetworkSettings"]["Ports"]["80/tcp"][0]["HostPort"] == str(port)
    assert doc["HostConfig"]["LogConfig"] == {"Type": "json-file", "Config": {}}
    assert ok(sock, "stop", "-t", "1", "proj_web_1").strip() == "proj_web_1"
    assert _ps(sock, "-a", "--filter", "status=exited") == ["proj_web_1"]
    assert _ps(sock) == []
    ok(sock, "start", "proj_web_1")
    assert json.loads(ok(sock, "inspect", "-f", "{{json .State.Running}}", cid[:12])) is True
    ok(sock, "restart", "-t", "1", "proj_web_1")
    assert json.loads(ok(sock, "inspect", "-f", "{{json .RestartCount}}", "proj_web_1")) >= 0
    assert json.loads(ok(sock, "inspect", "-f", "{{json .Id}}", "proj_web_1")) == cid  # restart keeps the ID
    ok(sock, "kill", "proj_web_1")
    assert json.loads(ok(sock, "inspect", "-f", "{{json .State.Running}}", "proj_web_1")) is False
    ok(sock, "start", "proj_web_1")
    cp = cli(sock, "rm", "proj_web_1")
    assert cp.returncode != 0 and "cannot remove a running container" in cp.stderr
    ok(sock, "rm", "-f", "proj_web_1")
    assert daemon.container(dockerid.object_name("proj_web_1")) is None
    cp = cli(sock, "inspect", "proj_web_1")
    assert cp.returncode != 0 and "No such object: proj_web_1" in cp.stderr


def test_docker_cli_name_conflict_and_created_state(sock):
    ok(sock, "create", "--name", "twice", TEST_IMAGE, "true")
    assert _ps(sock, "-a", "--filter", "status=created") == ["twice"]
    cp = cli(sock, "create", "--name", "twice", TEST_IMAGE, "true")
    assert cp.returncode != 0 and 'The container name "/twice" is already in use' in cp.stderr
    ok(sock, "rm", "twice")
    assert _ps(sock, "-a", "--filter", "name=twice") == []


def test_docker_py_containers(daemon, dockerpy):
    c = dockerpy.containers.run(TEST_IMAGE, ["sleep", "300"], detach=True, name="pyctr", labels={"via": "py"})
    assert len(c.id) == 64 and c.name == "pyctr"
    c.reload()
    assert c.status == "running"
    assert [x.name for x in dockerpy.containers.list(filters={"label": "via=py"})] == ["pyctr"]
    c.stop(timeout=1)
    c.reload()
    assert c.status == "exited"
    c.remove(force=True)
    with pytest.raises(docker.errors.NotFound):
        dockerpy.containers.get("pyctr")
    unnamed = dockerpy.containers.create(TEST_IMAGE, "true")
    assert dockerid.valid_object_name(unnamed.name)  # a generated docker name, adjective-surname
    unnamed.remove()


@pytest.mark.parametrize(("body", "status", "words"), [
    (b'{"Image": "k3c.test/absent:1"}', 404, "No such image: k3c.test/absent:1"),
    (b'{"Image": "IMG", "HostConfig": {"Runtime": "kata"}}', 400, "HostConfig.Runtime"),
    (b'{"Image": "IMG", "HostConfig": {"CpusetMems": "0", "Runtime": "runc"}}', 400, "HostConfig.CpusetMems"),
    (b'{"Image": "IMG", "MacAddress": "02:42:ac:11:00:02"}', 400, "Config.MacAddress"),
    (b'{"Image": 5}', 400, "cannot unmarshal"),
    (b'{"Image": "IMG", "Cmd": "echo"}', 400, "Config.Cmd"),
    (b'{"Image": "IMG"', 400, "invalid JSON"),
    (b'["Image"]', 400, "invalid JSON"),
    (b'{"Image": "HUGE"}', 400, "request body larger than 4 MiB"),  # HUGE: 5 MiB of x
    (b'{"Image": "IMG", "HostConfig": {"NetworkMode": "nowhere"}}', 404, "network nowhere not found"),
])
def test_create_refuses_what_k3c_does_not_honour(daemon, sock, body, status, words):
    body = body.replace(b"IMG", TEST_IMAGE.encode()).replace(b"HUGE", b"x" * (5 * 1024 * 1024))
    code, _, answer = raw(sock, "POST", "/v1.41/containers/create?name=refused", body=body,
                          headers={"Content-Type": "application/json"})
    assert code == status, answer
    assert words in json.loads(answer)["message"]
    assert daemon.container("refused") is None


def test_create_accepts_a_full_zero_host_config(sock, daemon):
    """What clients send when nothing was asked: every field present, all zero (plus runc, private cgroupns)."""
    host = {"Binds": None, "ContainerIDFile": "", "LogConfig": {"Type": "", "Config": {}}, "NetworkMode": "default",
            "PortBindings": {}, "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0}, "AutoRemove": False,
            "VolumeDriver": "", "VolumesFrom": None, "CapAdd": None, "CapDrop": None, "CgroupnsMode": "private",
            "Dns": [], "DnsOptions": [], "DnsSearch": [], "ExtraHosts": None, "GroupAdd": None, "IpcMode": "",
            "Cgroup": "", "Links": None, "OomScoreAdj": 0, "PidMode": "", "Privileged": False,
            "PublishAllPorts": False, "ReadonlyRootfs": False, "SecurityOpt": None, "UTSMode": "", "UsernsMode": "",
            "ShmSize": 0, "ConsoleSize": [0, 0], "Isolation": "", "CpuShares": 0, "Memory": 0, "NanoCpus": 0,
            "BlkioWeight": 0, "Devices": [], "Ulimits": None, "MaskedPaths": None, "ReadonlyPaths": None,
            "Runtime": "runc"}
    body = json.dumps({"Image": TEST_IMAGE, "Cmd": ["true"], "HostConfig": host}).encode()
    code, _, answer = raw(sock, "POST", "/containers/create?name=zeroes", body=body,
                          headers={"Content-Type": "application/json"})
    assert code == 201, answer
    assert json.loads(answer)["Warnings"] == []
    code, _, _ = raw(sock, "DELETE", "/containers/zeroes")
    assert code == 204
    assert daemon.container("zeroes") is None


def test_wait_answers_headers_at_once_and_the_exit_code_at_the_exit(daemon, sock, dockerpy):
    ok(sock, "run", "-d", "--name", "waiter", TEST_IMAGE, "sh", "-c", "sleep 1; exit 3")
    assert ok(sock, "wait", "waiter").strip() == "3"  # not-running, the docker CLI's condition
    conn = UnixHTTP(sock)
    try:
        conn.request("POST", "/v1.41/containers/waiter/wait?condition=next-exit")
        r = conn.getresponse()  # the headers, while the container is still down
        assert r.status == 200 and r.getheader("Content-Type") == "application/json"
        ok(sock, "start", "waiter")
        assert json.loads(r.read()) == {"StatusCode": 3, "Error": None}
    finally:
        conn.close()
    ok(sock, "rm", "waiter")
    c = dockerpy.containers.run(TEST_IMAGE, ["sh", "-c", "exit 5"], detach=True, name="pywaiter")
    assert c.wait(timeout=30) == {"StatusCode": 5, "Error": None}
    c.remove()
    status, _, body = raw(sock, "POST", "/containers/pywaiter/wait")
    assert status == 404 and json.loads(body)["message"] == "No such container: pywaiter"
    status, _, body = raw(sock, "POST", "/containers/x/wait?condition=sometime")
    assert status == 400


def test_logs_framed_followed_tailed_and_raw_for_a_tty(daemon, sock, dockerpy):
    ok(sock, "run", "-d", "--name", "talker", TEST_IMAGE, "sh", "-c", "echo out1; echo err1 >&2; sleep 0.3; echo out2")
    ok(sock, "wait", "talker")
    cp = cli(sock, "logs", "talker")
    assert cp.returncode == 0 and cp.stdout == "out1\nout2\n" and cp.stderr == "err1\n"  # demuxed by the CLI
    assert ok(sock, "logs", "--tail", "1", "talker") == "out2\n"
    stamped = ok(sock, "logs", "-t", "talker").splitlines()
    assert len(stamped) == 2 and stamped[0].endswith(" out1") and stamped[0][:4].isdigit()
    status, headers, body = raw(sock, "GET", "/v1.41/containers/talker/logs?stderr=1")
    assert status == 200 and body == bytes((2, 0, 0, 0, 0, 0, 0, 5)) + b"err1\n"  # 8-byte framing
    c = dockerpy.containers.get("talker")
    assert c.logs(stdout=True, stderr=False) == b"out1\nout2\n"
    ok(sock, "rm", "talker")
    # follow: lines as they come, the stream ends when the container does
    ok(sock, "run", "-d", "--name", "ticker", TEST_IMAGE, "sh", "-c", "for i in 1 2 3; do echo tick$i; sleep 0.3; done")
    assert ok(sock, "logs", "-f", "ticker", timeout=30) == "tick1\ntick2\ntick3\n"
    ok(sock, "rm", "ticker")
    ok(sock, "run", "-d", "-t", "--name", "ttyout", TEST_IMAGE, "sh", "-c", "echo on-a-tty")
    ok(sock, "wait", "ttyout")
    status, _, body = raw(sock, "GET", "/containers/ttyout/logs?stdout=1&stderr=1")
    assert status == 200 and body.rstrip(b"\r\n") == b"on-a-tty"  # raw: no framing with a Tty
    ok(sock, "rm", "ttyout")
    status, _, body = raw(sock, "GET", "/containers/ttyout/logs?stdout=1")
    assert status == 404
    status, _, body = raw(sock, "GET", "/containers/x/logs")
    assert status == 400 and "choose at least one stream" in json.loads(body)["message"]


def test_docker_run_in_the_foreground_attaches_and_removes(daemon, sock, dockerpy):
    cp = cli(sock, "run", "--rm", "--name", "hello", TEST_IMAGE, "echo", "hi")
    assert (cp.returncode, cp.stdout) == (0, "hi\n"), cp.stderr
    cp = cli(sock, "run", "--name", "failing", TEST_IMAGE, "sh", "-c", "echo oops >&2; exit 3")
    assert (cp.returncode, cp.stderr) == (3, "oops\n")
    ok(sock, "rm", "failing")
    assert daemon.container("hello") is None  # the CLI waited for condition=removed
    out = dockerpy.containers.run(TEST_IMAGE, ["echo", "from-py"], remove=True, name="pyfg")
    assert out == b"from-py\n"
    status, _, _ = raw(sock, "POST", "/containers/x/attach?stream=1&stdout=1")
    assert status == 404


def _attach_line(sock: str, name: str, *args: str, send: bytes = b"") -> bytes:
    """The first line `docker attach` shows (b"" if none within 15 s); ``send`` is written to its stdin."""
    return first_line([DOCKER_CLI, "attach", "--sig-proxy=false", *args, name], cli_env(sock), send=send)


def test_docker_attach_to_a_detached_interactive_container(daemon, sock):
    """`docker run -d -i` keeps stdin open: `docker attach` (with or without stdin) shows the live output
    and passes its input on."""
    ok(sock, "run", "-d", "-i", "--name", "ticking", TEST_IMAGE, "sh", "-c", "while true; do echo tick; sleep 0.2; done")
    ok(sock, "run", "-d", "-i", "--name", "catting", TEST_IMAGE, "cat")
    try:
        assert _attach_line(sock, "ticking", "--no-stdin") == b"tick\n"
        assert _attach_line(sock, "ticking") == b"tick\n"
        assert _attach_line(sock, "catting", send=b"echoed\n") == b"echoed\n"
    finally:
        ok(sock, "rm", "-f", "ticking", "catting")


# ---- volumes and docker inspect's fallbacks --------------------------------------------------------------
def test_volumes_create_ls_inspect_rm(daemon, sock, dockerpy):
    assert ok(sock, "volume", "create", "--label", "team=a", "proj_data").strip() == "proj_data"
    assert "proj_data" in ok(sock, "volume", "ls", "--format", "{{.Name}}").split()
    assert ok(sock, "volume", "ls", "-q", "--filter", "label=team=a").split() == ["proj_data"]
    doc = json.loads(ok(sock, "volume", "inspect", "proj_data"))[0]
    assert (doc["Name"], doc["Driver"], doc["Scope"], doc["Labels"]) == ("proj_data", "local", "local", {"team": "a"})
    assert json.loads(ok(sock, "inspect", "--format", "{{json .Name}}", "proj_data")) == "proj_data"  # fallback
    ok(sock, "run", "-d", "--name", "user", "-v", "proj_data:/data", TEST_IMAGE, "sleep", "300")
    cp = cli(sock, "volume", "rm", "proj_data")
    assert cp.returncode != 0 and "volume is in use" in cp.stderr
    ok(sock, "rm", "-f", "user")
    assert ok(sock, "volume", "rm", "proj_data").strip() == "proj_data"
    cp = cli(sock, "volume", "inspect", "proj_data")
    assert cp.returncode != 0 and "no such volume" in cp.stderr.lower()
    v = dockerpy.volumes.create("pyvol", labels={"via": "py"})
    assert v.name == "pyvol" and [x.name for x in dockerpy.volumes.list(filters={"label": "via=py"})] == ["pyvol"]
    v.remove()
    with pytest.raises(docker.errors.NotFound):
        dockerpy.volumes.get("pyvol")
    cp = cli(sock, "inspect", "nothing-by-that-name")
    assert cp.returncode != 0 and "No such object: nothing-by-that-name" in cp.stderr


def test_images_list_and_inspect(daemon, sock, dockerpy):
    rows = ok(sock, "images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}").splitlines()
    assert [r.split()[0] for r in rows] == [TEST_IMAGE]  # k3c's pause image is not docker's to show
    short = rows[0].split()[1]
    doc = json.loads(ok(sock, "image", "inspect", TEST_IMAGE))[0]
    assert doc["Id"].startswith("sha256:" + short) and doc["RepoTags"] == [TEST_IMAGE]
    assert doc["Os"] == "linux" and doc["RootFS"]["Type"] == "layers"
    assert json.loads(ok(sock, "inspect", "--format", "{{json .Id}}", short)) == doc["Id"]  # by ID prefix
    assert ok(sock, "images", "-q", "--filter", "reference=k3c.test/*").split() == [short]
    assert dockerpy.images.get(TEST_IMAGE).id == doc["Id"]
    assert [i.id for i in dockerpy.images.list()] == [doc["Id"]]
    status, _, body = raw(sock, "GET", "/v1.41/images/k3c.test/absent:1/json")
    assert status == 404 and json.loads(body)["message"] == "No such image: k3c.test/absent:1"
