"""Networks on a real node: the ``k3c-cni`` dispatcher, user bridges, isolation, ``internal``, ``none``, ports.

One `k3c daemon` for the module (real containerd, CNI plugins and iptables). Networks are created as objects
(kubectl's way, through the API), containers with ``spec.networks`` or the CLI's ``--network``; reachability
is checked from inside the containers with busybox's ``ping``, what the node holds (bridges, rules, conflists,
leases) on the host itself.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from k3c.api import NETWORKS
from k3c.apierrors import BadRequest, Conflict, NotFound
from k3c.nodenet import hostrules
from k3c.nodenet.conflists import user_key
from tests.support.daemon_harness import DaemonProcess, pick_subnet, wait_until
from tests.support.harness import free_port


def k3c(daemon: DaemonProcess, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "K3C_KUBECONFIG": str(daemon.kubeconfig)}
    cp = subprocess.run([sys.executable, "-m", "k3c.cli.main", *args], env=env, capture_output=True, text=True,
                        timeout=90)
    assert "Traceback" not in cp.stderr, cp.stderr
    return cp


def create_network(daemon: DaemonProcess, name: str, **spec: Any) -> dict[str, Any]:
    obj = {"apiVersion": NETWORKS.api_version, "kind": NETWORKS.kind,
           "metadata": {"name": name, "namespace": "default"}, "spec": {"driver": "bridge", **spec}}
    daemon.api.create(NETWORKS.path("default"), obj)
    return wait_network(daemon, name, "Ready", "Failed")


def wait_network(daemon: DaemonProcess, name: str, *phases: str, timeout: float = 20.0) -> dict[str, Any]:
    found: dict[str, Any] = {}

    def check() -> bool:
        found.update(daemon.api.get(NETWORKS.path("default", name)))
        return (found.get("status") or {}).get("phase") in phases

    wait_until(check, timeout, f"network {name} in {phases}")
    return found


def delete_network(daemon: DaemonProcess, name: str, timeout: float = 30.0) -> None:
    try:
        daemon.api.delete(NETWORKS.path("default", name))
    except NotFound:
        return

    def gone() -> bool:
        try:
            daemon.api.get(NETWORKS.path("default", name))
        except NotFound:
            return True
        return False

    wait_until(gone, timeout, f"network {name} to be deleted")


def run(daemon: DaemonProcess, name: str, networks: list[dict[str, Any]] | None = None, **spec: Any) -> dict[str, Any]:
    spec.setdefault("command", ["sleep", "600"])
    spec.setdefault("stopTimeout", 0)
    if networks is not None:
        spec["networks"] = networks
    daemon.create_container(name, **spec)
    obj = daemon.wait_phase(name, "Running", "Failed")
    assert obj["status"]["phase"] == "Running", obj["status"]
    return obj


def reaches(daemon: DaemonProcess, obj: dict[str, Any], ip: str) -> bool:
    code, _out, _err = daemon.exec(obj["status"]["containerID"], ["ping", "-c", "1", "-W", "2", ip], timeout=10)
    return code == 0


def resolves(daemon: DaemonProcess, obj: dict[str, Any], name: str) -> bool:
    """Whether ``name`` resolves from inside the container (busybox nslookup: the server's Address, then the
    name's)."""
    code, out, _err = daemon.exec(obj["status"]["containerID"], ["nslookup", name], timeout=10)
    return code == 0 and out.count("Address") >= 2


def in_container(daemon: DaemonProcess, obj: dict[str, Any], script: str) -> str:
    code, out, err = daemon.exec(obj["status"]["containerID"], ["sh", "-c", script])
    assert code == 0, err
    return out


def mangle_rules(daemon: DaemonProcess) -> str:
    return "\n".join(hostrules.listed(daemon.bridge))


@pytest.fixture(scope="module")
def nets(daemon: DaemonProcess) -> Iterator[dict[str, dict[str, Any]]]:
    """Two user networks (``front``, ``back``) and an internal one, with subnets reserved for this process."""
    made = {"front": create_network(daemon, "front", subnet=pick_subnet()),
            "back": create_network(daemon, "back", subnet=pick_subnet()),
            "sealed": create_network(daemon, "sealed", subnet=pick_subnet(), internal=True)}
    yield made
    daemon.delete_all()
    for name in made:
        delete_network(daemon, name)


def test_the_default_network_is_an_object(daemon: DaemonProcess) -> None:
    net = wait_network(daemon, "bridge", "Ready")
    assert net["status"]["bridge"] == daemon.bridge and net["status"]["subnet"] == daemon.subnet
    gateway = ipaddress.ip_address(net["status"]["gateway"])
    assert gateway in ipaddress.ip_network(daemon.subnet)
    plugins = daemon.containerd_config.network_dirs.plugins
    assert (plugins / "k3c-cni").read_text().startswith("#!") and os.access(plugins / "k3c-cni", os.X_OK)


def test_user_network_set_up_with_status(daemon: DaemonProcess, nets: dict[str, dict[str, Any]]) -> None:
    front = nets["front"]
    st = front["status"]
    assert st["phase"] == "Ready" and st["bridge"] == user_key(front["metadata"]["uid"]) and st["message"] == ""
    assert st["gateway"] == str(next(ipaddress.ip_network(st["subnet"]).hosts()))
    assert "k3c.io/network" in front["metadata"]["finalizers"]
    assert Path(f"/sys/class/net/{st['bridge']}").exists(), "the bridge is made with the network"
    addrs = subprocess.run(["ip", "-4", "-o", "addr", "show", "dev", st["bridge"]], capture_output=True, text=True)
    assert f"{st['gateway']}/24" in addrs.stdout
    assert f"-i {st['bridge']} ! -o {st['bridge']} -j" in mangle_rules(daemon)
    conflist = json.loads(daemon.containerd_config.network_dirs.conflist(st["bridge"]).read_text())
    assert [p["type"] for p in conflist["plugins"]] == ["bridge", "portmap"] and not conflist["plugins"][0]["ipMasq"]
    rules = mangle_rules(daemon)  # masquerade and forwarding are per network, in k3c's own chains
    assert f"-s {st['subnet']} ! -d 224.0.0.0/4 -j MASQUERADE" in rules
    assert f"-o {st['bridge']} -j ACCEPT" in rules and f"-i {st['bridge']} -j ACCEPT" in rules


def test_same_network_reaches_other_networks_do_not(daemon: DaemonProcess, nets: dict[str, dict[str, Any]]) -> None:
    a1 = run(daemon, "a1", [{"name": "front", "aliases": ["web"]}])
    a2 = run(daemon, "a2", [{"name": "front"}])
    b1 = run(daemon, "b1", [{"name": "back"}])
    d1 = run(daemon, "d1")
    front = nets["front"]["status"]
    [att] = a1["status"]["networks"]
    assert att["name"] == "front" and att["interface"] == "eth0" and att["aliases"] == ["web"]
    assert ipaddress.ip_address(att["ip"]) in ipaddress.ip_network(front["subnet"])
    assert att["prefixLength"] == 24 and att["gateway"] == front["gateway"] and len(att["mac"]) == 17
    assert a1["status"]["ip"] == att["ip"]
    assert d1["status"]["networks"][0]["name"] == "bridge"
    assert ipaddress.ip_address(d1["status"]["ip"]) in ipaddress.ip_network(daemon.subnet)
    assert reaches(daemon, a1, a2["status"]["ip"]), "two containers of one network reach each other"
    assert reaches(daemon, a1, front["gateway"])
    assert not reaches(daemon, a1, b1["status"]["ip"]), "another network is out of reach"
    assert not reaches(daemon, b1, a1["status"]["ip"])
    assert not reaches(daemon, d1, a1["status"]["ip"]), "the default network is isolated from user networks"
    assert not reaches(daemon, a1, d1["status"]["ip"])
    resolv = in_container(daemon, a1, "cat /etc/resolv.conf")
    assert f"nameserver {front['gateway']}" in resolv, "a DNS-enabled network's gateway is the resolver"

    def listed() -> bool:
        st = daemon.api.get(NETWORKS.path("default", "front"))["status"]
        return {c["name"]: c["ip"] for c in st.get("containers") or []} == {
            "a1": a1["status"]["ip"], "a2": a2["status"]["ip"]}

    wait_until(listed, 10, "the network's status to list its containers")
    for name in ("a1", "a2", "b1", "d1"):
        daemon.delete_container(name)


def test_two_networks_give_two_interfaces(daemon: DaemonProcess, nets: dict[str, dict[str, Any]]) -> None:
    both = run(daemon, "both", [{"name": "front"}, {"name": "back"}])
    eth0, eth1 = both["status"]["networks"]
    assert (eth0["name"], eth0["interface"], eth1["name"], eth1["interface"]) == ("front", "eth0", "back", "eth1")
    assert ipaddress.ip_address(eth1["ip"]) in ipaddress.ip_network(nets["back"]["status"]["subnet"])
    assert sorted(in_container(daemon, both, "ls /sys/class/net").split()) == ["eth0", "eth1", "lo"]
    peer = run(daemon, "backpeer", [{"name": "back"}])
    assert reaches(daemon, peer, eth1["ip"])
    daemon.delete_container("both")
    daemon.delete_container("backpeer")


def test_internal_network_has_no_way_out(daemon: DaemonProcess, nets: dict[str, dict[str, Any]]) -> None:
    sealed = nets["sealed"]["status"]
    c = run(daemon, "inside", [{"name": "sealed"}])
    peer = run(daemon, "inside2", [{"name": "sealed"}])
    routes = in_container(daemon, c, "ip route")
    assert "default" not in routes and sealed["subnet"] in routes, routes
    nat = subprocess.run(["iptables-save", "-t", "nat"], capture_output=True, text=True).stdout
    assert c["status"]["ip"] not in nat and sealed["subnet"] not in nat, "no masquerading for an internal network"
    assert f"-A K3C-NAT-{daemon.bridge} -s {daemon.subnet} ! -d 224.0.0.0/4 -j MASQUERADE" in nat, \
        "the default network's is there"
    assert f"-A K3C-ISO-{daemon.bridge} -i {sealed['bridge']} ! -o {sealed['bridge']} -j DROP" in mangle_rules(daemon)
    assert reaches(daemon, c, peer["status"]["ip"])
    outside = run(daemon, "outside")
    assert not reaches(daemon, outside, c["status"]["ip"])
    for name in ("inside", "inside2", "outside"):
        daemon.delete_container(name)


def test_network_none_is_loopback_only(daemon: DaemonProcess) -> None:
    cp = k3c(daemon, "run", "-d", "--name", "lonely", "--network", "none", "k3c.test/busybox:latest", "sleep", "600")
    assert cp.returncode == 0, cp.stderr
    obj = daemon.wait_phase("lonely", "Running", "Failed")
    assert obj["spec"]["networks"] == [{"name": "none"}]
    assert obj["status"]["ip"] == "" and obj["status"]["networks"] == []
    assert in_container(daemon, obj, "ls /sys/class/net").split() == ["lo"]
    daemon.delete_container("lonely")


def test_connect_and_disconnect_of_a_running_container(daemon: DaemonProcess, nets: dict[str, dict[str, Any]]) -> None:
    """`network connect` of a running container: it is recreated in a sandbox on both networks (docker does
    it live; the issue allows the sandbox to restart) and keeps its object, name and ID; then names on the
    new network resolve; `disconnect` takes it off again. Each answers once the container runs on its new
    networks, as docker answers once the endpoint is joined."""
    mover = run(daemon, "mover", [{"name": "front"}])
    peer = run(daemon, "backer", [{"name": "back"}])
    assert not reaches(daemon, mover, peer["status"]["ip"])
    cp = k3c(daemon, "network", "connect", "--alias", "shifter", "back", "mover")
    assert cp.returncode == 0, cp.stderr

    def on_both() -> dict[str, Any] | None:
        obj = daemon.container("mover") or {}
        st = obj.get("status") or {}
        names = [n["name"] for n in st.get("networks") or [] if n.get("ip")]
        return obj if st.get("phase") == "Running" and names == ["front", "back"] else None

    moved = on_both()  # at once: connect answered when it was done
    assert moved is not None and moved["metadata"]["uid"] == mover["metadata"]["uid"]
    assert reaches(daemon, moved, peer["status"]["ip"]), "the new network reaches"
    wait_until(lambda: in_container(daemon, peer, "nslookup shifter || true").count("Address") >= 2, 10,
               "the alias on the new network to resolve from its peers")
    cp = k3c(daemon, "network", "disconnect", "back", "mover")
    assert cp.returncode == 0, cp.stderr

    def front_only() -> dict[str, Any] | None:
        obj = daemon.container("mover") or {}
        st = obj.get("status") or {}
        names = [n["name"] for n in st.get("networks") or [] if n.get("ip")]
        return obj if st.get("phase") == "Running" and names == ["front"] else None

    alone = front_only()
    assert alone is not None, daemon.container("mover")
    assert not reaches(daemon, alone, peer["status"]["ip"])
    daemon.delete_container("mover")
    daemon.delete_container("backer")


def test_cli_network_and_alias_write_spec_networks(daemon: DaemonProcess, nets: dict[str, dict[str, Any]]) -> None:
    cp = k3c(daemon, "create", "--name", "aliased", "--network", "front", "--network-alias", "db",
             "--network-alias", "pg", "k3c.test/busybox:latest", "sleep", "600")
    assert cp.returncode == 0, cp.stderr
    obj = daemon.container("aliased")
    assert obj is not None and obj["spec"]["networks"] == [{"name": "front", "aliases": ["db", "pg"]}]
    daemon.delete_container("aliased")


def test_unknown_network_fails_the_container(daemon: DaemonProcess) -> None:
    daemon.create_container("lost", command=["sleep", "60"], networks=[{"name": "nowhere"}])
    obj = daemon.wait_phase("lost", "Failed")
    assert obj["status"]["message"] == "network nowhere not found"
    daemon.delete_container("lost")


def test_published_port_on_a_user_network(daemon: DaemonProcess, nets: dict[str, dict[str, Any]]) -> None:
    port = free_port()
    run(daemon, "served", [{"name": "front"}], ports=[{"containerPort": 80, "hostPort": port}],
        command=["sh", "-c", "mkdir -p /www && echo hello-front > /www/index.html && httpd -f -p 80 -h /www"])

    def served() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=2) as r:
                return bool(r.read() == b"hello-front\n")
        except OSError:
            return False

    wait_until(served, 15, "the published port to serve")
    daemon.delete_container("served")


def _host_route() -> str | None:
    """A subnet the host routes to directly that is not a k3c bridge's (its own LAN), if any."""
    out = subprocess.run(["ip", "-4", "-j", "route"], capture_output=True, text=True).stdout
    for route in json.loads(out or "[]"):
        if route.get("dst", "default") != "default" and not str(route.get("dev", "")).startswith("k3c"):
            return str(route["dst"])
    return None


def test_overlapping_or_bad_subnets_fail_with_one_line(daemon: DaemonProcess, nets: dict[str, dict[str, Any]]) -> None:
    """Admission refuses what it can judge from the objects (another network's subnet, a bad CIDR): one
    line, nothing created. What only the node knows (its own routes) the reconciler refuses: Failed, one line."""
    taken = nets["front"]["status"]["subnet"]
    for name, subnet, words in (("clash", taken, "overlaps"), ("badcidr", "10.1.2.300/24", "10.1.2.300/24")):
        with pytest.raises(BadRequest) as refused:
            create_network(daemon, name, subnet=subnet)
        assert words in refused.value.message and "\n" not in refused.value.message, refused.value.message
        with pytest.raises(NotFound):
            daemon.api.get(NETWORKS.path("default", name))
    lan = _host_route()
    if lan is None:
        return  # no route of the host's own to collide with (only k3c bridges): nothing more to check
    onlan = create_network(daemon, "onlan", subnet=lan)
    assert onlan["status"]["phase"] == "Failed" and "overlaps" in onlan["status"]["message"], onlan["status"]
    assert "\n" not in onlan["status"]["message"]
    key = user_key(onlan["metadata"]["uid"])
    assert not Path(f"/sys/class/net/{key}").exists()
    assert not daemon.containerd_config.network_dirs.conflist(key).exists()
    delete_network(daemon, "onlan")


def test_a_failed_network_is_set_up_once_what_was_in_its_way_is_gone(daemon: DaemonProcess) -> None:
    """Level-based: a network whose subnet a host route took is Failed, and Ready once the route goes (its
    spec unchanged). The route here is an address on a bridge of the test's own."""
    subnet = ipaddress.ip_network(pick_subnet())
    link = f"k3ct{os.getpid() % 100000}"
    subprocess.run(["ip", "link", "add", link, "type", "bridge"], check=True)
    try:
        subprocess.run(["ip", "addr", "add", f"{next(subnet.hosts())}/{subnet.prefixlen}", "dev", link], check=True)
        subprocess.run(["ip", "link", "set", link, "up"], check=True)
        blocked = create_network(daemon, "blocked", subnet=str(subnet))
        assert blocked["status"]["phase"] == "Failed" and "overlaps" in blocked["status"]["message"]
    finally:
        subprocess.run(["ip", "link", "del", link], check=False)
    assert wait_network(daemon, "blocked", "Ready")["status"]["subnet"] == str(subnet)
    delete_network(daemon, "blocked")


def test_automatic_subnet_and_deletion_removes_everything(daemon: DaemonProcess) -> None:
    auto = create_network(daemon, "auto")
    st = auto["status"]
    assert st["phase"] == "Ready", st
    subnet = ipaddress.ip_network(st["subnet"])
    assert subnet.subnet_of(ipaddress.ip_network("10.89.0.0/16")) and subnet.prefixlen == 24
    c = run(daemon, "autoc", [{"name": "auto"}])
    dirs = daemon.containerd_config.network_dirs
    assert list((dirs.ipam / st["bridge"]).glob("10.*")), "a lease in the network's IPAM dir"
    with pytest.raises(Conflict) as refused:  # docker's rule, through admission: nothing starts terminating
        daemon.api.delete(NETWORKS.path("default", "auto"))
    assert "autoc" in refused.value.message
    assert not daemon.api.get(NETWORKS.path("default", "auto"))["metadata"].get("deletionTimestamp")
    assert reaches(daemon, c, st["gateway"])
    daemon.delete_container("autoc")
    wait_until(lambda: daemon.container("autoc") is None, 30, "autoc to be removed")
    delete_network(daemon, "auto")

    def gone() -> bool:
        try:
            daemon.api.get(NETWORKS.path("default", "auto"))
        except NotFound:
            return True
        return False

    wait_until(gone, 20, "the network to be deleted once unused")

    def node_side_gone() -> bool:  # it follows the object once the container's sandbox released its address
        return not Path(f"/sys/class/net/{st['bridge']}").exists() and st["bridge"] not in mangle_rules(daemon) \
            and not dirs.conflist(st["bridge"]).exists() and not (dirs.ipam / st["bridge"]).exists() \
            and st["subnet"] not in subprocess.run(["iptables-save"], capture_output=True, text=True).stdout

    wait_until(node_side_gone, 10, "its bridge, isolation and NAT rules, conflist and leases to be removed")


def test_kill9_and_restart_duplicate_nothing(daemon: DaemonProcess, nets: dict[str, dict[str, Any]]) -> None:
    """Containers on two user networks survive a kill -9 of the daemon with their addresses; the restart sets
    the networks up again without a second bridge address, rule or jump, and nothing leaks."""
    a = run(daemon, "k9a", [{"name": "front", "aliases": ["alpha"]}])
    b = run(daemon, "k9b", [{"name": "back"}])
    pa = run(daemon, "k9pa", [{"name": "front"}])
    pb = run(daemon, "k9pb", [{"name": "back"}])
    for peer, name in ((pa, "alpha"), (pb, "k9b")):
        wait_until(lambda peer=peer, name=name: resolves(daemon, peer, name), 10, f"{name} to resolve")
    rules_before = sorted(hostrules.listed(daemon.bridge))
    front = nets["front"]["status"]["bridge"]
    daemon.kill9()
    daemon.start()
    back_at = time.monotonic()
    for before in (a, b, pa, pb):
        after = daemon.wait_phase(before["metadata"]["name"], "Running")
        assert after["status"]["containerID"] == before["status"]["containerID"]
        assert after["status"]["networks"] == before["status"]["networks"]
    for peer, name in ((pa, "alpha"), (pb, "k9b")):  # the bound: every name again within 5 s
        wait_until(lambda peer=peer, name=name: resolves(daemon, peer, name), 5 - (time.monotonic() - back_at),
                   f"{name} to resolve again")
    time.sleep(1.0)  # the operator's first reconcile of every network
    wait_network(daemon, "front", "Ready")
    assert sorted(hostrules.listed(daemon.bridge)) == rules_before
    for table, hook, chain in (("mangle", "FORWARD", "K3C-ISO"), ("filter", "FORWARD", "K3C-FWD"),
                               ("nat", "POSTROUTING", "K3C-NAT")):
        jumps = subprocess.run(["iptables", "-t", table, "-S", hook], capture_output=True, text=True).stdout
        assert jumps.count(f"-j {chain}-{daemon.bridge}") == 1, jumps
    addrs = subprocess.run(["ip", "-4", "-o", "addr", "show", "dev", front], capture_output=True, text=True).stdout
    assert len(addrs.splitlines()) == 1, addrs
    assert reaches(daemon, daemon.wait_phase("k9a", "Running"), nets["front"]["status"]["gateway"])
    for name in ("k9a", "k9b", "k9pa", "k9pb"):
        daemon.delete_container(name)
    daemon.wait_no_leftovers()


def test_a_network_whose_object_went_meanwhile_is_collected(daemon: DaemonProcess) -> None:
    """A daemon killed during a deletion leaves bridge, conflist and rules of an object that is gone: the
    operator finds them after its start and removes them."""
    from k3c.nodenet import bridges
    from k3c.nodenet.conflists import BridgeNetwork, render_conflist, write_json

    dirs = daemon.containerd_config.network_dirs
    stray = BridgeNetwork(key="k3c-dead00beef", bridge="k3c-dead00beef", subnet=pick_subnet())
    daemon.kill9()
    try:
        write_json(dirs.conflist(stray.key), render_conflist(stray, dirs.ipam))
        (dirs.ipam / stray.key).mkdir(parents=True, exist_ok=True)
        bridges.ensure(stray.bridge, stray.gateway_address, stray.prefix_length)
    finally:
        daemon.start()
    wait_until(lambda: not dirs.conflist(stray.key).exists(), 30, "the stray network to be collected")
    assert not Path(f"/sys/class/net/{stray.bridge}").exists() and not (dirs.ipam / stray.key).exists()
    wait_until(lambda: stray.bridge not in mangle_rules(daemon), 5, "its isolation rules to go")


def test_a_container_waits_for_a_network_created_just_before(daemon: DaemonProcess) -> None:
    """compose creates the network, then at once its containers: they wait while it is being set up."""
    obj = {"apiVersion": NETWORKS.api_version, "kind": NETWORKS.kind,
           "metadata": {"name": "hasty", "namespace": "default"}, "spec": {"subnet": pick_subnet()}}
    daemon.api.create(NETWORKS.path("default"), obj)
    c = run(daemon, "hastyc", [{"name": "hasty"}])
    assert c["status"]["networks"][0]["name"] == "hasty" and c["status"]["ip"]
    daemon.delete_container("hastyc")
    delete_network(daemon, "hasty")


def test_leases_and_records_of_vanished_sandboxes_are_released(daemon: DaemonProcess,
                                                               nets: dict[str, dict[str, Any]]) -> None:
    """What a sandbox cut short by a kill -9 leaves in a user network (an IP lease, the dispatcher's record)
    is released when the daemon's containerd comes back (k3c.daemon.netgc)."""
    dirs = daemon.containerd_config.network_dirs
    key = nets["back"]["status"]["bridge"]
    gone = "f" * 64
    daemon.kill9()
    try:
        lease = dirs.ipam / key / str(ipaddress.ip_network(nets["back"]["status"]["subnet"])[200])
        lease.parent.mkdir(parents=True, exist_ok=True)
        lease.write_text(f"{gone}\neth0")
        record = dirs.records / f"{gone}.json"
        record.parent.mkdir(parents=True, exist_ok=True)
        conflist = json.loads(dirs.conflist(key).read_text())
        record.write_text(json.dumps({"networks": [{"key": key, "ifname": "eth0", "conflist": conflist,
                                                    "result": None}]}))
    finally:
        daemon.start()
    wait_until(lambda: not lease.exists() and not record.exists(), 20, "the vanished sandbox's state to go")
    daemon.wait_no_leftovers()


def test_cleanup_of_a_node_with_user_networks_left(tmp_path: Path) -> None:
    """A node stopped with user networks still set up (objects gone with the daemon down): the clean-up takes
    each of them once, then the node's own (it recursed between the two until the stack ran out)."""
    from k3c.daemon.containerd import (
        ContainerdConfig,
        cleanup_network,
        sync_host_rules,
        write_containerd_config,
    )
    from k3c.nodenet.conflists import BridgeNetwork, render_conflist, write_json

    cfg = ContainerdConfig(root_dir=tmp_path / "r", state_dir=tmp_path / "s", bridge="k3ccl0", subnet=pick_subnet(),
                           network_name="k3ccl0")
    write_containerd_config(cfg)
    user = BridgeNetwork("k3c-c1eanup00", "k3c-c1eanup00", pick_subnet())
    write_json(cfg.network_dirs.conflist(user.key), render_conflist(user, cfg.network_dirs.ipam))
    (cfg.network_dirs.ipam / user.key).mkdir(parents=True)
    lease = str(ipaddress.ip_network(user.subnet)[7])
    (cfg.network_dirs.ipam / user.key / lease).write_text("x")
    sync_host_rules(cfg)
    assert any(user.bridge in rule for rule in hostrules.listed(cfg.bridge))
    done = cleanup_network(cfg)
    assert cfg.network_dirs.keys() == [cfg.network_name], "the user network's conflist is gone"
    assert not hostrules.listed(cfg.bridge), "the node's chains are gone"
    assert f"released lease {lease}" in done, done
    assert cleanup_network(cfg) == [], "a second run finds nothing left"
