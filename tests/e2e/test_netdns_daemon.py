"""`k3c daemon` runs the networks' resolvers: its operator starts one on the gateway of a Network whose
status says it is ready on this node, on port 53, and answers the names of that network's containers.

The network reconciler and the container plumbing are not the subject here, so the test writes the
statuses itself (as those would), on a Network whose gateway is a loopback address reserved for this
test, and on a LocalContainer placed on another node (this daemon's operator leaves it alone)."""

from __future__ import annotations

import contextlib
import time
from typing import Any

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype

from k3c import api
from k3c.apierrors import NotFound
from tests.support.daemon_harness import DaemonProcess, wait_until
from tests.support.netdns import loopback_address

NODE = "k3c-test-node"  # (the harness's --node-name)


def ask(address: str, name: str) -> list[str] | int | None:
    try:
        reply = dns.query.udp(dns.message.make_query(name, "A"), address, 0.3, 53)
    except (dns.exception.Timeout, ConnectionRefusedError):
        return None
    found = sorted(r.address for rrset in reply.answer if rrset.rdtype == dns.rdatatype.A for r in rrset)
    return found or reply.rcode()


def test_the_daemon_answers_a_networks_container_names_on_its_gateway(daemon: DaemonProcess) -> None:
    c = daemon.api
    gateway = loopback_address()
    c.create(api.NETWORKS.path("default"), {"apiVersion": api.GROUP_VERSION, "kind": "Network",
                                            "metadata": {"name": "appnet"}, "spec": {}})
    try:
        c.merge_patch(api.NETWORKS.path("default", "appnet", "status"),
                      {"status": {"phase": "Ready", "gateway": gateway, "subnet": "10.44.0.0/24", "node": NODE}})
        obj: dict[str, Any] = {
            "apiVersion": api.GROUP_VERSION, "kind": "LocalContainer",
            "metadata": {"name": "db-x1", "annotations": {api.NAME_ANNOTATION: "db"}},
            "spec": {"image": "busybox", "nodeName": "elsewhere", "networks": [{"name": "appnet", "aliases": ["pg"]}]}}
        c.create(api.LOCAL_CONTAINERS.path("default"), obj)
        wait_until(lambda: ask(gateway, "db") is not None, 15, "the resolver on the network's gateway")
        c.merge_patch(api.LOCAL_CONTAINERS.path("default", "db-x1", "status"),
                      {"status": {"phase": "Running", "node": "elsewhere",
                                  "networks": [{"name": "appnet", "ip": "10.44.0.5"}]}})
        started = time.monotonic()
        wait_until(lambda: ask(gateway, "pg") == ["10.44.0.5"], 5.0, "the alias to resolve", interval=0.01)
        print(f"\nthe daemon's resolver followed the status in {(time.monotonic() - started) * 1e3:.0f} ms")
        assert ask(gateway, "DB") == ["10.44.0.5"]
        c.delete(api.LOCAL_CONTAINERS.path("default", "db-x1"))
        wait_until(lambda: ask(gateway, "db") != ["10.44.0.5"], 5.0, "a removed container to stop resolving")
    finally:
        with contextlib.suppress(NotFound):  # (a network with a container on it is refused, as docker's)
            c.delete(api.LOCAL_CONTAINERS.path("default", "db-x1"))
        c.delete(api.NETWORKS.path("default", "appnet"))
    wait_until(lambda: ask(gateway, "db") is None, 2.0, "the deleted network's listener to stop")
