"""docker's everyday container commands through a real `k3c daemon`: the `container` management command,
`rename`, `pause`/`unpause`, `top`, `stats`, the prunes and `system df`, each observed on real containers
(frozen output, the host's processes, cgroup numbers, objects gone), with docker's wording and exit codes.

Where the issue asks for it (`ps`, `inspect`, `stats --no-stream --format`, `system df`; also `top`,
`history`, `diff`, the prune prompts), the output is compared with a private dockerd 20.10 (the
``docker_peer`` fixture, tests/e2e/conftest.py) running the same container from the same busybox image;
IDs, times and sizes are masked.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from k3c import dockerid
from tests.support.daemon_harness import TEST_IMAGE, DaemonProcess, wait_until
from tests.support.harness import first_line, free_port

LOOP = "i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.1; done"


def k3c(daemon: DaemonProcess, *args: str, check: bool = True, timeout: float = 60,
        input: str = "") -> subprocess.CompletedProcess:
    env = {**os.environ, "K3C_KUBECONFIG": str(daemon.kubeconfig)}
    cp = subprocess.run([sys.executable, "-m", "k3c.cli.main", *args], env=env, capture_output=True, text=True,
                        timeout=timeout, input=input)
    if check and cp.returncode != 0:
        raise AssertionError(f"k3c {' '.join(args)}: {cp.returncode} {cp.stderr}")
    return cp


def run_loop(daemon: DaemonProcess, name: str, *extra: str) -> dict[str, Any]:
    k3c(daemon, "run", "-d", "--name", name, "--stop-timeout", "1", *extra, TEST_IMAGE, "sh", "-c", LOOP)
    return daemon.wait_phase(name, "Running")


@contextlib.contextmanager
def events_of(daemon: DaemonProcess, ref: str, lines: list[str],
              fmt: str = "{{.Action}} {{.Actor.Attributes.name}}") -> Any:
    """`k3c events` for one container (name or ID) in the background while the block runs: its lines, once it
    ends, in ``lines``."""
    env = {**os.environ, "K3C_KUBECONFIG": str(daemon.kubeconfig)}
    proc = subprocess.Popen([sys.executable, "-m", "k3c.cli.main", "events", "-f", f"container={ref}", "--format", fmt],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)  # its watches are open by then
    try:
        yield
        time.sleep(1.0)  # the last changes reach the stream
    finally:
        proc.send_signal(2)
        out, err = proc.communicate(timeout=10)
        lines.extend(line.strip() for line in out.splitlines())
    assert err == "", err


def log_size(obj: dict[str, Any]) -> int:
    return Path(obj["status"]["logPath"]).stat().st_size


def test_container_management_command_aliases(daemon: DaemonProcess) -> None:
    out = k3c(daemon, "container", "run", "-d", "--name", "managed", TEST_IMAGE, "sleep", "300").stdout.strip()
    obj = daemon.wait_phase("managed", "Running")
    assert re.fullmatch(r"[0-9a-f]{64}", out)
    for ls in ("ls", "ps", "list"):
        table = k3c(daemon, "container", ls).stdout.splitlines()
        assert table[0].split()[:2] == ["CONTAINER", "ID"] and any(line.endswith("managed") for line in table[1:])
    assert k3c(daemon, "container", "ls", "-q", "--no-trunc").stdout.split() == k3c(daemon, "ps", "-q", "--no-trunc").stdout.split()
    inspected = json.loads(k3c(daemon, "container", "inspect", "managed").stdout)
    assert inspected[0]["Name"] == "/managed" and inspected[0]["State"]["Running"] is True
    missing = k3c(daemon, "container", "inspect", "nothing-here", check=False)
    assert (missing.returncode, missing.stderr) == (1, "Error: No such container: nothing-here\n")
    assert k3c(daemon, "container", "rm", "-f", "managed").stdout == "managed\n"
    wait_until(lambda: daemon.container("managed") is None, 30, "managed to be removed")
    assert obj["metadata"]["uid"]
    bad = k3c(daemon, "container", "frobnicate", check=False)
    assert bad.returncode != 0 and "frobnicate" in bad.stderr


def test_rename_changes_the_docker_name_not_the_object(daemon: DaemonProcess) -> None:
    k3c(daemon, "run", "-d", "--name", "before", TEST_IMAGE, "sleep", "300")
    obj = daemon.wait_phase("before", "Running")
    k3c(daemon, "run", "-d", "--name", "other", TEST_IMAGE, "sleep", "300")
    try:
        seen: list[str] = []
        with events_of(daemon, dockerid.object_id(obj), seen,
                       "{{.Action}} {{.Actor.Attributes.name}} {{.Actor.Attributes.oldName}}"):
            assert k3c(daemon, "rename", "before", "After_1").stdout == ""
        assert seen == ["rename After_1 /before"]  # docker's event, as `k3c events` prints it
        renamed = daemon.container("before")
        assert renamed is not None and renamed["metadata"]["uid"] == obj["metadata"]["uid"]
        assert renamed["metadata"]["annotations"][dockerid.NAME_ANNOTATION] == "After_1"
        names = k3c(daemon, "ps", "--format", "{{.Names}}").stdout.split()
        assert "After_1" in names and "before" not in names
        assert k3c(daemon, "inspect", "-f", "{{.Name}}", "After_1").stdout == "/After_1\n"
        assert k3c(daemon, "ps", "-f", "name=After", "--format", "{{.Names}}").stdout == "After_1\n"
        # docker's refusals, exit 1
        same = k3c(daemon, "rename", "After_1", "After_1", check=False)
        assert (same.returncode, same.stderr) == (
            1, "Error response from daemon: Renaming a container with the same name as its current name\n")
        taken = k3c(daemon, "rename", "After_1", "other", check=False)
        other_id = dockerid.object_id(daemon.container("other") or {})
        assert (taken.returncode, taken.stderr) == (
            1, f'Error response from daemon: Conflict. The container name "/other" is already in use by container '
               f'"{other_id}". You have to remove (or rename) that container to be able to reuse that name.\n')
        invalid = k3c(daemon, "rename", "After_1", "no/slash", check=False)
        assert (invalid.returncode, invalid.stderr) == (
            1, "Error response from daemon: Invalid container name (no/slash), only [a-zA-Z0-9][a-zA-Z0-9_.-] are "
               "allowed\n")
        gone = k3c(daemon, "rename", "nothing-here", "x", check=False)
        assert (gone.returncode, gone.stderr) == (1, "Error response from daemon: No such container: nothing-here\n")
        usage = k3c(daemon, "rename", "After_1", check=False)
        assert usage.returncode == 1 and "requires" in usage.stderr
        # back to the object's own name: the annotation goes
        k3c(daemon, "rename", "After_1", "before")
        back = daemon.container("before") or {}
        assert dockerid.NAME_ANNOTATION not in (back["metadata"].get("annotations") or {})
    finally:
        k3c(daemon, "rm", "-f", "before", "other", check=False)


def test_pause_freezes_the_processes_and_unpause_thaws_them(daemon: DaemonProcess) -> None:
    obj = run_loop(daemon, "frozen")
    try:
        seen: list[str] = []
        with events_of(daemon, "frozen", seen):
            assert k3c(daemon, "pause", "frozen").stdout == "frozen\n"
        assert seen == ["pause frozen"]  # from the status the operator writes
        paused = daemon.container("frozen") or {}
        assert paused["status"]["phase"] == "Running" and paused["status"]["paused"] is True
        row = k3c(daemon, "ps", "--format", "{{.Status}}|{{.State}}", "-f", "name=frozen").stdout.strip()
        assert re.fullmatch(r"Up .* \(Paused\)\|paused", row), row
        state = json.loads(k3c(daemon, "inspect", "frozen").stdout)[0]["State"]
        assert (state["Status"], state["Paused"], state["Running"]) == ("paused", True, True)
        size = log_size(obj)
        time.sleep(1.0)
        assert log_size(obj) == size, "a paused container kept writing"
        again = k3c(daemon, "pause", "frozen", check=False)
        cid = dockerid.object_id(obj)
        assert (again.returncode, again.stderr) == (1, f"Error response from daemon: Container {cid} is already paused\n")
        with events_of(daemon, "frozen", seen):
            assert k3c(daemon, "unpause", "frozen").stdout == "frozen\n"
        assert seen == ["pause frozen", "unpause frozen"]
        wait_until(lambda: log_size(obj) > size, 5, "the unpaused container to write again")
        thawed = daemon.container("frozen") or {}
        assert thawed["status"]["paused"] is False and thawed["status"]["phase"] == "Running"
        not_paused = k3c(daemon, "unpause", "frozen", check=False)
        assert (not_paused.returncode, not_paused.stderr) == (
            1, f"Error response from daemon: Container {cid} is not paused\n")
        # a paused container can still be stopped and removed
        k3c(daemon, "container", "pause", "frozen")
        k3c(daemon, "stop", "frozen", timeout=60)
        stopped = daemon.wait_phase("frozen", "Exited")
        assert stopped["status"]["paused"] is False
        exited = k3c(daemon, "pause", "frozen", check=False)
        assert (exited.returncode, exited.stderr) == (1, f"Error response from daemon: Container {cid} is not running\n")
    finally:
        k3c(daemon, "rm", "-f", "frozen", check=False)


def test_rm_force_of_a_paused_container(daemon: DaemonProcess) -> None:
    run_loop(daemon, "paused-rm")
    k3c(daemon, "pause", "paused-rm")
    assert k3c(daemon, "rm", "-f", "paused-rm", timeout=60).stdout == "paused-rm\n"
    wait_until(lambda: daemon.container("paused-rm") is None, 30, "the paused container to be removed")


# ---- top ----------------------------------------------------------------------------------------------
def _host_pid(daemon: DaemonProcess, obj: dict[str, Any]) -> int:
    import asyncio

    from k3c.cri.runtime import CRIClient
    from k3c.streams.containers import runtime_container

    async def look() -> int:
        async with CRIClient(daemon.containerd_address) as cri:
            rc = await runtime_container(cri, obj, verbose=True)
            return rc.pid if rc is not None else 0

    return asyncio.run(look())


def test_top_lists_the_containers_processes_with_ps_columns(daemon: DaemonProcess) -> None:
    k3c(daemon, "run", "-d", "--name", "topped", TEST_IMAGE, "sh", "-c", "sleep 301 & sleep 302; true")
    obj = daemon.wait_phase("topped", "Running")
    try:
        lines = k3c(daemon, "top", "topped").stdout.splitlines()
        assert lines[0].split() == ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
        assert lines[0].startswith("UID" + " " * 17 + "PID")  # docker's tabwriter: min width 20, padding 3
        commands = sorted(line.split(None, 7)[7] for line in lines[1:])
        # (ps cuts lines at its default width without a terminal, as for dockerd)
        assert commands[0].startswith("sh -c sleep 301") and commands[1:] == ["sleep 301", "sleep 302"], lines
        pids = {int(line.split()[1]) for line in lines[1:]}
        assert _host_pid(daemon, obj) in pids  # host pids, as docker shows them
        custom = k3c(daemon, "container", "top", "topped", "-o", "pid,comm").stdout.splitlines()
        assert custom[0].split() == ["PID", "COMMAND"] and sorted(c.split()[1] for c in custom[1:]) == [
            "sh", "sleep", "sleep"]
        from k3c.api import LOCAL_CONTAINERS
        from k3c.apierrors import BadRequest

        bogus = k3c(daemon, "top", "topped", "--no-such-ps-option", check=False)
        assert bogus.returncode == 1 and bogus.stderr.startswith("Error response from daemon: ps: ") and \
            bogus.stderr.count("\n") == 1, bogus.stderr
        try:  # the caller's bad ps options are a 400, never a 500
            daemon.api.get(LOCAL_CONTAINERS.path("default", "topped", "top"), ps_args="--no-such-ps-option")
            raise AssertionError("ps refused nothing")
        except BadRequest as err:
            assert err.code == 400
        nopid = k3c(daemon, "top", "topped", "-o", "comm", check=False)
        assert (nopid.returncode, nopid.stderr) == (
            1, "Error response from daemon: Couldn't find PID field in ps output\n")
        k3c(daemon, "stop", "-t", "1", "topped")
        daemon.wait_phase("topped", "Exited")
        stopped = k3c(daemon, "top", "topped", check=False)
        assert (stopped.returncode, stopped.stderr) == (
            1, f"Error response from daemon: Container {dockerid.object_id(obj)} is not running\n")
    finally:
        k3c(daemon, "rm", "-f", "topped", check=False)


# ---- stats --------------------------------------------------------------------------------------------
STATS_FORMAT = "{{.Name}}|{{.CPUPerc}}|{{.MemUsage}}|{{.MemPerc}}|{{.NetIO}}|{{.BlockIO}}|{{.PIDs}}"


def test_stats_reads_the_containers_cgroups(daemon: DaemonProcess) -> None:
    k3c(daemon, "run", "-d", "--name", "busy", "-m", "64m", TEST_IMAGE, "sh", "-c",
        "sleep 300 & sleep 301 & while true; do :; done")
    k3c(daemon, "run", "-d", "--name", "idle", TEST_IMAGE, "sleep", "300")
    busy, idle = daemon.wait_phase("busy", "Running"), daemon.wait_phase("idle", "Running")
    k3c(daemon, "create", "--name", "never", TEST_IMAGE, "true")
    try:
        out = k3c(daemon, "stats", "--no-stream", "--format", STATS_FORMAT, "busy", "idle").stdout.splitlines()
        rows = {line.split("|")[0]: line.split("|") for line in out}
        name, cpu, mem, mem_perc, net, block, pids = rows["busy"]
        assert float(cpu.rstrip("%")) > 20.0, rows  # a shell spinning on one of two CPUs
        used, limit = mem.split(" / ")
        assert limit == "64MiB" and used.endswith(("KiB", "MiB")), mem
        assert 0 < float(mem_perc.rstrip("%")) < 100
        assert pids == "3" and re.fullmatch(r"\S+B / \S+B", net) and re.fullmatch(r"\S+B / \S+B", block)
        assert float(rows["idle"][1].rstrip("%")) < 5.0 and rows["idle"][6] == "1"
        # the default table: docker's columns, the ID as `ps` would show it under the docker identity rule
        table = k3c(daemon, "container", "stats", "--no-stream").stdout.splitlines()
        assert re.split(r"\s{2,}", table[0]) == ["CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %",
                                                 "NET I/O", "BLOCK I/O", "PIDS"]
        ids = {line.split()[0]: line.split()[1] for line in table[1:]}
        assert ids[dockerid.object_id(busy)[:12]] == "busy" and ids[dockerid.object_id(idle)[:12]] == "idle"
        assert "never" not in ids.values()
        every = k3c(daemon, "stats", "-a", "--no-stream", "--format", "{{.Name}} {{.CPUPerc}} {{.MemUsage}}").stdout
        assert "never 0.00% 0B / 0B" in every.splitlines()
        doc = daemon.api.get("/apis/k3c.io/v1alpha1/namespaces/default/localcontainers/idle/stats",
                             stream="false")
        assert doc["id"] == dockerid.object_id(idle) and doc["name"] == "/idle"
        assert doc["precpu_stats"]["system_cpu_usage"] > 0 and doc["memory_stats"]["limit"] > 0
        assert "eth0" in doc["networks"] and doc["pids_stats"]["current"] == 1
    finally:
        k3c(daemon, "rm", "-f", "busy", "idle", "never", check=False)


# ---- side by side with docker 20.10 -------------------------------------------------------------------
def _masked(text: str) -> str:
    """Sizes, percentages and counts masked: the shapes and words must match, not the numbers."""
    text = re.sub(r"\d+(\.\d+)?(B|[kKMGT]i?B)\b", "SIZE", text)
    return re.sub(r"\d+(\.\d+)?", "N", text)


def _docker_api(peer: Any, path: str) -> Any:
    from k3c.unixhttp import UnixConnection

    conn = UnixConnection(str(peer.socket), timeout=30)
    try:
        conn.request("GET", path)
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


def test_top_and_stats_match_docker(daemon: DaemonProcess, docker_peer: Any) -> None:
    args = ("run", "-d", "--name", "sidebyside", "-m", "64m", TEST_IMAGE, "sleep", "300")
    docker_peer.run(*args)
    k3c(daemon, *args)
    daemon.wait_phase("sidebyside", "Running")
    try:
        def both(*cmd: str) -> tuple[str, str]:
            return k3c(daemon, *cmd).stdout, docker_peer.run(*cmd)

        mine, theirs = both("stats", "--no-stream", "--format", STATS_FORMAT + "|{{.Container}}", "sidebyside")
        assert _masked(mine) == _masked(theirs), (mine, theirs)
        assert mine.split("|")[2].endswith("/ 64MiB") and theirs.split("|")[2].endswith("/ 64MiB")
        assert mine.split("|")[6] == theirs.split("|")[6] == "1"  # PIDs
        mine, theirs = both("stats", "--no-stream")
        def cells(table: str) -> list[list[str]]:  # (the column widths follow the numbers)
            return [re.split(r"\s{2,}", _masked(re.sub(r"[0-9a-f]{12}", "ID", line))) for line in table.splitlines()]

        assert cells(mine) == cells(theirs)
        mine, theirs = both("top", "sidebyside")
        assert mine.splitlines()[0] == theirs.splitlines()[0]
        assert [line.split()[-2:] for line in mine.splitlines()[1:]] == [["sleep", "300"]] == \
            [line.split()[-2:] for line in theirs.splitlines()[1:]]
        doc = daemon.api.get("/apis/k3c.io/v1alpha1/namespaces/default/localcontainers/sidebyside/stats",
                             stream="false")
        docker_doc = _docker_api(docker_peer, "/containers/sidebyside/stats?stream=false")
        assert set(doc) == set(docker_doc), set(doc) ^ set(docker_doc)
        for key in ("cpu_stats", "memory_stats", "pids_stats", "blkio_stats"):
            assert set(docker_doc[key]) <= set(doc[key]), (key, set(docker_doc[key]) - set(doc[key]))
    finally:
        k3c(daemon, "rm", "-f", "sidebyside", check=False)
        docker_peer.run("rm", "-f", "sidebyside")


def test_system_df_and_prune_prompts_match_docker(daemon: DaemonProcess, docker_peer: Any) -> None:
    args = ("run", "-d", "--name", "dfbox", TEST_IMAGE, "sleep", "300")
    docker_peer.run(*args)
    k3c(daemon, *args)
    daemon.wait_phase("dfbox", "Running")
    try:
        mine, theirs = k3c(daemon, "system", "df").stdout, docker_peer.run("system", "df")

        def cells(table: str) -> list[list[str]]:
            return [re.split(r"\s{2,}", _masked(line)) for line in table.splitlines()]

        assert cells(mine) == cells(theirs), (mine, theirs)
        assert mine.splitlines()[0] == theirs.splitlines()[0]  # "Local Volumes" sets the first column's width
        fmt = "{{.Type}}|{{.TotalCount}}|{{.Active}}|{{.Size}}|{{.Reclaimable}}"
        mine, theirs = k3c(daemon, "system", "df", "--format", fmt).stdout, docker_peer.run("system", "df", "--format", fmt)
        assert _masked(mine) == _masked(theirs), (mine, theirs)
        for cmd in (["container", "prune"], ["volume", "prune"], ["system", "prune"], ["system", "prune", "-a", "--volumes"]):
            mine_cp = k3c(daemon, *cmd, input="n\n")
            docker_cp = subprocess.run(docker_peer.cli(*cmd), input="n\n", capture_output=True, text=True, timeout=60)
            assert (mine_cp.stdout, mine_cp.returncode) == (docker_cp.stdout, docker_cp.returncode), cmd
        assert daemon.container("dfbox") is not None
    finally:
        k3c(daemon, "rm", "-f", "dfbox", check=False)
        docker_peer.run("rm", "-f", "dfbox")


PS_FORMAT = "{{.ID}}|{{.Image}}|{{.Command}}|{{.Status}}|{{.Ports}}|{{.Names}}|{{.Labels}}"


def _ps_masked(text: str) -> list[list[str]]:
    """`ps` lines as cells, IDs, times and host ports masked (each side publishes its own host port)."""
    text = re.sub(r"\b([0-9a-f]{64}|[0-9a-f]{12})\b", "ID", text)
    text = re.sub(r"(Less than a second|(About )?(an?|\d+) (second|minute|hour)s?) ago", "AGO", text)
    text = re.sub(r"Up (Less than a second|About a minute|\d+ (second|minute|hour)s?)", "Up T", text)
    text = re.sub(r":\d+->", ":N->", text)
    return [re.split(r"\s{2,}|\|", line) for line in text.splitlines()]


def _labels_sorted(rows: list[list[str]]) -> list[list[str]]:
    """The Labels cell (last) in key order: docker walks a Go map (any order each time), k3c sorts."""
    return [[*row[:-1], ",".join(sorted(row[-1].split(",")))] for row in rows]


def _types_differ(mine: dict[str, Any], theirs: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """Keys both fill (null on either side aside) whose JSON types differ."""
    return {k: (type(mine[k]).__name__, type(v).__name__) for k, v in theirs.items()
            if v is not None and mine.get(k) is not None and type(mine[k]) is not type(v)}


def test_ps_and_inspect_match_docker(daemon: DaemonProcess, docker_peer: Any) -> None:
    """The same running and exited containers in both: the same `ps` table, fields, `-a` and `-q`, and an
    `inspect` document with docker's keys and value types."""
    try:
        args = ("run", "-d", "--name", "psup", "-l", "cmp=ps", "-l", "tier=web", "-p", "127.0.0.1:{}:80", TEST_IMAGE,
                "sleep", "300")
        docker_peer.run(*(a.format(free_port()) for a in args))
        k3c(daemon, *(a.format(free_port()) for a in args))
        docker_peer.run("run", "-d", "--name", "psexit", "-l", "cmp=ps", TEST_IMAGE, "sh", "-c", "exit 3")
        k3c(daemon, "run", "-d", "--name", "psexit", "-l", "cmp=ps", TEST_IMAGE, "sh", "-c", "exit 3")
        daemon.wait_phase("psup", "Running")
        daemon.wait_phase("psexit", "Exited")
        wait_until(lambda: "Exited" in docker_peer.run("ps", "-a", "-f", "name=psexit"), 20, "docker's exit")
        for args in ([], ["-a"], ["-a", "--format", PS_FORMAT], ["--no-trunc", "--format", PS_FORMAT]):
            mine = k3c(daemon, "ps", "-f", "label=cmp=ps", *args).stdout
            theirs = docker_peer.run("ps", "-f", "label=cmp=ps", *args)
            assert _labels_sorted(_ps_masked(mine)) == _labels_sorted(_ps_masked(theirs)), (args, mine, theirs)
        assert re.search(r"Exited \(3\) (\d+ seconds?|Less than a second) ago", k3c(daemon, "ps", "-a", "-f", "name=psexit").stdout)
        for quiet, listed, count in (["-q"], [], 1), (["-aq"], ["-a"], 2):
            mine = k3c(daemon, "ps", "-f", "label=cmp=ps", *quiet).stdout
            theirs = docker_peer.run("ps", "-f", "label=cmp=ps", *quiet)
            assert _ps_masked(mine) == _ps_masked(theirs) == [["ID"]] * count, (quiet, mine, theirs)
            ids = k3c(daemon, "ps", "-f", "label=cmp=ps", *listed, "--format", "{{.ID}}").stdout
            assert mine == ids, (mine, ids)
        for name in ("psup", "psexit"):
            mine, theirs = (json.loads(k3c(daemon, "inspect", name).stdout)[0],
                            json.loads(docker_peer.run("inspect", name))[0])
            assert set(theirs) <= set(mine), (name, set(theirs) - set(mine))
            for key in ("State", "Config", "HostConfig", "NetworkSettings"):
                assert set(theirs[key]) <= set(mine[key]), (name, key, set(theirs[key]) - set(mine[key]))
                assert not _types_differ(mine[key], theirs[key]), (name, key, _types_differ(mine[key], theirs[key]))
            assert not _types_differ(mine, theirs), (name, _types_differ(mine, theirs))
    finally:
        k3c(daemon, "rm", "-f", "psup", "psexit", check=False)
        subprocess.run(docker_peer.cli("rm", "-f", "psup", "psexit"), capture_output=True, timeout=60)


def test_ps_lists_containers_made_in_one_second_newest_first_as_docker(daemon: DaemonProcess,
                                                                        docker_peer: Any) -> None:
    """Containers created in quick succession (several in one second: creationTimestamp cannot tell them
    apart) are listed newest first, as docker lists them, whatever their names; `--last` and `-l` take the newest."""
    names = ["order-z", "order-y", "order-x", "order-w", "order-v", "order-u"]  # made in this order
    try:
        for name in names:
            docker_peer.run("create", "--name", name, "-l", "cmp=order", TEST_IMAGE, "true")
            k3c(daemon, "create", "--name", name, "-l", "cmp=order", TEST_IMAGE, "true")
        listed = ["ps", "-a", "-f", "label=cmp=order", "--format", "{{.Names}}"]
        theirs = docker_peer.run(*listed).split()
        assert theirs == names[::-1], theirs
        assert k3c(daemon, *listed).stdout.split() == theirs
        for last in (["--last", "3"], ["-l"]):
            newest = ["ps", *last, "-f", "label=cmp=order", "--format", "{{.Names}}"]
            assert k3c(daemon, *newest).stdout.split() == docker_peer.run(*newest).split(), last
        stamps = [daemon.api.get(f"/apis/k3c.io/v1alpha1/namespaces/default/localcontainers/{dockerid.object_name(n)}")
                  ["metadata"]["creationTimestamp"] for n in names]
        print("creation seconds:", stamps)  # (shown on failure: ties are what the order must survive)
    finally:
        k3c(daemon, "rm", "-f", *names, check=False)
        subprocess.run(docker_peer.cli("rm", "-f", *names), capture_output=True, timeout=60)


# ---- prune ----------------------------------------------------------------------------------------------
def test_container_prune_removes_stopped_containers_the_filters_allow(daemon: DaemonProcess) -> None:
    k3c(daemon, "run", "-d", "--name", "pr-running", "-l", "prune=me", TEST_IMAGE, "sleep", "300")
    k3c(daemon, "run", "--name", "pr-exited", "-l", "prune=me", TEST_IMAGE, "true")
    k3c(daemon, "run", "--name", "pr-kept", "-l", "prune=me", "-l", "keep=yes", TEST_IMAGE, "true")
    k3c(daemon, "create", "--name", "pr-created", "-l", "prune=me", TEST_IMAGE, "true")
    daemon.wait_phase("pr-running", "Running")
    exited = daemon.wait_phase("pr-exited", "Exited")
    created = daemon.container("pr-created") or {}
    try:
        young = k3c(daemon, "container", "prune", "-f", "--filter", "until=1h", "--filter", "label=prune=me")
        assert young.stdout == "Total reclaimed space: 0B\n"
        bad = k3c(daemon, "container", "prune", "-f", "--filter", "until=soon", check=False)
        assert (bad.returncode, bad.stderr) == (
            1, 'Error response from daemon: failed to parse value as time or duration: "soon"\n')
        cp = k3c(daemon, "container", "prune", "-f", "--filter", "label=prune=me", "--filter", "label!=keep=yes")
        lines = cp.stdout.splitlines()
        assert lines[0] == "Deleted Containers:" and lines[-2:] == ["", "Total reclaimed space: 0B"]
        assert sorted(lines[1:-2]) == sorted([dockerid.object_id(exited), dockerid.object_id(created)])
        assert daemon.container("pr-exited") is None and daemon.container("pr-created") is None
        assert daemon.container("pr-running") is not None and daemon.container("pr-kept") is not None
    finally:
        k3c(daemon, "rm", "-f", "pr-running", "pr-exited", "pr-kept", "pr-created", check=False)


def test_volume_prune_removes_volumes_no_container_uses(daemon: DaemonProcess) -> None:
    k3c(daemon, "volume", "create", "-l", "prune=me", "vp-unused")
    k3c(daemon, "volume", "create", "-l", "prune=me", "vp-used")
    k3c(daemon, "volume", "create", "vp-other")
    k3c(daemon, "run", "-d", "--name", "vp-user", "-v", "vp-used:/data", TEST_IMAGE, "sleep", "300")
    daemon.wait_phase("vp-user", "Running")
    try:
        declined = k3c(daemon, "volume", "prune", input="n\n")
        assert declined.stdout == ("WARNING! This will remove all local volumes not used by at least one container.\n"
                                   "Are you sure you want to continue? [y/N] Total reclaimed space: 0B\n")
        cp = k3c(daemon, "volume", "prune", "--filter", "label=prune=me", input="y\n")
        assert cp.stdout.endswith("[y/N] Deleted Volumes:\nvp-unused\n\nTotal reclaimed space: 0B\n"), cp.stdout
        names = k3c(daemon, "volume", "ls", "-q").stdout.split()
        assert "vp-unused" not in names and {"vp-used", "vp-other"} <= set(names)
    finally:
        k3c(daemon, "rm", "-f", "vp-user", check=False)
        k3c(daemon, "volume", "rm", "-f", "vp-unused", "vp-used", "vp-other", check=False)


def test_system_prune_removes_stopped_containers_and_with_volumes_unused_volumes(daemon: DaemonProcess) -> None:
    k3c(daemon, "run", "--name", "sp-exited", TEST_IMAGE, "true")
    exited = daemon.wait_phase("sp-exited", "Exited")
    k3c(daemon, "volume", "create", "sp-unused")
    try:
        cp = k3c(daemon, "system", "prune", "-f", "--volumes", timeout=120)
        out = cp.stdout
        assert f"Deleted Containers:\n{dockerid.object_id(exited)}\n" in out
        assert "Deleted Volumes:\n" in out and "sp-unused\n" in out.split("Deleted Volumes:\n", 1)[1]
        assert re.search(r"\nTotal reclaimed space: \S+B\n$", out), out
        assert daemon.container("sp-exited") is None
        assert "sp-unused" not in k3c(daemon, "volume", "ls", "-q").stdout.split()
    finally:
        k3c(daemon, "rm", "-f", "sp-exited", check=False)
        k3c(daemon, "volume", "rm", "-f", "sp-unused", check=False)


# ---- history ------------------------------------------------------------------------------------------
HISTORY_IMAGE = "k3c.test/history:1"


def _history_image() -> Any:
    from k3c.oci.layout import HostFile, ImageConfig, Symlink, build_image, build_layer

    base = build_layer({"bin/busybox": HostFile("/bin/busybox", 0o755), "bin/sh": Symlink("/bin/busybox")})
    extra = build_layer({"bin/sleep": Symlink("/bin/busybox"), "etc/motd": b"hello\n" * 100})
    return build_image([base, extra], ImageConfig(cmd=["sh"], created="2024-01-02T03:04:05Z"))


def test_history_matches_docker(daemon: DaemonProcess, docker_peer: Any, tmp_path: Path) -> None:
    from tests.support.docker_peer import load_image

    image = _history_image()
    daemon.import_image(HISTORY_IMAGE, image)
    load_image(docker_peer, tmp_path, HISTORY_IMAGE, image)

    def has_history() -> bool:
        items = daemon.api.get("/apis/k3c.io/v1alpha1/images").get("items", [])
        return any(o["spec"].get("reference", "").endswith(HISTORY_IMAGE) and (o.get("status") or {}).get("history")
                   for o in items)

    wait_until(has_history, 20, "the operator to record the image's history")
    for args in ([], ["--no-trunc"], ["-q"], ["--format", "{{.ID}}|{{.CreatedBy}}|{{.Comment}}"], ["-H=false"]):
        mine = k3c(daemon, "history", *args, HISTORY_IMAGE).stdout
        theirs = docker_peer.run("history", *args, HISTORY_IMAGE)
        if args == ["-H=false"]:  # times in the local zone, sizes in bytes: the sizes are docker's own count
            mine, theirs = re.sub(r"\s\d+\s", " SIZE ", mine), re.sub(r"\s\d+\s", " SIZE ", theirs)
        else:
            mine, theirs = re.sub(r"\d+(\.\d+)?[kMG]?B", "SIZE", mine), re.sub(r"\d+(\.\d+)?[kMG]?B", "SIZE", theirs)
        assert [re.split(r"\s{2,}", line) for line in mine.splitlines()] == \
            [re.split(r"\s{2,}", line) for line in theirs.splitlines()], (args, mine, theirs)
    assert k3c(daemon, "image", "history", "-q", HISTORY_IMAGE).stdout == k3c(daemon, "history", "-q", HISTORY_IMAGE).stdout
    missing = k3c(daemon, "history", "nothing-here:1", check=False)
    assert (missing.returncode, missing.stderr) == (1, "Error response from daemon: No such image: nothing-here:1\n")


# ---- update -------------------------------------------------------------------------------------------
def test_update_changes_limits_of_the_running_container_in_place(daemon: DaemonProcess) -> None:
    from k3c.streams.stats import cgroups_of

    k3c(daemon, "run", "-d", "--name", "upd", "-m", "64m", TEST_IMAGE, "sleep", "300")
    before = daemon.wait_phase("upd", "Running")
    try:
        assert k3c(daemon, "update", "-m", "32m", "--cpus", "0.5", "upd").stdout == "upd\n"
        after = daemon.container("upd") or {}
        st0, st1 = before["status"], after["status"]
        assert (st1["containerID"], st1["startedAt"], st1.get("restartCount", 0)) == (
            st0["containerID"], st0["startedAt"], st0.get("restartCount", 0)), "updated in place, not replaced"
        groups = cgroups_of(_host_pid(daemon, after))
        assert int((groups["memory"] / "memory.limit_in_bytes").read_text()) == 32 * 1024 * 1024
        assert int((groups["cpu"] / "cpu.cfs_quota_us").read_text()) == 50_000
        usage = k3c(daemon, "stats", "--no-stream", "--format", "{{.MemUsage}}", "upd").stdout
        assert usage.strip().endswith("/ 32MiB")
        # the spec's other limits, the pids limit too (not CRI's: through containerd's record), still in place
        assert k3c(daemon, "update", "-c", "512", "--cpuset-cpus", "0", "--memory-swap", "96m",
                   "--pids-limit", "20", "upd").stdout == "upd\n"
        more = daemon.container("upd") or {}
        assert more["status"]["containerID"] == st0["containerID"], "updated in place, not replaced"
        assert {k: more["spec"].get(k) for k in ("cpuShares", "cpusetCpus", "memorySwap", "pidsLimit")} == {
            "cpuShares": 512, "cpusetCpus": "0", "memorySwap": str(96 * 2 ** 20), "pidsLimit": 20}
        groups = cgroups_of(_host_pid(daemon, more))
        assert (groups["cpu"] / "cpu.shares").read_text().strip() == "512"
        assert (groups["cpuset"] / "cpuset.cpus").read_text().strip() == "0"
        assert int((groups["memory"] / "memory.memsw.limit_in_bytes").read_text()) == 96 * 2 ** 20
        assert (groups["pids"] / "pids.max").read_text().strip() == "20"
        k3c(daemon, "update", "--pids-limit", "-1", "upd")
        assert "pidsLimit" not in (daemon.container("upd") or {})["spec"]
        assert (groups["pids"] / "pids.max").read_text().strip() == "max"
        # refusals: one line each, docker's codes
        unsupported = k3c(daemon, "update", "--cpu-quota", "1000", "upd", check=False)
        assert (unsupported.returncode, unsupported.stderr) == (
            125, "k3c: update --cpu-quota is not supported: the LocalContainer spec has no field for it\n")
        swap = k3c(daemon, "update", "--memory-swap", "16m", "upd", check=False)
        assert (swap.returncode, swap.stderr) == (1, f"Error response from daemon: Cannot update container "
                                                     f"{dockerid.object_id(more)}: Minimum memoryswap limit should be "
                                                     "larger than memory limit, see usage\n")
        none = k3c(daemon, "update", "upd", check=False)
        assert (none.returncode, none.stderr) == (1, "you must provide one or more flags when using this command\n")
        small = k3c(daemon, "update", "-m", "1m", "upd", check=False)
        assert (small.returncode, small.stderr) == (1, "Error response from daemon: Minimum memory limit allowed is 6MB\n")
        missing = k3c(daemon, "update", "--cpus", "1", "upd", "nothing-here", check=False)
        assert missing.returncode == 1 and missing.stdout == "upd\n"
        assert missing.stderr == "Error response from daemon: No such container: nothing-here\n"
    finally:
        k3c(daemon, "rm", "-f", "upd", check=False)


def test_update_restart_policy_takes_effect_at_the_next_exit(daemon: DaemonProcess) -> None:
    k3c(daemon, "run", "-d", "--name", "upd-restart", TEST_IMAGE, "sh", "-c", "sleep 3; exit 3")
    daemon.wait_phase("upd-restart", "Running")
    try:
        assert k3c(daemon, "container", "update", "--restart", "on-failure:1", "upd-restart").stdout == "upd-restart\n"
        restarted = daemon.wait_container("upd-restart", lambda o: (o.get("status") or {}).get("restartCount") == 1,
                                          timeout=30, what="the updated policy to restart it once")
        assert restarted["spec"]["restartPolicy"] == "on-failure:1"
    finally:
        k3c(daemon, "rm", "-f", "upd-restart", check=False)


# ---- cp -----------------------------------------------------------------------------------------------
SETUP = ("mkdir -p /srv/site/sub && echo index > /srv/site/index.html && echo deep > /srv/site/sub/deep.txt"
         " && echo hi > /etc/greeting && ln -s /srv/site /srv/link && ln -s / /up && ln -s ../../../../.. /climb")


def _tar_bytes(members: list[tuple[str, bytes | None, str]]) -> bytes:
    """A tar of (name, content or None for a symlink, link target)."""
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data, target in members:
            info = tarfile.TarInfo(name)
            if data is None:
                info.type, info.linkname = tarfile.SYMTYPE, target
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def k3c_bytes(daemon: DaemonProcess, *args: str, input: bytes = b"") -> subprocess.CompletedProcess:
    env = {**os.environ, "K3C_KUBECONFIG": str(daemon.kubeconfig)}
    return subprocess.run([sys.executable, "-m", "k3c.cli.main", *args], env=env, capture_output=True,
                          input=input, timeout=60)


def test_cp_both_directions_with_dockers_rules(daemon: DaemonProcess, tmp_path: Path) -> None:
    import io
    import tarfile
    import uuid

    k3c(daemon, "run", "-d", "--name", "cpbox", "-v", "cpvol:/data", TEST_IMAGE, "sleep", "300")
    daemon.wait_phase("cpbox", "Running")
    k3c(daemon, "exec", "cpbox", "sh", "-c", SETUP)

    def inside(cmd: str) -> str:
        return k3c(daemon, "exec", "cpbox", "sh", "-c", cmd).stdout

    try:
        # out of the container
        k3c(daemon, "cp", "cpbox:/srv/site", str(tmp_path / "new"))
        assert (tmp_path / "new/index.html").read_text() == "index\n"
        assert (tmp_path / "new/sub/deep.txt").read_text() == "deep\n"
        (tmp_path / "into").mkdir()
        k3c(daemon, "container", "cp", "cpbox:/srv/site", str(tmp_path / "into"))
        assert (tmp_path / "into/site/sub/deep.txt").read_text() == "deep\n"
        (tmp_path / "contents").mkdir()
        k3c(daemon, "cp", "cpbox:/srv/site/.", str(tmp_path / "contents"))
        assert sorted(os.listdir(tmp_path / "contents")) == ["index.html", "sub"]
        k3c(daemon, "cp", "cpbox:/etc/greeting", str(tmp_path / "greeting.txt"))
        assert (tmp_path / "greeting.txt").read_text() == "hi\n"
        k3c(daemon, "cp", "cpbox:/srv/link", str(tmp_path / "asis"))
        assert os.readlink(tmp_path / "asis") == "/srv/site"  # the link itself, without -L
        k3c(daemon, "cp", "-L", "cpbox:/srv/link", str(tmp_path / "followed"))
        assert (tmp_path / "followed/index.html").read_text() == "index\n"
        streamed = k3c_bytes(daemon, "cp", "cpbox:/srv/site", "-")
        with tarfile.open(fileobj=io.BytesIO(streamed.stdout)) as tar:
            assert {"site", "site/index.html", "site/sub", "site/sub/deep.txt"} <= set(tar.getnames())
        # a symlink in the container resolves in the container, never on the host
        hostname = inside("cat /etc/hostname")
        up = k3c_bytes(daemon, "cp", "cpbox:/up/etc/hostname", "-")
        with tarfile.open(fileobj=io.BytesIO(up.stdout)) as tar:
            member = tar.extractfile("hostname")
            assert member is not None and member.read().decode() == hostname
        climbed = k3c_bytes(daemon, "cp", "cpbox:/climb/etc/greeting", "-")
        with tarfile.open(fileobj=io.BytesIO(climbed.stdout)) as tar:
            member = tar.extractfile("greeting")
            assert member is not None and member.read() == b"hi\n"
        missing = k3c(daemon, "cp", "cpbox:/nope", str(tmp_path), check=False)
        assert (missing.returncode, missing.stderr) == (1, "Error: No such container:path: cpbox:/nope\n")
        (tmp_path / "afile").write_text("x")
        onto_file = k3c(daemon, "cp", "cpbox:/srv/site", str(tmp_path / "afile"), check=False)
        assert (onto_file.returncode, onto_file.stderr) == (1, "cannot copy directory\n")

        # into the container
        local = tmp_path / "payload"
        (local / "nested").mkdir(parents=True)
        (local / "nested/file.txt").write_text("payload\n")
        os.chown(local / "nested/file.txt", 1234, 2345)
        k3c(daemon, "cp", str(local), "cpbox:/data")
        assert inside("cat /data/payload/nested/file.txt") == "payload\n"
        assert inside("stat -c %u:%g /data/payload/nested/file.txt") == "0:0\n"
        volume = daemon.api.get("/apis/k3c.io/v1alpha1/namespaces/default/volumes/cpvol")
        assert (Path(volume["status"]["mountpoint"]) / "payload/nested/file.txt").read_text() == "payload\n"
        k3c(daemon, "cp", "-a", str(local / "nested/file.txt"), "cpbox:/tmp/kept.txt")
        assert inside("stat -c %u:%g /tmp/kept.txt; cat /tmp/kept.txt") == "1234:2345\npayload\n"
        k3c(daemon, "cp", str(local) + "/.", "cpbox:/srv/site")
        assert inside("cat /srv/site/nested/file.txt") == "payload\n"
        tar = _tar_bytes([("from-stdin.txt", b"stdin\n", "")])
        assert k3c_bytes(daemon, "cp", "-", "cpbox:/tmp", input=tar).returncode == 0
        assert inside("cat /tmp/from-stdin.txt") == "stdin\n"
        not_dir = k3c_bytes(daemon, "cp", "-", "cpbox:/etc/greeting", input=tar)
        assert (not_dir.returncode, not_dir.stderr) == (1, b'destination "cpbox:/etc/greeting" must be a directory\n')

        # nothing leaves the container: links in it, or names and links in the tar
        marker = f"k3c-cp-escape-{uuid.uuid4().hex[:8]}"
        (tmp_path / marker).write_text("escape?\n")
        k3c(daemon, "cp", str(tmp_path / marker), "cpbox:/up/tmp/")
        k3c(daemon, "cp", str(tmp_path / marker), "cpbox:/climb/srv/")
        assert inside(f"cat /tmp/{marker} /srv/{marker}") == "escape?\nescape?\n"
        assert not Path("/tmp", marker).exists() and not Path("/srv", marker).exists()
        sneaky = _tar_bytes([("../../../../tmp/" + marker + "-dots", b"x", "")])
        refused = k3c_bytes(daemon, "cp", "-", "cpbox:/tmp", input=sneaky)
        assert refused.returncode == 1 and b"invalid" in refused.stderr
        assert not Path("/tmp", marker + "-dots").exists()
        via_link = _tar_bytes([("root", None, "/"), ("root/tmp/" + marker + "-link", b"x", "")])
        assert k3c_bytes(daemon, "cp", "-", "cpbox:/srv", input=via_link).returncode == 0
        assert inside(f"cat /tmp/{marker}-link") == "x"
        assert not Path("/tmp", marker + "-link").exists()
    finally:
        k3c(daemon, "rm", "-f", "cpbox", check=False)
        k3c(daemon, "volume", "rm", "-f", "cpvol", check=False)


# ---- diff / export ------------------------------------------------------------------------------------
CHANGES = ("echo x > /tmp/new; rm /etc/group; echo y >> /etc/passwd; mkdir -p /newdir/sub; touch /newdir/sub/f;"
           " echo ready; sleep 300")


def test_diff_matches_docker_and_export_has_the_changes(daemon: DaemonProcess, docker_peer: Any,
                                                         tmp_path: Path) -> None:
    import tarfile

    args = ("run", "-d", "--name", "changed", TEST_IMAGE, "sh", "-c", CHANGES)
    docker_peer.run(*args)
    k3c(daemon, *args)
    daemon.wait_phase("changed", "Running")
    try:
        wait_until(lambda: "ready" in k3c(daemon, "logs", "changed").stdout, 10, "the changes to be made")
        wait_until(lambda: "ready" in docker_peer.run("logs", "changed"), 10, "docker's container to be ready")
        mine = k3c(daemon, "diff", "changed").stdout
        # (docker walks a Go map: its order varies between runs, its lines do not)
        assert sorted(mine.splitlines()) == sorted(docker_peer.run("diff", "changed").splitlines()), mine
        assert mine.splitlines() == ["C /etc", "C /etc/passwd", "D /etc/group", "A /newdir", "A /newdir/sub",
                                     "A /newdir/sub/f", "C /tmp", "A /tmp/new"]
        assert k3c(daemon, "container", "diff", "changed").stdout == mine
        out = tmp_path / "changed.tar"
        k3c(daemon, "export", "-o", str(out), "changed")
        with tarfile.open(out) as tar:
            names = set(tar.getnames())
            assert {"bin/busybox", "tmp/new", "newdir/sub/f", "etc/passwd", "proc"} <= names
            assert "etc/group" not in names and not any(n.startswith("proc/") for n in names)
            passwd = tar.extractfile("etc/passwd")
            assert passwd is not None and passwd.read().endswith(b"y\n")
        streamed = subprocess.run([sys.executable, "-m", "k3c.cli.main", "export", "changed"], capture_output=True,
                                  env={**os.environ, "K3C_KUBECONFIG": str(daemon.kubeconfig)}, timeout=60)
        assert streamed.returncode == 0 and streamed.stdout == out.read_bytes()
    finally:
        k3c(daemon, "rm", "-f", "changed", check=False)
        docker_peer.run("rm", "-f", "changed")


AGAIN = CHANGES.replace("echo ready; sleep 300", "cat /in.txt 2>/dev/null || echo no-in")


def test_cp_diff_and_export_of_stopped_containers_as_docker(daemon: DaemonProcess, docker_peer: Any,
                                                            tmp_path: Path) -> None:
    """docker keeps a container's writable layer from create to rm: `diff`, `export` and `cp` (both ways) work
    on an exited container and on one never started, and what `cp` put in (and what a run wrote) is there at
    the next start. The same steps in docker 20.10 give the same output."""
    import tarfile

    both = (k3c_lines(daemon), docker_peer.run)

    def side_by_side(*args: str) -> tuple[list[str], list[str]]:
        mine, theirs = k3c(daemon, *args).stdout, docker_peer.run(*args)
        return sorted(mine.splitlines()), sorted(theirs.splitlines())  # (docker's diff order varies)

    (tmp_path / "in.txt").write_text("copied in\n")
    try:
        for run in both:
            run("run", "-d", "--name", "exited", TEST_IMAGE, "sh", "-c", AGAIN)
            run("create", "--name", "fresh", TEST_IMAGE, "cat", "/etc/fresh.txt")
        daemon.wait_phase("exited", "Exited")
        docker_peer.run("wait", "exited")
        # an exited container: its changes
        mine, theirs = side_by_side("diff", "exited")
        assert mine == theirs == sorted(["C /etc", "C /etc/passwd", "D /etc/group", "A /newdir", "A /newdir/sub",
                                         "A /newdir/sub/f", "C /tmp", "A /tmp/new"]), (mine, theirs)
        uid = daemon.api.get(f"/apis/k3c.io/v1alpha1/namespaces/default/localcontainers/{dockerid.object_name('exited')}"
                             )["metadata"]["uid"]
        assert f"k3c-rw-{uid}" in snapshots_of(daemon)  # the CRI container is gone: its layer is kept
        out = tmp_path / "exited.tar"
        k3c(daemon, "export", "-o", str(out), "exited")
        with tarfile.open(out) as tar:
            names = set(tar.getnames())
            assert {"bin/busybox", "tmp/new", "newdir/sub/f", "etc/passwd"} <= names and "etc/group" not in names
            passwd = tar.extractfile("etc/passwd")
            assert passwd is not None and passwd.read().endswith(b"y\n")
        for name, run in (("mine", both[0]), ("theirs", both[1])):
            run("cp", "exited:/tmp/new", str(tmp_path / f"new-{name}"))
            run("cp", str(tmp_path / "in.txt"), "exited:/in.txt")
        assert (tmp_path / "new-mine").read_text() == (tmp_path / "new-theirs").read_text() == "x\n"
        mine, theirs = side_by_side("diff", "exited")
        assert mine == theirs and "A /in.txt" in mine, (mine, theirs)
        # its next start sees what the first run wrote and what cp put in
        for run in both:
            run("start", "exited")
        wait_until(lambda: k3c(daemon, "inspect", "-f", "{{.State.Status}} {{.RestartCount}}", "exited").stdout
                   == "exited 0\n" and "copied in" in k3c(daemon, "logs", "exited").stdout, 20, "the second run")
        docker_peer.run("wait", "exited")
        assert k3c(daemon, "logs", "exited").stdout == docker_peer.run("logs", "exited") == "no-in\ncopied in\n"
        mine, theirs = side_by_side("diff", "exited")
        assert mine == theirs and "A /in.txt" in mine, (mine, theirs)

        # a container never started: the image's files, and what cp puts in waits for its start
        assert side_by_side("diff", "fresh") == ([], [])
        for name, run in (("mine", both[0]), ("theirs", both[1])):
            run("cp", "fresh:/etc/passwd", str(tmp_path / f"passwd-{name}"))
            run("cp", str(tmp_path / "in.txt"), "fresh:/etc/fresh.txt")
        assert (tmp_path / "passwd-mine").read_bytes() == (tmp_path / "passwd-theirs").read_bytes()
        mine, theirs = side_by_side("diff", "fresh")
        assert mine == theirs == ["A /etc/fresh.txt", "C /etc"], (mine, theirs)
        k3c(daemon, "export", "-o", str(out), "fresh")
        with tarfile.open(out) as tar:
            fresh = tar.extractfile("etc/fresh.txt")
            assert fresh is not None and fresh.read() == b"copied in\n" and "bin/busybox" in tar.getnames()
        for run in both:
            run("start", "fresh")
        daemon.wait_phase("fresh", "Exited")
        docker_peer.run("wait", "fresh")
        assert k3c(daemon, "logs", "fresh").stdout == docker_peer.run("logs", "fresh") == "copied in\n"
    finally:
        k3c(daemon, "rm", "-f", "exited", "fresh", check=False)
        subprocess.run(docker_peer.cli("rm", "-f", "exited", "fresh"), capture_output=True, timeout=60)
    assert "k3c-rw-" not in snapshots_of(daemon)  # rm removes the kept layers


def snapshots_of(daemon: DaemonProcess) -> str:
    """`ctr snapshots ls` of the daemon's containerd (CRI's namespace)."""
    return subprocess.run(["ctr", "-a", daemon.containerd_address, "-n", "k8s.io", "snapshots", "ls"],
                          capture_output=True, text=True, timeout=30, check=True).stdout


def k3c_lines(daemon: DaemonProcess) -> Any:
    """`k3c ARGS` as a function of the arguments alone, like ``docker_peer.run``."""
    return lambda *args: k3c(daemon, *args).stdout


# ---- import -------------------------------------------------------------------------------------------
def _rootfs_tar(path: Path, compress: bool = False) -> Path:
    import tarfile

    (path.parent / "hello.txt").write_text("imported\n")
    with tarfile.open(path, "w:gz" if compress else "w") as tar:
        tar.add("/bin/busybox", "bin/busybox")
        for applet in ("sh", "cat"):
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(link)
        tar.add(path.parent / "hello.txt", "hello.txt")
    return path


def test_import_makes_a_runnable_image_with_changes(daemon: DaemonProcess, docker_peer: Any, tmp_path: Path) -> None:
    plain = _rootfs_tar(tmp_path / "rootfs.tar")
    changes = ["-c", 'CMD ["cat", "/hello.txt"]', "-c", "ENV GREETING=hi", "-c", "WORKDIR /srv"]
    out = k3c(daemon, "import", *changes, "-m", "my import", str(plain), "k3c.test/imported:1").stdout
    assert re.fullmatch(r"sha256:[0-9a-f]{64}\n", out), out
    assert k3c(daemon, "run", "--rm", "k3c.test/imported:1").stdout == "imported\n"
    assert k3c(daemon, "run", "--rm", "k3c.test/imported:1", "sh", "-c", 'echo $GREETING $PWD').stdout == "hi /srv\n"
    history = k3c(daemon, "history", "--format", "{{.Comment}}", "k3c.test/imported:1").stdout
    assert history == "my import\n"
    mine = json.loads(k3c(daemon, "image", "inspect", "k3c.test/imported:1").stdout)[0]["Config"]
    docker_peer.run("import", *changes, str(plain), "k3c.test/imported:1")
    theirs = json.loads(docker_peer.run("image", "inspect", "k3c.test/imported:1"))[0]["Config"]
    for key in ("Cmd", "Env", "WorkingDir"):
        assert mine.get(key) == theirs.get(key), (key, mine, theirs)
    # a compressed tar on stdin, no name: known by its ID
    (tmp_path / "z").mkdir()
    zipped = _rootfs_tar(tmp_path / "z/rootfs.tgz", compress=True)
    cp = k3c_bytes(daemon, "image", "import", "-", input=zipped.read_bytes())
    image_id = cp.stdout.decode().strip()
    assert cp.returncode == 0 and image_id.startswith("sha256:"), cp.stderr
    assert k3c(daemon, "run", "--rm", image_id[7:19], "cat", "/hello.txt").stdout == "imported\n"
    bad = k3c(daemon, "import", "-c", "RUN echo", str(plain), check=False)
    assert (bad.returncode, bad.stderr) == (1, "Error response from daemon: run is not a valid change command\n")
    url = k3c(daemon, "import", "http://example.com/x.tar", check=False)
    assert url.returncode == 125 and url.stderr.count("\n") == 1


# ---- commit -------------------------------------------------------------------------------------------
def test_commit_makes_an_image_of_the_containers_changes(daemon: DaemonProcess) -> None:
    k3c(daemon, "run", "-d", "--name", "tocommit", TEST_IMAGE, "sh", "-c",
        "echo committed > /data.txt; rm /etc/group; echo ready; sleep 300")
    daemon.wait_phase("tocommit", "Running")
    try:
        wait_until(lambda: "ready" in k3c(daemon, "logs", "tocommit").stdout, 10, "the changes to be made")
        out = k3c(daemon, "commit", "-c", 'CMD ["cat", "/data.txt"]', "-c", "ENV STAGE=committed", "-m", "snap",
                  "-a", "Me <me@example.com>", "tocommit", "k3c.test/committed:1", timeout=120).stdout
        assert re.fullmatch(r"sha256:[0-9a-f]{64}\n", out), out
        after = daemon.container("tocommit") or {}
        assert after["status"]["phase"] == "Running" and not after["status"].get("paused")  # paused, then resumed
        assert k3c(daemon, "run", "--rm", "k3c.test/committed:1").stdout == "committed\n"
        listing = k3c(daemon, "run", "--rm", "k3c.test/committed:1", "sh", "-c", "echo $STAGE; ls /etc").stdout
        assert listing.startswith("committed\n") and "group" not in listing.split() and "passwd" in listing.split()
        history = k3c(daemon, "history", "--format", "{{.Comment}}|{{.CreatedBy}}", "k3c.test/committed:1").stdout
        assert history.splitlines()[0].startswith("snap|sh -c echo committed")
        untagged = k3c(daemon, "container", "commit", "--pause=false", "tocommit", timeout=120).stdout.strip()
        assert k3c(daemon, "run", "--rm", untagged[7:19], "cat", "/data.txt").stdout == "committed\n"
        bad = k3c(daemon, "commit", "-c", "RUN true", "tocommit", check=False)
        assert (bad.returncode, bad.stderr) == (1, "Error response from daemon: run is not a valid change command\n")
        # a stopped container (docker commits those too): from the layer kept for it, and one never started
        k3c(daemon, "stop", "-t", "1", "tocommit")
        daemon.wait_phase("tocommit", "Exited")
        k3c(daemon, "commit", "tocommit", "k3c.test/committed:stopped", timeout=120)
        assert k3c(daemon, "run", "--rm", "k3c.test/committed:stopped", "cat", "/data.txt").stdout == "committed\n"
        k3c(daemon, "create", "--name", "tocommit-fresh", TEST_IMAGE, "true")
        assert k3c_bytes(daemon, "cp", "-", "tocommit-fresh:/", input=_tar_bytes([("fresh.txt", b"fresh\n", "")])
                         ).returncode == 0
        k3c(daemon, "commit", "tocommit-fresh", "k3c.test/committed:fresh", timeout=120)
        assert k3c(daemon, "run", "--rm", "k3c.test/committed:fresh", "cat", "/fresh.txt").stdout == "fresh\n"
    finally:
        k3c(daemon, "rm", "-f", "tocommit", "tocommit-fresh", check=False)


# ---- kill -s ------------------------------------------------------------------------------------------
#: A container that answers SIGHUP and goes on running.
HUP_TRAP = 'trap "echo got-hup" HUP; while true; do sleep 0.2; done'


def _kill_sequence(run: Any, logs: Any, state: Any, kill: Any) -> list[Any]:
    """The same steps on k3c and on docker: what each answered (exit code, stdout, stderr with the ID
    masked) and what the containers did."""
    run("run", "-d", "--name", "hupper", TEST_IMAGE, "sh", "-c", HUP_TRAP)
    run("run", "-d", "--init", "--name", "termed", TEST_IMAGE, "sleep", "300")
    seen: list[Any] = [kill("-s", "HUP", "hupper")]
    wait_until(lambda: "got-hup" in logs("hupper"), 10, "the trap to run")
    seen += [state("hupper"), kill("-s", "SIGUSR1", "termed")]  # sleep dies of it: 128+10
    wait_until(lambda: state("termed").startswith("exited"), 10, "the container to die of SIGUSR1")
    seen += [state("termed"), kill("-s", "NOPE", "hupper"), kill("-s", "HUP", "termed")]
    run("start", "termed")
    seen.append(kill("-s", "15", "termed"))  # --init passes it on to sleep: 143
    wait_until(lambda: state("termed").startswith("exited"), 10, "the container to die of SIGTERM")
    seen += [state("termed"), state("hupper")]
    # docker 20.10 marks a container it kills "exit on next" (no stop signal of its own): no restart
    run("run", "-d", "--init", "--restart", "always", "--name", "policy", TEST_IMAGE, "sleep", "300")
    seen.append(kill("-s", "TERM", "policy"))
    wait_until(lambda: state("policy").startswith("exited"), 10, "the container to die of SIGTERM")
    time.sleep(2)  # a restart would have come by now
    return [*seen, state("policy"), run("inspect", "-f", "{{.RestartCount}}", "policy").strip()]


def test_kill_sends_any_signal_as_docker(daemon: DaemonProcess, docker_peer: Any) -> None:
    """`k3c kill -s` delivers the signal to the container's init (a trap runs, the container goes on; a
    process it ends exits 128+N), refuses a name that is no signal and a container not running, each
    with docker 20.10's words and exit code."""
    def masked(cp: subprocess.CompletedProcess) -> tuple[int, str, str]:
        return cp.returncode, cp.stdout, re.sub(r"[0-9a-f]{64}", "ID", cp.stderr)

    def state_of(inspect: Any) -> Any:
        return lambda name: inspect("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", name).strip()

    def on_docker(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(docker_peer.cli(*args), capture_output=True, text=True, timeout=60)

    try:
        mine = _kill_sequence(lambda *a: k3c(daemon, *a).stdout, lambda n: k3c(daemon, "logs", n).stdout,
                              state_of(lambda *a: k3c(daemon, *a).stdout), lambda *a: masked(k3c(daemon, "kill", *a,
                                                                                                  check=False)))
        theirs = _kill_sequence(docker_peer.run, lambda n: docker_peer.run("logs", n),
                                state_of(docker_peer.run), lambda *a: masked(on_docker("kill", *a)))
    finally:
        k3c(daemon, "rm", "-f", "hupper", "termed", "policy", check=False)
        on_docker("rm", "-f", "hupper", "termed", "policy")
    assert mine == [
        (0, "hupper\n", ""), "running 0", (0, "termed\n", ""), "exited 138",
        (1, "", "Error response from daemon: Invalid signal: NOPE\n"),
        (1, "", "Error response from daemon: Cannot kill container: termed: Container ID is not running\n"),
        (0, "termed\n", ""), "exited 143", "running 0", (0, "policy\n", ""), "exited 143", "0"]
    assert mine == theirs


def test_kill_with_a_signal_is_dockers_kill_event(daemon: DaemonProcess) -> None:
    """Each `kill -s` is docker's ``kill`` event with the signal's number; what it ends dies, no ``stop``."""
    k3c(daemon, "run", "-d", "--init", "--name", "evhup", TEST_IMAGE, "sh", "-c", HUP_TRAP)
    daemon.wait_phase("evhup", "Running")
    lines: list[str] = []
    try:
        with events_of(daemon, "evhup", lines, "{{.Action}} {{.Actor.Attributes.signal}}"):
            k3c(daemon, "kill", "-s", "HUP", "evhup")
            k3c(daemon, "kill", "-s", "USR2", "evhup")  # sh dies of it: 128+12, no stop after it
            obj = daemon.wait_phase("evhup", "Exited")
    finally:
        k3c(daemon, "rm", "-f", "evhup", check=False)
    assert lines == ["kill 1", "kill 12", "die <no value>"], lines
    assert obj["status"]["exitCode"] == 128 + 12


def _attached_line(daemon: DaemonProcess, name: str, *flags: str, stdin: int = subprocess.PIPE,
                   send: bytes = b"") -> bytes:
    """The first line `k3c attach` shows (b"" if none within 15 s); ``send`` is written to its stdin."""
    env = {**os.environ, "K3C_KUBECONFIG": str(daemon.kubeconfig)}
    return first_line([sys.executable, "-m", "k3c.cli.main", "attach", "--sig-proxy=false", *flags, name], env,
                      stdin, send)


def test_attach_to_a_detached_interactive_container(daemon: DaemonProcess) -> None:
    """`run -d -i` keeps the container's stdin open (not StdinOnce): `attach` shows its live output with
    stdin, with --no-stdin and after its own stdin ended, and what it is given reaches the container."""
    run_loop(daemon, "ticking-i", "-i")
    k3c(daemon, "run", "-d", "-i", "--name", "catting-i", TEST_IMAGE, "cat")
    daemon.wait_phase("catting-i", "Running")
    try:
        assert _attached_line(daemon, "ticking-i", "--no-stdin").startswith(b"tick ")
        assert _attached_line(daemon, "ticking-i").startswith(b"tick ")
        assert _attached_line(daemon, "ticking-i", stdin=subprocess.DEVNULL).startswith(b"tick ")
        assert _attached_line(daemon, "catting-i", send=b"echoed\n") == b"echoed\n"
    finally:
        k3c(daemon, "rm", "-f", "ticking-i", "catting-i")
