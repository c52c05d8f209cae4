"""k3c.netdns.names: which names a network's resolver answers, made from LocalContainer and Network objects."""

from __future__ import annotations

import ipaddress
from typing import Any

import dns.name

from k3c.netdns.names import NameTable, dns_enabled, served_network
from tests.support.netdns import container

NODE = "node-a"


def network(name: str, *, gateway: str | None = "10.30.0.1", namespace: str = "default", dns: bool | None = None,
            node: str = NODE) -> dict[str, Any]:
    spec: dict[str, Any] = {"driver": "bridge"}
    if dns is not None:
        spec["enableDNS"] = dns
    status = {"gateway": gateway, "node": node} if gateway else {}
    return {"metadata": {"name": name, "namespace": namespace}, "spec": spec, "status": status}


def n(text: str) -> dns.name.Name:
    return dns.name.from_text(text)


def ips(*texts: str) -> list[ipaddress.IPv4Address]:
    return [ipaddress.IPv4Address(t) for t in texts]


NET = ("default", "front")
OTHER = ("default", "back")


def test_name_alias_and_hostname_on_the_network_case_insensitively() -> None:
    table = NameTable()
    table.put(container("web-1a2b3c", "u1", docker_name="web", hostname="www.example.test",
                        networks=[{"name": "front", "aliases": ["App", "api.v1"]}],
                        attached=[{"name": "front", "ip": "10.30.0.2"}]))
    for name in ("web", "WEB.", "app", "api.v1", "www.example.test", "www", "Www"):
        assert table.lookup(NET, n(name)) == ips("10.30.0.2"), name
    assert table.lookup(NET, n("web-1a2b3c")) is None  # the object name is not the docker name here
    assert table.lookup(NET, n("nope")) is None
    assert table.lookup(NET, n("web.example.test")) is None


def test_the_object_name_and_short_id_when_no_docker_name() -> None:
    import hashlib

    table = NameTable()
    table.put(container("db", "u9", attached=[{"name": "front", "ip": "10.30.0.9"}]))
    assert table.lookup(NET, n("db")) == ips("10.30.0.9")
    assert table.lookup(NET, n(hashlib.sha256(b"u9").hexdigest()[:12])) == ips("10.30.0.9")


def test_networks_are_separate_and_aliases_belong_to_their_network() -> None:
    table = NameTable()
    table.put(container("a", "ua", networks=[{"name": "front", "aliases": ["cache"]}, {"name": "back"}],
                        attached=[{"name": "front", "ip": "10.30.0.2"}, {"name": "back", "ip": "10.31.0.2"}]))
    table.put(container("b", "ub", attached=[{"name": "back", "ip": "10.31.0.3"}]))
    assert table.lookup(NET, n("a")) == ips("10.30.0.2")
    assert table.lookup(OTHER, n("a")) == ips("10.31.0.2")
    assert table.lookup(NET, n("cache")) == ips("10.30.0.2")
    assert table.lookup(OTHER, n("cache")) is None
    assert table.lookup(NET, n("b")) is None
    assert table.lookup(("other-ns", "front"), n("a")) is None  # a network of the same name elsewhere


def test_a_container_asking_sees_the_names_of_all_its_networks() -> None:
    table = NameTable()
    table.put(container("web", "uw", attached=[{"name": "front", "ip": "10.30.0.2"}, {"name": "back", "ip": "10.31.0.2"}]))
    table.put(container("db", "ud", networks=[{"name": "back", "aliases": ["pg"]}],
                        attached=[{"name": "back", "ip": "10.31.0.3"}]))
    table.put(container("peer", "up", attached=[{"name": "front", "ip": "10.30.0.4"}]))
    table.put(container("twin", "t1", attached=[{"name": "front", "ip": "10.30.0.5"}]))
    table.put(container("twin", "t2", attached=[{"name": "back", "ip": "10.31.0.5"}]))
    web_on_front = ipaddress.IPv4Address("10.30.0.2")
    assert table.lookup(NET, n("pg"), web_on_front) == ips("10.31.0.3")  # web is on back too
    assert table.lookup(NET, n("twin"), web_on_front) == ips("10.30.0.5")  # the network asked comes first
    assert table.lookup(NET, n("pg")) is None
    assert table.lookup(NET, n("pg"), ipaddress.IPv4Address("10.30.0.4")) is None  # peer is on front only
    assert table.lookup(NET, n("pg"), ipaddress.IPv4Address("10.31.0.2")) is None  # not web's address on front
    table.remove("uw")
    assert table.lookup(NET, n("pg"), web_on_front) is None  # a gone container's address asks as nobody


def test_aliases_carried_by_the_status_count_too() -> None:
    table = NameTable()
    table.put(container("a", "ua", attached=[{"name": "front", "ip": "10.30.0.2", "aliases": ["late"]}]))
    assert table.lookup(NET, n("late")) == ips("10.30.0.2")


def test_a_shared_alias_answers_every_holder_until_each_goes() -> None:
    table = NameTable()
    for uid, ip in (("u1", "10.30.0.3"), ("u2", "10.30.0.2")):
        table.put(container(f"w{uid}", uid, networks=[{"name": "front", "aliases": ["workers"]}],
                            attached=[{"name": "front", "ip": ip}]))
    assert table.lookup(NET, n("workers")) == ips("10.30.0.2", "10.30.0.3")
    table.remove("u2")
    assert table.lookup(NET, n("workers")) == ips("10.30.0.3")
    table.remove("u1")
    assert table.lookup(NET, n("workers")) is None


def test_stopped_unattached_and_changed_containers() -> None:
    table = NameTable()
    running = container("web", "u1", attached=[{"name": "front", "ip": "10.30.0.2"}])
    table.put(running)
    table.put(container("web", "u1", phase="Exited", attached=[{"name": "front", "ip": "10.30.0.2"}]))
    assert table.lookup(NET, n("web")) is None  # a stopped container's name stops resolving, as docker
    table.put(running)
    assert table.lookup(NET, n("web")) == ips("10.30.0.2")
    table.put(container("web", "u1", attached=[{"name": "front", "ip": "10.30.0.7"}]))  # a new address
    assert table.lookup(NET, n("web")) == ips("10.30.0.7")
    table.put(container("web", "u1", attached=[{"name": "front"}]))  # no address (yet): not answered
    assert table.lookup(NET, n("web")) is None
    table.put(container("web", "u1", attached=[{"name": "front", "ip": "not-an-ip"}]))
    assert table.lookup(NET, n("web")) is None


def test_replace_starts_from_scratch_and_bad_names_are_skipped() -> None:
    table = NameTable()
    table.put(container("old", "u0", attached=[{"name": "front", "ip": "10.30.0.5"}]))
    table.replace([container("new", "u1", networks=[{"name": "front", "aliases": ["x" * 64, "", "ok"]}],
                             attached=[{"name": "front", "ip": "10.30.0.6/24"}])])
    assert table.lookup(NET, n("old")) is None
    assert table.lookup(NET, n("new")) == ips("10.30.0.6")
    assert table.lookup(NET, n("ok")) == ips("10.30.0.6")


def test_which_networks_are_served_here() -> None:
    served = served_network(network("front"), NODE)
    assert served is not None and served.key == NET and str(served.gateway) == "10.30.0.1"
    assert served_network(network("front", dns=False), NODE) is None
    assert served_network(network("front", gateway=None), NODE) is None  # not plumbed yet
    assert served_network(network("front", node="node-b"), NODE) is None
    deleting = network("front")
    deleting["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert served_network(deleting, NODE) is None
    # the default network: DNS off unless its spec turns it on, as docker's default bridge
    assert not dns_enabled(network("bridge")) and served_network(network("bridge"), NODE) is None
    assert served_network(network("bridge", dns=True), NODE) is not None
