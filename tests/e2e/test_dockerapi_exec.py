"""The Docker API's interactive side with real clients: exec (create, start hijacked or detached, resize,
inspect), attach with stdin, container resize, `docker run -it` and `docker exec -it` on a pty.

Debian's docker CLI (20.10) with DOCKER_HOST and docker-py from PyPI, on one `k3c daemon` for the module;
the helpers come from test_dockerapi.py. A pty is made with python's ``pty`` module so the docker CLI sees
a terminal, as it would in a shell.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pty
import select
import struct
import subprocess
import termios
import time
from pathlib import Path

import docker
import pytest

from tests.e2e.test_dockerapi import DOCKER_CLI, cli, ok, raw
from tests.support.daemon_harness import TEST_IMAGE

pytestmark = pytest.mark.usefixtures("image_known")


def _env(sock: str) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/root"),
            "DOCKER_HOST": f"unix://{sock}", "DOCKER_CONFIG": str(Path(sock).parent / "docker-config"),
            "TERM": "xterm"}


ROWS, COLS = 41, 123  # the pty's size, which the CLI passes on with resize calls


def on_pty(sock: str, *args: str, typed: bytes | list[bytes] = b"", timeout: float = 60) -> tuple[int, bytes]:
    """Run the docker CLI with a pty as its stdin, stdout and stderr; what is ``typed`` is written after
    1.5 s (a list: one item a second). Returns (exit code, everything it showed)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
    proc = subprocess.Popen([DOCKER_CLI, *args], stdin=slave, stdout=slave, stderr=slave, env=_env(sock),
                            start_new_session=True)
    os.close(slave)
    out = b""
    deadline = time.monotonic() + timeout
    typed_at = time.monotonic() + 1.5
    keys = [typed] if isinstance(typed, bytes) else list(typed)
    try:
        while time.monotonic() < deadline:
            if keys and time.monotonic() > typed_at:
                os.write(master, keys.pop(0))
                typed_at += 1.0
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # EIO: every holder of the pty's other side has closed it
                    break
                if not chunk:
                    break
                out += chunk
            elif proc.poll() is not None:
                break
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()  # (its output so far still goes to the assertion)
        code = proc.wait()
        os.close(master)
    return code, out


@pytest.fixture(scope="module")
def box(sock):
    """A long-running container to exec into."""
    ok(sock, "run", "-d", "--name", "execbox", TEST_IMAGE, "sleep", "600")
    yield "execbox"
    ok(sock, "rm", "-f", "execbox")


# ---- exec ---------------------------------------------------------------------------------------------
def test_docker_exec_prints_and_exits_with_the_command(sock, box):
    cp = cli(sock, "exec", box, "sh", "-c", "echo hi; echo oops >&2; exit 3")
    assert (cp.returncode, cp.stdout, cp.stderr) == (3, "hi\n", "oops\n")  # demuxed: the framing is right
    cp = cli(sock, "exec", "-e", "WHO=k3c", "-w", "/tmp", "-u", "65534", box, "sh", "-c", 'echo $WHO $(pwd) $(id -u)')
    assert (cp.returncode, cp.stdout) == (0, "k3c /tmp 65534\n"), cp.stderr
    cp = cli(sock, "exec", box, "no-such-command")
    assert cp.returncode == 127 and "no-such-command" in cp.stdout + cp.stderr


def test_docker_exec_with_piped_stdin(sock, box):
    cp = subprocess.run([DOCKER_CLI, "exec", "-i", box, "sh", "-c", "cat; echo done"], input="line1\nline2\n",
                        capture_output=True, text=True, timeout=60, env=_env(sock))
    assert (cp.returncode, cp.stdout) == (0, "line1\nline2\ndone\n"), cp.stderr  # half-close ended stdin


def test_docker_exec_it_on_a_pty(sock, box):
    code, out = on_pty(sock, "exec", "-it", box, "sh", "-c", "tty; stty size; exit 4")
    text = out.decode(errors="replace")
    assert code == 4, text
    assert "/dev/pts/" in text
    assert f"{ROWS} {COLS}" in text  # the CLI's resize reached the exec's terminal


def test_docker_exec_detached(sock, box):
    ok(sock, "exec", "-d", box, "sh", "-c", "sleep 0.2; echo later > /tmp/detached")
    time.sleep(1.5)
    assert ok(sock, "exec", box, "cat", "/tmp/detached") == "later\n"


def test_docker_py_exec_run(dockerpy, box):
    c = dockerpy.containers.get(box)
    assert c.exec_run(["sh", "-c", "echo from-py; exit 2"]) == (2, b"from-py\n")
    code, (out, err) = c.exec_run(["sh", "-c", "echo o; echo e >&2"], demux=True)
    assert (code, out, err) == (0, b"o\n", b"e\n")
    code, out = c.exec_run("tty", tty=True)
    assert code == 0 and out.startswith(b"/dev/pts/")
    code, out = c.exec_run("pwd", workdir="/etc", environment={"A": "1"}, user="65534")
    assert (code, out) == (0, b"/etc\n")
    api = dockerpy.api
    exec_id = api.exec_create(box, ["sh", "-c", "sleep 0.5; exit 6"])["Id"]
    assert len(exec_id) == 64
    doc = api.exec_inspect(exec_id)
    assert (doc["Running"], doc["ExitCode"], doc["ContainerID"]) == (False, None, c.id)
    assert doc["ProcessConfig"]["entrypoint"] == "sh"
    assert api.exec_start(exec_id, detach=True) == ""  # (docker-py reads a detached start as text)
    assert api.exec_inspect(exec_id)["Running"] is True
    deadline = time.monotonic() + 20
    while api.exec_inspect(exec_id)["Running"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert api.exec_inspect(exec_id)["ExitCode"] == 6
    with pytest.raises(docker.errors.APIError) as err:
        api.exec_start(exec_id, detach=True)
    assert err.value.status_code == 409


def test_exec_resize_reaches_the_terminal(dockerpy, box):
    api = dockerpy.api
    exec_id = api.exec_create(box, ["sh", "-c", "sleep 1; stty size"], tty=True, stdin=True)["Id"]
    sock = api.exec_start(exec_id, tty=True, socket=True)
    api.exec_resize(exec_id, height=33, width=111)
    out = b""
    raw_sock = getattr(sock, "_sock", sock)
    raw_sock.settimeout(30)
    while chunk := raw_sock.recv(4096):
        out += chunk
    raw_sock.close()
    assert b"33 111" in out
    assert api.exec_inspect(exec_id)["ExitCode"] == 0


@pytest.mark.parametrize(("path", "body", "status", "words"), [
    ("/containers/execbox/exec", {"Cmd": []}, 400, "No exec command specified"),
    ("/containers/execbox/exec", {"Cmd": "ls"}, 400, "ExecConfig.Cmd"),
    ("/containers/execbox/exec", {"Cmd": ["ls"], "Privileged": True}, 400, "privileged"),
    ("/containers/execbox/exec", {"Cmd": ["ls"], "WorkingDir": "tmp"}, 400, "absolute path"),
    ("/containers/nosuch/exec", {"Cmd": ["ls"]}, 404, "No such container: nosuch"),
    ("/exec/" + "0" * 64 + "/start", {"Detach": True}, 404, "No such exec instance"),
    ("/exec/" + "0" * 64 + "/json", None, 404, "No such exec instance"),
    ("/exec/" + "0" * 64 + "/resize?h=1&w=x", None, 400, "invalid value for w"),
])
def test_exec_refusals(sock, box, path, body, status, words):
    method = "GET" if path.endswith("/json") else "POST"
    code, _, answer = raw(sock, method, "/v1.41" + path, body=json.dumps(body).encode() if body is not None else None,
                          headers={"Content-Type": "application/json"})
    assert code == status, answer
    assert words in json.loads(answer)["message"]


def test_exec_into_a_stopped_container_is_a_conflict(sock):
    ok(sock, "create", "--name", "idle", TEST_IMAGE, "true")
    try:
        cp = cli(sock, "exec", "idle", "true")
        assert cp.returncode != 0 and "is not running" in cp.stderr
    finally:
        ok(sock, "rm", "idle")


# ---- attach with stdin, container resize ----------------------------------------------------------------
def test_docker_run_it_on_a_pty_reads_input_and_exits_with_the_code(daemon, sock):
    code, out = on_pty(sock, "run", "--rm", "-it", "--name", "asker", TEST_IMAGE,
                       "sh", "-c", "sleep 1; stty size; read x; echo got $x; exit 7", typed=b"hello\r")
    text = out.decode(errors="replace")
    assert code == 7, text
    assert "got hello" in text
    assert f"{ROWS} {COLS}" in text  # the CLI's container resize reached the terminal
    assert daemon.container("asker") is None  # --rm: removed


def test_docker_run_i_with_piped_stdin_echoes_it(daemon, sock):
    cp = subprocess.run([DOCKER_CLI, "run", "-i", "--rm", "--name", "echoer", TEST_IMAGE, "cat"],
                        input="one\ntwo\n", capture_output=True, text=True, timeout=60, env=_env(sock))
    assert (cp.returncode, cp.stdout) == (0, "one\ntwo\n"), cp.stderr
    assert daemon.container("echoer") is None


def test_docker_py_attach_socket_with_stdin(dockerpy):
    api = dockerpy.api
    c = api.create_container(TEST_IMAGE, ["sh", "-c", "read x; echo got $x"], stdin_open=True, name="pyattach")
    try:
        s = api.attach_socket(c["Id"], params={"stdin": 1, "stdout": 1, "stream": 1})
        api.start(c["Id"])
        raw_sock = getattr(s, "_sock", s)
        raw_sock.settimeout(30)
        raw_sock.sendall(b"typed\n")
        out = b""
        while chunk := raw_sock.recv(4096):
            out += chunk
        raw_sock.close()
        assert out == bytes((1, 0, 0, 0, 0, 0, 0, 10)) + b"got typed\n"  # framed: no Tty
        assert api.wait(c["Id"], timeout=30)["StatusCode"] == 0
    finally:
        api.remove_container(c["Id"], force=True)


def test_container_resize_answers(sock, box):
    status, _, body = raw(sock, "POST", f"/v1.41/containers/{box}/resize?h=10&w=20")
    assert status == 200, body
    status, _, body = raw(sock, "POST", f"/v1.41/containers/{box}/resize?h=10")
    assert status == 400
    status, _, body = raw(sock, "POST", "/v1.41/containers/nosuch/resize?h=10&w=20")
    assert status == 404


def test_docker_attach_to_a_running_tty_container_and_detach(sock):
    ok(sock, "run", "-d", "-i", "-t", "--name", "shell", TEST_IMAGE, "sh")
    try:
        code, out = on_pty(sock, "attach", "shell", typed=[b"echo attached-$((1+2))\r", b"\x10\x11"], timeout=30)
        text = out.decode(errors="replace")
        assert "attached-3" in text, text
        assert code != -9, text  # ctrl-p ctrl-q ended the CLI (docker says "read escape sequence")
        assert json.loads(ok(sock, "inspect", "-f", "{{json .State.Running}}", "shell")) is True  # runs on
        code, out = on_pty(sock, "attach", "shell", typed=b"exit 9\r", timeout=30)
        assert code == 9, out.decode(errors="replace")
        assert json.loads(ok(sock, "inspect", "-f", "{{json .State.Running}}", "shell")) is False
    finally:
        ok(sock, "rm", "-f", "shell")


def test_the_server_spots_detach_keys_for_any_client(sock, dockerpy):
    """docker-py has no detach keys of its own: the server ends the attach on them, the container runs on."""
    api = dockerpy.api
    c = api.create_container(TEST_IMAGE, "sh", stdin_open=True, tty=True, name="detachable")
    try:
        api.start(c["Id"])
        for keys, typed in ((None, b"\x10\x11"), ("ctrl-x,y", b"\x18y")):
            params = {"stdin": 1, "stdout": 1, "stream": 1, **({"detachKeys": keys} if keys else {})}
            s = api.attach_socket(c["Id"], params=params)
            raw_sock = getattr(s, "_sock", s)
            raw_sock.settimeout(20)
            raw_sock.sendall(b"echo before-$((40+2))\r")
            out = b""
            while b"before-42" not in out:
                out += raw_sock.recv(4096)
            raw_sock.sendall(typed)
            while chunk := raw_sock.recv(4096):  # the server hangs up
                out += chunk
            raw_sock.close()
            assert api.inspect_container(c["Id"])["State"]["Running"] is True
        status, _, body = raw(sock, "POST", "/v1.41/containers/detachable/attach?stream=1&stdin=1&detachKeys=ctrl-7")
        assert status == 400 and "Invalid detach keys" in json.loads(body)["message"]
    finally:
        api.remove_container(c["Id"], force=True)
