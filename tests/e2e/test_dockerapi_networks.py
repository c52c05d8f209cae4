"""The Docker API's network endpoints on Network objects, driven by Debian's docker CLI with DOCKER_HOST, by
docker-py, and by raw HTTP for the statuses: create/ls/inspect/rm/prune, connect/disconnect, networks at
container create, and the admission webhook's refusals in docker's words.

One daemon for the module; each test makes and removes its own networks and containers (containers are
created, never started: what is checked here is what the objects say).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import docker
import pytest

from k3c import dockerid
from k3c.api import NETWORKS
from tests.e2e.test_dockerapi import cli, ok, raw
from tests.support.daemon_harness import TEST_IMAGE, DaemonProcess, pick_subnet


@pytest.fixture
def made(sock):
    """Containers and networks a test made, by docker name; removed afterwards (containers first)."""
    names: dict[str, list[str]] = {"containers": [], "networks": []}
    yield names
    for name in names["containers"]:
        cli(sock, "rm", "-f", name)
    for name in names["networks"]:
        cli(sock, "network", "rm", name)


def _objects(d: DaemonProcess) -> dict[str, dict[str, Any]]:
    return {dockerid.docker_name(o): o for o in d.api.get(NETWORKS.path("default")).get("items", [])}


def _post(sock: str, path: str, body: dict[str, Any]) -> tuple[int, Any]:
    status, _, answer = raw(sock, "POST", path, json.dumps(body).encode(), {"Content-Type": "application/json"})
    return status, json.loads(answer) if answer else None


def test_docker_cli_create_ls_inspect_rm(daemon, sock, made):
    subnet = pick_subnet()
    prefix = subnet.rsplit(".", 1)[0]
    made["networks"].append("cli_net")
    net_id = ok(sock, "network", "create", "--subnet", subnet, "--gateway", f"{prefix}.1", "--ip-range",
                f"{prefix}.64/26", "--internal", "--label", "com.example.team=blue", "--label", "note=a b",
                "-o", "com.docker.network.driver.mtu=1400", "cli_net").strip()
    assert net_id == dockerid.object_id(_objects(daemon)["cli_net"])
    rows = ok(sock, "network", "ls", "--format", "{{.ID}} {{.Name}} {{.Driver}} {{.Scope}}").splitlines()
    bridge_id = dockerid.object_id(_objects(daemon)["bridge"])  # the node makes its object at start
    assert rows == [f"{bridge_id[:12]} bridge bridge local", f"{net_id[:12]} cli_net bridge local",
                    f"{dockerid.network_id('host')[:12]} host host local",
                    f"{dockerid.network_id('none')[:12]} none null local"]
    assert ok(sock, "network", "ls", "-q", "--no-trunc", "--filter", "label=com.example.team") == net_id + "\n"
    assert ok(sock, "network", "ls", "-q", "--filter", "type=builtin").split() == [
        bridge_id[:12], *(dockerid.network_id(n)[:12] for n in ("host", "none"))]
    (doc,) = json.loads(ok(sock, "network", "inspect", net_id[:10]))
    assert doc["Name"] == "cli_net" and doc["Id"] == net_id and doc["Internal"] is True
    assert doc["IPAM"]["Config"] == [{"Subnet": subnet, "Gateway": f"{prefix}.1", "IPRange": f"{prefix}.64/26"}]
    assert doc["Labels"] == {"com.example.team": "blue", "note": "a b"}
    assert doc["Options"] == {"com.docker.network.driver.mtu": "1400"}
    assert ok(sock, "inspect", "-f", "{{.Name}} {{.Driver}}", "cli_net") == "cli_net bridge\n"  # no --type
    assert ok(sock, "network", "rm", "cli_net") == "cli_net\n"
    assert "cli_net" not in _objects(daemon)
    gone = cli(sock, "network", "rm", "cli_net")
    assert gone.returncode == 1 and gone.stderr == "Error: No such network: cli_net\n"
    refused = cli(sock, "network", "rm", "host")
    assert refused.returncode == 1
    assert refused.stderr.strip() == "Error response from daemon: host is a pre-defined network and cannot be removed"


@pytest.mark.parametrize(("body", "status", "words"), [
    ({"Subnet": "10.1.2.0/33"}, 400, "invalid subnet '10.1.2.0/33'"),
    ({"Subnet": "banana"}, 400, "invalid subnet 'banana'"),
    ({"Subnet": "10.1.2.0/24", "Gateway": "10.1.3.1"}, 400, "no matching subnet for gateway 10.1.3.1"),
    ({"Subnet": "10.1.2.0/24", "IPRange": "10.1.3.0/25"}, 400, "no matching subnet for range 10.1.3.0/25"),
    ({"Gateway": "10.1.3.1"}, 400, "every ip-range or gateway must have a corresponding subnet"),
    ({"Name": "host"}, 403, "operation is not permitted on predefined host network"),
    ({"Name": "bridge"}, 409, "network with name bridge already exists"),
    ({"Driver": "overlay"}, 404, 'plugin "overlay" not found'),
    ({"Name": ""}, 400, "network name cannot be empty"),
    ({"EnableIPv6": True}, 400, "NetworkCreateRequest.EnableIPv6 is not supported"),
    ({"Ingress": True}, 400, "NetworkCreateRequest.Ingress is not supported"),
    ({"Labels": {"a": 1}}, 400, "want an object of strings"),
])
def test_create_refusals_have_dockers_status_and_create_nothing(daemon, sock, body, status, words):
    ipam = {k: body.pop(k) for k in ("Subnet", "Gateway", "IPRange") if k in body}
    request = {"Name": "refused_net", "CheckDuplicate": True, **body}
    if ipam:
        request["IPAM"] = {"Driver": "default", "Config": [ipam]}
    before = sorted(_objects(daemon))
    code, answer = _post(sock, "/v1.41/networks/create", request)
    assert code == status and words in answer["message"], answer
    assert "\n" not in answer["message"] and "admission webhook" not in answer["message"]
    assert sorted(_objects(daemon)) == before


def test_overlaps_and_duplicates_are_refused_through_the_docker_cli(daemon, sock, made):
    subnet = pick_subnet()
    made["networks"].append("first_net")
    ok(sock, "network", "create", "--subnet", subnet, "first_net")
    before = sorted(_objects(daemon))
    overlap = cli(sock, "network", "create", "--subnet", subnet.replace(".0/24", ".128/25"), "second_net")
    assert overlap.returncode == 1 and overlap.stderr.count("\n") == 1
    assert overlap.stderr.startswith("Error response from daemon: invalid pool request: Pool overlaps with other "
                                     "one on this address space")
    duplicate = cli(sock, "network", "create", "first_net")
    assert duplicate.returncode == 1
    assert duplicate.stderr == "Error response from daemon: network with name first_net already exists\n"
    code, answer = _post(sock, "/networks/create", {"Name": "first_net", "CheckDuplicate": True})
    assert code == 409 and answer == {"message": "network with name first_net already exists"}
    assert sorted(_objects(daemon)) == before


def test_docker_py_round_trips_what_compose_compares(daemon, dockerpy, sock, made):
    from docker.types import IPAMConfig, IPAMPool

    subnet = pick_subnet()
    labels = {"com.docker.compose.network": "default", "com.docker.compose.project": "proj",
              "com.docker.compose.version": "1.29.2", "free text": "not a k8s label!"}
    options = {"com.docker.network.bridge.enable_icc": "true", "com.docker.network.driver.mtu": "1450"}
    made["networks"].append("proj_default")
    net = dockerpy.networks.create("proj_default", driver="bridge", labels=labels, options=options, internal=True,
                                   check_duplicate=True, ipam=IPAMConfig(pool_configs=[IPAMPool(subnet=subnet)]),
                                   attachable=True)
    got = dockerpy.networks.get(net.id).attrs
    assert (got["Driver"], got["Options"], got["Labels"], got["Internal"]) == ("bridge", options, labels, True)
    assert got["IPAM"]["Config"] == [{"Subnet": subnet, "Gateway": subnet.replace(".0/24", ".1")}]
    assert got["EnableIPv6"] is False and got["Scope"] == "local" and got["Name"] == "proj_default"
    assert got["Attachable"] is True  # (compose sets it; shown back as given)
    obj = _objects(daemon)["proj_default"]
    assert obj["metadata"]["labels"] == {k: v for k, v in labels.items() if k != "free text"}
    assert [n.name for n in dockerpy.networks.list(names=["proj_default"])] == ["proj_default"]
    assert [n.id for n in dockerpy.networks.list(filters={"label": "com.docker.compose.project=proj"})] == [net.id]
    assert dockerpy.networks.get(net.id[:12]).name == "proj_default"
    status, _, body = raw(sock, "GET", "/networks?filters=" + quote(json.dumps({"dangling": ["maybe"]})))
    assert status == 400
    net.remove()
    assert "proj_default" not in _objects(daemon)
    with pytest.raises(docker.errors.NotFound):
        dockerpy.networks.get("proj_default")


def test_networks_at_create_and_the_in_use_refusal(daemon, sock, dockerpy, made):
    made["networks"].append("use_net")
    net_id = ok(sock, "network", "create", "use_net").strip()
    made["containers"].append("user1")
    ok(sock, "create", "--name", "user1", "--network", "use_net", "--network-alias", "web", "--network-alias",
       "www", TEST_IMAGE, "sleep", "300")
    obj_name = _objects(daemon)["use_net"]["metadata"]["name"]
    assert daemon.container("user1")["spec"]["networks"] == [{"name": obj_name, "aliases": ["web", "www"]}]
    (doc,) = json.loads(ok(sock, "inspect", "user1"))
    assert doc["HostConfig"]["NetworkMode"] == "use_net"
    assert list(doc["NetworkSettings"]["Networks"]) == ["use_net"]
    endpoint = doc["NetworkSettings"]["Networks"]["use_net"]
    assert endpoint["NetworkID"] == net_id and endpoint["Aliases"] == ["web", "www", doc["Id"][:12]]
    (summary,) = [c for c in dockerpy.api.containers(all=True) if c["Names"] == ["/user1"]]
    # compose lists its containers with several labels, which docker ANDs
    made["containers"].append("user2")
    ok(sock, "create", "--name", "user2", "--label", "p=x", "--label", "s=2", TEST_IMAGE)
    ok(sock, "create", "--name", "user1b", "--label", "p=x", "--label", "s=1", TEST_IMAGE)
    made["containers"].append("user1b")
    assert [c.name for c in dockerpy.containers.list(all=True, filters={"label": ["p=x", "s=2"]})] == ["user2"]
    assert list(summary["NetworkSettings"]["Networks"]) == ["use_net"]

    busy = cli(sock, "network", "rm", "use_net")
    assert busy.returncode == 1 and busy.stderr.count("\n") == 1
    assert busy.stderr == (f"Error response from daemon: error while removing network: network use_net id "
                           f"{net_id[:12]} has active endpoints (containers: user1)\n")
    status, _, body = raw(sock, "DELETE", f"/v1.41/networks/{net_id}")
    assert status == 409 and "containers: user1" in json.loads(body)["message"]
    assert not _objects(daemon)["use_net"]["metadata"].get("deletionTimestamp")

    # dockerd's 404, which makes the docker CLI try a pull first (as it does against dockerd)
    code, answer = _post(sock, "/containers/create?name=nowhere_box", {
        "Image": TEST_IMAGE, "HostConfig": {"NetworkMode": "nosuch"}})
    assert (code, answer) == (404, {"message": "network nosuch not found"})
    code, answer = _post(sock, "/containers/create?name=nowhere_box", {
        "Image": TEST_IMAGE, "NetworkingConfig": {"EndpointsConfig": {"use_net": {"Links": ["a:b"]}}}})
    assert code == 400 and "EndpointSettings.Links is not supported" in answer["message"]
    assert daemon.container("nowhere_box") is None
    code, answer = _post(sock, "/containers/create?name=both_box", {
        "Image": TEST_IMAGE, "HostConfig": {"NetworkMode": "none"},
        "NetworkingConfig": {"EndpointsConfig": {"none": {}, "use_net": {}}}})
    assert code == 400 and "private (none) mode" in answer["message"]
    # what docker 23+ clients send for a plain `docker run`: an endpoint of dockerd's "default" network
    made["containers"].append("plain_box")
    code, answer = _post(sock, "/containers/create?name=plain_box", {
        "Image": TEST_IMAGE, "HostConfig": {"NetworkMode": "default"},
        "NetworkingConfig": {"EndpointsConfig": {"default": {"Aliases": None, "GwPriority": 0}}}})
    assert code == 201, answer
    assert "networks" not in daemon.container(dockerid.object_name("plain_box"))["spec"], "the default network and its warm sandboxes"
    made["containers"].append("lonely")
    ok(sock, "create", "--name", "lonely", "--network", "none", TEST_IMAGE)
    assert daemon.container("lonely")["spec"]["networks"] == [{"name": "none"}]
    assert json.loads(ok(sock, "inspect", "-f", "{{json .HostConfig.NetworkMode}}", "lonely")) == "none"

    ok(sock, "rm", "user1")
    assert ok(sock, "network", "rm", "use_net") == "use_net\n"


def test_connect_and_disconnect(daemon, sock, dockerpy, made):
    made["networks"] += ["front", "back"]
    ok(sock, "network", "create", "front")
    back = dockerpy.networks.create("back")
    objects = _objects(daemon)
    front_obj, back_obj = objects["front"]["metadata"]["name"], objects["back"]["metadata"]["name"]
    made["containers"].append("mover")
    ok(sock, "create", "--name", "mover", TEST_IMAGE, "sleep", "300")
    assert ok(sock, "network", "connect", "--alias", "api", "front", "mover") == ""
    back.connect("mover", aliases=["db"], links=[])
    code, answer = _post(sock, "/networks/front/connect", {"Container": "mover",
                                                           "EndpointConfig": {"Links": ["x:y"]}})
    assert code == 400 and "EndpointSettings.Links is not supported" in answer["message"]
    assert daemon.container("mover")["spec"]["networks"] == [
        {"name": "bridge"}, {"name": front_obj, "aliases": ["api"]}, {"name": back_obj, "aliases": ["db"]}]
    again = cli(sock, "network", "connect", "front", "mover")
    assert again.returncode == 1
    assert again.stderr == "Error response from daemon: endpoint with name mover already exists in network front\n"
    assert set(json.loads(ok(sock, "inspect", "-f", "{{json .NetworkSettings.Networks}}", "mover"))) == {
        "bridge", "front", "back"}
    back.disconnect("mover")
    ok(sock, "network", "disconnect", "front", "mover")
    assert daemon.container("mover")["spec"]["networks"] == [{"name": "bridge"}]
    not_there = cli(sock, "network", "disconnect", "front", "mover")
    assert not_there.returncode == 1
    assert not_there.stderr == "Error response from daemon: container mover is not connected to network front\n"
    assert ok(sock, "network", "disconnect", "--force", "front", "mover") == ""
    nobody = cli(sock, "network", "connect", "front", "nobody")
    assert nobody.returncode == 1 and "No such container: nobody" in nobody.stderr


def test_connect_of_a_running_container_answers_once_it_is_on_the_network(sock, dockerpy, made):
    """docker answers a connect once the endpoint is joined: k3c, which recreates the sandbox, once the
    container runs on both networks (its IP there is in inspect at once), and the same for a disconnect."""
    made["networks"].append("live_net")
    made["containers"].append("live_mover")
    net = dockerpy.networks.create("live_net")
    mover = dockerpy.containers.run(TEST_IMAGE, ["sh", "-c", "trap 'exit 0' TERM; sleep 300 & wait"],
                                    name="live_mover", detach=True)
    net.connect(mover)
    mover.reload()
    assert mover.status == "running" and mover.attrs["NetworkSettings"]["Networks"]["live_net"]["IPAddress"]
    assert mover.attrs["NetworkSettings"]["Networks"]["bridge"]["IPAddress"]
    net.disconnect(mover)
    mover.reload()
    assert mover.status == "running" and set(mover.attrs["NetworkSettings"]["Networks"]) == {"bridge"}


def test_prune_keeps_networks_in_use_and_predefined_ones(daemon, sock, dockerpy, made):
    made["networks"] += ["kept_net", "old_x", "old_y"]
    ok(sock, "network", "create", "kept_net")
    ok(sock, "network", "create", "--label", "tier=x", "old_x")
    ok(sock, "network", "create", "--label", "tier=y", "old_y")
    made["containers"].append("keeper")
    ok(sock, "create", "--name", "keeper", "--network", "kept_net", TEST_IMAGE)
    assert ok(sock, "network", "prune", "-f", "--filter", "label=tier=x") == "Deleted Networks:\nold_x\n\n"
    assert dockerpy.networks.prune() == {"NetworksDeleted": ["old_y"]}
    assert set(_objects(daemon)) == {"bridge", "kept_net"}
    assert dockerpy.networks.prune(filters={"label": "nothing"}) == {"NetworksDeleted": None}
