"""The node's networks without a node: subnet choice, conflists, the dispatcher's pure parts, isolation rules."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from k3c.api import CRI_NETWORKS_ANNOTATION
from k3c.nodenet import conflists, dispatcher, hostrules, subnets
from k3c.nodenet.conflists import (
    BridgeNetwork,
    NetworkDirs,
    read_network,
    render_conflist,
    render_dispatcher_conflist,
    user_key,
    write_json,
)

N = ipaddress.IPv4Network


def test_allocate_skips_everything_taken() -> None:
    taken = [N("10.89.0.0/24"), N("10.89.1.128/25")]
    assert subnets.allocate(taken) == N("10.89.2.0/24")
    assert subnets.allocate([]) == N("10.89.0.0/24")
    assert subnets.allocate([N("10.89.0.0/17")]) == N("10.89.128.0/24")


def test_allocate_fails_when_the_pool_is_full() -> None:
    with pytest.raises(subnets.SubnetError, match="no free /24"):
        subnets.allocate([N("10.89.0.0/16")])


def test_a_given_subnet_is_checked() -> None:
    subnets.check(N("172.30.0.0/24"), [N("10.88.0.0/16")], "172.30.0.254", "172.30.0.128/25")
    with pytest.raises(subnets.SubnetError, match="overlaps 172.30.0.0/16"):
        subnets.check(N("172.30.1.0/24"), [N("172.30.0.0/16")])
    with pytest.raises(subnets.SubnetError, match="not a host address"):
        subnets.check(N("172.30.0.0/24"), [], "172.30.1.1")
    with pytest.raises(subnets.SubnetError, match="not a host address"):
        subnets.check(N("172.30.0.0/24"), [], "172.30.0.255")
    with pytest.raises(subnets.SubnetError, match="not inside"):
        subnets.check(N("172.30.0.0/24"), [], "", "172.30.1.0/25")


@pytest.mark.parametrize(("text", "error"), [("10.1.2.300/24", "invalid subnet"), ("fd00::/64", "only IPv4"),
                                             ("10.0.0.0/31", "too small"), ("nonsense", "invalid subnet")])
def test_bad_subnets_are_one_line(text: str, error: str) -> None:
    with pytest.raises(subnets.SubnetError, match=error) as info:
        subnets.parse(text)
    assert "\n" not in str(info.value)


def test_user_keys_are_bridge_names() -> None:
    key = user_key("0c6f3a8e-2f4b-4a59-9d0f-3d7c1c1f9e11")
    assert key.startswith("k3c-") and len(key) == 14 and key == user_key("0c6f3a8e-2f4b-4a59-9d0f-3d7c1c1f9e11")
    assert key != user_key("another")


def test_conflist_of_a_user_network(tmp_path: Path) -> None:
    net = BridgeNetwork(key="k3c-0123456789", bridge="k3c-0123456789", subnet="172.30.0.0/24",
                        gateway="172.30.0.254", ip_range="172.30.0.128/25")
    doc = render_conflist(net, tmp_path)
    bridge, portmap = doc["plugins"]
    assert doc["name"] == "k3c-0123456789" and doc["cniVersion"] == "1.0.0"
    assert (bridge["type"], bridge["bridge"], bridge["isGateway"], bridge["ipMasq"]) == \
        ("bridge", "k3c-0123456789", True, False), "masquerade is a rule per network, not per container"
    assert bridge["ipam"] == {"type": "host-local", "dataDir": str(tmp_path), "routes": [{"dst": "0.0.0.0/0"}],
                              "ranges": [[{"subnet": "172.30.0.0/24", "gateway": "172.30.0.254",
                                           "rangeStart": "172.30.0.129", "rangeEnd": "172.30.0.254"}]]}
    assert portmap == {"type": "portmap", "capabilities": {"portMappings": True}}
    assert net.gateway_address == "172.30.0.254" and net.prefix_length == 24


def test_an_internal_network_has_no_masquerade_and_no_default_route(tmp_path: Path) -> None:
    net = BridgeNetwork(key="k", bridge="b", subnet="172.30.0.0/24", internal=True)
    doc = render_conflist(net, tmp_path)
    assert "routes" not in doc["plugins"][0]["ipam"] and doc["k3c"] == {"internal": True}
    assert net.gateway_address == "172.30.0.1"


def test_conflists_read_back(tmp_path: Path) -> None:
    dirs = NetworkDirs(tmp_path / "root", tmp_path / "state")
    net = BridgeNetwork(key="k3c-aaaaaaaaaa", bridge="k3c-aaaaaaaaaa", subnet="10.89.3.0/24", internal=True)
    assert write_json(dirs.conflist(net.key), render_conflist(net, dirs.ipam))
    assert not write_json(dirs.conflist(net.key), render_conflist(net, dirs.ipam)), "unchanged: not rewritten"
    assert read_network(dirs, net.key) == net and dirs.keys() == [net.key]
    assert read_network(dirs, "missing") is None


def test_the_dispatcher_conflist_asks_for_annotations_and_ports(tmp_path: Path) -> None:
    dirs = NetworkDirs(tmp_path / "root", tmp_path / "state")
    [plugin] = render_dispatcher_conflist("k3c", dirs, "k3c", CRI_NETWORKS_ANNOTATION)["plugins"]
    assert plugin["type"] == "k3c-cni" and plugin["default"] == "k3c"
    assert plugin["capabilities"] == {"portMappings": True, "io.kubernetes.cri.pod-annotations": True}
    assert plugin["networksDir"] == str(dirs.networks) and plugin["stateDir"] == str(dirs.records)


def _conf(value: str | None) -> dict[str, object]:
    annotations = {} if value is None else {CRI_NETWORKS_ANNOTATION: value}
    return {"default": "k3c", "annotation": CRI_NETWORKS_ANNOTATION,
            "runtimeConfig": {dispatcher.ANNOTATIONS_CAPABILITY: annotations}}


def test_the_dispatcher_reads_a_sandboxs_networks() -> None:
    assert dispatcher.wanted_networks(_conf(None)) == ["k3c"]
    assert dispatcher.wanted_networks(_conf("k3c-a,k3c-b")) == ["k3c-a", "k3c-b"]
    assert dispatcher.wanted_networks(_conf("none")) == []


def test_delegated_plugins_get_only_the_capabilities_they_ask_for() -> None:
    conflist = {"cniVersion": "1.0.0", "name": "k3c-a"}
    runtime = {"portMappings": [{"hostPort": 8080}], "bandwidth": {}}
    portmap = dispatcher.plugin_config(conflist, {"type": "portmap", "capabilities": {"portMappings": True}},
                                       {"ips": []}, runtime)
    assert portmap["runtimeConfig"] == {"portMappings": [{"hostPort": 8080}]} and portmap["prevResult"] == {"ips": []}
    bridge = dispatcher.plugin_config(conflist, {"type": "bridge"}, None, runtime)
    assert "runtimeConfig" not in bridge and "prevResult" not in bridge and bridge["name"] == "k3c-a"


def test_results_merge_with_interfaces_renumbered() -> None:
    first = {"interfaces": [{"name": "br0"}, {"name": "veth1"}, {"name": "eth0", "sandbox": "/ns"}],
             "ips": [{"address": "10.1.0.2/24", "gateway": "10.1.0.1", "interface": 2}],
             "routes": [{"dst": "0.0.0.0/0"}], "dns": {}}
    second = {"interfaces": [{"name": "br1"}, {"name": "veth2"}, {"name": "eth1", "sandbox": "/ns"}],
              "ips": [{"address": "10.2.0.2/24", "gateway": "10.2.0.1", "interface": 2}], "dns": {}}
    merged = dispatcher.merge([first, second], "1.0.0")
    assert [i["name"] for i in merged["interfaces"]] == ["br0", "veth1", "eth0", "br1", "veth2", "eth1"]
    assert [(ip["address"], ip["interface"]) for ip in merged["ips"]] == [("10.1.0.2/24", 2), ("10.2.0.2/24", 5)]
    assert merged["routes"] == [{"dst": "0.0.0.0/0"}]
    assert dispatcher.merge([], "1.0.0")["ips"] == [{"address": "127.0.0.1/8"}], "none: CRI's placeholder"


def test_host_rules_isolate_in_two_stages_accept_forwarding_and_masquerade_per_network() -> None:
    tables = hostrules.rules("k3c0", [hostrules.Member("k3c0", "10.88.0.0/16"),
                                      hostrules.Member("k3c-a", "10.89.0.0/24", internal=True)])
    assert tables["mangle"] == [
        ":K3C-ISO-k3c0 - [0:0]", ":K3C-ISO2-k3c0 - [0:0]",
        "-A K3C-ISO-k3c0 -i k3c-a ! -o k3c-a -j DROP", "-A K3C-ISO-k3c0 -o k3c-a ! -i k3c-a -j DROP",
        "-A K3C-ISO-k3c0 -i k3c0 ! -o k3c0 -j K3C-ISO2-k3c0", "-A K3C-ISO-k3c0 -i k3c-a ! -o k3c-a -j K3C-ISO2-k3c0",
        "-A K3C-ISO2-k3c0 -o k3c0 -j DROP", "-A K3C-ISO2-k3c0 -o k3c-a -j DROP",
    ]
    assert tables["filter"] == [
        ":K3C-FWD-k3c0 - [0:0]",
        "-A K3C-FWD-k3c0 -i k3c0 -j ACCEPT", "-A K3C-FWD-k3c0 -o k3c0 -j ACCEPT",
        "-A K3C-FWD-k3c0 -i k3c-a -j ACCEPT", "-A K3C-FWD-k3c0 -o k3c-a -j ACCEPT",
    ]
    assert tables["nat"] == [  # the internal network is never masqueraded
        ":K3C-NAT-k3c0 - [0:0]",
        "-A K3C-NAT-k3c0 -s 10.88.0.0/16 -d 10.88.0.0/16 -j RETURN",
        "-A K3C-NAT-k3c0 -s 10.88.0.0/16 ! -d 224.0.0.0/4 -j MASQUERADE",
    ]
    assert all(len(c.name) <= 28 for c in hostrules.chains("k3cd0123456789a"))


def test_network_conflists_have_no_per_container_rules_and_keep_internal(tmp_path: Path) -> None:
    dirs = conflists.NetworkDirs(tmp_path / "root", tmp_path / "state")
    for key, internal in (("k3c0", False), ("k3c-a", True)):
        net = conflists.BridgeNetwork(key, key, "10.89.0.0/24" if internal else "10.88.0.0/16", internal=internal)
        doc = conflists.render_conflist(net, dirs.ipam)
        assert [p["type"] for p in doc["plugins"]] == ["bridge", "portmap"]
        assert doc["plugins"][0]["ipMasq"] is False
        conflists.write_json(dirs.conflist(key), doc)
    assert conflists.members(dirs, "k3c0") == [hostrules.Member("k3c0", "10.88.0.0/16"),
                                               hostrules.Member("k3c-a", "10.89.0.0/24", internal=True)]
    assert conflists.members(dirs, "gone") == []
