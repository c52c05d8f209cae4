"""The network resolver on real sockets (k3c.netdns.server): one resolver on a loopback address, fed a table,
forwarding to a fake upstream on another, queried with dnspython as a container's stub would ask it."""

from __future__ import annotations

import asyncio
import errno
import socket
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from k3c.netdns.names import NameTable
from k3c.netdns.server import TTL, Answerer, NetworkResolver
from k3c.netdns.upstream import Nameserver, Upstream
from tests.support.harness import free_port
from tests.support.netdns import FakeUpstream, LoopThread, address_and_port, container, loopback_address

NET = ("default", "front")


@dataclass
class Env:
    loop: LoopThread
    table: NameTable
    upstream: Upstream
    fake: FakeUpstream
    resolver: NetworkResolver

    @property
    def where(self) -> tuple[str, int]:
        return self.resolver.address, self.resolver.port

    def put(self, *objs: dict) -> None:
        async def put() -> None:
            for obj in objs:
                self.table.put(obj)
        self.loop.run(put())

    def ask(self, name: str, rdtype: str = "A", tcp: bool = False, timeout: float = 5.0) -> dns.message.Message:
        query = dns.message.make_query(name, rdtype)
        address, port = self.where
        if tcp:
            return dns.query.tcp(query, address, timeout, port)
        return dns.query.udp(query, address, timeout, port)


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    loop = LoopThread()
    table = NameTable()
    fake = FakeUpstream(*address_and_port(), {"outside.test": "192.0.2.10", "1.2.0.192.in-addr.arpa": "0.0.0.0"})
    upstream = Upstream([Nameserver(fake.address, fake.port)], timeout=0.5)
    resolver = NetworkResolver(Answerer(NET, table, upstream), *address_and_port())
    loop.run(fake.start())
    loop.run(resolver.start())
    e = Env(loop, table, upstream, fake, resolver)
    e.put(container("web", "u1", networks=[{"name": "front", "aliases": ["app"]}],
                    attached=[{"name": "front", "ip": "10.30.0.2"}]),
          container("db", "u2", attached=[{"name": "back", "ip": "10.31.0.2"}]))
    try:
        yield e
    finally:
        loop.run(resolver.close())
        loop.run(fake.stop())
        loop.close()


def a_records(reply: dns.message.Message) -> list[str]:
    return sorted(r.address for rrset in reply.answer if rrset.rdtype == dns.rdatatype.A for r in rrset)


def test_container_name_and_alias_answered_case_insensitively_with_a_short_ttl(env: Env) -> None:
    for name in ("web", "APP", "Web."):
        reply = env.ask(name)
        assert reply.rcode() == dns.rcode.NOERROR and a_records(reply) == ["10.30.0.2"], name
        assert reply.answer[0].ttl == TTL <= 5
        assert reply.flags & dns.flags.AA
    assert not env.fake.asked  # answered from the table, never forwarded


def test_aaaa_of_a_known_name_is_an_empty_noerror(env: Env) -> None:
    reply = env.ask("web", "AAAA")
    assert reply.rcode() == dns.rcode.NOERROR and not reply.answer
    assert "web." not in env.fake.asked


def test_unknown_names_ptr_and_other_networks_names_are_forwarded(env: Env) -> None:
    reply = env.ask("outside.test")
    assert a_records(reply) == ["192.0.2.10"] and "outside.test." in env.fake.asked
    assert env.ask("nowhere.test").rcode() == dns.rcode.NXDOMAIN
    # db is on another network: not answered from the table, so the host's resolvers decide (NXDOMAIN)
    assert env.ask("db").rcode() == dns.rcode.NXDOMAIN and "db." in env.fake.asked
    env.ask("2.0.30.10.in-addr.arpa", "PTR")
    assert "2.0.30.10.in-addr.arpa." in env.fake.asked


def test_a_container_on_two_networks_resolves_the_names_of_both(env: Env) -> None:
    """The asker is known by its source address: bound to the address of a container on front and back."""
    both = loopback_address()
    env.put(container("multi", "u-multi", attached=[{"name": "front", "ip": both}, {"name": "back", "ip": "10.31.0.9"}]))
    query = dns.message.make_query("db", "A")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((both, 0))
        s.setblocking(False)
        assert a_records(dns.query.udp(query, env.where[0], 5, env.where[1], sock=s)) == ["10.31.0.2"]
    assert env.ask("db").rcode() == dns.rcode.NXDOMAIN  # anyone else: db is not on front


def test_servfail_when_the_upstream_does_not_answer(env: Env) -> None:
    env.fake.silent = True
    try:
        started = time.monotonic()
        reply = env.ask("silent.test")
        assert reply.rcode() == dns.rcode.SERVFAIL
        assert time.monotonic() - started < 3
        assert env.ask("web").rcode() == dns.rcode.NOERROR  # the table still answers meanwhile
    finally:
        env.fake.silent = False


GARBAGE = [b"", b"\x00", b"\xff" * 11, b"\x12\x34" + b"\x01" * 40, bytes(range(256)) * 2,
           # a query header promising a question that is not there
           b"\xab\xcd\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00",
           # a name whose compression pointer points at itself
           b"\xab\xcd\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c\x00\x01\x00\x01"]


def test_garbage_is_dropped_and_the_next_query_answered(env: Env) -> None:
    response = dns.message.make_response(dns.message.make_query("web", "A")).to_wire()  # a reply, not a query
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.3)
        for packet in [*GARBAGE, response]:
            s.sendto(packet, env.where)
        with pytest.raises(TimeoutError):  # nothing answers garbage
            s.recv(4096)
    assert a_records(env.ask("web")) == ["10.30.0.2"]
    # over TCP: garbage ends that connection only
    with socket.create_connection(env.where, timeout=2) as s:
        s.sendall(len(GARBAGE[4]).to_bytes(2, "big") + GARBAGE[4])
        assert s.recv(10) == b""
    assert a_records(env.ask("web", tcp=True)) == ["10.30.0.2"]


def test_tcp_answers_names_and_forwards(env: Env) -> None:
    assert a_records(env.ask("app", tcp=True)) == ["10.30.0.2"]
    assert a_records(env.ask("outside.test", tcp=True)) == ["192.0.2.10"]
    # several questions on one connection
    query = dns.message.make_query("web", "A")
    with socket.create_connection(env.where, timeout=2) as s:
        for _ in range(3):
            dns.query.send_tcp(s, query)
            reply, _ = dns.query.receive_tcp(s, time.time() + 2)
            assert a_records(reply) == ["10.30.0.2"] and reply.id == query.id


def test_an_answer_too_big_for_udp_is_truncated_and_whole_over_tcp(env: Env) -> None:
    env.put(*(container(f"w{i}", f"many-{i}", networks=[{"name": "front", "aliases": ["many"]}],
                        attached=[{"name": "front", "ip": f"10.30.1.{i}"}]) for i in range(1, 61)))
    reply = dns.query.udp(dns.message.make_query("many", "A", use_edns=False), *env.where[:1], 5, env.where[1])
    assert reply.flags & dns.flags.TC and not reply.answer
    assert len(a_records(env.ask("many", tcp=True))) == 60


def test_a_listener_binds_before_its_address_exists() -> None:
    """IP_FREEBIND: the gateway's resolver starts before the bridge has the address."""
    absent, port = "192.0.2.77", free_port()  # TEST-NET-1: on no interface of this machine
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as plain, pytest.raises(OSError) as err:
        plain.bind((absent, port))
    assert err.value.errno == errno.EADDRNOTAVAIL
    resolver = NetworkResolver(Answerer(NET, NameTable(), Upstream([])), absent, port)

    async def start_and_stop() -> None:
        await resolver.start()
        await resolver.close()
    asyncio.run(start_and_stop())


def test_lookup_latency(env: Env) -> None:
    """p50/p99 of 1000 lookups of a container name (printed; the bound only catches a broken fast path)."""
    query = dns.message.make_query("web", "A")
    times = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setblocking(False)  # (dnspython waits on a socket it is given with its own timeout)
        for _ in range(1000):
            started = time.perf_counter()
            reply = dns.query.udp(query, env.where[0], 2, env.where[1], sock=s)
            times.append(time.perf_counter() - started)
            assert a_records(reply) == ["10.30.0.2"]
    times.sort()
    p50, p99 = statistics.median(times), times[989]
    print(f"\nresolver lookup latency: p50 {p50 * 1e3:.3f} ms, p99 {p99 * 1e3:.3f} ms (1000 lookups)")
    assert p99 < 0.1
