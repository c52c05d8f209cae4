"""docker's run options through the Docker API socket (issue 13's flags, issue 14's door): Debian's docker CLI
20.10 and docker-py create containers with them, and their effects are seen from inside the container, in
`docker inspect`, and in the object, which is the one `k3c create` makes for the same flags.

One container carries most flags (the suite stays fast); each assertion names the flag it is about.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import docker
import pytest

from tests.e2e.test_dockerapi import cli, ok, raw
from tests.support.daemon_harness import TEST_IMAGE, wait_until

pytestmark = pytest.mark.usefixtures("image_known")  # the Image object is there before the first run

SCRIPT = ("touch /tmp/ok; trap 'echo got-usr1; exit 3' USR1; trap 'echo got-term; exit 4' TERM; "
          "echo ready; while true; do sleep 0.1; done")


def run_flags(bound: Path) -> list[str]:
    """The flags both `docker run` (through the socket) and `k3c create` are given."""
    return [
        "--init", "--stop-signal", "SIGUSR1",
        "--health-cmd", "test -f /tmp/ok", "--health-interval", "500ms", "--health-retries", "2",
        "--ulimit", "nofile=100:200", "--tmpfs", "/scratch:size=1m",
        "--mount", "type=tmpfs,target=/t2,tmpfs-size=2097152",
        "--mount", f"type=bind,source={bound},target=/bound,readonly",
        "--shm-size", "8m", "--device", "/dev/zero:/dev/myzero:r",
        "--add-host", "db:10.1.2.3", "--add-host", "gw:host-gateway",
        "--dns-search", "example.org", "--dns-option", "ndots:3",
        "--pids-limit", "50", "-m", "64m", "--memory-swap", "128m", "-c", "512", "--cpuset-cpus", "0",
        "--security-opt", "no-new-privileges", "--group-add", "1234",
        "--log-opt", "max-size=1m", "--log-opt", "max-file=2", "-l", "team=k3c",
        TEST_IMAGE, "sh", "-c", SCRIPT,
    ]


def k3c(daemon: Any, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "K3C_KUBECONFIG": str(daemon.kubeconfig)}
    return subprocess.run([sys.executable, "-m", "k3c.cli.main", *args], env=env, capture_output=True, text=True,
                          timeout=90)


def sh(sock: str, name: str, script: str) -> str:
    return ok(sock, "exec", name, "sh", "-c", script)


@pytest.fixture(scope="module")
def flagged(sock: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    bound = tmp_path_factory.mktemp("bound")
    (bound / "hello").write_text("from the node\n")
    cid = ok(sock, "run", "-d", "--name", "flagged", *run_flags(bound)).strip()
    wait_until(lambda: "ready" in ok(sock, "logs", "flagged"), 30, "the container's traps to be set")
    return {"id": cid, "bound": bound}


def test_effects_inside_the_container(sock: str, flagged: dict[str, Any]) -> None:
    # --ulimit: PID 1's limits (an exec's NOFILE is set racily by this runc, #4195)
    line = sh(sock, "flagged", "grep 'Max open files' /proc/1/limits")
    assert line.split()[3:5] == ["100", "200"], line
    # --init: docker-init is PID 1, running the command
    assert sh(sock, "flagged", "cat /proc/1/cmdline | tr '\\0' ' '").split()[:2] == ["/sbin/docker-init", "--"]
    # --add-host (an address and host-gateway), --dns-search, --dns-option
    hosts = sh(sock, "flagged", "cat /etc/hosts")
    assert re.search(r"^10\.1\.2\.3\s+db$", hosts, re.M), hosts
    gateway = sh(sock, "flagged", "ip route | awk '/^default/ {print $3}'").strip()
    assert gateway and re.search(rf"^{re.escape(gateway)}\s+gw$", hosts, re.M), (gateway, hosts)
    resolv = sh(sock, "flagged", "cat /etc/resolv.conf")
    assert re.search(r"^search example\.org$", resolv, re.M) and re.search(r"^options ndots:3$", resolv, re.M)
    # --tmpfs, --mount type=tmpfs, --shm-size, --mount type=bind,readonly
    mounts = {line.split()[1]: line.split()[2:4] for line in sh(sock, "flagged", "cat /proc/mounts").splitlines()}
    assert mounts["/scratch"][0] == "tmpfs" and "size=1024k" in mounts["/scratch"][1], mounts
    assert mounts["/t2"][0] == "tmpfs" and "size=2048k" in mounts["/t2"][1], mounts
    assert mounts["/dev/shm"][0] == "tmpfs" and "size=8192k" in mounts["/dev/shm"][1], mounts
    assert sh(sock, "flagged", "cat /bound/hello").strip() == "from the node"
    denied = cli(sock, "exec", "flagged", "sh", "-c", "echo x > /bound/new")
    assert denied.returncode != 0 and "Read-only file system" in denied.stderr, denied.stderr
    # --device
    assert sh(sock, "flagged", "head -c 3 /dev/myzero | od -An -tx1").split() == ["00", "00", "00"]
    # -c, --cpuset-cpus, -m, --memory-swap, --pids-limit: the cgroup's own files
    out = sh(sock, "flagged", "cat /sys/fs/cgroup/cpu/cpu.shares /sys/fs/cgroup/cpuset/cpuset.cpus "
                              "/sys/fs/cgroup/memory/memory.limit_in_bytes "
                              "/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes /sys/fs/cgroup/pids/pids.max")
    assert out.split() == ["512", "0", str(64 * 2 ** 20), str(128 * 2 ** 20), "50"]
    # --security-opt no-new-privileges, --group-add
    status = sh(sock, "flagged", "cat /proc/self/status")
    assert re.search(r"^NoNewPrivs:\s+1$", status, re.M), status
    assert "1234" in re.search(r"^Groups:(.*)$", status, re.M).group(1).split()  # type: ignore[union-attr]


def test_health_check_reaches_healthy(sock: str, flagged: dict[str, Any]) -> None:
    def health() -> str:
        return ok(sock, "inspect", "-f", "{{if .State.Health}}{{.State.Health.Status}}{{end}}", "flagged").strip()

    wait_until(lambda: health() == "healthy", 30, "healthy")
    assert "(healthy)" in ok(sock, "ps", "--filter", "name=flagged", "--format", "{{.Status}}")


def test_inspect_shows_what_was_asked(sock: str, flagged: dict[str, Any]) -> None:
    shown = json.loads(ok(sock, "inspect", "flagged"))[0]
    host, config = shown["HostConfig"], shown["Config"]
    assert config["StopSignal"] == "SIGUSR1" and config["Labels"]["team"] == "k3c"
    assert config["Healthcheck"] == {"Test": ["CMD-SHELL", "test -f /tmp/ok"], "Interval": 500_000_000,
                                     "Retries": 2}
    assert host["Init"] is True
    assert host["Ulimits"] == [{"Name": "nofile", "Soft": 100, "Hard": 200}]
    assert host["Tmpfs"] == {"/scratch": "size=1m", "/t2": "size=2097152"}
    assert host["ShmSize"] == 8 * 2 ** 20 and host["PidsLimit"] == 50
    assert host["Memory"] == 64 * 2 ** 20 and host["MemorySwap"] == 128 * 2 ** 20
    assert host["CpuShares"] == 512 and host["CpusetCpus"] == "0"
    assert host["Devices"] == [{"PathOnHost": "/dev/zero", "PathInContainer": "/dev/myzero",
                                "CgroupPermissions": "r"}]
    assert host["ExtraHosts"] == ["db:10.1.2.3", "gw:host-gateway"]
    assert host["DnsSearch"] == ["example.org"] and host["DnsOptions"] == ["ndots:3"]
    assert host["SecurityOpt"] == ["no-new-privileges"] and host["GroupAdd"] == ["1234"]
    assert host["LogConfig"] == {"Type": "json-file", "Config": {"max-size": "1m", "max-file": "2"}}
    assert {(m["Type"], m["Destination"], m["RW"]) for m in shown["Mounts"]} >= {("bind", "/bound", False)}


def test_the_object_is_the_one_k3c_run_makes(daemon: Any, sock: str, flagged: dict[str, Any]) -> None:
    made = k3c(daemon, "create", "--name", "twin", *run_flags(flagged["bound"]))
    assert made.returncode == 0, made.stderr
    ignored = ("state", "nodeName")
    mine = {k: v for k, v in daemon.container("flagged")["spec"].items() if k not in ignored}
    twin = {k: v for k, v in daemon.container("twin")["spec"].items() if k not in ignored}
    assert mine == twin
    ok(sock, "rm", "twin")


def test_stop_sends_the_stop_signal_through_init(sock: str, flagged: dict[str, Any]) -> None:
    t0 = time.monotonic()
    ok(sock, "stop", "flagged")  # SIGUSR1 to docker-init, which forwards it to the trapping shell
    assert time.monotonic() - t0 < 8
    assert ok(sock, "inspect", "-f", "{{.State.ExitCode}}", "flagged").strip() == "3"
    assert "got-usr1" in ok(sock, "logs", "flagged")
    ok(sock, "rm", "flagged")


def test_docker_py_run_options(dockerpy: docker.DockerClient) -> None:
    box = dockerpy.containers.run(
        TEST_IMAGE, ["sleep", "300"], detach=True, name="pyflags", init=True, stop_signal="SIGINT",
        extra_hosts={"api": "10.9.8.7"}, ulimits=[docker.types.Ulimit(name="nofile", soft=64, hard=128)],
        tmpfs={"/cache": "size=2m"}, pids_limit=20, shm_size="16m", dns_search=["example.net"],
        healthcheck={"test": ["CMD", "true"], "interval": 500_000_000, "retries": 1})
    try:
        def inside(script: str) -> str:
            code, out = box.exec_run(["sh", "-c", script])
            assert code == 0, out
            return str(out.decode())

        assert re.search(r"^10\.9\.8\.7\s+api$", inside("cat /etc/hosts"), re.M)
        assert inside("grep 'Max open files' /proc/1/limits").split()[3:5] == ["64", "128"]
        assert re.search(r" /cache tmpfs \S*size=2048k", inside("cat /proc/mounts"))
        assert re.search(r" /dev/shm tmpfs \S*size=16384k", inside("cat /proc/mounts"))
        assert inside("cat /proc/1/cmdline | tr '\\0' ' '").split()[0] == "/sbin/docker-init"
        assert re.search(r"^search example\.net$", inside("cat /etc/resolv.conf"), re.M)
        wait_until(lambda: box.reload() or (box.attrs["State"].get("Health") or {}).get("Status") == "healthy",
                   30, "healthy")
        assert box.attrs["Config"]["StopSignal"] == "SIGINT" and box.attrs["HostConfig"]["PidsLimit"] == 20
        assert box.attrs["HostConfig"]["Ulimits"] == [{"Name": "nofile", "Soft": 64, "Hard": 128}]
    finally:
        box.remove(force=True)


@pytest.mark.parametrize(("flags", "message"), [
    (["--sysctl", "net.ipv4.ip_forward=1"], "HostConfig.Sysctls is not supported by k3c"),
    (["--security-opt", "label=disable"], "--security-opt label=disable: not supported by k3c"),
    (["--log-opt", "mode=non-blocking"], "unknown log opt 'mode' for json-file log driver"),
    (["--log-driver", "syslog"], "HostConfig.LogConfig.Type syslog is not supported by k3c"),
    (["--pid", "container:other"], "--pid container:other: not supported by k3c"),
    (["--ipc", "none"], "--ipc none: not supported by k3c"),
])
def test_what_k3c_cannot_honour_is_refused_in_one_line(sock: str, flags: list[str], message: str) -> None:
    """The daemon's 400, which `docker create` prints as one line (exit 1)."""
    cp = cli(sock, "create", *flags, TEST_IMAGE, "true")
    lines = cp.stderr.strip().splitlines()
    assert cp.returncode == 1 and len(lines) == 1, (cp.returncode, cp.stderr)
    assert lines[0].startswith(f"Error response from daemon: {message}"), lines


def test_a_bad_create_body_is_a_400(sock: str) -> None:
    body = {"Image": TEST_IMAGE, "HostConfig": {"Ulimits": [{"Name": "nofile", "Soft": 10, "Hard": 5}]}}
    status, _, reply = raw(sock, "POST", "/v1.41/containers/create", json.dumps(body).encode(),
                           {"Content-Type": "application/json"})
    assert status == 400 and json.loads(reply) == {
        "message": "ulimit soft limit must be less than or equal to hard limit: 10 > 5"}


COMPOSE_FILE = """version: "2.4"
services:
  opts:
    image: {image}
    command: ["sh", "-c", "trap 'exit 0' INT; touch /tmp/ok; sleep 3600 & wait"]
    stop_signal: SIGINT
    init: true
    extra_hosts: ["cache:10.4.5.6", "gw:host-gateway"]
    tmpfs: ["/run/scratch:size=1m"]
    ulimits:
      nofile: {{soft: 300, hard: 400}}
    healthcheck:
      test: ["CMD", "test", "-f", "/tmp/ok"]
      interval: 500ms
      retries: 2
    shm_size: 16m
    cap_add: [NET_ADMIN]
    devices: ["/dev/zero:/dev/composezero"]
    security_opt: [no-new-privileges]
    pids_limit: 40
    dns_search: [example.com]
    logging:
      driver: json-file
      options: {{max-size: 2m, max-file: "3"}}
"""


def test_compose_file_with_run_options(sock: str, tmp_path: Path) -> None:
    """docker-compose 1.29 `up -d` of a service with the run options: created, in effect, and up to date on a
    second `up -d` (compose finds nothing changed)."""
    from tests.support.compose_project import COMPOSE

    (tmp_path / "docker-compose.yml").write_text(COMPOSE_FILE.format(image=TEST_IMAGE))
    env = {"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "HOME": os.environ.get("HOME", "/root"),
           "DOCKER_HOST": f"unix://{sock}", "DOCKER_CONFIG": str(tmp_path / ".docker"),
           "COMPOSE_PROJECT_NAME": "runopts"}

    def compose(*args: str) -> subprocess.CompletedProcess[str]:
        cp = subprocess.run([COMPOSE, "--ansi", "never", *args], cwd=tmp_path, capture_output=True, text=True,
                            timeout=180, env=env)
        assert cp.returncode == 0 and "Traceback" not in cp.stderr, (args, cp.stderr)
        return cp

    compose("up", "-d")
    try:
        name = "runopts_opts_1"
        assert re.search(r"^10\.4\.5\.6\s+cache$", sh(sock, name, "cat /etc/hosts"), re.M)
        assert sh(sock, name, "grep 'Max open files' /proc/1/limits").split()[3:5] == ["300", "400"]
        assert sh(sock, name, "cat /proc/1/cmdline | tr '\\0' ' '").split()[0] == "/sbin/docker-init"
        assert re.search(r" /run/scratch tmpfs \S*size=1024k", sh(sock, name, "cat /proc/mounts"))
        assert sh(sock, name, "cat /sys/fs/cgroup/pids/pids.max").strip() == "40"
        assert sh(sock, name, "test -c /dev/composezero && echo there").strip() == "there"
        wait_until(lambda: ok(sock, "inspect", "-f", "{{.State.Health.Status}}", name).strip() == "healthy", 30,
                   "healthy")
        again = compose("up", "-d")
        assert "is up-to-date" in again.stderr, again.stderr
        t0 = time.monotonic()
        compose("stop", "-t", "20")  # SIGINT, trapped: well before the 20 s grace
        assert time.monotonic() - t0 < 10
        assert ok(sock, "inspect", "-f", "{{.State.ExitCode}}", name).strip() == "0"
    finally:
        compose("down", "-v", "--timeout", "0")
