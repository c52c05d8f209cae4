"""Docker's view of Networks (k3c.dockernetwork) and the rules admission applies to them (k3c.networkrules)."""

from __future__ import annotations

from typing import Any

import pytest

from k3c import dockerid, dockernetwork, networkrules
from k3c.api import LABELS_ANNOTATION, NAME_ANNOTATION


def _net(name: str, subnet: str = "", uid: str = "", **spec: Any) -> dict[str, Any]:
    obj = dockernetwork.network_object(dockernetwork.NetworkRequest(name, subnet=subnet, **spec))
    obj["metadata"].update(uid=uid or f"uid-{name}", namespace="default", creationTimestamp="2026-01-02T03:04:05Z")
    return obj


def _container(name: str, spec_networks: list[dict[str, Any]] | None = None, **status: Any) -> dict[str, Any]:
    spec = {"networks": spec_networks} if spec_networks is not None else {}
    return {"metadata": {"name": name, "uid": f"uid-{name}", "namespace": "default", "resourceVersion": "7"},
            "spec": spec, "status": status}


def test_a_create_keeps_every_label_verbatim_and_the_valid_ones_as_object_labels() -> None:
    labels = {"com.docker.compose.project": "proj", "odd key": "x y", "empty": ""}
    obj = _net("Proj_default", internal=True, labels=labels, options={"com.docker.network.mtu": "1400"})
    assert obj["metadata"]["name"] == dockerid.object_name("Proj_default") != "Proj_default"
    assert obj["metadata"]["annotations"][NAME_ANNOTATION] == "Proj_default"
    assert obj["metadata"]["labels"] == {"com.docker.compose.project": "proj", "empty": ""}
    assert obj["spec"] == {"driver": "bridge", "internal": True, "options": {"com.docker.network.mtu": "1400"}}
    doc = dockernetwork.docker_network(obj)
    assert doc["Labels"] == labels and doc["Options"] == {"com.docker.network.mtu": "1400"}
    assert doc["Internal"] is True and doc["Driver"] == "bridge" and doc["Name"] == "Proj_default"
    assert doc["Id"] == dockerid.container_id("uid-Proj_default")


def test_labels_written_with_kubectl_show_without_the_annotation() -> None:
    obj = {"metadata": {"name": "n", "uid": "u", "labels": {"a": "b"}}, "spec": {}}
    assert dockernetwork.docker_network(obj)["Labels"] == {"a": "b"}
    obj["metadata"]["annotations"] = {LABELS_ANNOTATION: "not json"}
    assert dockernetwork.labels_of(obj) == {"a": "b"}


def test_inspect_shape_ipam_and_endpoints() -> None:
    obj = _net("web", "172.30.5.0/24", ip_range="172.30.5.128/25")
    attached = _container("c1", [{"name": "web"}], networks=[
        {"name": "web", "ip": "172.30.5.130", "prefixLength": 24, "mac": "02:42:ac:1e:05:82"}])
    elsewhere = _container("c2", None, ip="10.88.0.5")
    doc = dockernetwork.docker_network(obj, [attached, elsewhere])
    assert set(doc) == {"Name", "Id", "Created", "Scope", "Driver", "EnableIPv6", "IPAM", "Internal", "Attachable",
                        "Ingress", "ConfigFrom", "ConfigOnly", "Containers", "Options", "Labels"}
    assert doc["IPAM"] == {"Driver": "default", "Options": {}, "Config": [
        {"Subnet": "172.30.5.0/24", "Gateway": "172.30.5.1", "IPRange": "172.30.5.128/25"}]}
    assert doc["Containers"] == {dockerid.container_id("uid-c1"): {
        "Name": "c1", "EndpointID": "", "MacAddress": "02:42:ac:1e:05:82", "IPv4Address": "172.30.5.130/24",
        "IPv6Address": ""}}
    assert doc["Created"] == "2026-01-02T03:04:05Z" and doc["Scope"] == "local"


def test_the_predefined_networks_show_without_objects_and_bridge_from_its_object_once_made() -> None:
    plain = _container("old", None, ip="10.88.0.9")
    docs = dockernetwork.all_networks([_net("zeta"), _net("alpha")], "10.88.0.0/16", "k3c0", [plain])
    assert [(d["Name"], d["Driver"]) for d in docs] == [("bridge", "bridge"), ("host", "host"), ("none", "null"),
                                                        ("alpha", "bridge"), ("zeta", "bridge")]
    bridge = docs[0]
    assert bridge["Id"] == dockerid.network_id("bridge")
    assert bridge["Options"]["com.docker.network.bridge.name"] == "k3c0"
    assert bridge["IPAM"]["Config"] == [{"Subnet": "10.88.0.0/16", "Gateway": "10.88.0.1"}]
    assert bridge["Containers"][dockerid.container_id("uid-old")]["IPv4Address"] == "10.88.0.9/16"
    made = {"metadata": {"name": "bridge", "uid": "b-uid"}, "spec": {"driver": "bridge"}}
    assert dockernetwork.all_networks([made])[0]["Id"] == dockerid.container_id("b-uid")


def test_lookup_by_id_name_and_prefix() -> None:
    docs = dockernetwork.all_networks([_net("alpha"), _net("beta")])
    alpha = next(d for d in docs if d["Name"] == "alpha")
    assert dockernetwork.find(docs, alpha["Id"][:5]) is alpha
    assert dockernetwork.find(docs, "alpha") is alpha
    assert dockernetwork.find(docs, "host")["Driver"] == "host"
    with pytest.raises(dockernetwork.NetworkError) as missing:
        dockernetwork.find(docs, "nope")
    assert missing.value.status == 404 and missing.value.message == "network nope not found"


def test_filters() -> None:
    docs = dockernetwork.all_networks([_net("alpha", labels={"team": "a"}), _net("beta")])
    def names(filters: dict[str, list[str]], used: tuple[str, ...] = ()) -> list[str]:
        return [d["Name"] for d in docs if dockernetwork.matches(d, filters, d["Name"] in used)]
    assert names({"type": ["custom"]}) == ["alpha", "beta"]
    assert names({"type": ["builtin"]}) == ["bridge", "host", "none"]
    assert names({"label": ["team=a"]}) == ["alpha"]
    assert names({"label": ["team=a", "team=b"]}) == []  # labels must all match, as docker's
    assert names({"name": ["^b"]}) == ["bridge", "beta"]
    assert names({"driver": ["null", "host"]}) == ["host", "none"]
    assert names({"dangling": ["true"]}, ("alpha",)) == ["beta"]
    problem = dockernetwork.filter_problem({"colour": ["red"]})
    assert problem is not None and problem.message == "invalid filter 'colour'"


def test_connect_and_disconnect_patch_spec_networks() -> None:
    net = _net("web")
    plain = _container("c", None)
    assert dockernetwork.connect_networks(plain, net, ["db", "db"]) == [{"name": "bridge"},
                                                                       {"name": "web", "aliases": ["db"]}]
    on_web = _container("c", [{"name": "web"}])
    with pytest.raises(dockernetwork.NetworkError, match="endpoint with name c already exists in network web"):
        dockernetwork.connect_networks(on_web, net, [])
    assert dockernetwork.disconnect_networks(on_web, "web", "web", False) == [{"name": "none"}]
    assert dockernetwork.disconnect_networks(plain, "bridge", "bridge", False) == [{"name": "none"}]
    assert dockernetwork.disconnect_networks(plain, "web", "web", True) is None
    with pytest.raises(dockernetwork.NetworkError, match="container c is not connected to network web"):
        dockernetwork.disconnect_networks(plain, "web", "web", False)
    assert dockernetwork.connect_networks(_container("c", [{"name": "none"}]), net, []) == [{"name": "web"}]
    assert dockernetwork.networks_patch(on_web, [])["metadata"]["resourceVersion"] == "7"


def test_requests_docker_refuses_before_writing() -> None:
    def problem(**kw: Any) -> str:
        found = dockernetwork.request_problem(dockernetwork.NetworkRequest(**kw))
        return f"{found.status} {found.message}" if found else ""
    assert problem(name="ok_net") == ""
    assert problem(name="bridge") == "409 network with name bridge already exists"
    assert problem(name="host") == "403 operation is not permitted on predefined host network"
    assert problem(name="x", driver="overlay").startswith('404 plugin "overlay" not found')
    assert problem(name="-bad").startswith("400 invalid network name")


def test_admission_rules_for_addresses() -> None:
    def message(**spec: str) -> str:
        found = networkrules.address_problem(spec)
        return found.message if found else ""
    assert message(subnet="172.30.0.0/24", gateway="172.30.0.254", ipRange="172.30.0.128/25") == ""
    assert message(subnet="172.30.0.0/33").startswith("invalid subnet '172.30.0.0/33'")
    assert message(subnet="banana").startswith("invalid subnet 'banana'")
    assert message(subnet="172.30.0.0").startswith("invalid subnet '172.30.0.0'")
    assert message(subnet="fd00::/64").startswith("invalid subnet 'fd00::/64': k3c networks take an IPv4")
    assert message(subnet="172.30.0.0/24", gateway="172.31.0.1").startswith("no matching subnet for gateway")
    assert message(subnet="172.30.0.0/24", gateway="172.30.0.255").startswith("no matching subnet for gateway")
    assert message(subnet="172.30.0.0/24", ipRange="172.30.1.0/25").startswith("no matching subnet for range")
    assert message(gateway="172.30.0.1") == "every ip-range or gateway must have a corresponding subnet"


def test_admission_rules_among_networks_and_containers() -> None:
    a = _net("a", "172.30.0.0/24")
    auto = {**_net("auto"), "status": {"subnet": "172.31.0.0/16"}}
    overlap = networkrules.create_problem(_net("b", "172.31.4.0/24"), [a, auto])
    assert overlap is not None and overlap.code == 400
    assert overlap.message == ("invalid pool request: Pool overlaps with other one on this address space "
                               "(172.31.4.0/24 overlaps 172.31.0.0/16 of network auto)")
    assert networkrules.create_problem(_net("b", "172.32.0.0/24"), [a, auto]) is None
    assert networkrules.create_problem(a, [a, auto]) is None  # itself is no other
    node_bridge = {"metadata": {"name": "bridge", "namespace": "default"}, "spec": {"subnet": "172.31.0.0/16"}}
    assert networkrules.create_problem(node_bridge, [a, auto]) is None  # the node's own always goes in
    assert networkrules.create_problem(_net("c", "172.31.9.0/24"), [node_bridge]) is not None
    twin = _net("a", "172.33.0.0/24")
    twin["metadata"]["name"] = "other"
    dup = networkrules.create_problem(twin, [a])
    assert dup is not None and (dup.code, dup.message) == (409, "network with name a already exists")
    users = [_container("web", [{"name": "a"}]), _container("db", [{"name": "a"}, {"name": "x"}]), _container("z")]
    busy = networkrules.delete_problem(a, users)
    assert busy is not None and busy.code == 409
    assert busy.message.endswith("has active endpoints (containers: db, web)") and " a id " in busy.message
    assert networkrules.delete_problem(a, users[2:]) is None
    bridge = networkrules.delete_problem({"metadata": {"name": "bridge"}}, [])
    assert bridge is not None and bridge.code == 403
    assert bridge.message == "bridge is a pre-defined network and cannot be removed"


def test_admission_refusals_read_as_dockers() -> None:
    said = 'admission webhook "networks.k3c.io" denied the request: network with name a already exists'
    assert dockernetwork.daemon_message(said) == "network with name a already exists"
    assert dockernetwork.daemon_message("other") == "other"


def test_container_inspect_shows_status_networks_by_docker_name() -> None:
    from k3c.dockerview import docker_inspect

    names = dockernetwork.network_names([_net("Proj_default", uid="n-uid")])
    obj_name = dockerid.object_name("Proj_default")
    obj = {"metadata": {"name": "web", "uid": "c-uid"},
           "spec": {"image": "busybox", "networks": [{"name": obj_name, "aliases": ["web"]}]},
           "status": {"ip": "172.30.0.5", "networks": [
               {"name": obj_name, "ip": "172.30.0.5", "prefixLength": 24, "gateway": "172.30.0.1",
                "mac": "02:42:ac:1e:00:05", "interface": "eth0", "aliases": ["web", "w"]}]}}
    doc = docker_inspect(obj, networks=names)
    assert doc["HostConfig"]["NetworkMode"] == "Proj_default"
    endpoint = doc["NetworkSettings"]["Networks"]["Proj_default"]
    assert (endpoint["IPAddress"], endpoint["IPPrefixLen"], endpoint["Gateway"], endpoint["MacAddress"]) == (
        "172.30.0.5", 24, "172.30.0.1", "02:42:ac:1e:00:05")
    short = dockerid.container_id("c-uid")[:12]  # docker's alias of every container on a user network
    assert endpoint["NetworkID"] == dockerid.container_id("n-uid") and endpoint["Aliases"] == ["web", "w", short]
    created = docker_inspect({**obj, "status": {}}, networks=names)["NetworkSettings"]["Networks"]
    assert created["Proj_default"]["IPAddress"] == "" and created["Proj_default"]["Aliases"] == ["web", short]
    plain = docker_inspect({"metadata": {"name": "p"}, "spec": {"image": "busybox"}, "status": {"ip": "10.88.0.3"}},
                           subnet="10.88.0.0/16")
    assert list(plain["NetworkSettings"]["Networks"]) == ["bridge"]
    assert plain["NetworkSettings"]["Networks"]["bridge"]["IPPrefixLen"] == 16
    assert plain["HostConfig"]["NetworkMode"] == "bridge"
    assert plain["NetworkSettings"]["Networks"]["bridge"]["Aliases"] is None
    none = docker_inspect({"metadata": {"name": "n"}, "spec": {"image": "b", "networks": [{"name": "none"}]}},
                          networks=names)
    assert none["HostConfig"]["NetworkMode"] == "none" and list(none["NetworkSettings"]["Networks"]) == ["none"]


def test_the_networks_a_new_container_asks_for() -> None:
    nets = [_net("Proj_default", uid="p-uid"), _net("back")]
    proj = dockerid.object_name("Proj_default")
    W = dockernetwork.Wanted
    assert dockernetwork.spec_networks(nets, [W("bridge")]) is None
    assert dockernetwork.spec_networks(nets, []) is None
    assert dockernetwork.spec_networks(nets, [W("Proj_default", ["web"]), W(dockerid.container_id("p-uid")[:6], ["w"]),
                                              W("back", ipv4_address="10.9.0.5")]) == [
        {"name": proj, "aliases": ["web", "w"]}, {"name": "back", "ipv4Address": "10.9.0.5"}]
    assert dockernetwork.spec_networks(nets, [W("none")]) == [{"name": "none"}]
    assert dockernetwork.spec_networks(nets, [W("bridge", ["b"])]) == [{"name": "bridge", "aliases": ["b"]}]
    for wanted, status, words in (([W("nosuch")], 404, "network nosuch not found"),
                                  ([W("none"), W("back")], 400, "private (none) mode"),
                                  ([W("back"), W("host")], 400, "host type networking")):
        with pytest.raises(dockernetwork.NetworkError) as refused:
            dockernetwork.spec_networks(nets, wanted)
        assert refused.value.status == status and words in refused.value.message
