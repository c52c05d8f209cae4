"""The host's resolvers, which a network's resolver asks everything its table does not answer.

The resolver runs on the host, so the host's ``/etc/resolv.conf`` applies as it is, a loopback nameserver
(systemd-resolved's 127.0.0.53, a local dnsmasq) included. The file is read with dnspython and read again
when it changes (DHCP, a VPN). Each nameserver is asked in turn, over UDP and over TCP when the answer was
truncated, with a timeout each; the first answer, whatever its rcode (NXDOMAIN is an answer), is the
answer. None when no nameserver answered: the caller answers SERVFAIL.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.resolver

log = logging.getLogger(__name__)

RESOLV_CONF = Path("/etc/resolv.conf")
#: Seconds to wait for one nameserver (a container's stub resolver gives up after 5 s per try).
TIMEOUT = 2.0


@dataclass(frozen=True, slots=True)
class Nameserver:
    address: str
    port: int = 53


def read_nameservers(path: Path) -> list[Nameserver]:
    """The IP nameservers of a resolv.conf (none if it cannot be read or names none)."""
    resolver = dns.resolver.Resolver(configure=False)
    try:
        resolver.read_resolv_conf(str(path))
    except (OSError, dns.exception.DNSException) as err:
        log.warning("no nameservers from %s: %s", path, err)
        return []
    return [Nameserver(str(ns)) for ns in resolver.nameservers]


@dataclass
class Upstream:
    """Forwarding to fixed ``servers``, or to those of ``resolv_conf`` (re-read when its mtime changes)."""

    servers: list[Nameserver] | None = None
    resolv_conf: Path = RESOLV_CONF
    timeout: float = TIMEOUT
    _read: tuple[float, list[Nameserver]] = field(default=(-1.0, []), repr=False)

    def nameservers(self) -> list[Nameserver]:
        if self.servers is not None:
            return self.servers
        try:
            mtime = os.stat(self.resolv_conf).st_mtime
        except OSError:
            mtime = -1.0
        if mtime != self._read[0]:
            self._read = (mtime, read_nameservers(self.resolv_conf))
        return self._read[1]

    async def resolve(self, query: dns.message.Message) -> dns.message.Message | None:
        """The first answer of a nameserver to ``query`` (its id kept), or None if none answered in time."""
        for ns in self.nameservers():
            try:
                reply = await dns.asyncquery.udp(query, ns.address, self.timeout, ns.port, ignore_unexpected=True)
                if reply.flags & dns.flags.TC:
                    reply = await dns.asyncquery.tcp(query, ns.address, self.timeout, ns.port)
                return reply
            except (OSError, dns.exception.DNSException, EOFError) as err:
                log.debug("nameserver %s:%d did not answer: %s", ns.address, ns.port, err)
        return None
