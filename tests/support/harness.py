"""Test harness: real k3c processes in temporary directories on free ports, stopped by their own PID."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from k3c.api import KUBECONFIG_FILE
from tests.support.reservations import PORTS

REPO = Path(__file__).resolve().parents[2]
T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout: float = 30.0, what: str = "condition",
               interval: float = 0.02) -> T:
    """Poll ``predicate`` until it returns something truthy; AssertionError naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def free_port() -> int:
    """A port free on 127.0.0.1 now and reserved for this process: no other test process on the host gets
    it while the child it is meant for starts (tests.support.reservations)."""
    for _ in range(1000):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port: int = s.getsockname()[1]
        if PORTS.take(port):
            return port
    raise RuntimeError("no free port found that no other test process holds")


def http_get(port: int, path: str = "/", timeout: float = 10.0) -> bytes:
    """A bare HTTP/1.0 GET on 127.0.0.1 (no proxy settings involved), retried until it answers."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                s.sendall(f"GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n".encode())
                data = b""
                while chunk := s.recv(65536):
                    data += chunk
            if data:
                return data
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing answered on 127.0.0.1:{port}")
        time.sleep(0.05)


def stop_child(proc: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM a child we started, then SIGKILL if it does not go within 10 s."""
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def kubectl_versions() -> dict[str, str]:
    """kubectl binaries on this machine: 'default' plus each `kubectl.1.XX` beside the one on PATH."""
    found: dict[str, str] = {}
    main = shutil.which("kubectl")
    if main is None:
        return found
    found["default"] = main
    here = Path(os.path.realpath(main)).parent
    for p in sorted(here.glob("kubectl.1.*")):
        found[p.name.split("kubectl.", 1)[1]] = str(p)
    return found


def oldest_and_newest_kubectl() -> list[str]:
    vers = {k: v for k, v in kubectl_versions().items() if k != "default"}
    if not vers:
        default = kubectl_versions().get("default")
        return [default] if default else []
    keys = sorted(vers, key=lambda v: tuple(int(x) for x in v.split(".")))
    return [vers[keys[0]], vers[keys[-1]]] if len(keys) > 1 else [vers[keys[0]]]


@dataclass
class APIServerProcess:
    """`k3c apiserver` as a child process. Restartable on the same data dir (for durability tests)."""

    data_dir: Path
    port: int = field(default_factory=free_port)
    extra_args: list[str] = field(default_factory=list)
    proc: subprocess.Popen | None = None
    log_path: Path | None = None
    #: what runs it: ``python -m`` these words, then ``--data-dir`` and ``--listen`` (a test launcher may
    #: assemble the server its own way, e.g. tests/support/webhook_apiserver.py)
    launcher: tuple[str, ...] = ("k3c.cli.main", "apiserver")

    @property
    def kubeconfig(self) -> Path:
        return self.data_dir / KUBECONFIG_FILE

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.data_dir.parent / f"apiserver-{self.port}.log"
        log = open(self.log_path, "ab")
        cmd = [sys.executable, "-m", *self.launcher, "--data-dir", str(self.data_dir),
               "--listen", f"127.0.0.1:{self.port}", *self.extra_args]
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"apiserver exited with {self.proc.returncode}: {self.log_tail()}")
            if self.kubeconfig.exists() and self._healthy():
                return
            time.sleep(0.05)
        raise RuntimeError(f"apiserver did not become ready: {self.log_tail()}")

    def _healthy(self) -> bool:
        """Whether it answers; with the admin client certificate, so a test may spoil the token."""
        tls = self.data_dir / "tls"
        ctx = ssl.create_default_context(cafile=str(tls / "ca.crt"))
        ctx.load_cert_chain(tls / "admin.crt", tls / "admin.key")
        req = urllib.request.Request(self.url + "/healthz")
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    @property
    def token(self) -> str:
        return (self.data_dir / "tls" / "admin.token").read_text().strip()

    def log_tail(self) -> str:
        if self.log_path and self.log_path.exists():
            return self.log_path.read_text()[-3000:]
        return ""

    def stop(self) -> None:
        stop_child(self.proc)
        self.proc = None

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(5)
        self.proc = None


def kubectl_env(kubeconfig: Path) -> dict[str, str]:
    """kubectl's environment for one server: its own discovery/OpenAPI cache, so a later server on a reused
    port never sees another server's cached documents."""
    env = dict(os.environ, KUBECONFIG=str(kubeconfig), KUBECACHEDIR=str(kubeconfig.parent / "kubecache"))
    env.pop("KUBECTL_EXTERNAL_DIFF", None)
    return env


def run_kubectl(kubectl: str, kubeconfig: Path, *args: str, input: str | None = None, env: dict | None = None,
                timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess:
    full_env = {**kubectl_env(kubeconfig), **(env or {})}
    cp = subprocess.run([kubectl, *args], input=input, capture_output=True, text=True, timeout=timeout, env=full_env)
    if check and cp.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed ({cp.returncode}): {cp.stderr}{cp.stdout}")
    return cp


class RawClient:
    """Plain HTTPS requests to the API server (for protocol-level assertions kubectl would hide)."""

    def __init__(self, server: APIServerProcess, token: str | None = "admin"):
        import requests

        self.base = server.url
        self.session = requests.Session()
        # Passed per request: requests lets REQUESTS_CA_BUNDLE override a session-level `verify`.
        self.ca = str(server.data_dir / "tls" / "ca.crt")
        if token == "admin":
            token = server.token
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def request(self, method: str, path: str, **kw):
        kw.setdefault("timeout", 30)
        kw.setdefault("verify", self.ca)
        return self.session.request(method, self.base + path, **kw)

    def get(self, path: str, **kw):
        return self.request("GET", path, **kw)

    def post(self, path: str, body=None, **kw):
        return self.request("POST", path, json=body, **kw) if body is not None else self.request("POST", path, **kw)

    def put(self, path: str, body, **kw):
        return self.request("PUT", path, json=body, **kw)

    def patch(self, path: str, body, content_type: str, **kw):
        import json as _json

        data = body if isinstance(body, (bytes, str)) else _json.dumps(body)
        return self.request("PATCH", path, data=data, headers={"Content-Type": content_type}, **kw)

    def delete(self, path: str, **kw):
        return self.request("DELETE", path, **kw)


def first_line(argv: list[str], env: dict[str, str], stdin: int = subprocess.PIPE, send: bytes = b"",
               timeout: float = 15.0) -> bytes:
    """The first line a long-running command (an attach) prints, b"" if none within ``timeout``; ``send``
    is written to its stdin a second after it starts. The command is killed (by its PID) either way."""
    import select

    proc = subprocess.Popen(argv, env=env, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        if send:
            assert proc.stdin is not None
            time.sleep(1.0)
            proc.stdin.write(send)
            proc.stdin.flush()
        ready, _, _ = select.select([proc.stdout], [], [], timeout)
        return proc.stdout.readline() if ready else b""
    finally:
        proc.kill()
        proc.wait()
