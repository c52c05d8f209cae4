"""DNS on one network's gateway: container names from the table, everything else from the host's resolvers.

One :class:`NetworkResolver` per DNS-enabled network listens on the gateway address, UDP and TCP. Its
sockets are bound with ``IP_FREEBIND``, so it may start before the bridge has that address (and keeps
listening while the bridge is recreated), and with ``SO_REUSEADDR``, so a restarted operator binds again at
once. :class:`Answerer` decides the reply: a name the table knows on this network gets its addresses
(``A``; any other type of a known name an empty NOERROR, so a stub asking ``AAAA`` first is not sent to
the host's resolvers for a name they cannot know), also the names of the asking container's other networks
(:meth:`~k3c.netdns.names.NameTable.lookup`); everything else (unknown names, ``PTR``, other networks'
names) is forwarded (:mod:`k3c.netdns.upstream`), SERVFAIL if nothing answered. Table answers
are made in the datagram callback itself (no task, no await): that is the lookup path containers wait on.
Anything that does not parse as a DNS query is dropped; no packet can end a listener.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from k3c.netdns.names import NameTable, NetKey
from k3c.netdns.upstream import Upstream

log = logging.getLogger(__name__)

#: Seconds a container's stub may keep an answer: names follow containers within a second.
TTL = 1
#: The port containers ask (tests use others).
DNS_PORT = 53
#: Linux's IP_FREEBIND (Python's socket module names it from 3.12 on).
IP_FREEBIND = getattr(socket, "IP_FREEBIND", 15)
#: Forwarded UDP questions in flight per network; more are dropped (the stub asks again).
MAX_FORWARDS = 256
#: Seconds a TCP client may stay idle between questions before it is hung up on.
TCP_IDLE = 10.0
#: A UDP answer's size limit for a client without EDNS (RFC 1035).
CLASSIC_UDP = 512


def parse_query(wire: bytes) -> dns.message.Message | None:
    """The query in ``wire``, or None for anything else (garbage, a response, a truncated packet)."""
    try:
        msg = dns.message.from_wire(wire)
    except Exception:  # dnspython raises many kinds for bad input; all mean "not a query"
        return None
    return None if msg.flags & dns.flags.QR else msg


def to_wire(reply: dns.message.Message, limit: int) -> bytes:
    """``reply`` in at most ``limit`` bytes: if it does not fit, its header and question alone, truncated
    (TC), which sends the client to TCP."""
    try:
        return reply.to_wire(max_size=limit)
    except dns.exception.TooBig:
        for section in (reply.answer, reply.authority, reply.additional):
            section.clear()
        reply.flags |= dns.flags.TC
        return reply.to_wire(max_size=limit)


def udp_limit(query: dns.message.Message) -> int:
    return max(CLASSIC_UDP, query.payload) if query.edns >= 0 else CLASSIC_UDP


class Answerer:
    """The replies of one network's resolver (no sockets here)."""

    def __init__(self, network: NetKey, table: NameTable, upstream: Upstream, ttl: int = TTL) -> None:
        self.network = network
        self.table = table
        self.upstream = upstream
        self.ttl = ttl

    def local(self, query: dns.message.Message, client: str | None = None) -> dns.message.Message | None:
        """The reply made here (a table name, a malformed or unsupported query), or None: forward it.
        ``client``: the asker's address (a container asking sees the names of all its networks)."""
        if query.opcode() != dns.opcode.QUERY:
            return self._error(query, dns.rcode.NOTIMP)
        if len(query.question) != 1:
            return self._error(query, dns.rcode.FORMERR)
        question = query.question[0]
        if question.rdclass != dns.rdataclass.IN:
            return None
        addresses = self.table.lookup(self.network, question.name, _ipv4(client))
        if addresses is None:
            return None
        reply = dns.message.make_response(query, recursion_available=True)
        reply.flags |= dns.flags.AA
        if question.rdtype in (dns.rdatatype.A, dns.rdatatype.ANY):
            reply.answer.append(dns.rrset.from_text_list(question.name, self.ttl, dns.rdataclass.IN,
                                                         dns.rdatatype.A, [str(a) for a in addresses]))
        return reply

    async def forwarded(self, query: dns.message.Message) -> dns.message.Message:
        reply = await self.upstream.resolve(query)
        return reply if reply is not None else self._error(query, dns.rcode.SERVFAIL)

    async def reply(self, query: dns.message.Message, client: str | None = None) -> dns.message.Message:
        local = self.local(query, client)
        return local if local is not None else await self.forwarded(query)

    @staticmethod
    def _error(query: dns.message.Message, rcode: dns.rcode.Rcode) -> dns.message.Message:
        reply = dns.message.make_response(query, recursion_available=True)
        reply.set_rcode(rcode)
        return reply


def _ipv4(address: str | None) -> ipaddress.IPv4Address | None:
    try:
        return ipaddress.IPv4Address(address) if address else None
    except ValueError:
        return None


def bound_socket(kind: socket.SocketKind, address: str, port: int) -> socket.socket:
    """A socket bound to ``address`` even before any interface has it (IP_FREEBIND)."""
    sock = socket.socket(socket.AF_INET, kind)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_IP, IP_FREEBIND, 1)
        sock.bind((address, port))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, resolver: NetworkResolver) -> None:
        self.resolver = resolver

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        try:
            self.resolver.on_datagram(data, addr)
        except Exception:  # never let one packet end the listener
            log.exception("DNS on %s: a datagram from %s failed", self.resolver.address, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("DNS on %s: %s", self.resolver.address, exc)


class NetworkResolver:
    """The resolver of one network: UDP and TCP on ``address``:``port``."""

    def __init__(self, answerer: Answerer, address: str, port: int = DNS_PORT) -> None:
        self.answerer = answerer
        self.address = address
        self.port = port
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        udp = bound_socket(socket.SOCK_DGRAM, self.address, self.port)
        try:
            tcp = bound_socket(socket.SOCK_STREAM, self.address, self.port)
        except BaseException:
            udp.close()
            raise
        self._udp, _ = await loop.create_datagram_endpoint(lambda: _Datagrams(self), sock=udp)
        self._tcp = await asyncio.start_server(self._serve_tcp, sock=tcp)

    async def close(self) -> None:
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._tcp is not None:
            self._tcp.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._tcp.wait_closed(), 1.0)
            self._tcp = None
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def on_datagram(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        query = parse_query(data)
        if query is None or self._udp is None:
            return
        reply = self.answerer.local(query, str(addr[0]))
        if reply is not None:
            self._udp.sendto(to_wire(reply, udp_limit(query)), addr)
        elif len(self._tasks) < MAX_FORWARDS:
            self._track(self._forward_udp(query, addr))

    def _track(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _forward_udp(self, query: dns.message.Message, addr: tuple[str | Any, int]) -> None:
        reply = await self.answerer.forwarded(query)
        if self._udp is not None:
            self._udp.sendto(to_wire(reply, udp_limit(query)), addr)

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Length-prefixed queries (RFC 1035 4.2.2) until the client closes, idles or sends garbage."""
        peer = writer.get_extra_info("peername")
        client = str(peer[0]) if isinstance(peer, tuple) and peer else None
        try:
            while True:
                size = int.from_bytes(await asyncio.wait_for(reader.readexactly(2), TCP_IDLE), "big")
                query = parse_query(await asyncio.wait_for(reader.readexactly(size), TCP_IDLE))
                if query is None:
                    return
                wire = (await self.answerer.reply(query, client)).to_wire(max_size=65535)
                writer.write(len(wire).to_bytes(2, "big") + wire)
                await writer.drain()
        except (OSError, EOFError, TimeoutError, asyncio.IncompleteReadError, dns.exception.DNSException):
            return
        finally:
            writer.close()
