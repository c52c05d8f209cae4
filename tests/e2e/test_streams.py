"""logs / exec / attach end to end: real containerd, real containers, the API server and the k3c CLI.

The fixture plays the operator's part by hand so the streams can be tested on their own: it starts a
containerd in temporary directories (private bridge and subnet), the embedded API server with the
stream subresources (tests/support/streams_launcher.py, a child process), installs the LocalContainer CRD,
runs one CRI pod sandbox and, per test, creates containers in it through CRI and a LocalContainer whose
status points at them. Everything started is stopped by its PID; teardown removes the sandbox, the
network traces and the temporary directories, and tests check that no FIFO or exec process is left.
With K3C_TEST_KEEP_LOGS=DIR the launcher's and containerd's logs are copied there before teardown, and
`kill -USR1 <launcher pid>` dumps the server's Python stacks into its log (for a hung test).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import http.client
import io
import json
import os
import pty
import re
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
import urllib.parse
import uuid
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from k3c import kubeclient
from k3c.api import CRI_UID_LABEL, CUSTOM_RESOURCE_DEFINITIONS, LOCAL_CONTAINERS
from k3c.apierrors import APIError, Conflict
from k3c.cri.imagestore import ContainerdImages
from k3c.cri.runtime import CRIClient, pb
from k3c.daemon.containerd import ContainerdConfig, ContainerdProcess, cleanup_network, find_shim_pids
from k3c.daemon.pause import ensure_pause_image
from k3c.oci.layout import busybox_image
from k3c.streams import client as streams
from k3c.timefmt import format_rfc3339_ns, parse_rfc3339_ns
from tests.support.daemon_harness import pick_subnet
from tests.support.harness import REPO, free_port, stop_child

pytestmark = pytest.mark.containerd

IMAGE = "k3c.test/busybox:latest"
NS = "default"
T = TypeVar("T")


# --------------------------------------------------------------------------------------------- fixture


@dataclass
class Launcher:
    """tests/support/streams_launcher.py as a child process, stopped by its PID."""

    data_dir: Path
    socket: Path
    fifo_dir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def kubeconfig(self) -> Path:
        return self.data_dir / "kubeconfig.yaml"

    def start(self, timeout: float = 20.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.data_dir.parent / "launcher.log", "ab") as log:  # the child keeps its own copy
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tests.support.streams_launcher", "--data-dir", str(self.data_dir),
                 "--port", str(self.port), "--containerd", str(self.socket), "--fifo-dir", str(self.fifo_dir)],
                stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
            )
        deadline = time.monotonic() + timeout
        while not self._ready():
            assert self.proc.poll() is None, f"launcher exited: {self.log_tail()}"
            assert time.monotonic() < deadline, f"launcher not ready: {self.log_tail()}"
            time.sleep(0.05)

    def _ready(self) -> bool:
        if not self.kubeconfig.exists():
            return False
        try:
            kubeclient.Client(kubeclient.load(str(self.kubeconfig))).get("/version")
        except (OSError, ValueError, APIError):
            return False
        return True

    def log_tail(self) -> str:
        path = self.data_dir.parent / "launcher.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def stop(self) -> None:
        stop_child(self.proc)
        self.proc = None


@dataclass
class Env:
    loop: asyncio.AbstractEventLoop
    base: Path
    cfg: ContainerdConfig
    containerd: ContainerdProcess
    cri: CRIClient
    launcher: Launcher
    client: kubeclient.Client
    sandbox: pb.PodSandboxConfig
    sandbox_id: str = ""

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def path(self, name: str | None = None, sub: str | None = None) -> str:
        return LOCAL_CONTAINERS.path(NS, name, sub)

    def cri_container(self, name: str, command: list[str], *, tty: bool = False, stdin: bool = False,
                      start: bool = True, stdin_once: bool | None = None) -> str:
        """The CRI container of the object ``name`` (labelled with its uid, as the operator labels it);
        ``stdin_once`` defaults to ``stdin`` (an attached ``run -i``; ``run -d -i`` keeps stdin open)."""
        uid = self.client.get(self.path(name))["metadata"]["uid"]
        config = pb.ContainerConfig(
            metadata=pb.ContainerMetadata(name=name), image=pb.ImageSpec(image=IMAGE), command=command,
            log_path=f"{name}.log", tty=tty, stdin=stdin,
            stdin_once=stdin if stdin_once is None else stdin_once, labels={CRI_UID_LABEL: uid},
        )

        async def create() -> str:
            cid = await self.cri.create_container(self.sandbox_id, config, self.sandbox)
            if start:
                await self.cri.start_container(cid)
            return cid

        return self.run(create())

    def lc_object(self, name: str, *, tty: bool = False, stdin: bool = False,
                  status: dict[str, Any] | None = None) -> None:
        """The LocalContainer an operator would have written."""
        self.client.create(self.path(), {
            "apiVersion": "k3c.io/v1alpha1", "kind": "LocalContainer", "metadata": {"name": name},
            "spec": {"image": IMAGE, "tty": tty, "stdin": stdin},
        })
        if status:
            self.set_status(name, status)

    def set_status(self, name: str, status: dict[str, Any]) -> None:
        self.client.merge_patch(self.path(name, "status"), {"status": status})

    def container(self, command: list[str], *, tty: bool = False, stdin: bool = False,
                  stdin_once: bool | None = None) -> tuple[str, str]:
        """A running container and its LocalContainer; returns (object name, container id)."""
        name = f"c{uuid.uuid4().hex[:8]}"
        self.lc_object(name, tty=tty, stdin=stdin)
        cid = self.cri_container(name, command, tty=tty, stdin=stdin, stdin_once=stdin_once)
        self.set_status(name, {"phase": "Running", "containerID": f"containerd://{cid}", "sandboxID": self.sandbox_id})
        return name, cid

    def state(self, cid: str) -> pb.ContainerStatus:
        return self.run(self.cri.container_status(cid)).status

    def wait_exited(self, cid: str, timeout: float = 20.0) -> int:
        deadline = time.monotonic() + timeout
        while (st := self.state(cid)).state != pb.CONTAINER_EXITED:
            assert time.monotonic() < deadline, f"{cid} did not exit"
            time.sleep(0.05)
        return st.exit_code

    def exec_sync(self, cid: str, cmd: list[str]) -> str:
        return self.run(self.cri.exec_sync(cid, cmd, timeout=10)).stdout.decode()

    def cli_env(self) -> dict[str, str]:
        return dict(os.environ, K3C_KUBECONFIG=str(self.launcher.kubeconfig), PYTHONPATH=str(REPO))

    def k3c(self, *args: str, input: bytes | None = None, timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([sys.executable, "-m", "k3c.cli.main", *args], input=input, capture_output=True,
                              timeout=timeout, env=self.cli_env(), cwd=REPO)

    def fifo_leftovers(self) -> list[str]:
        return sorted(os.listdir(self.launcher.fifo_dir))


def _install_crd(client: kubeclient.Client) -> None:
    crd = yaml.safe_load((REPO / "crds" / "localcontainer.yaml").read_text())
    client.create(CUSTOM_RESOURCE_DEFINITIONS.path(), crd)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.get(LOCAL_CONTAINERS.path(NS))
            return
        except APIError:
            assert time.monotonic() < deadline, "LocalContainer CRD not served"
            time.sleep(0.05)


async def _import_images(cfg: ContainerdConfig, cri: CRIClient, cache: Path) -> None:
    await ensure_pause_image(cfg.socket_path, cache)
    store = ContainerdImages(cfg.socket_path)
    try:
        await store.import_image(IMAGE, busybox_image())
    finally:
        await store.close()
    for _ in range(500):
        if await cri.image_status(IMAGE) is not None:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("busybox image not visible to CRI")


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    loop = asyncio.new_event_loop()
    base = Path(tempfile.mkdtemp(prefix="k3c-streams-", dir="/tmp"))
    tag = uuid.uuid4().hex[:6]
    cfg = ContainerdConfig(root_dir=base / "root", state_dir=base / "state", network_name=f"k3cs{tag}",
                           bridge=f"k3cs{tag}", subnet=pick_subnet())
    containerd = ContainerdProcess(cfg)
    cri = loop.run_until_complete(_make_cri(cfg))
    (base / "fifos").mkdir()
    launcher = Launcher(base / "api", cfg.socket_path, base / "fifos")
    logdir = base / "logs"
    logdir.mkdir()
    sandbox = pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(name="streams", uid=uuid.uuid4().hex, namespace="k3c-test"),
        hostname="streams", log_directory=str(logdir),
    )
    e = Env(loop, base, cfg, containerd, cri, launcher, None, sandbox)  # type: ignore[arg-type]
    try:
        loop.run_until_complete(containerd.start())
        loop.run_until_complete(_import_images(cfg, cri, base / "cache"))
        e.sandbox_id = loop.run_until_complete(cri.run_pod_sandbox(sandbox))
        launcher.start()
        e.client = kubeclient.Client(kubeclient.load(str(launcher.kubeconfig)))
        _install_crd(e.client)
        yield e
    finally:
        _teardown(e)


async def _make_cri(cfg: ContainerdConfig) -> CRIClient:
    return CRIClient(cfg.socket_path, timeout=20.0)


def _teardown(e: Env) -> None:
    e.launcher.stop()
    if e.client is not None:
        e.client.close()

    async def down() -> None:
        if e.sandbox_id:
            with contextlib.suppress(Exception):
                await e.cri.stop_pod_sandbox(e.sandbox_id)
                await e.cri.remove_pod_sandbox(e.sandbox_id)
        await e.cri.close()
        await e.containerd.stop()

    keep = os.environ.get("K3C_TEST_KEEP_LOGS")
    if keep:
        for src in (e.base / "launcher.log", e.cfg.log_path):
            with contextlib.suppress(OSError):
                shutil.copy(src, Path(keep) / src.name)
    try:
        e.loop.run_until_complete(down())
    finally:
        e.loop.close()
    for pid in find_shim_pids(e.cfg.socket_path):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    cleanup_network(e.cfg)
    prefix = str(e.base) + "/"
    with open("/proc/self/mountinfo") as f:
        mounts = [line.split()[4] for line in f]
    for m in sorted((m for m in mounts if m.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", m], capture_output=True)
    shutil.rmtree(e.base, ignore_errors=True)


# --------------------------------------------------------------------------------------------- helpers


def _lines(data: bytes) -> list[str]:
    return data.decode().splitlines()


def _http_get(e: Env, path: str) -> tuple[int, str, bytes]:
    conn = e.client.conn
    h = http.client.HTTPSConnection(conn.host, conn.port, context=conn.ssl_context, timeout=30)
    try:
        headers = {"Authorization": f"Bearer {conn.token}"} if conn.token else {}
        h.request("GET", path, headers=headers)
        resp = h.getresponse()
        return resp.status, resp.getheader("Content-Type", ""), resp.read()
    finally:
        h.close()


def _logs(client: kubeclient.Client, name: str, **kw: Any) -> tuple[bytes, bytes]:
    out, err = io.BytesIO(), io.BytesIO()
    streams.logs(client, NS, name, stdout=out, stderr=err, **kw)
    return out.getvalue(), err.getvalue()


# --------------------------------------------------------------------------------------------- logs


def test_logs_keep_stdout_and_stderr_apart(env: Env) -> None:
    name, cid = env.container(["sh", "-c", "echo out1; echo err1 >&2; echo out2; echo err2 >&2"])
    assert env.wait_exited(cid) == 0
    out, err = _logs(env.client, name)
    assert (out, err) == (b"out1\nout2\n", b"err1\nerr2\n")

    cp = env.k3c("logs", name)
    assert cp.returncode == 0, cp.stderr
    assert (cp.stdout, cp.stderr) == (b"out1\nout2\n", b"err1\nerr2\n")

    # Plain HTTP, as pods/log: text/plain with both streams merged (kube's stream= picks one).
    status, ctype, body = _http_get(env, env.path(name, "log"))
    assert status == 200 and ctype.startswith("text/plain")
    assert sorted(_lines(body)) == ["err1", "err2", "out1", "out2"]
    assert _http_get(env, env.path(name, "log") + "?stream=Stderr")[2] == b"err1\nerr2\n"
    assert _http_get(env, env.path(name, "log") + "?limitBytes=3&stream=Stdout")[2] == b"out"


def test_logs_never_read_a_path_a_client_wrote(env: Env) -> None:
    """status.logPath is writable by whoever may write the object: the log is found from the runtime's
    own record (and, in the daemon, from the node's log dir and the object's uid), never from there."""
    planted = env.base / "planted.log"
    planted.write_text(f"{format_rfc3339_ns(time.time_ns())} stdout F TOPSECRET\n")
    name, cid = env.container(["sh", "-c", "echo mine"])
    assert env.wait_exited(cid) == 0
    for path in (str(planted), "/etc/shadow"):
        env.set_status(name, {"logPath": path})
        assert _logs(env.client, name) == (b"mine\n", b""), path
        status, _, body = _http_get(env, env.path(name, "log"))
        assert (status, body) == (200, b"mine\n"), path


def test_streams_never_reach_another_objects_container(env: Env) -> None:
    """status.containerID is writable by whoever may write the object's status: pointed at another
    object's container, no stream reaches it (the container must carry the object's uid)."""
    victim, victim_cid = env.container(["sh", "-c", "echo victim-secret; sleep 300"])
    thief, _ = env.container(["sh", "-c", "echo mine; sleep 300"])
    env.set_status(thief, {"containerID": f"containerd://{victim_cid}"})
    with pytest.raises(Conflict):
        streams.exec_(env.client, NS, thief, ["cat", "/proc/1/cmdline"], stdin=False, tty=False)
    status, _, body = _http_get(env, env.path(thief, "log"))
    assert b"victim-secret" not in body, (status, body)
    assert b"victim-secret" in _http_get(env, env.path(victim, "log"))[2]  # (so the check above can fail)


def test_logs_tail_since_timestamps(env: Env) -> None:
    name, cid = env.container(["sh", "-c", "echo one; echo two; sleep 1.2; echo three; echo four"])
    env.wait_exited(cid)
    assert _logs(env.client, name, tail=2)[0] == b"three\nfour\n"
    assert _logs(env.client, name, tail=0)[0] == b""

    stamped = _lines(_logs(env.client, name, timestamps=True)[0])
    assert [line.split(" ", 1)[1] for line in stamped] == ["one", "two", "three", "four"]
    pattern = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z ")
    assert all(pattern.match(line) for line in stamped), stamped
    times = [parse_rfc3339_ns(line.split(" ", 1)[0]) for line in stamped]
    middle = (times[1] + times[2]) // 2

    assert _logs(env.client, name, since=format_rfc3339_ns(middle))[0] == b"three\nfour\n"
    assert _logs(env.client, name, since=f"{middle // 10**9}.{middle % 10**9:09d}")[0] == b"three\nfour\n"
    assert _logs(env.client, name, since="1h")[0] == b"one\ntwo\nthree\nfour\n"
    assert _logs(env.client, name, since="1h", tail=1)[0] == b"four\n"

    cp = env.k3c("logs", "-n", "1", "-t", name)
    assert cp.returncode == 0, cp.stderr
    assert pattern.match(cp.stdout.decode()) and cp.stdout.decode().endswith(" four\n")
    cp = env.k3c("logs", "--since", "garbage", name)
    assert cp.returncode == 1 and b'invalid value for "since"' in cp.stderr


def test_logs_follow_while_the_container_writes(env: Env) -> None:
    script = "for i in 1 2 3 4 5 6; do echo line$i; sleep 0.4; done; echo done >&2"
    name, cid = env.container(["sh", "-c", script])
    proc = subprocess.Popen([sys.executable, "-m", "k3c.cli.main", "logs", "-f", name], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env.cli_env(), cwd=REPO)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first == b"line1\n"
        # The first line arrived while the container was still writing the others.
        assert env.state(cid).state == pb.CONTAINER_RUNNING
        proc.wait(20)  # (small output: the pipes cannot fill up)
        rest, err = proc.stdout.read(), proc.stderr.read()  # type: ignore[union-attr]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    exited_at = env.state(cid).finished_at / 1e9
    assert proc.returncode == 0, err
    assert first + rest == b"".join(b"line%d\n" % i for i in range(1, 7))
    assert err == b"done\n"
    assert time.time() - exited_at < 5  # it ended with the container, not on a timeout


# --------------------------------------------------------------------------------------------- exec


def test_exec_exit_codes(env: Env) -> None:
    name, cid = env.container(["sleep", "3600"])
    assert streams.exec_(env.client, NS, name, ["true"], stdin=False, tty=False) == 0
    assert streams.exec_(env.client, NS, name, ["sh", "-c", "exit 3"], stdin=False, tty=False) == 3

    cp = env.k3c("exec", name, "sh", "-c", "echo out; echo err >&2; exit 5")
    assert (cp.returncode, cp.stdout, cp.stderr) == (5, b"out\n", b"err\n")
    cp = env.k3c("exec", name, "nosuchcommand")
    assert cp.returncode == 127, cp.stderr
    assert b"executable file not found" in cp.stderr and cp.stderr.count(b"\n") == 1
    cp = env.k3c("exec", name, "/etc/passwd")
    assert cp.returncode == 126, cp.stderr
    cp = env.k3c("exec", "-d", name, "sh", "-c", "echo detached > /tmp/d")
    assert cp.returncode == 0, cp.stderr
    deadline = time.monotonic() + 5
    while env.exec_sync(cid, ["cat", "/tmp/d"]) != "detached\n":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert env.fifo_leftovers() == []


def test_exec_env_workdir_user(env: Env) -> None:
    name, _ = env.container(["sleep", "3600"])
    cp = env.k3c("exec", "-e", "FOO=bar", "--env", "HOSTNAME=over", "-w", "/tmp", "-u", "1000:1001", name,
                 "sh", "-c", 'echo "$FOO $HOSTNAME"; pwd; id -u; id -g')
    assert cp.returncode == 0, cp.stderr
    assert _lines(cp.stdout) == ["bar over", "/tmp", "1000", "1001"]

    cp = env.k3c("exec", "-u", "nobody", name, "id")
    assert cp.stdout.startswith(b"uid=65534(nobody) gid=65534(nogroup)"), cp.stdout
    cp = env.k3c("exec", name, "env")
    assert b"FOO=" not in cp.stdout and b"PATH=" in cp.stdout  # -e does not stick to the container
    cp = env.k3c("exec", "-u", "nosuchuser", name, "id")
    assert cp.returncode == 126 and b"unable to find user nosuchuser" in cp.stderr
    cp = env.k3c("exec", "-w", "/nonexistent", name, "pwd")
    assert cp.returncode == 126 and b"/nonexistent" in cp.stderr


def test_exec_stdin(env: Env) -> None:
    name, _ = env.container(["sleep", "3600"])
    cp = env.k3c("exec", "-i", name, "sh", "-c", "cat; echo EOF-seen", input=b"hello\n")
    assert (cp.returncode, cp.stdout) == (0, b"hello\nEOF-seen\n"), cp.stderr
    payload = os.urandom(3 * 1024 * 1024)
    cp = env.k3c("exec", "-i", name, "md5sum", input=payload)
    import hashlib

    assert cp.stdout.split()[0].decode() == hashlib.md5(payload).hexdigest()
    cp = env.k3c("exec", name, "cat")  # without -i the command's stdin is closed
    assert cp.returncode == 0 and cp.stdout == b""


def _read_until(fd: int, pattern: bytes, timeout: float = 15.0) -> bytes:
    buf = b""
    deadline = time.monotonic() + timeout
    while not re.search(pattern, buf):
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no {pattern!r} in {buf!r}"
        ready, _, _ = select.select([fd], [], [], remaining)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                chunk = b""
            assert chunk, f"EOF before {pattern!r}: {buf!r}"
            buf += chunk
    return buf


def _set_size(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def _spawn_on_pty(e: Env, args: list[str], rows: int, cols: int) -> tuple[subprocess.Popen[bytes], int, int]:
    """The CLI on a fresh pseudo-terminal (its controlling tty); returns (process, master, slave)."""
    master, slave = pty.openpty()
    _set_size(slave, rows, cols)

    def controlling_tty() -> None:
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen([sys.executable, "-m", "k3c.cli.main", *args], stdin=slave, stdout=slave,
                            stderr=slave, env=e.cli_env(), cwd=REPO, start_new_session=True,
                            preexec_fn=controlling_tty)
    return proc, master, slave


def test_exec_interactive_tty(env: Env) -> None:
    name, _ = env.container(["sleep", "3600"])
    proc, master, slave = _spawn_on_pty(env, ["exec", "-it", name, "sh"], 33, 111)
    before = termios.tcgetattr(slave)
    try:
        os.write(master, b"stty size; echo MARK$((6*7))\n")
        _read_until(master, rb"33 111\r?\n.*MARK42")
        os.write(master, b"tty; echo $TERM\n")
        _read_until(master, rb"/dev/pts/\d+\r?\nxterm")
        _set_size(master, 40, 120)  # the CLI gets SIGWINCH and resizes the remote terminal
        time.sleep(0.3)
        os.write(master, b"stty size\n")
        _read_until(master, rb"40 120")
        os.write(master, b"exit 7\n")
        assert proc.wait(20) == 7
        assert termios.tcgetattr(slave) == before  # raw mode undone
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
        os.close(slave)


def test_exec_process_dies_with_its_client(env: Env) -> None:
    name, cid = env.container(["sleep", "3600"])
    proc = subprocess.Popen([sys.executable, "-m", "k3c.cli.main", "exec", name, "sleep", "4321"],
                            env=env.cli_env(), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while "sleep 4321" not in env.exec_sync(cid, ["ps", "-o", "args"]):
            assert time.monotonic() < deadline, "exec process never appeared"
            time.sleep(0.05)
    finally:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 10
    while "sleep 4321" in env.exec_sync(cid, ["ps", "-o", "args"]):
        assert time.monotonic() < deadline, "exec process outlived its client"
        time.sleep(0.05)
    while env.fifo_leftovers():
        assert time.monotonic() < deadline, f"FIFOs left: {env.fifo_leftovers()}"
        time.sleep(0.05)


def _raw_stream(e: Env, name: str, sub: str, query: list[tuple[str, str]], protocol: str,
                send: list[bytes] = ()) -> tuple[dict[int, bytes], str | None]:
    """Speak the channel protocol by hand, as kubectl or client-go would: (payload per channel, protocol)."""
    from k3c.streams.wsclient import ChannelConnection

    conn = e.client.conn
    got: dict[int, bytes] = {}
    headers = {"Authorization": f"Bearer {conn.token}"} if conn.token else {}
    with ChannelConnection.open(e.client.websocket_url(e.path(name, sub), query), ssl_context=conn.ssl_context,
                                headers=headers, subprotocols=[protocol], timeout=30) as ws:
        for frame in send:
            ws.send(frame)
        deadline = time.monotonic() + 30
        while not ws.closed:
            assert time.monotonic() < deadline, f"stream did not end: {got}"
            ws.flush()
            select.select([ws], [ws] if ws.wants_write else [], [], 1)
            for message in ws.receive():
                got[message[0]] = got.get(message[0], b"") + message[1:]
        return got, ws.subprotocol


def test_wire_protocol_is_kubelets(env: Env) -> None:
    name, _ = env.container(["sleep", "3600"])
    cmd = [("command", "sh"), ("command", "-c"), ("command", "echo hi; exit 3")]
    got, proto = _raw_stream(env, name, "exec", [*cmd, ("stdout", "true")], "v4.channel.k8s.io")
    assert proto == "v4.channel.k8s.io" and got[1] == b"hi\n"
    status = json.loads(got[3])
    assert status["status"] == "Failure" and status["reason"] == "NonZeroExitCode"
    assert status["details"]["causes"] == [{"reason": "ExitCode", "message": "3"}]
    got, _ = _raw_stream(env, name, "exec", [("command", "true")], "v4.channel.k8s.io")
    assert json.loads(got[3]) == {"metadata": {}, "status": "Success"}
    # channel.k8s.io (v1) reports only failures, as text.
    got, proto = _raw_stream(env, name, "exec", [("command", "true")], "channel.k8s.io")
    assert proto == "channel.k8s.io" and 3 not in got
    # v5 closes stdin with a close frame; v4 clients get their input through as well.
    got, _ = _raw_stream(env, name, "exec", [("command", "cat"), ("stdin", "true")], "v5.channel.k8s.io",
                         send=[b"\x00abc", b"\xff\x00"])
    assert got[1] == b"abc"
    got, _ = _raw_stream(env, name, "log", [], "v4.channel.k8s.io")
    assert json.loads(got[3]) == {"metadata": {}, "status": "Success"}


# --------------------------------------------------------------------------------------------- attach


def test_attach_reads_output_and_exit_code(env: Env) -> None:
    script = "i=0; while [ $i -lt 8 ]; do echo tick$i; i=$((i+1)); sleep 0.25; done; echo bye >&2; exit 4"
    name, _ = env.container(["sh", "-c", script])
    cp = env.k3c("attach", name)
    assert cp.returncode == 4, cp.stderr
    assert cp.stdout.endswith(b"tick7\n") and cp.stderr == b"bye\n"


def test_attach_proxies_signals(env: Env) -> None:
    script = 'trap "echo got INT; exit 9" INT; while true; do echo tick; sleep 0.2; done'
    name, _ = env.container(["sh", "-c", script])
    proc = subprocess.Popen([sys.executable, "-m", "k3c.cli.main", "attach", name], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env.cli_env(), cwd=REPO)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"tick\n"  # attached: the CLI relays output, its handlers are set
        proc.send_signal(signal.SIGINT)
        proc.wait(20)
        out, err = proc.stdout.read(), proc.stderr.read()  # type: ignore[union-attr]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 9, err
    assert out.endswith(b"got INT\n")


def test_attach_stdin(env: Env) -> None:
    name, _ = env.container(["sh", "-c", "read x; echo got $x; exit 5"], stdin=True)
    # An attach without stdin must leave a stdin_once container's stdin open (containerd 1.6 would close it).
    watcher = subprocess.Popen([sys.executable, "-m", "k3c.cli.main", "attach", "--no-stdin", name],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env.cli_env(), cwd=REPO)
    try:
        time.sleep(1.0)
        cp = env.k3c("attach", name, input=b"hi\n")
        assert (cp.returncode, cp.stdout) == (5, b"got hi\n"), cp.stderr
        assert watcher.wait(20) == 5 and watcher.stdout.read() == b"got hi\n"  # type: ignore[union-attr]
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait()
    # The client's end of input is the container's (docker run -i): cat ends.
    name, _ = env.container(["sh", "-c", "cat; echo EOF-seen"], stdin=True)
    cp = env.k3c("attach", name, input=b"line1\nline2\n")
    assert (cp.returncode, cp.stdout) == (0, b"line1\nline2\nEOF-seen\n"), cp.stderr


def _attach_proc(env: Env, *args: str, stdin: int = subprocess.PIPE) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "k3c.cli.main", "attach", "--sig-proxy=false", *args],
                            stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env.cli_env(), cwd=REPO)


def _first_line(proc: subprocess.Popen[bytes], timeout: float = 15) -> bytes:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, "no output through attach"
    line = proc.stdout.readline()
    assert line or proc.wait(5) is None, f"attach ended ({proc.returncode}): {proc.stderr.read()!r}"  # type: ignore[union-attr]
    return line


def test_attach_to_open_stdin_container(env: Env) -> None:
    """`run -d -i` keeps the container's stdin open (no stdin_once): attach shows its live output with
    stdin, without it and after the client's stdin ended, and what the attach writes reaches the container
    (containerd ends an attach without stdin to such a container at once: no output was shown)."""
    name, _ = env.container(["sh", "-c", "while true; do echo tick; sleep 0.2; done"], stdin=True, stdin_once=False)
    for args, stdin in ((["--no-stdin"], subprocess.PIPE), ([], subprocess.PIPE), ([], subprocess.DEVNULL)):
        proc = _attach_proc(env, *args, name, stdin=stdin)
        try:
            assert [_first_line(proc), _first_line(proc)] == [b"tick\n"] * 2, (args, stdin)
        finally:
            proc.kill()
            proc.wait()
    name, _ = env.container(["cat"], stdin=True, stdin_once=False)
    proc = _attach_proc(env, name)
    try:
        assert proc.stdin is not None
        time.sleep(1.0)
        proc.stdin.write(b"echoed\n")
        proc.stdin.flush()
        assert _first_line(proc) == b"echoed\n"
    finally:
        proc.kill()
        proc.wait()


def _attach_in_thread(e: Env, name: str) -> tuple[threading.Thread, list[int | None]]:
    result: list[int | None] = []
    thread = threading.Thread(target=lambda: result.append(
        streams.attach_from_start(e.client, NS, name, stdin=False, tty=False)), daemon=True)
    thread.start()
    return thread, result


def test_attach_from_start_for_run(env: Env, capfd: pytest.CaptureFixture[str]) -> None:
    """`k3c run` attaches around the start: waiting for a starting container, nothing it prints is lost."""
    name = f"c{uuid.uuid4().hex[:8]}"
    env.lc_object(name, status={"phase": "Creating"})
    thread, result = _attach_in_thread(env, name)
    time.sleep(0.3)
    cid = env.cri_container(name, ["sh", "-c", "echo early; echo warn >&2; exit 6"])
    env.wait_exited(cid)  # (it may even be over before the operator records it)
    env.set_status(name, {"phase": "Running", "containerID": cid, "sandboxID": env.sandbox_id})
    thread.join(20)
    assert result == [6]
    assert capfd.readouterr() == ("early\n", "warn\n")

    # Already exited when the attach comes: its output and exit code all the same (plain attach: refused).
    thread, result = _attach_in_thread(env, name)
    thread.join(20)
    assert result == [6]
    assert capfd.readouterr() == ("early\n", "warn\n")
    with pytest.raises(Conflict, match="is not running"):
        streams.attach(env.client, NS, name, stdin=False, tty=False)


def test_attach_interactive_tty_and_detach(env: Env) -> None:
    name, cid = env.container(["sh"], tty=True, stdin=True)
    proc, master, slave = _spawn_on_pty(env, ["attach", name], 30, 100)
    try:
        time.sleep(0.5)
        os.write(master, b"stty size; echo MARK$((6*7))\n")
        _read_until(master, rb"30 100\r?\n.*MARK42")
        os.write(master, b"\x10\x11")  # ctrl-p ctrl-q: detach, the container keeps running
        assert proc.wait(15) == 0
        assert env.state(cid).state == pb.CONTAINER_RUNNING
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
        os.close(slave)


# --------------------------------------------------------------------------------------------- errors


def test_errors_are_one_clear_line(env: Env) -> None:
    for args in (["logs", "nosuch"], ["exec", "nosuch", "true"], ["attach", "nosuch"]):
        cp = env.k3c(*args)
        assert cp.returncode == 1, (args, cp.stderr)
        assert cp.stderr == b"Error response from daemon: No such container: nosuch\n"

    name, cid = env.container(["true"])
    env.wait_exited(cid)
    cp = env.k3c("exec", name, "true")
    assert cp.returncode == 1 and cp.stderr.count(b"\n") == 1
    assert b"is not running (Exited (0))" in cp.stderr
    cp = env.k3c("attach", name)
    assert cp.returncode == 1 and b"is not running" in cp.stderr

    status, _, body = _http_get(env, env.path("nosuch", "log"))
    doc = json.loads(body)
    assert status == 404 and doc["reason"] == "NotFound" and doc["kind"] == "Status"
    status, _, body = _http_get(env, env.path(name, "exec") + "?command=true")
    assert status == 400 and json.loads(body)["message"] == "Upgrade request required"
    status, _, body = _http_get(env, env.path(name, "log") + "?tailLines=x")
    assert status == 400 and "tailLines" in json.loads(body)["message"]


def _children(pids: set[int]) -> set[int]:
    found = set()
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                stat = Path(f"/proc/{entry.name}/stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) in pids:
                    found.add(int(entry.name))
    return found


def test_hostile_stream_requests_never_get_a_5xx(env: Env) -> None:
    """The fuzz run of tests/e2e/test_api_fuzz.py, on the stream subresources: bad names, methods and query
    values for log, exec and attach of an exited, a running and a missing container (seeded, time-bounded:
    K3C_FUZZ_SEED, K3C_FUZZ_EXAMPLES / 5, K3C_FUZZ_SECONDS / 3)."""
    from hypothesis import HealthCheck, given, seed, settings
    from hypothesis import strategies as st

    from tests.e2e.test_api_fuzz import BUDGET, EXAMPLES, NAMES, SEED, WORDS, Findings, Request, _quote

    exited, cid = env.container(["sh", "-c", "echo done"])
    env.wait_exited(cid)
    running, _ = env.container(["sleep", "300"])
    keys = ["follow", "tailLines", "sinceSeconds", "sinceTime", "timestamps", "limitBytes", "stream", "command",
            "stdin", "stdout", "stderr", "tty", "env", "workingDir", "user", "detach", "logs", "container"]
    requests_ = st.builds(
        lambda method, name, sub, query: Request(method, env.path(None) + f"/{_quote(name)}/{sub}", query, {}, b""),
        st.sampled_from(["GET", "GET", "GET", "POST", "PUT", "DELETE"]),
        st.one_of(st.sampled_from([exited, exited, running, "nosuch"]), NAMES),
        st.sampled_from(["log", "exec", "attach"]), st.lists(st.tuples(st.sampled_from(keys), WORDS), max_size=4))
    findings = Findings()
    conn = env.client.conn
    headers = {"Authorization": f"Bearer {conn.token}"} if conn.token else {}

    @seed(SEED)
    @settings(max_examples=max(EXAMPLES // 5, 50), deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(requests_)
    def run(req: Request) -> None:
        if time.monotonic() - findings.started > BUDGET / 3:
            return
        findings.requests += 1
        h = http.client.HTTPSConnection(conn.host, conn.port, context=conn.ssl_context, timeout=30)
        try:
            query = urllib.parse.urlencode(req.query)
            h.request(req.method, req.path + (f"?{query}" if query else ""), headers=headers)
            resp = h.getresponse()
            body = resp.read() if resp.status >= 400 else b""  # (a follower streams on: not read)
        finally:
            h.close()
        if resp.status >= 500:
            findings.add(f"{resp.status} {body[:100]!r}", f"{resp.status} {body[:300]!r}\n    {req.replay()}")
        elif resp.status >= 400:
            doc = json.loads(body)
            if doc.get("kind") != "Status" or doc.get("code") != resp.status or "\n" in doc.get("message", "\n"):
                findings.add(f"malformed {body[:60]!r}", f"{resp.status} {body[:300]!r}\n    {req.replay()}")

    run()
    report = "\n".join(f"- {d}" for d in findings.failures.values())
    assert not findings.failures, f"in {findings.requests} requests (seed {SEED}):\n{report}"
    assert "Traceback" not in env.launcher.log_tail()


def test_nothing_left_behind(env: Env) -> None:
    """No FIFO directory, and no process under our shims but the containers' own (no exec left running)."""
    assert env.fifo_leftovers() == []

    async def inits() -> set[int]:
        pids = set()
        for c in await env.cri.list_containers():
            info = (await env.cri.container_status(c.id, verbose=True)).info.get("info")
            pids.add(int(json.loads(info).get("pid") or 0) if info else 0)
        info = (await env.cri.pod_sandbox_status(env.sandbox_id, verbose=True)).info.get("info")
        pids.add(int(json.loads(info).get("pid") or 0) if info else 0)
        return pids

    others = _children(set(find_shim_pids(env.cfg.socket_path))) - env.run(inits())
    assert others == set(), [Path(f"/proc/{p}/cmdline").read_bytes() for p in others]


# --------------------------------------------------------------------------------------------- daemon


def test_through_the_daemon(daemon: Any, capfd: pytest.CaptureFixture[str]) -> None:
    """The real wiring: `k3c daemon` registers the streams, the operator runs the containers."""
    from tests.support.daemon_harness import lc_object, wait_until

    api, path = daemon.api, LOCAL_CONTAINERS.path(NS)
    # `run --rm`-like: attach from the start right after creating; the object is gone by the end.
    api.create(path, lc_object("quick", command=["sh", "-c", "echo out; echo err >&2; exit 3"], autoRemove=True))
    assert streams.attach_from_start(api, NS, "quick", stdin=False, tty=False) == 3
    assert capfd.readouterr() == ("out\n", "err\n")

    api.create(path, lc_object("ran", command=["sh", "-c", "echo one; echo two >&2; exit 2"]))
    assert streams.attach_from_start(api, NS, "ran", stdin=False, tty=False) == 2
    capfd.readouterr()
    wait_until(lambda: (api.get(f"{path}/ran").get("status") or {}).get("phase") == "Exited", what="exit")
    out, err = _logs(api, "ran")  # the operator removed the runtime container: its log file remains
    assert (out, err) == (b"one\n", b"two\n")
    planted = daemon.state_dir / "planted.log"
    planted.write_text(f"{format_rfc3339_ns(time.time_ns())} stdout F TOPSECRET\n")
    api.merge_patch(f"{path}/ran/status", {"status": {"logPath": str(planted)}})
    assert _logs(api, "ran") == (b"one\n", b"two\n"), "the log comes from the node's log dir, not status"

    api.create(path, lc_object("svc", command=["sleep", "300"]))
    wait_until(lambda: (api.get(f"{path}/svc").get("status") or {}).get("phase") == "Running", what="start")
    env = dict(os.environ, K3C_KUBECONFIG=str(daemon.kubeconfig), PYTHONPATH=str(REPO))
    cp = subprocess.run([sys.executable, "-m", "k3c.cli.main", "exec", "-e", "X=1", "-w", "/tmp", "svc", "sh", "-c",
                         "echo $X; pwd"], capture_output=True, env=env, cwd=REPO, timeout=60)
    assert (cp.returncode, cp.stdout) == (0, b"1\n/tmp\n"), cp.stderr

