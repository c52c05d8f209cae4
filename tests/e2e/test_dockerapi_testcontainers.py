"""testcontainers-python on k3c's Docker API socket, as a test suite would use it: a generic container with a
log wait strategy and a published port the library looks up; and a container with the socket bind-mounted
that drives the API from inside, as testcontainers' reaper (Ryuk) does. Ryuk itself stays off: its image
would come from a registry, and there is none here.
"""

from __future__ import annotations

import os
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.daemon_harness import TEST_IMAGE, wait_until

DOCKER_CLI = "/usr/bin/docker"  # Debian's docker.io client


@pytest.fixture(scope="module")
def testcontainers_env(sock: str) -> Iterator[None]:
    """DOCKER_HOST at the socket and Ryuk off, read by testcontainers when it makes its client."""
    saved = {k: os.environ.get(k) for k in ("DOCKER_HOST", "TESTCONTAINERS_RYUK_DISABLED")}
    os.environ["DOCKER_HOST"] = f"unix://{sock}"
    os.environ["TESTCONTAINERS_RYUK_DISABLED"] = "true"
    from testcontainers.core.config import testcontainers_config

    ryuk, testcontainers_config.ryuk_disabled = testcontainers_config.ryuk_disabled, True
    try:
        yield
    finally:
        testcontainers_config.ryuk_disabled = ryuk
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


SERVE = "mkdir -p /www && echo hello-from-k3c > /www/index.html && echo server ready && exec httpd -f -p 80 -h /www"


def test_generic_container_with_log_wait_and_published_port(daemon, testcontainers_env) -> None:
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.wait_strategies import LogMessageWaitStrategy

    container = (DockerContainer(TEST_IMAGE).with_command(["sh", "-c", SERVE]).with_exposed_ports(80)
                 .waiting_for(LogMessageWaitStrategy("server ready").with_startup_timeout(60)))
    with container:  # started once the log line is there
        host, port = container.get_container_host_ip(), int(container.get_exposed_port(80))
        assert port > 0
        body = _fetch(f"http://{host}:{port}/index.html")
        assert body == "hello-from-k3c\n"
        name = container.get_wrapped_container().name
        obj = daemon.container(_object_name(daemon, name))
        assert obj is not None  # the library's container is a LocalContainer like any other
        assert "org.testcontainers.session-id" in (obj["spec"].get("labels") or {})
    wait_until(lambda: _object_name(daemon, name) == "", 60, "the testcontainers container to be removed")


def test_a_container_with_the_socket_mounted_drives_the_api_like_ryuk(daemon, sock: str) -> None:
    """The docker CLI inside a container (the host's binary and libc mounted read-only) lists and removes
    the containers with a session label, as Ryuk does with testcontainers' label."""
    env = _docker_env(sock)
    victim = _docker(env, "run", "-d", "--label", "session=tc-42", TEST_IMAGE, "sleep", "300").strip()
    mounts = [f"{sock}:/var/run/docker.sock", f"{DOCKER_CLI}:/usr/bin/docker:ro"]
    mounts += [f"{d}:{d}:ro" for d in ("/lib/x86_64-linux-gnu", "/lib64") if Path(d).is_dir()]
    script = "docker ps -q --no-trunc --filter label=session=tc-42 | xargs docker rm -f"
    out = _docker(env, "run", "--rm", *[a for m in mounts for a in ("-v", m)], "-e", "DOCKER_HOST=",
                  TEST_IMAGE, "sh", "-c", script, timeout=120)
    assert out.split() == [victim]  # `docker rm` echoes what it removed, by the ID the CLI listed
    assert _docker(env, "ps", "-aq", "--filter", "label=session=tc-42") == ""


def _object_name(daemon, docker_name: str) -> str:
    """The LocalContainer whose docker name is ``docker_name`` ('' when there is none)."""
    from k3c.dockerid import docker_name as name_of

    for obj in daemon.api.get("/apis/k3c.io/v1alpha1/namespaces/default/localcontainers")["items"]:
        if name_of(obj) == docker_name.lstrip("/"):
            return str(obj["metadata"]["name"])
    return ""


def _fetch(url: str) -> str:
    last: Exception | None = None
    for _ in range(50):
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return str(r.read().decode())
        except OSError as err:  # the server's first accept may trail its log line
            last = err
            time.sleep(0.2)
    raise AssertionError(f"{url}: {last}")


def _docker_env(sock: str) -> dict[str, str]:
    if not os.access(DOCKER_CLI, os.X_OK):
        pytest.fail(f"{DOCKER_CLI} is missing: install Debian's docker.io (client only)")
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/root"),
            "DOCKER_HOST": f"unix://{sock}", "DOCKER_CONFIG": str(Path(sock).parent / "docker-config")}


def _docker(env: dict[str, str], *args: str, timeout: float = 60) -> str:
    cp = subprocess.run([DOCKER_CLI, *args], capture_output=True, text=True, timeout=timeout, env=env)
    assert cp.returncode == 0, f"docker {' '.join(args)} failed ({cp.returncode}): {cp.stderr}"
    return cp.stdout
