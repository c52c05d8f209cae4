"""`k3c run` flags through a real `k3c daemon`: each flag's effect seen from inside or outside the container.

Many flags share one container (the suite stays fast); each assertion names the flag it is about.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.daemon_harness import TEST_IMAGE, wait_until
from tests.support.harness import free_port


def k3c(daemon: Any, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "K3C_KUBECONFIG": str(daemon.kubeconfig)}
    cp = subprocess.run([sys.executable, "-m", "k3c.cli.main", *args], env=env, capture_output=True, text=True,
                        timeout=timeout)
    assert "Traceback" not in cp.stderr, cp.stderr
    return cp


def ok(daemon: Any, *args: str) -> str:
    cp = k3c(daemon, *args)
    assert cp.returncode == 0, f"k3c {' '.join(args)}: {cp.returncode} {cp.stderr}"
    return cp.stdout


def sh(daemon: Any, name: str, script: str) -> str:
    return ok(daemon, "exec", name, "sh", "-c", script)


def mounts(daemon: Any, name: str) -> dict[str, tuple[str, str]]:
    """Mount point → (fs type, options) as /proc/mounts lists them in the container."""
    out = {}
    for line in sh(daemon, name, "cat /proc/mounts").splitlines():
        _src, target, fstype, options = line.split()[:4]
        out[target] = (fstype, options)
    return out


@pytest.fixture(scope="module")
def limited(daemon: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One container with most of the flags."""
    d = tmp_path_factory.mktemp("runflags")
    labels = d / "labels"
    labels.write_text("# team labels\nteam=k3c\n\nempty\n")
    cidfile = d / "cid"
    shared = d / "shared"
    shared.mkdir()
    (shared / "hello").write_text("from the node\n")
    printed = ok(daemon, "run", "-d", "--name", "limited",
       "--ulimit", "nofile=100:200",
       "--tmpfs", "/scratch:size=1m", "--mount", "type=tmpfs,target=/t2,tmpfs-size=2097152",
       "--shm-size", "8m", "--device", "/dev/zero:/dev/myzero:r",
       "--add-host", "db:10.1.2.3", "--add-host", "gw:host-gateway",
       "--dns-search", "example.org", "--dns-option", "ndots:3",
       "-c", "512", "--cpuset-cpus", "0", "-m", "64m", "--memory-swap", "128m",
       "--security-opt", "no-new-privileges", "--group-add", "1234", "--group-add", "nogroup",
       "--mount", f"type=bind,source={shared},target=/bound,readonly", "--label-file", str(labels), "--cidfile", str(cidfile), "--platform", "linux",
       TEST_IMAGE, "sleep", "300")
    return {"cidfile": cidfile, "id": printed.strip()}


def test_ulimit_sets_soft_and_hard_limits(daemon: Any, limited: dict[str, Any]) -> None:
    """Read from the container's own process (PID 1), as docker's ``--ulimit`` promises. Not from the exec's
    shell: runc 1.1.5 (Go 1.19) sets an exec's RLIMIT_NOFILE racily, at times soft = hard (runc #4195)."""
    line = sh(daemon, "limited", "grep 'Max open files' /proc/1/limits")
    assert line.split()[3:5] == ["100", "200"], line


def test_pids_limit_is_hit(daemon: Any) -> None:
    # a container of its own: the shell that hits the limit dies, its orphans stay zombies of `sleep`
    ok(daemon, "run", "-d", "--name", "pids", "--pids-limit", "10", TEST_IMAGE, "sleep", "300")
    out = k3c(daemon, "exec", "pids", "sh", "-c", "for i in $(seq 20); do sleep 1 & done 2>&1; wait").stdout
    assert re.search(r"can't fork|Resource temporarily unavailable", out), out
    ok(daemon, "rm", "-f", "pids")


def test_tmpfs_and_shm_size_are_mounted(daemon: Any, limited: dict[str, Any]) -> None:
    m = mounts(daemon, "limited")
    assert m["/scratch"][0] == "tmpfs" and "size=1024k" in m["/scratch"][1] and "noexec" in m["/scratch"][1]
    assert m["/t2"][0] == "tmpfs" and "size=2048k" in m["/t2"][1]
    assert m["/dev/shm"][0] == "tmpfs" and "size=8192k" in m["/dev/shm"][1]
    assert sh(daemon, "limited", "echo hi > /scratch/f && cat /scratch/f").strip() == "hi"


def test_mount_bind_readonly(daemon: Any, limited: dict[str, Any]) -> None:
    assert sh(daemon, "limited", "cat /bound/hello").strip() == "from the node"
    out = k3c(daemon, "exec", "limited", "sh", "-c", "echo x > /bound/new")
    assert out.returncode != 0 and "Read-only file system" in out.stderr, out.stderr


def test_volumes_by_docker_name(daemon: Any) -> None:
    """`-v NAME:` and `--mount type=volume,source=NAME` take docker's volume names (k3c.dockerid)."""
    ok(daemon, "run", "-d", "--name", "Vol_User", "--mount", "type=volume,source=Proj_data,target=/data",
       "-v", "Other_vol:/other:ro", TEST_IMAGE, "sleep", "300")
    assert sh(daemon, "Vol_User", "echo hi > /data/f && cat /data/f").strip() == "hi"
    names = ok(daemon, "volume", "ls", "--format", "{{.Name}}").split()
    assert "Proj_data" in names and "Other_vol" in names, names
    shown = json.loads(ok(daemon, "inspect", "-f", "{{json .Mounts}}", "Vol_User"))
    assert sorted((m["Name"], m["Destination"], m["RW"]) for m in shown) == [
        ("Other_vol", "/other", False), ("Proj_data", "/data", True)]
    ok(daemon, "rm", "-f", "Vol_User")
    ok(daemon, "volume", "rm", "Proj_data", "Other_vol")
    bad = k3c(daemon, "run", "--rm", "--mount", "type=volume,source=bad name,target=/d", TEST_IMAGE, "true")
    assert bad.returncode == 125 and 'create bad name: "bad name" includes invalid characters' in bad.stderr


def test_device_is_there(daemon: Any, limited: dict[str, Any]) -> None:
    assert sh(daemon, "limited", "head -c 3 /dev/myzero | od -An -tx1").split() == ["00", "00", "00"]


def test_add_host_and_dns_options(daemon: Any, limited: dict[str, Any]) -> None:
    hosts = sh(daemon, "limited", "cat /etc/hosts")
    assert re.search(r"^10\.1\.2\.3\s+db$", hosts, re.M), hosts
    gateway = sh(daemon, "limited", "ip route | awk '/^default/ {print $3}'").strip()
    assert re.search(rf"^{re.escape(gateway)}\s+gw$", hosts, re.M), (gateway, hosts)
    resolv = sh(daemon, "limited", "cat /etc/resolv.conf")
    assert re.search(r"^search example\.org$", resolv, re.M), resolv
    assert re.search(r"^options ndots:3$", resolv, re.M), resolv


def test_cpu_and_memory_limits_in_the_cgroup(daemon: Any, limited: dict[str, Any]) -> None:
    out = sh(daemon, "limited", "cat /sys/fs/cgroup/cpu/cpu.shares /sys/fs/cgroup/cpuset/cpuset.cpus "
                                "/sys/fs/cgroup/memory/memory.limit_in_bytes "
                                "/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes")
    assert out.split() == ["512", "0", str(64 * 2 ** 20), str(128 * 2 ** 20)]


def test_no_new_privileges_and_group_add(daemon: Any, limited: dict[str, Any]) -> None:
    status = sh(daemon, "limited", "cat /proc/self/status")
    assert re.search(r"^NoNewPrivs:\s+1$", status, re.M), status
    groups = re.search(r"^Groups:(.*)$", status, re.M).group(1).split()  # type: ignore[union-attr]
    assert "1234" in groups and "65534" in groups  # nogroup: by name, from the image's /etc/group
    missing = k3c(daemon, "run", "--rm", "--group-add", "nosuchgroup", TEST_IMAGE, "true")
    assert missing.returncode == 125 and "Unable to find group nosuchgroup" in missing.stderr, missing.stderr


def test_label_file_and_cidfile(daemon: Any, limited: dict[str, Any]) -> None:
    labels = ok(daemon, "inspect", "-f", "{{json .Config.Labels}}", "limited")
    assert '"team":"k3c"' in labels and '"empty":""' in labels, labels
    obj = daemon.container("limited")
    docker_id = hashlib.sha256(obj["metadata"]["uid"].encode()).hexdigest()
    assert Path(limited["cidfile"]).read_text() == docker_id == limited["id"]  # what `run -d` printed
    again = k3c(daemon, "create", "--cidfile", str(limited["cidfile"]), TEST_IMAGE)
    assert again.returncode == 125 and "Container ID file found" in again.stderr


def test_host_namespaces_and_unconfined_seccomp(daemon: Any) -> None:
    ok(daemon, "run", "-d", "--name", "hostns", "--pid", "host", "--ipc", "host",
       "--security-opt", "seccomp=unconfined", TEST_IMAGE, "sleep", "300")
    inside = sh(daemon, "hostns", "readlink /proc/self/ns/pid; readlink /proc/self/ns/ipc").split()
    assert inside == [os.readlink("/proc/self/ns/pid"), os.readlink("/proc/self/ns/ipc")]
    assert re.search(r"^Seccomp:\s+0$", sh(daemon, "hostns", "cat /proc/self/status"), re.M)
    ok(daemon, "run", "-d", "--name", "ownns", "--ipc", "private", TEST_IMAGE, "sleep", "300")
    own = sh(daemon, "ownns", "readlink /proc/self/ns/pid; readlink /proc/self/ns/ipc").split()
    assert own[0] != inside[0] and own[1] != inside[1]
    assert re.search(r"^Seccomp:\s+2$", sh(daemon, "ownns", "cat /proc/self/status"), re.M)
    ok(daemon, "rm", "-f", "hostns", "ownns")


def test_stop_signal_is_the_one_sent(daemon: Any) -> None:
    ok(daemon, "run", "-d", "--name", "stopsig", "--stop-signal", "SIGUSR1", TEST_IMAGE, "sh", "-c",
       "trap 'echo got-usr1; exit 3' USR1; trap 'echo got-term; exit 4' TERM; "
       "echo ready; while true; do sleep 0.1; done")
    wait_until(lambda: "ready" in ok(daemon, "logs", "stopsig"), 20, "the trap to be set")
    t0 = time.monotonic()
    ok(daemon, "stop", "stopsig")
    assert time.monotonic() - t0 < 8
    assert ok(daemon, "inspect", "-f", "{{.State.ExitCode}}", "stopsig").strip() == "3"
    assert "got-usr1" in ok(daemon, "logs", "stopsig")
    ok(daemon, "rm", "stopsig")


def test_pull_policies(daemon: Any) -> None:
    never = k3c(daemon, "run", "--pull", "never", "k3c.test/not-here:1", "true")
    assert never.returncode == 125 and "No such image: k3c.test/not-here:1" in never.stderr, never.stderr
    # a local image whose registry is unreachable: "missing" runs it, "always" must ask the registry and fails
    assert ok(daemon, "run", "--rm", "--pull", "missing", TEST_IMAGE, "echo", "local").strip() == "local"
    always = k3c(daemon, "run", "--rm", "--pull", "always", TEST_IMAGE, "echo", "local")
    assert always.returncode == 125 and "pulling it failed" in always.stderr, always.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["--platform", "linux/s390x"], "--platform linux/s390x: k3c runs images of this node's platform only"),
    (["--security-opt", "seccomp=/nonexistent/profile.json"], "opening seccomp profile (/nonexistent/profile.json)"),
    (["--security-opt", "label=disable"], "--security-opt label=disable: not supported by k3c"),
    (["--ipc", "container:other"], "--ipc container:other: not supported by k3c"),
    (["--pid", "container:other"], "--pid container:other: not supported by k3c"),
    (["--pull", "sometimes"], "invalid pull option: 'sometimes'"),
    (["--ulimit", "nofile=20:10"], "ulimit soft limit must be less than or equal to hard limit"),
    (["--stop-signal", "SIGNOPE"], "Invalid signal: SIGNOPE"),
    (["--shm-size", "8m", "--ipc", "host"], "--shm-size cannot be used with --ipc host"),
    # (this VM's kernel runs no AppArmor, see PLATFORM-NOTES: a named profile is refused at the start)
    (["--security-opt", "apparmor=docker-default"], "AppArmor is not enabled on this node"),
    (["--memory-swap", "64m"], "You should always set the Memory limit when using Memoryswap limit"),
])
def test_unsupported_values_are_refused_in_one_line(daemon: Any, args: list[str], message: str) -> None:
    cp = k3c(daemon, "run", "--rm", *args, TEST_IMAGE, "true")
    assert cp.returncode == 125, cp.stderr
    assert len(cp.stderr.strip().splitlines()) == 1 and message in cp.stderr, cp.stderr


def _attached_run(daemon: Any, name: str, *flags: str) -> subprocess.Popen[str]:
    env = {**os.environ, "K3C_KUBECONFIG": str(daemon.kubeconfig)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "k3c.cli.main", "run", "--name", name, *flags, TEST_IMAGE, "sh", "-c",
         "trap 'echo got-term; exit 5' TERM; echo ready; while true; do sleep 0.1; done"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc


def test_sig_proxy(daemon: Any) -> None:
    proxied = _attached_run(daemon, "proxied")
    proxied.send_signal(signal.SIGTERM)
    out, _ = proxied.communicate(timeout=30)
    assert proxied.returncode == 5 and "got-term" in out
    alone = _attached_run(daemon, "alone", "--sig-proxy=false")
    alone.send_signal(signal.SIGTERM)
    alone.wait(timeout=30)
    time.sleep(1)
    assert ok(daemon, "inspect", "-f", "{{.State.Status}}", "alone").strip() == "running"
    assert "got-term" not in ok(daemon, "logs", "alone")
    ok(daemon, "rm", "-f", "proxied", "alone")


def test_publish_all_and_port(daemon: Any) -> None:
    from k3c.oci.layout import ImageConfig, busybox_image

    daemon.import_image("k3c.test/exposer:1", busybox_image(config=ImageConfig(exposed_ports=["8080/tcp"])))
    ok(daemon, "run", "-d", "--name", "exposer", "-P", "--expose", "9090", "k3c.test/exposer:1",
       "httpd", "-f", "-p", "8080", "-h", "/var/www")
    lines = ok(daemon, "port", "exposer").splitlines()
    assert [re.sub(r":\d+$", ":N", line) for line in lines] == ["8080/tcp -> 0.0.0.0:N", "9090/tcp -> 0.0.0.0:N"]
    host_port = int(lines[0].rsplit(":", 1)[1])
    assert host_port > 0 and ok(daemon, "port", "exposer", "8080/tcp").strip() == f"0.0.0.0:{host_port}"

    def answers() -> bool:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", host_port), timeout=2) as c:
            c.sendall(b"GET / HTTP/1.0\r\n\r\n")
            return c.recv(16).startswith(b"HTTP/1.")
        return False

    wait_until(answers, 20, "the published port to reach httpd")
    missing = k3c(daemon, "port", "exposer", "8081")
    assert missing.returncode == 1
    assert missing.stderr.strip() == "Error: No public port '8081/tcp' published for exposer"
    ok(daemon, "rm", "-f", "exposer")


def test_init_forwards_signals_and_reaps(daemon: Any) -> None:
    ok(daemon, "run", "-d", "--name", "withinit", "--init", TEST_IMAGE, "sleep", "300")
    assert sh(daemon, "withinit", "cat /proc/1/cmdline | tr '\\0' ' '").split() == [
        "/sbin/docker-init", "--", "sleep", "300"]
    assert sh(daemon, "withinit", "echo x > /sbin/docker-init 2>&1 || echo refused").strip().endswith("refused")
    k3c(daemon, "exec", "withinit", "sh", "-c", "sleep 0.2 & exit 0")  # its sleep is orphaned to PID 1
    time.sleep(1)
    states = sh(daemon, "withinit", "ps -o stat,args").splitlines()[1:]
    assert not [s for s in states if s.startswith("Z")], states
    t0 = time.monotonic()
    ok(daemon, "stop", "withinit")  # SIGTERM reaches sleep through the init (sleep as PID 1 ignores it)
    assert time.monotonic() - t0 < 5
    assert ok(daemon, "inspect", "-f", "{{.State.ExitCode}}", "withinit").strip() == "143"
    ok(daemon, "rm", "withinit")


def _health(daemon: Any, name: str) -> str:
    return ok(daemon, "inspect", "-f", "{{if .State.Health}}{{.State.Health.Status}}{{end}}", name).strip()


def _events(daemon: Any, name: str) -> list[str]:
    uid = daemon.container(name)["metadata"]["uid"]
    items = daemon.api.get("/api/v1/namespaces/default/events").get("items", [])
    return [e["reason"] for e in items if e["involvedObject"].get("uid") == uid]


def test_health_check_from_flags(daemon: Any) -> None:
    # a docker name that is no object name (k3c.dockerid): ps, inspect and events all go by it
    name = "proj_checked_1"
    cid = ok(daemon, "run", "-d", "--name", name, "--health-cmd", "test -f /tmp/ok", "--health-interval", "500ms",
             "--health-retries", "2", TEST_IMAGE, "sh", "-c", "touch /tmp/ok; exec sleep 300").strip()
    obj_name = ok(daemon, "inspect", "-f", "{{.K3c.Object}}", name).strip()
    assert obj_name != name
    wait_until(lambda: _health(daemon, name) == "healthy", 20, "healthy")
    assert "(healthy)" in ok(daemon, "ps", "--filter", f"name={name}", "--format", "{{.Status}}")
    wait_until(lambda: "HealthStatusHealthy" in _events(daemon, obj_name), 10, "the healthy event")
    sh(daemon, name, "rm /tmp/ok")
    wait_until(lambda: _health(daemon, name) == "unhealthy", 20, "unhealthy")
    assert ok(daemon, "ps", "--filter", f"name={name}", "--format", "{{.Names}} {{.Status}}").endswith(
        " (unhealthy)\n")
    wait_until(lambda: "HealthStatusUnhealthy" in _events(daemon, obj_name), 10, "the unhealthy event")
    health = json.loads(ok(daemon, "inspect", "-f", "{{json .State.Health}}", name))
    assert health["FailingStreak"] >= 2 and health["Log"][-1]["ExitCode"] == 1 and len(health["Log"]) <= 5
    # `k3c events` tells docker's health_status actions of the container, by its docker ID and name
    until = f"{time.time() + 1:.3f}"
    out = ok(daemon, "events", "--since", "1h", "--until", until, "-f", f"container={name}",
             "-f", "event=health_status", "--format", "{{.Action}} {{.Actor.ID}} {{.Actor.Attributes.name}}")
    assert out.splitlines() == [f"health_status: healthy {cid} {name}", f"health_status: unhealthy {cid} {name}"]
    ok(daemon, "rm", "-f", name)


def test_image_healthcheck_and_no_healthcheck(daemon: Any) -> None:
    from k3c.oci.layout import ImageConfig, busybox_image

    check = {"Test": ["CMD-SHELL", "exit 1"], "Interval": 300_000_000, "Retries": 1}
    daemon.import_image("k3c.test/checked:1", busybox_image(config=ImageConfig(healthcheck=check)))
    ok(daemon, "run", "-d", "--name", "imgcheck", "k3c.test/checked:1", "sleep", "300")
    ok(daemon, "run", "-d", "--name", "overridden", "--health-cmd", "true", "k3c.test/checked:1", "sleep", "300")
    ok(daemon, "run", "-d", "--name", "nocheck", "--no-healthcheck", "k3c.test/checked:1", "sleep", "300")
    wait_until(lambda: _health(daemon, "imgcheck") == "unhealthy", 20, "the image's check to fail")
    wait_until(lambda: _health(daemon, "overridden") == "healthy", 20, "the flag's check over the image's")
    time.sleep(1)
    assert _health(daemon, "nocheck") == ""
    assert "(" not in ok(daemon, "ps", "--filter", "name=nocheck", "--format", "{{.Status}}")
    conflict = k3c(daemon, "run", "--no-healthcheck", "--health-cmd", "true", TEST_IMAGE, "true")
    assert conflict.returncode == 125 and "--no-healthcheck conflicts with --health-* options" in conflict.stderr
    ok(daemon, "rm", "-f", "imgcheck", "overridden", "nocheck")


def test_health_check_resumes_after_an_operator_restart(daemon: Any) -> None:
    ok(daemon, "run", "-d", "--name", "resumed", "--health-cmd", "test -f /tmp/ok", "--health-interval", "300ms",
       "--health-retries", "1", TEST_IMAGE, "sh", "-c", "touch /tmp/ok; exec sleep 300")
    wait_until(lambda: _health(daemon, "resumed") == "healthy", 20, "healthy")
    old = daemon.status()["operatorPid"]
    os.kill(old, signal.SIGKILL)  # the operator the daemon started for this module
    new = wait_until(lambda: (p := daemon.status().get("operatorPid")) != old and p, 20, "a new operator")
    daemon.started_pids.add(new)
    sh(daemon, "resumed", "rm /tmp/ok")
    wait_until(lambda: _health(daemon, "resumed") == "unhealthy", 30, "the adopted container's check to run")
    ok(daemon, "rm", "-f", "resumed")


def test_log_rotation_and_reading_across_files(daemon: Any) -> None:
    from k3c.api import CONTAINER_LOGS_DIR, container_log_file

    ok(daemon, "run", "-d", "--name", "chatty", "--log-opt", "max-size=1k", "--log-opt", "max-file=3", TEST_IMAGE,
       "sh", "-c", "i=0; while [ $i -lt 150 ]; do echo line-$i; i=$((i+1)); sleep 0.03; done; echo done; "
       "exec sleep 300")
    env = {**os.environ, "K3C_KUBECONFIG": str(daemon.kubeconfig)}
    follower = subprocess.Popen([sys.executable, "-m", "k3c.cli.main", "logs", "-f", "chatty"], env=env,
                                stdout=subprocess.PIPE, text=True)
    obj = daemon.container("chatty")
    path = daemon.root_dir / CONTAINER_LOGS_DIR / container_log_file("default", "chatty", obj["metadata"]["uid"])
    seen: set[str] = set()

    def finished() -> bool:
        seen.update(p.name for p in path.parent.glob(path.name + ".*"))
        return "done" in ok(daemon, "logs", "--tail", "1", "chatty")

    wait_until(finished, 30, "the output to end")
    assert {path.name + ".1", path.name + ".2"} <= seen, seen  # it was rotated
    assert not path.with_name(path.name + ".3").exists()  # max-file=3: the file and two rotated ones
    lines = ok(daemon, "logs", "chatty").split()
    assert lines[-1] == "done" and lines[-2] == "line-149"
    numbers = [int(x.split("-")[1]) for x in lines[:-1]]
    assert numbers == list(range(numbers[0], 150)) and numbers[0] > 0  # in order, the oldest dropped
    assert ok(daemon, "logs", "--tail", "3", "chatty").split() == ["line-148", "line-149", "done"]
    ok(daemon, "rm", "-f", "chatty")
    out, _ = follower.communicate(timeout=30)
    followed = out.split()
    assert followed[:3] == ["line-0", "line-1", "line-2"] and followed[-1] == "done"
    assert [int(x.split("-")[1]) for x in followed[:-1]] == list(range(150))  # across every rotation
    assert not list(path.parent.glob(path.name + "*"))  # removed with the container


COMPOSE_STYLE = """
apiVersion: k3c.io/v1alpha1
kind: LocalContainer
metadata: {name: composed}
spec:
  image: %s
  command: [sh, -c]
  args: ["i=0; while [ $i -lt 60 ]; do echo log-line-$i; i=$((i+1)); done; touch /run/app/ready; exec sleep 300"]
  init: true
  healthcheck: {test: [CMD-SHELL, "test -f /run/app/ready"], interval: 300ms, retries: 1}
  tmpfs: [{mountPath: /run/app, options: "size=1m"}]
  ulimits: [{name: nofile, soft: 64, hard: 64}]
  extraHosts: [{name: db.internal, ip: 10.9.8.7}]
  logOptions: {maxSize: 1k, maxFile: 2}
"""


def test_compose_style_spec_through_kubectl(daemon: Any) -> None:
    """What compose turns a service into, written as YAML by kubectl: every field has its effect."""
    from tests.support.harness import run_kubectl

    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl is needed here (it is on the machine image)")
    run_kubectl(kubectl, daemon.kubeconfig, "apply", "-f", "-", input=COMPOSE_STYLE % TEST_IMAGE)
    explained = run_kubectl(kubectl, daemon.kubeconfig, "explain", "localcontainers.spec.healthcheck").stdout
    assert "merged field by field over the image's HEALTHCHECK" in " ".join(explained.split())
    wait_until(lambda: _health(daemon, "composed") == "healthy", 30, "healthy")
    assert sh(daemon, "composed", "cat /proc/1/cmdline | tr '\\0' ' '").split()[0] == "/sbin/docker-init"
    assert sh(daemon, "composed", "ulimit -n").strip() == "64"
    assert mounts(daemon, "composed")["/run/app"][0] == "tmpfs"
    assert re.search(r"^10\.9\.8\.7\s+db\.internal$", sh(daemon, "composed", "cat /etc/hosts"), re.M)
    obj = daemon.container("composed")
    from k3c.api import CONTAINER_LOGS_DIR, container_log_file

    path = daemon.root_dir / CONTAINER_LOGS_DIR / container_log_file("default", "composed", obj["metadata"]["uid"])
    wait_until(lambda: path.with_name(path.name + ".1").exists(), 15, "a rotation")
    lines = ok(daemon, "logs", "composed").split()
    assert lines == [f"log-line-{i}" for i in range(60)]  # all of it was rotated to FILE.1, and is read there
    run_kubectl(kubectl, daemon.kubeconfig, "delete", "localcontainer", "composed", "--wait", timeout=60)


def test_seccomp_profile_file(daemon: Any, tmp_path: Path) -> None:
    profile = tmp_path / "no-mkdir.json"
    profile.write_text(json.dumps({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
                     {"names": ["reboot"], "action": "SCMP_ACT_ERRNO", "includes": {"caps": ["CAP_SYS_ADMIN"]}}]}))
    out = ok(daemon, "run", "--rm", "--security-opt", f"seccomp={profile}", TEST_IMAGE, "sh", "-c",
             "mkdir /tmp/x 2>&1; echo rc=$?; touch /tmp/y && echo touched")
    assert "Operation not permitted" in out and "rc=1" in out and "touched" in out, out
    assert ok(daemon, "run", "--rm", TEST_IMAGE, "sh", "-c", "mkdir /tmp/x && echo made").strip() == "made"


def test_port_output_matches_dockers(daemon: Any, docker_peer: Any, tmp_path: Path) -> None:
    """The same `run -P --expose -p` on docker 20.10 and k3c: `port` prints the same lines (host ports
    normalised; docker also lists each binding for IPv6, which k3c does not publish)."""
    from k3c.oci.layout import ImageConfig, busybox_image
    from tests.support.docker_peer import load_image

    image = busybox_image(config=ImageConfig(exposed_ports=["8080/tcp"]))
    load_image(docker_peer, tmp_path, "k3c.test/ported:1", image)
    daemon.import_image("k3c.test/ported:1", image)
    try:
        flags = ["-d", "--name", "ported", "-P", "--expose", "9090"]
        cmd = ["k3c.test/ported:1", "sleep", "300"]
        docker_peer.run("run", *flags, "-p", f"127.0.0.1:{free_port()}:7070/udp", *cmd)
        ok(daemon, "run", *flags, "-p", f"127.0.0.1:{free_port()}:7070/udp", *cmd)

        def both(*args: str) -> tuple[tuple[int, list[str], str], tuple[int, list[str], str]]:
            d = subprocess.run(docker_peer.cli("port", *args), capture_output=True, text=True, timeout=60)
            k = k3c(daemon, "port", *args)
            norm = [re.sub(r":\d+$", ":N", line) for line in d.stdout.splitlines() if "::" not in line]
            mine = [re.sub(r":\d+$", ":N", line) for line in k.stdout.splitlines()]
            return (d.returncode, sorted(norm), d.stderr), (k.returncode, sorted(mine), k.stderr)

        for args in (["ported"], ["ported", "8080"], ["ported", "7070/udp"], ["ported", "8081"],
                     ["ported", "abc"]):
            theirs, mine = both(*args)
            assert mine == theirs, (args, theirs, mine)
    finally:
        subprocess.run(docker_peer.cli("rm", "-f", "ported"), capture_output=True, timeout=60)
        k3c(daemon, "rm", "-f", "ported")
