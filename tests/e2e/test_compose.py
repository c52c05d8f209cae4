"""docker-compose 1.29 (Debian's, docker-py inside) end to end through `k3c daemon`'s Docker API socket.

One three-service project written into the test's directory: ``web`` built from a Dockerfile (``build: .``,
FROM the busybox image the daemon fixture loaded: no registry), ``db`` from that image with an alias on an
extra network, and ``app``, which depends on both. It uses a published port reached from the host,
environment, a named volume, the project's default network and the extra one (subnets reserved for this
process, so parallel runs never meet). Every compose command is checked by its real exit code and output,
what it made by the objects (``kubectl get lc,net,volumes -l com.docker.compose.project=…``), and ``down -v``
by what is left on the host: no object, bridge, iptables rule, IP lease or netns.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from k3c.api import LOCAL_CONTAINERS, NETWORKS, VOLUMES
from k3c.daemon.containerd import leased_ips
from tests.support.compose_project import COMPOSE, PROJECT, Project
from tests.support.daemon_harness import DaemonProcess
from tests.support.harness import http_get

LABEL = f"com.docker.compose.project={PROJECT}"


@pytest.fixture(scope="module")
def sock(daemon) -> str:
    return str(daemon.state_dir / "docker.sock")


@pytest.fixture
def project(tmp_path, sock):
    if not os.access(COMPOSE, os.X_OK):
        pytest.fail(f"{COMPOSE} is missing: scripts/test installs Debian's docker-compose")
    p = Project(tmp_path / "proj", sock)
    yield p
    p.run("down", "-v", "--timeout", "0")  # (whatever a failed test left; a no-op after a clean down)


def kubectl_names(daemon: DaemonProcess, kinds: str, selector: str) -> list[str]:
    """``Kind/docker-name`` of the objects kubectl lists (a recreated container's object name may differ
    from its docker name's: the old object held the name when the new one was made)."""
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is missing"
    template = r'{range .items[*]}{.kind}/{.metadata.annotations.k3c\.io/name}{"\n"}{end}'
    cp = subprocess.run([kubectl, "--kubeconfig", str(daemon.kubeconfig), "get", kinds, "-l", selector,
                         "-o", f"jsonpath={template}"], capture_output=True, text=True, timeout=60)
    assert cp.returncode == 0, cp.stderr
    return sorted(cp.stdout.split())


def inspect(project: Project, name: str) -> dict:
    cp = subprocess.run(["/usr/bin/docker", "inspect", name], capture_output=True, text=True, timeout=60,
                        env=project.env())
    assert cp.returncode == 0, cp.stderr
    (doc,) = json.loads(cp.stdout)
    return doc


def addresses(project: Project, name: str) -> dict[str, str]:
    """A container's address on each of its networks, from inspect."""
    return {net: ep["IPAddress"] for net, ep in inspect(project, name)["NetworkSettings"]["Networks"].items()}


def lookup(project: Project, service: str, name: str) -> list[str]:
    """The addresses busybox's nslookup finds for ``name`` inside ``service`` ([] if it finds none)."""
    cp = project.run("exec", "-T", service, "nslookup", name)
    answer = cp.stdout.partition("Name:")[2]
    found = [line.split()[-1] for line in answer.splitlines() if line.startswith("Address")]
    assert found or cp.returncode != 0, cp.stdout
    return found


def ps_rows(project: Project) -> dict[str, str]:
    """`docker-compose ps`'s rows by container name (the header and rule dropped)."""
    lines = project.ok("ps").stdout.splitlines()[2:]
    return {line.split()[0]: line for line in lines if line.strip()}


def project_leases(daemon: DaemonProcess, project: Project) -> list[str]:
    """host-local's lease files (one per address handed out) of addresses in the project's subnets."""
    nets = [ipaddress.ip_network(s) for s in project.subnets.values()]
    return [p.name for p in leased_ips(daemon.containerd_config, every_network=True)
            if any(ipaddress.ip_address(p.name) in n for n in nets)]


def iptables_rules() -> list[str]:
    return subprocess.run(["iptables-save"], capture_output=True, text=True, check=True).stdout.splitlines()


def done_lines(stderr: str, verb: str) -> list[str]:
    return sorted(line.split()[1] for line in stderr.splitlines()
                  if line.startswith(verb + " ") and line.rstrip().endswith("... done"))


def test_compose_project_end_to_end(daemon, project):
    names = [f"{PROJECT}_app_1", f"{PROJECT}_db_1", f"{PROJECT}_web_1"]

    # ---- create without starting, then a recreate of containers that never ran
    created = project.ok("up", "--no-start")
    assert f'Creating network "{PROJECT}_default" with the default driver' in created.stderr
    assert f'Creating network "{PROJECT}_backend" with the default driver' in created.stderr
    assert f'Creating volume "{PROJECT}_data" with default driver' in created.stderr
    assert "Successfully tagged k3cproj_web:latest" in created.stdout
    assert done_lines(created.stderr, "Creating") == names
    for name in names:  # dockerd's inspect names the image from the create on
        assert inspect(project, name)["Image"].startswith("sha256:")
    recreated = project.ok("up", "-d", "--force-recreate")
    assert done_lines(recreated.stderr, "Recreating") == names

    # ---- the project as objects
    assert kubectl_names(daemon, "lc,net,volumes", LABEL) == sorted([
        *(f"LocalContainer/{n}" for n in names), f"Network/{PROJECT}_backend", f"Network/{PROJECT}_default",
        f"Volume/{PROJECT}_data"])
    assert kubectl_names(daemon, "lc", f"{LABEL},com.docker.compose.service=db") == [f"LocalContainer/{PROJECT}_db_1"]

    # ---- ps, the published port, logs, exec
    rows = ps_rows(project)
    assert sorted(rows) == names
    assert all(" Up " in row or row.rstrip().endswith(" Up") for row in rows.values()), rows
    assert f"0.0.0.0:{project.port}->8080/tcp" in rows[f"{PROJECT}_web_1"]
    assert " sh -c trap 'exit 0' TERM; " in rows[f"{PROJECT}_web_1"]  # the image's CMD, as dockerd shows it
    web = inspect(project, f"{PROJECT}_web_1")["Config"]
    assert web["Cmd"] == ["sh", "-c", "trap 'exit 0' TERM; httpd -f -p 8080 -h /www & wait"]
    assert web["Env"][0] == "GREETING=hello" and web["Env"][1].startswith("PATH=")
    assert sorted(project.ok("ps", "--services").stdout.split()) == ["app", "db", "web"]
    ids = {inspect(project, n)["Id"] for n in names}
    assert set(project.ok("ps", "-q").stdout.split()) == ids
    assert http_get(project.port, "/index.html", timeout=20).endswith(b"\r\n\r\nhello from web\n")
    logs = project.ok("logs", "--no-color").stdout
    assert f"{PROJECT}_app_1" in logs.splitlines()[0]  # "Attaching to …"
    assert "app_1  | app frontend" in logs and "db_1   | db up" in logs
    assert project.ok("logs", "--no-color", "db").stdout.splitlines()[1:] == ["db_1   | db up"]
    assert project.ok("exec", "-T", "app", "sh", "-c", "echo $ROLE").stdout == "frontend\n"
    assert project.ok("exec", "-T", "web", "sh", "-c", "echo $GREETING").stdout == "hello\n"
    assert project.run("exec", "-T", "app", "sh", "-c", "exit 3").returncode == 3
    # docker-py's exec rather than the docker CLI's
    no_cli = project.run("exec", "-T", "db", "sh", "-c", "echo out; exit 4", COMPOSE_INTERACTIVE_NO_CLI="1")
    assert (no_cli.returncode, no_cli.stdout) == (4, "out\n")
    project.ok("exec", "-T", "web", "sh", "-c", "echo kept > /data/file")

    # ---- names: services find each other by service name and by the alias, on the networks they share
    ips = {s: addresses(project, f"{PROJECT}_{s}_1") for s in ("app", "db", "web")}
    assert set(ips["app"]) == set(ips["db"]) == {f"{PROJECT}_backend", f"{PROJECT}_default"}
    assert lookup(project, "app", "web") == [ips["web"][f"{PROJECT}_default"]]
    assert lookup(project, "app", "database") == [ips["db"][f"{PROJECT}_backend"]]
    assert lookup(project, "web", "db") == [ips["db"][f"{PROJECT}_default"]]
    assert lookup(project, "web", "database") == []  # web is not on the backend network
    reply = project.ok("exec", "-T", "app", "sh", "-c",
                       f"printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' | nc -w 5 {ips['web'][f'{PROJECT}_default']} 8080")
    assert reply.stdout.endswith("\n\nhello from web\n"), reply.stdout  # (text mode: \r\n read as \n)

    # ---- restart, stop, start
    started = {n: inspect(project, n)["State"]["StartedAt"] for n in names}
    t0 = time.monotonic()
    restarted = project.ok("restart")
    assert done_lines(restarted.stderr, "Restarting") == names
    assert time.monotonic() - t0 < 9, "restart waited out the stop timeout: SIGTERM did not reach the services"
    for n in names:
        state = inspect(project, n)["State"]
        assert state["Running"] and state["StartedAt"] != started[n], (n, state)
    stopped = project.ok("stop")
    assert done_lines(stopped.stderr, "Stopping") == names
    rows = ps_rows(project)
    assert all("Exit 0" in row for row in rows.values()), rows
    assert project.ok("ps", "--services", "--filter", "status=running").stdout == "\n"
    assert project.ok("ps", "--services", "--filter", "status=stopped").stdout.split() == ["web", "db", "app"]
    begun = project.ok("start")
    assert done_lines(begun.stderr, "Starting") == ["app", "db", "web"]
    assert all(" Up " in row or row.rstrip().endswith(" Up") for row in ps_rows(project).values())
    assert project.ok("exec", "-T", "web", "cat", "/data/file").stdout == "kept\n"  # the volume stayed
    assert http_get(project.port, "/index.html", timeout=20).endswith(b"\r\n\r\nhello from web\n")
    again = project.ok("up", "-d")
    assert sorted(line.split()[0] for line in again.stderr.splitlines() if line.endswith("is up-to-date")) == names
    assert "has changed" not in again.stderr  # compose compares the volume's labels with what it asked for
    volume = json.loads(subprocess.run(["/usr/bin/docker", "volume", "inspect", f"{PROJECT}_data"], env=project.env(),
                                       capture_output=True, text=True, check=True).stdout)[0]
    assert volume["Labels"]["com.example.description"] == "web's data, kept across restarts"

    # ---- down -v leaves nothing behind
    networks = {n["metadata"]["name"]: n for n in daemon.api.get(NETWORKS.path("default"))["items"]
                if (n["metadata"].get("labels") or {}).get("com.docker.compose.project") == PROJECT}
    assert len(networks) == 2
    bridges = [b for b in ((n.get("status") or {}).get("bridge") for n in networks.values()) if b]
    assert len(bridges) == 2 and all(Path(f"/sys/class/net/{b}").exists() for b in bridges)
    words = re.compile("|".join([*(rf"\b{re.escape(b)}\b" for b in bridges),
                                 *(r"(?<![0-9.])" + re.escape(s.rsplit(".", 1)[0] + ".") for s in project.subnets.values())]))
    assert any(words.search(line) for line in iptables_rules())  # (what is looked for below is there now)
    assert len(project_leases(daemon, project)) == 5  # app and db on both networks, web on the default
    down = project.ok("down", "-v")
    assert done_lines(down.stderr, "Stopping") == names and done_lines(down.stderr, "Removing") == names
    assert f"Removing network {PROJECT}_default" in down.stderr
    assert f"Removing network {PROJECT}_backend" in down.stderr
    assert f"Removing volume {PROJECT}_data" in down.stderr
    assert kubectl_names(daemon, "lc,net,volumes", LABEL) == []
    for resource in (LOCAL_CONTAINERS, VOLUMES):
        assert daemon.api.get(resource.path("default"))["items"] == []
    daemon.wait_no_leftovers()
    assert [b for b in bridges if Path(f"/sys/class/net/{b}").exists()] == []
    # no rule names a bridge of the project's, its subnets or an address in them (NAT, port mappings)
    assert [line for line in iptables_rules() if words.search(line)] == []
    assert project_leases(daemon, project) == []
