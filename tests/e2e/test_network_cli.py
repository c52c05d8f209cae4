"""`k3c network create|ls|inspect|rm|prune|connect|disconnect` against a real daemon, and the admission
webhook (networks.k3c.io) that refuses bad Networks, whoever writes them.

One daemon for the module; each test makes and removes its own Networks. The containers here are
LocalContainer objects left Stopped: admission and connect/disconnect are about objects, not sandboxes.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from k3c import dockerid
from k3c.api import LOCAL_CONTAINERS, NETWORKS
from k3c.apierrors import APIError
from tests.e2e.test_commands import k3c
from tests.support.daemon_harness import DaemonProcess, lc_object, pick_subnet, wait_until


def _networks(d: DaemonProcess) -> dict[str, dict[str, Any]]:
    return {dockerid.docker_name(o): o for o in d.api.get(NETWORKS.path("default")).get("items", [])}


def _stopped(d: DaemonProcess, name: str, networks: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"state": "Stopped"}
    if networks is not None:
        spec["networks"] = networks
    return d.api.create(LOCAL_CONTAINERS.path("default"), lc_object(name, **spec))


@pytest.fixture
def cleanup(daemon: DaemonProcess):
    """Names of networks and containers a test made; removed afterwards (containers first)."""
    made: dict[str, list[str]] = {"containers": [], "networks": []}
    yield made
    for name in made["containers"]:
        daemon.delete_container(name)
    for name in made["networks"]:
        k3c(daemon, "network", "rm", "-f", name, check=False)


def test_create_ls_inspect_rm_round_trip(daemon: DaemonProcess, cleanup) -> None:
    d = daemon
    subnet = pick_subnet()
    prefix = subnet.rsplit(".", 1)[0]
    cleanup["networks"].append("Proj_net")
    created = k3c(d, "network", "create", "--subnet", subnet, "--gateway", f"{prefix}.254",
                  "--ip-range", f"{prefix}.128/25", "--internal", "--label", "team=blue", "--label", "odd key=x y",
                  "-o", "com.docker.network.driver.mtu=1400", "Proj_net").stdout.strip()
    obj = _networks(d)["Proj_net"]
    assert created == dockerid.object_id(obj) and len(created) == 64
    assert obj["metadata"]["name"] == dockerid.object_name("Proj_net")
    assert obj["metadata"]["labels"] == {"team": "blue"}  # the valid one; both are kept for docker
    assert obj["spec"] == {"driver": "bridge", "subnet": subnet, "gateway": f"{prefix}.254",
                           "ipRange": f"{prefix}.128/25", "internal": True,
                           "options": {"com.docker.network.driver.mtu": "1400"}}

    table = k3c(d, "network", "ls").stdout.splitlines()
    assert table[0].split() == ["NETWORK", "ID", "NAME", "DRIVER", "SCOPE"]
    rows = [line.split() for line in table[1:]]
    assert [r[1] for r in rows] == ["Proj_net", "bridge", "host", "none"]  # by name, as docker sorts
    assert rows[0] == [created[:12], "Proj_net", "bridge", "local"]
    assert rows[2][2] == "host" and rows[3][2] == "null"
    assert k3c(d, "network", "ls", "-q", "--no-trunc", "-f", "type=custom").stdout == created + "\n"
    assert k3c(d, "network", "ls", "--filter", "label=team=blue", "--format", "{{.Name}} {{.Internal}}"
               ).stdout == "Proj_net true\n"
    assert k3c(d, "network", "ls", "-q", "-f", "driver=null").stdout.strip() == dockerid.network_id("none")[:12]
    bad = k3c(d, "network", "ls", "-f", "colour=red", check=False)
    assert bad.returncode == 1 and bad.stderr == "Error response from daemon: invalid filter 'colour'\n"

    (doc,) = json.loads(k3c(d, "network", "inspect", created[:8]).stdout)
    assert doc["Name"] == "Proj_net" and doc["Id"] == created and doc["Driver"] == "bridge"
    assert doc["Internal"] is True and doc["Scope"] == "local" and doc["EnableIPv6"] is False
    assert doc["IPAM"] == {"Driver": "default", "Options": {}, "Config": [
        {"Subnet": subnet, "Gateway": f"{prefix}.254", "IPRange": f"{prefix}.128/25"}]}
    assert doc["Labels"] == {"team": "blue", "odd key": "x y"}
    assert doc["Options"] == {"com.docker.network.driver.mtu": "1400"} and doc["Containers"] == {}
    fmt = k3c(d, "network", "inspect", "-f", "{{.Name}} {{.Driver}}", "Proj_net", "host", "nope", check=False)
    assert fmt.returncode == 1 and fmt.stdout == "Proj_net bridge\nhost host\n"
    assert fmt.stderr == "Error: No such network: nope\n"
    assert k3c(d, "inspect", "-f", "{{.Name}} {{.Internal}}", "Proj_net").stdout == "Proj_net true\n"  # no --type
    assert k3c(d, "inspect", "--type", "network", "-f", "{{.Driver}}", "none").stdout == "null\n"

    assert k3c(d, "network", "rm", "Proj_net").stdout == "Proj_net\n"
    assert "Proj_net" not in _networks(d)
    gone = k3c(d, "network", "rm", "Proj_net", check=False)
    assert gone.returncode == 1 and gone.stderr == "Error response from daemon: network Proj_net not found\n"
    assert k3c(d, "network", "rm", "-f", "Proj_net").returncode == 0
    predefined = k3c(d, "network", "rm", "host", check=False)
    assert predefined.returncode == 1
    assert predefined.stderr == "Error response from daemon: host is a pre-defined network and cannot be removed\n"


def test_bad_input_is_one_line_and_creates_nothing(daemon: DaemonProcess, cleanup) -> None:
    d = daemon
    subnet = pick_subnet()
    prefix = subnet.rsplit(".", 1)[0]
    cleanup["networks"].append("first")
    k3c(d, "network", "create", "--subnet", subnet, "first")
    before = sorted(_networks(d))
    cases = [
        (["--subnet", "10.1.2.300/24", "n1"], "invalid subnet '10.1.2.300/24': not a CIDR"),
        (["--subnet", "banana", "n1"], "invalid subnet 'banana'"),
        (["--subnet", pick_subnet(), "--gateway", f"{prefix}.1", "n1"], "no matching subnet for gateway"),
        (["--gateway", f"{prefix}.1", "n1"], "every ip-range or gateway must have a corresponding subnet"),
        (["--subnet", f"{prefix}.128/25", "n1"], "invalid pool request: Pool overlaps with other one"),
        (["--subnet", f"{prefix.rsplit('.', 1)[0]}.0.0/16", "n1"], "Pool overlaps with other one"),
        (["first"], "network with name first already exists"),
        (["bridge"], "network with name bridge already exists"),
        (["host"], "operation is not permitted on predefined host network"),
        (["--driver", "overlay", "n1"], 'plugin "overlay" not found'),
        (["--", "-bad"], 'invalid network name "-bad"'),
        (["bad/name"], 'invalid network name "bad/name"'),
    ]
    for args, words in cases:
        cp = k3c(d, "network", "create", *args, check=False)
        assert cp.returncode in (1, 125) and cp.stdout == "", (args, cp)
        assert cp.stderr.count("\n") == 1 and words in cp.stderr, (args, cp.stderr)
        if cp.returncode == 1:
            assert cp.stderr.startswith("Error response from daemon: ") and "admission webhook" not in cp.stderr
    assert sorted(_networks(d)) == before


def test_admission_refuses_any_writer(daemon: DaemonProcess) -> None:
    """The webhook judges objects written with a plain API client (kubectl's way) too."""
    d = daemon
    bad = {"apiVersion": NETWORKS.api_version, "kind": NETWORKS.kind, "metadata": {"name": "raw"},
           "spec": {"subnet": "10.0.0.0/24", "gateway": "10.0.1.1"}}
    with pytest.raises(APIError) as refused:
        d.api.create(NETWORKS.path("default"), bad)
    assert refused.value.code == 400
    assert refused.value.message == ('admission webhook "networks.k3c.io" denied the request: no matching subnet '
                                     "for gateway 10.0.1.1: it is outside 10.0.0.0/24's host addresses")
    assert "raw" not in _networks(d)


def test_removing_a_network_in_use_is_refused_and_never_left_terminating(daemon: DaemonProcess, cleanup) -> None:
    d = daemon
    cleanup["networks"].append("busy")
    k3c(d, "network", "create", "busy")
    obj = _networks(d)["busy"]
    for name in ("user-a", "user-b"):
        cleanup["containers"].append(name)
        _stopped(d, name, [{"name": obj["metadata"]["name"]}])
    refused = k3c(d, "network", "rm", "busy", check=False)
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1
    assert refused.stderr == (f"Error response from daemon: error while removing network: network busy id "
                              f"{dockerid.object_id(obj)[:12]} has active endpoints (containers: user-a, user-b)\n")
    with pytest.raises(APIError) as direct:
        d.api.delete(NETWORKS.path("default", "busy"))
    assert direct.value.code == 409 and "user-a, user-b" in direct.value.message
    assert not _networks(d)["busy"]["metadata"].get("deletionTimestamp")
    json_ls = k3c(d, "network", "ls", "-f", "dangling=true", "--format", "{{.Name}}").stdout
    assert "busy" not in json_ls
    for name in ("user-a", "user-b"):
        d.delete_container(name)
    assert k3c(d, "network", "rm", "busy").stdout == "busy\n"


def test_a_container_naming_a_missing_network_is_not_admission_s_business(daemon: DaemonProcess, cleanup) -> None:
    """Decided: no webhook call on container writes; the CLI and the Docker API check names themselves."""
    cleanup["containers"].append("orphan")
    obj = _stopped(daemon, "orphan", [{"name": "no-such-net"}])
    assert obj["spec"]["networks"] == [{"name": "no-such-net"}]


def test_run_network_takes_a_docker_name_or_id_prefix_and_refuses_an_unknown_one(daemon: DaemonProcess,
                                                                                    cleanup) -> None:
    d = daemon
    refused = k3c(d, "create", "--name", "lost", "--network", "no-such-net", "busybox", check=False)
    assert (refused.returncode, refused.stderr) == (125, "k3c: Error response from daemon: network no-such-net not found\n")
    assert d.container("lost") is None, "nothing is written"
    cleanup["networks"].append("Team_net")
    net_id = k3c(d, "network", "create", "Team_net").stdout.strip()
    cleanup["containers"] += ["by-name", "by-id"]
    k3c(d, "create", "--name", "by-name", "--network", "Team_net", "--network-alias", "web", "busybox")
    k3c(d, "create", "--name", "by-id", "--network", net_id[:12], "busybox")
    obj_name = dockerid.object_name("Team_net")
    assert d.container("by-name")["spec"]["networks"] == [{"name": obj_name, "aliases": ["web"]}]
    assert d.container("by-id")["spec"]["networks"] == [{"name": obj_name}]


def test_connect_and_disconnect_patch_spec_networks(daemon: DaemonProcess, cleanup) -> None:
    d = daemon
    cleanup["networks"].append("front_end")
    k3c(d, "network", "create", "front_end")
    net_object = _networks(d)["front_end"]["metadata"]["name"]
    cleanup["containers"].append("joiner")
    _stopped(d, "joiner")
    assert k3c(d, "network", "connect", "--alias", "db", "--alias", "database", "front_end", "joiner").stdout == ""
    assert d.container("joiner")["spec"]["networks"] == [
        {"name": "bridge"}, {"name": net_object, "aliases": ["db", "database"]}]
    again = k3c(d, "network", "connect", "front_end", "joiner", check=False)
    assert again.returncode == 1
    assert again.stderr == "Error response from daemon: endpoint with name joiner already exists in network front_end\n"
    (doc,) = json.loads(k3c(d, "network", "inspect", "front_end").stdout)
    assert doc["Containers"] == {}  # attached on the node only once the operator says so (status.networks)
    k3c(d, "network", "disconnect", "front_end", "joiner")
    assert d.container("joiner")["spec"]["networks"] == [{"name": "bridge"}]
    missing = k3c(d, "network", "disconnect", "front_end", "joiner", check=False)
    assert missing.returncode == 1
    assert missing.stderr == "Error response from daemon: container joiner is not connected to network front_end\n"
    assert k3c(d, "network", "disconnect", "-f", "front_end", "joiner").returncode == 0
    k3c(d, "network", "disconnect", "bridge", "joiner")
    assert d.container("joiner")["spec"]["networks"] == [{"name": "none"}]
    nobody = k3c(d, "network", "connect", "front_end", "nobody", check=False)
    assert nobody.returncode == 1 and nobody.stderr == "Error response from daemon: No such container: nobody\n"


def test_prune_removes_unused_custom_networks(daemon: DaemonProcess, cleanup) -> None:
    d = daemon
    for name, label in (("keep_used", "x"), ("old_a", "x"), ("old_b", "y")):
        cleanup["networks"].append(name)
        k3c(d, "network", "create", "--label", f"set={label}", name)
    cleanup["containers"].append("keeper")
    _stopped(d, "keeper", [{"name": _networks(d)["keep_used"]["metadata"]["name"]}])
    out = k3c(d, "network", "prune", "-f", "--filter", "label=set=x").stdout
    assert out == "Deleted Networks:\nold_a\n\n"  # docker's blank line after the section
    assert k3c(d, "network", "prune", "--force").stdout == "Deleted Networks:\nold_b\n\n"
    assert "keep_used" in _networks(d)
    assert k3c(d, "network", "prune", "-f").stdout == ""
    declined = k3c(d, "network", "prune", input="n\n")
    assert declined.stdout.startswith("WARNING! This will remove all custom networks not used by at least one")
    cleanup["networks"].append("sys_unused")
    k3c(d, "network", "create", "sys_unused")
    out = k3c(d, "system", "prune", "-f", timeout=120).stdout
    # containers go first (the stopped keeper too), so its network is unused by the time networks go
    assert "Deleted Networks:\nkeep_used\nsys_unused\n\n" in out
    assert {"keep_used", "sys_unused"}.isdisjoint(_networks(d))


def test_the_default_network_object_cannot_be_removed(daemon: DaemonProcess) -> None:
    """The node makes ``bridge`` at start."""
    d = daemon
    wait_until(lambda: "bridge" in _networks(d), 30, "the node's bridge Network")
    refused = k3c(d, "network", "rm", "bridge", check=False)
    assert refused.returncode == 1
    assert refused.stderr == "Error response from daemon: bridge is a pre-defined network and cannot be removed\n"
    with pytest.raises(APIError) as direct:
        d.api.delete(NETWORKS.path("default", "bridge"))
    assert direct.value.code == 403
    (doc,) = json.loads(k3c(d, "network", "inspect", "bridge").stdout)
    assert doc["Id"] == dockerid.object_id(_networks(d)["bridge"])
