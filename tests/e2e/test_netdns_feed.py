"""The resolver's feed (k3c.netdns.feed) against a real API server (`k3c apiserver` with k3c's CRDs).

The test writes LocalContainer and Network objects and patches their status itself, as the operator's
container and network reconcilers would, and asks the resolver over real sockets: names follow a container
within a second of its status change (started, stopped, removed), listeners follow networks (gateway set,
DNS turned off, deleted), two networks never see each other's names, and the feed comes back by itself
after the API server was killed."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from k3c import api, kubeclient
from k3c.daemon.supervisor import install_crds
from k3c.kubeasync import AsyncKube
from k3c.netdns.feed import NameFeed
from k3c.netdns.upstream import Nameserver, Upstream
from tests.support.harness import APIServerProcess, free_port, wait_until
from tests.support.netdns import FakeUpstream, LoopThread, address_and_port, loopback_address

NODE = "dns-node"
NS = "default"
#: How soon a name must follow its container (the issue's "within a second").
FOLLOW = 1.0


@dataclass
class Stack:
    server: APIServerProcess
    client: kubeclient.Client
    loop: LoopThread
    feed: NameFeed
    port: int

    def create(self, resource: api.Resource, obj: dict[str, Any]) -> dict[str, Any]:
        return self.client.create(resource.path(NS), obj)

    def status(self, resource: api.Resource, name: str, status: dict[str, Any]) -> None:
        self.client.merge_patch(resource.path(NS, name, "status"), {"status": status})

    def delete(self, resource: api.Resource, name: str) -> None:
        self.client.delete(resource.path(NS, name))


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    server = APIServerProcess(Path(tmp_path_factory.mktemp("dnsfeed")) / "data")
    server.start()
    loop = LoopThread()
    fake = FakeUpstream(*address_and_port(), {"outside.test": "192.0.2.10"})
    port = free_port()
    try:
        install_crds(server.kubeconfig)
        loop.run(fake.start())

        async def start_feed() -> NameFeed:
            feed = NameFeed(AsyncKube(str(server.kubeconfig)), NODE, port=port,
                            upstream=Upstream([Nameserver(fake.address, fake.port)], timeout=0.5),
                            delays=(0.2, 0.5, 1.0))
            feed.start()
            return feed
        feed = loop.run(start_feed())
        client = kubeclient.Client(kubeclient.load(str(server.kubeconfig)))
        yield Stack(server, client, loop, feed, port)
        loop.run(feed.stop())
        loop.run(feed.kube.close())
        client.close()
    finally:
        loop.run(fake.stop())
        loop.close()
        server.stop()


def network(name: str) -> dict[str, Any]:
    return {"apiVersion": api.GROUP_VERSION, "kind": "Network", "metadata": {"name": name}, "spec": {}}


def container(name: str, net: str, aliases: list[str] | None = None, hostname: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"image": "busybox", "nodeName": NODE, "networks": [{"name": net, "aliases": aliases or []}]}
    if hostname:
        spec["hostname"] = hostname
    return {"apiVersion": api.GROUP_VERSION, "kind": "LocalContainer",
            "metadata": {"name": f"{name}-obj", "annotations": {api.NAME_ANNOTATION: name}}, "spec": spec}


def running(net: str, ip: str) -> dict[str, Any]:
    return {"phase": "Running", "node": NODE, "networks": [{"name": net, "ip": ip}]}


def ask(address: str, port: int, name: str) -> list[str] | int | None:
    """A's addresses, else the rcode; None if nothing answered (no listener)."""
    try:
        reply = dns.query.udp(dns.message.make_query(name, "A"), address, 0.3, port)
    except (dns.exception.Timeout, ConnectionRefusedError):
        return None
    found = sorted(r.address for rrset in reply.answer if rrset.rdtype == dns.rdatatype.A for r in rrset)
    return found or reply.rcode()


def within(seconds: float, what: str, check: Any) -> float:
    """Seconds until ``check()`` holds, failing after ``seconds``."""
    started = time.monotonic()
    wait_until(check, seconds, what, interval=0.01)
    return time.monotonic() - started


def served_network(stack: Stack, name: str) -> str:
    """A Network whose status says it is ready on this node with a (loopback) gateway; its address."""
    gateway = loopback_address()
    stack.create(api.NETWORKS, network(name))
    assert ask(gateway, stack.port, "outside.test") is None  # no gateway in its status yet: no listener
    stack.status(api.NETWORKS, name, {"phase": "Ready", "gateway": gateway, "subnet": "10.40.0.0/24", "node": NODE})
    within(FOLLOW, f"{name}'s listener", lambda: ask(gateway, stack.port, "outside.test") == ["192.0.2.10"])
    return gateway


def test_names_follow_a_container_start_stop_and_removal(stack: Stack) -> None:
    gw = served_network(stack, "front")
    stack.create(api.LOCAL_CONTAINERS, container("web", "front", aliases=["app"], hostname="www"))
    assert ask(gw, stack.port, "web") == dns.rcode.NXDOMAIN  # not running yet: forwarded, unknown upstream
    stack.status(api.LOCAL_CONTAINERS, "web-obj", running("front", "10.40.0.2"))
    took = [within(FOLLOW, "web to resolve", lambda: ask(gw, stack.port, "web") == ["10.40.0.2"])]
    assert ask(gw, stack.port, "APP") == ["10.40.0.2"] and ask(gw, stack.port, "www") == ["10.40.0.2"]

    stack.status(api.LOCAL_CONTAINERS, "web-obj", {"phase": "Exited"})  # its networks still in status
    took.append(within(FOLLOW, "a stopped web to stop resolving",
                       lambda: ask(gw, stack.port, "web") == dns.rcode.NXDOMAIN))
    stack.status(api.LOCAL_CONTAINERS, "web-obj", running("front", "10.40.0.3"))  # restarted, a new address
    took.append(within(FOLLOW, "web's new address", lambda: ask(gw, stack.port, "web") == ["10.40.0.3"]))
    stack.delete(api.LOCAL_CONTAINERS, "web-obj")
    took.append(within(FOLLOW, "a removed web to stop resolving",
                       lambda: ask(gw, stack.port, "app") == dns.rcode.NXDOMAIN))
    print(f"\nnames followed the container in {', '.join(f'{t * 1e3:.0f}' for t in took)} ms")


def test_two_networks_never_see_each_others_names(stack: Stack) -> None:
    red, blue = served_network(stack, "red"), served_network(stack, "blue")
    stack.create(api.LOCAL_CONTAINERS, container("r1", "red"))
    stack.status(api.LOCAL_CONTAINERS, "r1-obj", running("red", "10.41.0.2"))
    stack.create(api.LOCAL_CONTAINERS, container("b1", "blue", aliases=["shared"]))
    stack.status(api.LOCAL_CONTAINERS, "b1-obj", running("blue", "10.42.0.2"))
    within(FOLLOW, "r1 on red", lambda: ask(red, stack.port, "r1") == ["10.41.0.2"])
    within(FOLLOW, "b1 on blue", lambda: ask(blue, stack.port, "shared") == ["10.42.0.2"])
    assert ask(red, stack.port, "b1") == dns.rcode.NXDOMAIN and ask(red, stack.port, "shared") == dns.rcode.NXDOMAIN
    assert ask(blue, stack.port, "r1") == dns.rcode.NXDOMAIN


def test_listeners_follow_networks(stack: Stack) -> None:
    gw = served_network(stack, "quiet")
    stack.client.merge_patch(api.NETWORKS.path(NS, "quiet"), {"spec": {"enableDNS": False}})
    within(FOLLOW, "DNS off to stop the listener", lambda: ask(gw, stack.port, "outside.test") is None)
    stack.client.merge_patch(api.NETWORKS.path(NS, "quiet"), {"spec": {"enableDNS": True}})
    within(FOLLOW, "DNS on again", lambda: ask(gw, stack.port, "outside.test") == ["192.0.2.10"])
    stack.delete(api.NETWORKS, "quiet")
    within(FOLLOW, "a deleted network's listener to stop", lambda: ask(gw, stack.port, "outside.test") is None)
    # the default network: no DNS unless its spec asks for it
    gateway = loopback_address()
    stack.create(api.NETWORKS, network("bridge"))
    stack.status(api.NETWORKS, "bridge", {"phase": "Ready", "gateway": gateway, "node": NODE})
    time.sleep(0.5)
    assert ask(gateway, stack.port, "outside.test") is None
    # another node's network is that node's to serve
    other = loopback_address()
    stack.create(api.NETWORKS, network("theirs"))
    stack.status(api.NETWORKS, "theirs", {"phase": "Ready", "gateway": other, "node": "another-node"})
    time.sleep(0.5)
    assert ask(other, stack.port, "outside.test") is None


def test_the_feed_comes_back_after_the_api_server_was_killed(stack: Stack) -> None:
    gw = served_network(stack, "sturdy")
    stack.server.kill9()
    time.sleep(1)
    assert ask(gw, stack.port, "outside.test") == ["192.0.2.10"]  # the listener keeps answering meanwhile
    stack.server.start()
    stack.client.close()
    stack.client = kubeclient.Client(kubeclient.load(str(stack.server.kubeconfig)))
    stack.create(api.LOCAL_CONTAINERS, container("late", "sturdy"))
    stack.status(api.LOCAL_CONTAINERS, "late-obj", running("sturdy", "10.43.0.2"))
    within(10, "a container written after the restart", lambda: ask(gw, stack.port, "late") == ["10.43.0.2"])
