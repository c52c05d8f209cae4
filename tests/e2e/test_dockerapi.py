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

DOCKER_CLI = "/usr/bin/docker"  # Debian's docker.io client (the one the issue names)


class UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=30)
        self.socket_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(30)
        self.sock.connect(self.socket_path)


@pytest.fixture(scope="module")
def sock(daemon) -> str:
    return str(daemon.state_dir / "docker.sock")


def raw(sock: str, method: str, path: str, body: bytes | None = None,
        headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    conn = UnixHTTP(sock)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def cli(sock: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    if not os.access(DOCKER_CLI, os.X_OK):
        pytest.fail(f"{DOCKER_CLI} is missing: install Debian's docker.io (client only)")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/root"),
           "DOCKER_HOST": f"unix://{sock}", "DOCKER_CONFIG": str(Path(sock).parent / "docker-config")}
    return subprocess.run([DOCKER_CLI, *args], capture_output=True, text=True, timeout=timeout, env=env)


def ok(sock: str, *args: str, **kw) -> str:
    cp = cli(sock, *args, **kw)
    assert cp.returncode == 0, f"docker {' '.join(args)} failed ({cp.returncode}): {cp.stderr}"
    return cp.stdout


@pytest.fixture(scope="module")
def dockerpy(sock):
    client = docker.DockerClient(base_url=f"unix://{sock}", timeout=60)
    yield client
    client.close()


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


def test_docker_socket_flag_puts_it_elsewhere_and_stop_removes_it(tmp_path):
    """`--docker-socket PATH` serves there (not in the state dir); stopping the daemon removes the socket."""
    from tests.support.daemon_harness import DaemonProcess

    elsewhere = tmp_path / "run" / "docker.sock"
    d = DaemonProcess(tmp_path / "d", extra_args=["--docker-socket", str(elsewhere)])
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
