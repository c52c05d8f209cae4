"""LocalContainers through a real `k3c daemon` (containerd, runc, CNI), one object per test, made directly
through the API as the CLI or `kubectl apply` would. Images are made locally from busybox-static.
"""

from __future__ import annotations

import datetime as dt
import socket
import time

import pytest

from k3c.api import LOCAL_CONTAINERS, VOLUMES
from k3c.apierrors import Invalid
from tests.support.daemon_harness import DaemonProcess, wait_until
from tests.support.harness import free_port, http_get


def phase(obj: dict) -> str:
    return (obj.get("status") or {}).get("phase", "")


def output(daemon: DaemonProcess, obj: dict) -> list[str]:
    return [text for stream, text in daemon.container_log(obj) if stream == "stdout"]


def settled(daemon: DaemonProcess, uid: str | None = None) -> None:
    """Nothing of ``uid`` left in the runtime; only the pool's idle spare may hold a netns and an IP."""

    def clean() -> bool:
        if uid and (daemon.runtime_containers(uid) or daemon.runtime_sandboxes(uid)):
            return False
        sandboxes = daemon.runtime_sandboxes()
        spares = [s for s in sandboxes if s.labels.get("k3c.io/pool") == "true"]
        return (len(sandboxes) == len(spares) <= 1 and len(daemon.netns()) == len(spares)
                and len(daemon.leases()) == len(spares))

    wait_until(clean, 20, f"runtime to be clean (netns {daemon.netns()}, leases {daemon.leases()})")


def events_for(daemon: DaemonProcess, obj: dict) -> list[str]:
    items = daemon.api.get("/api/v1/namespaces/default/events").get("items", [])
    return [e["reason"] for e in items if e["involvedObject"].get("uid") == obj["metadata"]["uid"]]


def parse_time(value: str) -> float:
    fmt = "%Y-%m-%dT%H:%M:%S.%fZ" if "." in value else "%Y-%m-%dT%H:%M:%SZ"
    return dt.datetime.strptime(value, fmt).replace(tzinfo=dt.UTC).timestamp()


# ------------------------------------------------------------------------------------------------ basics


def test_runs_and_reports_status(daemon: DaemonProcess) -> None:
    daemon.create_container("basic", command=["sleep", "300"], labels={"team": "k3c"})
    obj = daemon.wait_phase("basic", "Running", "Failed")
    st = obj["status"]
    assert st["phase"] == "Running", st
    assert st["summary"] == "Up"
    assert st["node"] == "k3c-test-node"
    assert st["command"] == "sleep 300"
    assert st["observedGeneration"] == obj["metadata"]["generation"]
    assert st["ip"].startswith(daemon.subnet.rsplit(".", 1)[0] + ".")
    assert st["imageID"].startswith("sha256:")
    [c] = daemon.runtime_containers(obj["metadata"]["uid"])
    assert c.id == st["containerID"] and c.labels["team"] == "k3c"
    wait_until(lambda: {"Created", "Started"} <= set(events_for(daemon, obj)), 10, "Created/Started events")
    daemon.delete_container("basic")
    settled(daemon, obj["metadata"]["uid"])
    assert "Removed" in events_for(daemon, obj)


def test_exit_code_in_status_within_a_second(daemon: DaemonProcess) -> None:
    daemon.create_container("exit3", command=["sh", "-c", "sleep 0.5; exit 3"])
    seen = None
    path = LOCAL_CONTAINERS.path("default")
    for ev in daemon.api.watch(path, timeout=30, fieldSelector="metadata.name=exit3"):
        if phase(ev["object"]) == "Exited":
            seen, obj = time.time(), ev["object"]
            break
    assert seen is not None
    st = obj["status"]
    assert (st["exitCode"], st["summary"]) == (3, "Exited (3)")
    lag = seen - parse_time(st["finishedAt"])
    print(f"\nexit -> status visible: {1000 * lag:.0f} ms")
    assert lag < 1.0
    settled(daemon)  # the exited container's sandbox is released right away
    assert daemon.runtime_containers(obj["metadata"]["uid"]) == []
    assert "Died" in events_for(daemon, obj)
    daemon.delete_container("exit3")


def test_auto_remove_deletes_object_after_exit(daemon: DaemonProcess) -> None:
    obj = daemon.create_container("rm", command=["true"], autoRemove=True)
    wait_until(lambda: daemon.container("rm") is None, 15, "the --rm object to be deleted")
    settled(daemon, obj["metadata"]["uid"])


def test_stop_and_start_give_a_fresh_container(daemon: DaemonProcess) -> None:
    path = LOCAL_CONTAINERS.path("default", "ss")
    first = daemon.create_container("ss", command=["sleep", "300"], stopTimeout=1)
    cid1 = daemon.wait_phase("ss", "Running")["status"]["containerID"]
    daemon.api.merge_patch(path, {"spec": {"state": "Stopped"}})
    st = daemon.wait_phase("ss", "Exited")["status"]
    assert st["exitCode"] in (137, 143) and st["summary"].startswith("Exited (")
    settled(daemon, first["metadata"]["uid"])
    daemon.api.merge_patch(path, {"spec": {"state": "Running"}})
    obj = daemon.wait_container("ss", lambda o: phase(o) == "Running" and o["status"]["containerID"] != cid1)
    assert obj["status"]["restartCount"] == 0
    # A start request (what `k3c restart` sends) replaces the running container.
    cid2 = obj["status"]["containerID"]
    daemon.api.merge_patch(path, {"metadata": {"annotations": {"k3c.io/start-request": "r1"}}})
    daemon.wait_container("ss", lambda o: phase(o) == "Running" and o["status"]["containerID"] not in (cid1, cid2))
    daemon.delete_container("ss")
    settled(daemon, first["metadata"]["uid"])


def test_spec_change_recreates_the_container(daemon: DaemonProcess) -> None:
    path = LOCAL_CONTAINERS.path("default", "edit")
    daemon.create_container("edit", command=["sleep", "300"], env=[{"name": "V", "value": "1"}], stopTimeout=0)
    cid = daemon.wait_phase("edit", "Running")["status"]["containerID"]
    daemon.api.merge_patch(path, {"spec": {"env": [{"name": "V", "value": "2"}]}})
    obj = daemon.wait_container("edit", lambda o: phase(o) == "Running" and o["status"]["containerID"] != cid)
    assert daemon.exec(obj["status"]["containerID"], ["sh", "-c", "echo $V"])[1] == "2\n"
    daemon.delete_container("edit")


# ------------------------------------------------------------------------------------------------ restarts


def test_restart_on_failure_with_limit(daemon: DaemonProcess) -> None:
    daemon.create_container("onfail", command=["sh", "-c", "exit 1"], restartPolicy="on-failure:2")
    obj = daemon.wait_container("onfail", lambda o: phase(o) == "Exited" and o["status"].get("restartCount") == 2
                                and o["status"]["summary"] == "Exited (1)", 20)
    time.sleep(1.0)  # no third start
    obj = daemon.container("onfail")
    assert obj is not None and obj["status"]["restartCount"] == 2 and phase(obj) == "Exited"
    daemon.delete_container("onfail")
    settled(daemon, obj["metadata"]["uid"])


def test_restart_always_until_stopped(daemon: DaemonProcess) -> None:
    path = LOCAL_CONTAINERS.path("default", "always")
    daemon.create_container("always", command=["sh", "-c", "echo run; sleep 0.2; exit 0"], restartPolicy="always")
    obj = daemon.wait_container("always", lambda o: (o.get("status") or {}).get("restartCount", 0) >= 2, 20)
    assert output(daemon, obj)[:2] == ["run", "run"]  # one log, appended to by every start (like docker's)
    daemon.api.merge_patch(path, {"spec": {"state": "Stopped"}})
    obj = daemon.wait_container("always", lambda o: phase(o) == "Exited" and o["status"].get(
        "observedGeneration") == o["metadata"]["generation"], 20)
    count = obj["status"]["restartCount"]
    time.sleep(1.0)
    obj = daemon.container("always")
    assert obj is not None and obj["status"]["restartCount"] == count and phase(obj) == "Exited"
    daemon.delete_container("always")
    settled(daemon, obj["metadata"]["uid"])


def test_a_stop_while_waiting_to_restart_stops_it(daemon: DaemonProcess) -> None:
    """Stopped between two runs of its restart policy (during the back-off): no further run, and status says
    Exited with the stop observed, not Restarting."""
    path = LOCAL_CONTAINERS.path("default", "flapping")
    daemon.create_container("flapping", command=["sh", "-c", "exit 3"], restartPolicy="always")
    daemon.wait_container("flapping", lambda o: (o.get("status") or {}).get("summary") == "Restarting (3)"
                          and o["status"].get("restartCount", 0) >= 3, 30)  # back-offs of 0.4 s and more now
    daemon.api.merge_patch(path, {"spec": {"state": "Stopped"}})
    obj = daemon.wait_container("flapping", lambda o: o["status"].get("observedGeneration") == o["metadata"][
        "generation"] and o["status"].get("observedState") == "Stopped", 10)
    count = obj["status"]["restartCount"]
    time.sleep(2.0)  # longer than the back-off it was waiting out
    obj = daemon.container("flapping") or {}
    assert obj["status"]["restartCount"] == count and obj["status"]["summary"] == "Exited (3)", obj["status"]
    daemon.delete_container("flapping")
    settled(daemon, obj["metadata"]["uid"])


# ------------------------------------------------------------------------------------------------ spec → runtime


def test_env_workdir_and_user(daemon: DaemonProcess) -> None:
    script = 'echo "$FOO|$(pwd)|$(id -u):$(id -g)"'
    daemon.create_container("envs", command=["sh", "-c", script], env=[{"name": "FOO", "value": "bar baz"}],
                            workingDir="/tmp", user="nobody")
    obj = daemon.wait_phase("envs", "Exited", "Failed")
    assert obj["status"]["exitCode"] == 0, obj["status"]
    assert output(daemon, obj) == ["bar baz|/tmp|65534:65534"]
    daemon.delete_container("envs")
    daemon.create_container("ids", command=["sh", "-c", "echo $(id -u):$(id -g)"], user="1234:nogroup")
    obj = daemon.wait_phase("ids", "Exited", "Failed")
    assert output(daemon, obj) == ["1234:65534"], obj["status"]
    daemon.delete_container("ids")


def test_unknown_user_fails_clearly(daemon: DaemonProcess) -> None:
    obj = daemon.create_container("nouser", command=["true"], user="nosuchuser")
    st = daemon.wait_phase("nouser", "Failed")["status"]
    assert st["message"] == "user 'nosuchuser' not found in the image's /etc/passwd"
    daemon.delete_container("nouser")
    settled(daemon, obj["metadata"]["uid"])


def test_read_only_root_and_memory_limit(daemon: DaemonProcess) -> None:
    script = ("cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/cpu/cpu.cfs_quota_us; "
              "if touch /probe 2>/dev/null; then echo writable; else echo read-only; fi")
    daemon.create_container("limits", command=["sh", "-c", script], readOnlyRootFilesystem=True, memory="64m",
                            cpus="0.5")
    obj = daemon.wait_phase("limits", "Exited", "Failed")
    assert output(daemon, obj) == [str(64 * 1024 * 1024), "50000", "read-only"], obj["status"]
    daemon.delete_container("limits")


def test_capabilities_and_privileged(daemon: DaemonProcess) -> None:
    daemon.create_container("nocap", command=["sh", "-c", "chown 1:1 /tmp && echo changed || echo denied"],
                            capDrop=["CHOWN"])
    assert output(daemon, daemon.wait_phase("nocap", "Exited")) == ["denied"]
    daemon.delete_container("nocap")
    daemon.create_container("priv", command=["sh", "-c", "grep CapEff /proc/self/status"], privileged=True)
    obj = daemon.wait_phase("priv", "Exited", "Failed")
    [line] = output(daemon, obj)
    assert int(line.split()[1], 16) >= 0x1FFFFFFFFF, line  # every capability
    daemon.delete_container("priv")
    settled(daemon, obj["metadata"]["uid"])


def test_hostname_dns_and_host_network(daemon: DaemonProcess) -> None:
    daemon.create_container("named", command=["sh", "-c", "hostname; grep nameserver /etc/resolv.conf"],
                            hostname="web-1", dns=["192.0.2.53"])
    obj = daemon.wait_phase("named", "Exited", "Failed")
    assert output(daemon, obj) == ["web-1", "nameserver 192.0.2.53"], obj["status"]
    daemon.delete_container("named")
    daemon.create_container("hostnet", command=["cat", "/proc/net/dev"], hostNetwork=True)
    obj = daemon.wait_phase("hostnet", "Exited", "Failed")
    assert any(line.strip().startswith(daemon.bridge + ":") for line in output(daemon, obj)), obj["status"]
    daemon.delete_container("hostnet")
    settled(daemon, obj["metadata"]["uid"])


# ------------------------------------------------------------------------------------------------ ports


def test_published_port_reachable_on_loopback(daemon: DaemonProcess) -> None:
    port = free_port()
    script = "mkdir -p /www && echo k3c-port-ok > /www/index.html && exec httpd -f -p 8080 -h /www"
    daemon.create_container("web", command=["sh", "-c", script], stopTimeout=1,
                            ports=[{"containerPort": 8080, "hostPort": port}])
    obj = daemon.wait_phase("web", "Running", "Failed")
    assert obj["status"]["portSummary"] == f"0.0.0.0:{port}->8080/tcp", obj["status"]
    assert http_get(port).rstrip().endswith(b"k3c-port-ok")
    # The port is held: nothing else on the host can take it while the container runs.
    with socket.socket() as s, pytest.raises(OSError):
        s.bind(("0.0.0.0", port))
    daemon.delete_container("web")
    settled(daemon, obj["metadata"]["uid"])
    with socket.socket() as s:
        s.bind(("0.0.0.0", port))  # released with the container


def test_a_port_is_served_by_the_new_container_right_after_rm(daemon: DaemonProcess) -> None:
    """`rm -f web; run -p PORT:… web` (a dev loop): the new container answers on the port at once, never the
    removed one's leftover forwarding rules."""
    port = free_port()
    for version in ("one", "two"):
        script = f"mkdir -p /www && echo {version} > /www/index.html && exec httpd -f -p 8080 -h /www"
        daemon.create_container(f"web-{version}", command=["sh", "-c", script], stopTimeout=0,
                                ports=[{"containerPort": 8080, "hostPort": port}])
        daemon.wait_phase(f"web-{version}", "Running", "Failed")
        assert http_get(port).rstrip().endswith(version.encode())
        daemon.delete_container(f"web-{version}")


def test_port_zero_picks_a_free_port(daemon: DaemonProcess) -> None:
    daemon.create_container("anyport", command=["sleep", "300"], stopTimeout=0, ports=[{"containerPort": 80}])
    st = daemon.wait_phase("anyport", "Running", "Failed")["status"]
    [p] = st["ports"]
    assert p["hostPort"] > 0 and p["containerPort"] == 80
    daemon.delete_container("anyport")


def test_port_in_use_fails_clearly_and_leaves_nothing(daemon: DaemonProcess) -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        obj = daemon.create_container("busy", command=["sleep", "300"],
                                      ports=[{"containerPort": 80, "hostPort": port}])
        st = daemon.wait_phase("busy", "Failed", "Running")["status"]
    assert st["phase"] == "Failed"
    assert st["message"] == f"port 0.0.0.0:{port}/tcp is already in use"
    assert st["summary"] == "Failed"
    settled(daemon, obj["metadata"]["uid"])
    daemon.delete_container("busy")


def test_same_host_port_twice_fails_the_second(daemon: DaemonProcess) -> None:
    port = free_port()
    daemon.create_container("first", command=["sleep", "300"], stopTimeout=0,
                            ports=[{"containerPort": 80, "hostPort": port}])
    daemon.wait_phase("first", "Running")
    second = daemon.create_container("second", command=["sleep", "300"],
                                     ports=[{"containerPort": 81, "hostPort": port}])
    st = daemon.wait_phase("second", "Failed", "Running")["status"]
    assert st["message"] == f"port 0.0.0.0:{port}/tcp is already in use"
    assert daemon.runtime_sandboxes(second["metadata"]["uid"]) == []
    daemon.delete_container("second")
    daemon.delete_container("first")
    settled(daemon)


# ------------------------------------------------------------------------------------------------ failures


def test_nonexistent_image_fails_clearly_and_leaves_nothing(daemon: DaemonProcess) -> None:
    obj = daemon.create_container("noimage", image="k3c.test/no-such-image:1")
    st = daemon.wait_phase("noimage", "Failed", timeout=60)["status"]
    assert st["message"].startswith("image 'k3c.test/no-such-image:1' is not on this node and pulling it failed: ")
    assert "\n" not in st["message"]
    settled(daemon, obj["metadata"]["uid"])
    assert "Pulling" in events_for(daemon, obj) and "Failed" in events_for(daemon, obj)
    daemon.delete_container("noimage")


def test_command_not_found_is_exit_127(daemon: DaemonProcess) -> None:
    obj = daemon.create_container("nocmd", command=["no-such-command"])
    st = daemon.wait_phase("nocmd", "Failed", "Exited")["status"]
    assert (st["phase"], st["exitCode"]) == ("Failed", 127), st
    assert "no-such-command" in st["message"]
    settled(daemon, obj["metadata"]["uid"])
    daemon.delete_container("nocmd")


def test_invalid_spec_is_refused_by_the_api(daemon: DaemonProcess) -> None:
    from tests.support.daemon_harness import lc_object

    bad = lc_object("bad", restartPolicy="sometimes")
    with pytest.raises(Invalid) as err:
        daemon.api.create(LOCAL_CONTAINERS.path("default"), bad)
    assert err.value.code == 422 and err.value.reason == "Invalid"


# ------------------------------------------------------------------------------------------------ volumes


def test_named_volume_outlives_its_containers(daemon: DaemonProcess) -> None:
    vol = [{"volume": "data", "mountPath": "/data"}]
    daemon.create_container("writer", command=["sh", "-c", "echo persisted > /data/f"], volumes=vol)
    assert daemon.wait_phase("writer", "Exited", "Failed")["status"]["exitCode"] == 0
    daemon.delete_container("writer")
    vpath = VOLUMES.path("default", "data")
    v = wait_until(lambda: (o := daemon.api.get(vpath)).get("status", {}).get("mountpoint") and o, 10, "volume")
    assert v["status"]["mountpoint"].endswith("/volumes/default/data")
    daemon.create_container("reader", command=["sh", "-c", "cat /data/f; sleep 300"], stopTimeout=0,
                            volumes=[{"volume": "data", "mountPath": "/data", "readOnly": True}])
    obj = daemon.wait_phase("reader", "Running")
    wait_until(lambda: output(daemon, obj) == ["persisted"], 10, "reader output")
    code, _, err = daemon.exec(obj["status"]["containerID"], ["touch", "/data/g"])
    assert code != 0 and "Read-only" in err
    # In use: deleting the volume waits (and says why) until its user is gone.
    daemon.api.delete(vpath)
    v = wait_until(lambda: (o := daemon.api.get(vpath)).get("status", {}).get("message") and o, 10, "refusal")
    assert v["status"]["phase"] == "InUse" and v["status"]["usedBy"] == ["reader"]
    assert v["status"]["message"].startswith("volume is in use by reader")
    daemon.delete_container("reader")
    wait_until(lambda: not daemon.api.get(VOLUMES.path("default")).get("items"), 45,
               "the volume to be removed once unused")
    assert not (daemon.root_dir / "volumes" / "default" / "data").exists()


def test_host_path_volume(daemon: DaemonProcess, tmp_path) -> None:
    (tmp_path / "in.txt").write_text("from the host\n")
    daemon.create_container("hp", command=["sh", "-c", "cat /h/in.txt; echo back > /h/out.txt"],
                            volumes=[{"hostPath": str(tmp_path), "mountPath": "/h"}])
    obj = daemon.wait_phase("hp", "Exited", "Failed")
    assert output(daemon, obj) == ["from the host"]
    assert (tmp_path / "out.txt").read_text() == "back\n"
    daemon.delete_container("hp")


# ------------------------------------------------------------------------------------------------ sandbox reuse


def test_reused_sandbox_is_scrubbed(daemon: DaemonProcess) -> None:
    """A generic sandbox serves the next container only after what they share is reset."""
    reused = 0
    for attempt in range(4):  # reuse is best effort (a spare may be made meanwhile): try a few times
        settled(daemon)
        time.sleep(1.0)  # let the pool settle on its one spare
        daemon.create_container(f"dirty{attempt}", command=[
            "sh", "-c", "echo x > /dev/shm/leak && echo '192.0.2.1 evil' >> /etc/hosts"])
        first = daemon.wait_phase(f"dirty{attempt}", "Exited", "Failed")["status"]
        assert first["exitCode"] == 0, first
        settled(daemon)
        daemon.create_container(f"clean{attempt}", command=["sh", "-c", "ls /dev/shm | wc -l; grep -c evil /etc/hosts; true"])
        obj = daemon.wait_phase(f"clean{attempt}", "Exited", "Failed")
        assert output(daemon, obj) == ["0", "0"]  # nothing of the first container is left ...
        reused += obj["status"]["sandboxID"] == first["sandboxID"]  # ... even in the same sandbox
        daemon.delete_container(f"dirty{attempt}")
        daemon.delete_container(f"clean{attempt}")
        if reused:
            break
    assert reused
