"""Helpers for the network resolver's tests and benchmark: an event loop in a thread to host resolvers
(so a test queries them with dnspython's plain blocking calls, as a container's stub would), a loopback
address no other test process holds, and a fake upstream nameserver (the host's resolvers' stand-in,
a fault-injection double: it answers what it is told, or nothing at all)."""

from __future__ import annotations

import asyncio
import random
import socket
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from tests.support.harness import free_port
from tests.support.reservations import Reservations

T = TypeVar("T")
LOOPBACKS = Reservations("loopbacks")


def container(name: str, uid: str, *, phase: str = "Running", namespace: str = "default",
              networks: list[dict[str, Any]] | None = None, attached: list[dict[str, Any]] | None = None,
              docker_name: str | None = None, hostname: str | None = None) -> dict[str, Any]:
    """A LocalContainer as the operator leaves it: ``phase``, attached with ``status.networks`` entries."""
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "uid": uid}
    if docker_name:
        meta["annotations"] = {"k3c.io/name": docker_name}
    spec: dict[str, Any] = {"image": "busybox", "networks": networks or []}
    if hostname:
        spec["hostname"] = hostname
    return {"metadata": meta, "spec": spec, "status": {"phase": phase, "networks": attached or []}}


def loopback_address() -> str:
    """A 127.0.0.0/8 address reserved for this process (never 127.0.0.1, nor 127.0.0.53 and friends)."""
    for _ in range(1000):
        number = random.randrange(1 << 16)
        if LOOPBACKS.take(number):
            return f"127.{100 + number % 100}.{number // 256 % 256}.{number % 254 + 1}"
    raise RuntimeError("no loopback address left")


def address_and_port() -> tuple[str, int]:
    return loopback_address(), free_port()


class LoopThread:
    """An asyncio event loop running in a daemon thread; :meth:`run` a coroutine in it from the test."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="dns-loop", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


class FakeUpstream(asyncio.DatagramProtocol):
    """A nameserver on ``address``:``port`` (UDP) that knows ``records`` (name → IPv4), NXDOMAIN for the
    rest, and answers nothing at all while ``silent``. ``asked`` lists the names it was asked."""

    def __init__(self, address: str, port: int, records: dict[str, str]) -> None:
        self.address, self.port = address, port
        self.records = {dns.name.from_text(k): v for k, v in records.items()}
        self.silent = False
        self.asked: list[str] = []
        self.transport: asyncio.DatagramTransport | None = None

    async def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((self.address, self.port))
        self.transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(lambda: self, sock=sock)

    async def stop(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        query = dns.message.from_wire(data)
        question = query.question[0]
        self.asked.append(question.name.to_text())
        if self.silent or self.transport is None:
            return
        reply = dns.message.make_response(query)
        ip = self.records.get(question.name)
        if ip is None:
            reply.set_rcode(dns.rcode.NXDOMAIN)
        elif question.rdtype == dns.rdatatype.A:
            reply.answer.append(dns.rrset.from_text(question.name, 300, dns.rdataclass.IN, dns.rdatatype.A, ip))
        self.transport.sendto(reply.to_wire(), addr)
