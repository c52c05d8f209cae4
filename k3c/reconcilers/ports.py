"""Host ports for published container ports: checked, chosen and held, because portmap does none of it.

The portmap CNI plugin only writes DNAT rules: it never checks whether a host port is free, and nothing
listens on it, so a second container (or any host process) could take the same port and silently lose or
steal its traffic. Like docker's proxy, k3c *holds* each published port: the operator binds a socket on
it for as long as the container's sandbox exists. Binding fails if anything else has the port, which
gives the clear "already in use" error, and nobody can take it later. Port 0 binds an ephemeral port,
which is then the one published.
"""

from __future__ import annotations

import contextlib
import errno
import socket
from dataclasses import dataclass, field
from typing import Any

from k3c.reconcilers.criconfig import PortSpec

_SOCK_TYPES = {"TCP": socket.SOCK_STREAM, "UDP": socket.SOCK_DGRAM, "SCTP": socket.SOCK_STREAM}


class PortInUseError(Exception):
    """A requested host port is taken (by a host process or another container)."""


@dataclass
class PortReservations:
    """Sockets held per owner (a sandbox id or object uid) on behalf of its published ports."""

    held: dict[str, list[socket.socket]] = field(default_factory=dict)

    def reserve(self, owner: str, requested: list[dict[str, Any]]) -> list[PortSpec]:
        """Bind every requested port (0 = pick one) and keep the sockets; all or nothing."""
        sockets: list[socket.socket] = []
        resolved: list[PortSpec] = []
        try:
            for p in requested:
                spec = PortSpec(
                    container_port=int(p["containerPort"]), host_port=int(p.get("hostPort") or 0),
                    protocol=str(p.get("protocol") or "TCP").upper(), host_ip=_host_ip(p.get("hostIP")),
                )
                sock = _bind(spec)
                sockets.append(sock)
                spec.host_port = sock.getsockname()[1]
                resolved.append(spec)
        except BaseException:
            for s in sockets:
                s.close()
            raise
        self.release(owner)
        self.held[owner] = sockets
        return resolved

    def adopt(self, owner: str, ports: list[PortSpec]) -> None:
        """Hold the ports of a sandbox that survived a restart (best effort: the DNAT rules exist anyway)."""
        sockets = []
        for spec in ports:
            with contextlib.suppress(PortInUseError, OSError):
                sockets.append(_bind(spec))
        self.held[owner] = sockets

    def release(self, owner: str) -> None:
        for s in self.held.pop(owner, []):
            s.close()

    def close(self) -> None:
        for owner in list(self.held):
            self.release(owner)


def _host_ip(value: Any) -> str:
    ip = str(value or "")
    return "" if ip in ("", "0.0.0.0") else ip


def _bind(spec: PortSpec) -> socket.socket:
    family = socket.AF_INET6 if ":" in spec.host_ip else socket.AF_INET
    sock = socket.socket(family, _SOCK_TYPES[spec.protocol])
    stream = _SOCK_TYPES[spec.protocol] == socket.SOCK_STREAM
    try:
        if stream:
            # REUSEADDR tolerates TIME_WAIT leftovers; listen() then makes the hold exclusive (Linux refuses
            # any other bind of a port with a listener). DNAT sends traffic to the container before it
            # could ever reach this socket.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((spec.host_ip or "0.0.0.0", spec.host_port))
        if stream:
            sock.listen(1)
    except OSError as err:
        sock.close()
        where = f"{spec.host_ip or '0.0.0.0'}:{spec.host_port}/{spec.protocol.lower()}"
        if err.errno == errno.EADDRINUSE:
            raise PortInUseError(f"port {where} is already in use") from None
        if err.errno == errno.EADDRNOTAVAIL:
            raise PortInUseError(f"cannot publish {where}: address not available on this node") from None
        raise PortInUseError(f"cannot publish {where}: {err.strerror}") from None
    return sock
